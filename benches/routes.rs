//! Cost of finding a key's prefix route (`[[routes]]`, longest prefix wins) at 1, 100 and
//! 10,000 routes, built from a parsed configuration as the proxy builds them: a key that takes
//! a route, one that falls to the catch-all, and one matched case-insensitively. A linear scan
//! would grow with the routes; the tries grow with the key's length only.

use std::fmt::Write as _;
use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use shardis::config::Config;
use shardis::routing::Routes;

const ROUTES: [usize; 3] = [1, 100, 10_000];
const NKEYS: usize = 4096;

/// Two pools, `n` routes `svc{i}:` spread over them (every tenth one case-insensitive, every
/// third one removing its prefix), catch-all b.
fn config_text(n: usize) -> String {
    let mut text = String::from("[server]\nlisten = \"127.0.0.1:0\"\n");
    for p in ["a", "b"] {
        let _ = writeln!(
            text,
            "[[pools]]\nname = \"{p}\"\nbackends = [{{ address = \"10.0.0.1:6379\" }}]"
        );
    }
    text += "[routing]\ncatch_all = \"b\"\n";
    for i in 0..n {
        let _ = writeln!(
            text,
            "[[routes]]\nprefix = \"svc{i}:\"\npool = \"{}\"\nremove_prefix = {}\ncase_insensitive = {}",
            if i % 2 == 0 { "a" } else { "b" },
            i % 3 == 0,
            i % 10 == 9
        );
    }
    text
}

fn routes(c: &mut Criterion) {
    let mut group = c.benchmark_group("routes");
    for n in ROUTES {
        let config = Config::parse(&config_text(n)).expect("bench config");
        let routes = Routes::new(&config.routing).expect("routes");
        let hits: Vec<Vec<u8>> = (0..NKEYS)
            .map(|i| format!("svc{}:user:{i:08}", i % n).into_bytes())
            .collect();
        let misses: Vec<Vec<u8>> = (0..NKEYS)
            .map(|i| format!("other:{i:08}:session").into_bytes())
            .collect();
        for (name, keys) in [("hit", &hits), ("catch_all", &misses)] {
            group.bench_with_input(BenchmarkId::new(name, n), keys, |b, keys| {
                let mut i = 0usize;
                b.iter(|| {
                    i = (i + 1) % NKEYS;
                    black_box(routes.locate(black_box(&keys[i])))
                })
            });
        }
    }
    group.finish();
}

criterion_group!(benches, routes);
criterion_main!(benches);
