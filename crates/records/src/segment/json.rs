//! The JSON text of the `events_json` and `links_json` columns.
//!
//! Events and links are rare and nested, so they are kept as one JSON array
//! per span rather than as Parquet lists of structs: DuckDB and pandas read
//! them with their JSON functions, and the schema stays flat.
//!
//! Attributes are a JSON object with natively typed values (`"retry": 3`,
//! `"ok": true`, `"ratio": 0.5`), so they are pleasant to query. Kinds JSON
//! cannot tell apart (bytes, nested JSON text, non-finite doubles) are written
//! as strings and named in a sibling `"attribute_kinds"` object.
//!
//! Decoding is our own small parser, not `serde_json::Value`: without the
//! `preserve_order` and `float_roundtrip` features (which this crate does not
//! enable for the whole workspace) `Value` sorts object keys and may round a
//! double by one ulp, and a round trip must give back the attributes exactly,
//! in the order they arrived.

use std::borrow::Cow;
use std::fmt::Write as _;

use sonde_model::records::{AttrKind, AttrValue, Attributes, SpanEvent, SpanId, SpanLink, TraceId};

/// Deeper nesting than our own output ever has is corruption; the limit keeps
/// a damaged file from exhausting the stack.
const MAX_DEPTH: usize = 16;

pub(super) fn encode_events(events: &[SpanEvent]) -> String {
    let mut out = String::from("[");
    for (i, e) in events.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        let _ = write!(out, "{{\"time_unix_nano\":{},\"name\":", e.time_ns);
        push_string(&mut out, &e.name);
        push_attributes(&mut out, &e.attributes);
        out.push('}');
    }
    out.push(']');
    out
}

pub(super) fn encode_links(links: &[SpanLink]) -> String {
    let mut out = String::from("[");
    for (i, l) in links.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        // Hex of the raw bytes, not `TraceId::parse`'s rules: a link to an
        // all-zero id must come back as it went in.
        let _ = write!(
            out,
            "{{\"trace_id\":\"{}\",\"span_id\":\"{}\",\"trace_state\":",
            l.trace_id, l.span_id
        );
        push_string(&mut out, &l.trace_state);
        push_attributes(&mut out, &l.attributes);
        out.push('}');
    }
    out.push(']');
    out
}

/// Appends `,"attributes":{...}` and, when needed, `,"attribute_kinds":{...}`.
fn push_attributes(out: &mut String, attrs: &Attributes) {
    out.push_str(",\"attributes\":{");
    let mut tagged: Vec<(&str, AttrKind)> = Vec::new();
    for (i, (k, v)) in attrs.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        push_string(out, k);
        out.push(':');
        match v {
            AttrValue::Str(s) => push_string(out, s),
            AttrValue::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
            AttrValue::Int(n) => {
                let _ = write!(out, "{n}");
            }
            // `{:?}` always has a '.' or an exponent, so it reads back as a
            // double, and it is the shortest text that parses to the same bits.
            AttrValue::Double(d) if d.is_finite() => {
                let _ = write!(out, "{d:?}");
            }
            other => {
                push_string(out, &other.as_text());
                tagged.push((k, other.kind()));
            }
        }
    }
    out.push('}');
    if !tagged.is_empty() {
        out.push_str(",\"attribute_kinds\":{");
        for (i, (k, kind)) in tagged.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            push_string(out, k);
            out.push(':');
            push_string(out, kind.as_str());
        }
        out.push('}');
    }
}

fn push_string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

pub(super) fn decode_events(text: &str) -> Result<Vec<SpanEvent>, String> {
    let Json::Arr(items) = parse(text)? else {
        return Err("events_json is not an array".into());
    };
    items
        .into_iter()
        .map(|item| {
            let obj = Obj::new(item, "event")?;
            Ok(SpanEvent {
                time_ns: obj.int("time_unix_nano")?,
                name: obj.string("name")?,
                attributes: obj.attributes()?,
            })
        })
        .collect()
}

pub(super) fn decode_links(text: &str) -> Result<Vec<SpanLink>, String> {
    let Json::Arr(items) = parse(text)? else {
        return Err("links_json is not an array".into());
    };
    items
        .into_iter()
        .map(|item| {
            let obj = Obj::new(item, "link")?;
            Ok(SpanLink {
                trace_id: TraceId(hex_bytes(&obj.string("trace_id")?)?),
                span_id: SpanId(hex_bytes(&obj.string("span_id")?)?),
                trace_state: obj.string("trace_state")?,
                attributes: obj.attributes()?,
            })
        })
        .collect()
}

fn hex_bytes<const N: usize>(s: &str) -> Result<[u8; N], String> {
    let bad = || format!("bad hex id {s:?}");
    if s.len() != N * 2 {
        return Err(bad());
    }
    let mut out = [0u8; N];
    for (i, b) in out.iter_mut().enumerate() {
        *b = u8::from_str_radix(s.get(i * 2..i * 2 + 2).ok_or_else(bad)?, 16).map_err(|_| bad())?;
    }
    Ok(out)
}

/// A parsed JSON value. Numbers keep their text, so integers and doubles are
/// converted exactly, by Rust's own parsers, only once their kind is known.
#[derive(Debug, PartialEq)]
enum Json<'a> {
    Null,
    Bool(bool),
    Num(&'a str),
    Str(Cow<'a, str>),
    Arr(Vec<Json<'a>>),
    /// Members in document order.
    Obj(Vec<(Cow<'a, str>, Json<'a>)>),
}

/// An event or link object, with typed access to its members.
struct Obj<'a> {
    what: &'static str,
    members: Vec<(Cow<'a, str>, Json<'a>)>,
}

impl<'a> Obj<'a> {
    fn new(v: Json<'a>, what: &'static str) -> Result<Obj<'a>, String> {
        match v {
            Json::Obj(members) => Ok(Obj { what, members }),
            _ => Err(format!("{what} is not an object")),
        }
    }

    fn get(&self, key: &str) -> Option<&Json<'a>> {
        self.members.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    fn missing(&self, key: &str) -> String {
        format!("{} without a valid {key:?}", self.what)
    }

    fn int(&self, key: &str) -> Result<i64, String> {
        match self.get(key) {
            Some(Json::Num(n)) => n.parse().map_err(|_| self.missing(key)),
            _ => Err(self.missing(key)),
        }
    }

    fn string(&self, key: &str) -> Result<String, String> {
        match self.get(key) {
            Some(Json::Str(s)) => Ok(s.to_string()),
            _ => Err(self.missing(key)),
        }
    }

    fn attributes(&self) -> Result<Attributes, String> {
        let Some(Json::Obj(members)) = self.get("attributes") else {
            return Err(self.missing("attributes"));
        };
        let kinds: Vec<(&str, AttrKind)> = match self.get("attribute_kinds") {
            None => Vec::new(),
            Some(Json::Obj(kinds)) => kinds
                .iter()
                .map(|(k, v)| match v {
                    Json::Str(s) => AttrKind::parse(s).map(|kind| (k.as_ref(), kind)),
                    _ => None,
                })
                .collect::<Option<_>>()
                .ok_or_else(|| self.missing("attribute_kinds"))?,
            Some(_) => return Err(self.missing("attribute_kinds")),
        };
        members
            .iter()
            .map(|(k, v)| {
                let tagged = kinds
                    .iter()
                    .find(|(key, _)| key == k)
                    .map(|&(_, kind)| kind);
                let value = match (v, tagged) {
                    (Json::Str(s), Some(kind)) => AttrValue::from_text(kind, s),
                    (Json::Str(s), None) => AttrValue::Str(s.to_string()),
                    (Json::Bool(b), None) => AttrValue::Bool(*b),
                    (Json::Num(n), None) if n.contains(['.', 'e', 'E']) => {
                        AttrValue::Double(n.parse().map_err(|_| format!("bad number {n}"))?)
                    }
                    (Json::Num(n), None) => {
                        AttrValue::Int(n.parse().map_err(|_| format!("bad integer {n}"))?)
                    }
                    _ => return Err(format!("attribute {k:?} has an unexpected value")),
                };
                Ok((k.to_string(), value))
            })
            .collect()
    }
}

/// Parses one JSON document (RFC 8259), nothing but whitespace around it.
fn parse(text: &str) -> Result<Json<'_>, String> {
    let mut p = Parser { s: text, pos: 0 };
    let v = p.value(0)?;
    p.skip_ws();
    if p.pos != text.len() {
        return Err(p.error("trailing characters"));
    }
    Ok(v)
}

struct Parser<'a> {
    s: &'a str,
    pos: usize,
}

impl<'a> Parser<'a> {
    fn error(&self, what: &str) -> String {
        format!("invalid JSON at byte {}: {what}", self.pos)
    }

    fn peek(&self) -> Option<u8> {
        self.s.as_bytes().get(self.pos).copied()
    }

    fn skip_ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.pos += 1;
        }
    }

    fn expect(&mut self, c: u8) -> Result<(), String> {
        self.skip_ws();
        if self.peek() == Some(c) {
            self.pos += 1;
            Ok(())
        } else {
            Err(self.error(&format!("expected '{}'", c as char)))
        }
    }

    fn literal(&mut self, word: &str, v: Json<'a>) -> Result<Json<'a>, String> {
        if self.s[self.pos..].starts_with(word) {
            self.pos += word.len();
            Ok(v)
        } else {
            Err(self.error("unknown literal"))
        }
    }

    fn value(&mut self, depth: usize) -> Result<Json<'a>, String> {
        if depth > MAX_DEPTH {
            return Err(self.error("nested too deeply"));
        }
        self.skip_ws();
        match self.peek() {
            Some(b'{') => self.object(depth),
            Some(b'[') => self.array(depth),
            Some(b'"') => self.string().map(Json::Str),
            Some(b't') => self.literal("true", Json::Bool(true)),
            Some(b'f') => self.literal("false", Json::Bool(false)),
            Some(b'n') => self.literal("null", Json::Null),
            Some(b'-' | b'0'..=b'9') => self.number(),
            _ => Err(self.error("expected a value")),
        }
    }

    /// Parses `{` members `}`; `self.pos` is at the `{`.
    fn object(&mut self, depth: usize) -> Result<Json<'a>, String> {
        self.pos += 1;
        let mut members = Vec::new();
        self.skip_ws();
        if self.peek() == Some(b'}') {
            self.pos += 1;
            return Ok(Json::Obj(members));
        }
        loop {
            self.skip_ws();
            if self.peek() != Some(b'"') {
                return Err(self.error("expected a member name"));
            }
            let key = self.string()?;
            self.expect(b':')?;
            members.push((key, self.value(depth + 1)?));
            self.skip_ws();
            match self.peek() {
                Some(b',') => self.pos += 1,
                Some(b'}') => {
                    self.pos += 1;
                    return Ok(Json::Obj(members));
                }
                _ => return Err(self.error("expected ',' or '}'")),
            }
        }
    }

    fn array(&mut self, depth: usize) -> Result<Json<'a>, String> {
        self.pos += 1;
        let mut items = Vec::new();
        self.skip_ws();
        if self.peek() == Some(b']') {
            self.pos += 1;
            return Ok(Json::Arr(items));
        }
        loop {
            items.push(self.value(depth + 1)?);
            self.skip_ws();
            match self.peek() {
                Some(b',') => self.pos += 1,
                Some(b']') => {
                    self.pos += 1;
                    return Ok(Json::Arr(items));
                }
                _ => return Err(self.error("expected ',' or ']'")),
            }
        }
    }

    fn number(&mut self) -> Result<Json<'a>, String> {
        let start = self.pos;
        let digits = |p: &mut Self| {
            let from = p.pos;
            while matches!(p.peek(), Some(b'0'..=b'9')) {
                p.pos += 1;
            }
            p.pos > from
        };
        if self.peek() == Some(b'-') {
            self.pos += 1;
        }
        if self.peek() == Some(b'0') {
            self.pos += 1;
        } else if !digits(self) {
            return Err(self.error("expected digits"));
        }
        if self.peek() == Some(b'.') {
            self.pos += 1;
            if !digits(self) {
                return Err(self.error("expected digits after '.'"));
            }
        }
        if matches!(self.peek(), Some(b'e' | b'E')) {
            self.pos += 1;
            if matches!(self.peek(), Some(b'+' | b'-')) {
                self.pos += 1;
            }
            if !digits(self) {
                return Err(self.error("expected exponent digits"));
            }
        }
        Ok(Json::Num(&self.s[start..self.pos]))
    }

    /// Parses a string; `self.pos` is at the opening quote. Borrows from the
    /// input unless there are escapes.
    fn string(&mut self) -> Result<Cow<'a, str>, String> {
        self.pos += 1;
        let start = self.pos;
        let mut owned: Option<String> = None;
        loop {
            let rest = &self.s[self.pos..];
            let Some(i) = rest
                .find(['"', '\\'])
                .filter(|&i| !rest[..i].bytes().any(|b| b < 0x20))
            else {
                return Err(self.error("unterminated string or raw control character"));
            };
            let chunk = &rest[..i];
            self.pos += i;
            if self.peek() == Some(b'"') {
                self.pos += 1;
                return Ok(match owned {
                    Some(mut s) => {
                        s.push_str(chunk);
                        Cow::Owned(s)
                    }
                    None => Cow::Borrowed(&self.s[start..self.pos - 1]),
                });
            }
            let s = owned.get_or_insert_with(String::new);
            s.push_str(chunk);
            self.pos += 1; // the backslash
            let c = match self.peek() {
                Some(b'"') => '"',
                Some(b'\\') => '\\',
                Some(b'/') => '/',
                Some(b'b') => '\u{8}',
                Some(b'f') => '\u{c}',
                Some(b'n') => '\n',
                Some(b'r') => '\r',
                Some(b't') => '\t',
                Some(b'u') => {
                    self.pos += 1;
                    let c = self.unicode_escape()?;
                    s.push(c);
                    continue;
                }
                _ => return Err(self.error("bad escape")),
            };
            s.push(c);
            self.pos += 1;
        }
    }

    /// Decodes the hex digits after `\u` (and a low surrogate's `\uXXXX`).
    fn unicode_escape(&mut self) -> Result<char, String> {
        let hi = self.hex4()?;
        let code = if (0xD800..0xDC00).contains(&hi) {
            if !self.s[self.pos..].starts_with("\\u") {
                return Err(self.error("lone surrogate"));
            }
            self.pos += 2;
            let lo = self.hex4()?;
            if !(0xDC00..0xE000).contains(&lo) {
                return Err(self.error("bad low surrogate"));
            }
            0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00)
        } else {
            hi
        };
        char::from_u32(code).ok_or_else(|| self.error("invalid code point"))
    }

    fn hex4(&mut self) -> Result<u32, String> {
        let digits = self
            .s
            .get(self.pos..self.pos + 4)
            .ok_or_else(|| self.error("short \\u escape"))?;
        if !digits.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(self.error("bad \\u escape"));
        }
        self.pos += 4;
        u32::from_str_radix(digits, 16).map_err(|_| self.error("bad \\u escape"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(attributes: Attributes) -> SpanEvent {
        SpanEvent {
            time_ns: -5,
            name: "ex\"ce\\p\ntion ✓ \u{1}".into(),
            attributes,
        }
    }

    #[test]
    fn typed_attributes_round_trip_in_order() {
        let attrs: Attributes = vec![
            ("z".into(), AttrValue::Int(i64::MIN)),
            ("a".into(), AttrValue::Double(0.1)),
            ("m".into(), AttrValue::Double(1e300)),
            ("n".into(), AttrValue::Double(f64::NEG_INFINITY)),
            ("b".into(), AttrValue::Bool(false)),
            ("bytes".into(), AttrValue::Bytes(vec![0, 255])),
            ("json".into(), AttrValue::Json("[1,2]".into())),
            ("".into(), AttrValue::Str("".into())),
            ("😀".into(), AttrValue::Str("3".into())),
            ("f".into(), AttrValue::Double(3.0)),
        ];
        let events = vec![event(attrs), event(Vec::new())];
        let text = encode_events(&events);
        assert_eq!(decode_events(&text).unwrap(), events);
        assert!(
            text.contains("\"z\":-9223372036854775808,\"a\":0.1"),
            "{text}"
        );
        // Anything JSON can state is stated natively, for DuckDB users.
        let doc: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(doc[0]["attributes"]["f"], serde_json::json!(3.0));
        assert_eq!(doc[0]["attribute_kinds"]["bytes"], "binary");
        assert_eq!(decode_events("[]").unwrap(), Vec::new());
    }

    #[test]
    fn links_keep_raw_ids() {
        let links = vec![SpanLink {
            trace_id: TraceId([0; 16]),
            span_id: SpanId([1, 2, 3, 4, 5, 6, 7, 255]),
            trace_state: "k=v".into(),
            attributes: vec![("x".into(), AttrValue::Int(1))],
        }];
        assert_eq!(decode_links(&encode_links(&links)).unwrap(), links);
    }

    #[test]
    fn parser_follows_the_grammar() {
        let v = parse(r#" {"a" : [1, -0.5e-3, true, null, "\u00e9\ud83d\ude00\/"]} "#).unwrap();
        let expected = Json::Obj(vec![(
            "a".into(),
            Json::Arr(vec![
                Json::Num("1"),
                Json::Num("-0.5e-3"),
                Json::Bool(true),
                Json::Null,
                Json::Str("é😀/".into()),
            ]),
        )]);
        assert_eq!(v, expected);
        for bad in [
            "",
            "[",
            "[1,]",
            "{\"a\"}",
            "01",
            "1.",
            "-",
            "\"\\x\"",
            "\"\u{1}\"",
            "\"\\ud800\"",
            "[] x",
            "tru",
        ] {
            assert!(parse(bad).is_err(), "{bad:?} parsed");
        }
        assert!(parse(&"[".repeat(100)).is_err());
        assert!(
            decode_events(r#"[{"time_unix_nano":1,"name":"x","attributes":{"a":null}}]"#).is_err()
        );
        assert!(decode_events(r#"[{"name":"x","attributes":{}}]"#).is_err());
    }
}
