//! Key hash functions used for placement: portable, documented, and frozen forever.
//!
//! All but `xxh3` reproduce twemproxy 0.5.0 (`hashkit/`) bit for bit, including its quirks
//! (C `char` sign extension, the 15-bit libmemcached CRC-32, the unmasked CRC-16 accumulator).

use std::fmt;

use md5::{Digest, Md5};

/// A key hash function. Changing what any of these returns moves users' data: never do it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum HashKind {
    /// twemproxy's `fnv1a_64`: FNV-1a with the 64-bit constants truncated to 32 bits (the default).
    #[default]
    Fnv1a64,
    /// twemproxy's `fnv1_64`: 64-bit FNV-1, lower 32 bits of the result.
    Fnv1_64,
    /// twemproxy's `fnv1a_32`: 32-bit FNV-1a.
    Fnv1a32,
    /// twemproxy's `murmur`: a MurmurHash2 variant seeded with `0xdeadbeef * len`.
    Murmur,
    /// twemproxy's `md5`: the first four bytes of the MD5 digest, little-endian.
    Md5,
    /// twemproxy's `crc32`: the libmemcached variant, `(crc32(key) >> 16) & 0x7fff` (15 bits).
    /// With ketama, whose points span 32 bits, nearly every key lands on one backend (in
    /// twemproxy too): use it only with modula, or to stay compatible with existing data.
    Crc32,
    /// twemproxy's `crc16`: XMODEM table with an unmasked 32-bit accumulator.
    Crc16,
    /// shardis only (twemproxy has no equivalent): the lower 32 bits of XXH3-64 with seed 0.
    Xxh3,
}

impl HashKind {
    /// Every hash function, in declaration order.
    pub const ALL: [HashKind; 8] = [
        HashKind::Fnv1a64,
        HashKind::Fnv1_64,
        HashKind::Fnv1a32,
        HashKind::Murmur,
        HashKind::Md5,
        HashKind::Crc32,
        HashKind::Crc16,
        HashKind::Xxh3,
    ];

    /// Hashes `key` to 32 bits.
    #[inline]
    pub fn hash(self, key: &[u8]) -> u32 {
        match self {
            HashKind::Fnv1a64 => fnv1a_64(key),
            HashKind::Fnv1_64 => fnv1_64(key),
            HashKind::Fnv1a32 => fnv1a_32(key),
            HashKind::Murmur => murmur(key),
            HashKind::Md5 => md5(key),
            HashKind::Crc32 => crc32(key),
            HashKind::Crc16 => crc16(key),
            HashKind::Xxh3 => xxhash_rust::xxh3::xxh3_64(key) as u32,
        }
    }

    /// The configuration name, identical to twemproxy's where twemproxy has the function.
    pub fn name(self) -> &'static str {
        match self {
            HashKind::Fnv1a64 => "fnv1a_64",
            HashKind::Fnv1_64 => "fnv1_64",
            HashKind::Fnv1a32 => "fnv1a_32",
            HashKind::Murmur => "murmur",
            HashKind::Md5 => "md5",
            HashKind::Crc32 => "crc32",
            HashKind::Crc16 => "crc16",
            HashKind::Xxh3 => "xxh3",
        }
    }

    /// The hash function with this configuration name, if any (exact, case-sensitive match).
    pub fn from_name(s: &str) -> Option<HashKind> {
        HashKind::ALL.into_iter().find(|h| h.name() == s)
    }
}

impl fmt::Display for HashKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// C's `(uint32_t)(char)b` on x86: `char` is signed, so bytes >= 0x80 are sign-extended.
#[inline]
fn c_char(b: u8) -> u32 {
    b as i8 as i32 as u32
}

fn fnv1a_64(key: &[u8]) -> u32 {
    let mut h = 0xcbf2_9ce4_8422_2325_u64 as u32;
    for &b in key {
        h ^= c_char(b);
        h = h.wrapping_mul(0x0100_0000_01b3_u64 as u32);
    }
    h
}

fn fnv1_64(key: &[u8]) -> u32 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in key {
        h = h.wrapping_mul(0x0100_0000_01b3);
        h ^= b as i8 as i64 as u64;
    }
    h as u32
}

fn fnv1a_32(key: &[u8]) -> u32 {
    let mut h: u32 = 2_166_136_261;
    for &b in key {
        h ^= c_char(b);
        h = h.wrapping_mul(16_777_619);
    }
    h
}

fn murmur(key: &[u8]) -> u32 {
    const M: u32 = 0x5bd1_e995;
    const R: u32 = 24;
    let len = key.len() as u32;
    let seed = 0xdead_beef_u32.wrapping_mul(len);
    let mut h = seed ^ len;
    let mut blocks = key.chunks_exact(4);
    for block in &mut blocks {
        let mut k = u32::from_le_bytes([block[0], block[1], block[2], block[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> R;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M);
        h ^= k;
    }
    // The C switch falls through from case 3 to case 1.
    let tail = blocks.remainder();
    if tail.len() >= 3 {
        h ^= u32::from(tail[2]) << 16;
    }
    if tail.len() >= 2 {
        h ^= u32::from(tail[1]) << 8;
    }
    if !tail.is_empty() {
        h ^= u32::from(tail[0]);
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^= h >> 15;
    h
}

/// The MD5 digest of `data`; ketama builds its continuum from it too.
pub(super) fn md5_digest(data: &[u8]) -> [u8; 16] {
    Md5::digest(data).into()
}

fn md5(key: &[u8]) -> u32 {
    let d = md5_digest(key);
    u32::from_le_bytes([d[0], d[1], d[2], d[3]])
}

const CRC32_TABLE: [u32; 256] = {
    let mut table = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut c = i as u32;
        let mut k = 0;
        while k < 8 {
            c = if c & 1 != 0 {
                0xedb8_8320 ^ (c >> 1)
            } else {
                c >> 1
            };
            k += 1;
        }
        table[i] = c;
        i += 1;
    }
    table
};

fn crc32(key: &[u8]) -> u32 {
    let mut crc = u32::MAX;
    for &b in key {
        crc = (crc >> 8) ^ CRC32_TABLE[((crc ^ u32::from(b)) & 0xff) as usize];
    }
    ((!crc) >> 16) & 0x7fff
}

const CRC16_TABLE: [u16; 256] = {
    let mut table = [0u16; 256];
    let mut i = 0;
    while i < 256 {
        let mut c = (i as u16) << 8;
        let mut k = 0;
        while k < 8 {
            c = if c & 0x8000 != 0 {
                (c << 1) ^ 0x1021
            } else {
                c << 1
            };
            k += 1;
        }
        table[i] = c;
        i += 1;
    }
    table
};

fn crc16(key: &[u8]) -> u32 {
    // twemproxy keeps a uint32_t accumulator and never masks it, so the high bits carry
    // shifted-out garbage; the low 16 bits equal CRC-16/XMODEM.
    let mut crc: u32 = 0;
    for &b in key {
        crc = (crc << 8) ^ u32::from(CRC16_TABLE[(((crc >> 8) as u8) ^ b) as usize]);
    }
    crc
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for h in HashKind::ALL {
            assert_eq!(HashKind::from_name(h.name()), Some(h));
        }
        assert_eq!(HashKind::from_name("hsieh"), None);
        assert_eq!(HashKind::from_name("FNV1A_64"), None);
        assert_eq!(HashKind::default(), HashKind::Fnv1a64);
    }

    #[test]
    fn published_check_values() {
        // FNV-1a 32 of "a" (from the FNV reference test suite).
        assert_eq!(HashKind::Fnv1a32.hash(b"a"), 0xe40c_292c);
        // FNV-1 64 of "a" is 0xaf63bd4c8601b7be.
        assert_eq!(HashKind::Fnv1_64.hash(b"a"), 0x8601_b7be);
        // CRC-32 of "123456789" is 0xcbf43926; libmemcached keeps bits 16..31, minus the top one.
        assert_eq!(HashKind::Crc32.hash(b"123456789"), 0xcbf4 & 0x7fff);
        // The low 16 bits are CRC-16/XMODEM, whose check value is 0x31c3.
        assert_eq!(HashKind::Crc16.hash(b"123456789") & 0xffff, 0x31c3);
        // MD5("") = d41d8cd98f00b204e9800998ecf8427e.
        assert_eq!(HashKind::Md5.hash(b""), 0xd98c_1dd4);
        assert_eq!(HashKind::Fnv1a64.hash(b""), 0x8422_2325);
        assert_eq!(HashKind::Fnv1a32.hash(b""), 2_166_136_261);
    }

    /// Recorded once tests/placement.rs had shown every twemproxy hash placing 5,001 keys
    /// exactly as nutcracker 0.5.0 does. A change here moves users' data: never update these.
    #[test]
    fn known_answers() {
        let inputs: [&[u8]; 7] = [
            b"",
            b"a",
            b"foo",
            b"123456789",
            b"hello world",
            b"\x80\xff\x00\x7f\xc3\xa9",
            b"The quick brown fox jumps over t",
        ];
        #[rustfmt::skip]
        let expected: [(HashKind, [u32; 7]); 8] = [
            (HashKind::Fnv1a64, [0x84222325, 0x8601ec8c, 0xfed9d577, 0x23c6cdfc, 0x023cd2e7, 0x12170099, 0x8067c3eb]),
            (HashKind::Fnv1_64, [0x84222325, 0x8601b7be, 0x6ba13533, 0x2bf916d6, 0xb1910e6f, 0x796510e5, 0x2ee96f1f]),
            (HashKind::Fnv1a32, [0x811c9dc5, 0xe40c292c, 0xa9f37ed7, 0xbb86b11c, 0xd58b3fa7, 0x903c3899, 0x6bf2966b]),
            (HashKind::Murmur, [0x00000000, 0x4b41757c, 0xc4e0338f, 0xb7760690, 0x5e19153b, 0xb5ae6186, 0x14f32942]),
            (HashKind::Md5, [0xd98c1dd4, 0xb975c10c, 0xdb18bdac, 0x94e7f925, 0xbb3bb65e, 0xba1cce7b, 0x23b76c56]),
            (HashKind::Crc32, [0x00000000, 0x000068b7, 0x00000c73, 0x00004bf4, 0x00000d4a, 0x00007566, 0x000061ec]),
            (HashKind::Crc16, [0x00000000, 0x00007c87, 0x0c3caf96, 0x869031c3, 0xf2063be4, 0x9d981d72, 0xbaa168d8]),
            (HashKind::Xxh3, [0x38d394c2, 0x1e964e1f, 0x077e7d8a, 0x67a17dff, 0x40e6988b, 0x61b43081, 0x9e729c7b]),
        ];
        for (hash, answers) in expected {
            for (input, want) in inputs.iter().zip(answers) {
                assert_eq!(hash.hash(input), want, "{hash}({input:?})");
            }
        }
    }
}
