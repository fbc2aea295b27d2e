//! Replicated shards: Sentinel-managed primaries of a hashed pool, replica reads, and requests
//! held across a failover (Sentinel and Cluster), on real redis-servers, sentinels and a real
//! cluster, under a steady load of known values on every shard.
//!
//! Each test takes seconds (a failover with `down-after-milliseconds 1000` takes about three).

mod common;

use std::time::{Duration, Instant};

use common::load::{Load, OUTCOME_UNKNOWN, steady};
use common::ops::http_get;
use common::sentinel::{SENTINEL_DEADLINE, info_field, wait_for};
use common::{Frame, RedisCluster, Replicated, Shardis};

/// Load clients: each sends one request at a time, so at most this many writes can be in
/// flight when a primary dies.
const CLIENTS: usize = 4;

/// Waits until shardis's /status names `addr` as shard `backend`'s primary.
fn wait_shardis_primary(shardis: &Shardis, backend: &str, addr: &str) {
    wait_for(SENTINEL_DEADLINE, "shardis to follow the failover", || {
        let status = http_get(shardis.admin, "/status").json();
        status["backends"].as_array().is_some_and(|all| {
            all.iter()
                .any(|b| b["name"] == backend && b["shard"]["primary"].as_str() == Some(addr))
        })
    });
}

/// Prints what a run saw (the numbers the report quotes) and checks the targets that every
/// failover shares: a GET never gets "outcome unknown", and no acknowledged write sent after
/// the failure is missing.
fn report(what: &str, o: &common::load::Outcome, lost: &common::load::Lost, took: Duration) {
    eprintln!(
        "{what}: {} writes, {} reads, {} errors, {} outcome-unknown writes, {} lost to replication, {} lost by the proxy; hold until new primary {} ms",
        o.writes,
        o.reads,
        o.errors.len(),
        o.unknown.len(),
        lost.replication,
        lost.proxy.len(),
        took.as_millis()
    );
    assert_eq!(o.reads_unknown, 0, "a read got the outcome-unknown error");
    assert!(
        lost.proxy.is_empty(),
        "writes lost after the failure: {:?}",
        lost.proxy
    );
}

#[test]
fn a_killed_sentinel_primary_costs_only_the_writes_in_flight() {
    let mut r = Replicated::start(3);
    let shardis = Shardis::start(&r.shardis_config(""));
    let load = Load::start(shardis.addr, CLIENTS);
    steady(Duration::from_millis(800));
    let killed_at = Instant::now();
    let old = r.kill_primary(0);
    let new = r.wait_new_primary(0, &old);
    wait_shardis_primary(&shardis, "s1", &new);
    let took = killed_at.elapsed();
    steady(Duration::from_millis(500));
    let o = load.stop();
    let lost = o.check(&mut shardis.client(), killed_at);
    report("SIGKILL", &o, &lost, took);
    assert!(
        o.errors.is_empty(),
        "errors other than outcome unknown: {:?}",
        o.errors
    );
    assert!(
        o.unknown.len() <= CLIENTS,
        "more outcome-unknown writes ({}) than could be in flight ({CLIENTS})",
        o.unknown.len()
    );
    assert!(o.writes > 100, "the load ran: {} writes", o.writes);

    // What shardis shows of it.
    let status = http_get(shardis.admin, "/status").json();
    let s1 = status["backends"]
        .as_array()
        .and_then(|all| all.iter().find(|b| b["name"] == "s1").cloned())
        .expect("s1 in /status");
    assert_eq!(s1["shard"]["master"], "s1");
    assert_eq!(s1["shard"]["last_failover"]["from"], old.as_str());
    assert_eq!(s1["shard"]["last_failover"]["to"], new.as_str());
    let metrics = http_get(shardis.admin, "/metrics").body;
    assert!(
        metrics.contains("shardis_failovers_total{pool=\"main\",backend=\"s1\"} 1"),
        "{metrics}"
    );
    assert!(metrics.contains("shardis_hold_seconds_count"), "{metrics}");
    assert!(metrics.contains("shardis_held_requests 0"), "{metrics}");
}

#[test]
fn a_planned_sentinel_failover_costs_no_error_and_no_write() {
    let r = Replicated::start(3);
    let shardis = Shardis::start(&r.shardis_config(""));
    let load = Load::start(shardis.addr, CLIENTS);
    steady(Duration::from_millis(800));
    let asked_at = Instant::now();
    let old = r.primary(0).addr();
    r.failover(0);
    let new = r.wait_new_primary(0, &old);
    wait_shardis_primary(&shardis, "s1", &new);
    let took = asked_at.elapsed();
    steady(Duration::from_millis(500));
    let o = load.stop();
    // The old primary becomes a replica and resyncs: read once it is in sync, from the new
    // primary through shardis.
    r.wait_replica_synced(0);
    let lost = o.check(&mut shardis.client(), asked_at);
    report("SENTINEL FAILOVER", &o, &lost, took);
    assert!(o.errors.is_empty(), "errors: {:?}", o.errors);
    assert!(
        o.unknown.is_empty(),
        "outcome-unknown writes: {:?}",
        o.unknown
    );
    assert!(
        lost.replication <= 5,
        "{} acknowledged writes lost",
        lost.replication
    );
}

#[test]
fn read_from_replica_sends_reads_to_replicas_and_writes_to_primaries() {
    let r = Replicated::start(3);
    let shardis = Shardis::start(&r.shardis_config("read_from = \"replica\""));
    // Replicas come from the sentinels' next answer.
    wait_for(SENTINEL_DEADLINE, "shardis to know the replicas", || {
        let status = http_get(shardis.admin, "/status").json();
        status["backends"].as_array().is_some_and(|all| {
            all.iter().all(|b| {
                b["shard"]["replicas"]
                    .as_array()
                    .is_some_and(|r| r.len() == 1)
            })
        })
    });
    let mut c = shardis.client();
    for i in 0..60 {
        let key = format!("rr:{i}");
        assert_eq!(c.cmd_str(&["SET", &key, "v"]), Frame::Simple("OK".into()));
    }
    // Replication is asynchronous: a read on another connection may see the old value, so
    // wait for the replicas to have the writes before reading.
    for s in 0..3 {
        let replica = r.replica(s);
        let primary = r.primary(s);
        wait_for(SENTINEL_DEADLINE, "the replica to catch up", || {
            info_field(replica, "slave_repl_offset") == info_field(primary, "master_repl_offset")
        });
    }
    for i in 0..60 {
        let key = format!("rr:{i}");
        assert_eq!(
            c.cmd_str(&["GET", &key]),
            Frame::Bulk(b"v".to_vec()),
            "{key}"
        );
    }
    let calls = |node: &common::Redis, cmd: &str| -> u64 {
        let text = node.client().cmd_str(&["INFO", "commandstats"]).as_text();
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("cmdstat_{cmd}:calls=")))
            .and_then(|v| v.split(',').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    let (mut replica_gets, mut primary_sets) = (0, 0);
    for s in 0..3 {
        assert_eq!(calls(r.primary(s), "get"), 0, "a GET went to primary {s}");
        // A replica counts the SETs it applies from its primary's stream too: as many as
        // the primary's, so none came from a client (a replica would refuse one anyway).
        assert_eq!(calls(r.replica(s), "set"), calls(r.primary(s), "set"));
        replica_gets += calls(r.replica(s), "get");
        primary_sets += calls(r.primary(s), "set");
    }
    assert_eq!(replica_gets, 60);
    assert_eq!(primary_sets, 60);
}

#[test]
fn a_killed_cluster_primary_costs_only_the_writes_in_flight() {
    let mut cluster = RedisCluster::start();
    let shardis = Shardis::start(&cluster.shardis_config(""));
    let load = Load::start(shardis.addr, CLIENTS);
    steady(Duration::from_millis(800));
    let victim = cluster.primary_of(0);
    let old = cluster.nodes[victim].addr();
    let killed_at = Instant::now();
    cluster.kill(victim);
    // The cluster promotes the replica; shardis follows its slot map.
    wait_for(
        common::redis_cluster::SETTLE_DEADLINE,
        "the promotion",
        || cluster.nodes[cluster.primary_of(0)].addr() != old,
    );
    let new = cluster.nodes[cluster.primary_of(0)].addr();
    wait_for(SENTINEL_DEADLINE, "shardis to follow the promotion", || {
        let status = http_get(shardis.admin, "/status").json();
        status["backends"].as_array().is_some_and(|all| {
            all.iter()
                .any(|b| b["shard"]["last_failover"]["to"].as_str() == Some(new.as_str()))
        })
    });
    let took = killed_at.elapsed();
    steady(Duration::from_millis(500));
    let o = load.stop();
    let lost = o.check(&mut shardis.client(), killed_at);
    report("cluster SIGKILL", &o, &lost, took);
    assert!(
        o.errors.is_empty(),
        "errors other than outcome unknown: {:?}",
        o.errors
    );
    assert!(
        o.unknown.len() <= CLIENTS,
        "{} outcome-unknown writes",
        o.unknown.len()
    );
    let metrics = http_get(shardis.admin, "/metrics").body;
    assert!(
        metrics.contains("shardis_failovers_total{pool=\"main\""),
        "{metrics}"
    );
}

#[test]
fn a_restarting_backend_is_waited_for_with_restart_hold() {
    let mut redis = common::Redis::start();
    let config = common::shardis_config(&[("s1", redis.addr())], "restart_hold_ms = 5000");
    let shardis = Shardis::start(&config);
    let mut c = shardis.client();
    assert_eq!(c.cmd_str(&["SET", "k", "1"]), Frame::Simple("OK".into()));
    redis.kill();
    let restart = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(700));
        redis.restart();
        redis
    });
    // Sent while the backend is away: held, then served by the restarted server (empty).
    let reply = c.cmd_str(&["GET", "k"]);
    assert_eq!(reply, Frame::Null, "held until the restart");
    let _redis = restart.join().expect("restart");
    assert_eq!(c.cmd_str(&["SET", "k", "2"]), Frame::Simple("OK".into()));
}

#[test]
fn without_a_hold_a_dead_backend_fails_at_once() {
    let mut redis = common::Redis::start();
    let config = common::shardis_config(&[("s1", redis.addr())], "");
    let shardis = Shardis::start(&config);
    let mut c = shardis.client();
    assert_eq!(c.cmd_str(&["SET", "k", "1"]), Frame::Simple("OK".into()));
    redis.kill();
    let at = Instant::now();
    let reply = c.cmd_str(&["GET", "k"]);
    assert!(
        matches!(&reply, Frame::Error(e) if !e.contains(OUTCOME_UNKNOWN)),
        "{reply:?}"
    );
    assert!(at.elapsed() < Duration::from_secs(5), "answered at once");
}
