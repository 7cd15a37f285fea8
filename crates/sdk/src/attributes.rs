//! Attributes: the key-value pairs attached to measurements, spans, logs and
//! resources.
//!
//! Keys and string values are `Cow<'static, str>`, so the common case (string
//! literals) costs no allocation, and the metric hot path can recognise a
//! literal by its address instead of hashing its bytes.

use std::borrow::Cow;
use std::fmt;

use opentelemetry_proto::tonic::common::v1 as otlp;

/// An attribute name.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Key(Cow<'static, str>);

impl Key {
    /// A key from a string literal, usable in `const` and `static` items.
    pub const fn from_static(name: &'static str) -> Key {
        Key(Cow::Borrowed(name))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The underlying string, for code that needs to keep it.
    pub fn as_cow(&self) -> &Cow<'static, str> {
        &self.0
    }
}

impl From<&'static str> for Key {
    fn from(name: &'static str) -> Key {
        Key(Cow::Borrowed(name))
    }
}

impl From<String> for Key {
    fn from(name: String) -> Key {
        Key(Cow::Owned(name))
    }
}

impl From<Cow<'static, str>> for Key {
    fn from(name: Cow<'static, str>) -> Key {
        Key(name)
    }
}

impl AsRef<str> for Key {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// An attribute value.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    Bool(bool),
    I64(i64),
    F64(f64),
    Str(Cow<'static, str>),
}

impl Value {
    /// The value as a string (`true`, `42`, `0.5`, or the string itself).
    pub fn as_str(&self) -> Cow<'_, str> {
        match self {
            Value::Bool(b) => Cow::Borrowed(if *b { "true" } else { "false" }),
            Value::I64(i) => Cow::Owned(i.to_string()),
            Value::F64(f) => Cow::Owned(f.to_string()),
            Value::Str(s) => Cow::Borrowed(s),
        }
    }

    /// Equality with floats compared bit for bit, so that it is an
    /// equivalence (NaN equals NaN) fit for map keys.
    #[inline(always)]
    pub(crate) fn same(&self, other: &Value) -> bool {
        match (self, other) {
            (Value::Bool(a), Value::Bool(b)) => a == b,
            (Value::I64(a), Value::I64(b)) => a == b,
            (Value::F64(a), Value::F64(b)) => a.to_bits() == b.to_bits(),
            (Value::Str(a), Value::Str(b)) => str_eq(a, b),
            _ => false,
        }
    }

    /// The OTLP form of this value.
    pub fn to_otlp(&self) -> otlp::AnyValue {
        use otlp::any_value::Value as V;
        let v = match self {
            Value::Bool(b) => V::BoolValue(*b),
            Value::I64(i) => V::IntValue(*i),
            Value::F64(f) => V::DoubleValue(*f),
            Value::Str(s) => V::StringValue(s.to_string()),
        };
        otlp::AnyValue { value: Some(v) }
    }
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.as_str())
    }
}

impl From<bool> for Value {
    fn from(v: bool) -> Value {
        Value::Bool(v)
    }
}

impl From<i64> for Value {
    fn from(v: i64) -> Value {
        Value::I64(v)
    }
}

impl From<i32> for Value {
    fn from(v: i32) -> Value {
        Value::I64(v.into())
    }
}

impl From<u32> for Value {
    fn from(v: u32) -> Value {
        Value::I64(v.into())
    }
}

impl From<f64> for Value {
    fn from(v: f64) -> Value {
        Value::F64(v)
    }
}

impl From<&'static str> for Value {
    fn from(v: &'static str) -> Value {
        Value::Str(Cow::Borrowed(v))
    }
}

impl From<String> for Value {
    fn from(v: String) -> Value {
        Value::Str(Cow::Owned(v))
    }
}

impl From<Cow<'static, str>> for Value {
    fn from(v: Cow<'static, str>) -> Value {
        Value::Str(v)
    }
}

/// One attribute.
#[derive(Clone, Debug, PartialEq)]
pub struct KeyValue {
    pub key: Key,
    pub value: Value,
}

impl KeyValue {
    pub fn new(key: impl Into<Key>, value: impl Into<Value>) -> KeyValue {
        KeyValue {
            key: key.into(),
            value: value.into(),
        }
    }

    /// The OTLP form of this attribute.
    pub fn to_otlp(&self) -> otlp::KeyValue {
        otlp::KeyValue {
            key: self.key.as_str().to_string(),
            value: Some(self.value.to_otlp()),
            key_strindex: 0,
        }
    }

    /// Key and value equal (floats bit for bit).
    #[inline(always)]
    pub(crate) fn same(&self, other: &KeyValue) -> bool {
        str_eq(&self.key.0, &other.key.0) && self.value.same(&other.value)
    }
}

/// The OTLP form of a list of attributes.
pub fn to_otlp(attributes: &[KeyValue]) -> Vec<otlp::KeyValue> {
    attributes.iter().map(KeyValue::to_otlp).collect()
}

/// String equality that skips the byte comparison when both sides are the
/// same literal.
#[inline(always)]
fn str_eq(a: &str, b: &str) -> bool {
    (a.as_ptr() == b.as_ptr() && a.len() == b.len()) || a == b
}

// ---- hashing for the metric hot path -------------------------------------

const K0: u64 = 0x243f_6a88_85a3_08d3;
const K1: u64 = 0x1319_8a2e_0370_7344;
const K2: u64 = 0x9e37_79b9_7f4a_7c15;

/// 64x64 -> 128 bit multiply, folded: the mixing step of wyhash and foldhash.
#[inline(always)]
fn fold_mul(a: u64, b: u64) -> u64 {
    let full = u128::from(a) * u128::from(b);
    (full as u64) ^ ((full >> 64) as u64)
}

/// A word standing for a string: the address and length of a borrowed
/// (literal) one, the hashed bytes of an owned one. Deterministic for a
/// given `Cow`, which is all the metric lookup table needs: it compares
/// contents on a hash match, and a set seen once by address and once by
/// content merely takes two slots that lead to the same aggregator.
#[inline(always)]
#[allow(clippy::ptr_arg)] // borrowed or owned is the point
fn str_word(s: &Cow<'static, str>) -> u64 {
    match s {
        Cow::Borrowed(b) => (b.as_ptr() as u64) ^ ((b.len() as u64) << 48),
        Cow::Owned(o) => hash_bytes(o.as_bytes()),
    }
}

#[inline(always)]
fn value_word(v: &Value) -> u64 {
    match v {
        Value::Bool(b) => 0x5bd1_e995 ^ u64::from(*b),
        Value::I64(i) => (*i as u64) ^ K1,
        Value::F64(f) => f.to_bits() ^ K2,
        Value::Str(s) => str_word(s),
    }
}

/// Hash of an attribute list, in the order given, by identity of literal
/// strings (see [`str_word`]). Fast, and only meaningful within the process.
/// No multiplication until the end: the words of keys and values are
/// folded in with rotations (so order counts), then mixed once.
#[inline(always)]
pub(crate) fn identity_hash(attributes: &[KeyValue]) -> u64 {
    let (mut a, mut b) = (K0 ^ attributes.len() as u64, K1);
    for kv in attributes {
        a = a.rotate_left(19) ^ str_word(&kv.key.0);
        b = b.rotate_left(23) ^ value_word(&kv.value);
    }
    let h = fold_mul(a ^ K2, b ^ K1);
    h ^ (h >> 29)
}

/// Hash of a string's bytes (wyhash-like, not for untrusted keys).
pub(crate) fn hash_bytes(bytes: &[u8]) -> u64 {
    let mut h = K0 ^ (bytes.len() as u64).wrapping_mul(K2);
    let mut chunks = bytes.chunks_exact(16);
    for c in &mut chunks {
        let a = u64::from_le_bytes(c[..8].try_into().unwrap_or_default());
        let b = u64::from_le_bytes(c[8..].try_into().unwrap_or_default());
        h = fold_mul(a ^ K1 ^ h, b ^ K2);
    }
    let rest = chunks.remainder();
    let (mut a, mut b) = (0u64, 0u64);
    for (i, &byte) in rest.iter().enumerate() {
        if i < 8 {
            a |= u64::from(byte) << (8 * i);
        } else {
            b |= u64::from(byte) << (8 * (i - 8));
        }
    }
    fold_mul(a ^ K1 ^ h, b ^ K2 ^ rest.len() as u64)
}

/// Hash of a canonical (sorted, deduplicated) attribute set by content.
pub(crate) fn content_hash(attributes: &[KeyValue]) -> u64 {
    let mut h = K0;
    for kv in attributes {
        let v = match &kv.value {
            Value::Str(s) => hash_bytes(s.as_bytes()),
            other => value_word(other),
        };
        h = fold_mul(h ^ hash_bytes(kv.key.as_str().as_bytes()), v ^ K2);
    }
    h
}

/// Sorts attributes by key and keeps the last of each duplicated key: the
/// canonical form under which a metric attribute set is aggregated.
pub(crate) fn canonicalize(attributes: &[KeyValue]) -> Vec<KeyValue> {
    let mut v: Vec<KeyValue> = attributes.to_vec();
    // Stable sort: among equal keys the last given stays last.
    v.sort_by(|a, b| a.key.as_str().cmp(b.key.as_str()));
    let mut out: Vec<KeyValue> = Vec::with_capacity(v.len());
    for kv in v {
        match out.last_mut() {
            Some(last) if last.key.as_str() == kv.key.as_str() => *last = kv,
            _ => out.push(kv),
        }
    }
    out
}

/// Elementwise equality of two attribute lists (order matters).
#[inline(always)]
pub(crate) fn same_list(a: &[KeyValue], b: &[KeyValue]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.same(y))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conversions() {
        let kv = KeyValue::new("a", 1i64);
        assert_eq!(kv.key.as_str(), "a");
        assert_eq!(kv.value, Value::I64(1));
        assert_eq!(KeyValue::new(String::from("b"), "x").value.as_str(), "x");
        assert_eq!(Value::from(true).to_string(), "true");
        assert_eq!(Value::from(0.5).to_string(), "0.5");
    }

    #[test]
    fn canonical_form_sorts_and_keeps_last_duplicate() {
        let c = canonicalize(&[
            KeyValue::new("b", 1i64),
            KeyValue::new("a", 2i64),
            KeyValue::new("b", 3i64),
        ]);
        assert_eq!(c, vec![KeyValue::new("a", 2i64), KeyValue::new("b", 3i64)]);
    }

    #[test]
    fn content_hash_ignores_ownership() {
        let a = [KeyValue::new("k", "v")];
        let b = [KeyValue::new(String::from("k"), String::from("v"))];
        assert_eq!(content_hash(&a), content_hash(&b));
        assert!(same_list(&a, &b));
        assert_eq!(identity_hash(&b), identity_hash(&b.clone()));
    }

    #[test]
    fn nan_values_are_the_same_set() {
        let a = KeyValue::new("x", f64::NAN);
        assert!(a.same(&a.clone()));
    }
}
