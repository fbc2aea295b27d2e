//! Cost of the reply side: encoding replies (`put_*`), framing a stream of backend replies
//! with `ReplyScanner` (against `redis_protocol`'s `decode_range` over the same bytes), and
//! MGET fan-out: the per-key steps of the split and `Fanout::merge`.
//!
//! The split itself (`Session::split` in src/session/dispatch.rs) is a private async method
//! that needs a live session and backend links, so `mget_split_steps` times the public
//! functions it is made of: `key_span`, `Ring::backend_for` per key, and `put_array_len` /
//! `put_bulk` for each sub-request. Its bookkeeping vectors are not included.

use std::hint::black_box;
use std::ops::Range;

use bytes::{Bytes, BytesMut};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use redis_protocol::resp2::decode::decode_range;
use shardis::config::Config;
use shardis::protocol::command::{Merge, lookup};
use shardis::protocol::keys::key_span;
use shardis::protocol::out::Proto;
use shardis::protocol::reply::{
    ReplyScanner, array_elements, put_array_len, put_bulk, put_error, put_integer, put_null,
    put_simple,
};
use shardis::protocol::request::{Request, RequestParser};
use shardis::router::Ring;
use shardis::routing::Table;
use shardis::session::pending::{Fanout, MergeEnv};
use shardis::state::ProxyState;

fn encode(c: &mut Criterion) {
    let v16 = vec![b'v'; 16];
    let v256 = vec![b'v'; 256];
    let mut out = BytesMut::with_capacity(64 * 1024);
    let mut group = c.benchmark_group("encode");
    group.throughput(Throughput::Elements(1));
    group.bench_function("simple_ok", |b| {
        b.iter(|| {
            out.clear();
            put_simple(&mut out, black_box("OK"));
        })
    });
    group.bench_function("error", |b| {
        b.iter(|| {
            out.clear();
            put_error(
                &mut out,
                black_box("CROSSSLOT Keys in request don't hash to the same backend"),
            );
        })
    });
    for (name, n) in [("integer_1", 1), ("integer_max", i64::MAX)] {
        group.bench_function(name, |b| {
            b.iter(|| {
                out.clear();
                put_integer(&mut out, black_box(n));
            })
        });
    }
    group.bench_function("null", |b| {
        b.iter(|| {
            out.clear();
            put_null(&mut out);
        })
    });
    group.bench_function("array_len_16", |b| {
        b.iter(|| {
            out.clear();
            put_array_len(&mut out, black_box(16));
        })
    });
    for (name, v) in [("bulk_16", &v16), ("bulk_256", &v256)] {
        group.bench_function(name, |b| {
            b.iter(|| {
                out.clear();
                put_bulk(&mut out, black_box(v));
            })
        });
    }
    // An MGET reply of 16 values: header and 16 bulks.
    group.throughput(Throughput::Elements(16));
    group.bench_function("array_16_bulk_16", |b| {
        b.iter(|| {
            out.clear();
            put_array_len(&mut out, 16);
            for _ in 0..16 {
                put_bulk(&mut out, black_box(&v16));
            }
        })
    });
    group.finish();
}

fn bulk(v: &[u8]) -> Vec<u8> {
    let mut out = BytesMut::new();
    put_bulk(&mut out, v);
    out.to_vec()
}

fn array(n: usize, v: &[u8]) -> Vec<u8> {
    let mut out = BytesMut::new();
    put_array_len(&mut out, n);
    for _ in 0..n {
        put_bulk(&mut out, v);
    }
    out.to_vec()
}

/// `n` replies, cycling through `kinds`.
fn stream(n: usize, kinds: &[Vec<u8>]) -> Vec<u8> {
    (0..n)
        .flat_map(|i| kinds[i % kinds.len()].clone())
        .collect()
}

fn scan(c: &mut Criterion) {
    let v16 = vec![b'v'; 16];
    let v256 = vec![b'v'; 256];
    let ok = b"+OK\r\n".to_vec();
    let mixed = vec![
        ok.clone(),
        bulk(&v16),
        b":1\r\n".to_vec(),
        b"$-1\r\n".to_vec(),
        array(4, &v16),
    ];
    let workloads: [(&str, Vec<Vec<u8>>); 5] = [
        ("ok", vec![ok]),
        ("bulk16", vec![bulk(&v16)]),
        ("bulk256", vec![bulk(&v256)]),
        ("mget16", vec![array(16, &v16)]),
        ("mixed", mixed),
    ];
    let mut group = c.benchmark_group("scan");
    for (name, kinds) in &workloads {
        for n in [1, 16, 256] {
            let buf = stream(n, kinds);
            let id = format!("{name}/{n}");
            group.throughput(Throughput::Elements(n as u64));
            group.bench_with_input(BenchmarkId::new("shardis", &id), &buf, |b, buf| {
                let mut scanner = ReplyScanner::new();
                b.iter(|| {
                    let buf = black_box(&buf[..]);
                    let mut at = 0;
                    while at < buf.len() {
                        at += scanner.scan(&buf[at..]).unwrap().unwrap();
                    }
                    at
                })
            });
            group.bench_with_input(BenchmarkId::new("redis_protocol", &id), &buf, |b, buf| {
                b.iter(|| {
                    let buf = black_box(&buf[..]);
                    let mut at = 0;
                    while at < buf.len() {
                        let (frame, len) = decode_range(&buf[at..]).unwrap().unwrap();
                        black_box(&frame);
                        at += len;
                    }
                    at
                })
            });
        }
    }
    group.finish();

    // A 256-element array reply arriving in 8 reads: the scanner resumes, never rescans.
    let buf = array(256, &v16);
    let mut group = c.benchmark_group("scan_resumed");
    group.throughput(Throughput::Bytes(buf.len() as u64));
    group.bench_function("shardis/array256_in_8_reads", |b| {
        let mut scanner = ReplyScanner::new();
        let step = buf.len() / 8;
        b.iter(|| {
            let buf = black_box(&buf[..]);
            for read in 1..8 {
                assert!(scanner.scan(&buf[..read * step]).unwrap().is_none());
            }
            scanner.scan(buf).unwrap()
        })
    });
    group.finish();
}

fn ring(n: usize) -> Ring {
    let mut text =
        String::from("[server]\nlisten = \"127.0.0.1:0\"\n[[pools]]\nname = \"bench\"\n");
    text += "backends = [\n";
    for i in 0..n {
        text += &format!(
            "  {{ name = \"s{i}\", address = \"127.0.0.1:{}\" }},\n",
            7001 + i
        );
    }
    text += "]\n";
    Config::parse(&text).expect("bench config").pools[0].ring()
}

/// An MGET of `keys` distinct keys, parsed.
fn mget(keys: usize) -> (Vec<u8>, Vec<Range<usize>>) {
    let mut frame = format!("*{}\r\n$4\r\nMGET\r\n", keys + 1);
    for i in 0..keys as u64 {
        // Scattered numbers, so that the keys spread over the backends (see benches/router.rs).
        let k = format!(
            "key:{:012}",
            i.wrapping_mul(0x9e37_79b9_7f4a_7c15) % 1_000_000_000_000
        );
        frame += &format!("${}\r\n{k}\r\n", k.len());
    }
    let frame = frame.into_bytes();
    let mut parser = RequestParser::new(1 << 20);
    assert!(matches!(
        parser.parse(&frame),
        Ok(Some(Request::Multibulk { .. }))
    ));
    let args = parser.args().to_vec();
    (frame, args)
}

fn split(c: &mut Criterion) {
    const NBACKENDS: usize = 4;
    let ring = ring(NBACKENDS);
    let (_, cmd) = lookup(b"mget").expect("mget");
    let mut group = c.benchmark_group("mget_split_steps");
    for keys in [16, 128] {
        let (frame, args) = mget(keys);
        group.throughput(Throughput::Elements(keys as u64));
        let mut placed = Vec::with_capacity(keys);
        group.bench_function(BenchmarkId::new("placement", keys), |b| {
            b.iter(|| {
                let frame = black_box(&frame[..]);
                let span = key_span(cmd, frame, &args).unwrap().unwrap();
                placed.clear();
                placed.extend(
                    span.positions()
                        .map(|pos| ring.backend_for(&frame[args[pos].clone()])),
                );
                placed.len()
            })
        });
        let span = key_span(cmd, &frame, &args).unwrap().unwrap();
        let placed: Vec<usize> = span
            .positions()
            .map(|pos| ring.backend_for(&frame[args[pos].clone()]))
            .collect();
        let mut counts = [0usize; NBACKENDS];
        for &p in &placed {
            counts[p] += 1;
        }
        assert!(
            counts.iter().all(|&n| n > 0),
            "keys on every backend: {counts:?}"
        );
        let mut bufs: Vec<BytesMut> = (0..NBACKENDS)
            .map(|_| BytesMut::with_capacity(64 + frame.len()))
            .collect();
        group.bench_function(BenchmarkId::new("encode_parts", keys), |b| {
            b.iter(|| {
                let frame = black_box(&frame[..]);
                for (buf, &n) in bufs.iter_mut().zip(&counts) {
                    buf.clear();
                    put_array_len(buf, 1 + n);
                    put_bulk(buf, &frame[args[0].clone()]);
                }
                for (pos, &backend) in span.positions().zip(&placed) {
                    put_bulk(&mut bufs[backend], &frame[args[pos].clone()]);
                }
            })
        });
    }
    group.finish();
}

/// A filled MGET fan-out: `keys` keys spread round-robin over `parts` parts, each answering
/// with its values (`value` bytes each); `failed` makes the last part an error.
fn mget_fanout(keys: usize, parts: usize, value: usize, failed: bool) -> Fanout {
    let order: Vec<(u32, u32)> = (0..keys)
        .map(|k| ((k % parts) as u32, (k / parts) as u32))
        .collect();
    let v = vec![b'v'; value];
    let mut fanout = Fanout::new(
        lookup(b"mget").expect("mget").0,
        tokio::time::Instant::now(),
        Merge::Mget,
        Proto::Resp2,
        parts,
        order,
    );
    for part in 0..parts {
        let n = (keys + parts - 1 - part) / parts;
        let reply = if failed && part == parts - 1 {
            Bytes::from_static(b"-ERR backend s4 down\r\n")
        } else {
            let mut out = BytesMut::new();
            put_array_len(&mut out, n);
            for i in 0..n {
                // Every fourth key is missing, as in a partly warm cache.
                if i % 4 == 3 {
                    put_null(&mut out);
                } else {
                    put_bulk(&mut out, &v);
                }
            }
            out.freeze()
        };
        fanout.fill(part as u32, reply);
    }
    assert_eq!(fanout.left, 0);
    fanout
}

fn merge(c: &mut Criterion) {
    let state = ProxyState::new(String::new(), Vec::new());
    let config = match Config::from_backends(&["127.0.0.1:7001".to_string()]) {
        Ok(config) => config,
        Err(e) => panic!("bench config: {e}"),
    };
    let (table, _links) = Table::detached(&config.pools[0]);
    let env = MergeEnv {
        state: &state,
        table: &table,
        max_keys: usize::MAX,
        pick: 0,
    };
    let cases = [
        ("keys16_parts4_v16", mget_fanout(16, 4, 16, false)),
        ("keys16_parts4_v256", mget_fanout(16, 4, 256, false)),
        ("keys128_parts4_v16", mget_fanout(128, 4, 16, false)),
        ("keys16_parts2_v16", mget_fanout(16, 2, 16, false)),
        ("keys16_parts4_v16_failed", mget_fanout(16, 4, 16, true)),
    ];
    let mut group = c.benchmark_group("mget_merge");
    for (name, fanout) in &cases {
        group.throughput(Throughput::Elements(fanout.order.len() as u64));
        group.bench_with_input(BenchmarkId::from_parameter(name), fanout, |b, f| {
            b.iter(|| black_box(f).merge(&env))
        });
    }
    group.finish();

    // The decoding step of the merge alone, for one part's reply (redis_protocol's
    // decode_range underneath).
    let mut group = c.benchmark_group("array_elements");
    for n in [4, 16, 128] {
        let part = array(n, &[b'v'; 16]);
        group.throughput(Throughput::Elements(n as u64));
        group.bench_with_input(BenchmarkId::from_parameter(n), &part, |b, part| {
            b.iter(|| array_elements(black_box(part)))
        });
    }
    group.finish();
}

criterion_group!(benches, encode, scan, split, merge);
criterion_main!(benches);
