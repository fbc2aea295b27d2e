//! Issue 3 end to end: after known traffic through a real proxy, /metrics has exactly the
//! counts it caused; a backend that dies shows in the gauges, the error counters, /readyz and
//! /status, and recovers; every metric has HELP text and the latency buckets span 10 µs to 1 s.

mod common;

use std::cell::Cell;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use common::ops::{
    NAMES, backends, http_get, key_on, metric, must_metric, start_redises, status, wait_for,
};
use common::{Client, Frame, Mock, Redis, Shardis, shardis_config};

/// The metric names issue 3 fixes.
const METRICS: [&str; 11] = [
    "shardis_command_duration_seconds",
    "shardis_commands_total",
    "shardis_backend_request_duration_seconds",
    "shardis_backend_up",
    "shardis_backend_connections",
    "shardis_backend_errors_total",
    "shardis_client_connections",
    "shardis_client_connections_total",
    "shardis_client_protocol_errors_total",
    "shardis_received_bytes_total",
    "shardis_sent_bytes_total",
];

fn metrics(shardis: &Shardis) -> String {
    let r = http_get(shardis.admin, "/metrics");
    assert_eq!(r.status, 200);
    r.body
}

/// Links per backend: the `connections_per_backend` default, with one worker thread (each
/// worker owns its own links; these tests pin `--threads 1` so the count does not depend on
/// the machine's cores).
const LINKS: u64 = 1;

/// Waits until every backend has its links connected (links connect in the background).
fn wait_connected(shardis: &Shardis) {
    wait_for(Duration::from_secs(10), "every link to connect", || {
        let st = status(shardis);
        let backends = st["backends"].as_array().expect("backends").clone();
        backends
            .iter()
            .all(|b| b["connections"] == LINKS)
            .then_some(())
    });
}

#[test]
fn known_traffic_gives_exact_counts_histograms_and_gauges() {
    let redises = start_redises(3);
    let shardis = Shardis::start_with_args(
        &shardis_config(&backends(&redises), ""),
        &["--threads", "1"],
    );
    wait_connected(&shardis);
    let mut c = shardis.client();
    // Bytes the client sent, and bytes of the replies it got.
    let (sent, replied) = (Cell::new(0usize), Cell::new(0usize));
    let cmd = |c: &mut Client, args: &[&str]| {
        let args: Vec<&[u8]> = args.iter().map(|a| a.as_bytes()).collect();
        sent.set(sent.get() + Client::encode(&args).len());
        let reply = c.cmd(&args);
        replied.set(replied.get() + encoded_len(&reply));
        reply
    };

    const GETS: usize = 37;
    const SETS: usize = 23;
    for i in 0..SETS {
        assert_eq!(
            cmd(&mut c, &["SET", &format!("k{i}"), "text"]),
            Frame::Simple("OK".into())
        );
    }
    for i in 0..GETS {
        let reply = cmd(&mut c, &["GET", &format!("k{i}")]);
        assert!(matches!(reply, Frame::Bulk(_) | Frame::Null), "{reply:?}");
    }
    // Errors: two from Redis (INCR of text), one from the proxy (arity), three unknown commands.
    for _ in 0..2 {
        assert!(matches!(cmd(&mut c, &["INCR", "k0"]), Frame::Error(_)));
    }
    assert!(matches!(cmd(&mut c, &["GET"]), Frame::Error(_)));
    for _ in 0..3 {
        assert!(matches!(cmd(&mut c, &["NOSUCHCMD", "x"]), Frame::Error(_)));
    }
    // A client that breaks the protocol is counted and closed.
    let mut bad = TcpStream::connect(shardis.addr).expect("connect");
    bad.write_all(b"*1\r\n$x\r\n").expect("write");
    let mut reply = Vec::new();
    bad.read_to_end(&mut reply).expect("closed after the error");
    assert!(reply.starts_with(b"-ERR Protocol error"), "{reply:?}");

    let text = wait_for(Duration::from_secs(5), "the bad client to be gone", || {
        let text = metrics(&shardis);
        (metric(&text, "shardis_client_connections") == Some(1.0)).then_some(text)
    });
    let m = |series: &str| must_metric(&text, series);

    for name in METRICS {
        assert!(
            text.contains(&format!("# HELP {name} ")),
            "no HELP for {name}:\n{text}"
        );
    }
    // Per command: the histogram counts every answer, the counters split ok and error.
    assert_eq!(
        m(r#"shardis_command_duration_seconds_count{command="get"}"#),
        (GETS + 1) as f64
    );
    assert_eq!(
        m(r#"shardis_commands_total{command="get",result="ok"}"#),
        GETS as f64
    );
    assert_eq!(
        m(r#"shardis_commands_total{command="get",result="error"}"#),
        1.0
    );
    assert_eq!(
        m(r#"shardis_command_duration_seconds_count{command="set"}"#),
        SETS as f64
    );
    assert_eq!(
        m(r#"shardis_commands_total{command="set",result="ok"}"#),
        SETS as f64
    );
    assert_eq!(
        m(r#"shardis_commands_total{command="incr",result="error"}"#),
        2.0
    );
    assert_eq!(
        m(r#"shardis_commands_total{command="unknown",result="error"}"#),
        3.0
    );
    assert_eq!(
        m(r#"shardis_command_duration_seconds_count{command="unknown"}"#),
        3.0
    );
    // Buckets from 10 µs to 1 s, cumulative, ending with every sample at +Inf.
    let low = m(r#"shardis_command_duration_seconds_bucket{command="get",le="0.00001"}"#);
    let high = m(r#"shardis_command_duration_seconds_bucket{command="get",le="1"}"#);
    let all = m(r#"shardis_command_duration_seconds_bucket{command="get",le="+Inf"}"#);
    assert!(low <= high && high <= all, "{low} {high} {all}");
    assert_eq!(all, (GETS + 1) as f64);
    assert!(m(r#"shardis_command_duration_seconds_sum{command="get"}"#) > 0.0);

    // Every forwarded command crossed one backend link.
    let on_links: f64 = NAMES[..3]
        .iter()
        .map(|b| {
            m(&format!(
                "shardis_backend_request_duration_seconds_count{{pool=\"main\",backend=\"{b}\"}}"
            ))
        })
        .sum();
    assert_eq!(on_links, (GETS + SETS + 2) as f64);
    for b in &NAMES[..3] {
        assert_eq!(
            m(&format!(
                "shardis_backend_up{{pool=\"main\",backend=\"{b}\"}}"
            )),
            1.0
        );
        assert_eq!(
            m(&format!(
                "shardis_backend_connections{{pool=\"main\",backend=\"{b}\"}}"
            )),
            LINKS as f64
        );
        for kind in ["connect", "timeout", "closed", "protocol"] {
            assert_eq!(
                m(&format!(
                    "shardis_backend_errors_total{{pool=\"main\",backend=\"{b}\",kind=\"{kind}\"}}"
                )),
                0.0
            );
        }
    }
    assert_eq!(m("shardis_client_connections"), 1.0);
    assert_eq!(m("shardis_client_connections_total"), 2.0);
    assert_eq!(m("shardis_client_protocol_errors_total"), 1.0);

    // Byte counters match the traffic exactly (they are bumped right after the socket calls,
    // so the client may see a reply a moment before it is counted).
    let bad_sent = b"*1\r\n$x\r\n".len();
    assert_eq!(
        m("shardis_received_bytes_total"),
        (sent.get() + bad_sent) as f64
    );
    let want = (replied.get() + reply.len()) as f64;
    wait_for(Duration::from_secs(5), "every reply to be counted", || {
        (metric(&metrics(&shardis), "shardis_sent_bytes_total") == Some(want)).then_some(())
    });
    assert_eq!(cmd(&mut c, &["PING"]), Frame::Simple("PONG".into()));
    let want = (replied.get() + reply.len()) as f64;
    let after = wait_for(Duration::from_secs(5), "the PONG to be counted", || {
        let text = metrics(&shardis);
        (metric(&text, "shardis_sent_bytes_total") == Some(want)).then_some(text)
    });
    assert_eq!(
        must_metric(&after, "shardis_received_bytes_total"),
        (sent.get() + bad_sent) as f64
    );
}

/// Length of a reply's RESP2 encoding.
fn encoded_len(frame: &Frame) -> usize {
    let line = |s: &str| 1 + s.len() + 2;
    match frame {
        Frame::Simple(s) | Frame::Error(s) => line(s),
        Frame::Integer(n) => line(&n.to_string()),
        Frame::Bulk(b) => line(&b.len().to_string()) + b.len() + 2,
        Frame::Null => line("-1"),
        Frame::Array(items) => {
            line(&items.len().to_string()) + items.iter().map(encoded_len).sum::<usize>()
        }
        other => panic!("not a RESP2 reply: {other:?}"),
    }
}

#[test]
fn a_dead_backend_shows_everywhere_and_recovers() {
    let mut redises = start_redises(2);
    let shardis = Shardis::start_with_args(
        &shardis_config(&backends(&redises), ""),
        &["--threads", "1"],
    );
    assert_eq!(http_get(shardis.admin, "/healthz").status, 200);
    wait_connected(&shardis);
    let ready = wait_for(Duration::from_secs(10), "both backends up", || {
        let r = http_get(shardis.admin, "/readyz?strict=1");
        (r.status == 200).then_some(r)
    });
    assert_eq!(ready.body, "ready\n");
    let st = status(&shardis);
    assert_eq!(st["version"], env!("CARGO_PKG_VERSION"));
    assert!(st["uptime_seconds"].is_u64());
    assert_eq!(st["config_digest"].as_str().map(str::len), Some(32));
    for (i, b) in st["backends"]
        .as_array()
        .expect("backends")
        .iter()
        .enumerate()
    {
        assert_eq!(b["name"], NAMES[i]);
        assert_eq!(b["address"], redises[i].addr());
        assert_eq!(b["state"], "up");
        assert_eq!(b["connections"], LINKS);
        assert_eq!(b["inflight"], 0);
        assert!(b["last_error"].is_null(), "{b}");
    }

    let s2 = redises[1].addr();
    redises[1].kill();
    let text = wait_for(Duration::from_secs(10), "backend_up of s2 to drop", || {
        let text = metrics(&shardis);
        let connect = metric(
            &text,
            r#"shardis_backend_errors_total{pool="main",backend="s2",kind="connect"}"#,
        );
        (metric(&text, r#"shardis_backend_up{pool="main",backend="s2"}"#) == Some(0.0)
            && connect > Some(0.0))
        .then_some(text)
    });
    assert_eq!(
        must_metric(&text, r#"shardis_backend_up{pool="main",backend="s1"}"#),
        1.0
    );
    assert_eq!(
        must_metric(
            &text,
            r#"shardis_backend_connections{pool="main",backend="s2"}"#
        ),
        0.0
    );
    assert!(
        must_metric(
            &text,
            r#"shardis_backend_errors_total{pool="main",backend="s2",kind="closed"}"#
        ) >= 1.0,
        "the lost connections are counted as closed"
    );

    let r = http_get(shardis.admin, "/readyz");
    assert_eq!(
        r.status, 200,
        "one backend down does not fail plain readiness"
    );
    assert!(r.body.contains(&format!("down: s2 ({s2})")), "{}", r.body);
    let r = http_get(shardis.admin, "/readyz?strict=1");
    assert_eq!(r.status, 503);
    assert!(r.body.contains(&format!("down: s2 ({s2})")), "{}", r.body);
    assert!(!r.body.contains("s1"), "{}", r.body);
    assert_eq!(http_get(shardis.admin, "/healthz").status, 200);
    let st = status(&shardis);
    let b = &st["backends"][1];
    assert_eq!(
        (b["state"].as_str(), b["connections"].as_u64()),
        (Some("down"), Some(0))
    );
    assert!(
        b["last_error"].as_str().is_some_and(|e| !e.is_empty()),
        "{b}"
    );
    assert_eq!(st["backends"][0]["state"], "up");

    redises[1].restart();
    wait_for(Duration::from_secs(10), "s2 to be up again", || {
        let text = metrics(&shardis);
        (metric(&text, r#"shardis_backend_up{pool="main",backend="s2"}"#) == Some(1.0)
            && metric(
                &text,
                r#"shardis_backend_connections{pool="main",backend="s2"}"#,
            ) == Some(LINKS as f64))
        .then_some(())
    });
    assert_eq!(http_get(shardis.admin, "/readyz?strict=1").status, 200);
}

#[test]
fn timeouts_and_protocol_errors_are_counted_by_kind() {
    let redis = Redis::start();
    let silent = Mock::start(None);
    let liar = Mock::start(Some(b"?not resp\r\n"));
    let config = shardis_config(
        &[
            ("s1", redis.addr()),
            ("silent", silent.addr.clone()),
            ("liar", liar.addr.clone()),
        ],
        "timeout_ms = 200",
    );
    let shardis = Shardis::start(&config);
    let mut c = shardis.client();
    assert!(matches!(
        c.cmd_str(&["GET", &key_on(&config, 1, "t")]),
        Frame::Error(_)
    ));
    assert!(matches!(
        c.cmd_str(&["GET", &key_on(&config, 2, "p")]),
        Frame::Error(_)
    ));
    let text = metrics(&shardis);
    let m = |series: &str| must_metric(&text, series);
    // Each handshake attempt that fails counts once; the proxy retries with backoff.
    assert!(
        m(r#"shardis_backend_errors_total{pool="main",backend="silent",kind="timeout"}"#) >= 1.0
    );
    assert!(
        m(r#"shardis_backend_errors_total{pool="main",backend="liar",kind="protocol"}"#) >= 1.0
    );
    assert_eq!(
        m(r#"shardis_commands_total{command="get",result="error"}"#),
        2.0
    );
    let st = status(&shardis);
    assert!(
        st["backends"][1]["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("200 ms")),
        "{}",
        st["backends"][1]
    );
}
