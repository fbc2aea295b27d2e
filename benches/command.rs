//! Cost of the per-command routing steps before any I/O: the command table lookup by name (mixed
//! case, as clients send it), where the keys are (`key_span`), and which backend owns them
//! (`Table::route_span`), with a 4-backend ketama ring, fnv1a_64 and hash tag "{}".

use std::hint::black_box;
use std::ops::Range;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use shardis::config::Config;
use shardis::protocol::command::lookup;
use shardis::protocol::keys::key_span;
use shardis::protocol::request::{Request, RequestParser};
use shardis::routing::Table;

/// Names as clients send them: redis-cli and most libraries use upper case, some lower.
const NAMES: &[&str] = &[
    "GET",
    "get",
    "Set",
    "SET",
    "mget",
    "MSET",
    "del",
    "INCR",
    "expire",
    "TTL",
    "HGETALL",
    "hset",
    "LPUSH",
    "zrangebyscore",
    "EVALSHA",
    "ping",
];

/// A parsed request: its bytes and argument ranges, built once outside the timed loop.
struct Parsed {
    frame: Vec<u8>,
    args: Vec<Range<usize>>,
}

fn parsed(parts: &[&str]) -> Parsed {
    let mut frame = format!("*{}\r\n", parts.len());
    for p in parts {
        frame += &format!("${}\r\n{p}\r\n", p.len());
    }
    let frame = frame.into_bytes();
    let mut parser = RequestParser::new(1 << 20);
    let Ok(Some(Request::Multibulk { len })) = parser.parse(&frame) else {
        panic!("not a request: {parts:?}");
    };
    assert_eq!(len, frame.len());
    Parsed {
        args: parser.args().to_vec(),
        frame,
    }
}

fn ring() -> Table {
    let config = Config::parse(
        r#"
        [server]
        listen = "127.0.0.1:0"
        [[pools]]
        name = "bench"
        hash_tag = "{}"
        backends = [
          { name = "s1", address = "127.0.0.1:7001" },
          { name = "s2", address = "127.0.0.1:7002" },
          { name = "s3", address = "127.0.0.1:7003" },
          { name = "s4", address = "127.0.0.1:7004" },
        ]
        "#,
    )
    .expect("bench config");
    Table::detached(&config.pools[0]).0
}

fn lookups(c: &mut Criterion) {
    let mut group = c.benchmark_group("lookup");
    group.throughput(Throughput::Elements(1));
    for name in ["GET", "get", "Set", "HGETALL", "zrangebyscore", "nosuchcmd"] {
        group.bench_with_input(BenchmarkId::from_parameter(name), name, |b, name| {
            b.iter(|| lookup(black_box(name.as_bytes())))
        });
    }
    group.bench_function("too_long", |b| {
        let name = [b'X'; 64];
        b.iter(|| lookup(black_box(&name)))
    });
    group.throughput(Throughput::Elements(NAMES.len() as u64));
    group.bench_function("mixed16", |b| {
        b.iter(|| {
            let mut found = 0;
            for name in black_box(NAMES) {
                found += lookup(name.as_bytes()).map_or(0, |(id, _)| id);
            }
            found
        })
    });
    group.finish();
}

/// `n` keys, all with the tag `{user:1}`, or untagged with scattered numbers (sequential ones
/// would differ only in their last bytes, which FNV-1a maps to nearby hashes, so ketama would
/// put them all on one backend).
fn keys(n: usize, tagged: bool) -> Vec<String> {
    (0..n as u64)
        .map(|i| {
            if tagged {
                format!("{{user:1}}:k{i}")
            } else {
                format!(
                    "key:{:012}",
                    i.wrapping_mul(0x9e37_79b9_7f4a_7c15) % 1_000_000_000_000
                )
            }
        })
        .collect()
}

fn with_keys(cmd: &str, keys: &[String], value: Option<&str>) -> Parsed {
    let mut parts = vec![cmd];
    for k in keys {
        parts.push(k);
        if let Some(v) = value {
            parts.push(v);
        }
    }
    parsed(&parts)
}

fn spans(c: &mut Criterion) {
    let cases = [
        ("get", parsed(&["GET", "key:000001"])),
        ("set", parsed(&["SET", "key:000001", "value", "EX", "10"])),
        ("mget16", with_keys("MGET", &keys(16, false), None)),
        ("mset8", with_keys("MSET", &keys(8, false), Some("v"))),
        (
            "eval2",
            parsed(&["EVAL", "return 1", "2", "k1", "k2", "arg"]),
        ),
        (
            "zunionstore",
            parsed(&["ZUNIONSTORE", "d", "2", "a", "b", "WEIGHTS", "1", "2"]),
        ),
    ];
    let mut group = c.benchmark_group("key_span");
    group.throughput(Throughput::Elements(1));
    for (name, p) in &cases {
        let (_, cmd) = lookup(&p.frame[p.args[0].clone()]).expect("known command");
        group.bench_with_input(BenchmarkId::from_parameter(name), p, |b, p| {
            b.iter(|| key_span(cmd, black_box(&p.frame), black_box(&p.args)))
        });
    }
    group.finish();
}

fn backends(c: &mut Criterion) {
    let ring = ring();
    let cases = [
        ("get", parsed(&["GET", "key:000001"])),
        ("mget4_tagged", with_keys("MGET", &keys(4, true), None)),
        ("mget16_tagged", with_keys("MGET", &keys(16, true), None)),
        // Distinct keys on 4 backends: stops at the second key, which is elsewhere.
        (
            "mget16_crossslot",
            with_keys("MGET", &keys(16, false), None),
        ),
    ];
    let untagged = keys(2, false);
    assert_ne!(
        ring.pools[0].owner(untagged[0].as_bytes()),
        ring.pools[0].owner(untagged[1].as_bytes()),
        "the cross-slot case should stop at its second key"
    );
    let mut group = c.benchmark_group("route_span");
    group.throughput(Throughput::Elements(1));
    for (name, p) in &cases {
        let (_, cmd) = lookup(&p.frame[p.args[0].clone()]).expect("known command");
        let span = key_span(cmd, &p.frame, &p.args)
            .expect("valid")
            .expect("has keys");
        group.bench_with_input(BenchmarkId::from_parameter(name), p, |b, p| {
            b.iter(|| {
                ring.route_span(cmd, black_box(&p.frame), black_box(&p.args), &span, 0)
                    .is_ok()
            })
        });
    }
    group.finish();

    // Everything a forwarded command costs between parsing and sending: lookup, arity,
    // key span, backend.
    let mut group = c.benchmark_group("route");
    group.throughput(Throughput::Elements(1));
    for (name, p) in [
        ("get", parsed(&["GET", "key:000001"])),
        ("set", parsed(&["SET", "key:000001", "value"])),
    ] {
        group.bench_with_input(BenchmarkId::from_parameter(name), &p, |b, p| {
            b.iter(|| {
                let frame = black_box(&p.frame[..]);
                let args = black_box(&p.args[..]);
                let (_, cmd) = lookup(&frame[args[0].clone()])?;
                if !cmd.arity_ok(args.len()) {
                    return None;
                }
                let span = key_span(cmd, frame, args).ok()??;
                ring.route_span(cmd, frame, args, &span, 0).ok()
            })
        });
    }
    group.finish();
}

criterion_group!(benches, lookups, spans, backends);
criterion_main!(benches);
