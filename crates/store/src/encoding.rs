//! Chunk encodings for blocks, where data is written once and read many
//! times, so the writer can afford to try encodings and keep the smallest.
//!
//! - `GORILLA` (tag 0): the head's XOR encoding ([`crate::chunk`]); always
//!   applicable, best for full-precision floats.
//! - `DECIMAL` (tag 1): values that are exactly `m / 10^e` for integers `m`
//!   (counters, byte counts, readings with a few decimals: most telemetry)
//!   are stored as the integers `m`, delta or delta-of-delta coded and
//!   bit-packed against the chunk's minimum (frame of reference); timestamps
//!   likewise. Lossless: the writer checks that every value decodes to the
//!   very same bits before choosing it.

use sonde_model::Sample;

use crate::chunk::{ChunkEncoder, ChunkIter};

const MAX_CHUNK_SAMPLES: usize = 1 << 16;
const GORILLA: u8 = 0;
const DECIMAL: u8 = 1;

/// Exact powers of ten (all representable in an f64 up to 1e22).
const POW10: [f64; 16] = [
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15,
];

/// Encodes sorted samples with whichever encoding is smallest.
pub fn encode(samples: &[Sample]) -> Vec<u8> {
    let mut gorilla = ChunkEncoder::new();
    for s in samples {
        gorilla.append(s.t, s.v);
    }
    let mut best = Vec::with_capacity(1 + samples.len() * 2);
    best.push(GORILLA);
    best.extend_from_slice(&gorilla.bytes());
    if let Some(decimal) = encode_decimal(samples) {
        if decimal.len() < best.len() {
            return decimal;
        }
    }
    best
}

/// Decodes a chunk written by [`encode`]; corrupt input gives fewer samples,
/// never a panic (block checksums catch corruption first).
pub fn decode(bytes: &[u8]) -> Vec<Sample> {
    match bytes.split_first() {
        Some((&GORILLA, rest)) => ChunkIter::new(rest).collect(),
        Some((&DECIMAL, rest)) => decode_decimal(rest).unwrap_or_default(),
        _ => Vec::new(),
    }
}

/// The smallest exponent `e` for which every value is `m / 10^e` exactly.
fn decimal_exponent(samples: &[Sample]) -> Option<u8> {
    let mut e = 0usize;
    for s in samples {
        loop {
            if to_mantissa(s.v, e).is_some() {
                break;
            }
            e += 1;
            if e >= POW10.len() {
                return None;
            }
        }
    }
    // A value exact at its own exponent is not always exact at a larger one
    // (binary rounding), so check the chosen one for all.
    samples
        .iter()
        .all(|s| to_mantissa(s.v, e).is_some())
        .then_some(e as u8)
}

fn to_mantissa(v: f64, e: usize) -> Option<i64> {
    if !v.is_finite() {
        return None;
    }
    let m = (v * POW10[e]).round();
    if m.abs() >= (1u64 << 53) as f64 {
        return None;
    }
    let m = m as i64;
    ((m as f64 / POW10[e]).to_bits() == v.to_bits()).then_some(m)
}

fn encode_decimal(samples: &[Sample]) -> Option<Vec<u8>> {
    if samples.is_empty() {
        return None;
    }
    let e = decimal_exponent(samples)?;
    let mantissas: Vec<i64> = samples
        .iter()
        .map(|s| to_mantissa(s.v, e as usize))
        .collect::<Option<_>>()?;
    let times: Vec<i64> = samples.iter().map(|s| s.t).collect();
    let mut out = Vec::with_capacity(16 + samples.len() * 2);
    out.push(DECIMAL);
    put_uvarint(&mut out, samples.len() as u64);
    out.push(e);
    put_series(&mut out, &times, true);
    put_series(&mut out, &mantissas, false);
    Some(out)
}

/// Writes integers as first value, then either deltas (mode 1) or
/// delta-of-deltas (mode 2), whichever packs smaller; timestamps always use
/// delta-of-deltas (regular intervals pack to zero bits).
fn put_series(out: &mut Vec<u8>, values: &[i64], dod_only: bool) {
    put_uvarint(out, zigzag(values[0]));
    if values.len() == 1 {
        return;
    }
    let deltas: Vec<i64> = values.windows(2).map(|w| w[1].wrapping_sub(w[0])).collect();
    // The first delta stays out of the frame: it is large where the
    // delta-of-deltas are all zero.
    let dods: Vec<i64> = deltas.windows(2).map(|w| w[1].wrapping_sub(w[0])).collect();
    let use_dod = dod_only || packed_bits(&dods) < packed_bits(&deltas);
    if use_dod {
        out.push(2);
        put_uvarint(out, zigzag(deltas[0]));
        pack(out, &dods);
    } else {
        out.push(1);
        pack(out, &deltas);
    }
}

fn packed_bits(values: &[i64]) -> u64 {
    frame(values).1 as u64 * values.len() as u64
}

/// Minimum and bit width of `values - min`.
fn frame(values: &[i64]) -> (i64, u8) {
    let min = values.iter().copied().min().unwrap_or(0);
    let max = values.iter().copied().max().unwrap_or(0);
    let range = (max as i128 - min as i128) as u128;
    let width = (128 - range.leading_zeros()) as u8;
    (min, width.min(64))
}

fn pack(out: &mut Vec<u8>, values: &[i64]) {
    let (min, width) = frame(values);
    put_uvarint(out, zigzag(min));
    out.push(width);
    if width == 0 {
        return;
    }
    let mut acc: u128 = 0;
    let mut bits = 0u32;
    for &v in values {
        let x = v.wrapping_sub(min) as u64 as u128;
        acc |= x << bits;
        bits += width as u32;
        while bits >= 8 {
            out.push(acc as u8);
            acc >>= 8;
            bits -= 8;
        }
    }
    if bits > 0 {
        out.push(acc as u8);
    }
}

struct Reader<'a> {
    p: &'a [u8],
    pos: usize,
}

impl Reader<'_> {
    fn byte(&mut self) -> Option<u8> {
        let b = *self.p.get(self.pos)?;
        self.pos += 1;
        Some(b)
    }

    fn uvarint(&mut self) -> Option<u64> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.byte()?;
            v |= ((b & 0x7f) as u64) << shift;
            if b & 0x80 == 0 {
                return Some(v);
            }
        }
        None
    }

    fn unpack(&mut self, n: usize) -> Option<Vec<i64>> {
        let min = unzigzag(self.uvarint()?);
        let width = self.byte()? as u32;
        if width > 64 {
            return None;
        }
        let mut out = Vec::with_capacity(n);
        if width == 0 {
            out.resize(n, min);
            return Some(out);
        }
        let mask: u128 = (1u128 << width) - 1;
        let mut acc: u128 = 0;
        let mut bits = 0u32;
        for _ in 0..n {
            while bits < width {
                acc |= (self.byte()? as u128) << bits;
                bits += 8;
            }
            out.push(((acc & mask) as u64 as i64).wrapping_add(min));
            acc >>= width;
            bits -= width;
        }
        Some(out)
    }

    fn series(&mut self, n: usize) -> Option<Vec<i64>> {
        let first = unzigzag(self.uvarint()?);
        let mut out = Vec::with_capacity(n);
        out.push(first);
        if n == 1 {
            return Some(out);
        }
        let mut prev = first;
        match self.byte()? {
            1 => {
                for d in self.unpack(n - 1)? {
                    prev = prev.wrapping_add(d);
                    out.push(prev);
                }
            }
            2 => {
                let mut delta = unzigzag(self.uvarint()?);
                prev = prev.wrapping_add(delta);
                out.push(prev);
                for dod in self.unpack(n - 2)? {
                    delta = delta.wrapping_add(dod);
                    prev = prev.wrapping_add(delta);
                    out.push(prev);
                }
            }
            _ => return None,
        }
        Some(out)
    }
}

fn decode_decimal(p: &[u8]) -> Option<Vec<Sample>> {
    let mut r = Reader { p, pos: 0 };
    let n = usize::try_from(r.uvarint()?).ok()?;
    // Zero-width frames make tiny chunks of many samples, so the count can
    // not be checked against the length; only against a sane maximum.
    if n == 0 || n > MAX_CHUNK_SAMPLES {
        return None;
    }
    let e = r.byte()? as usize;
    let scale = *POW10.get(e)?;
    let times = r.series(n)?;
    let mantissas = r.series(n)?;
    Some(
        times
            .into_iter()
            .zip(mantissas)
            .map(|(t, m)| Sample {
                t,
                v: m as f64 / scale,
            })
            .collect(),
    )
}

fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

fn unzigzag(v: u64) -> i64 {
    ((v >> 1) as i64) ^ -((v & 1) as i64)
}

fn put_uvarint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roundtrip(samples: &[Sample]) -> Vec<u8> {
        let bytes = encode(samples);
        let got = decode(&bytes);
        let bits = |s: &[Sample]| s.iter().map(|x| (x.t, x.v.to_bits())).collect::<Vec<_>>();
        assert_eq!(bits(&got), bits(samples));
        bytes
    }

    fn walk(n: usize, step: impl Fn(u64) -> f64) -> Vec<Sample> {
        let mut rng = 0x2545f4914f6cdd1du64;
        let mut v = 50.0;
        (0..n)
            .map(|i| {
                rng ^= rng << 13;
                rng ^= rng >> 7;
                rng ^= rng << 17;
                v += step(rng);
                Sample {
                    t: 1_700_000_000_000 + i as i64 * 10_000,
                    v,
                }
            })
            .collect()
    }

    #[test]
    fn decimal_values_pack_far_below_gorilla() {
        // Three decimals, as most readings have.
        let samples: Vec<Sample> = walk(480, |r| (r % 2001) as f64 / 1000.0 - 1.0)
            .into_iter()
            .map(|s| Sample {
                t: s.t,
                v: (s.v * 1000.0).round() / 1000.0,
            })
            .collect();
        let bytes = roundtrip(&samples);
        assert_eq!(bytes[0], DECIMAL);
        // 11 bits of entropy per step; regular timestamps cost nothing.
        assert!(bytes.len() < 480 * 3 / 2, "{} bytes", bytes.len());
    }

    #[test]
    fn constant_steps_pack_to_nothing() {
        let samples: Vec<Sample> = (0..480)
            .map(|i| Sample {
                t: i * 15_000,
                v: i as f64,
            })
            .collect();
        let bytes = roundtrip(&samples);
        assert!(bytes.len() < 20, "{} bytes", bytes.len());
        roundtrip(&samples[..2]);
        roundtrip(&samples[..3]);
    }

    #[test]
    fn counters_use_integers() {
        let mut total = 0u64;
        let samples: Vec<Sample> = (0..480)
            .map(|i| {
                total += 1000 + (i * 7919 % 13) as u64;
                Sample {
                    t: i as i64 * 15_000,
                    v: total as f64,
                }
            })
            .collect();
        let bytes = roundtrip(&samples);
        assert_eq!(bytes[0], DECIMAL);
        assert!(bytes.len() < 480 / 2 + 20, "{} bytes", bytes.len());
    }

    #[test]
    fn full_precision_and_special_values_fall_back_to_gorilla() {
        let samples = walk(100, |r| (r % 1_000_003) as f64 / 7.0 / 1e5);
        assert_eq!(roundtrip(&samples)[0], GORILLA);
        let special = [
            f64::NAN,
            f64::INFINITY,
            -0.0,
            sonde_model::stale_nan(),
            1e300,
            5e-324,
        ];
        for v in special {
            let s = vec![Sample { t: 1, v: 1.0 }, Sample { t: 2, v }];
            roundtrip(&s);
        }
        roundtrip(&[Sample { t: -5, v: 0.1 }]);
        roundtrip(&[
            Sample {
                t: i64::MIN,
                v: 1.0,
            },
            Sample {
                t: i64::MAX,
                v: -1.0,
            },
        ]);
        roundtrip(&[
            Sample {
                t: 0,
                v: 9007199254740991.0,
            },
            Sample {
                t: 1,
                v: -9007199254740991.0,
            },
        ]);
    }

    #[test]
    fn corrupt_input_never_panics() {
        let samples = walk(50, |r| (r % 100) as f64);
        let bytes = encode(&samples);
        for n in 0..bytes.len() {
            let _ = decode(&bytes[..n]);
            let mut flipped = bytes.clone();
            flipped[n] ^= 0x5a;
            let _ = decode(&flipped);
        }
    }
}
