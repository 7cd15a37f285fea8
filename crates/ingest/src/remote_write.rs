//! Prometheus remote write v1: snappy-compressed protobuf `WriteRequest`.
//!
//! The message types are declared here rather than generated: they are small
//! and stable, and this keeps protoc out of the build.

use prost::Message;
use sonde_model::{
    is_valid_label_name, is_valid_metric_name, Exemplar, Labels, MetricMetadata, MetricType,
    Sample, Series, SeriesExemplar, SeriesView,
};

use crate::{Error, MetricsBatch, Result};

#[derive(Clone, PartialEq, Message)]
pub struct WriteRequest {
    #[prost(message, repeated, tag = "1")]
    pub timeseries: Vec<TimeSeries>,
    #[prost(message, repeated, tag = "3")]
    pub metadata: Vec<Metadata>,
}

#[derive(Clone, PartialEq, Message)]
pub struct TimeSeries {
    #[prost(message, repeated, tag = "1")]
    pub labels: Vec<Label>,
    #[prost(message, repeated, tag = "2")]
    pub samples: Vec<PbSample>,
    #[prost(message, repeated, tag = "3")]
    pub exemplars: Vec<PbExemplar>,
}

#[derive(Clone, PartialEq, Message)]
pub struct PbExemplar {
    #[prost(message, repeated, tag = "1")]
    pub labels: Vec<Label>,
    #[prost(double, tag = "2")]
    pub value: f64,
    #[prost(int64, tag = "3")]
    pub timestamp: i64,
}

#[derive(Clone, PartialEq, Message)]
pub struct Label {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(string, tag = "2")]
    pub value: String,
}

#[derive(Clone, PartialEq, Message)]
pub struct PbSample {
    #[prost(double, tag = "1")]
    pub value: f64,
    #[prost(int64, tag = "2")]
    pub timestamp: i64,
}

#[derive(Clone, PartialEq, Message)]
pub struct Metadata {
    /// 0 unknown, 1 counter, 2 gauge, 3 histogram, 4 gaugehistogram,
    /// 5 summary, 6 info, 7 stateset.
    #[prost(int32, tag = "1")]
    pub r#type: i32,
    #[prost(string, tag = "2")]
    pub metric_family_name: String,
    #[prost(string, tag = "4")]
    pub help: String,
    #[prost(string, tag = "5")]
    pub unit: String,
}

/// A decoded request whose label strings borrow the decompressed body.
#[derive(Debug, Default, PartialEq)]
pub struct WriteBatch<'a> {
    pub series: Vec<SeriesView<'a>>,
    pub metadata: Vec<MetricMetadata>,
    /// Exemplars with their series' labels: rare next to samples, so these
    /// are owned copies.
    pub exemplars: Vec<SeriesExemplar>,
    /// Native histogram samples (`TimeSeries.histograms`), which the store
    /// does not keep yet: the transport must say they were not stored.
    pub native_histograms: usize,
}

/// Undoes the snappy (block format) compression of a remote-write body.
pub fn decompress(body: &[u8]) -> Result<Vec<u8>> {
    decompress_limited(body, usize::MAX)
}

/// As [`decompress`], refusing bodies that would inflate past `limit`
/// before allocating anything: the length is declared in snappy's header.
pub fn decompress_limited(body: &[u8], limit: usize) -> Result<Vec<u8>> {
    let len = snap::raw::decompress_len(body).map_err(|e| Error::Snappy(e.to_string()))?;
    if len > limit {
        return Err(Error::TooLarge(limit));
    }
    snap::raw::Decoder::new()
        .decompress_vec(body)
        .map_err(|e| Error::Snappy(e.to_string()))
}

/// Decodes a snappy-compressed body into owned series.
pub fn decode(body: &[u8]) -> Result<MetricsBatch> {
    decode_uncompressed(&decompress(body)?)
}

/// Decodes an uncompressed `WriteRequest` into owned series.
pub fn decode_uncompressed(raw: &[u8]) -> Result<MetricsBatch> {
    let batch = decode_views(raw)?;
    Ok(MetricsBatch {
        series: batch
            .series
            .iter()
            .map(|v| Series {
                labels: v.to_labels(),
                samples: v.samples.clone(),
                histograms: Vec::new(),
            })
            .collect(),
        metadata: batch.metadata,
        exemplars: batch.exemplars,
        ..MetricsBatch::default()
    })
}

/// Decodes an uncompressed `WriteRequest` without copying label strings.
///
/// Protobuf is parsed by hand here: this is the hottest path of a
/// Prometheus-fed server, and borrowing the strings lets the store find an
/// existing series without allocating anything.
pub fn decode_views(raw: &[u8]) -> Result<WriteBatch<'_>> {
    let mut batch = WriteBatch::default();
    let mut r = Wire::new(raw);
    while let Some((field, wire)) = r.key()? {
        match (field, wire) {
            (1, LEN) => {
                let (series, exemplars) = decode_series(r.bytes()?, &mut batch.native_histograms)?;
                if !exemplars.is_empty() {
                    let labels = series.to_labels();
                    batch
                        .exemplars
                        .extend(exemplars.into_iter().map(|e| (labels.clone(), e)));
                }
                batch.series.push(series);
            }
            (3, LEN) => batch.metadata.push(decode_metadata(r.bytes()?)?),
            _ => r.skip(wire)?,
        }
    }
    Ok(batch)
}

type DecodedSeries<'a> = (SeriesView<'a>, Vec<Exemplar>);

fn decode_series<'a>(buf: &'a [u8], histograms: &mut usize) -> Result<DecodedSeries<'a>> {
    let mut labels: Vec<(&str, &str)> = Vec::with_capacity(16);
    let mut samples = Vec::new();
    let mut exemplars = Vec::new();
    let mut r = Wire::new(buf);
    while let Some((field, wire)) = r.key()? {
        match (field, wire) {
            (1, LEN) => {
                let mut l = Wire::new(r.bytes()?);
                let (mut name, mut value) = ("", "");
                while let Some((f, w)) = l.key()? {
                    match (f, w) {
                        (1, LEN) => name = l.str()?,
                        (2, LEN) => value = l.str()?,
                        _ => l.skip(w)?,
                    }
                }
                labels.push((name, value));
            }
            (3, LEN) => exemplars.push(decode_exemplar(r.bytes()?)?),
            (4, LEN) => {
                r.bytes()?;
                *histograms += 1;
            }
            (2, LEN) => {
                let mut p = Wire::new(r.bytes()?);
                let mut sample = Sample { t: 0, v: 0.0 };
                while let Some((f, w)) = p.key()? {
                    match (f, w) {
                        (1, I64) => sample.v = f64::from_bits(p.fixed64()?),
                        (2, VARINT) => sample.t = p.varint()? as i64,
                        _ => p.skip(w)?,
                    }
                }
                samples.push(sample);
            }
            _ => r.skip(wire)?,
        }
    }
    // Sorted once, duplicates are neighbours: linear, whatever the count.
    labels.sort_unstable_by(|a, b| a.0.cmp(b.0));
    let mut has_name = false;
    for (i, &(name, value)) in labels.iter().enumerate() {
        if name == sonde_model::METRIC_NAME {
            if !is_valid_metric_name(value) {
                return Err(Error::InvalidMetricName(value.to_string()));
            }
            has_name = true;
        } else if !is_valid_label_name(name) {
            return Err(Error::InvalidLabelName(name.to_string()));
        }
        if i > 0 && labels[i - 1].0 == name {
            return Err(Error::DuplicateLabel(name.to_string()));
        }
    }
    if !has_name {
        return Err(Error::MissingMetricName);
    }
    Ok((SeriesView::new(labels, samples), exemplars))
}

/// An exemplar's labels are kept as sent (the store checks their length);
/// empty values are dropped and, of repeated names, the last one kept.
fn decode_exemplar(buf: &[u8]) -> Result<Exemplar> {
    let mut labels: Vec<(&str, &str)> = Vec::new();
    let mut e = Exemplar {
        labels: Labels::empty(),
        value: 0.0,
        t: 0,
    };
    let mut r = Wire::new(buf);
    while let Some((field, wire)) = r.key()? {
        match (field, wire) {
            (1, LEN) => {
                let mut l = Wire::new(r.bytes()?);
                let (mut name, mut value) = ("", "");
                while let Some((f, w)) = l.key()? {
                    match (f, w) {
                        (1, LEN) => name = l.str()?,
                        (2, LEN) => value = l.str()?,
                        _ => l.skip(w)?,
                    }
                }
                labels.push((name, value));
            }
            (2, I64) => e.value = f64::from_bits(r.fixed64()?),
            (3, VARINT) => e.t = r.varint()? as i64,
            _ => r.skip(wire)?,
        }
    }
    e.labels = Labels::from_pairs(labels);
    Ok(e)
}

fn decode_metadata(buf: &[u8]) -> Result<MetricMetadata> {
    let mut m = MetricMetadata {
        metric: String::new(),
        kind: MetricType::Unknown,
        help: String::new(),
        unit: String::new(),
    };
    let mut r = Wire::new(buf);
    while let Some((field, wire)) = r.key()? {
        match (field, wire) {
            (1, VARINT) => {
                m.kind = match r.varint()? {
                    1 => MetricType::Counter,
                    2 => MetricType::Gauge,
                    3 => MetricType::Histogram,
                    5 => MetricType::Summary,
                    _ => MetricType::Unknown,
                }
            }
            (2, LEN) => m.metric = r.str()?.to_string(),
            (4, LEN) => m.help = r.str()?.to_string(),
            (5, LEN) => m.unit = r.str()?.to_string(),
            _ => r.skip(wire)?,
        }
    }
    Ok(m)
}

const VARINT: u8 = 0;
const I64: u8 = 1;
const LEN: u8 = 2;
const I32: u8 = 5;

/// A bounds-checked protobuf wire-format reader.
struct Wire<'a> {
    buf: &'a [u8],
    pos: usize,
}

fn truncated() -> Error {
    Error::Protobuf("message truncated or malformed".into())
}

impl<'a> Wire<'a> {
    fn new(buf: &'a [u8]) -> Wire<'a> {
        Wire { buf, pos: 0 }
    }

    fn varint(&mut self) -> Result<u64> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = *self.buf.get(self.pos).ok_or_else(truncated)?;
            self.pos += 1;
            v |= ((b & 0x7f) as u64) << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(Error::Protobuf("varint longer than 10 bytes".into()))
    }

    /// The next field number and wire type, or `None` at the end.
    fn key(&mut self) -> Result<Option<(u64, u8)>> {
        if self.pos >= self.buf.len() {
            return Ok(None);
        }
        let k = self.varint()?;
        let field = k >> 3;
        if field == 0 {
            return Err(Error::Protobuf("field number 0 is invalid".into()));
        }
        Ok(Some((field, (k & 7) as u8)))
    }

    fn bytes(&mut self) -> Result<&'a [u8]> {
        let len = usize::try_from(self.varint()?).map_err(|_| truncated())?;
        let end = self.pos.checked_add(len).ok_or_else(truncated)?;
        let b = self.buf.get(self.pos..end).ok_or_else(truncated)?;
        self.pos = end;
        Ok(b)
    }

    fn str(&mut self) -> Result<&'a str> {
        std::str::from_utf8(self.bytes()?)
            .map_err(|_| Error::Protobuf("string field is not valid UTF-8".into()))
    }

    fn fixed64(&mut self) -> Result<u64> {
        let b = self.buf.get(self.pos..self.pos + 8).ok_or_else(truncated)?;
        self.pos += 8;
        Ok(u64::from_le_bytes(b.try_into().map_err(|_| truncated())?))
    }

    fn skip(&mut self, wire: u8) -> Result<()> {
        match wire {
            VARINT => self.varint().map(drop),
            I64 => self.fixed64().map(drop),
            LEN => self.bytes().map(drop),
            I32 => {
                self.buf.get(self.pos..self.pos + 4).ok_or_else(truncated)?;
                self.pos += 4;
                Ok(())
            }
            other => Err(Error::Protobuf(format!("unsupported wire type {other}"))),
        }
    }
}

/// Encodes a batch as a remote-write body (used by tests and the benchmark).
pub fn encode(series: &[Series]) -> Vec<u8> {
    encode_with_exemplars(series, &[])
}

fn pb_labels(labels: &Labels) -> Vec<Label> {
    labels
        .iter()
        .map(|l| Label {
            name: l.name.clone(),
            value: l.value.clone(),
        })
        .collect()
}

/// As [`encode`], with each exemplar attached to the series of its labels
/// (used by tests).
pub fn encode_with_exemplars(series: &[Series], exemplars: &[SeriesExemplar]) -> Vec<u8> {
    let req = WriteRequest {
        timeseries: series
            .iter()
            .map(|s| TimeSeries {
                labels: pb_labels(&s.labels),
                samples: s
                    .samples
                    .iter()
                    .map(|x| PbSample {
                        value: x.v,
                        timestamp: x.t,
                    })
                    .collect(),
                exemplars: exemplars
                    .iter()
                    .filter(|(l, _)| *l == s.labels)
                    .map(|(_, e)| PbExemplar {
                        labels: pb_labels(&e.labels),
                        value: e.value,
                        timestamp: e.t,
                    })
                    .collect(),
            })
            .collect(),
        metadata: Vec::new(),
    };
    snap::raw::Encoder::new()
        .compress_vec(&req.encode_to_vec())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use sonde_model::Labels;

    #[test]
    fn hand_decoder_agrees_with_prost_on_every_field() {
        let req = WriteRequest {
            timeseries: vec![TimeSeries {
                labels: vec![
                    Label {
                        name: "job".into(),
                        value: "x".into(),
                    },
                    Label {
                        name: "__name__".into(),
                        value: "up".into(),
                    },
                    Label {
                        name: "empty".into(),
                        value: "".into(),
                    },
                ],
                samples: vec![
                    PbSample {
                        value: -1.5,
                        timestamp: -7,
                    },
                    PbSample {
                        value: 0.0,
                        timestamp: 0,
                    },
                ],
                exemplars: vec![PbExemplar {
                    labels: vec![Label {
                        name: "trace_id".into(),
                        value: "0af7651916cd43dd8448eb211c80319c".into(),
                    }],
                    value: 0.25,
                    timestamp: -3,
                }],
            }],
            metadata: vec![Metadata {
                r#type: 1,
                metric_family_name: "up".into(),
                help: "h".into(),
                unit: "u".into(),
            }],
        };
        let bytes = req.encode_to_vec();
        let got = decode_views(&bytes).unwrap();
        assert_eq!(got.series[0].labels, vec![("__name__", "up"), ("job", "x")]);
        assert_eq!(
            got.series[0].samples,
            vec![Sample { t: -7, v: -1.5 }, Sample { t: 0, v: 0.0 }]
        );
        assert_eq!(
            got.exemplars,
            vec![(
                Labels::from_pairs([("__name__", "up"), ("job", "x")]),
                Exemplar {
                    labels: Labels::from_pairs([("trace_id", "0af7651916cd43dd8448eb211c80319c")]),
                    value: 0.25,
                    t: -3,
                }
            )]
        );
        assert_eq!(got.metadata[0].kind, MetricType::Counter);
        assert_eq!(
            (got.metadata[0].help.as_str(), got.metadata[0].unit.as_str()),
            ("h", "u")
        );
        // Every prefix of a valid message is either valid or a clean error.
        for n in 0..bytes.len() {
            let _ = decode_views(&bytes[..n]);
        }
    }

    #[test]
    fn roundtrip() {
        let s = Series {
            labels: Labels::from_pairs([("__name__", "up"), ("job", "x")]),
            samples: vec![Sample { t: 5, v: 1.5 }],
            histograms: Vec::new(),
        };
        let got = decode(&encode(std::slice::from_ref(&s))).unwrap();
        assert_eq!(got.series, vec![s]);
    }

    #[test]
    fn exemplars_roundtrip() {
        let s = Series {
            labels: Labels::from_pairs([("__name__", "rpc_seconds_bucket"), ("le", "0.5")]),
            samples: vec![Sample { t: 5, v: 3.0 }],
            histograms: Vec::new(),
        };
        let e = |t, v, trace: &str| Exemplar {
            labels: Labels::from_pairs([("trace_id", trace), ("span_id", "00f067aa0ba902b7")]),
            value: v,
            t,
        };
        let exemplars = vec![
            (
                s.labels.clone(),
                e(4, 0.3, "4bf92f3577b34da6a3ce929d0e0e4736"),
            ),
            (
                s.labels.clone(),
                e(5, 0.5, "4bf92f3577b34da6a3ce929d0e0e4737"),
            ),
        ];
        let got = decode(&encode_with_exemplars(std::slice::from_ref(&s), &exemplars)).unwrap();
        assert_eq!(got.series, vec![s.clone()]);
        assert_eq!(got.exemplars, exemplars);
        // Samples stay borrowed: the views point into the body.
        let raw = decompress(&encode_with_exemplars(std::slice::from_ref(&s), &exemplars)).unwrap();
        let views = decode_views(&raw).unwrap();
        assert_eq!(views.series[0].labels[1], ("le", "0.5"));
        assert_eq!(views.exemplars.len(), 2);
        // A truncated exemplar is a clean error, never a panic.
        for n in 0..raw.len() {
            let _ = decode_views(&raw[..n]);
        }
    }

    #[test]
    fn bad_input_has_precise_errors() {
        assert!(matches!(
            decode(b"not snappy at all"),
            Err(Error::Snappy(_))
        ));
        let garbage = snap::raw::Encoder::new()
            .compress_vec(&[0xff, 0xff, 0xff])
            .unwrap();
        assert!(matches!(decode(&garbage), Err(Error::Protobuf(_))));
        let bad = |pairs: &[(&str, &str)]| {
            let req = WriteRequest {
                timeseries: vec![TimeSeries {
                    labels: pairs
                        .iter()
                        .map(|(n, v)| Label {
                            name: n.to_string(),
                            value: v.to_string(),
                        })
                        .collect(),
                    samples: vec![PbSample {
                        value: 1.0,
                        timestamp: 1,
                    }],
                    exemplars: vec![],
                }],
                metadata: vec![],
            };
            decode_views(&req.encode_to_vec()).map(|b| b.series.len())
        };
        assert_eq!(
            bad(&[("__name__", "1bad")]),
            Err(Error::InvalidMetricName("1bad".into()))
        );
        assert_eq!(
            bad(&[("__name__", "ok"), ("bad-label", "x")]),
            Err(Error::InvalidLabelName("bad-label".into()))
        );
        assert_eq!(bad(&[("job", "x")]), Err(Error::MissingMetricName));
        assert_eq!(
            bad(&[("__name__", "ok"), ("a", "1"), ("a", "2")]),
            Err(Error::DuplicateLabel("a".into()))
        );
    }
}
