//! Request mirroring: a route's writes are copied to a shadow pool, its reads never are, and a
//! shadow that is hung (SIGSTOP) or dead costs the client nothing: every request still answers,
//! no slower, and the proxy's memory stays bounded (copies past the buffer are dropped and
//! counted).

mod common;

use std::time::{Duration, Instant};

use common::ops::{http_get, metric, wait_for};
use common::{Client, Frame, Redis, Shardis};

/// Pool main (two backends) serving every key, pool shadow (one backend) mirroring `k:` keys;
/// `mirror` is the route's mirror entry, `routing` extra `[routing]` lines.
fn config(main: &[Redis], shadow: &Redis, mirror: &str, routing: &str) -> String {
    format!(
        "[server]\nlisten = \"127.0.0.1:0\"\n\n[admin]\nlisten = \"127.0.0.1:0\"\n\n\
         [[pools]]\nname = \"main\"\ntimeout_ms = 1000\nbackends = [\n  {{ name = \"m1\", address = \"{}\" }},\n  {{ name = \"m2\", address = \"{}\" }},\n]\n\n\
         [[pools]]\nname = \"shadow\"\ntimeout_ms = 1000\nbackends = [{{ name = \"s1\", address = \"{}\" }}]\n\n\
         [routing]\ncatch_all = \"main\"\n{routing}\n\
         [[routes]]\nprefix = \"k:\"\npool = \"main\"\nmirror = [{mirror}]\n",
        main[0].addr(),
        main[1].addr(),
        shadow.addr()
    )
}

const ALL_WRITES: &str = "{ pool = \"shadow\", fraction = 1.0, exclude_reads = true }";

fn ok() -> Frame {
    Frame::Simple("OK".into())
}

/// `shardis_mirror_requests_total{pool="shadow",result=...}`, 0 when absent.
fn mirrored(proxy: &Shardis, result: &str) -> f64 {
    let text = http_get(proxy.admin, "/metrics").body;
    let series = format!("shardis_mirror_requests_total{{pool=\"shadow\",result=\"{result}\"}}");
    metric(&text, &series).unwrap_or(0.0)
}

/// Calls of `command` the server has served (`INFO commandstats`).
fn calls(redis: &Redis, command: &str) -> u64 {
    let text = redis.client().cmd_str(&["INFO", "commandstats"]).as_text();
    let prefix = format!("cmdstat_{command}:calls=");
    text.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .and_then(|rest| rest.split(',').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

#[test]
fn writes_are_copied_to_the_shadow_and_reads_never_are() {
    let main = [Redis::start(), Redis::start()];
    let shadow = Redis::start();
    let proxy = Shardis::start(&config(&main, &shadow, ALL_WRITES, ""));
    let mut c = proxy.client();
    for i in 0..100 {
        assert_eq!(
            c.cmd_str(&["SET", &format!("k:{i}"), &format!("v{i}")]),
            ok()
        );
    }
    // A split write is mirrored key by key; a key outside the route is not mirrored.
    assert_eq!(
        c.cmd_str(&["MSET", "k:a", "1", "k:b", "2", "other", "3"]),
        ok()
    );
    assert_eq!(c.cmd_str(&["INCR", "k:n"]), Frame::Integer(1));
    let mut s = shadow.client();
    wait_for(
        Duration::from_secs(2),
        "the shadow to hold the writes",
        || (s.cmd_str(&["DBSIZE"]) == Frame::Integer(103)).then_some(()),
    );
    assert_eq!(s.cmd_str(&["GET", "k:7"]), Frame::Bulk(b"v7".to_vec()));
    assert_eq!(s.cmd_str(&["GET", "k:b"]), Frame::Bulk(b"2".to_vec()));
    assert_eq!(s.cmd_str(&["EXISTS", "other"]), Frame::Integer(0));
    // Reads are never mirrored.
    for i in 0..100 {
        assert_eq!(
            c.cmd_str(&["GET", &format!("k:{i}")]),
            Frame::Bulk(format!("v{i}").into_bytes())
        );
    }
    let Frame::Array(_) = c.cmd_str(&["MGET", "k:1", "k:2", "k:a"]) else {
        panic!("MGET failed");
    };
    assert_eq!(c.cmd_str(&["EXISTS", "k:1"]), Frame::Integer(1));
    // A mirrored write's reply is discarded: the client sees the primary's.
    assert_eq!(c.cmd_str(&["SET", "k:x", "1"]), ok());
    assert_eq!(calls(&shadow, "get"), 2); // the two GETs above, sent by this test
    assert_eq!(calls(&shadow, "mget"), 0);
    assert_eq!(calls(&shadow, "exists"), 1); // the test's own
    assert!(mirrored(&proxy, "sent") >= 104.0);
    assert_eq!(mirrored(&proxy, "dropped"), 0.0);
}

#[test]
fn reads_are_mirrored_when_not_excluded_and_fraction_samples() {
    let main = [Redis::start(), Redis::start()];
    let shadow = Redis::start();
    let mirror = "{ pool = \"shadow\", fraction = 0.5 }";
    let proxy = Shardis::start(&config(&main, &shadow, mirror, ""));
    let mut c = proxy.client();
    for i in 0..1000 {
        assert_eq!(c.cmd_str(&["SET", &format!("k:{i}"), "v"]), ok());
    }
    for i in 0..1000 {
        assert_eq!(
            c.cmd_str(&["GET", &format!("k:{i}")]),
            Frame::Bulk(b"v".to_vec())
        );
    }
    let (sets, gets) = wait_for(Duration::from_secs(5), "the mirrored copies", || {
        let (sets, gets) = (calls(&shadow, "set"), calls(&shadow, "get"));
        (sets + gets == mirrored(&proxy, "sent") as u64).then_some((sets, gets))
    });
    // Half of each, give or take (binomial: 1000 draws, 6 sigma is about 95).
    assert!((400..=600).contains(&sets), "{sets} SETs mirrored");
    assert!((400..=600).contains(&gets), "{gets} GETs mirrored");
}

/// The resident memory of process `pid`, in bytes.
fn rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("/proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|kb| kb.parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

/// Sends `n` SETs of 16 KiB one at a time; each must answer OK. Their p99 latency.
fn big_sets(c: &mut Client, n: usize, round: &str) -> Duration {
    let value = "x".repeat(16 * 1024);
    let mut took = Vec::with_capacity(n);
    for i in 0..n {
        let key = format!("k:{round}:{i}");
        let start = Instant::now();
        assert_eq!(c.cmd_str(&["SET", &key, &value]), ok(), "{key}");
        took.push(start.elapsed());
    }
    took.sort();
    took[n * 99 / 100]
}

fn signal(pid: u32, name: &str) {
    let status = std::process::Command::new("kill")
        .args([&format!("-{name}"), &pid.to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
}

#[test]
fn a_hung_or_dead_shadow_never_slows_or_fails_the_client() {
    let main = [Redis::start(), Redis::start()];
    let mut shadow = Redis::start();
    let proxy = Shardis::start(&config(&main, &shadow, ALL_WRITES, ""));
    let mut c = proxy.client();
    // Warm up, then the p99 with a healthy shadow.
    big_sets(&mut c, 200, "warm");
    let before = big_sets(&mut c, 2000, "before");
    wait_for(Duration::from_secs(10), "the copies to be answered", || {
        (calls(&shadow, "set") == 2200).then_some(())
    });
    let rss_before = rss(proxy.pid());

    // Hung: the shadow accepts nothing more.
    signal(shadow.pid(), "STOP");
    let hung = big_sets(&mut c, 2000, "hung");
    let grown = rss(proxy.pid()).saturating_sub(rss_before);
    signal(shadow.pid(), "CONT");
    assert!(mirrored(&proxy, "dropped") > 0.0, "nothing was dropped");
    assert!(
        grown < 20 << 20,
        "RSS grew by {} MiB with a hung mirror",
        grown >> 20
    );
    // At most 2x the healthy p99 (with a floor for a busy machine's noise).
    let bound = (before * 2).max(Duration::from_millis(20));
    assert!(
        hung <= bound,
        "p99 {hung:?} with a hung mirror, {before:?} before"
    );

    // Dead: every copy fails, the client does not notice.
    shadow.kill();
    let dead = big_sets(&mut c, 2000, "dead");
    assert!(
        dead <= bound,
        "p99 {dead:?} with a dead mirror, {before:?} before"
    );
    assert!(
        mirrored(&proxy, "failed") > 0.0,
        "no copy counted as failed"
    );
    let grown = rss(proxy.pid()).saturating_sub(rss_before);
    assert!(grown < 20 << 20, "RSS grew by {} MiB", grown >> 20);
    // Every write reached the primary pool.
    let keys: i64 = main
        .iter()
        .map(|r| match r.client().cmd_str(&["DBSIZE"]) {
            Frame::Integer(n) => n,
            other => panic!("DBSIZE: {other:?}"),
        })
        .sum();
    assert_eq!(keys, 6200);
}

#[test]
fn the_mirror_buffer_bounds_what_is_in_flight() {
    let main = [Redis::start(), Redis::start()];
    let shadow = Redis::start();
    // Room for about four 16 KiB copies.
    let proxy = Shardis::start(&config(
        &main,
        &shadow,
        ALL_WRITES,
        "mirror_buffer_bytes = 70000\n",
    ));
    let mut c = proxy.client();
    signal(shadow.pid(), "STOP");
    big_sets(&mut c, 100, "hung");
    signal(shadow.pid(), "CONT");
    let sent = mirrored(&proxy, "sent");
    let dropped = mirrored(&proxy, "dropped");
    assert!(sent <= 8.0, "{sent} copies sent past a 70000-byte buffer");
    assert!(dropped >= 92.0, "{dropped} dropped");
}
