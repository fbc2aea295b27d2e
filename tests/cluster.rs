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
    // EVAL with keys of different slots runs in the proxy (`cross_shard = "run"`, the
    // default), each call on its key's node; `cross_shard = "refuse"` keeps CROSSSLOT.
    let across = "redis.call('SET', KEYS[1], ARGV[1]) redis.call('SET', KEYS[2], ARGV[2]) \
        return redis.call('GET', KEYS[1]) .. redis.call('GET', KEYS[2])";
    assert_ne!(keyslot(&cluster, "{a}1"), keyslot(&cluster, "{b}2"));
    assert_eq!(
        c.cmd_str(&["EVAL", across, "2", "{a}1", "{b}2", "p", "q"]),
        bulk("pq")
    );
    for (k, v) in [("{a}1", "p"), ("{b}2", "q")] {
        let node = cluster.primary_of(keyslot(&cluster, k));
        assert_eq!(cluster.nodes[node].client().cmd_str(&["GET", k]), bulk(v));
    }
    let refusing = Shardis::start(&cluster.shardis_config("").replacen(
        "[server]\n",
        "[server]\ncross_shard = \"refuse\"\n",
        1,
    ));
    assert_eq!(
        refusing
            .client()
            .cmd_str(&["EVAL", "return 1", "2", "{a}1", "{b}2"]),
        err("CROSSSLOT Keys in request don't hash to the same slot")
    );
    drop(refusing);

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
    let mut cursor = "0".to_string();
    let mut scanned = Vec::new();
    loop {
        let Frame::Array(reply) = c.cmd_str(&["SCAN", &cursor, "MATCH", "k-*", "COUNT", "100"])
        else {
            panic!("SCAN");
        };
        let (Frame::Bulk(next), Frame::Array(batch)) = (&reply[0], &reply[1]) else {
            panic!("SCAN reply {reply:?}");
        };
        scanned.extend(batch.iter().cloned());
        cursor = String::from_utf8_lossy(next).into_owned();
        if cursor == "0" {
            break;
        }
    }
    assert_eq!(scanned.len(), 3, "{scanned:?}");
    assert!(matches!(c.cmd_str(&["RANDOMKEY"]), Frame::Bulk(_)));

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

/// Keys and the last value written to each that was acknowledged.
type Acked = Vec<(String, u64)>;

/// What a [`Load`] saw.
#[derive(Default)]
struct Seen {
    ok: u64,
    /// (when, what) of every error reply.
    errors: Vec<(Instant, String)>,
    /// (when, what) of every read that did not find the last acknowledged write.
    wrong: Vec<(Instant, String)>,
}

/// A steady read/write load of known values through shardis: each thread owns its keys,
/// sets them to increasing values and reads them back (GET, and MGET over several slots),
/// so every acknowledged write has a known value.
struct Load {
    stop: Arc<AtomicBool>,
    ops: Arc<AtomicU64>,
    threads: Vec<std::thread::JoinHandle<(Seen, Acked)>>,
}

impl Load {
    fn start(shardis: &Shardis, threads: usize, keys: usize) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let ops = Arc::new(AtomicU64::new(0));
        let threads = (0..threads)
            .map(|t| {
                let (stop, ops, addr) = (stop.clone(), ops.clone(), shardis.addr.to_string());
                std::thread::spawn(move || load_thread(t, &addr, keys, &stop, &ops))
            })
            .collect();
        Load { stop, ops, threads }
    }

    /// Requests answered so far.
    fn ops(&self) -> u64 {
        self.ops.load(Ordering::Relaxed)
    }

    /// Stops the load; what it saw, and the last acknowledged value of every key.
    fn finish(self) -> (Seen, Acked) {
        self.stop.store(true, Ordering::Relaxed);
        let mut seen = Seen::default();
        let mut acked = Vec::new();
        for t in self.threads {
            let (s, a) = t.join().expect("load thread");
            seen.ok += s.ok;
            seen.errors.extend(s.errors);
            seen.wrong.extend(s.wrong);
            acked.extend(a);
        }
        seen.errors.sort_by_key(|(at, _)| *at);
        seen.wrong.sort_by_key(|(at, _)| *at);
        (seen, acked)
    }
}

/// A key whose value is not known (a write that failed may or may not have happened).
const UNKNOWN: u64 = u64::MAX;

fn load_thread(
    t: usize,
    addr: &str,
    keys: usize,
    stop: &AtomicBool,
    ops: &AtomicU64,
) -> (Seen, Acked) {
    let mut c = Client::connect(addr);
    let names: Vec<String> = (0..keys).map(|i| format!("load:{t}:{i}")).collect();
    // 0: never written (a GET must find nothing).
    let mut acked = vec![0u64; keys];
    let mut seen = Seen::default();
    let mut n = 0u64;
    while !stop.load(Ordering::Relaxed) {
        n += 1;
        let i = (n as usize * 7919) % keys;
        match c.cmd_str(&["SET", &names[i], &n.to_string()]) {
            Frame::Simple(s) if s == "OK" => {
                acked[i] = n;
                seen.ok += 1;
            }
            other => {
                // It may or may not have happened: not checked until written again.
                acked[i] = UNKNOWN;
                seen.errors
                    .push((Instant::now(), format!("SET {}: {other:?}", names[i])));
            }
        }
        let j = (n as usize * 104_729) % keys;
        let picks: Vec<usize> = if n.is_multiple_of(4) {
            (0..5).map(|m| (j + m * 31) % keys).collect()
        } else {
            vec![j]
        };
        let mut args = vec![if picks.len() == 1 { "GET" } else { "MGET" }];
        args.extend(picks.iter().map(|&p| names[p].as_str()));
        let got = match c.cmd_str(&args) {
            Frame::Array(values) if picks.len() > 1 => values,
            Frame::Bulk(b) if picks.len() == 1 => vec![Frame::Bulk(b)],
            Frame::Null if picks.len() == 1 => vec![Frame::Null],
            other => {
                seen.errors
                    .push((Instant::now(), format!("{args:?}: {other:?}")));
                continue;
            }
        };
        if let Some(e) = got.iter().find(|v| matches!(v, Frame::Error(_))) {
            // A part of a split MGET failed.
            seen.errors
                .push((Instant::now(), format!("{args:?}: {e:?}")));
            continue;
        }
        seen.ok += 1;
        for (&p, value) in picks.iter().zip(&got) {
            let want = match acked[p] {
                UNKNOWN => continue,
                0 => Frame::Null,
                v => bulk(v.to_string()),
            };
            if *value != want {
                let what = format!("{}: {value:?}, want {want:?}", names[p]);
                seen.wrong.push((Instant::now(), what));
                acked[p] = UNKNOWN;
            }
        }
        ops.fetch_add(1, Ordering::Relaxed);
    }
    let acked = names
        .into_iter()
        .zip(acked)
        .filter(|&(_, v)| v > 0 && v != UNKNOWN)
        .collect();
    (seen, acked)
}

/// Every acknowledged write reads back through shardis.
fn assert_reads_back(shardis: &Shardis, acked: &[(String, u64)]) {
    let mut c = shardis.client();
    for chunk in acked.chunks(200) {
        let mut args = vec!["MGET"];
        args.extend(chunk.iter().map(|(k, _)| k.as_str()));
        let want: Vec<Frame> = chunk.iter().map(|(_, v)| bulk(v.to_string())).collect();
        assert_eq!(c.cmd_str(&args), Frame::Array(want));
    }
}

/// Writes `n` keys `fill:i` = `i` with MSET through shardis, so slots hold keys to migrate.
fn fill(shardis: &Shardis, n: usize) {
    let mut c = shardis.client();
    let all: Vec<(String, String)> = (0..n)
        .map(|i| (format!("fill:{i}"), i.to_string()))
        .collect();
    for chunk in all.chunks(1000) {
        let mut args = vec!["MSET"];
        for (k, v) in chunk {
            args.extend([k.as_str(), v.as_str()]);
        }
        assert_eq!(c.cmd_str(&args), ok());
    }
}

fn assert_filled(shardis: &Shardis, n: usize) {
    let mut c = shardis.client();
    let all: Vec<String> = (0..n).map(|i| format!("fill:{i}")).collect();
    for (ci, chunk) in all.chunks(1000).enumerate() {
        let mut args = vec!["MGET"];
        args.extend(chunk.iter().map(String::as_str));
        let want: Vec<Frame> = (0..chunk.len())
            .map(|i| bulk((ci * 1000 + i).to_string()))
            .collect();
        assert_eq!(c.cmd_str(&args), Frame::Array(want));
    }
}

fn redirections(shardis: &Shardis, kind: &str) -> u64 {
    let s = status(shardis);
    s["cluster"]["redirections"][kind].as_u64().unwrap_or(0)
}

#[test]
fn resharding_1000_slots_under_load_gives_no_errors_and_loses_no_writes() {
    let cluster = RedisCluster::start();
    let shardis = start(&cluster, "");
    const FILLED: usize = 30_000;
    fill(&shardis, FILLED);
    let load = Load::start(&shardis, 4, 500);
    wait_for(Duration::from_secs(10), "the load to run", || {
        (load.ops() > 200).then_some(())
    });
    let primaries = cluster.primaries();
    let (from, to) = (primaries[0], primaries[1]);
    let before = load.ops();
    let started = Instant::now();
    cluster.reshard(from, to, 1000);
    let took = started.elapsed();
    cluster.wait_settled();
    let during = load.ops() - before;
    // Let the load run on the new map for a moment.
    let after = load.ops();
    wait_for(Duration::from_secs(10), "more load", || {
        (load.ops() > after + 200).then_some(())
    });
    let (seen, acked) = load.finish();
    let (moved, ask) = (
        redirections(&shardis, "moved"),
        redirections(&shardis, "ask"),
    );
    println!(
        "reshard of 1000 slots took {took:?}; load: {} requests answered ({during} rounds \
         during the reshard), {} errors; redirections followed: {moved} MOVED, {ask} ASK",
        seen.ok,
        seen.errors.len()
    );
    assert!(
        seen.errors.is_empty() && seen.wrong.is_empty(),
        "{} errors, first: {:?}; {} wrong reads, first: {:?}",
        seen.errors.len(),
        &seen.errors[..seen.errors.len().min(5)],
        seen.wrong.len(),
        &seen.wrong[..seen.wrong.len().min(5)]
    );
    assert!(moved > 0, "the load never met a moved slot");
    assert_reads_back(&shardis, &acked);
    assert_filled(&shardis, FILLED);
    // The slot map shows the move.
    let want = cluster.slot_count(to);
    let addr = cluster.nodes[to].addr();
    let s = wait_for(Duration::from_secs(5), "the new slot map", || {
        let s = status(&shardis);
        let map = s["cluster"]["slot_map"].as_array()?;
        map.iter()
            .any(|m| m["primary"] == addr.as_str() && m["slot_count"] == want)
            .then_some(s)
    });
    assert!(
        s["cluster"]["refreshes"]["ok"].as_u64().unwrap_or(0) > 1,
        "{s:#}"
    );
}

/// `CLUSTER SETSLOT slot ...` on node `i`.
fn setslot(cluster: &RedisCluster, i: usize, slot: u16, args: &[&str]) {
    let slot = slot.to_string();
    let mut all = vec!["CLUSTER", "SETSLOT", slot.as_str()];
    all.extend(args);
    assert_eq!(cluster.nodes[i].client().cmd_str(&all), ok(), "{all:?}");
}

fn migrate(cluster: &RedisCluster, from: usize, to: usize, key: &str) {
    let port = cluster.nodes[to].port.to_string();
    let reply = cluster.nodes[from].client().cmd_str(&[
        "MIGRATE",
        "127.0.0.1",
        &port,
        "",
        "0",
        "5000",
        "KEYS",
        key,
    ]);
    assert_eq!(reply, ok(), "MIGRATE {key}");
}

#[test]
fn ask_and_tryagain_during_a_slot_migration_never_reach_the_client() {
    let cluster = RedisCluster::start();
    let shardis = start(&cluster, "");
    let mut c = shardis.client();
    let primaries = cluster.primaries();
    let (a, b) = (primaries[0], primaries[1]);
    // Keys of one slot, owned by `a`.
    let tag = key_on(&cluster, a, "mig");
    let slot = keyslot(&cluster, &tag);
    let key = |n: u32| format!("{{{tag}}}.{n}");
    for n in 1..=2 {
        assert_eq!(c.cmd_str(&["SET", &key(n), &format!("v{n}")]), ok());
    }
    let (ida, idb) = (cluster.nodes[a].id(), cluster.nodes[b].id());
    setslot(&cluster, b, slot, &["IMPORTING", &ida]);
    setslot(&cluster, a, slot, &["MIGRATING", &idb]);
    migrate(&cluster, a, b, &key(1));

    // Moved already: `a` answers ASK, shardis asks `b` with ASKING.
    assert_eq!(c.cmd_str(&["GET", &key(1)]), bulk("v1"));
    // Not moved yet: `a` serves it.
    assert_eq!(c.cmd_str(&["GET", &key(2)]), bulk("v2"));
    // A new key of a migrating slot is created on the target.
    assert_eq!(c.cmd_str(&["SET", &key(3), "v3"]), ok());
    let mut direct = cluster.nodes[b].client();
    assert_eq!(direct.cmd_str(&["ASKING"]), ok());
    assert_eq!(direct.cmd_str(&["GET", &key(3)]), bulk("v3"));
    assert!(redirections(&shardis, "ask") >= 2);
    // ASK leaves the map as it was: the slot is still `a`'s.
    let s = status(&shardis);
    let of_a = s["cluster"]["slot_map"]
        .as_array()
        .expect("slot_map")
        .iter()
        .find(|m| m["primary"] == cluster.nodes[a].addr().as_str())
        .map(|m| m["slot_count"].clone())
        .expect("a in the map");
    assert_eq!(of_a, cluster.slot_count(a), "{s:#}");
    assert_eq!(redirections(&shardis, "moved"), 0);

    // Keys split between the nodes: `a` answers TRYAGAIN until the migration ends; shardis
    // waits it out while another thread finishes the migration.
    let finisher = {
        let (from, to) = (cluster.nodes[a].addr(), cluster.nodes[b].port);
        let k2 = key(2);
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(300));
            let mut src = Client::connect(&from);
            let port = to.to_string();
            let reply = src.cmd_str(&["MIGRATE", "127.0.0.1", &port, "", "0", "5000", "KEYS", &k2]);
            assert_eq!(reply, ok());
        })
    };
    assert_eq!(
        c.cmd_str(&["MGET", &key(1), &key(2), &key(3)]),
        Frame::Array(vec![bulk("v1"), bulk("v2"), bulk("v3")])
    );
    finisher.join().expect("finisher");
    assert!(redirections(&shardis, "tryagain") > 0);

    // The end of the migration: the slot is `b`'s, and a MOVED teaches shardis so.
    for &i in &primaries {
        setslot(&cluster, i, slot, &["NODE", &idb]);
    }
    let moved = redirections(&shardis, "moved");
    for n in 1..=3 {
        assert_eq!(c.cmd_str(&["GET", &key(n)]), bulk(format!("v{n}")));
    }
    assert!(redirections(&shardis, "moved") > moved);
    let addr = cluster.nodes[b].addr();
    wait_for(Duration::from_secs(5), "the slot in b's ranges", || {
        let s = status(&shardis);
        let text = s["cluster"]["slot_map"]
            .as_array()?
            .iter()
            .find(|m| m["primary"] == addr.as_str())?["slots"]
            .to_string();
        text.contains(&slot.to_string()).then_some(())
    });
}

#[test]
fn killing_a_primary_under_load_recovers_after_promotion_without_restart() {
    let cluster = RedisCluster::start();
    let mut cluster = cluster;
    let shardis = start(&cluster, "");
    let load = Load::start(&shardis, 4, 300);
    wait_for(Duration::from_secs(10), "the load to run", || {
        (load.ops() > 200).then_some(())
    });
    let victim = cluster.primaries()[0];
    let victim_addr = cluster.nodes[victim].addr();
    let killed = Instant::now();
    cluster.kill(victim);
    // The cluster promotes the victim's replica.
    let promoted = wait_for(Duration::from_secs(30), "a promotion", || {
        let primaries = cluster.primaries();
        (primaries.len() == 3
            && !primaries.contains(&victim)
            && cluster
                .nodes
                .iter()
                .filter(|n| n.alive())
                .all(|n| n.info_field("cluster_state") == "ok"))
        .then(|| killed.elapsed())
    });
    // Long enough for every key to be written again after the promotion (writes acknowledged
    // by the victim just before it died may be lost: replication is asynchronous).
    let after = load.ops();
    wait_for(Duration::from_secs(20), "load after the promotion", || {
        (load.ops() > after + 2000).then_some(())
    });
    let (seen, acked) = load.finish();
    let window = match (seen.errors.first(), seen.errors.last()) {
        (Some((first, _)), Some((last, _))) => {
            Some((first.duration_since(killed), last.duration_since(killed)))
        }
        _ => None,
    };
    println!(
        "failover: cluster promoted a replica {promoted:?} after the kill \
         (cluster-node-timeout {} ms); the load saw {} errors, from {:?} to {:?} after the \
         kill; {} requests answered; {} reads missed a write the old primary had \
         acknowledged but not replicated",
        common::redis_cluster::NODE_TIMEOUT_MS,
        seen.errors.len(),
        window.map(|w| w.0),
        window.map(|w| w.1),
        seen.ok,
        seen.wrong.len()
    );
    for (at, what) in seen.wrong.iter().take(8) {
        println!(
            "wrong read {:?} after the kill: {what}",
            at.duration_since(killed)
        );
    }
    if let (Some(first), Some(last)) = (seen.errors.first(), seen.errors.last()) {
        println!("first error: {}\nlast error: {}", first.1, last.1);
    }
    // Errors only around the failover, none once the cluster was whole again.
    if let Some((_, last)) = window {
        assert!(
            last <= promoted + Duration::from_secs(2),
            "errors went on {last:?} after the kill, the promotion took {promoted:?}"
        );
    }
    assert_reads_back(&shardis, &acked);
    // The slot map has the promoted replica and not the victim.
    let s = wait_for(Duration::from_secs(5), "the map without the victim", || {
        let s = status(&shardis);
        let map = s["cluster"]["slot_map"].as_array()?;
        (map.len() == 3 && map.iter().all(|m| m["primary"] != victim_addr.as_str())).then_some(s)
    });
    let total: u64 = s["cluster"]["slot_map"]
        .as_array()
        .expect("slot_map")
        .iter()
        .map(|m| m["slot_count"].as_u64().unwrap_or(0))
        .sum();
    assert_eq!(total, 16384, "{s:#}");
}

#[test]
fn a_new_primary_added_and_rebalanced_shows_in_the_slot_map_and_serves_its_keys() {
    let mut cluster = RedisCluster::start();
    let shardis = start(&cluster, "");
    const FILLED: usize = 5_000;
    fill(&shardis, FILLED);
    let load = Load::start(&shardis, 2, 300);
    let new = cluster.add_node();
    cluster.rebalance();
    cluster.wait_settled();
    let (seen, acked) = load.finish();
    println!(
        "add-node + rebalance: {} slots moved to the new node; load: {} answered, {} errors",
        cluster.slot_count(new),
        seen.ok,
        seen.errors.len()
    );
    assert!(
        seen.errors.is_empty() && seen.wrong.is_empty(),
        "errors: {:?}; wrong reads: {:?}",
        &seen.errors[..seen.errors.len().min(5)],
        &seen.wrong[..seen.wrong.len().min(5)]
    );
    let addr = cluster.nodes[new].addr();
    let want = cluster.slot_count(new);
    assert!(want > 0);
    wait_for(
        Duration::from_secs(10),
        "the new primary in the map",
        || {
            let s = status(&shardis);
            let map = s["cluster"]["slot_map"].as_array()?;
            (map.len() == 4
                && map
                    .iter()
                    .any(|m| m["primary"] == addr.as_str() && m["slot_count"] == want))
            .then_some(())
        },
    );
    assert_reads_back(&shardis, &acked);
    assert_filled(&shardis, FILLED);
    // A key of the new node's slots is stored there.
    let key = key_on(&cluster, new, "fresh");
    let mut c = shardis.client();
    assert_eq!(c.cmd_str(&["SET", &key, "here"]), ok());
    assert_eq!(c.cmd_str(&["GET", &key]), bulk("here"));
    assert_eq!(
        cluster.nodes[new].client().cmd_str(&["GET", &key]),
        bulk("here")
    );
    // Its metrics carry its role.
    let metrics = http_get(shardis.admin, "/metrics").body;
    let series = format!("shardis_backend_up{{pool=\"main\",backend=\"{addr}\",role=\"primary\"}}");
    assert_eq!(metric(&metrics, &series), Some(1.0), "{metrics}");
}

/// `calls` of `cmdstat_<name>` in a node's INFO commandstats.
fn calls(node: &common::redis_cluster::Node, name: &str) -> u64 {
    let Frame::Bulk(text) = node.client().cmd_str(&["INFO", "commandstats"]) else {
        panic!("INFO commandstats");
    };
    let text = String::from_utf8_lossy(&text).into_owned();
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("cmdstat_{name}:calls=")))
        .and_then(|rest| rest.split(',').next()?.parse().ok())
        .unwrap_or(0)
}

/// The replica of primary `p` (by the cluster's own view).
fn replica_of(cluster: &RedisCluster, p: usize) -> usize {
    let id = cluster.nodes[p].id();
    (0..cluster.nodes.len())
        .find(|&i| {
            i != p && {
                let Frame::Bulk(t) = cluster.nodes[i].client().cmd_str(&["CLUSTER", "NODES"])
                else {
                    return false;
                };
                String::from_utf8_lossy(&t)
                    .lines()
                    .any(|l| l.contains("myself") && l.contains(&format!("slave {id}")))
            }
        })
        .expect("a replica")
}

#[test]
fn read_from_replica_sends_reads_to_replicas_with_readonly_and_writes_to_primaries() {
    let cluster = RedisCluster::start();
    let shardis = start(&cluster, "read_from = \"replica\"");
    wait_for(Duration::from_secs(10), "replicas in the slot map", || {
        let s = status(&shardis);
        let map = s["cluster"]["slot_map"].as_array()?;
        map.iter()
            .all(|m| m["replicas"].as_array().map(Vec::len) == Some(1))
            .then_some(())
    });
    let p = cluster.primaries()[0];
    let r = replica_of(&cluster, p);
    let key = key_on(&cluster, p, "ro");
    let mut c = shardis.client();
    let (gets_p, gets_r) = (
        calls(&cluster.nodes[p], "get"),
        calls(&cluster.nodes[r], "get"),
    );
    let sets_p = calls(&cluster.nodes[p], "set");
    assert_eq!(c.cmd_str(&["SET", &key, "x"]), ok());
    // Replication is asynchronous: the replica has it a moment later.
    wait_for(Duration::from_secs(5), "the value on the replica", || {
        (c.cmd_str(&["GET", &key]) == bulk("x")).then_some(())
    });
    for _ in 0..10 {
        assert_eq!(c.cmd_str(&["GET", &key]), bulk("x"));
    }
    assert_eq!(
        calls(&cluster.nodes[p], "get"),
        gets_p,
        "no GET on the primary"
    );
    assert!(calls(&cluster.nodes[r], "get") >= gets_r + 10);
    // (The replica runs the SET too, from the replication stream.)
    assert_eq!(
        calls(&cluster.nodes[p], "set"),
        sets_p + 1,
        "writes go to the primary"
    );
    assert!(
        calls(&cluster.nodes[r], "readonly") >= 1,
        "READONLY on replica links"
    );
    // Multi-key reads split by slot go to replicas too.
    let other = key_on(&cluster, cluster.primaries()[1], "ro");
    assert_eq!(c.cmd_str(&["SET", &other, "y"]), ok());
    wait_for(Duration::from_secs(5), "both values", || {
        (c.cmd_str(&["MGET", &key, &other]) == Frame::Array(vec![bulk("x"), bulk("y")]))
            .then_some(())
    });
    assert_eq!(calls(&cluster.nodes[p], "mget"), 0);
}

#[test]
fn sharded_and_plain_pub_sub_reach_subscribers_through_the_slot_owner() {
    let cluster = RedisCluster::start();
    let shardis = start(&cluster, "");
    let mut sub = shardis.client();
    let mut publisher = shardis.client();
    let channels: Vec<String> = cluster
        .primaries()
        .iter()
        .map(|&p| key_on(&cluster, p, "news"))
        .collect();
    for (i, ch) in channels.iter().enumerate() {
        assert_eq!(
            sub.cmd_str(&["SSUBSCRIBE", ch]),
            Frame::Array(vec![
                bulk("ssubscribe"),
                bulk(ch.as_str()),
                int(i as i64 + 1)
            ])
        );
    }
    assert_eq!(
        sub.cmd_str(&["SUBSCRIBE", "plain"]),
        Frame::Array(vec![bulk("subscribe"), bulk("plain"), int(1)])
    );
    for ch in &channels {
        assert_eq!(publisher.cmd_str(&["SPUBLISH", ch, "hello"]), int(1));
        assert_eq!(
            sub.read_reply(),
            Frame::Array(vec![bulk("smessage"), bulk(ch.as_str()), bulk("hello")])
        );
    }
    assert_eq!(publisher.cmd_str(&["PUBLISH", "plain", "hi"]), int(1));
    assert_eq!(
        sub.read_reply(),
        Frame::Array(vec![bulk("message"), bulk("plain"), bulk("hi")])
    );
}

/// Runs `program args` and asserts it succeeded; returns stdout.
fn run_ok(program: &str, args: &[&str], env: &[(&str, &std::path::Path)]) -> String {
    let mut cmd = std::process::Command::new(program);
    cmd.args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("run {program}: {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{program} failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// What the issue's check runs: redis-cli, redis-py and Node.js clients, none in cluster
/// mode, against a 3-primary, 3-replica cluster through shardis: GET/SET, MGET/MSET across
/// slots, a hash-tagged MULTI/EXEC and EVAL.
#[test]
fn real_clients_in_standalone_mode_work_through_shardis() {
    let cluster = RedisCluster::start();
    let shardis = start(&cluster, "");
    let port = shardis.addr.port().to_string();
    let keys: Vec<String> = cluster
        .primaries()
        .iter()
        .map(|&p| key_on(&cluster, p, "rc"))
        .collect();

    // redis-cli, one command per invocation, as a shell script would.
    let cli = |args: &[&str]| {
        let mut all = vec!["-p", port.as_str(), "--no-raw"];
        all.extend_from_slice(args);
        run_ok("redis-cli", &all, &[])
    };
    assert_eq!(cli(&["SET", &keys[0], "cli0"]).trim(), "OK");
    assert_eq!(
        cli(&["MSET", &keys[1], "cli1", &keys[2], "cli2"]).trim(),
        "OK"
    );
    assert_eq!(
        cli(&["MGET", &keys[0], &keys[1], &keys[2]]).trim(),
        "1) \"cli0\"\n2) \"cli1\"\n3) \"cli2\""
    );
    assert_eq!(
        cli(&[
            "EVAL",
            "return redis.call('INCRBY', KEYS[1], ARGV[1])",
            "1",
            "{cli}.n",
            "5"
        ])
        .trim(),
        "(integer) 5"
    );
    // MULTI/EXEC in one redis-cli session (stdin), on hash-tagged keys.
    let mut child = std::process::Command::new("redis-cli")
        .args(["-p", &port])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("redis-cli");
    std::io::Write::write_all(
        child.stdin.as_mut().expect("stdin"),
        b"MULTI\nINCR {cli}.n\nSET {cli}.s x\nEXEC\n",
    )
    .expect("write");
    let out = child.wait_with_output().expect("redis-cli");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("QUEUED") && text.lines().any(|l| l.trim() == "6"),
        "{text}"
    );

    // redis-py with its defaults (RESP2) and with RESP3.
    let has_redis_py = std::process::Command::new("python3")
        .args(["-c", "import redis"])
        .status()
        .is_ok_and(|s| s.success());
    if has_redis_py {
        let script = r#"
import sys, redis
port, k0, k1, k2 = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
for protocol in (2, 3):
    r = redis.Redis(host="127.0.0.1", port=port, protocol=protocol)
    r.set(k0, "py%d" % protocol)
    assert r.get(k0) == b"py%d" % protocol
    r.mset({k1: "a", k2: "b"})
    assert r.mget([k0, k1, k2, "missing"]) == [b"py%d" % protocol, b"a", b"b", None]
    p = r.pipeline(transaction=True)
    p.incr("{py}.n")
    p.set("{py}.s", "x")
    assert p.execute() == [protocol - 1, True]
    assert r.eval("return redis.call('GET', KEYS[1])", 1, "{py}.s") == b"x"
    sha = r.script_load("return ARGV[1]")
    assert r.evalsha(sha, 0, "z") == b"z"
    assert sorted(r.scan_iter(match="rc-*")) == sorted([k0.encode(), k1.encode(), k2.encode()])
print("ok")
"#;
        let out = run_ok(
            "python3",
            &["-c", script, &port, &keys[0], &keys[1], &keys[2]],
            &[],
        );
        assert_eq!(out.trim(), "ok");
    } else {
        eprintln!("skipped redis-py: not installed (python3 -c 'import redis')");
    }

    // ioredis 5 and node-redis 6 (HELLO 3), in their standalone modes.
    if let Some(modules) = common::ops::node_modules() {
        let script = r#"
const Redis = require("ioredis");
const { createClient } = require("redis");
(async () => {
  const [port, k0, k1, k2] = [Number(process.argv[1]), process.argv[2], process.argv[3], process.argv[4]];
  const io = new Redis({ host: "127.0.0.1", port, maxRetriesPerRequest: 0 });
  await io.mset(k0, "io0", k1, "io1", k2, "io2");
  const got = await io.mget(k0, k1, k2);
  if (got.join() !== "io0,io1,io2") throw new Error("ioredis MGET " + got);
  const tx = await io.multi().incr("{io}.n").set("{io}.s", "x").exec();
  if (tx[0][1] !== 1 || tx[1][1] !== "OK") throw new Error("ioredis EXEC " + JSON.stringify(tx));
  if ((await io.eval("return redis.call('GET', KEYS[1])", 1, "{io}.s")) !== "x") throw new Error("ioredis EVAL");
  io.disconnect();
  const nr = createClient({ socket: { host: "127.0.0.1", port, reconnectStrategy: false } });
  nr.on("error", () => {});
  await nr.connect();
  await nr.set(k0, "nr0");
  if ((await nr.get(k0)) !== "nr0") throw new Error("node-redis GET");
  await nr.mSet([[k1, "nr1"], [k2, "nr2"]]);
  const m = await nr.mGet([k0, k1, k2]);
  if (m.join() !== "nr0,nr1,nr2") throw new Error("node-redis MGET " + m);
  const r = await nr.multi().incr("{nr}.n").set("{nr}.s", "y").exec();
  if (r[0] !== 1 || r[1] !== "OK") throw new Error("node-redis EXEC " + JSON.stringify(r));
  const e = await nr.eval("return redis.call('GET', KEYS[1])", { keys: ["{nr}.s"] });
  if (e !== "y") throw new Error("node-redis EVAL " + e);
  await nr.quit();
  console.log("ok");
})().catch((e) => { console.error(e); process.exit(1); });
"#;
        let out = run_ok(
            "node",
            &["-e", script, &port, &keys[0], &keys[1], &keys[2]],
            &[("NODE_PATH", modules.as_path())],
        );
        assert_eq!(out.trim(), "ok");
    }
}
