//! Live reload (SIGHUP): under a steady load, backends are added, removed and reweighted
//! without dropping a client or failing a request, placement afterwards is what `shardis
//! route` says, and a broken file leaves the running configuration in force.

mod common;

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use common::ops::{http_get, metric, status, wait_for};
use common::{Client, Frame, Redis, Shardis, TempDir, find_program, shardis_config};

/// A shardis config over `backends` (name, address, weight).
fn config(backends: &[(&str, String, u32)]) -> String {
    let mut out = String::from(
        "[server]\nlisten = \"127.0.0.1:0\"\n\n[admin]\nlisten = \"127.0.0.1:0\"\n\n[[pools]]\nname = \"main\"\nhash_tag = \"{}\"\ntimeout_ms = 2000\nbackends = [\n",
    );
    for (name, addr, weight) in backends {
        out.push_str(&format!(
            "  {{ name = \"{name}\", address = \"{addr}\", weight = {weight} }},\n"
        ));
    }
    out.push_str("]\n");
    out
}

/// `shardis route` for `keys` with `config`: the backend name of each.
fn route(config: &str, keys: &[String]) -> Vec<String> {
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
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| l.split('\t').nth(2).expect("route line").to_string())
        .collect()
}

/// Waits until the proxy's /status shows `digest`.
fn wait_for_digest(shardis: &Shardis, digest: &str) {
    wait_for(Duration::from_secs(10), "the reload to take effect", || {
        (status(shardis)["config_digest"] == digest).then_some(())
    });
}

fn digest_of(config: &str) -> String {
    shardis::config::Config::parse(config)
        .expect("valid")
        .digest
}

/// redis-benchmark against the proxy for as long as it runs; its output, for errors.
fn benchmark(shardis: &Shardis) -> Child {
    Command::new(find_program("redis-benchmark", "redis-tools"))
        .args(["-h", "127.0.0.1", "-p", &shardis.addr.port().to_string()])
        .args([
            "-t",
            "set,get",
            "-n",
            "100000000",
            "-c",
            "8",
            "-r",
            "10000",
            "-e",
            "-q",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start redis-benchmark")
}

#[test]
fn reloads_under_load_drop_no_client_and_fail_no_request() {
    let redis: Vec<Redis> = (0..4).map(|_| Redis::start()).collect();
    let named = |i: usize, w: u32| (["s1", "s2", "s3", "s4"][i], redis[i].addr(), w);
    let first = config(&[named(0, 1), named(1, 1), named(2, 1)]);
    let shardis = Shardis::start(&first);
    let bench = benchmark(&shardis);

    // A client of our own on keys of s1, which no step changes: every reply must be right.
    let stop = Arc::new(AtomicBool::new(false));
    let failures = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicU64::new(0));
    let keys: Vec<String> = (0..10_000).map(|i| format!("steady:{i}")).collect();
    let steady: Vec<String> = {
        let placed = route(&first, &keys);
        keys.into_iter()
            .zip(placed)
            .filter(|(_, b)| b == "s1")
            .map(|(k, _)| k)
            .take(50)
            .collect()
    };
    let worker = {
        let (stop, failures, done) = (stop.clone(), failures.clone(), done.clone());
        let mut c = shardis.client();
        let steady = steady.clone();
        std::thread::spawn(move || {
            let mut i = 0usize;
            while !stop.load(Ordering::Relaxed) {
                let key = &steady[i % steady.len()];
                let v = i.to_string();
                if c.cmd_str(&["SET", key, &v]) != Frame::Simple("OK".into())
                    || c.cmd_str(&["GET", key]) != Frame::Bulk(v.into_bytes())
                {
                    failures.fetch_add(1, Ordering::Relaxed);
                }
                done.fetch_add(1, Ordering::Relaxed);
                i += 1;
            }
        })
    };
    std::thread::sleep(Duration::from_millis(500));

    let steps = [
        (
            "add s4",
            config(&[named(0, 1), named(1, 1), named(2, 1), named(3, 1)]),
        ),
        (
            "remove s2",
            config(&[named(0, 1), named(2, 1), named(3, 1)]),
        ),
        (
            "reweight s3",
            config(&[named(0, 1), named(2, 3), named(3, 1)]),
        ),
    ];
    for (what, cfg) in &steps {
        shardis.reload(cfg);
        wait_for_digest(&shardis, &digest_of(cfg));
        let before = done.load(Ordering::Relaxed);
        wait_for(
            Duration::from_secs(10),
            "the steady client to go on",
            || (done.load(Ordering::Relaxed) > before + 50).then_some(()),
        );
        assert_eq!(failures.load(Ordering::Relaxed), 0, "after {what}");
    }
    stop.store(true, Ordering::Relaxed);
    worker.join().expect("worker");
    assert_eq!(failures.load(Ordering::Relaxed), 0);

    // redis-benchmark's 8 connections were never dropped and no reply was an error.
    let mut bench = bench;
    assert!(
        bench.try_wait().expect("benchmark status").is_none(),
        "redis-benchmark exited early"
    );
    let _ = bench.kill();
    let out = bench.wait_with_output().expect("benchmark output");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        !text.contains("Error") && !text.contains("rror from server"),
        "{text}"
    );

    // Placement now is what `shardis route` computes from the file in force.
    let last = &steps[2].1;
    let keys: Vec<String> = (0..200).map(|i| format!("placed:{i}")).collect();
    let mut c = shardis.client();
    for k in &keys {
        assert_eq!(c.cmd_str(&["SET", k, "x"]), Frame::Simple("OK".into()));
    }
    let expected = route(last, &keys);
    let index = |name: &str| {
        ["s1", "s2", "s3", "s4"]
            .iter()
            .position(|n| *n == name)
            .expect("name")
    };
    for (k, name) in keys.iter().zip(&expected) {
        let mut direct = redis[index(name)].client();
        assert_eq!(
            direct.cmd_str(&["EXISTS", k]),
            Frame::Integer(1),
            "{k} should be on {name}"
        );
    }
    let text = http_get(shardis.admin, "/metrics").body;
    assert_eq!(
        metric(&text, r#"shardis_config_reloads_total{result="ok"}"#),
        Some(3.0)
    );
    assert_eq!(
        metric(
            &text,
            &format!("shardis_config_info{{digest=\"{}\"}}", digest_of(last))
        ),
        Some(1.0)
    );
}

#[test]
fn a_broken_file_on_sighup_leaves_the_running_configuration() {
    let redis: Vec<Redis> = (0..2).map(|_| Redis::start()).collect();
    let backends: Vec<(&str, String)> = vec![("s1", redis[0].addr()), ("s2", redis[1].addr())];
    let good = shardis_config(&backends, "");
    let shardis = Shardis::start(&good);
    let mut c = shardis.client();
    assert_eq!(c.cmd_str(&["SET", "k", "v"]), Frame::Simple("OK".into()));
    let digest = status(&shardis)["config_digest"]
        .as_str()
        .expect("digest")
        .to_string();

    for broken in [
        "this is { not toml",
        &good.replace("[[pools]]", "[[pools]]\nhash = \"nope\"\ntimeout_ms = 0"),
    ] {
        shardis.reload(broken);
        wait_for(
            Duration::from_secs(10),
            "the rejection to be counted",
            || {
                let text = http_get(shardis.admin, "/metrics").body;
                metric(&text, r#"shardis_config_reloads_total{result="error"}"#)
                    .filter(|n| *n >= 1.0)
            },
        );
        assert_eq!(status(&shardis)["config_digest"], digest.as_str());
        assert_eq!(c.cmd_str(&["GET", "k"]), Frame::Bulk(b"v".to_vec()));
    }
    let log = shardis.stderr();
    // Every problem of the second file is logged, each by its key.
    assert!(log.contains("hash") && log.contains("timeout_ms"), "{log}");
    assert!(log.contains("running configuration stays"), "{log}");
}

#[test]
fn settings_that_need_a_restart_are_reported_and_the_others_apply() {
    let redis = Redis::start();
    let cfg = shardis_config(&[("s1", redis.addr())], "");
    let shardis = Shardis::start(&cfg);
    let mut c = Client::connect(&shardis.addr.to_string());
    assert_eq!(
        c.cmd_str(&["MSET", "a", "1", "b", "2"]),
        Frame::Simple("OK".into())
    );
    assert!(matches!(c.cmd_str(&["KEYS", "*"]), Frame::Array(k) if k.len() == 2));
    let changed = cfg.replace("[server]\n", "[server]\nthreads = 3\nmax_keys_reply = 1\n");
    shardis.reload(&changed);
    wait_for_digest(&shardis, &digest_of(&changed));
    let log = shardis.stderr();
    assert!(
        log.contains("server.threads changed in the file; it takes effect only after a restart"),
        "{log}"
    );
    // The same connection gets the new limit with its next command.
    assert!(matches!(c.cmd_str(&["KEYS", "*"]), Frame::Error(e) if e.contains("max_keys_reply")));
}

#[test]
fn shardis_reload_cli_reloads_through_the_admin_api_and_fails_on_a_broken_file() {
    let (a, b) = (Redis::start(), Redis::start());
    let one = config(&[("s1", a.addr(), 1)]);
    let shardis = Shardis::start(&one);
    let two = config(&[("s1", a.addr(), 1), ("s2", b.addr(), 1)]);
    std::fs::write(shardis.config_path(), &two).expect("rewrite config");
    let cli = |admin: String| {
        Command::new(env!("CARGO_BIN_EXE_shardis"))
            .args(["reload", "--admin", &admin])
            .output()
            .expect("shardis reload")
    };
    let out = cli(shardis.admin.to_string());
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value =
        serde_json::from_slice(&out.stdout).expect("the reload report is JSON");
    assert_eq!(report["reloaded"], true);
    assert_eq!(report["changes"]["added"], serde_json::json!(["s2"]));
    // In force as soon as the command returns.
    assert_eq!(status(&shardis)["config_digest"], digest_of(&two).as_str());

    std::fs::write(shardis.config_path(), "[[pools]]\nhash = \"nope\"\n").expect("break config");
    let out = cli(shardis.admin.to_string());
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("HTTP 422"), "{stderr}");
    assert_eq!(status(&shardis)["config_digest"], digest_of(&two).as_str());

    // Nothing listening: a clear error, not a hang.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = closed.local_addr().expect("addr").to_string();
    drop(closed);
    let out = cli(addr);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot reach the admin listener"));
}
