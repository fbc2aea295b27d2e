//! The slow-command log (`slowlog_ms` in [server]): a command slower than the limit is logged
//! with its name, backend and duration, never its key or value, as plain `key=value` text or as
//! JSON with `--log-format json`; with `slowlog_ms` unset nothing is logged.

mod common;

use std::time::{Duration, Instant};

use common::ops::{backends, key_on, start_redises, wait_for, with_server};
use common::{Client, Frame, Redis, Shardis, shardis_config};

const KEY_PREFIX: &str = "secret-key";
const VALUE: &str = "secret-value-7d1f";

/// Makes one SET through the proxy slow: its backend sleeps 300 ms (DEBUG SLEEP) first.
fn slow_set(redis: &Redis, proxy: &mut Client, key: &str) {
    let mut sleeper = redis.debug_sleep(0.3);
    let start = Instant::now();
    assert_eq!(
        proxy.cmd_str(&["SET", key, VALUE]),
        Frame::Simple("OK".into())
    );
    assert!(
        start.elapsed() >= Duration::from_millis(200),
        "the SET was not slow"
    );
    assert_eq!(
        sleeper.read_reply(),
        Frame::Simple("OK".into()),
        "DEBUG SLEEP"
    );
}

/// A proxy over two backends with `server_lines` in [server] and `args`, the key it places on
/// the second backend (s2), and that backend.
fn setup(server_lines: &str, args: &[&str]) -> (Vec<Redis>, Shardis, String) {
    let redises = start_redises(2);
    let config = with_server(
        &shardis_config(&backends(&redises), "timeout_ms = 5000"),
        server_lines,
    );
    let key = key_on(&config, 1, KEY_PREFIX);
    let shardis = Shardis::start_with_args(&config, args);
    (redises, shardis, key)
}

fn assert_no_secrets(logs: &str) {
    assert!(
        !logs.contains(KEY_PREFIX) && !logs.contains(VALUE),
        "a key or value is in the logs:\n{logs}"
    );
}

#[test]
fn text_slowlog_names_command_backend_and_duration_but_no_data() {
    let (redises, shardis, key) = setup("slowlog_ms = 100", &[]);
    let mut c = shardis.client();
    slow_set(&redises[1], &mut c, &key);
    let line = wait_for(Duration::from_secs(5), "the SET's slowlog line", || {
        shardis
            .stderr()
            .lines()
            .find(|l| l.contains("slow command") && l.contains("command=\"set\""))
            .map(str::to_string)
    });
    for field in ["backend=\"s2\"", "duration_us="] {
        assert!(line.contains(field), "no {field} in {line:?}");
    }
    let us: u64 = line
        .split("duration_us=")
        .nth(1)
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("duration_us is not a number in {line:?}"));
    assert!(us >= 200_000, "{line}");
    assert_no_secrets(&shardis.stderr());
}

#[test]
fn json_slowlog_lines_are_json_with_the_same_fields() {
    let (redises, shardis, key) = setup("slowlog_ms = 100", &["--log-format", "json"]);
    let mut c = shardis.client();
    slow_set(&redises[1], &mut c, &key);
    let entry = wait_for(Duration::from_secs(5), "a slowlog entry", || {
        let logs = shardis.stderr();
        let entries: Vec<serde_json::Value> = logs
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l:?}")))
            .collect();
        entries
            .into_iter()
            .find(|e| e["fields"]["message"] == "slow command" && e["fields"]["command"] == "set")
    });
    assert_eq!(entry["target"], "shardis::slowlog");
    assert_eq!(entry["fields"]["backend"], "s2");
    assert!(
        entry["fields"]["duration_us"]
            .as_u64()
            .is_some_and(|us| us >= 200_000),
        "{entry}"
    );
    assert_no_secrets(&shardis.stderr());
}

#[test]
fn no_slowlog_unless_configured() {
    let (redises, mut shardis, key) = setup("", &[]);
    let mut c = shardis.client();
    slow_set(&redises[1], &mut c, &key);
    drop(c);
    // The exit is logged after anything the slow command could have logged.
    assert!(shardis.terminate().success());
    let logs = shardis.stderr();
    assert!(logs.contains("stopped"), "{logs}");
    assert!(!logs.contains("slow command"), "{logs}");
    assert_no_secrets(&logs);
}
