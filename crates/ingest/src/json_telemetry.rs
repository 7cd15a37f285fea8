//! JSON telemetry from devices (MQTT, Kafka): the ad hoc objects firmware
//! and scripts publish, such as `{"temp": 21.5, "motor": {"rpm": 1200}}`.
//!
//! A payload is an object or an array of objects, each one point in time:
//! - every number is a sample; nested keys are joined with `.` and array
//!   items numbered (`motor.rpm`, `temps.0`), then made a Prometheus name
//!   as OTLP names are (`motor_rpm`); booleans are 1 and 0, nulls skipped.
//! - strings are labels of the object's samples (`StringFields::Labels`),
//!   or, with `StringFields::Log`, attributes of a log record whose body is
//!   the object's JSON, so free text does not create a series per message.
//! - an object with a string `metric` (or `name`) and a `value` is one
//!   explicit sample, with labels from its optional `labels` object, for
//!   producers that send named series rather than device state.
//! - the time is the configured field (default `timestamp`): seconds,
//!   milliseconds, microseconds or nanoseconds since the epoch told apart
//!   by magnitude, or an RFC 3339 string; `now` when absent.
//!
//! Only a body that is not JSON, or not an object or array, is an
//! [`Error::Json`]. Anything smaller is counted in the metrics'
//! `rejected_points`, one per item dropped: an object whose time or explicit
//! sample is unusable, a field nested deeper than `max_depth` (with all it
//! holds), each field past `max_fields`, a field whose name collides with
//! another's once sanitised. Keys are visited in serde_json's map order:
//! sorted, unless a build enables its `preserve_order` feature.

use std::collections::HashSet;
use std::sync::Arc;

use serde_json::{Map, Number, Value};
use sonde_model::records::{
    parse_severity, AttrValue, Attributes, LogRecord, Origin, TRUNCATION_MARKER, UNKNOWN_SERVICE,
};
use sonde_model::{Labels, Sample, METRIC_NAME};

use crate::influx::{metric_name, sanitized_pairs, with_name, SeriesSet};
use crate::otlp::sanitize_label_name;
use crate::otlp_records::{LogsBatch, RecordLimits};
use crate::{Error, MetricsBatch, Result};

/// What string fields become.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum StringFields {
    /// Labels of the object's samples: right for a few fixed strings such
    /// as a firmware version or a unit id.
    #[default]
    Labels,
    /// A log record per object that has strings: right for messages,
    /// states and anything else with many distinct values.
    Log,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JsonOptions {
    /// The top-level key of the time of each object. Not guessed from
    /// other keys: `time` or `ts` may well be measurements.
    pub timestamp_field: String,
    pub string_fields: StringFields,
    /// Prepended to every metric name, joined with `_`.
    pub metric_prefix: String,
    /// Labels of every sample, and resource attributes of every log record
    /// (from the topic or configuration). They win over string fields of
    /// the same name, being the operator's word rather than the device's.
    pub extra_labels: Vec<(String, String)>,
    /// Fields (numbers, booleans, strings) kept per object.
    pub max_fields: usize,
    /// Fields inside more objects and arrays than this (the point's own
    /// object included) are dropped.
    pub max_depth: usize,
    /// Bounds on the log records of `StringFields::Log`.
    pub record_limits: RecordLimits,
}

impl Default for JsonOptions {
    fn default() -> JsonOptions {
        JsonOptions {
            timestamp_field: "timestamp".into(),
            string_fields: StringFields::Labels,
            metric_prefix: String::new(),
            extra_labels: Vec::new(),
            max_fields: 1000,
            max_depth: 32,
            record_limits: RecordLimits::default(),
        }
    }
}

/// Samples, and with `StringFields::Log` the log records. All rejections
/// are counted in `metrics`; `logs.truncated` counts cuts by the limits.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct JsonDecoded {
    pub metrics: MetricsBatch,
    pub logs: LogsBatch,
}

pub fn decode(body: &[u8], opts: &JsonOptions, now_ms: i64) -> Result<JsonDecoded> {
    // serde_json refuses nesting past 128 levels, so this cannot overflow
    // the stack; `max_depth` is the tighter bound on what is kept.
    let value: Value = serde_json::from_slice(body).map_err(|e| Error::Json(e.to_string()))?;
    let mut d = Decoder {
        opts,
        now_ns: now_ms.saturating_mul(1_000_000),
        extra: sanitized_pairs(&opts.extra_labels),
        set: SeriesSet::default(),
        out: JsonDecoded::default(),
        origin: None,
    };
    match &value {
        Value::Object(obj) => {
            // Valid JSON is valid UTF-8; the body of a log is the text sent.
            let raw = std::str::from_utf8(body).ok().map(str::trim);
            d.point(obj, None, raw);
        }
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                match item {
                    Value::Object(obj) => d.point(obj, Some(i), None),
                    _ => d.reject(Some(i), "not an object".into()),
                }
            }
        }
        _ => {
            return Err(Error::Json(
                "expected an object or an array of objects".into(),
            ))
        }
    }
    let mut out = d.out;
    out.metrics.series = d.set.into_series();
    Ok(out)
}

/// The fields of one object, flattened.
#[derive(Default)]
struct Fields {
    numbers: Vec<(String, f64)>,
    strings: Vec<(String, String)>,
    seen: usize,
}

struct Decoder<'a> {
    opts: &'a JsonOptions,
    now_ns: i64,
    extra: Vec<(String, String)>,
    set: SeriesSet,
    out: JsonDecoded,
    /// The last origin made, shared by the records of a message that all
    /// name the same service and host.
    origin: Option<Arc<Origin>>,
}

impl Decoder<'_> {
    fn reject(&mut self, index: Option<usize>, why: String) {
        self.out.metrics.reject(|| match index {
            Some(i) => format!("element {i}: {why}"),
            None => why,
        });
    }

    fn point(&mut self, obj: &Map<String, Value>, index: Option<usize>, raw: Option<&str>) {
        let ts_field = self.opts.timestamp_field.as_str();
        let time_ns = match obj.get(ts_field) {
            None | Some(Value::Null) => self.now_ns,
            Some(v) => match timestamp_ns(v) {
                Ok(t) => t,
                Err(why) => return self.reject(index, format!("{ts_field:?}: {why}")),
            },
        };
        let t = time_ns.div_euclid(1_000_000);
        if let Some(name) = explicit_name(obj) {
            if let Err(why) = self.explicit(obj, name, t) {
                self.reject(index, why);
            }
            return;
        }
        let mut fields = Fields::default();
        let mut path = String::new();
        for (k, v) in obj {
            if k != ts_field {
                path.clear();
                path.push_str(k);
                self.flatten(&mut path, v, 1, &mut fields, index);
            }
        }
        let mut pairs = Vec::new();
        if self.opts.string_fields == StringFields::Labels {
            for (path, value) in &fields.strings {
                let name = sanitize_label_name(path);
                if name == METRIC_NAME {
                    self.reject(index, format!("field {path:?}: the label name is reserved"));
                } else {
                    pairs.push((name, value.clone()));
                }
            }
        }
        pairs.extend(self.extra.iter().cloned());
        let base = Labels::from_pairs(pairs);
        let mut names: HashSet<String> = HashSet::with_capacity(fields.numbers.len());
        for (path, v) in &fields.numbers {
            let name = metric_name(&self.opts.metric_prefix, path);
            if name.is_empty() {
                self.reject(index, format!("field {path:?} makes no metric name"));
            } else if !names.insert(name.clone()) {
                self.reject(
                    index,
                    format!("field {path:?}: another field is also named {name}"),
                );
            } else {
                self.set.push(with_name(&base, name), Sample { t, v: *v });
            }
        }
        if self.opts.string_fields == StringFields::Log && !fields.strings.is_empty() {
            self.log(obj, &fields.strings, time_ns, raw);
        }
    }

    fn flatten(
        &mut self,
        path: &mut String,
        v: &Value,
        depth: usize,
        fields: &mut Fields,
        index: Option<usize>,
    ) {
        match v {
            Value::Null => {}
            Value::Object(_) | Value::Array(_) if depth >= self.opts.max_depth => {
                let max = self.opts.max_depth;
                self.reject(
                    index,
                    format!("field {path:?} is nested deeper than {max} levels"),
                );
            }
            Value::Object(obj) => {
                for (k, v) in obj {
                    let len = path.len();
                    path.push('.');
                    path.push_str(k);
                    self.flatten(path, v, depth + 1, fields, index);
                    path.truncate(len);
                }
            }
            Value::Array(items) => {
                for (i, v) in items.iter().enumerate() {
                    let len = path.len();
                    path.push('.');
                    path.push_str(&i.to_string());
                    self.flatten(path, v, depth + 1, fields, index);
                    path.truncate(len);
                }
            }
            leaf => {
                fields.seen += 1;
                if fields.seen > self.opts.max_fields {
                    let max = self.opts.max_fields;
                    return self.reject(
                        index,
                        format!("field {path:?}: more than {max} fields in one object"),
                    );
                }
                match leaf {
                    Value::Bool(b) => fields.numbers.push((path.clone(), f64::from(u8::from(*b)))),
                    Value::Number(n) => match n.as_f64().filter(|f| f.is_finite()) {
                        Some(f) => fields.numbers.push((path.clone(), f)),
                        None => self.reject(index, format!("field {path:?}: {n} is not finite")),
                    },
                    Value::String(s) => fields.strings.push((path.clone(), s.clone())),
                    _ => {}
                }
            }
        }
    }

    /// One explicit sample: `{"metric": m, "value": v, "labels": {..}}`.
    fn explicit(&mut self, obj: &Map<String, Value>, name: &str, t: i64) -> Result<(), String> {
        let v = match obj.get("value") {
            Some(Value::Null) | None => return Ok(()),
            Some(Value::Bool(b)) => f64::from(u8::from(*b)),
            Some(Value::Number(n)) => n
                .as_f64()
                .filter(|f| f.is_finite())
                .ok_or_else(|| format!("value {n} is not finite"))?,
            Some(other) => {
                return Err(format!(
                    "metric {name:?}: value {other} is not a number or a boolean"
                ))
            }
        };
        let mut pairs = Vec::new();
        match obj.get("labels") {
            None | Some(Value::Null) => {}
            Some(Value::Object(labels)) => {
                for (k, v) in labels {
                    let value = match v {
                        Value::Null => continue,
                        Value::String(s) => s.clone(),
                        Value::Number(_) | Value::Bool(_) => v.to_string(),
                        _ => {
                            return Err(format!(
                                "metric {name:?}: label {k:?} is not a string, number or boolean"
                            ))
                        }
                    };
                    let label = sanitize_label_name(k);
                    if label == METRIC_NAME {
                        return Err(format!("metric {name:?}: label {k:?} is reserved"));
                    }
                    pairs.push((label, value));
                }
            }
            Some(_) => return Err(format!("metric {name:?}: labels must be an object")),
        }
        let metric = metric_name(&self.opts.metric_prefix, name);
        if metric.is_empty() {
            return Err(format!("metric {name:?} makes no metric name"));
        }
        pairs.extend(self.extra.iter().cloned());
        self.set.push(
            with_name(&Labels::from_pairs(pairs), metric),
            Sample { t, v },
        );
        Ok(())
    }

    fn log(
        &mut self,
        obj: &Map<String, Value>,
        strings: &[(String, String)],
        time_ns: i64,
        raw: Option<&str>,
    ) {
        let opts = self.opts;
        let limits = &opts.record_limits;
        let max_value = limits.max_attribute_value_bytes;
        let mut truncated = 0;
        let body = match raw {
            Some(r) => cut(r, limits.max_body_bytes, &mut truncated),
            None => {
                let text = serde_json::to_string(obj).unwrap_or_default();
                cut(&text, limits.max_body_bytes, &mut truncated)
            }
        };
        let mut attributes: Attributes =
            Vec::with_capacity(strings.len().min(limits.max_attributes));
        for (k, v) in strings {
            // A key cut short would be another key: dropped instead.
            if attributes.len() >= limits.max_attributes || k.len() > max_value {
                truncated += 1;
                continue;
            }
            let v = cut(v, max_value, &mut truncated);
            attributes.push((k.clone(), AttrValue::Str(v)));
        }
        let find = |pairs: &[(String, String)], names: &[&str]| -> Option<String> {
            names
                .iter()
                .find_map(|n| pairs.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone()))
        };
        let severity_text = find(strings, &["level", "severity"]).unwrap_or_default();
        let severity_number = parse_severity(&severity_text).unwrap_or(0);
        let severity_text = cut(&severity_text, max_value, &mut truncated);
        let service_keys = ["service.name", "service"];
        let host_keys = ["host.name", "host", "hostname"];
        let service = find(&opts.extra_labels, &service_keys)
            .or_else(|| find(strings, &service_keys))
            .unwrap_or_else(|| UNKNOWN_SERVICE.to_string());
        let service = cut(&service, max_value, &mut truncated);
        let host = find(&opts.extra_labels, &host_keys)
            .or_else(|| find(strings, &host_keys))
            .unwrap_or_default();
        let host = cut(&host, max_value, &mut truncated);
        let origin = match &self.origin {
            Some(o) if o.service == service && o.host == host => o.clone(),
            _ => {
                let resource = opts
                    .extra_labels
                    .iter()
                    .map(|(k, v)| (k.clone(), AttrValue::Str(v.clone())))
                    .collect();
                let o = Arc::new(Origin {
                    service,
                    host,
                    resource,
                    scope_name: String::new(),
                    scope_version: String::new(),
                });
                self.origin = Some(o.clone());
                o
            }
        };
        self.out.logs.truncated += truncated;
        self.out.logs.logs.push(LogRecord {
            time_ns,
            observed_ns: self.now_ns,
            severity_number,
            severity_text,
            body,
            event_name: String::new(),
            trace_id: None,
            span_id: None,
            flags: 0,
            origin,
            attributes,
        });
    }
}

/// The name of an explicit sample, when `obj` is one.
fn explicit_name(obj: &Map<String, Value>) -> Option<&str> {
    if !obj.contains_key("value") {
        return None;
    }
    let s = |k| obj.get(k).and_then(Value::as_str);
    s("metric").or_else(|| s("name"))
}

/// `s`, or its start ending with [`TRUNCATION_MARKER`], `max` bytes in all,
/// as `otlp_records` cuts values.
fn cut(s: &str, max: usize, truncated: &mut u64) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    *truncated += 1;
    let mut keep = max.saturating_sub(TRUNCATION_MARKER.len());
    while !s.is_char_boundary(keep) {
        keep -= 1;
    }
    let mut out = String::with_capacity(keep + TRUNCATION_MARKER.len());
    out.push_str(&s[..keep]);
    out.push_str(TRUNCATION_MARKER);
    out
}

const RANGE: &str = "is out of range";

/// A time in nanoseconds since the epoch from a number (unit told by
/// magnitude), a string of digits (likewise) or an RFC 3339 string.
fn timestamp_ns(v: &Value) -> Result<i64, String> {
    match v {
        Value::Number(n) => number_ns(n).ok_or_else(|| format!("{n} {RANGE}")),
        Value::String(s) => {
            let s = s.trim();
            if s.starts_with(|c: char| c.is_ascii_digit() || c == '-')
                && s.bytes()
                    .all(|b| b.is_ascii_digit() || b"-.eE+".contains(&b))
            {
                if let Ok(n) = s.parse::<Number>() {
                    return number_ns(&n).ok_or_else(|| format!("{s:?} {RANGE}"));
                }
            }
            parse_rfc3339(s).ok_or_else(|| {
                format!("{s:?} is not an RFC 3339 time such as 2024-05-01T12:00:00Z")
            })
        }
        other => Err(format!("{other} is not a number or an RFC 3339 string")),
    }
}

/// Below 1e11 seconds (year 5138), below 1e14 milliseconds, below 1e17
/// microseconds, else nanoseconds: each unit's present-day values are
/// orders of magnitude from the bounds.
fn number_ns(n: &Number) -> Option<i64> {
    if let Some(t) = n.as_i64() {
        let scale = match t.unsigned_abs() {
            0..100_000_000_000 => 1_000_000_000,
            100_000_000_000..100_000_000_000_000 => 1_000_000,
            100_000_000_000_000..100_000_000_000_000_000 => 1_000,
            _ => 1,
        };
        return t.checked_mul(scale);
    }
    if n.is_u64() {
        return None;
    }
    let t = n.as_f64()?;
    let a = t.abs();
    let scale: i64 = if a < 1e11 {
        1_000_000_000
    } else if a < 1e14 {
        1_000_000
    } else if a < 1e17 {
        1_000
    } else {
        1
    };
    // Whole and fractional parts apart: `1700000000.25 * 1e9` is not exact
    // in f64 and would land a nanosecond early, a millisecond early in ms.
    // `as` saturates, so the range is checked first (2^63 is exact in f64).
    let whole = t.trunc();
    if whole.is_nan() || whole.abs() >= 9_223_372_036_854_775_808.0 {
        return None;
    }
    let frac = ((t - whole) * scale as f64).round() as i64;
    (whole as i64).checked_mul(scale)?.checked_add(frac)
}

/// `YYYY-MM-DDTHH:MM:SS[.frac](Z|±HH:MM)`, `t`, `z` and a space separator
/// allowed as RFC 3339 permits; nanoseconds since the epoch.
fn parse_rfc3339(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    let num = |from: usize, to: usize| -> Option<i64> {
        let digits = b.get(from..to)?;
        if !digits.iter().all(u8::is_ascii_digit) {
            return None;
        }
        Some(digits.iter().fold(0, |n, d| n * 10 + i64::from(d - b'0')))
    };
    let at = |i: usize, allowed: &[u8]| b.get(i).is_some_and(|c| allowed.contains(c));
    if !(at(4, b"-") && at(7, b"-") && at(10, b"Tt ") && at(13, b":") && at(16, b":")) {
        return None;
    }
    let (year, month, day) = (num(0, 4)?, num(5, 7)?, num(8, 10)?);
    let (hour, minute, second) = (num(11, 13)?, num(14, 16)?, num(17, 19)?);
    let mut i = 19;
    let mut nanos = 0i64;
    if at(i, b".") {
        i += 1;
        let start = i;
        while b.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1;
        }
        if i == start {
            return None;
        }
        // Digits past nanoseconds are dropped.
        let digits = &s[start..i.min(start + 9)];
        nanos = digits.parse::<i64>().ok()? * 10i64.pow(9 - digits.len() as u32);
    }
    let offset_s = match b.get(i)? {
        b'Z' | b'z' if i + 1 == b.len() => 0,
        sign @ (b'+' | b'-') if i + 6 == b.len() && at(i + 3, b":") => {
            let (h, m) = (num(i + 1, i + 3)?, num(i + 4, i + 6)?);
            if h > 23 || m > 59 {
                return None;
            }
            let off = h * 3600 + m * 60;
            if *sign == b'-' {
                -off
            } else {
                off
            }
        }
        _ => return None,
    };
    let leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0);
    let month_days = [
        31,
        if leap { 29 } else { 28 },
        31,
        30,
        31,
        30,
        31,
        31,
        30,
        31,
        30,
        31,
    ];
    if !(1..=12).contains(&month)
        || day < 1
        || day > month_days[month as usize - 1]
        || hour > 23
        || minute > 59
        // 60: a leap second, counted as the first second of the next minute.
        || second > 60
    {
        return None;
    }
    let secs = sonde_model::time::days_from_civil(year, month, day) * 86_400
        + hour * 3600
        + minute * 60
        + second
        - offset_s;
    secs.checked_mul(1_000_000_000)?.checked_add(nanos)
}

#[cfg(test)]
#[path = "json_telemetry_tests.rs"]
mod tests;
