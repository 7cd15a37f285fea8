//! Spans and log records: the non-metric signals.
//!
//! These are flat, self-contained rows. Each one carries its service and
//! resource so a row read back from any segment, alone, says where it came
//! from; storage shares the resource between the rows of one batch.

use std::fmt;
use std::sync::Arc;

/// Nanoseconds since the Unix epoch: the OTLP time unit, kept for spans and
/// logs because durations of a few microseconds matter there.
pub type TimestampNs = i64;

/// The service name OpenTelemetry SDKs use when none is configured.
pub const UNKNOWN_SERVICE: &str = "unknown_service";

/// What an attribute value that was cut short ends with, so a reader knows.
pub const TRUNCATION_MARKER: &str = "…[truncated]";

#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct TraceId(pub [u8; 16]);

#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct SpanId(pub [u8; 8]);

/// Why an id could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {kind} {input:?}: expected {len} hex digits, not all zero")]
pub struct IdError {
    kind: &'static str,
    input: String,
    len: usize,
}

fn parse_hex<const N: usize>(kind: &'static str, s: &str) -> Result<[u8; N], IdError> {
    let err = || IdError {
        kind,
        input: s.chars().take(64).collect(),
        len: N * 2,
    };
    let s = s.trim();
    if s.len() != N * 2 {
        return Err(err());
    }
    let mut out = [0u8; N];
    for (i, pair) in s.as_bytes().chunks(2).enumerate() {
        let hi = (pair[0] as char).to_digit(16).ok_or_else(err)?;
        let lo = (pair[1] as char).to_digit(16).ok_or_else(err)?;
        out[i] = (hi * 16 + lo) as u8;
    }
    if out.iter().all(|&b| b == 0) {
        return Err(err());
    }
    Ok(out)
}

fn write_hex(f: &mut fmt::Formatter<'_>, bytes: &[u8]) -> fmt::Result {
    for b in bytes {
        write!(f, "{b:02x}")?;
    }
    Ok(())
}

macro_rules! id_type {
    ($ty:ident, $len:literal, $kind:literal) => {
        impl $ty {
            pub fn parse(s: &str) -> Result<$ty, IdError> {
                parse_hex::<$len>($kind, s).map($ty)
            }

            /// An id from its wire bytes; `None` for the empty or all-zero id,
            /// which OTLP defines as "absent", or a wrong length.
            pub fn from_bytes(b: &[u8]) -> Option<$ty> {
                let arr: [u8; $len] = b.try_into().ok()?;
                (arr != [0u8; $len]).then_some($ty(arr))
            }

            pub fn to_hex(&self) -> String {
                self.to_string()
            }
        }

        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write_hex(f, &self.0)
            }
        }

        impl fmt::Debug for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write_hex(f, &self.0)
            }
        }
    };
}

id_type!(TraceId, 16, "trace id");
id_type!(SpanId, 8, "span id");

/// An attribute value. Arrays and key-value lists are kept as their JSON text:
/// they are rare, and nothing searches inside them.
#[derive(Debug, Clone, PartialEq)]
pub enum AttrValue {
    Str(String),
    Bool(bool),
    Int(i64),
    Double(f64),
    Bytes(Vec<u8>),
    Json(String),
}

impl AttrValue {
    /// The value as text: what attribute equality in searches compares with.
    pub fn as_text(&self) -> std::borrow::Cow<'_, str> {
        match self {
            AttrValue::Str(s) | AttrValue::Json(s) => s.as_str().into(),
            AttrValue::Bool(b) => b.to_string().into(),
            AttrValue::Int(i) => i.to_string().into(),
            AttrValue::Double(d) => d.to_string().into(),
            AttrValue::Bytes(b) => b
                .iter()
                .map(|x| format!("{x:02x}"))
                .collect::<String>()
                .into(),
        }
    }

    pub fn kind(&self) -> AttrKind {
        match self {
            AttrValue::Str(_) => AttrKind::Str,
            AttrValue::Bool(_) => AttrKind::Bool,
            AttrValue::Int(_) => AttrKind::Int,
            AttrValue::Double(_) => AttrKind::Double,
            AttrValue::Bytes(_) => AttrKind::Bytes,
            AttrValue::Json(_) => AttrKind::Json,
        }
    }

    /// Rebuilds a value from its text and kind (how segments store it).
    pub fn from_text(kind: AttrKind, text: &str) -> AttrValue {
        let fallback = || AttrValue::Str(text.to_string());
        match kind {
            AttrKind::Str => fallback(),
            AttrKind::Json => AttrValue::Json(text.to_string()),
            AttrKind::Bool => text
                .parse()
                .map(AttrValue::Bool)
                .unwrap_or_else(|_| fallback()),
            AttrKind::Int => text
                .parse()
                .map(AttrValue::Int)
                .unwrap_or_else(|_| fallback()),
            AttrKind::Double => text
                .parse()
                .map(AttrValue::Double)
                .unwrap_or_else(|_| fallback()),
            AttrKind::Bytes => {
                let bytes: Option<Vec<u8>> = (0..text.len() / 2)
                    .map(|i| u8::from_str_radix(text.get(i * 2..i * 2 + 2)?, 16).ok())
                    .collect();
                bytes.map(AttrValue::Bytes).unwrap_or_else(fallback)
            }
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AttrKind {
    Str,
    Bool,
    Int,
    Double,
    Bytes,
    Json,
}

impl AttrKind {
    pub fn as_str(self) -> &'static str {
        match self {
            AttrKind::Str => "string",
            AttrKind::Bool => "bool",
            AttrKind::Int => "int64",
            AttrKind::Double => "float64",
            AttrKind::Bytes => "binary",
            AttrKind::Json => "json",
        }
    }

    pub fn parse(s: &str) -> Option<AttrKind> {
        Some(match s {
            "string" => AttrKind::Str,
            "bool" => AttrKind::Bool,
            "int64" => AttrKind::Int,
            "float64" => AttrKind::Double,
            "binary" => AttrKind::Bytes,
            "json" => AttrKind::Json,
            _ => return None,
        })
    }
}

/// Attributes in the order they arrived, keys unique.
pub type Attributes = Vec<(String, AttrValue)>;

pub fn attribute<'a>(attrs: &'a Attributes, key: &str) -> Option<&'a AttrValue> {
    attrs.iter().find(|(k, _)| k == key).map(|(_, v)| v)
}

/// Where a batch of spans or logs came from: the OTLP resource and scope.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Origin {
    /// `service.name`, or [`UNKNOWN_SERVICE`].
    pub service: String,
    /// `host.name` (or `host.id`), empty when absent.
    pub host: String,
    pub resource: Attributes,
    pub scope_name: String,
    pub scope_version: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[repr(u8)]
pub enum SpanKind {
    #[default]
    Unspecified = 0,
    Internal = 1,
    Server = 2,
    Client = 3,
    Producer = 4,
    Consumer = 5,
}

impl SpanKind {
    pub fn from_i32(v: i32) -> SpanKind {
        match v {
            1 => SpanKind::Internal,
            2 => SpanKind::Server,
            3 => SpanKind::Client,
            4 => SpanKind::Producer,
            5 => SpanKind::Consumer,
            _ => SpanKind::Unspecified,
        }
    }

    /// The lower-case name Jaeger's `span.kind` tag uses.
    pub fn as_str(self) -> &'static str {
        match self {
            SpanKind::Unspecified => "unspecified",
            SpanKind::Internal => "internal",
            SpanKind::Server => "server",
            SpanKind::Client => "client",
            SpanKind::Producer => "producer",
            SpanKind::Consumer => "consumer",
        }
    }

    /// Every kind, in the order of their numbers.
    pub const ALL: [SpanKind; 6] = [
        SpanKind::Unspecified,
        SpanKind::Internal,
        SpanKind::Server,
        SpanKind::Client,
        SpanKind::Producer,
        SpanKind::Consumer,
    ];

    pub fn parse(s: &str) -> Option<SpanKind> {
        SpanKind::ALL
            .into_iter()
            .find(|k| k.as_str().eq_ignore_ascii_case(s))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[repr(u8)]
pub enum StatusCode {
    #[default]
    Unset = 0,
    Ok = 1,
    Error = 2,
}

impl StatusCode {
    pub fn from_i32(v: i32) -> StatusCode {
        match v {
            1 => StatusCode::Ok,
            2 => StatusCode::Error,
            _ => StatusCode::Unset,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            StatusCode::Unset => "unset",
            StatusCode::Ok => "ok",
            StatusCode::Error => "error",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct SpanEvent {
    pub time_ns: TimestampNs,
    pub name: String,
    pub attributes: Attributes,
}

#[derive(Debug, Clone, PartialEq)]
pub struct SpanLink {
    pub trace_id: TraceId,
    pub span_id: SpanId,
    pub trace_state: String,
    pub attributes: Attributes,
}

#[derive(Debug, Clone, PartialEq)]
pub struct SpanRecord {
    pub trace_id: TraceId,
    pub span_id: SpanId,
    pub parent_span_id: Option<SpanId>,
    pub trace_state: String,
    pub flags: u32,
    pub name: String,
    pub kind: SpanKind,
    pub start_ns: TimestampNs,
    pub end_ns: TimestampNs,
    pub status: StatusCode,
    pub status_message: String,
    pub origin: Arc<Origin>,
    pub attributes: Attributes,
    pub events: Vec<SpanEvent>,
    pub links: Vec<SpanLink>,
}

impl SpanRecord {
    pub fn duration_ns(&self) -> i64 {
        self.end_ns.saturating_sub(self.start_ns).max(0)
    }
}

/// A log record. One with an event name is an OpenTelemetry event
/// (a deployment, a page view, a user action).
#[derive(Debug, Clone, PartialEq)]
pub struct LogRecord {
    /// The event time, or the observed time when the producer gave none.
    pub time_ns: TimestampNs,
    pub observed_ns: TimestampNs,
    /// 0 (unspecified) to 24, per the OpenTelemetry log data model.
    pub severity_number: u8,
    pub severity_text: String,
    /// The body as text: a string body as is, a structured body as JSON.
    pub body: String,
    /// From the OTLP `event_name` field or the `event.name` attribute;
    /// empty for plain logs.
    pub event_name: String,
    pub trace_id: Option<TraceId>,
    pub span_id: Option<SpanId>,
    pub flags: u32,
    pub origin: Arc<Origin>,
    pub attributes: Attributes,
}

/// The severity name for a severity number, per the OpenTelemetry data model.
pub fn severity_name(n: u8) -> &'static str {
    match n {
        1..=4 => "TRACE",
        5..=8 => "DEBUG",
        9..=12 => "INFO",
        13..=16 => "WARN",
        17..=20 => "ERROR",
        21..=24 => "FATAL",
        _ => "UNSPECIFIED",
    }
}

/// Parses a minimum severity given as a number or a name (`warn`, `ERROR`).
pub fn parse_severity(s: &str) -> Option<u8> {
    if let Ok(n) = s.parse::<u8>() {
        return (n <= 24).then_some(n);
    }
    Some(match s.to_ascii_uppercase().as_str() {
        "TRACE" => 1,
        "DEBUG" => 5,
        "INFO" => 9,
        "WARN" | "WARNING" => 13,
        "ERROR" => 17,
        "FATAL" => 21,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_through_hex_and_reject_zero_and_garbage() {
        let t = TraceId::parse("5B8EFFF798038103D269B633813FC60C").unwrap();
        assert_eq!(t.to_hex(), "5b8efff798038103d269b633813fc60c");
        assert!(TraceId::parse("00000000000000000000000000000000").is_err());
        assert!(TraceId::parse("xyz").is_err());
        assert!(SpanId::parse("eee19b7ec3c1b17g").is_err());
        assert_eq!(SpanId::from_bytes(&[0; 8]), None);
        assert_eq!(SpanId::from_bytes(&[1; 7]), None);
    }

    #[test]
    fn attribute_values_survive_text_and_kind() {
        for v in [
            AttrValue::Int(-42),
            AttrValue::Bool(true),
            AttrValue::Double(1.5),
            AttrValue::Bytes(vec![0, 255, 16]),
            AttrValue::Str("x".into()),
        ] {
            assert_eq!(AttrValue::from_text(v.kind(), &v.as_text()), v);
        }
    }

    #[test]
    fn severities_parse_by_name_or_number() {
        assert_eq!(parse_severity("warn"), Some(13));
        assert_eq!(parse_severity("17"), Some(17));
        assert_eq!(parse_severity("25"), None);
        assert_eq!(severity_name(18), "ERROR");
    }
}
