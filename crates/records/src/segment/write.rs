//! Writing segments: sorting, row groups, the leaf columns of each, the
//! writer properties, and the atomic file dance.

use std::fs::{self, File};
use std::io::BufWriter;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parquet::basic::{Compression, Encoding, ZstdLevel};
use parquet::errors::ParquetError;
use parquet::file::metadata::KeyValue;
use parquet::file::properties::{BloomFilterPosition, EnabledStatistics, WriterProperties};
use parquet::file::writer::SerializedFileWriter;
use parquet::schema::parser::parse_message_type;
use parquet::schema::types::ColumnPath;
use sonde_model::records::{LogRecord, Origin, SpanRecord, TimestampNs};

use super::columns::{self, Leaf};
use super::{io_error, json, parquet_error, Kinds, SegmentKind, SegmentMeta};
use super::{
    BLOOM_FPP, LOG_GROUP_ROWS, MAX_SERVICES_PER_GROUP, MAX_SPAN_GROUP_ROWS, SPAN_GROUP_ROWS,
    ZSTD_LEVEL,
};
use super::{KEY_FORMAT, KEY_KINDS, KEY_MAX_TIME, KEY_MIN_TIME, KEY_SERVICES};
use crate::Result;

pub(super) fn spans(path: &Path, spans: &mut [SpanRecord]) -> Result<SegmentMeta> {
    spans.sort_unstable_by(|a, b| {
        (a.trace_id, a.start_ns, a.span_id).cmp(&(b.trace_id, b.start_ns, b.span_id))
    });
    let kinds = Kinds::collect(spans.iter().map(|s| (&*s.origin, &s.attributes)));
    let min = spans.iter().map(|s| s.start_ns).min();
    let max = spans.iter().map(|s| s.end_ns.max(s.start_ns)).max();
    let meta = new_meta(
        path,
        SegmentKind::Spans,
        min,
        max,
        spans.len(),
        spans.iter().map(|s| &*s.origin),
    );
    let groups = span_groups(spans);
    write_segment(meta, &kinds, |w| {
        for g in groups {
            let spans = &spans[g];
            let mut rg = w.next_row_group()?;
            columns::write_group(&mut rg, |name| span_leaf(name, spans))?;
            rg.close()?;
        }
        Ok(())
    })
}

pub(super) fn logs(path: &Path, logs: &mut [LogRecord]) -> Result<SegmentMeta> {
    logs.sort_by_key(|l| l.time_ns);
    let kinds = Kinds::collect(logs.iter().map(|l| (&*l.origin, &l.attributes)));
    let (min, max) = (
        logs.first().map(|l| l.time_ns),
        logs.last().map(|l| l.time_ns),
    );
    let meta = new_meta(
        path,
        SegmentKind::Logs,
        min,
        max,
        logs.len(),
        logs.iter().map(|l| &*l.origin),
    );
    write_segment(meta, &kinds, |w| {
        for logs in logs.chunks(LOG_GROUP_ROWS) {
            let mut rg = w.next_row_group()?;
            columns::write_group(&mut rg, |name| log_leaf(name, logs))?;
            rg.close()?;
        }
        Ok(())
    })
}

fn new_meta<'a>(
    path: &Path,
    kind: SegmentKind,
    min: Option<TimestampNs>,
    max: Option<TimestampNs>,
    rows: usize,
    origins: impl Iterator<Item = &'a Origin>,
) -> SegmentMeta {
    let mut services: Vec<String> = Vec::new();
    let mut last: Option<&Origin> = None;
    for o in origins {
        // Rows of one batch share their origin; skip the repeats cheaply.
        if !last.is_some_and(|l| std::ptr::eq(l, o)) && !services.contains(&o.service) {
            services.push(o.service.clone());
        }
        last = Some(o);
    }
    services.sort_unstable();
    SegmentMeta {
        path: path.to_path_buf(),
        kind,
        min_time_ns: min.unwrap_or(0),
        max_time_ns: max.unwrap_or(0),
        rows: rows as u64,
        bytes: 0,
        services,
    }
}

/// Row groups of at least [`SPAN_GROUP_ROWS`] spans that end between traces.
fn span_groups(spans: &[SpanRecord]) -> Vec<Range<usize>> {
    let mut groups = Vec::new();
    let mut start = 0;
    for i in 1..=spans.len() {
        let len = i - start;
        if i == spans.len()
            || len >= MAX_SPAN_GROUP_ROWS
            || (len >= SPAN_GROUP_ROWS && spans[i].trace_id != spans[i - 1].trace_id)
        {
            groups.push(start..i);
            start = i;
        }
    }
    groups
}

fn span_leaf(name: &str, spans: &[SpanRecord]) -> Option<Leaf> {
    let s = spans.iter();
    Some(match name {
        "trace_id" => Leaf::fixed(s.map(|s| &s.trace_id.0[..])),
        "span_id" => Leaf::fixed(s.map(|s| &s.span_id.0[..])),
        "parent_span_id" => {
            Leaf::optional_fixed(s.map(|s| s.parent_span_id.as_ref().map(|p| &p.0[..])))
        }
        "trace_state" => Leaf::strings(s.map(|s| s.trace_state.as_str())),
        // The u32's bits; the column's logical type says they are unsigned.
        "flags" => Leaf::i32s(s.map(|s| s.flags as i32)),
        "name" => Leaf::strings(s.map(|s| s.name.as_str())),
        "kind" => Leaf::i32s(s.map(|s| s.kind as i32)),
        "start_time_unix_nano" => Leaf::i64s(s.map(|s| s.start_ns)),
        "end_time_unix_nano" => Leaf::i64s(s.map(|s| s.end_ns)),
        "duration_ns" => Leaf::i64s(s.map(SpanRecord::duration_ns)),
        "status_code" => Leaf::i32s(s.map(|s| s.status as i32)),
        "status_message" => Leaf::strings(s.map(|s| s.status_message.as_str())),
        "attributes.key_value.key" => Leaf::map(s.map(|s| &s.attributes), true),
        "attributes.key_value.value" => Leaf::map(s.map(|s| &s.attributes), false),
        "events_json" => Leaf::owned_strings(s.map(|s| json::encode_events(&s.events))),
        "links_json" => Leaf::owned_strings(s.map(|s| json::encode_links(&s.links))),
        other => return origin_leaf(other, s.map(|s| &*s.origin)),
    })
}

fn log_leaf(name: &str, logs: &[LogRecord]) -> Option<Leaf> {
    let l = logs.iter();
    Some(match name {
        "time_unix_nano" => Leaf::i64s(l.map(|l| l.time_ns)),
        "observed_time_unix_nano" => Leaf::i64s(l.map(|l| l.observed_ns)),
        "severity_number" => Leaf::i32s(l.map(|l| i32::from(l.severity_number))),
        "severity_text" => Leaf::strings(l.map(|l| l.severity_text.as_str())),
        "body" => Leaf::strings(l.map(|l| l.body.as_str())),
        "event_name" => Leaf::strings(l.map(|l| l.event_name.as_str())),
        "trace_id" => Leaf::optional_fixed(l.map(|l| l.trace_id.as_ref().map(|t| &t.0[..]))),
        "span_id" => Leaf::optional_fixed(l.map(|l| l.span_id.as_ref().map(|s| &s.0[..]))),
        "flags" => Leaf::i32s(l.map(|l| l.flags as i32)),
        "attributes.key_value.key" => Leaf::map(l.map(|l| &l.attributes), true),
        "attributes.key_value.value" => Leaf::map(l.map(|l| &l.attributes), false),
        other => return origin_leaf(other, l.map(|l| &*l.origin)),
    })
}

fn origin_leaf<'a>(name: &str, o: impl Iterator<Item = &'a Origin>) -> Option<Leaf> {
    Some(match name {
        "service_name" => Leaf::strings(o.map(|o| o.service.as_str())),
        "host_name" => Leaf::strings(o.map(|o| o.host.as_str())),
        "scope_name" => Leaf::strings(o.map(|o| o.scope_name.as_str())),
        "scope_version" => Leaf::strings(o.map(|o| o.scope_version.as_str())),
        "resource_attributes.key_value.key" => Leaf::map(o.map(|o| &o.resource), true),
        "resource_attributes.key_value.value" => Leaf::map(o.map(|o| &o.resource), false),
        _ => return None,
    })
}

/// A column path from its dotted form (`attributes.key_value.key`).
fn col(dotted: &str) -> ColumnPath {
    ColumnPath::new(dotted.split('.').map(String::from).collect())
}

fn writer_props(
    meta: &SegmentMeta,
    kinds: &Kinds,
) -> std::result::Result<WriterProperties, ParquetError> {
    let kv = vec![
        KeyValue::new(KEY_FORMAT.into(), meta.kind.format().to_string()),
        KeyValue::new(KEY_MIN_TIME.into(), meta.min_time_ns.to_string()),
        KeyValue::new(KEY_MAX_TIME.into(), meta.max_time_ns.to_string()),
        KeyValue::new(
            KEY_SERVICES.into(),
            serde_json::json!(meta.services).to_string(),
        ),
        KeyValue::new(KEY_KINDS.into(), kinds.to_json()),
    ];
    let mut b = WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::try_new(ZSTD_LEVEL)?))
        .set_dictionary_enabled(true)
        .set_statistics_enabled(EnabledStatistics::Page)
        // All filters together before the footer, next to what `open` reads
        // anyway, rather than scattered between the row groups.
        .set_bloom_filter_position(BloomFilterPosition::End)
        .set_key_value_metadata(Some(kv));
    let maps = [
        "resource_attributes.key_value.key",
        "resource_attributes.key_value.value",
        "attributes.key_value.key",
        "attributes.key_value.value",
    ];
    let (ids, times, bulky, group_rows): (&[&str], &[&str], &[&str], usize) = match meta.kind {
        SegmentKind::Spans => (
            &["trace_id", "span_id", "parent_span_id"],
            &["start_time_unix_nano", "end_time_unix_nano", "duration_ns"],
            &["events_json", "links_json"],
            MAX_SPAN_GROUP_ROWS,
        ),
        SegmentKind::Logs => (
            &["trace_id", "span_id"],
            &["time_unix_nano", "observed_time_unix_nano"],
            &["body"],
            LOG_GROUP_ROWS,
        ),
    };
    // Ids and times are nearly all distinct: a dictionary would only be
    // built to be thrown away. Times delta-encode to a few bits where sorted
    // (logs) and to no more than plain where not.
    for c in ids {
        b = b.set_column_dictionary_enabled(col(c), false);
    }
    for c in times {
        b = b
            .set_column_dictionary_enabled(col(c), false)
            .set_column_encoding(col(c), Encoding::DELTA_BINARY_PACKED);
    }
    // Min/max of free text prunes nothing and only fattens the footer.
    for c in bulky.iter().chain(&maps) {
        b = b.set_column_statistics_enabled(col(c), EnabledStatistics::None);
    }
    Ok(b.set_column_bloom_filter_fpp(col("trace_id"), BLOOM_FPP)
        .set_column_bloom_filter_max_ndv(col("trace_id"), group_rows as u64)
        .set_column_bloom_filter_fpp(col("service_name"), BLOOM_FPP)
        .set_column_bloom_filter_max_ndv(col("service_name"), MAX_SERVICES_PER_GROUP)
        .build())
}

type FileWriter = SerializedFileWriter<BufWriter<File>>;

/// Writes the segment to `path.tmp`, makes it durable, then renames it into
/// place: a crash leaves either no segment or a complete one, never a torn
/// file that `open` would have to judge.
fn write_segment(
    mut meta: SegmentMeta,
    kinds: &Kinds,
    rows: impl FnOnce(&mut FileWriter) -> std::result::Result<(), ParquetError>,
) -> Result<SegmentMeta> {
    let path = meta.path.clone();
    let mut tmp = path.clone().into_os_string();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let written = (|| {
        let props = writer_props(&meta, kinds).map_err(parquet_error(&tmp))?;
        let schema = parse_message_type(meta.kind.schema()).map_err(parquet_error(&tmp))?;
        let file = File::create(&tmp).map_err(io_error(&tmp))?;
        let mut writer =
            SerializedFileWriter::new(BufWriter::new(file), Arc::new(schema), Arc::new(props))
                .map_err(parquet_error(&tmp))?;
        rows(&mut writer).map_err(parquet_error(&tmp))?;
        let file = writer
            .into_inner()
            .map_err(parquet_error(&tmp))?
            .into_inner()
            .map_err(|e| io_error(&tmp)(e.into_error()))?;
        file.sync_all().map_err(io_error(&tmp))?;
        let bytes = file.metadata().map_err(io_error(&tmp))?.len();
        fs::rename(&tmp, &path).map_err(io_error(&path))?;
        sync_parent(&path)?;
        Ok(bytes)
    })();
    match written {
        Ok(bytes) => {
            meta.bytes = bytes;
            Ok(meta)
        }
        Err(e) => {
            // Best effort: a leftover `.tmp` is garbage, never a segment.
            let _ = fs::remove_file(&tmp);
            Err(e)
        }
    }
}

/// Makes the rename durable: on POSIX a new directory entry survives a power
/// loss only once the directory itself is synced.
fn sync_parent(path: &Path) -> Result<()> {
    #[cfg(unix)]
    {
        let dir = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(io_error(dir))?;
    }
    #[cfg(not(unix))]
    let _ = path;
    Ok(())
}
