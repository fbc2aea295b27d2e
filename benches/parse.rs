//! Cost of framing client requests: a pipeline of N commands (GET, or SET with 16- or 256-byte
//! values) scanned by shardis's `RequestParser`, against `redis_protocol`'s `decode_range` over
//! the same bytes; and inline commands, which `redis_protocol` does not parse.
//!
//! Throughput is in commands (elements); divide the time by N for ns per command.

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use redis_protocol::resp2::decode::decode_range;
use shardis::protocol::request::{Request, RequestParser};

const PIPELINES: [usize; 3] = [1, 16, 256];
const MAX_REQUEST_BYTES: usize = 512 * 1024 * 1024;

/// Encodes one command as a RESP multibulk request, as a client library would.
fn encode(out: &mut Vec<u8>, args: &[&[u8]]) {
    out.extend_from_slice(format!("*{}\r\n", args.len()).as_bytes());
    for arg in args {
        out.extend_from_slice(format!("${}\r\n", arg.len()).as_bytes());
        out.extend_from_slice(arg);
        out.extend_from_slice(b"\r\n");
    }
}

/// `n` pipelined commands on distinct keys: GET, or SET with a `value`-byte value.
fn pipeline(n: usize, value: Option<usize>) -> Vec<u8> {
    let mut out = Vec::new();
    let payload = vec![b'x'; value.unwrap_or(0)];
    for i in 0..n {
        let key = format!("key:{i:012}");
        match value {
            None => encode(&mut out, &[b"GET", key.as_bytes()]),
            Some(_) => encode(&mut out, &[b"SET", key.as_bytes(), &payload]),
        }
    }
    out
}

/// Scans every request in `buf` with shardis's parser; returns the number of arguments seen.
fn scan_shardis(parser: &mut RequestParser, buf: &[u8]) -> usize {
    let mut at = 0;
    let mut args = 0;
    while at < buf.len() {
        match parser.parse(&buf[at..]) {
            Ok(Some(Request::Multibulk { len })) | Ok(Some(Request::Empty { len })) => {
                args += parser.args().len();
                at += len;
            }
            Ok(Some(Request::Inline { len, encoded })) => {
                args += parser.args().len();
                black_box(&encoded);
                at += len;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    args
}

/// Decodes every frame in `buf` with `redis_protocol`; returns the number of top-level frames.
fn scan_redis_protocol(buf: &[u8]) -> usize {
    let mut at = 0;
    let mut frames = 0;
    while at < buf.len() {
        match decode_range(&buf[at..]) {
            Ok(Some((frame, len))) => {
                black_box(&frame);
                frames += 1;
                at += len;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    frames
}

fn multibulk(c: &mut Criterion) {
    let mut group = c.benchmark_group("parse");
    for (workload, value) in [("get", None), ("set16", Some(16)), ("set256", Some(256))] {
        for n in PIPELINES {
            let buf = pipeline(n, value);
            group.throughput(Throughput::Elements(n as u64));
            let id = format!("{workload}/{n}");
            group.bench_with_input(BenchmarkId::new("shardis", &id), &buf, |b, buf| {
                let mut parser = RequestParser::new(MAX_REQUEST_BYTES);
                b.iter(|| scan_shardis(&mut parser, black_box(buf)))
            });
            group.bench_with_input(BenchmarkId::new("redis_protocol", &id), &buf, |b, buf| {
                b.iter(|| scan_redis_protocol(black_box(buf)))
            });
        }
    }
    group.finish();
}

/// A 256-byte SET that arrives in two reads: the parser resumes where it stopped.
fn split_read(c: &mut Criterion) {
    let buf = pipeline(1, Some(256));
    let cut = buf.len() / 2;
    let mut group = c.benchmark_group("parse_split_read");
    group.throughput(Throughput::Elements(1));
    group.bench_function("shardis/set256", |b| {
        let mut parser = RequestParser::new(MAX_REQUEST_BYTES);
        b.iter(|| {
            let buf = black_box(&buf[..]);
            assert!(parser.parse(&buf[..cut]).unwrap().is_none());
            parser.parse(buf).unwrap()
        })
    });
    group.finish();
}

fn inline(c: &mut Criterion) {
    let value16 = "v".repeat(16);
    let cases: Vec<(&str, Vec<u8>, usize)> = vec![
        ("ping", b"PING\r\n".to_vec(), 1),
        ("get", b"GET key:000000000001\r\n".to_vec(), 1),
        (
            "set16",
            format!("SET key:000000000001 {value16}\r\n").into_bytes(),
            1,
        ),
        (
            "set_quoted",
            b"SET key:000000000001 \"a b\\x41\\n\" 'c\\'d'\r\n".to_vec(),
            1,
        ),
        (
            "get/16",
            (0..16)
                .flat_map(|i| format!("GET key:{i:012}\r\n").into_bytes())
                .collect(),
            16,
        ),
    ];
    let mut group = c.benchmark_group("parse_inline");
    for (name, buf, n) in &cases {
        group.throughput(Throughput::Elements(*n as u64));
        group.bench_with_input(BenchmarkId::new("shardis", name), buf, |b, buf| {
            let mut parser = RequestParser::new(MAX_REQUEST_BYTES);
            b.iter(|| scan_shardis(&mut parser, black_box(buf)))
        });
    }
    group.finish();
}

criterion_group!(benches, multibulk, split_read, inline);
criterion_main!(benches);
