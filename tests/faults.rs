//! Backend faults as a client sees them: a backend that is down, killed mid-request, restarted,
//! silent or slower than `timeout_ms`, or speaking garbage. Each must cost the client one error
//! reply naming the backend within the timeout, never a hang, never another request's reply,
//! and never the connection; keys on healthy backends keep working.
//!
//! Real redis-servers throughout; mock backends only for what Redis cannot do (accept and never
//! answer, answer with bytes that are not RESP).

mod common;

use std::time::{Duration, Instant};

use common::ops::{backends, http_get, key_on, metric, start_redises, status, wait_for};
use common::{Client, Frame, Mock, Redis, Shardis, free_port, shardis_config};

/// Slack on top of `timeout_ms` for a loaded test machine running a debug build.
const MARGIN: Duration = Duration::from_millis(1000);

fn error_text(reply: &Frame) -> &str {
    match reply {
        Frame::Error(e) => e,
        other => panic!("expected an error reply, got {other:?}"),
    }
}

/// Runs one command and returns its reply and how long it took.
fn timed(client: &mut Client, args: &[&str]) -> (Frame, Duration) {
    let start = Instant::now();
    let reply = client.cmd_str(args);
    (reply, start.elapsed())
}

#[test]
fn backend_with_nothing_listening_fails_fast_and_others_keep_working() {
    let redises = start_redises(2);
    let dead = format!("127.0.0.1:{}", free_port());
    let mut list = backends(&redises);
    list.push(("s3", dead.clone()));
    let config = shardis_config(&list, "timeout_ms = 500");
    let shardis = Shardis::start(&config);
    let on_dead = key_on(&config, 2, "dead");
    let on_live = key_on(&config, 0, "live");
    let mut c = shardis.client();

    for _ in 0..3 {
        let (reply, took) = timed(&mut c, &["SET", &on_dead, "x"]);
        let err = error_text(&reply);
        assert!(
            err.starts_with("ERR ") && err.contains("s3") && err.contains(&dead),
            "the error names the backend and its address: {err}"
        );
        assert!(took < Duration::from_millis(500) + MARGIN, "took {took:?}");
    }
    // Same connection, still usable; keys elsewhere unaffected.
    assert_eq!(c.cmd_str(&["PING"]), Frame::Simple("PONG".into()));
    assert_eq!(
        c.cmd_str(&["SET", &on_live, "v"]),
        Frame::Simple("OK".into())
    );
    assert_eq!(c.cmd_str(&["GET", &on_live]), Frame::Bulk(b"v".to_vec()));

    // In a pipeline the error takes exactly its own place.
    let mut pipeline = Client::encode(&[b"SET", on_live.as_bytes(), b"w"]);
    pipeline.extend(Client::encode(&[b"GET", on_dead.as_bytes()]));
    pipeline.extend(Client::encode(&[b"GET", on_live.as_bytes()]));
    c.send_raw(&pipeline);
    assert_eq!(c.read_reply(), Frame::Simple("OK".into()));
    assert!(error_text(&c.read_reply()).contains("s3"));
    assert_eq!(c.read_reply(), Frame::Bulk(b"w".to_vec()));

    // MGET across a live and the dead backend: the dead keys' places hold the error.
    match c.cmd_str(&["MGET", &on_live, &on_dead]) {
        Frame::Array(items) => {
            assert_eq!(items[0], Frame::Bulk(b"w".to_vec()));
            assert!(error_text(&items[1]).contains("s3"), "{items:?}");
        }
        other => panic!("MGET: {other:?}"),
    }
}

#[test]
fn killed_backend_fails_in_flight_requests_and_reconnects_after_restart() {
    let mut redises = start_redises(2);
    // A timeout far above the margin: the errors below must come from the lost link, not it.
    let config = shardis_config(&backends(&redises), "timeout_ms = 5000");
    let shardis = Shardis::start(&config);
    let on_s1 = key_on(&config, 0, "k");
    let on_s2 = key_on(&config, 1, "k");
    let mut c = shardis.client();
    assert_eq!(
        c.cmd_str(&["SET", &on_s2, "before"]),
        Frame::Simple("OK".into())
    );

    // A request in flight on s2 when it dies: s2 is asleep, so the GET waits on the link.
    let _sleeper = redises[1].debug_sleep(10.0);
    let mut waiting = shardis.client();
    waiting.send_raw(&Client::encode(&[b"GET", on_s2.as_bytes()]));
    wait_for(
        Duration::from_secs(5),
        "the GET to be in flight on s2",
        || (status(&shardis)["backends"][1]["inflight"].as_u64() > Some(0)).then_some(()),
    );
    let killed = Instant::now();
    redises[1].kill();
    let reply = waiting.read_reply();
    let took = killed.elapsed();
    let err = error_text(&reply);
    assert!(err.contains("s2"), "{err}");
    assert!(
        took < MARGIN,
        "in-flight request answered {took:?} after the kill"
    );

    // While s2 is down: errors naming it, quickly; s1 fine; the connection stays usable.
    for _ in 0..3 {
        let (reply, took) = timed(&mut c, &["GET", &on_s2]);
        assert!(error_text(&reply).contains("s2"));
        assert!(took < MARGIN, "took {took:?}");
        assert_eq!(c.cmd_str(&["SET", &on_s1, "a"]), Frame::Simple("OK".into()));
    }
    wait_for(Duration::from_secs(5), "/status to show s2 down", || {
        (status(&shardis)["backends"][1]["state"] == "down").then_some(())
    });

    // Restarted on the same port (empty): the link comes back by itself, within its backoff.
    redises[1].restart();
    wait_for(
        Duration::from_secs(10),
        "SET through shardis on restarted s2",
        || (c.cmd_str(&["SET", &on_s2, "after"]) == Frame::Simple("OK".into())).then_some(()),
    );
    assert_eq!(c.cmd_str(&["GET", &on_s2]), Frame::Bulk(b"after".to_vec()));
    assert_eq!(
        redises[1].client().cmd_str(&["GET", &on_s2]),
        Frame::Bulk(b"after".to_vec()),
        "the write went to the restarted server"
    );
    assert_eq!(c.cmd_str(&["GET", &on_s1]), Frame::Bulk(b"a".to_vec()));
}

#[test]
fn silent_backend_is_down_and_the_connection_stays_usable() {
    let redis = Redis::start();
    let mock = Mock::start(None);
    let config = shardis_config(
        &[("s1", redis.addr()), ("silent", mock.addr.clone())],
        "timeout_ms = 300",
    );
    let shardis = Shardis::start(&config);
    let on_mock = key_on(&config, 1, "m");
    let on_redis = key_on(&config, 0, "r");
    let mut c = shardis.client();

    // It accepts connections but never answers the handshake: it is down, and its keys fail
    // within the timeout (at once, once the first handshake has timed out).
    for _ in 0..2 {
        let (reply, took) = timed(&mut c, &["GET", &on_mock]);
        let err = error_text(&reply);
        assert!(
            err.contains("silent") && err.contains(&mock.addr) && err.contains("timed out"),
            "{err}"
        );
        assert!(took < Duration::from_millis(300) + MARGIN, "took {took:?}");
        assert_eq!(c.cmd_str(&["PING"]), Frame::Simple("PONG".into()));
        assert_eq!(
            c.cmd_str(&["SET", &on_redis, "1"]),
            Frame::Simple("OK".into())
        );
        assert_eq!(c.cmd_str(&["GET", &on_redis]), Frame::Bulk(b"1".to_vec()));
    }
}

#[test]
fn garbage_from_a_backend_is_an_error_not_a_reply() {
    let redis = Redis::start();
    let mock = Mock::start(Some(b"this is not RESP\r\n"));
    let config = shardis_config(
        &[("s1", redis.addr()), ("liar", mock.addr.clone())],
        "timeout_ms = 2000",
    );
    let shardis = Shardis::start(&config);
    let on_mock = key_on(&config, 1, "m");
    let on_redis = key_on(&config, 0, "r");
    let mut c = shardis.client();
    let (reply, took) = timed(&mut c, &["GET", &on_mock]);
    assert!(error_text(&reply).contains("liar"), "{reply:?}");
    assert!(took < MARGIN, "protocol errors need no timeout: {took:?}");
    assert_eq!(
        c.cmd_str(&["SET", &on_redis, "1"]),
        Frame::Simple("OK".into())
    );
    assert_eq!(c.cmd_str(&["GET", &on_redis]), Frame::Bulk(b"1".to_vec()));
}

#[test]
fn debug_sleep_past_the_timeout_never_mixes_replies() {
    let redises = start_redises(2);
    let config = shardis_config(&backends(&redises), "timeout_ms = 300");
    let shardis = Shardis::start(&config);
    let config_keys: Vec<String> = (0..4)
        .map(|i| key_on(&config, 1, &format!("k{i}")))
        .collect();
    let mut c = shardis.client();
    for key in &config_keys {
        let value = format!("value-of-{key}");
        assert_eq!(c.cmd_str(&["SET", key, &value]), Frame::Simple("OK".into()));
    }

    // s2 sleeps well past the timeout.
    let mut sleeper = redises[1].debug_sleep(1.5);
    let (reply, took) = timed(&mut c, &["GET", &config_keys[0]]);
    let err = error_text(&reply);
    assert!(err.contains("s2") && err.contains("timed out"), "{err}");
    assert!(took >= Duration::from_millis(290), "took {took:?}");
    assert!(took < Duration::from_millis(300) + MARGIN, "took {took:?}");

    // A pipeline during the sleep: each reply is either a timeout error or its own value.
    let mut pipeline = Vec::new();
    for key in &config_keys[1..] {
        pipeline.extend(Client::encode(&[b"GET", key.as_bytes()]));
    }
    c.send_raw(&pipeline);
    for key in &config_keys[1..] {
        match c.read_reply() {
            Frame::Error(e) => assert!(e.contains("s2"), "{e}"),
            Frame::Bulk(v) => assert_eq!(v, format!("value-of-{key}").into_bytes()),
            other => panic!("GET {key}: {other:?}"),
        }
    }
    assert_eq!(sleeper.read_reply(), Frame::Simple("OK".into()));

    // Once s2 is awake, each GET gets its own value: the late replies to the timed-out
    // requests are never handed to later ones.
    for key in config_keys.iter().rev() {
        let reply = wait_for(Duration::from_secs(10), "s2 to answer again", || {
            match c.cmd_str(&["GET", key]) {
                Frame::Error(_) => None,
                other => Some(other),
            }
        });
        assert_eq!(reply, Frame::Bulk(format!("value-of-{key}").into_bytes()));
    }
    assert_eq!(
        c.cmd_str(&["DBSIZE"]),
        Frame::Integer(config_keys.len() as i64)
    );
}

#[test]
fn a_backend_that_stays_down_is_logged_once_then_its_return() {
    let mut redises = start_redises(1);
    let config = shardis_config(&backends(&redises), "");
    let shardis = Shardis::start(&config);
    wait_for(Duration::from_secs(10), "the link to connect", || {
        shardis.stderr().contains("connected to").then_some(())
    });
    redises[0].kill();
    // Every failed attempt is counted; wait for several retries (50, 100, 200, 400 ms apart).
    wait_for(Duration::from_secs(10), "five failed reconnects", || {
        let metrics = http_get(shardis.admin, "/metrics").body;
        let failed = metric(
            &metrics,
            r#"shardis_backend_errors_total{pool="main",backend="s1",kind="connect"}"#,
        )?;
        (failed >= 5.0).then_some(())
    });
    let log = shardis.stderr();
    let warned: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("WARN") && l.contains("connect failed") && l.contains("retrying"))
        .collect();
    assert_eq!(
        warned.len(),
        1,
        "one warning for the outage, not one per retry:\n{log}"
    );
    assert!(
        warned[0].contains("repeats are logged at debug level"),
        "{}",
        warned[0]
    );

    redises[0].restart();
    wait_for(
        Duration::from_secs(10),
        "the reconnect to be logged",
        || {
            let log = shardis.stderr();
            log.lines()
                .any(|l| l.contains("INFO") && l.contains("failed attempt(s)"))
                .then_some(())
        },
    );
}
