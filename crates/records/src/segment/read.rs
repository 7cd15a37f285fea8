//! Reading segments: what `open` keeps in memory, the pruning it allows,
//! and turning the columns of a row group back into records.

use std::fs::File;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use parquet::bloom_filter::Sbbf;
use parquet::data_type::{
    ByteArray, ByteArrayType, FixedLenByteArray, FixedLenByteArrayType, Int32Type, Int64Type,
};
use parquet::file::metadata::{ParquetMetaData, ParquetMetaDataReader, RowGroupMetaData};
use parquet::file::properties::ReaderProperties;
use parquet::file::serialized_reader::SerializedRowGroupReader;
use parquet::file::statistics::Statistics;
use parquet::schema::parser::parse_message_type;
use parquet::schema::types::SchemaDescriptor;
use rustc_hash::FxHashMap;
use sonde_model::records::{
    AttrKind, AttrValue, Attributes, LogRecord, Origin, SpanId, SpanKind, SpanRecord, StatusCode,
    TimestampNs, TraceId,
};

use super::columns::{self, GroupColumns, MapColumn};
use super::{corrupt, io_error, json, parquet_error, Kinds, ScanHints, SegmentKind, SegmentMeta};
use super::{KEY_FORMAT, KEY_KINDS, KEY_MAX_TIME, KEY_MIN_TIME, KEY_SERVICES};
use crate::Result;

/// Visits the spans of `seg` that pass `hints`, in file order.
pub(super) fn spans(
    seg: &Segment,
    hints: &ScanHints,
    visit: &mut dyn FnMut(SpanRecord) -> bool,
) -> Result<()> {
    let mut origins = Origins::default();
    seg.for_each_group(hints, false, |g| {
        // The columns the hints test come first; the rest only for a group
        // where some row passes.
        let trace_id = g.required::<FixedLenByteArrayType>("trace_id")?;
        let start = g.required::<Int64Type>("start_time_unix_nano")?;
        let end = g.required::<Int64Type>("end_time_unix_nano")?;
        let service = g.required::<ByteArrayType>("service_name")?;
        let pass: Vec<usize> = (0..g.rows)
            .filter(|&r| {
                hints.overlaps(start[r], end[r])
                    && row_passes(hints, &service[r], Some(&trace_id[r]))
            })
            .collect();
        if pass.is_empty() {
            return Ok(true);
        }
        let rest = SpanColumns::read(g, service)?;
        for r in pass {
            let span = rest.span(
                g.path,
                r,
                (&trace_id[r], start[r], end[r]),
                &mut origins,
                &seg.kinds,
            )?;
            if !visit(span) {
                return Ok(false);
            }
        }
        Ok(true)
    })
}

/// Visits the logs of `seg` that pass `hints`, newest first: the file is
/// sorted by time, so row groups and their rows are read backwards.
pub(super) fn logs(
    seg: &Segment,
    hints: &ScanHints,
    visit: &mut dyn FnMut(LogRecord) -> bool,
) -> Result<()> {
    let mut origins = Origins::default();
    seg.for_each_group(hints, true, |g| {
        let time = g.required::<Int64Type>("time_unix_nano")?;
        let trace_id = g.optional::<FixedLenByteArrayType>("trace_id")?;
        let service = g.required::<ByteArrayType>("service_name")?;
        let pass: Vec<usize> = (0..g.rows)
            .rev()
            .filter(|&r| {
                hints.overlaps(time[r], time[r])
                    && row_passes(hints, &service[r], trace_id[r].as_ref())
            })
            .collect();
        if pass.is_empty() {
            return Ok(true);
        }
        let rest = LogColumns::read(g, service)?;
        for r in pass {
            let log = rest.log(
                g.path,
                r,
                time[r],
                trace_id[r].as_ref(),
                &mut origins,
                &seg.kinds,
            )?;
            if !visit(log) {
                return Ok(false);
            }
        }
        Ok(true)
    })
}

fn attributes(
    path: &Path,
    (keys, values): (&[ByteArray], &[ByteArray]),
    kinds: &FxHashMap<String, AttrKind>,
) -> Result<Attributes> {
    keys.iter()
        .zip(values)
        .map(|(k, v)| {
            let k = columns::text(path, k)?;
            let kind = kinds.get(k).copied().unwrap_or(AttrKind::Str);
            Ok((
                k.to_string(),
                AttrValue::from_text(kind, columns::text(path, v)?),
            ))
        })
        .collect()
}

/// Hands out one `Arc<Origin>` per distinct origin met during a read, as the
/// writer's batches shared them, instead of one copy per row.
#[derive(Default)]
struct Origins {
    seen: FxHashMap<Vec<u8>, Arc<Origin>>,
    /// Scratch: the length-prefixed bytes that identify the current origin.
    key: Vec<u8>,
}

/// The origin columns of one row group.
struct OriginColumns {
    service: Vec<ByteArray>,
    host: Vec<ByteArray>,
    scope_name: Vec<ByteArray>,
    scope_version: Vec<ByteArray>,
    resource: MapColumn,
}

impl OriginColumns {
    fn read(g: &GroupColumns<'_>, service: Vec<ByteArray>) -> Result<OriginColumns> {
        Ok(OriginColumns {
            service,
            host: g.required::<ByteArrayType>("host_name")?,
            scope_name: g.required::<ByteArrayType>("scope_name")?,
            scope_version: g.required::<ByteArrayType>("scope_version")?,
            resource: g.map("resource_attributes")?,
        })
    }
}

impl Origins {
    fn get(
        &mut self,
        path: &Path,
        c: &OriginColumns,
        r: usize,
        kinds: &Kinds,
    ) -> Result<Arc<Origin>> {
        let (keys, values) = c.resource.row(r);
        let parts = [
            &c.service[r],
            &c.host[r],
            &c.scope_name[r],
            &c.scope_version[r],
        ];
        self.key.clear();
        self.key
            .extend_from_slice(&(keys.len() as u64).to_le_bytes());
        for part in parts
            .into_iter()
            .chain(keys.iter().zip(values).flat_map(|(k, v)| [k, v]))
        {
            let text = columns::text(path, part)?;
            self.key
                .extend_from_slice(&(text.len() as u64).to_le_bytes());
            self.key.extend_from_slice(text.as_bytes());
        }
        if let Some(o) = self.seen.get(self.key.as_slice()) {
            return Ok(o.clone());
        }
        let text = |v: &ByteArray| columns::text(path, v).map(str::to_string);
        let origin = Arc::new(Origin {
            service: text(parts[0])?,
            host: text(parts[1])?,
            scope_name: text(parts[2])?,
            scope_version: text(parts[3])?,
            resource: attributes(path, (keys, values), &kinds.resource)?,
        });
        self.seen.insert(self.key.clone(), origin.clone());
        Ok(origin)
    }
}

/// What `open` keeps of a row group to decide, without reading it, whether
/// it may hold rows that pass some hints.
#[derive(Debug)]
pub(super) struct GroupIndex {
    rows: usize,
    /// The group's time bounds (spans: earliest start, latest end), when the
    /// statistics give them.
    time: Option<(TimestampNs, TimestampNs)>,
    pub(super) trace: Probe,
    service: Probe,
}

/// Min/max statistics and the bloom filter of one byte column; either may be
/// missing, which prunes nothing.
#[derive(Debug, Default)]
pub(super) struct Probe {
    pub(super) range: Option<(Vec<u8>, Vec<u8>)>,
    pub(super) bloom: Option<Sbbf>,
}

impl Probe {
    fn read(path: &Path, file: &File, rg: &RowGroupMetaData, name: &str) -> Result<Probe> {
        let Some(i) = (0..rg.num_columns()).find(|&i| rg.column(i).column_path().string() == name)
        else {
            return Ok(Probe::default());
        };
        let chunk = rg.column(i);
        let bytes = |v: &ByteArray| columns::raw(v).map(<[u8]>::to_vec);
        let range = match chunk.statistics() {
            Some(Statistics::ByteArray(s)) => {
                s.min_opt().and_then(bytes).zip(s.max_opt().and_then(bytes))
            }
            Some(Statistics::FixedLenByteArray(s)) => s
                .min_opt()
                .and_then(|v| bytes(v))
                .zip(s.max_opt().and_then(|v| bytes(v))),
            _ => None,
        };
        let bloom = Sbbf::read_from_column_chunk(chunk, file).map_err(parquet_error(path))?;
        // A filter without blocks (only a damaged file has one) would panic
        // when probed.
        let bloom = bloom.filter(|b| b.num_blocks() > 0);
        Ok(Probe { range, bloom })
    }

    fn may_contain(&self, value: &[u8]) -> bool {
        self.range
            .as_ref()
            .is_none_or(|(lo, hi)| lo.as_slice() <= value && value <= hi.as_slice())
            && self.bloom.as_ref().is_none_or(|b| b.check(value))
    }
}

fn i64_stat(rg: &RowGroupMetaData, name: &str, max: bool) -> Option<i64> {
    let chunk = (0..rg.num_columns())
        .map(|i| rg.column(i))
        .find(|c| c.column_path().string() == name)?;
    match chunk.statistics()? {
        Statistics::Int64(s) if max => s.max_opt().copied(),
        Statistics::Int64(s) => s.min_opt().copied(),
        _ => None,
    }
}

impl GroupIndex {
    fn may_match(&self, hints: &ScanHints) -> bool {
        self.time.is_none_or(|(lo, hi)| hints.overlaps(lo, hi))
            && hints
                .service
                .as_ref()
                .is_none_or(|s| self.service.may_contain(s.as_bytes()))
            && hints
                .trace_id
                .as_ref()
                .is_none_or(|t| self.trace.may_contain(&t.0))
    }
}

/// What spans and logs segments share: the footer, the per-group index and
/// the attribute kinds, all read once by `open`.
pub(super) struct Segment {
    meta: SegmentMeta,
    metadata: Arc<ParquetMetaData>,
    pub(super) groups: Vec<GroupIndex>,
    kinds: Kinds,
    props: Arc<ReaderProperties>,
    /// Row groups decoded so far: lets tests see that pruning works.
    groups_read: AtomicU64,
}

impl Segment {
    pub(super) fn open(path: &Path, kind: SegmentKind) -> Result<Segment> {
        columns::guard(path, || Segment::open_unguarded(path, kind))
    }

    fn open_unguarded(path: &Path, kind: SegmentKind) -> Result<Segment> {
        let file = File::open(path).map_err(io_error(path))?;
        let bytes = file.metadata().map_err(io_error(path))?.len();
        let metadata = ParquetMetaDataReader::new()
            .parse_and_finish(&file)
            .map_err(parquet_error(path))?;
        let kv = metadata.file_metadata().key_value_metadata();
        let get = |key: &str| {
            kv.and_then(|kv| kv.iter().find(|e| e.key == key))
                .and_then(|e| e.value.as_deref())
        };
        let missing = |key: &str| corrupt(path, format!("footer lacks a valid {key}"));
        if get(KEY_FORMAT) != Some(kind.format()) {
            return Err(corrupt(path, format!("not a {} segment", kind.format())));
        }
        let time = |key: &str| {
            get(key)
                .and_then(|v| v.parse::<TimestampNs>().ok())
                .ok_or_else(|| missing(key))
        };
        let services: Vec<String> = get(KEY_SERVICES)
            .and_then(|v| serde_json::from_str(v).ok())
            .ok_or_else(|| missing(KEY_SERVICES))?;
        let kinds = get(KEY_KINDS)
            .and_then(Kinds::from_json)
            .ok_or_else(|| missing(KEY_KINDS))?;
        check_schema(path, kind, metadata.file_metadata().schema_descr())?;
        let (first, last) = match kind {
            SegmentKind::Spans => ("start_time_unix_nano", "end_time_unix_nano"),
            SegmentKind::Logs => ("time_unix_nano", "time_unix_nano"),
        };
        let groups = metadata
            .row_groups()
            .iter()
            .map(|rg| {
                check_ranges(path, rg, bytes)?;
                Ok(GroupIndex {
                    rows: usize::try_from(rg.num_rows())
                        .map_err(|_| corrupt(path, "negative row count"))?,
                    time: i64_stat(rg, first, false).zip(i64_stat(rg, last, true)),
                    trace: Probe::read(path, &file, rg, "trace_id")?,
                    service: Probe::read(path, &file, rg, "service_name")?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let meta = SegmentMeta {
            path: path.to_path_buf(),
            kind,
            min_time_ns: time(KEY_MIN_TIME)?,
            max_time_ns: time(KEY_MAX_TIME)?,
            rows: groups.iter().map(|g| g.rows as u64).sum(),
            bytes,
            services,
        };
        Ok(Segment {
            meta,
            metadata: Arc::new(metadata),
            groups,
            kinds,
            props: Arc::new(ReaderProperties::builder().build()),
            groups_read: AtomicU64::new(0),
        })
    }

    pub(super) fn meta(&self) -> &SegmentMeta {
        &self.meta
    }

    /// Bloom filters and min/max of `trace_id`, no data read.
    pub(super) fn may_contain_trace(&self, id: &TraceId) -> bool {
        self.groups.iter().any(|g| g.trace.may_contain(&id.0))
    }

    /// Row groups decoded by reads of this segment so far.
    #[cfg(test)]
    pub(super) fn groups_read(&self) -> u64 {
        self.groups_read.load(Ordering::Relaxed)
    }

    fn may_match(&self, hints: &ScanHints) -> bool {
        let m = &self.meta;
        m.rows > 0
            && hints.overlaps(m.min_time_ns, m.max_time_ns)
            && hints
                .service
                .as_ref()
                .is_none_or(|s| m.services.binary_search(s).is_ok())
    }

    /// Opens, in file order or backwards, each row group that may hold rows
    /// passing `hints`, and hands it to `f` until `f` returns false.
    ///
    /// The file is opened afresh for each call: parquet's `File` reader seeks
    /// a handle shared by its clones, so one handle must not serve two reads
    /// at once, and keeping none open spares file descriptors.
    fn for_each_group(
        &self,
        hints: &ScanHints,
        backwards: bool,
        mut f: impl FnMut(&GroupColumns<'_>) -> Result<bool>,
    ) -> Result<()> {
        if !self.may_match(hints) {
            return Ok(());
        }
        let path = &self.meta.path;
        let file = Arc::new(File::open(path).map_err(io_error(path))?);
        let order: Box<dyn Iterator<Item = usize>> = if backwards {
            Box::new((0..self.groups.len()).rev())
        } else {
            Box::new(0..self.groups.len())
        };
        for i in order {
            if !self.groups[i].may_match(hints) {
                continue;
            }
            let rg = columns::guard(path, || {
                SerializedRowGroupReader::new(
                    file.clone(),
                    self.metadata.row_group(i),
                    self.metadata.page_index_for_row_group(i),
                    self.props.clone(),
                )
                .map_err(parquet_error(path))
            })?;
            self.groups_read.fetch_add(1, Ordering::Relaxed);
            let g = GroupColumns {
                rg: Box::new(rg),
                rows: self.groups[i].rows,
                path,
            };
            if !f(&g)? {
                break;
            }
        }
        Ok(())
    }
}

/// Checks that every column chunk and bloom filter of a row group lies
/// within the file. The parquet crate asserts (panics) on negative offsets
/// and allocates whatever length a damaged footer claims; checked here, such
/// a file is an error at `open`.
fn check_ranges(path: &Path, rg: &RowGroupMetaData, file_len: u64) -> Result<()> {
    let within = |start: i64, len: i64| {
        u64::try_from(start)
            .ok()
            .zip(u64::try_from(len).ok())
            .and_then(|(start, len)| start.checked_add(len))
            .is_some_and(|end| end <= file_len)
    };
    for c in rg.columns() {
        let start = c.dictionary_page_offset().unwrap_or(c.data_page_offset());
        let bloom_ok = match (c.bloom_filter_offset(), c.bloom_filter_length()) {
            (Some(offset), Some(len)) => within(offset, i64::from(len)),
            (Some(offset), None) => within(offset, 0),
            (None, _) => true,
        };
        if !within(start, c.compressed_size()) || !within(c.data_page_offset(), 0) || !bloom_ok {
            return Err(corrupt(
                path,
                format!("column {} lies outside the file", c.column_path()),
            ));
        }
    }
    Ok(())
}

/// Refuses files whose columns are not what this code reads, up front,
/// rather than failing on some row group later.
fn check_schema(path: &Path, kind: SegmentKind, found: &SchemaDescriptor) -> Result<()> {
    let expected = parse_message_type(kind.schema()).map_err(parquet_error(path))?;
    let expected = SchemaDescriptor::new(Arc::new(expected));
    let found = columns::leaf_paths(found);
    match columns::leaf_paths(&expected)
        .into_iter()
        .find(|c| !found.contains(c))
    {
        Some((name, ty)) => Err(corrupt(path, format!("no {ty} column {name}"))),
        None => Ok(()),
    }
}

/// Whether a row passes the hints' service and trace id, by raw bytes.
fn row_passes(hints: &ScanHints, service: &ByteArray, trace: Option<&FixedLenByteArray>) -> bool {
    hints
        .service
        .as_ref()
        .is_none_or(|s| columns::raw(service) == Some(s.as_bytes()))
        && hints
            .trace_id
            .as_ref()
            .is_none_or(|t| trace.and_then(|v| columns::raw(v)) == Some(&t.0[..]))
}

/// The columns of a spans row group besides those a scan filters on first.
struct SpanColumns {
    span_id: Vec<FixedLenByteArray>,
    parent: Vec<Option<FixedLenByteArray>>,
    trace_state: Vec<ByteArray>,
    flags: Vec<i32>,
    name: Vec<ByteArray>,
    kind: Vec<i32>,
    status: Vec<i32>,
    status_message: Vec<ByteArray>,
    origin: OriginColumns,
    attributes: MapColumn,
    events: Vec<ByteArray>,
    links: Vec<ByteArray>,
}

impl SpanColumns {
    fn read(g: &GroupColumns<'_>, service: Vec<ByteArray>) -> Result<SpanColumns> {
        Ok(SpanColumns {
            span_id: g.required::<FixedLenByteArrayType>("span_id")?,
            parent: g.optional::<FixedLenByteArrayType>("parent_span_id")?,
            trace_state: g.required::<ByteArrayType>("trace_state")?,
            flags: g.required::<Int32Type>("flags")?,
            name: g.required::<ByteArrayType>("name")?,
            kind: g.required::<Int32Type>("kind")?,
            status: g.required::<Int32Type>("status_code")?,
            status_message: g.required::<ByteArrayType>("status_message")?,
            origin: OriginColumns::read(g, service)?,
            attributes: g.map("attributes")?,
            events: g.required::<ByteArrayType>("events_json")?,
            links: g.required::<ByteArrayType>("links_json")?,
        })
    }

    /// Row `r`, given the values of the columns read first.
    fn span(
        &self,
        path: &Path,
        r: usize,
        (trace_id, start_ns, end_ns): (&FixedLenByteArray, TimestampNs, TimestampNs),
        origins: &mut Origins,
        kinds: &Kinds,
    ) -> Result<SpanRecord> {
        let text = |v: &ByteArray| columns::text(path, v).map(str::to_string);
        Ok(SpanRecord {
            trace_id: TraceId(columns::id(path, trace_id)?),
            span_id: SpanId(columns::id(path, &self.span_id[r])?),
            parent_span_id: self.parent[r]
                .as_ref()
                .map(|p| columns::id(path, p).map(SpanId))
                .transpose()?,
            trace_state: text(&self.trace_state[r])?,
            flags: self.flags[r] as u32,
            name: text(&self.name[r])?,
            kind: SpanKind::from_i32(self.kind[r]),
            start_ns,
            end_ns,
            status: StatusCode::from_i32(self.status[r]),
            status_message: text(&self.status_message[r])?,
            origin: origins.get(path, &self.origin, r, kinds)?,
            attributes: attributes(path, self.attributes.row(r), &kinds.attributes)?,
            events: json::decode_events(columns::text(path, &self.events[r])?)
                .map_err(|e| corrupt(path, e))?,
            links: json::decode_links(columns::text(path, &self.links[r])?)
                .map_err(|e| corrupt(path, e))?,
        })
    }
}

/// The columns of a logs row group besides those a scan filters on first.
struct LogColumns {
    observed: Vec<i64>,
    severity_number: Vec<i32>,
    severity_text: Vec<ByteArray>,
    body: Vec<ByteArray>,
    event_name: Vec<ByteArray>,
    span_id: Vec<Option<FixedLenByteArray>>,
    flags: Vec<i32>,
    origin: OriginColumns,
    attributes: MapColumn,
}

impl LogColumns {
    fn read(g: &GroupColumns<'_>, service: Vec<ByteArray>) -> Result<LogColumns> {
        Ok(LogColumns {
            observed: g.required::<Int64Type>("observed_time_unix_nano")?,
            severity_number: g.required::<Int32Type>("severity_number")?,
            severity_text: g.required::<ByteArrayType>("severity_text")?,
            body: g.required::<ByteArrayType>("body")?,
            event_name: g.required::<ByteArrayType>("event_name")?,
            span_id: g.optional::<FixedLenByteArrayType>("span_id")?,
            flags: g.required::<Int32Type>("flags")?,
            origin: OriginColumns::read(g, service)?,
            attributes: g.map("attributes")?,
        })
    }

    fn log(
        &self,
        path: &Path,
        r: usize,
        time_ns: TimestampNs,
        trace_id: Option<&FixedLenByteArray>,
        origins: &mut Origins,
        kinds: &Kinds,
    ) -> Result<LogRecord> {
        let text = |v: &ByteArray| columns::text(path, v).map(str::to_string);
        let severity = self.severity_number[r];
        Ok(LogRecord {
            time_ns,
            observed_ns: self.observed[r],
            severity_number: u8::try_from(severity)
                .map_err(|_| corrupt(path, format!("severity {severity}")))?,
            severity_text: text(&self.severity_text[r])?,
            body: text(&self.body[r])?,
            event_name: text(&self.event_name[r])?,
            trace_id: trace_id
                .map(|t| columns::id(path, t).map(TraceId))
                .transpose()?,
            span_id: self.span_id[r]
                .as_ref()
                .map(|s| columns::id(path, s).map(SpanId))
                .transpose()?,
            flags: self.flags[r] as u32,
            origin: origins.get(path, &self.origin, r, kinds)?,
            attributes: attributes(path, self.attributes.row(r), &kinds.attributes)?,
        })
    }
}
