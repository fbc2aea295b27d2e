//! The near cache (issue 25): hot keys answered from proxy memory, kept coherent by Redis's
//! client tracking. Two shardis instances share real redis-servers: one caches, the other (or
//! a direct connection) writes; every write must be seen, and no stale value may stay.

mod common;

use std::time::{Duration, Instant};

use common::ops::{backends, http_get, metric, start_redises, wait_for};
use common::{Client, Frame, Redis, Shardis, shardis_config};

/// The pool settings of the caching instance: a short timeout, so a new hot key is filled
/// soon (fills wait one timeout after a key becomes hot).
const NEAR: &str = "near_cache = true\ntimeout_ms = 300";

struct Pair {
    redis: Vec<Redis>,
    /// Caches.
    near: Shardis,
    /// Does not.
    plain: Shardis,
}

fn pair(n: usize) -> Pair {
    let redis = start_redises(n);
    let near = Shardis::start(&shardis_config(&backends(&redis), NEAR));
    let plain = Shardis::start(&shardis_config(&backends(&redis), ""));
    Pair { redis, near, plain }
}

fn near_metric(shardis: &Shardis, name: &str) -> f64 {
    let text = http_get(shardis.admin, "/metrics").body;
    metric(
        &text,
        &format!("shardis_near_cache_{name}{{pool=\"main\"}}"),
    )
    .unwrap_or(0.0)
}

/// GETs `key` in pipelines until the near cache answers it; returns the value it answers.
fn until_cached(shardis: &Shardis, c: &mut Client, key: &str) -> Frame {
    let start = near_metric(shardis, "hits_total");
    wait_for(Duration::from_secs(30), "a near cache hit", || {
        let mut raw = Vec::new();
        for _ in 0..200 {
            raw.extend(Client::encode(&[b"GET", key.as_bytes()]));
        }
        c.send_raw(&raw);
        for _ in 0..200 {
            c.read_reply();
        }
        (near_metric(shardis, "hits_total") > start).then_some(())
    });
    c.cmd_str(&["GET", key])
}

/// `CLIENT ID`s of the tracking connections on `redis`.
fn tracking_ids(redis: &Redis) -> Vec<String> {
    let list = redis.client().cmd_str(&["CLIENT", "LIST"]).as_text();
    list.lines()
        .filter(|l| l.contains("name=shardis-nearcache"))
        .filter_map(|l| l.split(' ').find_map(|f| f.strip_prefix("id=")))
        .map(str::to_owned)
        .collect()
}

/// `cmdstat_get`'s calls on `redis`.
fn gets_on(redis: &Redis) -> u64 {
    let text = redis.client().cmd_str(&["INFO", "commandstats"]).as_text();
    text.lines()
        .find_map(|l| l.strip_prefix("cmdstat_get:calls="))
        .and_then(|v| v.split(',').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

#[test]
fn a_hot_key_is_answered_by_the_proxy_not_its_backend() {
    let p = pair(2);
    let mut c = p.near.client();
    c.cmd_str(&["SET", "hot", "v1"]);
    assert_eq!(
        until_cached(&p.near, &mut c, "hot"),
        Frame::Bulk(b"v1".to_vec())
    );
    let backend = p
        .redis
        .iter()
        .position(|r| r.client().cmd_str(&["EXISTS", "hot"]) == Frame::Integer(1))
        .unwrap();
    // The tracking connection is a client of the key's backend, with tracking on.
    let list = p.redis[backend]
        .client()
        .cmd_str(&["CLIENT", "LIST"])
        .as_text();
    let tracking = list
        .lines()
        .find(|l| l.contains("name=shardis-nearcache"))
        .expect("tracking connection");
    assert!(tracking.contains("flags=t"), "{tracking}");
    let before = gets_on(&p.redis[backend]);
    let mut raw = Vec::new();
    for _ in 0..2000 {
        raw.extend(Client::encode(&[b"GET", b"hot"]));
    }
    c.send_raw(&raw);
    for _ in 0..2000 {
        assert_eq!(c.read_reply(), Frame::Bulk(b"v1".to_vec()));
    }
    let reached = gets_on(&p.redis[backend]) - before;
    assert!(reached < 200, "{reached} of 2000 GETs reached the backend");
    // RESP3 clients get the same answers, nulls in their own form.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let url = format!("redis://{}/?protocol=resp3", p.near.addr);
        let mut con = redis::Client::open(url)
            .unwrap()
            .get_multiplexed_async_connection()
            .await
            .unwrap();
        for _ in 0..100 {
            let v: Option<String> = redis::cmd("GET")
                .arg("hot")
                .query_async(&mut con)
                .await
                .unwrap();
            assert_eq!(v.as_deref(), Some("v1"));
        }
    });
    let text = http_get(p.near.admin, "/metrics").body;
    for name in [
        "hits_total",
        "misses_total",
        "fills_total",
        "evictions_total",
        "invalidations_total",
        "bytes",
    ] {
        assert!(
            text.contains(&format!("shardis_near_cache_{name}{{pool=\"main\"}}")),
            "{name}"
        );
    }
}

#[test]
fn a_write_through_another_proxy_is_seen_at_once() {
    let p = pair(3);
    let mut reader = p.near.client();
    let mut writer = p.plain.client();
    writer.cmd_str(&["SET", "hot", "w0"]);
    until_cached(&p.near, &mut reader, "hot");
    let hits_before = near_metric(&p.near, "hits_total");
    let mut lags = Vec::with_capacity(1000);
    for i in 1..=1000 {
        let value = format!("w{i}");
        assert_eq!(
            writer.cmd_str(&["SET", "hot", &value]),
            Frame::Simple("OK".into())
        );
        let written = Instant::now();
        let seen = wait_for(Duration::from_secs(5), "the write", || {
            (reader.cmd_str(&["GET", "hot"]) == Frame::Bulk(value.clone().into_bytes()))
                .then(|| written.elapsed())
        });
        lags.push(seen);
        // Once seen, never the old value again; these reads refill and hit the cache.
        for _ in 0..5 {
            assert_eq!(
                reader.cmd_str(&["GET", "hot"]),
                Frame::Bulk(value.clone().into_bytes())
            );
        }
    }
    lags.sort();
    let hits = near_metric(&p.near, "hits_total") - hits_before;
    eprintln!(
        "1000 writes through another proxy: seen after median {:?}, p99 {:?}, max {:?}; {hits} hits meanwhile",
        lags[500], lags[990], lags[999]
    );
    // The target is 50 ms; the bound is generous because the machine is shared.
    assert!(lags[999] < Duration::from_secs(2), "{:?}", lags[999]);
    assert!(
        hits > 1000.0,
        "the cache answered reads between the writes: {hits}"
    );
    assert!(near_metric(&p.near, "invalidations_total") > 0.0);
}

#[test]
fn a_client_reads_its_own_writes_in_order() {
    let p = pair(2);
    let mut c = p.near.client();
    c.cmd_str(&["SET", "hot", "a0"]);
    c.cmd_str(&["HSET", "h", "f", "h0"]);
    until_cached(&p.near, &mut c, "hot");
    let hits_before = near_metric(&p.near, "hits_total");
    for i in 1..=300 {
        let v = format!("a{i}");
        // One pipeline: the GETs after the write must see it, hit or not.
        let mut raw = Client::encode(&[b"GET", b"hot"]);
        raw.extend(Client::encode(&[b"SET", b"hot", v.as_bytes()]));
        raw.extend(Client::encode(&[b"GET", b"hot"]));
        raw.extend(Client::encode(&[b"GET", b"hot"]));
        c.send_raw(&raw);
        c.read_reply();
        assert_eq!(c.read_reply(), Frame::Simple("OK".into()));
        assert_eq!(
            c.read_reply(),
            Frame::Bulk(v.clone().into_bytes()),
            "write {i}"
        );
        assert_eq!(
            c.read_reply(),
            Frame::Bulk(v.clone().into_bytes()),
            "write {i}"
        );
        // A transaction, and a script, write keys the proxy does not see.
        if i % 3 == 0 {
            let t = format!("t{i}");
            let mut raw = Client::encode(&[b"MULTI"]);
            raw.extend(Client::encode(&[b"SET", b"hot", t.as_bytes()]));
            raw.extend(Client::encode(&[b"EXEC"]));
            raw.extend(Client::encode(&[b"GET", b"hot"]));
            c.send_raw(&raw);
            for _ in 0..3 {
                c.read_reply();
            }
            assert_eq!(
                c.read_reply(),
                Frame::Bulk(t.into_bytes()),
                "transaction {i}"
            );
            let s = format!("s{i}");
            let mut raw = Client::encode(&[
                b"EVAL",
                b"return redis.call('SET', KEYS[1], ARGV[1])",
                b"1",
                b"hot",
                s.as_bytes(),
            ]);
            raw.extend(Client::encode(&[b"GET", b"hot"]));
            c.send_raw(&raw);
            c.read_reply();
            assert_eq!(c.read_reply(), Frame::Bulk(s.into_bytes()), "script {i}");
            // Back to the plain value for the next round's first GET.
            c.cmd_str(&["SET", "hot", &v]);
        }
    }
    assert!(
        near_metric(&p.near, "hits_total") > hits_before,
        "reads were cached between writes"
    );
}

#[test]
fn a_killed_tracking_connection_never_leaves_a_stale_value() {
    let p = pair(1);
    let mut c = p.near.client();
    c.cmd_str(&["SET", "hot", "old"]);
    assert_eq!(
        until_cached(&p.near, &mut c, "hot"),
        Frame::Bulk(b"old".to_vec())
    );
    let ids = tracking_ids(&p.redis[0]);
    assert_eq!(ids.len(), 1, "{ids:?}");
    let mut admin = p.redis[0].client();
    assert_eq!(
        admin.cmd_str(&["CLIENT", "KILL", "ID", &ids[0]]),
        Frame::Integer(1)
    );
    // Written behind the proxy's back: no invalidation can reach the dead connection.
    assert_eq!(
        admin.cmd_str(&["SET", "hot", "new"]),
        Frame::Simple("OK".into())
    );
    let started = Instant::now();
    wait_for(Duration::from_secs(5), "the new value", || {
        (c.cmd_str(&["GET", "hot"]) == Frame::Bulk(b"new".to_vec())).then_some(())
    });
    eprintln!(
        "after CLIENT KILL, the new value was read after {:?}",
        started.elapsed()
    );
    for _ in 0..500 {
        assert_eq!(c.cmd_str(&["GET", "hot"]), Frame::Bulk(b"new".to_vec()));
    }
    // A new tracking connection caches again, and is invalidated again.
    assert_eq!(
        until_cached(&p.near, &mut c, "hot"),
        Frame::Bulk(b"new".to_vec())
    );
    let ids2 = tracking_ids(&p.redis[0]);
    assert_eq!(ids2.len(), 1, "{ids2:?}");
    assert_ne!(ids2, ids);
    admin.cmd_str(&["SET", "hot", "newer"]);
    wait_for(Duration::from_secs(5), "the newer value", || {
        (c.cmd_str(&["GET", "hot"]) == Frame::Bulk(b"newer".to_vec())).then_some(())
    });
    assert!(near_metric(&p.near, "evictions_total") > 0.0);
}

#[test]
fn hashes_are_invalidated_and_ttls_expire_in_the_cache() {
    let p = pair(1);
    let mut c = p.near.client();
    let mut w = p.plain.client();
    c.cmd_str(&["HSET", "h", "f", "v1", "g", "x"]);
    let hget = |c: &mut Client| c.cmd_str(&["HGET", "h", "f"]);
    let hits = near_metric(&p.near, "hits_total");
    wait_for(Duration::from_secs(30), "HGET cached", || {
        let mut raw = Vec::new();
        for _ in 0..200 {
            raw.extend(Client::encode(&[b"HGET", b"h", b"f"]));
            raw.extend(Client::encode(&[b"HMGET", b"h", b"f", b"nope"]));
        }
        c.send_raw(&raw);
        for _ in 0..200 {
            assert_eq!(c.read_reply(), Frame::Bulk(b"v1".to_vec()));
            assert_eq!(
                c.read_reply(),
                Frame::Array(vec![Frame::Bulk(b"v1".to_vec()), Frame::Null])
            );
        }
        (near_metric(&p.near, "hits_total") > hits + 10.0).then_some(())
    });
    w.cmd_str(&["HSET", "h", "f", "v2"]);
    wait_for(Duration::from_secs(5), "HSET seen", || {
        (hget(&mut c) == Frame::Bulk(b"v2".to_vec())).then_some(())
    });
    // A key with a TTL, with Redis's active expiry off: only the cache's own expiry can
    // stop it serving the value after the TTL.
    assert_eq!(
        p.redis[0]
            .client()
            .cmd_str(&["DEBUG", "SET-ACTIVE-EXPIRE", "0"]),
        Frame::Simple("OK".into())
    );
    c.cmd_str(&["SET", "ttl", "soon", "PX", "8000"]);
    let set_at = Instant::now();
    assert_eq!(
        until_cached(&p.near, &mut c, "ttl"),
        Frame::Bulk(b"soon".to_vec())
    );
    assert!(
        set_at.elapsed() < Duration::from_millis(7500),
        "cached too late to test: {:?}",
        set_at.elapsed()
    );
    std::thread::sleep(Duration::from_millis(8100).saturating_sub(set_at.elapsed()));
    assert_eq!(c.cmd_str(&["GET", "ttl"]), Frame::Null);
}
