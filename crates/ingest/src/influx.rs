//! InfluxDB line protocol
//! (<https://docs.influxdata.com/influxdb/v2/reference/syntax/line-protocol/>),
//! as Telegraf and many devices send it over HTTP, Kafka or MQTT.
//!
//! Naming follows VictoriaMetrics, so dashboards carry over: each field is a
//! series named `{measurement}_{field}`, made a valid Prometheus name as
//! OTLP names are (other characters become `_`); tags become labels with
//! sanitised names. Integers, unsigned integers and floats are kept as
//! floats, booleans become 1 and 0. String fields are skipped without being
//! counted as rejected: Prometheus has no string samples, and Telegraf
//! sends them routinely next to numbers.
//!
//! Every line stands alone: a bad line is counted in `rejected_points`
//! (`first_rejection` says `line N: why`) and the others are kept. Only a
//! body in which no line parses at all is an [`Error::LineProtocol`], since
//! that is a message in some other format, which the caller logs once.
//!
//! Limitations: a newline always ends a line, even inside a quoted string
//! (the specification does not allow newlines in values).

use std::collections::HashMap;

use sonde_model::{Labels, MetricType, Sample, Series, METRIC_NAME};

use crate::otlp::{prometheus_name, sanitize_label_name};
use crate::{Error, MetricsBatch, Result};

/// The unit of line protocol timestamps (the `precision` query parameter).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Precision {
    #[default]
    Nanoseconds,
    Microseconds,
    Milliseconds,
    Seconds,
}

impl Precision {
    /// InfluxDB 2 names (`ns`, `us`, `ms`, `s`) and the 1.x `n` and `u`.
    pub fn parse(s: &str) -> Option<Precision> {
        Some(match s {
            "ns" | "n" => Precision::Nanoseconds,
            "us" | "u" | "µs" => Precision::Microseconds,
            "ms" => Precision::Milliseconds,
            "s" => Precision::Seconds,
            _ => return None,
        })
    }

    /// A timestamp in this unit as milliseconds, or `None` on overflow.
    /// Finer units round down (toward the past), as truncating would make
    /// negative times later.
    pub fn to_ms(self, t: i64) -> Option<i64> {
        match self {
            Precision::Nanoseconds => Some(t.div_euclid(1_000_000)),
            Precision::Microseconds => Some(t.div_euclid(1_000)),
            Precision::Milliseconds => Some(t),
            Precision::Seconds => t.checked_mul(1_000),
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InfluxOptions {
    pub precision: Precision,
    /// Labels added to every series (from the MQTT topic, the Kafka topic,
    /// configuration). They win over tags of the same name: the operator's
    /// word is more trustworthy than the device's. Names are sanitised.
    pub extra_labels: Vec<(String, String)>,
}

/// Parses a body of line protocol; lines without a timestamp get `now_ms`.
pub fn parse_lines(body: &[u8], opts: &InfluxOptions, now_ms: i64) -> Result<MetricsBatch> {
    let extra = sanitized_pairs(&opts.extra_labels);
    let mut batch = MetricsBatch::default();
    let mut set = SeriesSet::default();
    let (mut good, mut bad) = (0usize, 0usize);
    for (i, raw) in body.split(|b| *b == b'\n').enumerate() {
        let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
        let start = raw
            .iter()
            .position(|b| *b != b' ' && *b != b'\t')
            .unwrap_or(raw.len());
        let raw = &raw[start..];
        if raw.is_empty() || raw[0] == b'#' {
            continue;
        }
        let parsed = std::str::from_utf8(raw)
            .map_err(|_| "not valid UTF-8".to_string())
            .and_then(|line| parse_line(line, opts.precision, now_ms));
        match parsed.and_then(|p| add_point(&mut set, p, &extra)) {
            Ok(()) => good += 1,
            Err(why) => {
                bad += 1;
                batch.reject(|| format!("line {}: {why}", i + 1));
            }
        }
    }
    if good == 0 && bad > 0 {
        let first = batch.first_rejection.unwrap_or_default();
        return Err(Error::LineProtocol(format!(
            "no valid line among {bad}; first error: {first}"
        )));
    }
    batch.series = set.into_series();
    Ok(batch)
}

/// One parsed line, names unescaped but not yet sanitised.
#[derive(Debug, PartialEq)]
struct Point {
    measurement: String,
    tags: Vec<(String, String)>,
    /// Numeric and boolean fields; string fields are left out.
    fields: Vec<(String, f64)>,
    t_ms: i64,
}

fn add_point(set: &mut SeriesSet, p: Point, extra: &[(String, String)]) -> Result<(), String> {
    let mut pairs: Vec<(String, String)> = Vec::with_capacity(p.tags.len() + extra.len() + 1);
    for (k, v) in p.tags {
        let name = sanitize_label_name(&k);
        if name == METRIC_NAME {
            return Err(format!("tag key {k:?} is reserved"));
        }
        pairs.push((name, v));
    }
    pairs.extend(extra.iter().cloned());
    let base = Labels::from_pairs(pairs);
    let mut named = Vec::with_capacity(p.fields.len());
    for (field, v) in p.fields {
        let name = metric_name("", &format!("{}_{field}", p.measurement));
        if name.is_empty() {
            return Err(format!(
                "measurement {:?} and field {field:?} make no metric name",
                p.measurement
            ));
        }
        named.push((name, v));
    }
    for (name, v) in named {
        set.push(with_name(&base, name), Sample { t: p.t_ms, v });
    }
    Ok(())
}

fn parse_line(line: &str, precision: Precision, now_ms: i64) -> Result<Point, String> {
    let mut c = Cursor { s: line, pos: 0 };
    let measurement = c.name(b", \t", false);
    if measurement.is_empty() {
        return Err("missing measurement".into());
    }
    let mut tags = Vec::new();
    while c.eat(b',') {
        let key = c.name(b"=, \t", true);
        if key.is_empty() || !c.eat(b'=') {
            return Err(format!(
                "malformed tag after {measurement:?}: expected key=value"
            ));
        }
        // An unescaped `=` in a value is taken literally: it is unambiguous,
        // and devices that forget to escape it are common.
        let value = c.name(b", \t", true);
        if value.is_empty() {
            return Err(format!(
                "tag {key:?} has an empty value: omit the tag instead"
            ));
        }
        tags.push((key, value));
    }
    if !c.spaces() {
        return Err("missing field set".into());
    }
    let mut fields = Vec::new();
    loop {
        let key = c.name(b"=, \t", true);
        if key.is_empty() {
            return Err("missing field key".into());
        }
        if !c.eat(b'=') {
            return Err(format!("field {key:?} has no value"));
        }
        if c.peek() == Some(b'"') {
            c.quoted().map_err(|e| format!("field {key:?}: {e}"))?;
        } else {
            let raw = c.until(b", \t");
            let v = field_value(raw).map_err(|e| format!("field {key:?}: {e}"))?;
            // The last of repeated keys wins, as in InfluxDB.
            fields.retain(|(k, _)| *k != key);
            fields.push((key, v));
        }
        if !c.eat(b',') {
            break;
        }
    }
    let t_ms = if c.spaces() && !c.at_end() {
        let raw = c.until(b" \t");
        let t: i64 = raw
            .parse()
            .map_err(|_| format!("invalid timestamp {raw:?}: expected an integer"))?;
        precision
            .to_ms(t)
            .ok_or_else(|| format!("timestamp {t} is out of range"))?
    } else {
        now_ms
    };
    c.spaces();
    if !c.at_end() {
        return Err(format!(
            "unexpected text {:?} after the timestamp",
            c.rest()
        ));
    }
    Ok(Point {
        measurement,
        tags,
        fields,
        t_ms,
    })
}

/// A numeric or boolean field value. Rust's float parser also accepts `inf`
/// and `NaN`, which line protocol does not, so the characters are checked
/// first.
fn field_value(raw: &str) -> Result<f64, String> {
    let bad = || format!("invalid value {raw:?}");
    match raw {
        "" => return Err("empty value".into()),
        "t" | "T" | "true" | "True" | "TRUE" => return Ok(1.0),
        "f" | "F" | "false" | "False" | "FALSE" => return Ok(0.0),
        _ => {}
    }
    if let Some(int) = raw.strip_suffix('i') {
        return int.parse::<i64>().map(|i| i as f64).map_err(|_| bad());
    }
    if let Some(uint) = raw.strip_suffix('u') {
        if uint.starts_with(['+', '-']) {
            return Err(bad());
        }
        return uint.parse::<u64>().map(|u| u as f64).map_err(|_| bad());
    }
    let digits = raw.trim_start_matches(['+', '-']);
    if !digits.starts_with(|c: char| c.is_ascii_digit() || c == '.')
        || !raw
            .bytes()
            .all(|b| b.is_ascii_digit() || matches!(b, b'.' | b'e' | b'E' | b'+' | b'-'))
    {
        return Err(bad());
    }
    match raw.parse::<f64>() {
        Ok(v) if v.is_finite() => Ok(v),
        Ok(_) => Err(format!("value {raw:?} is out of range")),
        Err(_) => Err(bad()),
    }
}

struct Cursor<'a> {
    s: &'a str,
    pos: usize,
}

impl Cursor<'_> {
    fn peek(&self) -> Option<u8> {
        self.s.as_bytes().get(self.pos).copied()
    }

    fn at_end(&self) -> bool {
        self.pos >= self.s.len()
    }

    fn rest(&self) -> &str {
        &self.s[self.pos..]
    }

    fn eat(&mut self, b: u8) -> bool {
        let hit = self.peek() == Some(b);
        if hit {
            self.pos += 1;
        }
        hit
    }

    /// Skips spaces and tabs; whether there were any.
    fn spaces(&mut self) -> bool {
        let start = self.pos;
        while matches!(self.peek(), Some(b' ' | b'\t')) {
            self.pos += 1;
        }
        self.pos > start
    }

    /// Raw text up to one of `stops` (unescaped values need no unescaping).
    fn until(&mut self, stops: &[u8]) -> &str {
        let start = self.pos;
        while let Some(b) = self.peek() {
            if stops.contains(&b) {
                break;
            }
            self.pos += 1;
        }
        &self.s[start..self.pos]
    }

    /// A measurement, tag key, tag value or field key, unescaped: `\` before
    /// a stop character, `\` or (in keys and values) `=` stands for that
    /// character; any other backslash is literal.
    fn name(&mut self, stops: &[u8], escaped_equals: bool) -> String {
        let bytes = self.s.as_bytes();
        let mut out = String::new();
        let mut run = self.pos;
        while let Some(b) = self.peek() {
            if b == b'\\' {
                if let Some(&next) = bytes.get(self.pos + 1) {
                    let escapable = matches!(next, b',' | b' ' | b'\\')
                        || stops.contains(&next)
                        || (escaped_equals && next == b'=');
                    if escapable {
                        out.push_str(&self.s[run..self.pos]);
                        out.push(next as char);
                        self.pos += 2;
                        run = self.pos;
                        continue;
                    }
                }
            } else if stops.contains(&b) {
                break;
            }
            self.pos += 1;
        }
        out.push_str(&self.s[run..self.pos]);
        out
    }

    /// Skips a quoted string field; only its syntax matters, since string
    /// fields are not stored.
    fn quoted(&mut self) -> Result<(), String> {
        let bytes = self.s.as_bytes();
        self.pos += 1;
        while let Some(b) = self.peek() {
            match b {
                b'\\' if matches!(bytes.get(self.pos + 1), Some(b'"' | b'\\')) => self.pos += 2,
                b'"' => {
                    self.pos += 1;
                    return match self.peek() {
                        None | Some(b',' | b' ' | b'\t') => Ok(()),
                        Some(_) => Err("text right after the closing quote".into()),
                    };
                }
                _ => self.pos += 1,
            }
        }
        Err("unterminated string".into())
    }
}

// What the text formats (line protocol, JSON, Sparkplug) share.

/// A metric name as OTLP names are made valid: runs of other characters
/// become one `_`, and a leading digit gets a `_` in front. `prefix`, when
/// not empty, is joined with `_`. Empty when nothing of `name` is usable,
/// prefix or not: `{prefix}` alone would merge unrelated metrics.
pub(crate) fn metric_name(prefix: &str, name: &str) -> String {
    let name = prometheus_name(name, "", MetricType::Unknown, false);
    if prefix.is_empty() || name.is_empty() {
        name
    } else {
        prometheus_name(&format!("{prefix}_{name}"), "", MetricType::Unknown, false)
    }
}

/// Configured label pairs with sanitised names and no `__name__`.
pub(crate) fn sanitized_pairs(pairs: &[(String, String)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (sanitize_label_name(k), v.clone()))
        .filter(|(k, _)| k != METRIC_NAME)
        .collect()
}

pub(crate) fn with_name(base: &Labels, name: String) -> Labels {
    let mut b = base.clone().into_builder();
    b.set(METRIC_NAME, name);
    b.build()
}

/// Samples gathered by label set, so a body with many points of one series
/// gives one [`Series`] with its samples in time order.
#[derive(Debug, Default)]
pub(crate) struct SeriesSet {
    index: HashMap<Labels, usize>,
    series: Vec<Series>,
}

impl SeriesSet {
    pub(crate) fn push(&mut self, labels: Labels, sample: Sample) {
        match self.index.get(&labels) {
            Some(&i) => self.series[i].samples.push(sample),
            None => {
                self.index.insert(labels.clone(), self.series.len());
                self.series.push(Series {
                    labels,
                    samples: vec![sample],
                    histograms: vec![],
                });
            }
        }
    }

    pub(crate) fn into_series(mut self) -> Vec<Series> {
        for s in &mut self.series {
            // Stable: samples of one timestamp stay in arrival order.
            s.samples.sort_by_key(|s| s.t);
        }
        self.series
    }
}

#[cfg(test)]
#[path = "influx_tests.rs"]
pub(crate) mod tests;
