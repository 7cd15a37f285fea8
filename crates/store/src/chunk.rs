//! Compressed sample chunks: Gorilla-style delta-of-delta timestamps and XOR
//! values (Pelkonen et al., VLDB 2015), the encoding Prometheus and most TSDBs
//! converged on. A chunk is a self-contained byte string, so the same bytes
//! live in the head, in the WAL-free block files and on object storage later.
//!
//! Layout: `u16 count` (big endian), then a bit stream: the first timestamp as
//! a zigzag varint and the first value as 64 raw bits; the second timestamp as
//! a delta; afterwards delta-of-deltas in variable-width buckets, and values
//! XORed with their predecessor.

use sonde_model::Sample;

/// Samples per chunk before a new one is cut: the point where Gorilla's
/// compression flattens out and decoding a chunk for a short query stays cheap.
pub const SAMPLES_PER_CHUNK: u16 = 120;

#[derive(Debug, Clone, Default)]
struct BitWriter {
    bytes: Vec<u8>,
    /// Bits still free in the last byte (0 means a new byte is needed).
    free: u8,
}

impl BitWriter {
    fn write_bit(&mut self, bit: bool) {
        if self.free == 0 {
            self.bytes.push(0);
            self.free = 8;
        }
        if bit {
            let last = self.bytes.len() - 1;
            self.bytes[last] |= 1 << (self.free - 1);
        }
        self.free -= 1;
    }

    /// Writes the low `n` bits of `v`, most significant first.
    fn write_bits(&mut self, v: u64, mut n: u8) {
        while n > 0 {
            if self.free == 0 {
                self.bytes.push(0);
                self.free = 8;
            }
            let take = n.min(self.free);
            let shift = n - take;
            let chunk = ((v >> shift) & ((1u64 << take) - 1)) as u8;
            let last = self.bytes.len() - 1;
            self.bytes[last] |= chunk << (self.free - take);
            self.free -= take;
            n -= take;
        }
    }

    fn write_uvarint(&mut self, mut v: u64) {
        loop {
            let byte = (v & 0x7f) as u8;
            v >>= 7;
            if v == 0 {
                self.write_bits(byte as u64, 8);
                return;
            }
            self.write_bits((byte | 0x80) as u64, 8);
        }
    }
}

struct BitReader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> BitReader<'a> {
    fn read_bit(&mut self) -> Option<bool> {
        let byte = *self.bytes.get(self.pos / 8)?;
        let bit = (byte >> (7 - (self.pos % 8))) & 1 == 1;
        self.pos += 1;
        Some(bit)
    }

    fn read_bits(&mut self, n: u8) -> Option<u64> {
        let mut v = 0u64;
        let mut left = n;
        while left > 0 {
            let byte = *self.bytes.get(self.pos / 8)? as u64;
            let offset = (self.pos % 8) as u8;
            let avail = 8 - offset;
            let take = left.min(avail);
            let bits = (byte >> (avail - take)) & ((1u64 << take) - 1);
            v = if take == 64 { bits } else { (v << take) | bits };
            self.pos += take as usize;
            left -= take;
        }
        Some(v)
    }

    fn read_uvarint(&mut self) -> Option<u64> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let byte = self.read_bits(8)?;
            v |= (byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Some(v);
            }
        }
        None
    }
}

fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

fn unzigzag(v: u64) -> i64 {
    ((v >> 1) as i64) ^ -((v & 1) as i64)
}

/// Delta-of-delta buckets: (prefix, prefix length, value bits).
const DOD_BUCKETS: [(u64, u8, u8); 3] = [(0b10, 2, 14), (0b110, 3, 17), (0b1110, 4, 20)];

/// Appends samples to a chunk. Timestamps must be strictly increasing; the
/// head enforces that before calling [`ChunkEncoder::append`].
#[derive(Debug, Clone, Default)]
pub struct ChunkEncoder {
    bits: BitWriter,
    count: u16,
    min_t: i64,
    last_t: i64,
    last_delta: i64,
    last_v: u64,
    leading: u8,
    trailing: u8,
}

impl ChunkEncoder {
    pub fn new() -> ChunkEncoder {
        ChunkEncoder {
            leading: u8::MAX,
            ..ChunkEncoder::default()
        }
    }

    pub fn count(&self) -> u16 {
        self.count
    }

    pub fn min_t(&self) -> i64 {
        self.min_t
    }

    pub fn max_t(&self) -> i64 {
        self.last_t
    }

    /// The last appended value; meaningless when the chunk is empty.
    pub fn last_v(&self) -> f64 {
        f64::from_bits(self.last_v)
    }

    pub fn is_full(&self) -> bool {
        self.count >= SAMPLES_PER_CHUNK
    }

    pub fn append(&mut self, t: i64, v: f64) {
        let v = v.to_bits();
        match self.count {
            0 => {
                self.bits.write_uvarint(zigzag(t));
                self.bits.write_bits(v, 64);
                self.min_t = t;
            }
            1 => {
                let delta = t.wrapping_sub(self.last_t);
                self.bits.write_uvarint(zigzag(delta));
                self.write_value(v);
                self.last_delta = delta;
            }
            _ => {
                let delta = t.wrapping_sub(self.last_t);
                let dod = delta.wrapping_sub(self.last_delta);
                if dod == 0 {
                    self.bits.write_bit(false);
                } else if let Some(&(prefix, plen, nbits)) = DOD_BUCKETS.iter().find(|b| {
                    let half = 1i64 << (b.2 - 1);
                    dod > -half && dod <= half
                }) {
                    self.bits.write_bits(prefix, plen);
                    self.bits.write_bits(dod as u64 & ((1 << nbits) - 1), nbits);
                } else {
                    self.bits.write_bits(0b1111, 4);
                    self.bits.write_bits(dod as u64, 64);
                }
                self.write_value(v);
                self.last_delta = delta;
            }
        }
        self.last_t = t;
        self.last_v = v;
        self.count += 1;
    }

    fn write_value(&mut self, v: u64) {
        let xor = v ^ self.last_v;
        if xor == 0 {
            self.bits.write_bit(false);
            return;
        }
        self.bits.write_bit(true);
        // Capped at 31 so it fits the 5-bit field.
        let leading = (xor.leading_zeros() as u8).min(31);
        let trailing = xor.trailing_zeros() as u8;
        if self.leading != u8::MAX && leading >= self.leading && trailing >= self.trailing {
            self.bits.write_bit(false);
            let sig = 64 - self.leading - self.trailing;
            self.bits.write_bits(xor >> self.trailing, sig);
        } else {
            self.leading = leading;
            self.trailing = trailing;
            self.bits.write_bit(true);
            self.bits.write_bits(leading as u64, 5);
            let sig = 64 - leading - trailing;
            // 64 significant bits is stored as 0: six bits hold 0..=63.
            self.bits.write_bits((sig % 64) as u64, 6);
            self.bits.write_bits(xor >> trailing, sig);
        }
    }

    /// The chunk's bytes so far: the count header followed by the stream.
    pub fn bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(2 + self.bits.bytes.len());
        out.extend_from_slice(&self.count.to_be_bytes());
        out.extend_from_slice(&self.bits.bytes);
        out
    }

    /// Heap bytes held, for memory accounting.
    pub fn heap_size(&self) -> usize {
        self.bits.bytes.capacity()
    }

    pub fn iter(&self) -> ChunkIter<'_> {
        ChunkIter::over_stream(&self.bits.bytes, self.count)
    }
}

/// Decodes a chunk. A corrupt chunk ends the iteration early instead of
/// panicking; block checksums catch corruption before it gets here.
pub struct ChunkIter<'a> {
    r: BitReader<'a>,
    total: u16,
    read: u16,
    t: i64,
    delta: i64,
    v: u64,
    leading: u8,
    trailing: u8,
}

impl<'a> ChunkIter<'a> {
    /// Iterates a chunk as produced by [`ChunkEncoder::bytes`].
    pub fn new(chunk: &'a [u8]) -> ChunkIter<'a> {
        if chunk.len() < 2 {
            return ChunkIter::over_stream(&[], 0);
        }
        let total = u16::from_be_bytes([chunk[0], chunk[1]]);
        ChunkIter::over_stream(&chunk[2..], total)
    }

    fn over_stream(bytes: &'a [u8], total: u16) -> ChunkIter<'a> {
        ChunkIter {
            r: BitReader { bytes, pos: 0 },
            total,
            read: 0,
            t: 0,
            delta: 0,
            v: 0,
            leading: 0,
            trailing: 0,
        }
    }

    fn next_sample(&mut self) -> Option<Sample> {
        match self.read {
            0 => {
                self.t = unzigzag(self.r.read_uvarint()?);
                self.v = self.r.read_bits(64)?;
            }
            1 => {
                self.delta = unzigzag(self.r.read_uvarint()?);
                self.t = self.t.wrapping_add(self.delta);
                self.read_value()?;
            }
            _ => {
                let mut prefix_len = 0;
                while prefix_len < 4 && self.r.read_bit()? {
                    prefix_len += 1;
                }
                let dod = match prefix_len {
                    0 => 0,
                    4 => self.r.read_bits(64)? as i64,
                    n => {
                        let nbits = DOD_BUCKETS[n - 1].2;
                        let raw = self.r.read_bits(nbits)?;
                        // The range is asymmetric (-(half-1)..=half), so only
                        // values above half are negative.
                        let half = 1u64 << (nbits - 1);
                        if raw > half {
                            raw as i64 - (1i64 << nbits)
                        } else {
                            raw as i64
                        }
                    }
                };
                self.delta = self.delta.wrapping_add(dod);
                self.t = self.t.wrapping_add(self.delta);
                self.read_value()?;
            }
        }
        self.read += 1;
        Some(Sample {
            t: self.t,
            v: f64::from_bits(self.v),
        })
    }

    fn read_value(&mut self) -> Option<()> {
        if !self.r.read_bit()? {
            return Some(());
        }
        if self.r.read_bit()? {
            self.leading = self.r.read_bits(5)? as u8;
            let sig = self.r.read_bits(6)? as u8;
            let sig = if sig == 0 { 64 } else { sig };
            self.trailing = 64u8.checked_sub(self.leading + sig)?;
        }
        let sig = 64 - self.leading - self.trailing;
        let bits = self.r.read_bits(sig)?;
        self.v ^= if self.trailing >= 64 {
            0
        } else {
            bits << self.trailing
        };
        Some(())
    }
}

impl Iterator for ChunkIter<'_> {
    type Item = Sample;

    fn next(&mut self) -> Option<Sample> {
        if self.read >= self.total {
            return None;
        }
        let s = self.next_sample();
        if s.is_none() {
            self.read = self.total;
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roundtrip(samples: &[(i64, f64)]) -> Vec<u8> {
        let mut enc = ChunkEncoder::new();
        for &(t, v) in samples {
            enc.append(t, v);
        }
        let bytes = enc.bytes();
        let got: Vec<(i64, u64)> = ChunkIter::new(&bytes)
            .map(|s| (s.t, s.v.to_bits()))
            .collect();
        let want: Vec<(i64, u64)> = samples.iter().map(|&(t, v)| (t, v.to_bits())).collect();
        assert_eq!(got, want);
        let open: Vec<(i64, u64)> = enc.iter().map(|s| (s.t, s.v.to_bits())).collect();
        assert_eq!(open, want);
        bytes
    }

    #[test]
    fn regular_scrape_compresses_to_about_a_bit_per_timestamp() {
        let samples: Vec<(i64, f64)> = (0..120)
            .map(|i| (1_700_000_000_000 + i * 15_000, 42.0))
            .collect();
        let bytes = roundtrip(&samples);
        // A constant series at a fixed interval costs two bits per sample.
        assert!(bytes.len() < 50, "{} bytes", bytes.len());
    }

    #[test]
    fn every_bucket_and_special_value_roundtrips() {
        let mut t = -5_000i64;
        let mut samples = Vec::new();
        let jumps = [
            1,
            1,
            5000,
            9000,
            70_000,
            600_000,
            1 << 40,
            3,
            8193,
            1,
            65537,
            1,
            524_289,
            1,
        ];
        let values = [
            0.0,
            -0.0,
            1.5,
            f64::NAN,
            f64::INFINITY,
            f64::NEG_INFINITY,
            f64::MIN_POSITIVE,
            f64::MAX,
            sonde_model::stale_nan(),
            1e-300,
            7.0,
        ];
        for i in 0..200usize {
            t += jumps[i % jumps.len()].max(1);
            samples.push((
                t,
                values[i % values.len()] * if i % 3 == 0 { 1.0 } else { i as f64 },
            ));
        }
        roundtrip(&samples);
    }

    #[test]
    fn delta_of_delta_bucket_edges_roundtrip() {
        let dods = [
            8192, -8191, 8193, -8192, 65536, -65535, 65537, 524_288, -524_287, 524_289, 0,
        ];
        let mut t = 0i64;
        let mut delta = 1_000_000i64;
        let mut samples = vec![(t, 1.0)];
        for (i, dod) in dods.iter().enumerate() {
            delta += dod;
            t += delta;
            samples.push((t, i as f64));
        }
        roundtrip(&samples);
    }

    #[test]
    fn random_walks_roundtrip() {
        // A small xorshift keeps this deterministic without a dev-dependency.
        let mut state = 0x9e3779b97f4a7c15u64;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for _ in 0..50 {
            let mut t = (next() % 1_000_000) as i64;
            let mut v = (next() % 1000) as f64;
            let samples: Vec<(i64, f64)> = (0..120)
                .map(|_| {
                    t += 1 + (next() % 30_000) as i64;
                    v += ((next() % 2001) as f64 - 1000.0) / 100.0;
                    (t, v)
                })
                .collect();
            roundtrip(&samples);
        }
    }

    #[test]
    fn corrupt_chunk_ends_early_instead_of_panicking() {
        let samples: Vec<(i64, f64)> = (0..50).map(|i| (i * 1000, i as f64 * 1.1)).collect();
        let mut enc = ChunkEncoder::new();
        for &(t, v) in &samples {
            enc.append(t, v);
        }
        let mut bytes = enc.bytes();
        bytes.truncate(bytes.len() / 2);
        assert!(ChunkIter::new(&bytes).count() < 50);
        assert_eq!(ChunkIter::new(&[0xff]).count(), 0);
        assert!(ChunkIter::new(&[0xff, 0xff, 0xff, 0xff, 0xff]).count() <= 1);
    }
}
