//! Hash tags co-locate keys (`{user1}:a` and `{user1}:b` on one backend, where `user1` is),
//! so multi-key commands and scripts work on them; keys on different backends get exactly
//! `-CROSSSLOT` and change nothing.

mod common;

use common::{Client, Cluster, Frame, bulk, bulks, err, int, ok};

const CROSSSLOT: &str = "CROSSSLOT Keys in request don't hash to the same backend";

#[track_caller]
fn check(c: &mut Client, args: &[&str], expected: Frame) {
    assert_eq!(c.cmd_str(args), expected, "{args:?}");
}

/// A sorted array reply (for set members, whose order Redis does not define).
fn sorted(reply: Frame) -> Frame {
    let Frame::Array(mut items) = reply else {
        panic!("expected an array, got {reply:?}");
    };
    items.sort_by_key(Frame::as_text);
    Frame::Array(items)
}

/// Two keys that `shardis route` puts on different backends.
fn keys_apart(cluster: &Cluster) -> (String, String) {
    let candidates: Vec<String> = ["apart", "bravo", "charlie", "delta", "echo", "foxtrot"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let refs: Vec<&str> = candidates.iter().map(String::as_str).collect();
    let owners = cluster.route(&refs);
    let other = (1..owners.len())
        .find(|&i| owners[i] != owners[0])
        .expect("some candidate on another backend");
    (candidates[0].clone(), candidates[other].clone())
}

#[test]
fn tagged_keys_share_a_backend() {
    let cluster = Cluster::start(4);
    let mut c = cluster.client();
    let mut owners = Vec::new();
    for u in 0..40 {
        // Tags varied at the front: twemproxy's fnv1a_64 mixes the last bytes poorly.
        let tag = format!("{:08x}user{u}", (u as u32).wrapping_mul(0x9e37_79b9));
        let keys: Vec<String> = ["a", "b", "profile:name", ""]
            .iter()
            .map(|suffix| format!("{{{tag}}}:{suffix}"))
            .chain([format!("prefix{{{tag}}}"), format!("x{{{tag}}}y{{other}}")])
            .collect();
        for k in &keys {
            check(&mut c, &["SET", k, &tag], ok());
        }
        // The tag's content decides: every key sits where the bare tag would.
        let expected = cluster.route(&[&tag])[0];
        for k in &keys {
            assert_eq!(cluster.holder(k.as_bytes()), expected, "{k}");
        }
        owners.push(expected);
    }
    owners.sort_unstable();
    owners.dedup();
    assert_eq!(owners.len(), 4, "40 tags should use all four backends");
}

#[test]
fn multi_key_commands_work_on_co_located_keys() {
    let cluster = Cluster::start(4);
    let mut c = cluster.client();
    check(&mut c, &["MSETNX", "{t}:a", "1", "{t}:b", "2"], int(1));
    check(&mut c, &["MSETNX", "{t}:a", "x", "{t}:c", "3"], int(0));
    check(&mut c, &["GET", "{t}:c"], Frame::Null);
    check(&mut c, &["RENAME", "{t}:a", "{t}:z"], ok());
    check(&mut c, &["GET", "{t}:z"], bulk("1"));
    check(&mut c, &["EXISTS", "{t}:a"], int(0));
    check(&mut c, &["RENAMENX", "{t}:z", "{t}:b"], int(0));
    check(&mut c, &["COPY", "{t}:z", "{t}:copy"], int(1));
    check(&mut c, &["GET", "{t}:copy"], bulk("1"));

    check(&mut c, &["SADD", "{t}:s1", "a", "b", "c"], int(3));
    check(&mut c, &["SADD", "{t}:s2", "b", "c", "d"], int(3));
    assert_eq!(
        sorted(c.cmd_str(&["SINTER", "{t}:s1", "{t}:s2"])),
        bulks(&["b", "c"])
    );
    assert_eq!(
        sorted(c.cmd_str(&["SUNION", "{t}:s1", "{t}:s2"])),
        bulks(&["a", "b", "c", "d"])
    );
    check(&mut c, &["SDIFF", "{t}:s1", "{t}:s2"], bulks(&["a"]));
    check(
        &mut c,
        &["SINTERSTORE", "{t}:s3", "{t}:s1", "{t}:s2"],
        int(2),
    );
    check(&mut c, &["SINTERCARD", "2", "{t}:s1", "{t}:s2"], int(2));
    check(&mut c, &["SMOVE", "{t}:s1", "{t}:s2", "a"], int(1));
    check(&mut c, &["SISMEMBER", "{t}:s2", "a"], int(1));
    check(&mut c, &["SCARD", "{t}:s1"], int(2));

    check(&mut c, &["RPUSH", "{t}:l1", "a", "b", "c"], int(3));
    check(
        &mut c,
        &["LMOVE", "{t}:l1", "{t}:l2", "LEFT", "RIGHT"],
        bulk("a"),
    );
    check(&mut c, &["RPOPLPUSH", "{t}:l1", "{t}:l2"], bulk("c"));
    check(&mut c, &["LRANGE", "{t}:l2", "0", "-1"], bulks(&["c", "a"]));
    check(&mut c, &["LRANGE", "{t}:l1", "0", "-1"], bulks(&["b"]));

    check(&mut c, &["ZADD", "{t}:z1", "1", "a", "2", "b"], int(2));
    check(&mut c, &["ZADD", "{t}:z2", "10", "b"], int(1));
    check(
        &mut c,
        &["ZUNIONSTORE", "{t}:z3", "2", "{t}:z1", "{t}:z2"],
        int(2),
    );
    check(
        &mut c,
        &["ZRANGE", "{t}:z3", "0", "-1", "WITHSCORES"],
        bulks(&["a", "1", "b", "12"]),
    );
    check(&mut c, &["PFADD", "{t}:h1", "x", "y"], int(1));
    check(&mut c, &["PFADD", "{t}:h2", "y", "z"], int(1));
    check(&mut c, &["PFCOUNT", "{t}:h1", "{t}:h2"], int(3));
    check(&mut c, &["PFMERGE", "{t}:h3", "{t}:h1", "{t}:h2"], ok());
    check(&mut c, &["PFCOUNT", "{t}:h3"], int(3));
    check(
        &mut c,
        &["BITOP", "OR", "{t}:bits", "{t}:b", "{t}:z"],
        int(1),
    );
    check(&mut c, &["GET", "{t}:bits"], bulk("3"));
    check(&mut c, &["RPUSH", "{t}:nums", "3", "1", "2"], int(3));
    check(&mut c, &["SORT", "{t}:nums", "STORE", "{t}:sorted"], int(3));
    check(
        &mut c,
        &["LRANGE", "{t}:sorted", "0", "-1"],
        bulks(&["1", "2", "3"]),
    );
    check(
        &mut c,
        &[
            "GEOADD",
            "{t}:geo",
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
        &[
            "GEORADIUS",
            "{t}:geo",
            "15",
            "37",
            "100",
            "km",
            "STORE",
            "{t}:near",
        ],
        int(1),
    );
    check(
        &mut c,
        &["ZRANGE", "{t}:near", "0", "-1"],
        bulks(&["Catania"]),
    );
    check(
        &mut c,
        &[
            "GEORADIUSBYMEMBER",
            "{t}:geo",
            "Palermo",
            "200",
            "km",
            "STOREDIST",
            "{t}:dist",
        ],
        int(2),
    );
    check(&mut c, &["ZCARD", "{t}:dist"], int(2));
    check(
        &mut c,
        &["MGET", "{t}:z", "{t}:b", "{t}:nope"],
        Frame::Array(vec![bulk("1"), bulk("2"), Frame::Null]),
    );

    // Everything stayed on the tag's backend.
    let home = cluster.route(&["t"])[0];
    let sizes = cluster.dbsizes();
    for (i, &n) in sizes.iter().enumerate() {
        if i != home {
            assert_eq!(n, 0, "s{} holds keys of tag {{t}}: {sizes:?}", i + 1);
        }
    }
    assert_eq!(sizes[home], 20, "keys of tag {{t}}: {sizes:?}");
}

#[test]
fn scripts_run_on_the_backend_of_their_keys() {
    let cluster = Cluster::start(4);
    let mut c = cluster.client();
    check(&mut c, &["SET", "{s}:k", "v"], ok());
    let script = "return redis.call('GET', KEYS[1]) .. ARGV[1]";
    check(&mut c, &["EVAL", script, "1", "{s}:k", "!"], bulk("v!"));
    check(
        &mut c,
        &[
            "EVAL",
            "return {redis.call('INCR', KEYS[1]), redis.call('INCRBY', KEYS[2], 5)}",
            "2",
            "{s}:n1",
            "{s}:n2",
        ],
        Frame::Array(vec![int(1), int(5)]),
    );
    check(
        &mut c,
        &["EVAL_RO", "return redis.call('GET', KEYS[1])", "1", "{s}:k"],
        bulk("v"),
    );
    // SCRIPT is not proxied: load it on every backend directly, then call it by sha.
    let sha = (0..4)
        .map(|i| {
            cluster
                .backend(i)
                .cmd_str(&["SCRIPT", "LOAD", script])
                .as_text()
        })
        .reduce(|a, b| {
            assert_eq!(a, b, "same script, same sha");
            a
        })
        .unwrap();
    check(&mut c, &["EVALSHA", &sha, "1", "{s}:k", "?"], bulk("v?"));
    check(
        &mut c,
        &["EVALSHA", &"0".repeat(40), "1", "{s}:k"],
        err("NOSCRIPT No matching script. Please use EVAL."),
    );
    let home = cluster.route(&["s"])[0];
    for key in ["{s}:k", "{s}:n1", "{s}:n2"] {
        assert_eq!(cluster.holder(key.as_bytes()), home, "{key}");
    }
    // Without keys a script runs on the first backend.
    check(&mut c, &["EVAL", "return 1", "0"], int(1));
}

#[test]
fn keys_on_different_backends_get_crossslot() {
    let cluster = Cluster::start(4);
    let mut c = cluster.client();
    let (a, b) = keys_apart(&cluster);
    let (a, b) = (a.as_str(), b.as_str());
    let tagged = "{apart}:x"; // with `a`'s tag content, so on a's backend
    let refused: Vec<Vec<&str>> = vec![
        vec!["MSETNX", a, "1", b, "2"],
        vec!["RENAME", a, b],
        vec!["RENAMENX", a, b],
        vec!["COPY", a, b],
        vec!["SINTER", a, b],
        vec!["SUNION", tagged, a, b],
        vec!["SDIFF", a, b],
        vec!["SINTERSTORE", b, a, tagged],
        vec!["SUNIONSTORE", a, b],
        vec!["SMOVE", a, b, "m"],
        vec!["LMOVE", a, b, "LEFT", "RIGHT"],
        vec!["RPOPLPUSH", a, b],
        vec!["ZUNIONSTORE", b, "2", a, tagged],
        vec!["ZINTERSTORE", a, "2", a, b],
        vec!["PFCOUNT", a, b],
        vec!["PFMERGE", a, b],
        vec!["BITOP", "AND", a, b],
        // Commands that write a destination named in an option.
        vec!["SORT", a, "STORE", b],
        vec!["SORT", a, "BY", "w_*", "GET", "#", "ALPHA", "STORE", b],
        vec!["GEORADIUS", a, "15", "37", "100", "km", "STORE", b],
        vec!["GEORADIUS", a, "15", "37", "100", "km", "STOREDIST", b],
        vec![
            "GEORADIUSBYMEMBER",
            a,
            "m",
            "100",
            "km",
            "COUNT",
            "1",
            "STORE",
            b,
        ],
    ];
    for args in &refused {
        check(&mut c, args, err(CROSSSLOT));
    }
    // Nothing was written anywhere, and the connection still works.
    assert_eq!(cluster.dbsizes(), vec![0, 0, 0, 0]);
    check(&mut c, &["PING"], Frame::Simple("PONG".into()));
    // Scripts across backends run in the proxy (`cross_shard = "run"`, the default); see
    // scripts_across_backends_are_refused_under_cross_shard_refuse for the other setting.
    check(&mut c, &["EVAL", "return 1", "2", a, b], int(1));
    check(
        &mut c,
        &["EVALSHA", &"0".repeat(40), "2", a, b],
        err("NOSCRIPT No matching script. Please use EVAL."),
    );
    // The same commands with co-located keys are accepted.
    check(&mut c, &["MSETNX", a, "1", tagged, "2"], int(1));
    check(&mut c, &["RENAME", a, "{apart}:y"], ok());
    check(&mut c, &["GET", "{apart}:y"], bulk("1"));
    check(&mut c, &["RPUSH", a, "2", "1"], int(2));
    check(&mut c, &["SORT", a, "STORE", "{apart}:sorted"], int(2));
    check(&mut c, &["SORT", a], bulks(&["1", "2"]));
    check(
        &mut c,
        &["LRANGE", "{apart}:sorted", "0", "-1"],
        bulks(&["1", "2"]),
    );
}

#[test]
fn scripts_across_backends_are_refused_under_cross_shard_refuse() {
    let cluster = Cluster::start_with(4, "cross_shard = \"refuse\"", "");
    let mut c = cluster.client();
    let (a, b) = keys_apart(&cluster);
    let (a, b) = (a.as_str(), b.as_str());
    let zeros = "0".repeat(40);
    for args in [
        vec!["EVAL", "return 1", "2", a, b],
        vec!["EVAL_RO", "return 1", "2", a, b],
        vec!["EVALSHA", zeros.as_str(), "2", a, b],
        vec!["FCALL", "f", "2", a, b],
    ] {
        check(&mut c, &args, err(CROSSSLOT));
    }
    assert_eq!(cluster.dbsizes(), vec![0, 0, 0, 0]);
    check(&mut c, &["PING"], Frame::Simple("PONG".into()));
}
