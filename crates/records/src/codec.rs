//! The WAL's binary form of a batch of spans or logs.
//!
//! A batch is written as a table of its distinct origins followed by the
//! rows, each naming its origin by index, so a batch of a thousand spans from
//! one service stores the resource once. Integers are varints; strings are
//! length-prefixed UTF-8.

use std::sync::Arc;

use sonde_model::records::{
    AttrValue, Attributes, LogRecord, Origin, SpanEvent, SpanId, SpanKind, SpanLink, SpanRecord,
    StatusCode, TraceId,
};

pub(crate) struct Writer {
    pub out: Vec<u8>,
}

impl Writer {
    pub fn new() -> Writer {
        Writer {
            out: Vec::with_capacity(4096),
        }
    }

    fn uvarint(&mut self, mut v: u64) {
        while v >= 0x80 {
            self.out.push((v as u8) | 0x80);
            v >>= 7;
        }
        self.out.push(v as u8);
    }

    fn ivarint(&mut self, v: i64) {
        self.uvarint(((v << 1) ^ (v >> 63)) as u64);
    }

    fn bytes(&mut self, b: &[u8]) {
        self.uvarint(b.len() as u64);
        self.out.extend_from_slice(b);
    }

    fn str(&mut self, s: &str) {
        self.bytes(s.as_bytes());
    }

    fn opt_id(&mut self, id: Option<&[u8]>) {
        match id {
            Some(b) => {
                self.out.push(1);
                self.out.extend_from_slice(b);
            }
            None => self.out.push(0),
        }
    }

    fn attrs(&mut self, attrs: &Attributes) {
        self.uvarint(attrs.len() as u64);
        for (k, v) in attrs {
            self.str(k);
            match v {
                AttrValue::Str(s) => {
                    self.out.push(0);
                    self.str(s);
                }
                AttrValue::Bool(b) => {
                    self.out.push(1);
                    self.out.push(*b as u8);
                }
                AttrValue::Int(i) => {
                    self.out.push(2);
                    self.ivarint(*i);
                }
                AttrValue::Double(d) => {
                    self.out.push(3);
                    self.out.extend_from_slice(&d.to_le_bytes());
                }
                AttrValue::Bytes(b) => {
                    self.out.push(4);
                    self.bytes(b);
                }
                AttrValue::Json(s) => {
                    self.out.push(5);
                    self.str(s);
                }
            }
        }
    }

    /// Writes the origin table for `origins` and returns, for each row, the
    /// index of its origin in the table.
    fn origins<'a>(&mut self, origins: impl Iterator<Item = &'a Arc<Origin>>) -> Vec<u64> {
        let mut table: Vec<&Arc<Origin>> = Vec::new();
        let mut index = Vec::new();
        for o in origins {
            let i = match table.iter().position(|t| Arc::ptr_eq(t, o)) {
                Some(i) => i,
                None => {
                    table.push(o);
                    table.len() - 1
                }
            };
            index.push(i as u64);
        }
        self.uvarint(table.len() as u64);
        for o in table {
            self.str(&o.service);
            self.str(&o.host);
            self.attrs(&o.resource);
            self.str(&o.scope_name);
            self.str(&o.scope_version);
        }
        index
    }

    pub fn spans(&mut self, spans: &[SpanRecord]) {
        let index = self.origins(spans.iter().map(|s| &s.origin));
        self.uvarint(spans.len() as u64);
        for (s, origin) in spans.iter().zip(index) {
            self.uvarint(origin);
            self.out.extend_from_slice(&s.trace_id.0);
            self.out.extend_from_slice(&s.span_id.0);
            self.opt_id(s.parent_span_id.as_ref().map(|p| &p.0[..]));
            self.str(&s.trace_state);
            self.uvarint(s.flags as u64);
            self.str(&s.name);
            self.out.push(s.kind as u8);
            self.ivarint(s.start_ns);
            self.ivarint(s.end_ns.wrapping_sub(s.start_ns));
            self.out.push(s.status as u8);
            self.str(&s.status_message);
            self.attrs(&s.attributes);
            self.uvarint(s.events.len() as u64);
            for e in &s.events {
                self.ivarint(e.time_ns.wrapping_sub(s.start_ns));
                self.str(&e.name);
                self.attrs(&e.attributes);
            }
            self.uvarint(s.links.len() as u64);
            for l in &s.links {
                self.out.extend_from_slice(&l.trace_id.0);
                self.out.extend_from_slice(&l.span_id.0);
                self.str(&l.trace_state);
                self.attrs(&l.attributes);
            }
        }
    }

    pub fn logs(&mut self, logs: &[LogRecord]) {
        let index = self.origins(logs.iter().map(|l| &l.origin));
        self.uvarint(logs.len() as u64);
        for (l, origin) in logs.iter().zip(index) {
            self.uvarint(origin);
            self.ivarint(l.time_ns);
            self.ivarint(l.observed_ns.wrapping_sub(l.time_ns));
            self.out.push(l.severity_number);
            self.str(&l.severity_text);
            self.str(&l.body);
            self.str(&l.event_name);
            self.opt_id(l.trace_id.as_ref().map(|t| &t.0[..]));
            self.opt_id(l.span_id.as_ref().map(|s| &s.0[..]));
            self.uvarint(l.flags as u64);
            self.attrs(&l.attributes);
        }
    }
}

/// Reads what [`Writer`] wrote. Every read is bounds-checked: a record that
/// passed its checksum but does not parse is reported, never a panic.
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
}

type R<T> = Option<T>;

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8]) -> Reader<'a> {
        Reader { buf }
    }

    fn take(&mut self, n: usize) -> R<&'a [u8]> {
        if self.buf.len() < n {
            return None;
        }
        let (head, rest) = self.buf.split_at(n);
        self.buf = rest;
        Some(head)
    }

    fn u8(&mut self) -> R<u8> {
        self.take(1).map(|b| b[0])
    }

    fn uvarint(&mut self) -> R<u64> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.u8()?;
            v |= ((b & 0x7f) as u64) << shift;
            if b < 0x80 {
                return Some(v);
            }
        }
        None
    }

    fn ivarint(&mut self) -> R<i64> {
        let u = self.uvarint()?;
        Some(((u >> 1) as i64) ^ -((u & 1) as i64))
    }

    /// A count that cannot exceed the bytes left, so a corrupt length never
    /// makes us allocate gigabytes.
    fn count(&mut self) -> R<usize> {
        let n = self.uvarint()? as usize;
        (n <= self.buf.len()).then_some(n)
    }

    fn bytes(&mut self) -> R<&'a [u8]> {
        let n = self.count()?;
        self.take(n)
    }

    fn string(&mut self) -> R<String> {
        std::str::from_utf8(self.bytes()?).ok().map(str::to_string)
    }

    fn arr<const N: usize>(&mut self) -> R<[u8; N]> {
        self.take(N)?.try_into().ok()
    }

    fn opt_arr<const N: usize>(&mut self) -> R<Option<[u8; N]>> {
        match self.u8()? {
            0 => Some(None),
            1 => Some(Some(self.arr()?)),
            _ => None,
        }
    }

    fn attrs(&mut self) -> R<Attributes> {
        let n = self.count()?;
        let mut out = Vec::with_capacity(n);
        for _ in 0..n {
            let k = self.string()?;
            let v = match self.u8()? {
                0 => AttrValue::Str(self.string()?),
                1 => AttrValue::Bool(self.u8()? != 0),
                2 => AttrValue::Int(self.ivarint()?),
                3 => AttrValue::Double(f64::from_le_bytes(self.arr()?)),
                4 => AttrValue::Bytes(self.bytes()?.to_vec()),
                5 => AttrValue::Json(self.string()?),
                _ => return None,
            };
            out.push((k, v));
        }
        Some(out)
    }

    fn origins(&mut self) -> R<Vec<Arc<Origin>>> {
        let n = self.count()?;
        let mut out = Vec::with_capacity(n);
        for _ in 0..n {
            out.push(Arc::new(Origin {
                service: self.string()?,
                host: self.string()?,
                resource: self.attrs()?,
                scope_name: self.string()?,
                scope_version: self.string()?,
            }));
        }
        Some(out)
    }

    fn origin(&mut self, table: &[Arc<Origin>]) -> R<Arc<Origin>> {
        table.get(self.uvarint()? as usize).cloned()
    }

    pub fn spans(&mut self) -> R<Vec<SpanRecord>> {
        let origins = self.origins()?;
        let n = self.count()?;
        let mut out = Vec::with_capacity(n);
        for _ in 0..n {
            let origin = self.origin(&origins)?;
            let trace_id = TraceId(self.arr()?);
            let span_id = SpanId(self.arr()?);
            let parent_span_id = self.opt_arr()?.map(SpanId);
            let trace_state = self.string()?;
            let flags = self.uvarint()? as u32;
            let name = self.string()?;
            let kind = SpanKind::from_i32(self.u8()? as i32);
            let start_ns = self.ivarint()?;
            let end_ns = start_ns.wrapping_add(self.ivarint()?);
            let status = StatusCode::from_i32(self.u8()? as i32);
            let status_message = self.string()?;
            let attributes = self.attrs()?;
            let n_events = self.count()?;
            let mut events = Vec::with_capacity(n_events);
            for _ in 0..n_events {
                events.push(SpanEvent {
                    time_ns: start_ns.wrapping_add(self.ivarint()?),
                    name: self.string()?,
                    attributes: self.attrs()?,
                });
            }
            let n_links = self.count()?;
            let mut links = Vec::with_capacity(n_links);
            for _ in 0..n_links {
                links.push(SpanLink {
                    trace_id: TraceId(self.arr()?),
                    span_id: SpanId(self.arr()?),
                    trace_state: self.string()?,
                    attributes: self.attrs()?,
                });
            }
            out.push(SpanRecord {
                trace_id,
                span_id,
                parent_span_id,
                trace_state,
                flags,
                name,
                kind,
                start_ns,
                end_ns,
                status,
                status_message,
                origin,
                attributes,
                events,
                links,
            });
        }
        Some(out)
    }

    pub fn logs(&mut self) -> R<Vec<LogRecord>> {
        let origins = self.origins()?;
        let n = self.count()?;
        let mut out = Vec::with_capacity(n);
        for _ in 0..n {
            let origin = self.origin(&origins)?;
            let time_ns = self.ivarint()?;
            out.push(LogRecord {
                time_ns,
                observed_ns: time_ns.wrapping_add(self.ivarint()?),
                severity_number: self.u8()?,
                severity_text: self.string()?,
                body: self.string()?,
                event_name: self.string()?,
                trace_id: self.opt_arr()?.map(TraceId),
                span_id: self.opt_arr()?.map(SpanId),
                flags: self.uvarint()? as u32,
                origin,
                attributes: self.attrs()?,
            });
        }
        Some(out)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub fn sample_spans() -> Vec<SpanRecord> {
        let origin = Arc::new(Origin {
            service: "checkout".into(),
            host: "web-1".into(),
            resource: vec![("service.name".into(), AttrValue::Str("checkout".into()))],
            scope_name: "lib".into(),
            scope_version: "1.0".into(),
        });
        let other = Arc::new(Origin {
            service: "db".into(),
            ..Origin::default()
        });
        let root = SpanRecord {
            trace_id: TraceId([7; 16]),
            span_id: SpanId([1; 8]),
            parent_span_id: None,
            trace_state: "ot=th:8".into(),
            flags: 1,
            name: "GET /cart".into(),
            kind: SpanKind::Server,
            start_ns: 1_700_000_000_000_000_000,
            end_ns: 1_700_000_000_250_000_000,
            status: StatusCode::Error,
            status_message: "boom".into(),
            origin: origin.clone(),
            attributes: vec![
                ("http.status_code".into(), AttrValue::Int(500)),
                ("ratio".into(), AttrValue::Double(0.25)),
                ("ok".into(), AttrValue::Bool(false)),
                ("raw".into(), AttrValue::Bytes(vec![0, 1, 2])),
                ("list".into(), AttrValue::Json("[1,2]".into())),
                ("ünï".into(), AttrValue::Str("çödé".into())),
            ],
            events: vec![SpanEvent {
                time_ns: 1_700_000_000_100_000_000,
                name: "exception".into(),
                attributes: vec![("exception.type".into(), AttrValue::Str("E".into()))],
            }],
            links: vec![SpanLink {
                trace_id: TraceId([9; 16]),
                span_id: SpanId([3; 8]),
                trace_state: String::new(),
                attributes: vec![],
            }],
        };
        let child = SpanRecord {
            span_id: SpanId([2; 8]),
            parent_span_id: Some(SpanId([1; 8])),
            name: "SELECT".into(),
            kind: SpanKind::Client,
            origin: other,
            events: vec![],
            links: vec![],
            attributes: vec![],
            status: StatusCode::Unset,
            status_message: String::new(),
            ..root.clone()
        };
        vec![root, child]
    }

    #[test]
    fn spans_and_logs_round_trip_and_share_origins() {
        let spans = sample_spans();
        let mut w = Writer::new();
        w.spans(&spans);
        let back = Reader::new(&w.out).spans().unwrap();
        assert_eq!(back, spans);

        let logs = vec![LogRecord {
            time_ns: 5,
            observed_ns: 9,
            severity_number: 17,
            severity_text: "ERROR".into(),
            body: "disk full".into(),
            event_name: "deploy".into(),
            trace_id: Some(TraceId([7; 16])),
            span_id: None,
            flags: 0,
            origin: spans[0].origin.clone(),
            attributes: vec![("user.id".into(), AttrValue::Str("u1".into()))],
        }];
        let mut w = Writer::new();
        w.logs(&logs);
        assert_eq!(Reader::new(&w.out).logs().unwrap(), logs);
    }

    #[test]
    fn truncated_input_is_an_error_not_a_panic() {
        let mut w = Writer::new();
        w.spans(&sample_spans());
        for cut in 0..w.out.len() {
            assert!(Reader::new(&w.out[..cut]).spans().is_none(), "cut at {cut}");
        }
    }
}
