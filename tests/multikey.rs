//! Commands split across shards and merged: MSET and MGET (key order kept, missing keys nil),
//! DEL, UNLINK, EXISTS and TOUCH (summed, repeated keys counted as Redis counts them), checked
//! through shardis and on the backends directly.

mod common;

use std::collections::HashSet;

use common::{Client, Cluster, Frame, bulk, err, int, ok};

/// `n` keys whose names differ at the front (twemproxy's fnv1a_64 mixes the last bytes
/// poorly), so they spread over the backends.
fn spread_keys(n: usize, suffix: &str) -> Vec<String> {
    (0..n)
        .map(|i| format!("{:08x}:{suffix}{i}", (i as u32).wrapping_mul(0x9e37_79b9)))
        .collect()
}

/// Asserts an array reply element by element, naming the first difference (a thousand-element
/// Debug dump helps nobody).
#[track_caller]
fn assert_array(actual: Frame, expected: &[Frame]) {
    let Frame::Array(actual) = actual else {
        panic!("expected an array, got {actual:?}");
    };
    if let Some(i) = (0..actual.len().min(expected.len())).find(|&i| actual[i] != expected[i]) {
        panic!(
            "element {i}: got {:?}, expected {:?}",
            actual[i], expected[i]
        );
    }
    assert_eq!(actual.len(), expected.len(), "array length");
}

fn args<'a>(cmd: &'a str, keys: &'a [&'a str]) -> Vec<&'a str> {
    std::iter::once(cmd).chain(keys.iter().copied()).collect()
}

/// MSET of 20 keys spread over all four backends; returns the keys and their backends.
fn mset_spread(cluster: &Cluster, c: &mut Client) -> (Vec<String>, Vec<usize>) {
    let keys = spread_keys(20, "mk");
    let mut mset = vec!["MSET".to_string()];
    for k in &keys {
        mset.push(k.clone());
        mset.push(format!("v-{k}"));
    }
    let mset: Vec<&str> = mset.iter().map(String::as_str).collect();
    assert_eq!(c.cmd_str(&mset), ok());
    let refs: Vec<&str> = keys.iter().map(String::as_str).collect();
    let owners = cluster.route(&refs);
    assert_eq!(
        owners.iter().collect::<HashSet<_>>().len(),
        4,
        "20 keys should use all four backends: {owners:?}"
    );
    (keys, owners)
}

#[test]
fn mset_stores_each_key_on_its_backend() {
    let cluster = Cluster::start(4);
    let mut c = cluster.client();
    let (keys, owners) = mset_spread(&cluster, &mut c);
    for (k, &owner) in keys.iter().zip(&owners) {
        assert_eq!(cluster.holder(k.as_bytes()), owner, "{k}");
        assert_eq!(
            cluster.backend(owner).cmd_str(&["GET", k]),
            bulk(format!("v-{k}")),
            "{k} on s{}",
            owner + 1
        );
    }
    let sizes = cluster.dbsizes();
    for (i, &n) in sizes.iter().enumerate() {
        let expected = owners.iter().filter(|&&o| o == i).count() as i64;
        assert_eq!(n, expected, "DBSIZE of s{}", i + 1);
    }
    assert_eq!(c.cmd_str(&["DBSIZE"]), int(20));

    // A repeated key: the last value wins, as in Redis.
    assert_eq!(
        c.cmd_str(&["MSET", &keys[0], "1", &keys[1], "2", &keys[0], "3"]),
        ok()
    );
    assert_eq!(c.cmd_str(&["GET", &keys[0]]), bulk("3"));
    assert_eq!(c.cmd_str(&["GET", &keys[1]]), bulk("2"));
    assert_eq!(
        c.cmd_str(&["MSET", &keys[0], "1", &keys[1]]),
        err("ERR wrong number of arguments for 'mset' command")
    );
    assert_eq!(
        c.cmd_str(&["MSET"]),
        err("ERR wrong number of arguments for 'mset' command")
    );
    assert_eq!(c.cmd_str(&["GET", &keys[0]]), bulk("3"));
}

#[test]
fn mget_keeps_key_order_with_missing_keys() {
    let cluster = Cluster::start(4);
    let mut c = cluster.client();
    let (keys, _) = mset_spread(&cluster, &mut c);
    let v = |i: usize| bulk(format!("v-{}", keys[i]));
    assert_eq!(
        c.cmd_str(&[
            "MGET",
            &keys[0],
            "missing:1",
            &keys[5],
            &keys[0],
            "2:missing",
            &keys[19],
            &keys[7],
        ]),
        Frame::Array(vec![
            v(0),
            Frame::Null,
            v(5),
            v(0),
            Frame::Null,
            v(19),
            v(7)
        ])
    );
    // All twenty, reversed.
    let reversed: Vec<&str> = keys.iter().rev().map(String::as_str).collect();
    let expected: Vec<Frame> = (0..20).rev().map(v).collect();
    assert_array(c.cmd_str(&args("MGET", &reversed)), &expected);
    assert_eq!(
        c.cmd_str(&["MGET", "missing:1", "2:missing"]),
        Frame::Array(vec![Frame::Null, Frame::Null])
    );
    // A key of another type reads as nil, as in Redis.
    assert_eq!(c.cmd_str(&["RPUSH", "list:mk", "x"]), int(1));
    assert_eq!(
        c.cmd_str(&["MGET", &keys[3], "list:mk", &keys[4]]),
        Frame::Array(vec![v(3), Frame::Null, v(4)])
    );
    assert_eq!(
        c.cmd_str(&["MGET"]),
        err("ERR wrong number of arguments for 'mget' command")
    );

    // A thousand keys, every other one missing.
    let many = spread_keys(1000, "many");
    let mut mset = vec!["MSET"];
    for k in many.iter().step_by(2) {
        mset.push(k);
        mset.push(k);
    }
    assert_eq!(c.cmd_str(&mset), ok());
    let refs: Vec<&str> = many.iter().map(String::as_str).collect();
    let expected: Vec<Frame> = many
        .iter()
        .enumerate()
        .map(|(i, k)| if i % 2 == 0 { bulk(k) } else { Frame::Null })
        .collect();
    assert_array(c.cmd_str(&args("MGET", &refs)), &expected);
}

#[test]
fn exists_and_touch_sum_over_backends() {
    let cluster = Cluster::start(4);
    let mut c = cluster.client();
    let (keys, _) = mset_spread(&cluster, &mut c);
    let refs: Vec<&str> = keys.iter().map(String::as_str).collect();
    assert_eq!(c.cmd_str(&args("EXISTS", &refs)), int(20));
    // A repeated key counts twice, as in Redis.
    assert_eq!(
        c.cmd_str(&["EXISTS", &keys[0], &keys[0], "missing", &keys[1]]),
        int(3)
    );
    assert_eq!(
        c.cmd_str(&["EXISTS", &keys[2], &keys[3], &keys[2], &keys[3], &keys[2]]),
        int(5)
    );
    assert_eq!(c.cmd_str(&["EXISTS", "missing", "2:missing"]), int(0));
    assert_eq!(c.cmd_str(&["TOUCH", &keys[0], &keys[9], "missing"]), int(2));
    assert_eq!(c.cmd_str(&args("TOUCH", &refs)), int(20));
    assert_eq!(c.cmd_str(&["TOUCH", "missing"]), int(0));
    assert_eq!(
        c.cmd_str(&["EXISTS"]),
        err("ERR wrong number of arguments for 'exists' command")
    );
    assert_eq!(
        c.cmd_str(&["TOUCH"]),
        err("ERR wrong number of arguments for 'touch' command")
    );
}

#[test]
fn del_and_unlink_sum_and_really_delete() {
    let cluster = Cluster::start(4);
    let mut c = cluster.client();
    let (keys, owners) = mset_spread(&cluster, &mut c);
    // A repeated key is deleted once, as in Redis.
    assert_eq!(
        c.cmd_str(&["DEL", &keys[0], &keys[1], "missing", &keys[0]]),
        int(2)
    );
    assert_eq!(c.cmd_str(&["DEL", &keys[0]]), int(0));
    assert_eq!(
        c.cmd_str(&["UNLINK", &keys[2], &keys[3], "missing"]),
        int(2)
    );
    assert_eq!(c.cmd_str(&["UNLINK", &keys[2]]), int(0));
    for (i, k) in keys.iter().enumerate() {
        let holders = cluster.holders(k.as_bytes());
        if i < 4 {
            assert!(holders.is_empty(), "{k} still on {holders:?}");
        } else {
            assert_eq!(holders, vec![owners[i]], "{k}");
        }
    }
    let rest: Vec<&str> = keys[4..].iter().map(String::as_str).collect();
    let (first, second) = rest.split_at(8);
    assert_eq!(c.cmd_str(&args("DEL", first)), int(8));
    assert_eq!(c.cmd_str(&args("UNLINK", second)), int(8));
    assert_eq!(cluster.dbsizes(), vec![0, 0, 0, 0]);
    assert_eq!(c.cmd_str(&["DBSIZE"]), int(0));
    assert_eq!(
        c.cmd_str(&["DEL"]),
        err("ERR wrong number of arguments for 'del' command")
    );
    assert_eq!(
        c.cmd_str(&["UNLINK"]),
        err("ERR wrong number of arguments for 'unlink' command")
    );
}

/// Many split commands in one write: each is split while the parts of the ones before it are
/// still queued for the links, so the session's part buffer is shared and must not be
/// overwritten. Every MGET must see exactly what the MSET before it wrote.
#[test]
fn pipelined_splits_keep_their_parts_apart() {
    let cluster = Cluster::start(4);
    let mut c = cluster.client();
    let keys = spread_keys(12, "pp");
    let refs: Vec<&str> = keys.iter().map(String::as_str).collect();
    assert_eq!(
        cluster.route(&refs).iter().collect::<HashSet<_>>().len(),
        4,
        "12 keys should use all four backends"
    );
    const ROUNDS: usize = 50;
    let mut batch = Vec::new();
    for round in 0..ROUNDS {
        let values: Vec<String> = keys.iter().map(|k| format!("{k}={round}")).collect();
        let mut mset: Vec<&[u8]> = vec![b"MSET"];
        for (k, v) in keys.iter().zip(&values) {
            mset.push(k.as_bytes());
            mset.push(v.as_bytes());
        }
        batch.extend(Client::encode(&mset));
        let mut mget: Vec<&[u8]> = vec![b"MGET"];
        mget.extend(keys.iter().map(|k| k.as_bytes()));
        batch.extend(Client::encode(&mget));
    }
    c.send_raw(&batch);
    for round in 0..ROUNDS {
        assert_eq!(c.read_reply(), ok(), "MSET of round {round}");
        let expected: Vec<Frame> = keys.iter().map(|k| bulk(format!("{k}={round}"))).collect();
        assert_array(c.read_reply(), &expected);
    }
}
