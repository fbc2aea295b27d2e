//! Several pools behind prefix routes: `user:` to pool a, `session:` to pool b (which removes
//! the prefix), everything else to the catch-all c. Every key is checked on the backends
//! directly, multi-key commands split by pool and merge in order, the keyspace commands cover
//! every pool, and `shardis route` agrees with the live proxy.

mod common;

use std::collections::HashMap;
use std::process::Command;

use common::ops::{http_get, start_redises};
use common::{Frame, Redis, Shardis, TempDir};

/// Pools a, b and c (two backends each, named `{pool}1`, `{pool}2`), the three routes, and
/// `extra` appended.
fn three_pools(redis: &[Redis], extra: &str) -> String {
    let mut out =
        String::from("[server]\nlisten = \"127.0.0.1:0\"\n\n[admin]\nlisten = \"127.0.0.1:0\"\n");
    for (p, name) in ["a", "b", "c"].iter().enumerate() {
        out.push_str(&format!(
            "\n[[pools]]\nname = \"{name}\"\nbackends = [\n  {{ name = \"{name}1\", address = \"{}\" }},\n  {{ name = \"{name}2\", address = \"{}\" }},\n]\n",
            redis[2 * p].addr(),
            redis[2 * p + 1].addr()
        ));
    }
    out.push_str(
        "\n[routing]\ncatch_all = \"c\"\n\n[[routes]]\nprefix = \"user:\"\npool = \"a\"\n\n\
         [[routes]]\nprefix = \"session:\"\npool = \"b\"\nremove_prefix = true\n",
    );
    out.push_str(extra);
    out
}

/// `shardis route --config FILE KEYS...`: its output lines, split at tabs, and whether it
/// succeeded, with stderr.
fn route(config: &str, keys: &[String]) -> (Vec<Vec<String>>, bool, String) {
    let dir = TempDir::new("route");
    let path = dir.path().join("shardis.toml");
    std::fs::write(&path, config).expect("write config");
    let out = Command::new(env!("CARGO_BIN_EXE_shardis"))
        .args(["route", "--config"])
        .arg(&path)
        .arg("--")
        .args(keys)
        .output()
        .expect("shardis route");
    let lines = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| l.split('\t').map(str::to_string).collect())
        .collect();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    (lines, out.status.success(), stderr)
}

/// The backends (by index into `redis`) that hold `key` as stored.
fn holders(redis: &[Redis], key: &str) -> Vec<usize> {
    (0..redis.len())
        .filter(|&i| redis[i].client().cmd_str(&["EXISTS", key]) == Frame::Integer(1))
        .collect()
}

fn ok() -> Frame {
    Frame::Simple("OK".into())
}

fn bulk(s: &str) -> Frame {
    Frame::Bulk(s.as_bytes().to_vec())
}

#[test]
fn each_key_lands_on_one_backend_of_its_pool_as_shardis_route_says() {
    let redis = start_redises(6);
    let config = three_pools(&redis, "");
    let proxy = Shardis::start(&config);
    let mut c = proxy.client();
    let mut keys = Vec::new();
    for i in 0..40 {
        keys.push(format!("user:{i}"));
        keys.push(format!("session:{i}"));
        keys.push(format!("other:{i}"));
    }
    // A key equal to a prefix takes its route.
    keys.push("user:".to_string());
    let (lines, success, stderr) = route(&config, &keys);
    assert!(success, "{stderr}");
    assert_eq!(lines.len(), keys.len());
    let address: HashMap<String, usize> = redis
        .iter()
        .enumerate()
        .map(|(i, r)| (r.addr(), i))
        .collect();
    for (key, line) in keys.iter().zip(&lines) {
        assert_eq!(c.cmd_str(&["SET", key, key]), ok(), "{key}");
        let [shown, pool, backend, addr] = &line[..] else {
            panic!("not KEY<TAB>POOL<TAB>BACKEND<TAB>ADDRESS: {line:?}");
        };
        assert_eq!(shown, key);
        let (want_pool, stored) = if key.starts_with("user:") {
            ("a", key.as_str())
        } else if let Some(rest) = key.strip_prefix("session:") {
            ("b", rest)
        } else {
            ("c", key.as_str())
        };
        assert_eq!(pool, want_pool, "{key}");
        let index = address[addr];
        assert_eq!(backend, &format!("{want_pool}{}", index % 2 + 1), "{key}");
        // On exactly that backend, and on no other of any pool.
        assert_eq!(
            holders(&redis, stored),
            vec![index],
            "{key} stored as {stored}"
        );
        assert_eq!(redis[index].client().cmd_str(&["GET", stored]), bulk(key));
        assert_eq!(c.cmd_str(&["GET", key]), bulk(key));
    }
    // Both backends of every pool got keys.
    for (i, r) in redis.iter().enumerate() {
        let n = r.client().cmd_str(&["DBSIZE"]);
        assert!(
            matches!(n, Frame::Integer(n) if n > 0),
            "backend {i}: {n:?}"
        );
    }
}

#[test]
fn a_pool_places_keys_as_it_would_alone() {
    let redis = start_redises(6);
    let config = three_pools(&redis, "");
    // Pool a alone, and pool b alone (whose keys are sent without their prefix).
    let alone = |p: usize, name: &str| {
        format!(
            "[server]\nlisten = \"127.0.0.1:0\"\n[[pools]]\nname = \"{name}\"\nbackends = [\n  {{ name = \"{name}1\", address = \"{}\" }},\n  {{ name = \"{name}2\", address = \"{}\" }},\n]\n",
            redis[2 * p].addr(),
            redis[2 * p + 1].addr()
        )
    };
    let users: Vec<String> = (0..200).map(|i| format!("user:{i}")).collect();
    let sessions: Vec<String> = (0..200).map(|i| format!("session:{i}")).collect();
    let bare: Vec<String> = (0..200).map(|i| i.to_string()).collect();
    let backend = |config: &str, keys: &[String]| -> Vec<String> {
        let (lines, success, stderr) = route(config, keys);
        assert!(success, "{stderr}");
        lines.into_iter().map(|l| l[2].clone()).collect()
    };
    assert_eq!(backend(&config, &users), backend(&alone(0, "a"), &users));
    assert_eq!(backend(&config, &sessions), backend(&alone(1, "b"), &bare));
}

#[test]
fn multi_key_commands_split_by_pool_and_merge_in_order() {
    let redis = start_redises(6);
    let config = three_pools(&redis, "");
    let proxy = Shardis::start(&config);
    let mut c = proxy.client();
    let keys: Vec<String> = (0..10)
        .flat_map(|i| [format!("user:{i}"), format!("session:{i}"), format!("k{i}")])
        .collect();
    let mut mset = vec!["MSET".to_string()];
    for k in &keys {
        mset.extend([k.clone(), format!("v-{k}")]);
    }
    let args: Vec<&str> = mset.iter().map(String::as_str).collect();
    assert_eq!(c.cmd_str(&args), ok());
    // Every key of the MSET is stored in its pool, without a removed prefix.
    assert_eq!(holders(&redis, "session:3"), Vec::<usize>::new());
    assert_eq!(holders(&redis, "3").len(), 1);
    assert!(holders(&redis, "3")[0] / 2 == 1);
    // MGET across all three pools answers in order, a missing key as nil.
    let mut mget = vec!["MGET", "missing"];
    mget.extend(keys.iter().map(String::as_str));
    let Frame::Array(items) = c.cmd_str(&mget) else {
        panic!("MGET is not an array");
    };
    assert_eq!(items[0], Frame::Null);
    for (k, item) in keys.iter().zip(&items[1..]) {
        assert_eq!(item, &bulk(&format!("v-{k}")), "{k}");
    }
    assert_eq!(
        c.cmd_str(&["EXISTS", "user:1", "session:1", "k1", "nope"]),
        Frame::Integer(3)
    );
    assert_eq!(
        c.cmd_str(&["DEL", "user:1", "session:1", "k1", "nope"]),
        Frame::Integer(3)
    );
    // A command that cannot be split refuses keys of two pools.
    let Frame::Error(e) = c.cmd_str(&["RENAME", "user:2", "k2"]) else {
        panic!("RENAME across pools was not refused");
    };
    assert!(e.starts_with("CROSSSLOT"), "{e}");
    let Frame::Error(e) = c.cmd_str(&["SINTERSTORE", "user:x", "session:y"]) else {
        panic!("SINTERSTORE across pools was not refused");
    };
    assert!(e.starts_with("CROSSSLOT"), "{e}");
    // Within one pool it is served, with the prefixes removed for the backend.
    let candidates: Vec<String> = (2..200).map(|i| format!("session:{i}")).collect();
    let (lines, ..) = route(&config, &candidates);
    let to = lines[1..]
        .iter()
        .find(|l| l[3] == lines[0][3])
        .map(|l| l[0].clone())
        .expect("a session key on the backend of session:2");
    assert_eq!(c.cmd_str(&["RENAME", "session:2", &to]), ok());
    assert_eq!(c.cmd_str(&["GET", &to]), bulk("v-session:2"));
    let b = holders(&redis, &to["session:".len()..]);
    assert!(b.len() == 1 && b[0] / 2 == 1, "{b:?}");
    // A key that is nothing but a removed prefix is an error.
    let Frame::Error(e) = c.cmd_str(&["GET", "session:"]) else {
        panic!("an empty key was sent");
    };
    assert!(e.contains("empty"), "{e}");
}

#[test]
fn the_longest_prefix_wins_whatever_the_order() {
    let redis = start_redises(6);
    // A shorter prefix after a longer one, and a case-insensitive one.
    let extra = "\n[[routes]]\nprefix = \"user:vip:\"\npool = \"b\"\n\n\
                 [[routes]]\nprefix = \"use\"\npool = \"c\"\n\n\
                 [[routes]]\nprefix = \"Cart:\"\npool = \"b\"\ncase_insensitive = true\n";
    let config = three_pools(&redis, extra);
    let proxy = Shardis::start(&config);
    let mut c = proxy.client();
    for (key, pool) in [
        ("user:vip:1", 1),
        ("user:1", 0),
        ("used", 2),
        ("cart:9", 1),
        ("CART:9", 1),
        ("carts", 2),
    ] {
        assert_eq!(c.cmd_str(&["SET", key, "x"]), ok());
        let at = holders(&redis, key);
        assert!(at.len() == 1 && at[0] / 2 == pool, "{key}: {at:?}");
        let (lines, ..) = route(&config, &[key.to_string()]);
        assert_eq!(lines[0][1], ["a", "b", "c"][pool], "{key}");
    }
}

#[test]
fn without_a_catch_all_a_miss_is_an_error_naming_the_key() {
    let redis = start_redises(6);
    let config = three_pools(&redis, "\n[[routes]]\nprefix = \"other:\"\npool = \"c\"\n")
        .replace("catch_all = \"c\"\n", "");
    let proxy = Shardis::start(&config);
    let mut c = proxy.client();
    let Frame::Error(e) = c.cmd_str(&["SET", "orphan:1", "x"]) else {
        panic!("a key without a route was served");
    };
    assert!(e.contains("no route for key 'orphan:1'"), "{e}");
    let Frame::Error(e) = c.cmd_str(&["MGET", "user:1", "orphan:2"]) else {
        panic!("a key without a route was served");
    };
    assert!(e.contains("'orphan:2'"), "{e}");
    assert_eq!(c.cmd_str(&["SET", "user:1", "x"]), ok());
    let (lines, success, stderr) = route(&config, &["orphan:1".into(), "user:1".into()]);
    assert!(!success);
    assert!(stderr.contains("no route for key 'orphan:1'"), "{stderr}");
    assert_eq!(lines.len(), 1);
    assert_eq!(lines[0][1], "a");
}

#[test]
fn keyspace_commands_cover_every_pool() {
    let redis = start_redises(6);
    let proxy = Shardis::start(&three_pools(&redis, ""));
    let mut c = proxy.client();
    for i in 0..30 {
        for k in [format!("user:{i}"), format!("session:{i}"), format!("k{i}")] {
            assert_eq!(c.cmd_str(&["SET", &k, "v"]), ok());
        }
    }
    assert_eq!(c.cmd_str(&["DBSIZE"]), Frame::Integer(90));
    let Frame::Array(all) = c.cmd_str(&["KEYS", "*"]) else {
        panic!("KEYS is not an array");
    };
    assert_eq!(all.len(), 90);
    // SCAN walks every backend of every pool.
    let mut cursor = "0".to_string();
    let mut seen = std::collections::HashSet::new();
    loop {
        let Frame::Array(reply) = c.cmd_str(&["SCAN", &cursor, "COUNT", "7"]) else {
            panic!("SCAN is not an array");
        };
        let (Frame::Bulk(next), Frame::Array(keys)) = (&reply[0], &reply[1]) else {
            panic!("bad SCAN reply");
        };
        seen.extend(keys.iter().map(Frame::as_text));
        cursor = String::from_utf8_lossy(next).into_owned();
        if cursor == "0" {
            break;
        }
    }
    assert_eq!(seen.len(), 90);
    assert_eq!(c.cmd_str(&["FLUSHALL"]), ok());
    for r in &redis {
        assert_eq!(r.client().cmd_str(&["DBSIZE"]), Frame::Integer(0));
    }
    assert_eq!(c.cmd_str(&["DBSIZE"]), Frame::Integer(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_client_scans_and_mgets_across_pools() {
    let redis = start_redises(6);
    let proxy = Shardis::start(&three_pools(&redis, ""));
    let client = redis::Client::open(format!("redis://{}/", proxy.addr)).expect("client");
    let mut con = client
        .get_multiplexed_async_connection()
        .await
        .expect("connect");
    let keys: Vec<String> = (0..50)
        .flat_map(|i| [format!("user:{i}"), format!("session:{i}"), format!("k{i}")])
        .collect();
    for k in &keys {
        let () = redis::cmd("SET")
            .arg(k)
            .arg(k)
            .query_async(&mut con)
            .await
            .expect("SET");
    }
    let got: Vec<Option<String>> = redis::cmd("MGET")
        .arg(&keys)
        .query_async(&mut con)
        .await
        .expect("MGET");
    let want: Vec<Option<String>> = keys.iter().cloned().map(Some).collect();
    assert_eq!(got, want);
    let mut iter: redis::AsyncIter<String> = redis::cmd("SCAN")
        .cursor_arg(0)
        .arg("COUNT")
        .arg(10)
        .clone()
        .iter_async(&mut con)
        .await
        .expect("SCAN");
    let mut n = 0;
    while iter.next_item().await.is_some() {
        n += 1;
    }
    assert_eq!(n, keys.len());
}

#[test]
fn status_info_and_metrics_name_each_pool() {
    let redis = start_redises(6);
    let proxy = Shardis::start(&three_pools(&redis, ""));
    let mut c = proxy.client();
    assert_eq!(c.cmd_str(&["SET", "user:1", "x"]), ok());
    let status = common::ops::status(&proxy);
    let pools: Vec<String> = status["backends"]
        .as_array()
        .expect("backends")
        .iter()
        .map(|b| b["pool"].as_str().unwrap_or_default().to_string())
        .collect();
    assert_eq!(pools, ["a", "a", "b", "b", "c", "c"]);
    let Frame::Bulk(info) = c.cmd_str(&["INFO", "backends"]) else {
        panic!("INFO is not a bulk");
    };
    let info = String::from_utf8_lossy(&info).into_owned();
    for p in ["a", "b", "c"] {
        assert!(
            info.contains(&format!("# Backend {p}1\r\npool:{p}\r\n")),
            "{info}"
        );
    }
    let metrics = http_get(proxy.admin, "/metrics").body;
    for b in ["a1", "b2", "c1"] {
        let series = format!(
            "shardis_backend_up{{pool=\"{}\",backend=\"{b}\"}} 1",
            &b[..1]
        );
        assert!(metrics.contains(&series), "{series} not in {metrics}");
    }
}

#[test]
fn a_duplicate_pool_name_or_an_unknown_route_pool_is_refused() {
    let redis = start_redises(6);
    let dir = TempDir::new("check");
    let path = dir.path().join("shardis.toml");
    let bad = three_pools(&redis, "\n[[routes]]\nprefix = \"x:\"\npool = \"nope\"\n").replacen(
        "name = \"b\"",
        "name = \"a\"",
        1,
    );
    std::fs::write(&path, bad).expect("write");
    let out = Command::new(env!("CARGO_BIN_EXE_shardis"))
        .args(["check", "--config"])
        .arg(&path)
        .output()
        .expect("shardis check");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("already the name of pools[0]"), "{err}");
    assert!(err.contains("no pool is named \"nope\""), "{err}");
}
