//! Active health: a backend is up only once it answers, down after `failure_limit` failures
//! of any kind (its keys then fail at once), probed again every `retry_timeout_ms`, and with
//! `auto_eject` taken out of the ring meanwhile. A backend that accepts and closes costs
//! little, a slow command fails only itself, and a host name follows its address.

mod common;

use std::net::TcpListener;
use std::time::{Duration, Instant};

use common::ops::{status, wait_for};
use common::{Client, Frame, Redis, Shardis, TempDir, shardis_config};

fn backends(redis: &[Redis]) -> Vec<(&'static str, String)> {
    redis
        .iter()
        .zip(["s1", "s2", "s3", "s4"])
        .map(|(r, n)| (n, r.addr()))
        .collect()
}

fn backend_state(shardis: &Shardis, name: &str) -> String {
    status(shardis)["backends"]
        .as_array()
        .expect("backends")
        .iter()
        .find(|b| b["name"] == name)
        .map(|b| b["state"].as_str().unwrap_or("").to_string())
        .unwrap_or_default()
}

const HEALTH: &str =
    "timeout_ms = 1000\nhealth_interval_ms = 200\nfailure_limit = 2\nretry_timeout_ms = 200";

#[test]
fn a_stopped_backend_fails_fast_once_down_and_serves_again_when_back() {
    let mut redis: Vec<Redis> = (0..4).map(|_| Redis::start()).collect();
    let cfg = shardis_config(&backends(&redis), HEALTH);
    let shardis = Shardis::start(&cfg);
    let on = |i: usize| common::ops::key_on(&cfg, i, "h");
    let mut c = shardis.client();
    for i in 0..4 {
        assert_eq!(c.cmd_str(&["SET", &on(i), "v"]), Frame::Simple("OK".into()));
    }
    redis[1].kill();
    wait_for(Duration::from_secs(10), "s2 to be marked down", || {
        (backend_state(&shardis, "s2") == "down").then_some(())
    });
    // Its keys fail at once, well under timeout_ms; the others are unaffected.
    for _ in 0..20 {
        let t = Instant::now();
        match c.cmd_str(&["GET", &on(1)]) {
            Frame::Error(e) => assert!(e.contains("s2"), "{e}"),
            other => panic!("a key of a down backend: {other:?}"),
        }
        assert!(
            t.elapsed() < Duration::from_millis(100),
            "{:?}",
            t.elapsed()
        );
        for i in [0, 2, 3] {
            assert_eq!(c.cmd_str(&["GET", &on(i)]), Frame::Bulk(b"v".to_vec()));
        }
    }
    let ready = common::ops::http_get(shardis.admin, "/readyz?strict=1");
    assert_eq!(ready.status, 503);
    assert!(ready.body.contains("down: s2"), "{}", ready.body);
    // Back: it serves again within about one health interval.
    redis[1].restart();
    let back = Instant::now();
    wait_for(Duration::from_secs(5), "s2 to serve again", || {
        matches!(c.cmd_str(&["SET", &on(1), "w"]), Frame::Simple(_)).then_some(())
    });
    assert!(
        back.elapsed() < Duration::from_millis(1500),
        "{:?}",
        back.elapsed()
    );
    assert_eq!(backend_state(&shardis, "s2"), "up");
    assert_eq!(
        common::ops::http_get(shardis.admin, "/readyz?strict=1").status,
        200
    );
}

#[test]
fn with_auto_eject_the_keys_of_a_down_backend_go_to_the_others() {
    let mut redis: Vec<Redis> = (0..3).map(|_| Redis::start()).collect();
    let cfg = shardis_config(&backends(&redis), &format!("{HEALTH}\nauto_eject = true"));
    let shardis = Shardis::start(&cfg);
    let key = common::ops::key_on(&cfg, 2, "ej");
    let mut c = shardis.client();
    assert_eq!(
        c.cmd_str(&["SET", &key, "before"]),
        Frame::Simple("OK".into())
    );
    redis[2].kill();
    wait_for(Duration::from_secs(10), "s3 to be ejected", || {
        let st = status(&shardis);
        st["backends"][2]["ejected"]
            .as_bool()
            .unwrap_or(false)
            .then_some(())
    });
    // Served by another backend meanwhile (the value written before is on the dead one).
    assert_eq!(
        c.cmd_str(&["SET", &key, "during"]),
        Frame::Simple("OK".into())
    );
    assert_eq!(c.cmd_str(&["GET", &key]), Frame::Bulk(b"during".to_vec()));
    let holders: Vec<usize> = (0..2)
        .filter(|&i| redis[i].client().cmd_str(&["EXISTS", &key]) == Frame::Integer(1))
        .collect();
    assert_eq!(
        holders.len(),
        1,
        "the key moved to one of the live backends"
    );
    // Back in the ring when it returns.
    redis[2].restart();
    wait_for(Duration::from_secs(10), "s3 back in the ring", || {
        let st = status(&shardis);
        (!st["backends"][2]["ejected"].as_bool().unwrap_or(true)).then_some(())
    });
    assert_eq!(
        c.cmd_str(&["SET", &key, "after"]),
        Frame::Simple("OK".into())
    );
    assert_eq!(
        redis[2].client().cmd_str(&["GET", &key]),
        Frame::Bulk(b"after".to_vec())
    );
}

#[test]
fn a_backend_that_accepts_and_closes_costs_little_cpu_and_few_log_lines() {
    // Accepts every connection and closes it at once, like a Redis at maxclients or a
    // port-forward with nothing behind it.
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr").to_string();
    std::thread::spawn(move || {
        for s in listener.incoming() {
            drop(s);
        }
    });
    let redis = Redis::start();
    let cfg = shardis_config(&[("s1", redis.addr()), ("closer", addr)], "");
    let shardis = Shardis::start(&cfg);
    std::thread::sleep(Duration::from_millis(500));
    let cpu0 = shardis.cpu_time();
    let lines0 = shardis.stderr().lines().count();
    std::thread::sleep(Duration::from_secs(3));
    let cpu = shardis.cpu_time() - cpu0;
    let lines = shardis.stderr().lines().count() - lines0;
    assert!(cpu < Duration::from_millis(150), "{cpu:?} of CPU in 3 s");
    assert!(
        lines <= 3,
        "{lines} log lines in 3 s:\n{}",
        shardis.stderr()
    );
    assert_eq!(backend_state(&shardis, "closer"), "down");
}

#[test]
fn a_stalled_backend_fails_only_what_it_holds() {
    let redis: Vec<Redis> = (0..2).map(|_| Redis::start()).collect();
    // Health checks off: only the requests themselves count here.
    let cfg = shardis_config(
        &backends(&redis),
        "timeout_ms = 500\nhealth_interval_ms = 0\nfailure_limit = 100",
    );
    let shardis = Shardis::start(&cfg);
    let stalled_key = common::ops::key_on(&cfg, 0, "st");
    let other_key = common::ops::key_on(&cfg, 1, "ok");
    let mut setup = shardis.client();
    assert_eq!(
        setup.cmd_str(&["SET", &stalled_key, "s"]),
        Frame::Simple("OK".into())
    );
    assert_eq!(
        setup.cmd_str(&["SET", &other_key, "o"]),
        Frame::Simple("OK".into())
    );

    let mut sleeper = redis[0].debug_sleep(1.5);
    let started = Instant::now();
    let mut first = shardis.client();
    first.send_raw(&Client::encode(&[b"GET", stalled_key.as_bytes()]));
    // Another client of the other backend sees no error and no delay.
    let mut other = shardis.client();
    while started.elapsed() < Duration::from_millis(700) {
        let t = Instant::now();
        assert_eq!(
            other.cmd_str(&["GET", &other_key]),
            Frame::Bulk(b"o".to_vec())
        );
        assert!(
            t.elapsed() < Duration::from_millis(100),
            "{:?}",
            t.elapsed()
        );
    }
    // The first request timed out at its own deadline...
    assert!(matches!(first.read_reply(), Frame::Error(e) if e.contains("timed out")));
    // ...and one sent after that is not failed with it: it waits for its own deadline or for
    // the stall to end.
    let second_sent = Instant::now();
    let mut second = shardis.client();
    let reply = second.cmd_str(&["GET", &stalled_key]);
    match reply {
        Frame::Error(e) => {
            assert!(e.contains("timed out"), "{e}");
            assert!(
                second_sent.elapsed() >= Duration::from_millis(450),
                "failed early: {:?}",
                second_sent.elapsed()
            );
        }
        Frame::Bulk(v) => assert_eq!(v, b"s"),
        other => panic!("{other:?}"),
    }
    assert_eq!(sleeper.read_reply(), Frame::Simple("OK".into()));
    // Serving again within a second of the stall ending, on every connection.
    let end = Instant::now();
    for c in [&mut first, &mut second, &mut other] {
        let reply = c.cmd_str(&["GET", &stalled_key]);
        assert_eq!(reply, Frame::Bulk(b"s".to_vec()));
    }
    assert!(
        end.elapsed() < Duration::from_secs(1),
        "{:?}",
        end.elapsed()
    );
}

#[test]
fn a_backend_named_by_host_follows_its_address() {
    // Two servers on the same port of two loopback addresses; the name points at one, then
    // at the other.
    let port = common::free_port();
    let (Some(a), Some(b)) = (
        Redis::start_on("127.0.0.2", port),
        Redis::start_on("127.0.0.3", port),
    ) else {
        panic!("cannot start redis-servers on 127.0.0.2 and 127.0.0.3");
    };
    let dir = TempDir::new("hosts");
    let hosts = dir.path().join("hosts");
    std::fs::write(&hosts, "127.0.0.2 redis-a.test\n").expect("hosts");
    let cfg = shardis_config(
        &[("s1", format!("redis-a.test:{port}"))],
        "dns_refresh_ms = 200",
    );
    let hosts_path = hosts.display().to_string();
    let shardis = Shardis::start_with_env(&cfg, &[], &[("SHARDIS_HOSTS_FILE", &hosts_path)]);
    let mut c = shardis.client();
    assert_eq!(c.cmd_str(&["SET", "k", "on-a"]), Frame::Simple("OK".into()));
    assert_eq!(
        a.client().cmd_str(&["GET", "k"]),
        Frame::Bulk(b"on-a".to_vec())
    );
    std::fs::write(&hosts, "127.0.0.3 redis-a.test\n").expect("hosts");
    wait_for(
        Duration::from_secs(10),
        "the link to move to 127.0.0.3",
        || (c.cmd_str(&["GET", "k"]) == Frame::Null).then_some(()),
    );
    assert_eq!(c.cmd_str(&["SET", "k", "on-b"]), Frame::Simple("OK".into()));
    assert_eq!(
        b.client().cmd_str(&["GET", "k"]),
        Frame::Bulk(b"on-b".to_vec())
    );
    assert_eq!(
        a.client().cmd_str(&["GET", "k"]),
        Frame::Bulk(b"on-a".to_vec())
    );
}

#[test]
fn localhost_works_as_a_backend_address() {
    let redis = Redis::start();
    let shardis = Shardis::start(&shardis_config(
        &[("s1", format!("localhost:{}", redis.port))],
        "",
    ));
    let mut c = shardis.client();
    assert_eq!(c.cmd_str(&["SET", "k", "v"]), Frame::Simple("OK".into()));
    assert_eq!(
        redis.client().cmd_str(&["GET", "k"]),
        Frame::Bulk(b"v".to_vec())
    );
}

#[test]
fn dns_discovery_makes_one_backend_per_address() {
    let port = common::free_port();
    let servers: Vec<Redis> = ["127.0.0.2", "127.0.0.3", "127.0.0.4"]
        .iter()
        .map(|ip| Redis::start_on(ip, port).expect("redis on a loopback address"))
        .collect();
    let dir = TempDir::new("hosts");
    let hosts = dir.path().join("hosts");
    std::fs::write(&hosts, "127.0.0.2 pool.test\n127.0.0.3 pool.test\n").expect("hosts");
    let cfg = shardis_config(
        &[("pool", format!("pool.test:{port}"))],
        // murmur: keys that differ only in their last digits spread well with it.
        "discovery = \"dns\"\ndns_refresh_ms = 200\nhash = \"murmur\"",
    );
    let hosts_path = hosts.display().to_string();
    let shardis = Shardis::start_with_env(&cfg, &[], &[("SHARDIS_HOSTS_FILE", &hosts_path)]);
    let names = |s: &Shardis| -> Vec<String> {
        status(s)["backends"]
            .as_array()
            .expect("backends")
            .iter()
            .map(|b| b["name"].as_str().unwrap_or("").to_string())
            .collect()
    };
    assert_eq!(
        names(&shardis),
        vec![format!("127.0.0.2:{port}"), format!("127.0.0.3:{port}")]
    );
    std::fs::write(
        &hosts,
        "127.0.0.2 pool.test\n127.0.0.3 pool.test\n127.0.0.4 pool.test\n",
    )
    .expect("hosts");
    wait_for(
        Duration::from_secs(10),
        "the third address to become a backend",
        || (names(&shardis).len() == 3).then_some(()),
    );
    let mut c = shardis.client();
    for i in 0..300 {
        assert_eq!(
            c.cmd_str(&["SET", &format!("d:{i}"), "v"]),
            Frame::Simple("OK".into())
        );
    }
    let sizes: Vec<Frame> = servers
        .iter()
        .map(|s| s.client().cmd_str(&["DBSIZE"]))
        .collect();
    assert!(
        sizes
            .iter()
            .all(|n| matches!(n, Frame::Integer(n) if *n > 0)),
        "every discovered backend gets keys: {sizes:?}; {}",
        status(&shardis)
    );
}
