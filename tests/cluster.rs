//! Redis Cluster as an upstream: a real cluster of redis-servers (three primaries, three
//! replicas) behind shardis, used by clients that know nothing of clusters. Keys go to the
//! node that owns their hash slot; MOVED and ASK during a reshard, and a failover, never
//! reach the client.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::ops::{http_get, metric, status, wait_for};
use common::{Client, Frame, RedisCluster, Shardis, bulk, err, int, ok};

/// The hash slot of `key`, as the cluster computes it.
fn keyslot(cluster: &RedisCluster, key: &str) -> u16 {
    match cluster.any().client().cmd_str(&["CLUSTER", "KEYSLOT", key]) {
        Frame::Integer(n) => n as u16,
        other => panic!("CLUSTER KEYSLOT {key}: {other:?}"),
    }
}

/// A key of the form `{prefix}-n` whose slot is owned by node `node`.
fn key_on(cluster: &RedisCluster, node: usize, prefix: &str) -> String {
    (0..10_000)
        .map(|n| format!("{prefix}-{n}"))
        .find(|k| cluster.primary_of(keyslot(cluster, k)) == node)
        .expect("a key on that node")
}

fn start(cluster: &RedisCluster, extra: &str) -> Shardis {
    let shardis = Shardis::start(&cluster.shardis_config(extra));
    // The first slot map is fetched before the listener opens; this just checks it.
    let s = status(&shardis);
    assert_eq!(
        s["cluster"]["slot_map"].as_array().map(Vec::len),
        Some(3),
        "{s:#}"
    );
    shardis
}

#[test]
fn plain_clients_get_set_and_split_multi_key_commands_across_slots() {
    let cluster = RedisCluster::start();
    let shardis = start(&cluster, "");
    let mut c = shardis.client();
    let primaries = cluster.primaries();
    assert_eq!(primaries.len(), 3);
    let keys: Vec<String> = primaries
        .iter()
        .map(|&p| key_on(&cluster, p, "k"))
        .collect();

    for (i, k) in keys.iter().enumerate() {
        assert_eq!(c.cmd_str(&["SET", k, &format!("v{i}")]), ok());
        assert_eq!(c.cmd_str(&["GET", k]), bulk(format!("v{i}")));
        // Stored on the node that owns the slot: a plain client there reads it.
        assert_eq!(
            cluster.nodes[primaries[i]].client().cmd_str(&["GET", k]),
            bulk(format!("v{i}"))
        );
    }
    // MSET/MGET across three primaries, split by slot and merged in request order.
    let mut mset = vec!["MSET"];
    let values = ["a", "b", "c"];
    for (k, v) in keys.iter().zip(values) {
        mset.extend([k.as_str(), v]);
    }
    assert_eq!(c.cmd_str(&mset), ok());
    let mget: Vec<&str> = vec!["MGET", &keys[2], "missing", &keys[0], &keys[1]];
    assert_eq!(
        c.cmd_str(&mget),
        Frame::Array(vec![bulk("c"), Frame::Null, bulk("a"), bulk("b")])
    );
    assert_eq!(
        c.cmd_str(&["EXISTS", &keys[0], &keys[1], &keys[2], "missing"]),
        int(3)
    );
    assert_eq!(c.cmd_str(&["TOUCH", &keys[0], &keys[1]]), int(2));
    assert_eq!(c.cmd_str(&["UNLINK", &keys[0]]), int(1));
    assert_eq!(c.cmd_str(&["DEL", &keys[1], &keys[2], &keys[0]]), int(2));

    // Other multi-key commands need one slot, as Redis Cluster answers.
    assert_eq!(
        c.cmd_str(&["SUNIONSTORE", &keys[0], &keys[1]]),
        err("CROSSSLOT Keys in request don't hash to the same slot")
    );
    assert_eq!(
        c.cmd_str(&["RENAME", "{user1}.a", "{user2}.b"]),
        err("CROSSSLOT Keys in request don't hash to the same slot")
    );
    assert_eq!(c.cmd_str(&["SET", "{user1}.a", "1"]), ok());
    assert_eq!(c.cmd_str(&["RENAME", "{user1}.a", "{user1}.b"]), ok());
    assert_eq!(c.cmd_str(&["GET", "{user1}.b"]), bulk("1"));

    // Hash-tagged MULTI/EXEC runs on the tag's node.
    assert_eq!(c.cmd_str(&["MULTI"]), ok());
    assert_eq!(
        c.cmd_str(&["INCR", "{acct}.n"]),
        Frame::Simple("QUEUED".into())
    );
    assert_eq!(
        c.cmd_str(&["SET", "{acct}.s", "x"]),
        Frame::Simple("QUEUED".into())
    );
    assert_eq!(c.cmd_str(&["EXEC"]), Frame::Array(vec![int(1), ok()]));
    // EVAL with keys of one slot.
    assert_eq!(
        c.cmd_str(&[
            "EVAL",
            "redis.call('SET', KEYS[1], ARGV[1]); return redis.call('GET', KEYS[2])",
            "2",
            "{acct}.t",
            "{acct}.s",
            "y"
        ]),
        bulk("x")
    );
    assert_eq!(c.cmd_str(&["GET", "{acct}.t"]), bulk("y"));
    assert_eq!(
        c.cmd_str(&["EVAL", "return 1", "2", "{a}1", "{b}2"]),
        err("CROSSSLOT Keys in request don't hash to the same slot")
    );

    // Keyspace commands reach every primary.
    for (i, k) in keys.iter().enumerate() {
        assert_eq!(c.cmd_str(&["SET", k, &format!("v{i}")]), ok());
    }
    let dbsize = match c.cmd_str(&["DBSIZE"]) {
        Frame::Integer(n) => n,
        other => panic!("DBSIZE: {other:?}"),
    };
    let direct: i64 = primaries
        .iter()
        .map(|&p| match cluster.nodes[p].client().cmd_str(&["DBSIZE"]) {
            Frame::Integer(n) => n,
            other => panic!("{other:?}"),
        })
        .sum();
    assert_eq!(dbsize, direct);
    let Frame::Array(found) = c.cmd_str(&["KEYS", "k-*"]) else {
        panic!("KEYS");
    };
    assert_eq!(found.len(), 3, "{found:?}");

    // The same through the redis crate, not in cluster mode.
    let client = redis::Client::open(format!("redis://{}/", shardis.addr)).expect("url");
    let mut con = client.get_connection().expect("connect");
    let pairs: Vec<(String, String)> = (0..50)
        .map(|i| (format!("crate:{i}"), format!("value {i}")))
        .collect();
    redis::cmd("MSET")
        .arg(&pairs)
        .query::<()>(&mut con)
        .expect("MSET");
    let names: Vec<&String> = pairs.iter().map(|(k, _)| k).collect();
    let got: Vec<String> = redis::cmd("MGET")
        .arg(&names)
        .query(&mut con)
        .expect("MGET");
    assert_eq!(
        got,
        pairs.iter().map(|(_, v)| v.clone()).collect::<Vec<_>>()
    );
    let (n, s): (i64, String) = redis::pipe()
        .atomic()
        .cmd("INCRBY")
        .arg("{crate}.n")
        .arg(5)
        .cmd("GET")
        .arg("{crate}.n")
        .query(&mut con)
        .expect("MULTI/EXEC");
    assert_eq!((n, s.as_str()), (5, "5"));
    let script = redis::Script::new("return redis.call('INCRBY', KEYS[1], ARGV[1])");
    let v: i64 = script
        .key("{crate}.n")
        .arg(2)
        .invoke(&mut con)
        .expect("EVALSHA/EVAL");
    assert_eq!(v, 7);

    // /status and INFO show the slot map, per node.
    // Replicas show once they have synced (the map is fetched every second here).
    let s = wait_for(Duration::from_secs(10), "replicas in the slot map", || {
        let s = status(&shardis);
        let map = s["cluster"]["slot_map"].as_array()?;
        map.iter()
            .all(|m| m["replicas"].as_array().map(Vec::len) == Some(1))
            .then_some(s)
    });
    let map = s["cluster"]["slot_map"].as_array().expect("slot_map");
    let slots: u64 = map
        .iter()
        .map(|m| m["slot_count"].as_u64().unwrap_or(0))
        .sum();
    assert_eq!(slots, 16384, "{s:#}");
    assert_eq!(s["backends"].as_array().map(Vec::len), Some(6), "{s:#}");
    let Frame::Bulk(info) = c.cmd_str(&["INFO", "cluster"]) else {
        panic!("INFO cluster");
    };
    let info = String::from_utf8_lossy(&info);
    assert!(info.contains("cluster_enabled:0"), "{info}");
    assert!(info.contains("shard0:primary=127.0.0.1:"), "{info}");
}
