//! A small protobuf writer for the OTLP messages the SDK sends most: spans
//! and log records are encoded straight from the SDK's own structs into the
//! request body, without building `opentelemetry-proto` messages first (that
//! took most of the export thread's time: a `String` or `Vec` per id, name,
//! key and value). Tests decode the output with the prost types.
//!
//! Scalars at their default value are left out, as proto3 does; the members
//! of a `oneof` are always written.

use crate::attributes::{KeyValue, Value};

const VARINT: u8 = 0;
const FIXED64: u8 = 1;
const LEN: u8 = 2;
const FIXED32: u8 = 5;

#[inline]
pub(crate) fn varint(buf: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        buf.push((v as u8) | 0x80);
        v >>= 7;
    }
    buf.push(v as u8);
}

#[inline]
fn tag(buf: &mut Vec<u8>, field: u32, wire_type: u8) {
    varint(buf, u64::from(field) << 3 | u64::from(wire_type));
}

/// A `bytes` or `string` field, left out when empty.
#[inline]
pub(crate) fn bytes(buf: &mut Vec<u8>, field: u32, v: &[u8]) {
    if !v.is_empty() {
        bytes_always(buf, field, v);
    }
}

#[inline]
fn bytes_always(buf: &mut Vec<u8>, field: u32, v: &[u8]) {
    tag(buf, field, LEN);
    varint(buf, v.len() as u64);
    buf.extend_from_slice(v);
}

#[inline]
pub(crate) fn string(buf: &mut Vec<u8>, field: u32, v: &str) {
    bytes(buf, field, v.as_bytes());
}

/// A `uint32`, `uint64`, `int32` (non-negative) or enum field.
#[inline]
pub(crate) fn uint(buf: &mut Vec<u8>, field: u32, v: u64) {
    if v != 0 {
        tag(buf, field, VARINT);
        varint(buf, v);
    }
}

#[inline]
pub(crate) fn fixed64(buf: &mut Vec<u8>, field: u32, v: u64) {
    if v != 0 {
        tag(buf, field, FIXED64);
        buf.extend_from_slice(&v.to_le_bytes());
    }
}

#[inline]
pub(crate) fn fixed32(buf: &mut Vec<u8>, field: u32, v: u32) {
    if v != 0 {
        tag(buf, field, FIXED32);
        buf.extend_from_slice(&v.to_le_bytes());
    }
}

/// An embedded message written by `body`, always present (even if empty).
/// The body is written in place after a one-byte length, moved up when
/// its length needs more bytes.
#[inline]
pub(crate) fn message(buf: &mut Vec<u8>, field: u32, body: impl FnOnce(&mut Vec<u8>)) {
    tag(buf, field, LEN);
    let at = buf.len();
    buf.push(0);
    body(buf);
    let len = buf.len() - at - 1;
    if len < 0x80 {
        buf[at] = len as u8;
        return;
    }
    let mut prefix = Vec::with_capacity(10);
    varint(&mut prefix, len as u64);
    let extra = prefix.len() - 1;
    buf.resize(buf.len() + extra, 0);
    buf.copy_within(at + 1..at + 1 + len, at + 1 + extra);
    buf[at..at + prefix.len()].copy_from_slice(&prefix);
}

/// An `AnyValue` message body.
#[inline]
pub(crate) fn any_value(buf: &mut Vec<u8>, v: &Value) {
    match v {
        Value::Str(s) => bytes_always(buf, 1, s.as_bytes()),
        Value::Bool(b) => {
            tag(buf, 2, VARINT);
            varint(buf, u64::from(*b));
        }
        Value::I64(i) => {
            tag(buf, 3, VARINT);
            varint(buf, *i as u64);
        }
        Value::F64(f) => {
            tag(buf, 4, FIXED64);
            buf.extend_from_slice(&f.to_bits().to_le_bytes());
        }
    }
}

/// A repeated `KeyValue` field.
#[inline]
pub(crate) fn attributes(buf: &mut Vec<u8>, field: u32, attrs: &[KeyValue]) {
    for kv in attrs {
        attribute(buf, field, kv);
    }
}

/// One `KeyValue` of a repeated field.
#[inline]
pub(crate) fn attribute(buf: &mut Vec<u8>, field: u32, kv: &KeyValue) {
    message(buf, field, |b| {
        string(b, 1, kv.key.as_str());
        message(b, 2, |b| any_value(b, &kv.value));
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_proto::tonic::common::v1 as otlp;
    use prost::Message;

    #[test]
    fn matches_prost_for_key_values() {
        let attrs = vec![
            KeyValue::new("s", "x".repeat(300)),
            KeyValue::new("empty", ""),
            KeyValue::new("b", false),
            KeyValue::new("i", -5i64),
            KeyValue::new("zero", 0i64),
            KeyValue::new("f", 0.25),
        ];
        let mut buf = Vec::new();
        attributes(&mut buf, 1, &attrs);
        let ours = otlp::KeyValueList::decode(buf.as_slice()).unwrap();
        let theirs = otlp::KeyValueList {
            values: crate::attributes::to_otlp(&attrs),
        };
        assert_eq!(ours, theirs);
        assert_eq!(buf, theirs.encode_to_vec());
    }

    #[test]
    fn long_messages_get_multi_byte_lengths() {
        for len in [0usize, 1, 127, 128, 16_383, 16_384, 3_000_000] {
            let mut buf = vec![0xaa];
            message(&mut buf, 3, |b| b.extend(std::iter::repeat_n(7u8, len)));
            let mut expect = vec![0xaa, 3 << 3 | 2];
            varint(&mut expect, len as u64);
            expect.extend(std::iter::repeat_n(7u8, len));
            assert!(buf == expect, "len {len}");
        }
    }
}
