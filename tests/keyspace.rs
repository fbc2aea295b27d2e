//! Commands that span the keyspace: SCAN over every backend (cursors naming the backend),
//! KEYS merged under a cap, RANDOMKEY; and per-key introspection (OBJECT, MEMORY USAGE,
//! DUMP/RESTORE) and the HELP subcommands, routed like any other command.

mod common;

use std::collections::HashSet;

use common::{Cluster, Frame, bulk, err, int, ok};

/// Runs a whole SCAN with `extra` arguments and returns every key it gave (with repeats).
fn scan_all(c: &mut common::Client, extra: &[&str]) -> Vec<String> {
    let mut cursor = "0".to_string();
    let mut keys = Vec::new();
    let mut calls = 0;
    loop {
        let mut args = vec!["SCAN", cursor.as_str()];
        args.extend_from_slice(extra);
        let Frame::Array(reply) = c.cmd_str(&args) else {
            panic!("SCAN did not return an array");
        };
        let Frame::Bulk(next) = &reply[0] else {
            panic!("SCAN cursor {reply:?}");
        };
        let Frame::Array(page) = &reply[1] else {
            panic!("SCAN keys {reply:?}");
        };
        keys.extend(page.iter().map(Frame::as_text));
        cursor = String::from_utf8(next.clone()).expect("cursor");
        calls += 1;
        assert!(calls < 100_000, "SCAN does not end");
        if cursor == "0" {
            return keys;
        }
    }
}

#[test]
fn scan_visits_every_backend_and_returns_each_key() {
    let cluster = Cluster::start(4);
    let mut c = cluster.client();
    let mut written = HashSet::new();
    for i in 0..1000 {
        let key = format!("scan:{i}");
        assert_eq!(c.cmd_str(&["SET", &key, "v"]), ok());
        written.insert(key);
    }
    for i in 0..50 {
        assert_eq!(c.cmd_str(&["SADD", &format!("scanset:{i}"), "m"]), int(1));
    }
    let sizes = cluster.dbsizes();
    assert!(
        sizes.iter().all(|&n| n > 0),
        "keys on every backend: {sizes:?}"
    );

    let found = scan_all(&mut c, &["MATCH", "scan:*", "COUNT", "37"]);
    let unique: HashSet<String> = found.iter().cloned().collect();
    assert_eq!(
        unique, written,
        "a full SCAN returns exactly the keys that matched"
    );
    let sets = scan_all(&mut c, &["TYPE", "set"]);
    assert_eq!(sets.len(), 50);
    assert!(sets.iter().all(|k| k.starts_with("scanset:")));
    assert_eq!(
        c.cmd_str(&["SCAN", "notanumber"]),
        err("ERR invalid cursor")
    );
}

#[test]
fn keys_is_merged_and_capped_and_randomkey_finds_a_key() {
    let cluster = Cluster::start_with(3, "max_keys_reply = 100", "");
    let mut c = cluster.client();
    assert_eq!(c.cmd_str(&["RANDOMKEY"]), Frame::Null);
    for i in 0..60 {
        assert_eq!(c.cmd_str(&["SET", &format!("k:{i}"), "v"]), ok());
    }
    let Frame::Array(keys) = c.cmd_str(&["KEYS", "k:*"]) else {
        panic!("KEYS");
    };
    assert_eq!(keys.len(), 60);
    let Frame::Bulk(random) = c.cmd_str(&["RANDOMKEY"]) else {
        panic!("RANDOMKEY");
    };
    assert!(random.starts_with(b"k:"));
    for i in 60..150 {
        assert_eq!(c.cmd_str(&["SET", &format!("k:{i}"), "v"]), ok());
    }
    assert!(matches!(
        c.cmd_str(&["KEYS", "*"]),
        Frame::Error(e) if e.contains("max_keys_reply") && e.contains("SCAN")
    ));
}

#[test]
fn per_key_introspection_and_help_subcommands() {
    let cluster = Cluster::start(3);
    let mut c = cluster.client();
    let mut direct = cluster.backend(0);
    for i in 0..3 {
        let key = cluster.key_on(i, "intro");
        assert_eq!(c.cmd_str(&["SET", &key, "12345"]), ok());
        assert_eq!(c.cmd_str(&["OBJECT", "ENCODING", &key]), bulk("int"));
        assert!(matches!(
            c.cmd_str(&["OBJECT", "IDLETIME", &key]),
            Frame::Integer(_)
        ));
        assert!(matches!(c.cmd_str(&["MEMORY", "USAGE", &key]), Frame::Integer(n) if n > 0));
        let Frame::Bulk(dump) = c.cmd_str(&["DUMP", &key]) else {
            panic!("DUMP");
        };
        let copy = cluster.key_on((i + 1) % 3, "restored");
        assert_eq!(c.cmd(&[b"RESTORE", copy.as_bytes(), b"0", &dump]), ok());
        assert_eq!(c.cmd_str(&["GET", &copy]), bulk("12345"));
        assert_eq!(c.cmd_str(&["DEL", &copy]), int(1));
    }
    for help in [
        &["OBJECT", "HELP"][..],
        &["XINFO", "HELP"],
        &["XGROUP", "HELP"],
        &["MEMORY", "HELP"],
    ] {
        assert_eq!(c.cmd_str(help), direct.cmd_str(help), "{help:?}");
    }
}
