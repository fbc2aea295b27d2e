//! 100 concurrent clients through one shardis, each on its own keys: every reply is the
//! client's own (no crosstalk on the shared backend links), and every acknowledged write is
//! read back through the proxy and found on exactly the backend `shardis route` names.

mod common;

use std::collections::HashMap;
use std::sync::{Arc, Barrier};
use std::thread;

use common::{Client, Cluster, Frame, bulk, int, ok};

const CLIENTS: usize = 100;
const KEYS_PER_CLIENT: usize = 50;

/// Client `t`'s key `i`, varied at the front so the keys spread over the backends.
fn key(t: usize, i: usize) -> String {
    let mix = ((t * 1000 + i) as u32).wrapping_mul(0x9e37_79b9);
    format!("{mix:08x}:client{t}:key{i}")
}

fn value(t: usize, i: usize, round: usize) -> String {
    format!("client {t} key {i} round {round}")
}

/// Runs `work(t, client)` on `CLIENTS` threads at once, each with its own connection.
fn run_clients(cluster: &Cluster, work: impl Fn(usize, &mut Client) + Send + Sync + 'static) {
    let work = Arc::new(work);
    let start = Arc::new(Barrier::new(CLIENTS));
    let threads: Vec<_> = (0..CLIENTS)
        .map(|t| {
            let mut c = cluster.client();
            let (work, start) = (work.clone(), start.clone());
            thread::spawn(move || {
                start.wait();
                work(t, &mut c);
            })
        })
        .collect();
    for (t, th) in threads.into_iter().enumerate() {
        if let Err(panic) = th.join() {
            std::panic::resume_unwind(Box::new(format!("client {t}: {panic:?}")));
        }
    }
}

#[test]
fn hundred_clients_no_crosstalk_every_write_stored() {
    let cluster = Cluster::start(4);
    run_clients(&cluster, |t, c| {
        let counter = format!("counter:{t}");
        for i in 0..KEYS_PER_CLIENT {
            let k = key(t, i);
            // One at a time, then pipelined: both must come back as this client's own.
            assert_eq!(c.cmd_str(&["SET", &k, &value(t, i, 0)]), ok(), "{k}");
            assert_eq!(c.cmd_str(&["GET", &k]), bulk(value(t, i, 0)), "{k}");
            let mut pipe = Client::encode(&[b"SET", k.as_bytes(), value(t, i, 1).as_bytes()]);
            pipe.extend(Client::encode(&[b"GET", k.as_bytes()]));
            pipe.extend(Client::encode(&[b"INCR", counter.as_bytes()]));
            pipe.extend(Client::encode(&[b"INCR", b"shared:counter"]));
            c.send_raw(&pipe);
            assert_eq!(c.read_reply(), ok(), "{k}");
            assert_eq!(c.read_reply(), bulk(value(t, i, 1)), "{k}");
            assert_eq!(c.read_reply(), int(i as i64 + 1), "{counter}");
            assert!(
                matches!(c.read_reply(), Frame::Integer(n) if n >= 1),
                "shared counter"
            );
        }
    });

    let mut c = cluster.client();
    // Every increment of the shared counter was counted once.
    assert_eq!(
        c.cmd_str(&["GET", "shared:counter"]),
        bulk((CLIENTS * KEYS_PER_CLIENT).to_string())
    );
    // Every acknowledged write reads back through the proxy.
    for t in 0..CLIENTS {
        let keys: Vec<String> = (0..KEYS_PER_CLIENT).map(|i| key(t, i)).collect();
        let mut mget: Vec<&str> = vec!["MGET"];
        mget.extend(keys.iter().map(String::as_str));
        let expected = (0..KEYS_PER_CLIENT).map(|i| bulk(value(t, i, 1))).collect();
        assert_eq!(c.cmd_str(&mget), Frame::Array(expected), "client {t}");
        assert_eq!(
            c.cmd_str(&["GET", &format!("counter:{t}")]),
            bulk(KEYS_PER_CLIENT.to_string())
        );
    }

    // ... and is on exactly the backend `shardis route` names, with the value written.
    let found = cluster.locate();
    assert_eq!(found.len(), CLIENTS * KEYS_PER_CLIENT + CLIENTS + 1);
    let all: Vec<(usize, usize, String)> = (0..CLIENTS)
        .flat_map(|t| (0..KEYS_PER_CLIENT).map(move |i| (t, i, key(t, i))))
        .collect();
    let mut per_backend: HashMap<usize, Vec<&(usize, usize, String)>> = HashMap::new();
    for chunk in all.chunks(1000) {
        let names: Vec<&str> = chunk.iter().map(|(_, _, k)| k.as_str()).collect();
        for (entry, owner) in chunk.iter().zip(cluster.route(&names)) {
            assert_eq!(
                found.get(entry.2.as_bytes()),
                Some(&owner),
                "{} not (only) on s{}",
                entry.2,
                owner + 1
            );
            per_backend.entry(owner).or_default().push(entry);
        }
    }
    assert_eq!(per_backend.len(), 4, "keys did not use all four backends");
    for (owner, entries) in per_backend {
        let mut direct = cluster.backend(owner);
        let mut mget: Vec<&str> = vec!["MGET"];
        mget.extend(entries.iter().map(|(_, _, k)| k.as_str()));
        let expected = entries
            .iter()
            .map(|(t, i, _)| bulk(value(*t, *i, 1)))
            .collect();
        assert_eq!(
            direct.cmd_str(&mget),
            Frame::Array(expected),
            "values on s{}",
            owner + 1
        );
    }
}

/// Split commands from many clients at once: each merged MGET holds exactly the client's own
/// values, in its key order, never a part of another client's reply.
#[test]
fn hundred_clients_fanning_out_at_once() {
    let cluster = Cluster::start(4);
    run_clients(&cluster, |t, c| {
        let keys: Vec<String> = (0..8).map(|i| key(t, i)).collect();
        for round in 0..20 {
            let mut mset = vec!["MSET".to_string()];
            for (i, k) in keys.iter().enumerate() {
                mset.push(k.clone());
                mset.push(value(t, i, round));
            }
            let mset: Vec<&str> = mset.iter().map(String::as_str).collect();
            assert_eq!(c.cmd_str(&mset), ok());
            // Reversed order, with a missing key in the middle.
            let mut mget = vec!["MGET"];
            mget.extend(keys[4..].iter().rev().map(String::as_str));
            mget.push("missing");
            mget.extend(keys[..4].iter().rev().map(String::as_str));
            let mut expected: Vec<Frame> = (4..8).rev().map(|i| bulk(value(t, i, round))).collect();
            expected.push(Frame::Null);
            expected.extend((0..4).rev().map(|i| bulk(value(t, i, round))));
            assert_eq!(c.cmd_str(&mget), Frame::Array(expected), "client {t}");
            let mut exists = vec!["EXISTS"];
            exists.extend(keys.iter().map(String::as_str));
            exists.push("missing");
            assert_eq!(c.cmd_str(&exists), int(8));
        }
        let mut del = vec!["DEL"];
        del.extend(keys.iter().map(String::as_str));
        assert_eq!(c.cmd_str(&del), int(8));
    });
    assert_eq!(cluster.dbsizes(), vec![0, 0, 0, 0]);
}
