//! Cost per request of recording metrics: `CommandMetrics::record` and `BackendMetrics::record`
//! (fixed buckets per worker, whether or not a Prometheus recorder is installed), and the
//! client byte counters with the real Prometheus recorder installed against handles built with
//! no recorder (no-ops).

use std::hint::black_box;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use shardis::metrics::{BackendMetrics, Metrics, install};

const COMMANDS: &[&str] = &["get", "set", "del", "mget", "incr", "expire", "ttl", "hget"];

/// Latencies cycled through by every benchmark, spread over the buckets.
fn latencies() -> Vec<Duration> {
    (0..1024u64)
        .map(|i| Duration::from_nanos(5_000 + (i * 7_919) % 2_000_000))
        .collect()
}

fn backends() -> Vec<BackendMetrics> {
    (1..=4)
        .map(|i| BackendMetrics::new("main", &format!("s{i}")))
        .collect()
}

fn bench(c: &mut Criterion) {
    // Client handles registered before any recorder is installed are no-ops: the baseline of
    // the client byte counters, which the exporter keeps.
    let noop = Metrics::new(COMMANDS);
    let handle = match install() {
        Ok(h) => h,
        Err(e) => {
            eprintln!("cannot install the recorder: {e}");
            return;
        }
    };
    let real = Metrics::new(COMMANDS);
    let real_backends = backends();
    // Histogram samples pile up until upkeep folds them into buckets; do it as a scraper would.
    let stop = Arc::new(AtomicBool::new(false));
    let upkeep = {
        let stop = stop.clone();
        let handle = handle.clone();
        thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                thread::sleep(Duration::from_millis(50));
                handle.run_upkeep();
            }
        })
    };
    let lat = latencies();

    let mut group = c.benchmark_group("command_record");
    group.bench_function("fixed_buckets", |b| {
        let mut i = 0usize;
        b.iter(|| {
            i = i.wrapping_add(1);
            let id = black_box(i % (COMMANDS.len() + 1));
            real.command(id).record(lat[i & 1023], i & 15 != 0);
        })
    });
    group.finish();

    let mut group = c.benchmark_group("backend_record");
    group.bench_function("fixed_buckets", |b| {
        let mut i = 0usize;
        b.iter(|| {
            i = i.wrapping_add(1);
            real_backends[black_box(i & 3)].record(lat[i & 1023]);
        })
    });
    group.finish();

    let mut group = c.benchmark_group("client_bytes");
    for (name, m) in [("noop", &noop), ("prometheus", &real)] {
        group.bench_function(name, |b| {
            b.iter(|| {
                m.clients().received(black_box(64));
                m.clients().sent(black_box(16));
            })
        });
    }
    group.finish();

    stop.store(true, Ordering::Relaxed);
    let _ = upkeep.join();
    black_box(handle.render().len());
}

criterion_group!(benches, bench);
criterion_main!(benches);
