//! Cost of key placement: every hash function on 8-, 32- and 128-byte keys; hash tag
//! extraction; and ring lookup for every distribution at 1, 16 and 256 backends, with the ring
//! built from a parsed configuration as the proxy builds it.
//!
//! Lookups cycle through 4096 distinct keys (or hashes) spread over the ring, so that a binary
//! search is not predicted from the previous iteration.

use std::fmt::Write as _;
use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use shardis::config::Config;
use shardis::router::{DistributionKind, HashKind, HashTag, Ring};

const KEY_LENS: [usize; 3] = [8, 32, 128];
const BACKENDS: [usize; 3] = [1, 16, 256];
const NKEYS: usize = 4096;

/// A key of exactly `len` bytes: a counter padded with a fixed pattern.
fn key(i: usize, len: usize) -> Vec<u8> {
    let mut k = format!("{i:08}").into_bytes();
    k.resize(len, b'k');
    k.truncate(len);
    k
}

/// The configuration text for one pool of `n` equally weighted backends.
fn config_text(n: usize, dist: DistributionKind, tag: Option<&str>) -> String {
    let mut text =
        String::from("[server]\nlisten = \"127.0.0.1:0\"\n[[pools]]\nname = \"bench\"\n");
    let _ = writeln!(text, "distribution = \"{dist}\"\nhash = \"fnv1a_64\"");
    if let Some(tag) = tag {
        let _ = writeln!(text, "hash_tag = \"{tag}\"");
    }
    text += "backends = [\n";
    for i in 0..n {
        let _ = writeln!(
            text,
            "  {{ name = \"redis-{i}\", address = \"10.0.{}.{}:6379\" }},",
            i / 250,
            i % 250 + 1
        );
    }
    text += "]\n";
    text
}

fn ring(n: usize, dist: DistributionKind, tag: Option<&str>) -> Ring {
    let config = Config::parse(&config_text(n, dist, tag)).expect("bench config");
    config.pools[0].ring()
}

fn hashes(c: &mut Criterion) {
    let mut group = c.benchmark_group("hash");
    for len in KEY_LENS {
        let keys: Vec<Vec<u8>> = (0..NKEYS).map(|i| key(i, len)).collect();
        group.throughput(Throughput::Bytes(len as u64));
        for kind in HashKind::ALL {
            group.bench_with_input(BenchmarkId::new(kind.name(), len), &keys, |b, keys| {
                let mut i = 0usize;
                b.iter(|| {
                    i = (i + 1) % NKEYS;
                    black_box(kind).hash(black_box(&keys[i]))
                })
            });
        }
    }
    group.finish();
}

fn tags(c: &mut Criterion) {
    let tag = HashTag::parse("{}").expect("two bytes");
    let cases: [(&str, Vec<u8>); 5] = [
        ("front_16", b"{user:1000}:name".to_vec()),
        ("back_32", b"session:token:abcdef:{user:1000}".to_vec()),
        ("none_32", key(1, 32)),
        ("none_128", key(1, 128)),
        ("open_only_32", b"{user:1000:session:token:abcdef:".to_vec()),
    ];
    let mut group = c.benchmark_group("hash_tag");
    group.throughput(Throughput::Elements(1));
    for (name, k) in &cases {
        group.bench_with_input(BenchmarkId::from_parameter(name), k, |b, k| {
            b.iter(|| tag.extract(black_box(k)).len())
        });
    }
    group.finish();
}

fn lookups(c: &mut Criterion) {
    // Scattered numbers: sequential ones differ only in their last bytes, which FNV-1a maps
    // to nearby hashes, and neighbouring lookups would hit the same ketama point.
    let ids: Vec<u64> = (0..NKEYS as u64)
        .map(|i| i.wrapping_mul(0x9e37_79b9_7f4a_7c15) % 1_000_000_000_000)
        .collect();
    let keys: Vec<Vec<u8>> = ids
        .iter()
        .map(|i| format!("key:{i:012}").into_bytes())
        .collect();
    let tagged: Vec<Vec<u8>> = ids
        .iter()
        .map(|i| format!("{{user:{i}}}:profile").into_bytes())
        .collect();
    // Placement on its own sees hashes spread over all 32 bits.
    let hashes: Vec<u32> = ids
        .iter()
        .map(|i| HashKind::Xxh3.hash(&i.to_le_bytes()))
        .collect();

    // Placement alone, from a precomputed hash.
    let mut group = c.benchmark_group("ring_locate");
    group.throughput(Throughput::Elements(1));
    for dist in DistributionKind::ALL {
        for n in BACKENDS {
            let ring = ring(n, dist, None);
            group.bench_with_input(BenchmarkId::new(dist.name(), n), &hashes, |b, hashes| {
                let mut i = 0usize;
                b.iter(|| {
                    i = (i + 1) % NKEYS;
                    ring.locate(black_box(hashes[i]))
                })
            });
        }
    }
    group.finish();

    // What the proxy does per key: fnv1a_64 over a 16-byte key, then placement.
    let mut group = c.benchmark_group("ring_backend_for");
    group.throughput(Throughput::Elements(1));
    for dist in DistributionKind::ALL {
        for n in BACKENDS {
            let ring = ring(n, dist, None);
            group.bench_with_input(BenchmarkId::new(dist.name(), n), &keys, |b, keys| {
                let mut i = 0usize;
                b.iter(|| {
                    i = (i + 1) % NKEYS;
                    ring.backend_for(black_box(&keys[i]))
                })
            });
        }
    }
    // The same with hash tag "{}" on keys like "{user:42}:profile".
    for n in [16, 256] {
        let ring = ring(n, DistributionKind::Ketama, Some("{}"));
        group.bench_with_input(BenchmarkId::new("ketama_tagged", n), &tagged, |b, keys| {
            let mut i = 0usize;
            b.iter(|| {
                i = (i + 1) % NKEYS;
                ring.backend_for(black_box(&keys[i]))
            })
        });
    }
    group.finish();
}

/// Building a ring, paid once per configuration load or reload, not per request.
fn builds(c: &mut Criterion) {
    let mut group = c.benchmark_group("ring_build");
    group.sample_size(10);
    for dist in DistributionKind::ALL {
        for n in [16, 256] {
            let config = Config::parse(&config_text(n, dist, None)).expect("bench config");
            group.bench_with_input(
                BenchmarkId::new(dist.name(), n),
                &config.pools[0],
                |b, pool| b.iter(|| black_box(pool).ring()),
            );
        }
    }
    group.finish();
}

criterion_group!(benches, hashes, tags, lookups, builds);
criterion_main!(benches);
