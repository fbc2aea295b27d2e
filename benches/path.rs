//! The whole in-process request path without sockets: client bytes are parsed, looked up,
//! routed and queued for their backend link (the bytes the link would write), then backend
//! replies are framed, matched and written to the client's output buffer in order.
//!
//! One iteration is one client read of N pipelined commands and every reply back; the link's
//! side is played by the bench: it takes each queued request, appends its frame to a write
//! buffer, and answers with a canned reply through the request's `ReplyTo`.

use std::hint::black_box;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use shardis::backend::{Inbound, Request};
use shardis::clients::Clients;
use shardis::config::Config;
use shardis::metrics::Metrics;
use shardis::protocol::command;
use shardis::protocol::request::RequestParser;
use shardis::routing::{Routing, Table};
use shardis::session::{Context, Session};
use shardis::state::ProxyState;
use tokio::sync::mpsc;

const BACKENDS: usize = 4;

struct Rig {
    session: Session,
    inbox: mpsc::UnboundedReceiver<Inbound>,
    links: Vec<mpsc::Receiver<Request>>,
    parser: RequestParser,
    /// What the links would write to their backends.
    wire: BytesMut,
    batch: Vec<Request>,
}

fn rig() -> Rig {
    let addrs: Vec<String> = (0..BACKENDS)
        .map(|i| format!("127.0.0.1:{}", 7001 + i))
        .collect();
    let config = match Config::from_backends(&addrs) {
        Ok(config) => config,
        Err(e) => panic!("bench config: {e}"),
    };
    let pool_cfg = &config.pools[0];
    // No recorder installed: metric handles are no-ops; benches/metrics.rs prices them.
    let metrics = Arc::new(Metrics::new(&command::names()));
    let (mut table, links) = Table::detached(pool_cfg);
    table.settings.max_pipeline = 1 << 20;
    let state = Arc::new(ProxyState::new(config.digest.clone(), table.states()));
    let ctx = Context {
        routing: Arc::new(Routing::new(table)),
        metrics,
        state,
    };
    let (session, inbox) = Session::new(Arc::new(ctx), Clients::detached(1));
    Rig {
        session,
        inbox,
        links,
        parser: RequestParser::new(512 << 20),
        wire: BytesMut::with_capacity(1 << 20),
        batch: Vec::with_capacity(1024),
    }
}

impl Rig {
    /// One client read of `input`, routed, "written" by the links, each request answered with
    /// `answer(its frame)`, and the client's output taken. Returns output bytes.
    async fn round(&mut self, input: &[u8], answer: impl Fn(&[u8]) -> Bytes) -> usize {
        let mut rbuf = BytesMut::from(input);
        self.session.feed(&mut rbuf, &mut self.parser).await;
        self.wire.clear();
        for link in &mut self.links {
            while let Ok(req) = link.try_recv() {
                self.batch.push(req);
            }
            for req in self.batch.drain(..) {
                self.wire.extend_from_slice(&req.frame);
                let reply = answer(&req.frame);
                req.reply.send(reply);
            }
        }
        while let Ok(r) = self.inbox.try_recv() {
            self.session.on_inbound(r);
        }
        let out = self.session.output();
        let n = out.len();
        out.clear();
        n
    }
}

fn encode(args: &[&[u8]], out: &mut Vec<u8>) {
    out.extend_from_slice(format!("*{}\r\n", args.len()).as_bytes());
    for a in args {
        out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        out.extend_from_slice(a);
        out.extend_from_slice(b"\r\n");
    }
}

fn gets(n: usize) -> Vec<u8> {
    let mut out = Vec::new();
    for i in 0..n {
        encode(&[b"GET", format!("key:{i:08}").as_bytes()], &mut out);
    }
    out
}

fn bench(c: &mut Criterion) {
    let rt = match tokio::runtime::Builder::new_current_thread().build() {
        Ok(rt) => rt,
        Err(e) => panic!("runtime: {e}"),
    };
    let value = Bytes::from(format!("${}\r\n{}\r\n", 64, "v".repeat(64)));

    let mut group = c.benchmark_group("path/get");
    for n in [1usize, 16, 256] {
        let input = gets(n);
        let mut rig = rig();
        group.throughput(Throughput::Elements(n as u64));
        group.bench_with_input(BenchmarkId::from_parameter(n), &input, |b, input| {
            b.iter(|| rt.block_on(rig.round(black_box(input), |_| value.clone())));
        });
    }
    group.finish();

    // MGET of 10 keys: split across the 4 backends, merged back in key order.
    let mut group = c.benchmark_group("path/mget10");
    let keys: Vec<Vec<u8>> = (0..10)
        .map(|i| format!("key:{i:08}").into_bytes())
        .collect();
    let mut args: Vec<&[u8]> = vec![b"MGET"];
    args.extend(keys.iter().map(|k| k.as_slice()));
    let mut input = Vec::new();
    encode(&args, &mut input);
    // A part's reply is an array of as many nils as the part has keys: built here, not timed.
    let nils: Vec<Bytes> = (0..=keys.len())
        .map(|n| Bytes::from(format!("*{n}\r\n{}", "$-1\r\n".repeat(n))))
        .collect();
    let mut split = rig();
    group.throughput(Throughput::Elements(1));
    group.bench_function("split+merge", |b| {
        // "*<n+1>\r\n$4\r\nMGET\r\n...": answer n nils.
        let answer = |frame: &[u8]| nils[count_of(frame).saturating_sub(1).min(keys.len())].clone();
        b.iter(|| black_box(rt.block_on(split.round(&input, answer))));
    });
    group.finish();

    // MSET of 10 keys: split across the 4 backends, each part answers +OK.
    let mut group = c.benchmark_group("path/mset10");
    let mut args: Vec<&[u8]> = vec![b"MSET"];
    for k in &keys {
        args.push(k.as_slice());
        args.push(b"value");
    }
    let mut input = Vec::new();
    encode(&args, &mut input);
    let ok = Bytes::from_static(b"+OK\r\n");
    let mut split = rig();
    group.throughput(Throughput::Elements(1));
    group.bench_function("split+merge", |b| {
        b.iter(|| black_box(rt.block_on(split.round(&input, |_| ok.clone()))));
    });
    group.finish();
}

/// The element count of a multibulk frame's header.
fn count_of(frame: &[u8]) -> usize {
    let end = frame.iter().position(|&b| b == b'\r').unwrap_or(1);
    std::str::from_utf8(&frame[1..end])
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

criterion_group!(benches, bench);
criterion_main!(benches);
