//! Every backend sees exactly `threads x connections_per_backend` connections from the proxy,
//! however many clients there are: each worker thread owns `connections_per_backend` links to
//! each backend, shared by all the sessions it serves.

mod common;

use std::sync::{Arc, Barrier};
use std::time::Duration;

use common::ops::{backends, redis_clients, start_redises, wait_for};
use common::{Frame, Shardis, shardis_config};

const CLIENTS: usize = 50;
const ROUNDS: usize = 100;

/// Runs 50 clients at once against a proxy with `threads` workers and checks each backend's
/// CLIENT LIST before, during and after.
fn connections_stay_fixed(connections_per_backend: usize, threads: &str) {
    let redises = start_redises(3);
    let extra = if connections_per_backend == 1 {
        String::new() // the default
    } else {
        format!("connections_per_backend = {connections_per_backend}")
    };
    let config = shardis_config(&backends(&redises), &extra);
    let shardis = Shardis::start_with_args(&config, &["--threads", threads]);
    let expected = connections_per_backend * threads.parse::<usize>().expect("threads");
    for redis in &redises {
        wait_for(Duration::from_secs(10), "the links to connect", || {
            (redis_clients(redis) == expected).then_some(())
        });
    }

    // All clients connect, then all work at once; the main thread counts meanwhile.
    let barrier = Arc::new(Barrier::new(CLIENTS + 1));
    let workers: Vec<_> = (0..CLIENTS)
        .map(|n| {
            let mut c = shardis.client();
            let barrier = barrier.clone();
            std::thread::spawn(move || {
                barrier.wait();
                for i in 0..ROUNDS {
                    let (key, value) = (format!("c{n}:k{i}"), format!("v{n}:{i}"));
                    assert_eq!(
                        c.cmd_str(&["SET", &key, &value]),
                        Frame::Simple("OK".into())
                    );
                    assert_eq!(c.cmd_str(&["GET", &key]), Frame::Bulk(value.into_bytes()));
                }
                c
            })
        })
        .collect();
    barrier.wait();
    let mut seen = Vec::new();
    while workers.iter().any(|w| !w.is_finished()) {
        for redis in &redises {
            seen.push(redis_clients(redis));
        }
    }
    // Keep the 50 clients connected for the final count.
    let clients: Vec<_> = workers
        .into_iter()
        .map(|w| w.join().expect("client thread"))
        .collect();
    for redis in &redises {
        seen.push(redis_clients(redis));
    }
    assert!(
        seen.iter().all(|&n| n == expected),
        "backend connection counts seen with {CLIENTS} clients and --threads {threads}: {seen:?}; \
         expected {expected} each time"
    );
    let total: i64 = redises
        .iter()
        .map(|r| match r.client().cmd_str(&["DBSIZE"]) {
            Frame::Integer(n) => n,
            other => panic!("DBSIZE: {other:?}"),
        })
        .sum();
    assert_eq!(total, (CLIENTS * ROUNDS) as i64);
    drop(clients);
}

#[test]
fn three_links_per_backend_with_four_threads() {
    connections_stay_fixed(3, "4");
}

#[test]
fn default_one_link_per_backend_with_two_threads() {
    connections_stay_fixed(1, "2");
}

#[test]
fn one_thread_one_link() {
    connections_stay_fixed(1, "1");
}
