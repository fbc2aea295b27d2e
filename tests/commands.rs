//! Single-key commands of every basic type through shardis over four redis-servers, checking
//! each exact reply, then checking on the backends directly that every key was stored on the
//! one backend `shardis route` names.

mod common;

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::{Client, Cluster, Frame, bulk, bulks, err, int, ok};

/// Runs `args` through `c` and asserts the exact reply.
#[track_caller]
fn check(c: &mut Client, args: &[&str], expected: Frame) {
    assert_eq!(c.cmd_str(args), expected, "{args:?}");
}

/// An integer reply within `range` (TTLs tick while the test runs).
#[track_caller]
fn check_between(c: &mut Client, args: &[&str], range: std::ops::RangeInclusive<i64>) {
    match c.cmd_str(args) {
        Frame::Integer(n) if range.contains(&n) => {}
        other => panic!("{args:?}: expected an integer in {range:?}, got {other:?}"),
    }
}

/// Every key is on exactly one backend, the one `shardis route` names; and the keys together
/// use more than one backend (so the test really exercised routing).
fn check_placement(cluster: &Cluster, keys: &[&str]) {
    let routed = cluster.route(keys);
    for (key, &expected) in keys.iter().zip(&routed) {
        assert_eq!(
            cluster.holder(key.as_bytes()),
            expected,
            "{key} is not where `shardis route` says"
        );
    }
    let mut used = routed.clone();
    used.sort_unstable();
    used.dedup();
    assert!(
        used.len() > 1,
        "all keys {keys:?} landed on one backend; pick other names"
    );
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs()
}

#[test]
fn set_options() {
    let cluster = Cluster::start(4);
    let mut c = cluster.client();
    check(&mut c, &["SET", "a:str", "v1"], ok());
    check(&mut c, &["GET", "a:str"], bulk("v1"));
    check(&mut c, &["SET", "a:str", "v2", "NX"], Frame::Null);
    check(&mut c, &["GET", "a:str"], bulk("v1"));
    check(&mut c, &["SET", "b:str", "v", "XX"], Frame::Null);
    check(&mut c, &["GET", "b:str"], Frame::Null);
    check(&mut c, &["SET", "b:str", "v", "NX"], ok());
    check(&mut c, &["SET", "a:str", "v3", "XX"], ok());
    check(&mut c, &["SET", "a:str", "v4", "GET"], bulk("v3"));
    check(&mut c, &["SET", "new:str", "v", "GET"], Frame::Null);
    check(&mut c, &["SET", "a:str", "v5", "EX", "100"], ok());
    check_between(&mut c, &["TTL", "a:str"], 95..=100);
    check(&mut c, &["SET", "a:str", "v6", "PX", "100000"], ok());
    check_between(&mut c, &["PTTL", "a:str"], 90_000..=100_000);
    check(&mut c, &["SET", "a:str", "v7", "KEEPTTL"], ok());
    check_between(&mut c, &["PTTL", "a:str"], 90_000..=100_000);
    check(&mut c, &["GET", "a:str"], bulk("v7"));
    check(&mut c, &["SET", "a:str", "v8"], ok());
    check(&mut c, &["TTL", "a:str"], int(-1));
    check(
        &mut c,
        &["SET", "a:str", "v", "EX", "0"],
        err("ERR invalid expire time in 'set' command"),
    );
    check(
        &mut c,
        &["SET", "a:str", "v", "NX", "XX"],
        err("ERR syntax error"),
    );
    check(&mut c, &["SETNX", "c:str", "1"], int(1));
    check(&mut c, &["SETNX", "c:str", "2"], int(0));
    check(&mut c, &["SETEX", "d:str", "100", "x"], ok());
    check_between(&mut c, &["TTL", "d:str"], 95..=100);
    check(&mut c, &["PSETEX", "e:str", "100000", "y"], ok());
    check_between(&mut c, &["PTTL", "e:str"], 90_000..=100_000);
    check(&mut c, &["GETSET", "c:str", "3"], bulk("1"));
    check(&mut c, &["GET", "c:str"], bulk("3"));
    check_placement(
        &cluster,
        &["a:str", "b:str", "new:str", "c:str", "d:str", "e:str"],
    );
}

#[test]
fn getex_getdel() {
    let cluster = Cluster::start(4);
    let mut c = cluster.client();
    check(&mut c, &["SET", "alpha:gx", "hello"], ok());
    check(&mut c, &["GETEX", "alpha:gx"], bulk("hello"));
    check(&mut c, &["TTL", "alpha:gx"], int(-1));
    check(&mut c, &["GETEX", "alpha:gx", "EX", "50"], bulk("hello"));
    check_between(&mut c, &["TTL", "alpha:gx"], 45..=50);
    check(&mut c, &["GETEX", "alpha:gx", "PERSIST"], bulk("hello"));
    check(&mut c, &["TTL", "alpha:gx"], int(-1));
    check(&mut c, &["GETEX", "alpha:gx", "PX", "60000"], bulk("hello"));
    check_between(&mut c, &["PTTL", "alpha:gx"], 50_000..=60_000);
    check(&mut c, &["GETEX", "missing:gx"], Frame::Null);
    check(&mut c, &["SET", "beta:gx", "bye"], ok());
    check(&mut c, &["GETDEL", "beta:gx"], bulk("bye"));
    check(&mut c, &["GET", "beta:gx"], Frame::Null);
    check(&mut c, &["GETDEL", "beta:gx"], Frame::Null);
    check(&mut c, &["SET", "beta:gx", "again"], ok());
    check_placement(&cluster, &["alpha:gx", "beta:gx"]);
}

#[test]
fn counters() {
    let cluster = Cluster::start(4);
    let mut c = cluster.client();
    check(&mut c, &["INCR", "alpha:n"], int(1));
    check(&mut c, &["INCRBY", "alpha:n", "10"], int(11));
    check(&mut c, &["DECR", "alpha:n"], int(10));
    check(&mut c, &["DECRBY", "alpha:n", "3"], int(7));
    check(&mut c, &["INCRBY", "alpha:n", "-10"], int(-3));
    check(&mut c, &["GET", "alpha:n"], bulk("-3"));
    check(&mut c, &["DECR", "beta:n"], int(-1));
    check(&mut c, &["SET", "3:n", "10.50"], ok());
    check(&mut c, &["INCRBYFLOAT", "3:n", "0.1"], bulk("10.6"));
    check(&mut c, &["INCRBYFLOAT", "3:n", "-5"], bulk("5.6"));
    check(&mut c, &["SET", "3:n", "5.0e3"], ok());
    check(&mut c, &["INCRBYFLOAT", "3:n", "2.0e2"], bulk("5200"));
    check(&mut c, &["INCRBYFLOAT", "4:n", "1.5"], bulk("1.5"));
    check(&mut c, &["SET", "5:n", "abc"], ok());
    check(
        &mut c,
        &["INCR", "5:n"],
        err("ERR value is not an integer or out of range"),
    );
    check(
        &mut c,
        &["INCRBYFLOAT", "5:n", "1"],
        err("ERR value is not a valid float"),
    );
    check(&mut c, &["SET", "6:n", "9223372036854775807"], ok());
    check(
        &mut c,
        &["INCR", "6:n"],
        err("ERR increment or decrement would overflow"),
    );
    check_placement(&cluster, &["alpha:n", "beta:n", "3:n", "4:n", "5:n", "6:n"]);
}

#[test]
fn append_ranges_strlen() {
    let cluster = Cluster::start(4);
    let mut c = cluster.client();
    check(&mut c, &["APPEND", "alpha:ap", "Hello"], int(5));
    check(&mut c, &["APPEND", "alpha:ap", " World"], int(11));
    check(&mut c, &["GET", "alpha:ap"], bulk("Hello World"));
    check(&mut c, &["STRLEN", "alpha:ap"], int(11));
    check(&mut c, &["STRLEN", "missing:ap"], int(0));
    check(&mut c, &["GETRANGE", "alpha:ap", "0", "4"], bulk("Hello"));
    check(&mut c, &["GETRANGE", "alpha:ap", "-5", "-1"], bulk("World"));
    check(&mut c, &["GETRANGE", "alpha:ap", "20", "30"], bulk(""));
    check(&mut c, &["SETRANGE", "alpha:ap", "6", "Redis"], int(11));
    check(&mut c, &["GET", "alpha:ap"], bulk("Hello Redis"));
    check(&mut c, &["SETRANGE", "beta:ap", "5", "x"], int(6));
    check(&mut c, &["GET", "beta:ap"], bulk(b"\0\0\0\0\0x"));
    check(&mut c, &["SUBSTR", "alpha:ap", "0", "3"], bulk("Hell"));
    check_placement(&cluster, &["alpha:ap", "beta:ap"]);
}

#[test]
fn expiry() {
    let cluster = Cluster::start(4);
    let mut c = cluster.client();
    check(&mut c, &["SET", "alpha:ex", "v"], ok());
    check(&mut c, &["EXPIRE", "alpha:ex", "100"], int(1));
    check_between(&mut c, &["TTL", "alpha:ex"], 95..=100);
    check(&mut c, &["EXPIRE", "alpha:ex", "200", "NX"], int(0));
    check(&mut c, &["EXPIRE", "alpha:ex", "200", "GT"], int(1));
    check_between(&mut c, &["TTL", "alpha:ex"], 195..=200);
    check(&mut c, &["PEXPIRE", "alpha:ex", "300000"], int(1));
    check_between(&mut c, &["PTTL", "alpha:ex"], 290_000..=300_000);
    let at = unix_now() + 1000;
    check(&mut c, &["EXPIREAT", "alpha:ex", &at.to_string()], int(1));
    check_between(&mut c, &["TTL", "alpha:ex"], 990..=1000);
    let at_ms = (at + 1000) * 1000;
    check(
        &mut c,
        &["PEXPIREAT", "alpha:ex", &at_ms.to_string()],
        int(1),
    );
    check(&mut c, &["EXPIRETIME", "alpha:ex"], int(at as i64 + 1000));
    check(&mut c, &["PEXPIRETIME", "alpha:ex"], int(at_ms as i64));
    check(&mut c, &["PERSIST", "alpha:ex"], int(1));
    check(&mut c, &["TTL", "alpha:ex"], int(-1));
    check(&mut c, &["PTTL", "alpha:ex"], int(-1));
    check(&mut c, &["PERSIST", "alpha:ex"], int(0));
    check(&mut c, &["TTL", "missing:ex"], int(-2));
    check(&mut c, &["PTTL", "missing:ex"], int(-2));
    check(&mut c, &["EXPIRE", "missing:ex", "10"], int(0));
    check(&mut c, &["PERSIST", "missing:ex"], int(0));

    // A key really expires: poll with a deadline instead of sleeping a guessed time.
    check(&mut c, &["SET", "beta:ex", "v", "PX", "50"], ok());
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match c.cmd_str(&["GET", "beta:ex"]) {
            Frame::Null => break,
            Frame::Bulk(v) if v == b"v" => {}
            other => panic!("GET ex:2: {other:?}"),
        }
        assert!(Instant::now() < deadline, "ex:2 did not expire within 5 s");
        std::thread::sleep(Duration::from_millis(10));
    }
    check(&mut c, &["TTL", "beta:ex"], int(-2));
    check(&mut c, &["EXISTS", "beta:ex"], int(0));
    check(&mut c, &["SET", "beta:ex", "back"], ok());
    check_placement(&cluster, &["alpha:ex", "beta:ex"]);
}

#[test]
fn type_of_each_kind() {
    let cluster = Cluster::start(4);
    let mut c = cluster.client();
    check(&mut c, &["SET", "string:t", "v"], ok());
    check(&mut c, &["HSET", "hash:t", "f", "v"], int(1));
    check(&mut c, &["RPUSH", "list:t", "v"], int(1));
    check(&mut c, &["SADD", "set:t", "v"], int(1));
    check(&mut c, &["ZADD", "zset:t", "1", "v"], int(1));
    check(&mut c, &["XADD", "stream:t", "1-1", "f", "v"], bulk("1-1"));
    for kind in ["string", "hash", "list", "set", "zset", "stream"] {
        check(
            &mut c,
            &["TYPE", &format!("{kind}:t")],
            Frame::Simple(kind.into()),
        );
    }
    check(&mut c, &["TYPE", "none:t"], Frame::Simple("none".into()));
    // Backend errors pass through untouched.
    check(
        &mut c,
        &["GET", "hash:t"],
        err("WRONGTYPE Operation against a key holding the wrong kind of value"),
    );
    check(
        &mut c,
        &["LPUSH", "string:t", "x"],
        err("WRONGTYPE Operation against a key holding the wrong kind of value"),
    );
    check_placement(
        &cluster,
        &[
            "string:t", "hash:t", "list:t", "set:t", "zset:t", "stream:t",
        ],
    );
}

#[test]
fn hashes() {
    let cluster = Cluster::start(4);
    let mut c = cluster.client();
    check(&mut c, &["HSET", "alpha:h", "f1", "v1", "f2", "v2"], int(2));
    check(&mut c, &["HSET", "alpha:h", "f1", "v1b"], int(0));
    check(&mut c, &["HGET", "alpha:h", "f1"], bulk("v1b"));
    check(&mut c, &["HGET", "alpha:h", "nope"], Frame::Null);
    check(&mut c, &["HGET", "missing:h", "f1"], Frame::Null);
    check(
        &mut c,
        &["HMGET", "alpha:h", "f1", "nope", "f2"],
        Frame::Array(vec![bulk("v1b"), Frame::Null, bulk("v2")]),
    );
    check(&mut c, &["HMSET", "alpha:h", "f3", "v3"], ok());
    check(&mut c, &["HSETNX", "alpha:h", "f3", "other"], int(0));
    check(&mut c, &["HSETNX", "alpha:h", "f4", "v4"], int(1));
    check(&mut c, &["HINCRBY", "alpha:h", "n", "5"], int(5));
    check(&mut c, &["HINCRBY", "alpha:h", "n", "-7"], int(-2));
    check(
        &mut c,
        &["HINCRBYFLOAT", "alpha:h", "x", "2.5"],
        bulk("2.5"),
    );
    check(&mut c, &["HEXISTS", "alpha:h", "f1"], int(1));
    check(&mut c, &["HEXISTS", "alpha:h", "nope"], int(0));
    check(&mut c, &["HSTRLEN", "alpha:h", "f1"], int(3));
    check(&mut c, &["HLEN", "alpha:h"], int(6));
    check(&mut c, &["HDEL", "alpha:h", "f2", "f4", "nope"], int(2));
    // Small hashes keep insertion order (listpack encoding).
    check(
        &mut c,
        &["HKEYS", "alpha:h"],
        bulks(&["f1", "f3", "n", "x"]),
    );
    check(
        &mut c,
        &["HVALS", "alpha:h"],
        bulks(&["v1b", "v3", "-2", "2.5"]),
    );
    check(
        &mut c,
        &["HGETALL", "alpha:h"],
        bulks(&["f1", "v1b", "f3", "v3", "n", "-2", "x", "2.5"]),
    );
    check(&mut c, &["HGETALL", "missing:h"], Frame::Array(vec![]));
    check(
        &mut c,
        &["HSCAN", "alpha:h", "0", "MATCH", "f*"],
        Frame::Array(vec![bulk("0"), bulks(&["f1", "v1b", "f3", "v3"])]),
    );
    check(&mut c, &["HSET", "beta:h", "a", "1"], int(1));
    check(&mut c, &["HRANDFIELD", "beta:h"], bulk("a"));
    check_placement(&cluster, &["alpha:h", "beta:h"]);
}

#[test]
fn lists() {
    let cluster = Cluster::start(4);
    let mut c = cluster.client();
    check(&mut c, &["RPUSH", "alpha:l", "a", "b", "c"], int(3));
    check(&mut c, &["LPUSH", "alpha:l", "z"], int(4));
    check(
        &mut c,
        &["LRANGE", "alpha:l", "0", "-1"],
        bulks(&["z", "a", "b", "c"]),
    );
    check(&mut c, &["LLEN", "alpha:l"], int(4));
    check(&mut c, &["LINDEX", "alpha:l", "1"], bulk("a"));
    check(&mut c, &["LINDEX", "alpha:l", "10"], Frame::Null);
    check(&mut c, &["LSET", "alpha:l", "1", "A"], ok());
    check(
        &mut c,
        &["LSET", "alpha:l", "10", "A"],
        err("ERR index out of range"),
    );
    check(&mut c, &["LINSERT", "alpha:l", "BEFORE", "b", "x"], int(5));
    check(
        &mut c,
        &["LINSERT", "alpha:l", "AFTER", "nope", "x"],
        int(-1),
    );
    check(&mut c, &["LPOS", "alpha:l", "c"], int(4));
    check(&mut c, &["LPOS", "alpha:l", "nope"], Frame::Null);
    check(&mut c, &["LREM", "alpha:l", "1", "x"], int(1));
    check(
        &mut c,
        &["LRANGE", "alpha:l", "0", "-1"],
        bulks(&["z", "A", "b", "c"]),
    );
    check(&mut c, &["LPUSHX", "missing:l", "v"], int(0));
    check(&mut c, &["RPUSHX", "alpha:l", "d"], int(5));
    check(&mut c, &["LTRIM", "alpha:l", "0", "3"], ok());
    check(&mut c, &["LPOP", "alpha:l"], bulk("z"));
    check(&mut c, &["RPOP", "alpha:l"], bulk("c"));
    check(&mut c, &["LPOP", "alpha:l", "5"], bulks(&["A", "b"]));
    check(&mut c, &["LPOP", "alpha:l"], Frame::Null);
    check(&mut c, &["LLEN", "alpha:l"], int(0));
    check(&mut c, &["EXISTS", "alpha:l"], int(0));
    check(&mut c, &["RPUSH", "alpha:l", "kept"], int(1));
    check(&mut c, &["RPUSH", "beta:l", "1", "2"], int(2));
    check_placement(&cluster, &["alpha:l", "beta:l"]);
}

#[test]
fn sets() {
    let cluster = Cluster::start(4);
    let mut c = cluster.client();
    check(&mut c, &["SADD", "alpha:s", "a", "b", "c", "a"], int(3));
    check(&mut c, &["SADD", "alpha:s", "a"], int(0));
    check(&mut c, &["SCARD", "alpha:s"], int(3));
    check(&mut c, &["SISMEMBER", "alpha:s", "a"], int(1));
    check(&mut c, &["SISMEMBER", "alpha:s", "x"], int(0));
    check(
        &mut c,
        &["SMISMEMBER", "alpha:s", "a", "x", "c"],
        Frame::Array(vec![int(1), int(0), int(1)]),
    );
    let Frame::Array(mut members) = c.cmd_str(&["SMEMBERS", "alpha:s"]) else {
        panic!("SMEMBERS did not return an array");
    };
    members.sort_by_key(|m| m.as_text());
    assert_eq!(Frame::Array(members), bulks(&["a", "b", "c"]));
    check(&mut c, &["SREM", "alpha:s", "a", "x"], int(1));
    check(&mut c, &["SCARD", "alpha:s"], int(2));
    check(&mut c, &["SADD", "beta:s", "only"], int(1));
    check(&mut c, &["SRANDMEMBER", "beta:s"], bulk("only"));
    check(&mut c, &["SPOP", "beta:s"], bulk("only"));
    check(&mut c, &["SPOP", "beta:s"], Frame::Null);
    check(&mut c, &["SADD", "beta:s", "1", "2", "3"], int(3));
    // Integer sets are sorted (intset encoding).
    check(&mut c, &["SMEMBERS", "beta:s"], bulks(&["1", "2", "3"]));
    check(&mut c, &["SMEMBERS", "missing:s"], Frame::Array(vec![]));
    check_placement(&cluster, &["alpha:s", "beta:s"]);
}

#[test]
fn sorted_sets() {
    let cluster = Cluster::start(4);
    let mut c = cluster.client();
    check(
        &mut c,
        &["ZADD", "alpha:z", "1", "a", "2", "b", "3", "c"],
        int(3),
    );
    check(&mut c, &["ZADD", "alpha:z", "NX", "9", "a"], int(0));
    check(&mut c, &["ZSCORE", "alpha:z", "b"], bulk("2"));
    check(&mut c, &["ZSCORE", "alpha:z", "nope"], Frame::Null);
    check(&mut c, &["ZINCRBY", "alpha:z", "2.5", "a"], bulk("3.5"));
    check(
        &mut c,
        &["ZRANGE", "alpha:z", "0", "-1", "WITHSCORES"],
        bulks(&["b", "2", "c", "3", "a", "3.5"]),
    );
    check(&mut c, &["ZREVRANGE", "alpha:z", "0", "0"], bulks(&["a"]));
    check(&mut c, &["ZRANK", "alpha:z", "a"], int(2));
    check(&mut c, &["ZREVRANK", "alpha:z", "a"], int(0));
    check(&mut c, &["ZCARD", "alpha:z"], int(3));
    check(&mut c, &["ZCOUNT", "alpha:z", "2", "3"], int(2));
    check(
        &mut c,
        &["ZRANGEBYSCORE", "alpha:z", "(2", "+inf"],
        bulks(&["c", "a"]),
    );
    check(
        &mut c,
        &["ZMSCORE", "alpha:z", "a", "nope"],
        Frame::Array(vec![bulk("3.5"), Frame::Null]),
    );
    check(&mut c, &["ZREM", "alpha:z", "b", "nope"], int(1));
    check(&mut c, &["ZPOPMIN", "alpha:z"], bulks(&["c", "3"]));
    check(&mut c, &["ZPOPMAX", "alpha:z"], bulks(&["a", "3.5"]));
    check(&mut c, &["ZCARD", "alpha:z"], int(0));
    check(
        &mut c,
        &["ZADD", "beta:z", "0", "x", "0", "y", "0", "z"],
        int(3),
    );
    check(
        &mut c,
        &["ZRANGEBYLEX", "beta:z", "[y", "+"],
        bulks(&["y", "z"]),
    );
    check(&mut c, &["ZLEXCOUNT", "beta:z", "-", "+"], int(3));
    check(&mut c, &["ZREMRANGEBYLEX", "beta:z", "[x", "[x"], int(1));
    check(&mut c, &["ZADD", "alpha:z", "1", "m"], int(1));
    check_placement(&cluster, &["alpha:z", "beta:z"]);
}

#[test]
fn streams() {
    let cluster = Cluster::start(4);
    let mut c = cluster.client();
    let entry = |id: &str, fields: &[&str]| Frame::Array(vec![bulk(id), bulks(fields)]);
    check(&mut c, &["XADD", "alpha:x", "1-1", "f", "v1"], bulk("1-1"));
    check(&mut c, &["XADD", "alpha:x", "2-1", "f", "v2"], bulk("2-1"));
    check(
        &mut c,
        &["XADD", "alpha:x", "3-0", "a", "b", "c", "d"],
        bulk("3-0"),
    );
    check(
        &mut c,
        &["XADD", "alpha:x", "2-0", "f", "v"],
        err("ERR The ID specified in XADD is equal or smaller than the target stream top item"),
    );
    check(&mut c, &["XLEN", "alpha:x"], int(3));
    check(
        &mut c,
        &["XRANGE", "alpha:x", "-", "+"],
        Frame::Array(vec![
            entry("1-1", &["f", "v1"]),
            entry("2-1", &["f", "v2"]),
            entry("3-0", &["a", "b", "c", "d"]),
        ]),
    );
    check(
        &mut c,
        &["XRANGE", "alpha:x", "2", "+", "COUNT", "1"],
        Frame::Array(vec![entry("2-1", &["f", "v2"])]),
    );
    check(
        &mut c,
        &["XREVRANGE", "alpha:x", "+", "-", "COUNT", "1"],
        Frame::Array(vec![entry("3-0", &["a", "b", "c", "d"])]),
    );
    check(&mut c, &["XDEL", "alpha:x", "2-1", "9-9"], int(1));
    check(&mut c, &["XLEN", "alpha:x"], int(2));
    check(&mut c, &["XTRIM", "alpha:x", "MAXLEN", "1"], int(1));
    check(
        &mut c,
        &["XRANGE", "alpha:x", "-", "+"],
        Frame::Array(vec![entry("3-0", &["a", "b", "c", "d"])]),
    );
    // An auto id is "<ms>-<seq>" at or after now.
    let before_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis();
    let id = c.cmd_str(&["XADD", "beta:x", "*", "k", "v"]).as_text();
    let (ms, seq) = id.split_once('-').expect("auto id has a dash");
    assert!(ms.parse::<u128>().unwrap() >= before_ms, "auto id {id}");
    assert_eq!(seq, "0", "auto id {id}");
    check(&mut c, &["XLEN", "beta:x"], int(1));
    check(&mut c, &["XLEN", "missing:x"], int(0));
    check_placement(&cluster, &["alpha:x", "beta:x"]);
}

#[test]
fn hyperloglog_bitmaps_geo() {
    let cluster = Cluster::start(4);
    let mut c = cluster.client();
    check(&mut c, &["PFADD", "alpha:hll", "a", "b", "c", "d"], int(1));
    check(&mut c, &["PFADD", "alpha:hll", "a", "b"], int(0));
    check(&mut c, &["PFCOUNT", "alpha:hll"], int(4));
    check(&mut c, &["PFCOUNT", "missing:hll"], int(0));

    check(&mut c, &["SETBIT", "alpha:bm", "7", "1"], int(0));
    check(&mut c, &["SETBIT", "alpha:bm", "7", "1"], int(1));
    check(&mut c, &["SETBIT", "alpha:bm", "8", "1"], int(0));
    check(&mut c, &["GETBIT", "alpha:bm", "7"], int(1));
    check(&mut c, &["GETBIT", "alpha:bm", "6"], int(0));
    check(&mut c, &["GETBIT", "alpha:bm", "1000"], int(0));
    check(&mut c, &["BITCOUNT", "alpha:bm"], int(2));
    check(&mut c, &["BITCOUNT", "alpha:bm", "0", "0"], int(1));
    check(&mut c, &["BITPOS", "alpha:bm", "1"], int(7));
    check(&mut c, &["GET", "alpha:bm"], bulk([0x01u8, 0x80]));
    check(&mut c, &["BITCOUNT", "missing:bm"], int(0));

    check(
        &mut c,
        &[
            "GEOADD",
            "alpha:geo",
            "13.361389",
            "38.115556",
            "Palermo",
            "15.087269",
            "37.502669",
            "Catania",
        ],
        int(2),
    );
    check(
        &mut c,
        &["GEODIST", "alpha:geo", "Palermo", "Catania"],
        bulk("166274.1516"),
    );
    check(
        &mut c,
        &["GEODIST", "alpha:geo", "Palermo", "Catania", "km"],
        bulk("166.2742"),
    );
    check(
        &mut c,
        &["GEODIST", "alpha:geo", "Palermo", "Nowhere"],
        Frame::Null,
    );
    check(
        &mut c,
        &["GEOPOS", "alpha:geo", "Palermo", "Nowhere"],
        Frame::Array(vec![
            bulks(&["13.36138933897018433", "38.11555639549629859"]),
            Frame::Null,
        ]),
    );
    check(
        &mut c,
        &["GEOHASH", "alpha:geo", "Palermo"],
        bulks(&["sqc8b49rny0"]),
    );
    check(
        &mut c,
        &[
            "GEOSEARCH",
            "alpha:geo",
            "FROMLONLAT",
            "15",
            "37",
            "BYRADIUS",
            "100",
            "km",
            "ASC",
        ],
        bulks(&["Catania"]),
    );
    check_placement(&cluster, &["alpha:hll", "alpha:bm", "alpha:geo"]);
}
