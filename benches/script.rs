//! The script engine's own overhead: one EVAL of a 2-call script with an in-memory call
//! implementation (no network), per script and per `redis.call`, on the blocking path and
//! through the async hand-off the proxy uses; and the cost of a fresh Lua state.

use std::hint::black_box;
use std::time::Instant;

use bytes::Bytes;
use criterion::{Criterion, criterion_group, criterion_main};
use shardis::script::{
    Call, CallError, Command, Dispatch, Engine, EngineConfig, Invocation, Protocol,
};

/// Answers every command at once, in memory.
struct Memory;

impl Call for Memory {
    fn call(
        &mut self,
        args: Vec<Vec<u8>>,
        _: Protocol,
        _: Option<Instant>,
    ) -> Result<Bytes, CallError> {
        black_box(args);
        Ok(Bytes::from_static(b"$5\r\nvalue\r\n"))
    }
}

impl Dispatch for Memory {
    async fn call(&self, command: Command) -> Result<Bytes, CallError> {
        black_box(command);
        Ok(Bytes::from_static(b"$5\r\nvalue\r\n"))
    }
}

const TWO_CALLS: &str =
    "local a = redis.call('get', KEYS[1]) local b = redis.call('get', KEYS[2]) return {a, b}";
const HUNDRED_CALLS: &str = "for i = 1, 100 do redis.call('get', KEYS[1]) end return 1";
const NO_CALL: &str = "return {KEYS[1], KEYS[2]}";

fn invocation(script: &str) -> Invocation {
    let argv: Vec<Bytes> = ["EVAL", script, "2", "k1", "k2"]
        .iter()
        .map(|a| Bytes::copy_from_slice(a.as_bytes()))
        .collect();
    Invocation::parse(&argv, Protocol::Resp2).expect("valid EVAL")
}

fn blocking(c: &mut Criterion) {
    let pooled = Engine::new(EngineConfig::default());
    let fresh = Engine::new(EngineConfig {
        max_idle_states: 0,
        ..EngineConfig::default()
    });
    let mut g = c.benchmark_group("script/blocking");
    for (name, script) in [
        ("no_call", NO_CALL),
        ("two_calls", TWO_CALLS),
        ("hundred_calls", HUNDRED_CALLS),
    ] {
        let inv = invocation(script);
        g.bench_function(name, |b| {
            b.iter(|| pooled.run_blocking(inv.clone(), &mut Memory))
        });
    }
    let inv = invocation(TWO_CALLS);
    g.bench_function("two_calls_fresh_state", |b| {
        b.iter(|| fresh.run_blocking(inv.clone(), &mut Memory))
    });
    g.finish();
}

fn handoff(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let engine = Engine::new(EngineConfig::default());
    let mut g = c.benchmark_group("script/async");
    for (name, script) in [
        ("no_call", NO_CALL),
        ("two_calls", TWO_CALLS),
        ("hundred_calls", HUNDRED_CALLS),
    ] {
        let inv = invocation(script);
        g.bench_function(name, |b| {
            b.iter(|| rt.block_on(engine.run(inv.clone(), &Memory)))
        });
    }
    g.finish();
}

criterion_group!(benches, blocking, handoff);
criterion_main!(benches);
