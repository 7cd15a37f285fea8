//! Parquet plumbing below the segment API: the two schemas, writing one leaf
//! column with its definition and repetition levels, and reading one back.
//!
//! Columns are found by name, never by position, so a reader also copes with
//! files that gain columns later.

use std::io::Write;
use std::panic::AssertUnwindSafe;
use std::path::Path;

use parquet::basic::Type as Physical;
use parquet::column::writer::ColumnWriter;
use parquet::data_type::{
    ByteArray, ByteArrayType, DataType, FixedLenByteArray, FixedLenByteArrayType, Int32Type,
    Int64Type,
};
use parquet::errors::ParquetError;
use parquet::file::reader::RowGroupReader;
use parquet::file::writer::SerializedRowGroupWriter;
use parquet::schema::types::SchemaDescriptor;
use sonde_model::records::Attributes;

use crate::{Error, Result};

/// Spans. Times carry the TIMESTAMP logical type so DuckDB and pandas show
/// them as timestamps; `flags` is the OTLP `fixed32`, hence unsigned.
pub(super) const SPAN_SCHEMA: &str = "
message sonde_span {
  required fixed_len_byte_array(16) trace_id;
  required fixed_len_byte_array(8) span_id;
  optional fixed_len_byte_array(8) parent_span_id;
  required binary trace_state (STRING);
  required int32 flags (INTEGER(32,false));
  required binary name (STRING);
  required int32 kind;
  required int64 start_time_unix_nano (TIMESTAMP(NANOS,true));
  required int64 end_time_unix_nano (TIMESTAMP(NANOS,true));
  required int64 duration_ns;
  required int32 status_code;
  required binary status_message (STRING);
  required binary service_name (STRING);
  required binary host_name (STRING);
  required binary scope_name (STRING);
  required binary scope_version (STRING);
  required group resource_attributes (MAP) {
    repeated group key_value {
      required binary key (STRING);
      required binary value (STRING);
    }
  }
  required group attributes (MAP) {
    repeated group key_value {
      required binary key (STRING);
      required binary value (STRING);
    }
  }
  required binary events_json (STRING);
  required binary links_json (STRING);
}";

pub(super) const LOG_SCHEMA: &str = "
message sonde_log {
  required int64 time_unix_nano (TIMESTAMP(NANOS,true));
  required int64 observed_time_unix_nano (TIMESTAMP(NANOS,true));
  required int32 severity_number;
  required binary severity_text (STRING);
  required binary body (STRING);
  required binary event_name (STRING);
  optional fixed_len_byte_array(16) trace_id;
  optional fixed_len_byte_array(8) span_id;
  required int32 flags (INTEGER(32,false));
  required binary service_name (STRING);
  required binary host_name (STRING);
  required binary scope_name (STRING);
  required binary scope_version (STRING);
  required group resource_attributes (MAP) {
    repeated group key_value {
      required binary key (STRING);
      required binary value (STRING);
    }
  }
  required group attributes (MAP) {
    repeated group key_value {
      required binary key (STRING);
      required binary value (STRING);
    }
  }
}";

/// The leaf column paths a schema text declares, for checking a file's schema
/// against what this code reads.
pub(super) fn leaf_paths(schema: &SchemaDescriptor) -> Vec<(String, Physical)> {
    schema
        .columns()
        .iter()
        .map(|c| (c.path().string(), c.physical_type()))
        .collect()
}

/// The values of one leaf column for one row group, with its levels.
pub(super) struct Leaf {
    values: Values,
    def: Option<Vec<i16>>,
    rep: Option<Vec<i16>>,
}

enum Values {
    Bytes(Vec<ByteArray>),
    Fixed(Vec<FixedLenByteArray>),
    I32(Vec<i32>),
    I64(Vec<i64>),
}

impl Leaf {
    fn plain(values: Values) -> Leaf {
        Leaf {
            values,
            def: None,
            rep: None,
        }
    }

    pub(super) fn strings<'a>(it: impl Iterator<Item = &'a str>) -> Leaf {
        Leaf::plain(Values::Bytes(it.map(ByteArray::from).collect()))
    }

    /// Owned text (JSON columns), moved in without a copy.
    pub(super) fn owned_strings(it: impl Iterator<Item = String>) -> Leaf {
        Leaf::plain(Values::Bytes(
            it.map(|s| ByteArray::from(s.into_bytes())).collect(),
        ))
    }

    pub(super) fn fixed<'a>(it: impl Iterator<Item = &'a [u8]>) -> Leaf {
        Leaf::plain(Values::Fixed(
            it.map(|b| FixedLenByteArray::from(b.to_vec())).collect(),
        ))
    }

    /// An optional column: definition level 1 for a value, 0 for null.
    pub(super) fn optional_fixed<'a>(it: impl Iterator<Item = Option<&'a [u8]>>) -> Leaf {
        let mut def = Vec::new();
        let mut values = Vec::new();
        for v in it {
            def.push(i16::from(v.is_some()));
            values.extend(v.map(|b| FixedLenByteArray::from(b.to_vec())));
        }
        Leaf {
            values: Values::Fixed(values),
            def: Some(def),
            rep: None,
        }
    }

    pub(super) fn i32s(it: impl Iterator<Item = i32>) -> Leaf {
        Leaf::plain(Values::I32(it.collect()))
    }

    pub(super) fn i64s(it: impl Iterator<Item = i64>) -> Leaf {
        Leaf::plain(Values::I64(it.collect()))
    }

    /// The key or value leaf of a `MAP<string,string>` column. An empty map
    /// is one level pair (def 0, rep 0) and no value; entries have def 1 and
    /// rep 0 for a row's first, 1 for the rest.
    pub(super) fn map<'a>(rows: impl Iterator<Item = &'a Attributes>, keys: bool) -> Leaf {
        let (mut def, mut rep, mut values) = (Vec::new(), Vec::new(), Vec::new());
        for attrs in rows {
            if attrs.is_empty() {
                def.push(0);
                rep.push(0);
            }
            for (i, (k, v)) in attrs.iter().enumerate() {
                def.push(1);
                rep.push(i16::from(i > 0));
                values.push(if keys {
                    ByteArray::from(k.as_str())
                } else {
                    ByteArray::from(v.as_text().as_ref())
                });
            }
        }
        Leaf {
            values: Values::Bytes(values),
            def: Some(def),
            rep: Some(rep),
        }
    }
}

/// Writes every leaf column of a row group, in schema order, asking `leaf`
/// for the data of each by its dotted path.
pub(super) fn write_group<W: Write + Send>(
    rg: &mut SerializedRowGroupWriter<'_, W>,
    mut leaf: impl FnMut(&str) -> Option<Leaf>,
) -> std::result::Result<(), ParquetError> {
    while let Some(mut col) = rg.next_column()? {
        let name = col_name(col.untyped());
        let data = leaf(&name)
            .ok_or_else(|| ParquetError::General(format!("no data for column {name}")))?;
        let w = col.untyped();
        match &data.values {
            Values::Bytes(v) => write_typed::<ByteArrayType>(w, &name, &data, v),
            Values::Fixed(v) => write_typed::<FixedLenByteArrayType>(w, &name, &data, v),
            Values::I32(v) => write_typed::<Int32Type>(w, &name, &data, v),
            Values::I64(v) => write_typed::<Int64Type>(w, &name, &data, v),
        }?;
        col.close()?;
    }
    Ok(())
}

fn col_name(w: &ColumnWriter<'_>) -> String {
    let descr = match w {
        ColumnWriter::BoolColumnWriter(w) => w.get_descriptor(),
        ColumnWriter::Int32ColumnWriter(w) => w.get_descriptor(),
        ColumnWriter::Int64ColumnWriter(w) => w.get_descriptor(),
        ColumnWriter::Int96ColumnWriter(w) => w.get_descriptor(),
        ColumnWriter::FloatColumnWriter(w) => w.get_descriptor(),
        ColumnWriter::DoubleColumnWriter(w) => w.get_descriptor(),
        ColumnWriter::ByteArrayColumnWriter(w) => w.get_descriptor(),
        ColumnWriter::FixedLenByteArrayColumnWriter(w) => w.get_descriptor(),
    };
    descr.path().string()
}

fn write_typed<T: DataType>(
    w: &mut ColumnWriter<'_>,
    name: &str,
    leaf: &Leaf,
    values: &[T::T],
) -> std::result::Result<(), ParquetError> {
    let w = T::get_column_writer_mut(w).ok_or_else(|| {
        ParquetError::General(format!("column {name} is not {}", T::get_physical_type()))
    })?;
    w.write_batch(values, leaf.def.as_deref(), leaf.rep.as_deref())
        .map(|_| ())
}

/// One row group opened for reading, its columns looked up by name.
pub(super) struct GroupColumns<'a> {
    pub(super) rg: Box<dyn RowGroupReader + 'a>,
    pub(super) rows: usize,
    pub(super) path: &'a Path,
}

/// A `MAP<string,string>` column: row `r`'s entries are
/// `keys[offsets[r]..offsets[r + 1]]` and the same range of `values`.
pub(super) struct MapColumn {
    pub(super) offsets: Vec<usize>,
    pub(super) keys: Vec<ByteArray>,
    pub(super) values: Vec<ByteArray>,
}

/// A leaf column's non-null values and its definition and repetition levels
/// (empty when the column has none).
struct Decoded<T> {
    values: Vec<T>,
    def: Vec<i16>,
    rep: Vec<i16>,
}

impl MapColumn {
    pub(super) fn row(&self, r: usize) -> (&[ByteArray], &[ByteArray]) {
        let range = self.offsets[r]..self.offsets[r + 1];
        (&self.keys[range.clone()], &self.values[range])
    }
}

impl GroupColumns<'_> {
    pub(super) fn corrupt(&self, reason: impl Into<String>) -> Error {
        Error::Corrupt {
            path: self.path.to_path_buf(),
            reason: reason.into(),
        }
    }

    fn parquet(&self, source: ParquetError) -> Error {
        Error::Parquet {
            path: self.path.to_path_buf(),
            source,
        }
    }

    fn index(&self, name: &str) -> Result<usize> {
        let schema = self.rg.metadata().schema_descr();
        (0..schema.num_columns())
            .find(|&i| schema.column(i).path().string() == name)
            .ok_or_else(|| self.corrupt(format!("no column {name}")))
    }

    /// Reads all levels and values of a leaf column.
    fn read<T: DataType>(&self, name: &str, levels: bool) -> Result<Decoded<T::T>> {
        guard(self.path, || self.read_unguarded::<T>(name, levels))
    }

    fn read_unguarded<T: DataType>(&self, name: &str, levels: bool) -> Result<Decoded<T::T>> {
        let reader = self
            .rg
            .get_column_reader(self.index(name)?)
            .map_err(|e| self.parquet(e))?;
        let mut reader = T::get_column_reader(reader)
            .ok_or_else(|| self.corrupt(format!("column {name} has another type")))?;
        let (mut values, mut def, mut rep) =
            (Vec::with_capacity(self.rows), Vec::new(), Vec::new());
        let (d, r) = if levels {
            (Some(&mut def), Some(&mut rep))
        } else {
            (None, None)
        };
        let (records, _, _) = reader
            .read_records(self.rows, d, r, &mut values)
            .map_err(|e| self.parquet(e))?;
        if records != self.rows {
            return Err(self.corrupt(format!(
                "column {name} has {records} rows, not {}",
                self.rows
            )));
        }
        Ok(Decoded { values, def, rep })
    }

    pub(super) fn required<T: DataType>(&self, name: &str) -> Result<Vec<T::T>> {
        let values = self.read::<T>(name, false)?.values;
        if values.len() != self.rows {
            return Err(self.corrupt(format!(
                "column {name} has {} values for {} rows",
                values.len(),
                self.rows
            )));
        }
        Ok(values)
    }

    pub(super) fn optional<T: DataType>(&self, name: &str) -> Result<Vec<Option<T::T>>> {
        let Decoded { values, def, .. } = self.read::<T>(name, true)?;
        if def.len() != self.rows || values.len() != def.iter().filter(|&&d| d == 1).count() {
            return Err(self.corrupt(format!("column {name} has inconsistent levels")));
        }
        let mut values = values.into_iter();
        Ok(def
            .iter()
            .map(|&d| if d == 1 { values.next() } else { None })
            .collect())
    }

    /// Reads the map column `name` (`name.key_value.key` and `.value`).
    pub(super) fn map(&self, name: &str) -> Result<MapColumn> {
        // Row r's entries start where its first level (repetition 0) is.
        let offsets = |leaf: &Decoded<ByteArray>| -> Option<Vec<usize>> {
            let mut offsets = Vec::with_capacity(self.rows + 1);
            let mut count = 0;
            for (&d, &r) in leaf.def.iter().zip(&leaf.rep) {
                if r == 0 {
                    offsets.push(count);
                }
                count += usize::from(d == 1);
            }
            offsets.push(count);
            let consistent = leaf.def.len() == leaf.rep.len() && count == leaf.values.len();
            (consistent && offsets.len() == self.rows + 1).then_some(offsets)
        };
        let keys = self.read::<ByteArrayType>(&format!("{name}.key_value.key"), true)?;
        let values = self.read::<ByteArrayType>(&format!("{name}.key_value.value"), true)?;
        match (offsets(&keys), offsets(&values)) {
            (Some(offsets), Some(other)) if offsets == other => Ok(MapColumn {
                offsets,
                keys: keys.values,
                values: values.values,
            }),
            _ => Err(self.corrupt(format!("map column {name} has inconsistent levels"))),
        }
    }
}

/// Runs parquet decoding, turning a panic into a corruption error.
///
/// The parquet crate asserts on some malformed input instead of returning an
/// error (a bit-packed run longer than its page, for one); a damaged segment
/// must fail its query, not the thread serving it. Only decoding runs inside,
/// never a caller's closure, so no state of ours is left half-updated.
pub(super) fn guard<T>(path: &Path, decode: impl FnOnce() -> Result<T>) -> Result<T> {
    std::panic::catch_unwind(AssertUnwindSafe(decode)).unwrap_or_else(|panic| {
        let message = panic
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_default();
        Err(Error::Corrupt {
            path: path.to_path_buf(),
            reason: format!("parquet decoder failed: {message}"),
        })
    })
}

/// The text of a string value, or a corruption error.
pub(super) fn text<'a>(path: &Path, v: &'a ByteArray) -> Result<&'a str> {
    // `as_utf8`, unlike `data`, does not panic on a value without data.
    v.as_utf8().map_err(|_| Error::Corrupt {
        path: path.to_path_buf(),
        reason: "string column holds invalid UTF-8".into(),
    })
}

/// A value's bytes; `None` for a value the decoder left unset, on which
/// `ByteArray::data` would panic (it compares equal to `ByteArray::new()`).
pub(super) fn raw(v: &ByteArray) -> Option<&[u8]> {
    (*v != ByteArray::new()).then(|| v.data())
}

/// A fixed-size id from a fixed-length column value.
pub(super) fn id<const N: usize>(path: &Path, v: &FixedLenByteArray) -> Result<[u8; N]> {
    let bytes = raw(v).unwrap_or_default();
    bytes.try_into().map_err(|_| Error::Corrupt {
        path: path.to_path_buf(),
        reason: format!("id of {} bytes, expected {N}", bytes.len()),
    })
}
