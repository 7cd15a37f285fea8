//! Prometheus remote write v1: snappy-compressed protobuf `WriteRequest`.
//!
//! The message types are declared here rather than generated: they are small
//! and stable, and this keeps protoc out of the build.

use prost::Message;
use sonde_model::{
    is_valid_label_name, is_valid_metric_name, Labels, MetricMetadata, MetricType, Sample, Series,
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

/// Decodes a snappy-compressed (block format) remote-write body.
pub fn decode(body: &[u8]) -> Result<MetricsBatch> {
    let raw = snap::raw::Decoder::new()
        .decompress_vec(body)
        .map_err(|e| Error::Snappy(e.to_string()))?;
    decode_uncompressed(&raw)
}

pub fn decode_uncompressed(raw: &[u8]) -> Result<MetricsBatch> {
    let req = WriteRequest::decode(raw).map_err(|e| Error::Protobuf(e.to_string()))?;
    let mut batch = MetricsBatch {
        series: Vec::with_capacity(req.timeseries.len()),
        metadata: Vec::new(),
    };
    for ts in req.timeseries {
        let mut name = None;
        for (i, l) in ts.labels.iter().enumerate() {
            if l.name == sonde_model::METRIC_NAME {
                if !is_valid_metric_name(&l.value) {
                    return Err(Error::InvalidMetricName(l.value.clone()));
                }
                name = Some(&l.value);
            } else if !is_valid_label_name(&l.name) {
                return Err(Error::InvalidLabelName(l.name.clone()));
            }
            if ts.labels[..i].iter().any(|p| p.name == l.name) {
                return Err(Error::DuplicateLabel(l.name.clone()));
            }
        }
        if name.is_none() {
            return Err(Error::MissingMetricName);
        }
        let labels = Labels::from_pairs(ts.labels.into_iter().map(|l| (l.name, l.value)));
        let samples = ts
            .samples
            .into_iter()
            .map(|s| Sample {
                t: s.timestamp,
                v: s.value,
            })
            .collect();
        batch.series.push(Series { labels, samples });
    }
    for m in req.metadata {
        let kind = match m.r#type {
            1 => MetricType::Counter,
            2 => MetricType::Gauge,
            3 => MetricType::Histogram,
            5 => MetricType::Summary,
            _ => MetricType::Unknown,
        };
        batch.metadata.push(MetricMetadata {
            metric: m.metric_family_name,
            kind,
            help: m.help,
            unit: m.unit,
        });
    }
    Ok(batch)
}

/// Encodes a batch as a remote-write body (used by tests and the benchmark).
pub fn encode(series: &[Series]) -> Vec<u8> {
    let req = WriteRequest {
        timeseries: series
            .iter()
            .map(|s| TimeSeries {
                labels: s
                    .labels
                    .iter()
                    .map(|l| Label {
                        name: l.name.clone(),
                        value: l.value.clone(),
                    })
                    .collect(),
                samples: s
                    .samples
                    .iter()
                    .map(|x| PbSample {
                        value: x.v,
                        timestamp: x.t,
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

    #[test]
    fn roundtrip() {
        let s = Series {
            labels: Labels::from_pairs([("__name__", "up"), ("job", "x")]),
            samples: vec![Sample { t: 5, v: 1.5 }],
        };
        let got = decode(&encode(std::slice::from_ref(&s))).unwrap();
        assert_eq!(got.series, vec![s]);
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
                }],
                metadata: vec![],
            };
            decode_uncompressed(&req.encode_to_vec())
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
