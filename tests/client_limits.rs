//! Limits on hostile or stuck clients (issue 12, part 4): the idle timeout, the output hard
//! limit, and the configurable request bounds (multibulk length, inline length). Each closes
//! only the offending client; the others keep being served.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::ops::{http_get, metric, wait_for};
use common::{Client, Cluster, Frame, bulk, int, ok, pong};

/// Reads from `stream` until the proxy closes it; returns what arrived and how long it took.
/// Panics if it is still open after `deadline`.
fn read_until_closed(stream: &mut TcpStream, deadline: Duration) -> (Vec<u8>, Duration) {
    let start = Instant::now();
    stream
        .set_read_timeout(Some(Duration::from_millis(100)))
        .expect("set_read_timeout");
    let mut out = Vec::new();
    let mut chunk = [0u8; 64 * 1024];
    loop {
        match stream.read(&mut chunk) {
            Ok(0) => return (out, start.elapsed()),
            Ok(n) => out.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {
                return (out, start.elapsed());
            }
            Err(_) => {}
        }
        assert!(
            start.elapsed() < deadline,
            "connection still open after {deadline:?}"
        );
    }
}

fn disconnects(cluster: &Cluster, reason: &str) -> f64 {
    let text = http_get(cluster.proxy.admin, "/metrics").body;
    metric(
        &text,
        &format!("shardis_client_disconnects_total{{reason=\"{reason}\"}}"),
    )
    .unwrap_or(0.0)
}

#[test]
fn an_idle_client_is_closed_after_the_timeout_and_an_active_one_is_not() {
    let cluster = Cluster::start_with(2, "client_idle_timeout_ms = 400", "");
    let mut idle = TcpStream::connect(cluster.proxy.addr).expect("connect");
    idle.write_all(&Client::encode(&[b"PING"])).expect("PING");
    let mut active = cluster.client();
    let start = Instant::now();
    // The active client sends a command every 100 ms for well past the timeout.
    while start.elapsed() < Duration::from_millis(1200) {
        assert_eq!(active.cmd_str(&["PING"]), pong());
        std::thread::sleep(Duration::from_millis(100));
    }
    let (got, _) = read_until_closed(&mut idle, Duration::from_secs(5));
    assert_eq!(got, b"+PONG\r\n", "the idle client got its reply, then EOF");
    assert_eq!(active.cmd_str(&["SET", "k", "v"]), ok());
    assert_eq!(active.cmd_str(&["GET", "k"]), bulk("v"));
    wait_for(Duration::from_secs(5), "idle disconnect counted", || {
        (disconnects(&cluster, "idle_timeout") >= 1.0).then_some(())
    });
}

#[test]
fn the_idle_timeout_closes_after_the_limit_not_before() {
    let cluster = Cluster::start_with(1, "client_idle_timeout_ms = 600", "");
    let mut c = TcpStream::connect(cluster.proxy.addr).expect("connect");
    c.write_all(&Client::encode(&[b"PING"])).expect("PING");
    let (_, after) = read_until_closed(&mut c, Duration::from_secs(5));
    assert!(
        after >= Duration::from_millis(550),
        "closed after {after:?}, before the 600 ms timeout"
    );
}

#[test]
fn blocked_and_subscribed_clients_are_exempt_from_the_idle_timeout() {
    let cluster = Cluster::start_with(2, "client_idle_timeout_ms = 300", "");
    let mut blocked = cluster.client();
    // BLPOP waits 1.5 s, five times the idle timeout, and still gets its (null) answer.
    blocked.send_raw(&Client::encode(&[b"BLPOP", b"nothing-here", b"1.5"]));
    let mut subscriber = cluster.client();
    assert_eq!(
        subscriber.cmd_str(&["SUBSCRIBE", "news"]),
        Frame::Array(vec![bulk("subscribe"), bulk("news"), int(1)])
    );
    assert_eq!(blocked.read_reply(), Frame::Null);
    // The subscriber, silent for over 1.5 s, still receives what is published.
    let mut publisher = cluster.client();
    assert_eq!(publisher.cmd_str(&["PUBLISH", "news", "hello"]), int(1));
    assert_eq!(
        subscriber.read_reply(),
        Frame::Array(vec![bulk("message"), bulk("news"), bulk("hello")])
    );
}

#[test]
fn a_reply_past_the_output_limit_closes_that_client_only() {
    let cluster = Cluster::start_with(2, "client_output_limit_bytes = 1048576", "");
    let mut c = cluster.client();
    let big = vec![b'x'; 3 * 1024 * 1024];
    assert_eq!(c.cmd(&[b"SET", b"big", &big]), ok());
    let small = vec![b'y'; 512 * 1024];
    assert_eq!(c.cmd(&[b"SET", b"small", &small]), ok());
    // Under the limit: served.
    assert_eq!(c.cmd_str(&["GET", "small"]), Frame::Bulk(small));
    // Over it: the client is closed without the reply, as Redis's hard limit does.
    let mut greedy = TcpStream::connect(cluster.proxy.addr).expect("connect");
    greedy
        .write_all(&Client::encode(&[b"GET", b"big"]))
        .expect("GET");
    let (got, _) = read_until_closed(&mut greedy, Duration::from_secs(5));
    assert!(got.is_empty(), "got {} bytes", got.len());
    // Everyone else is unaffected.
    assert_eq!(c.cmd_str(&["PING"]), pong());
    assert_eq!(c.cmd_str(&["STRLEN", "big"]), int(3 * 1024 * 1024));
    assert_eq!(disconnects(&cluster, "output_limit"), 1.0);
}

#[test]
fn a_client_that_stops_reading_a_pipeline_is_closed_at_the_output_limit() {
    let cluster = Cluster::start_with(2, "client_output_limit_bytes = 1048576", "");
    let mut c = cluster.client();
    let value = vec![b'v'; 100 * 1024];
    assert_eq!(c.cmd(&[b"SET", b"value", &value]), ok());
    // 400 GETs of 100 KiB (40 MiB of replies) and never a read: past the kernel's socket
    // buffers, the proxy's output grows until the limit closes the client.
    let mut stuck = TcpStream::connect(cluster.proxy.addr).expect("connect");
    let mut pipeline = Vec::new();
    for _ in 0..400 {
        pipeline.extend(Client::encode(&[b"GET", b"value"]));
    }
    stuck.write_all(&pipeline).expect("pipeline");
    wait_for(Duration::from_secs(10), "stuck client closed", || {
        (disconnects(&cluster, "output_limit") >= 1.0).then_some(())
    });
    let (got, _) = read_until_closed(&mut stuck, Duration::from_secs(5));
    assert!(got.len() < 400 * value.len(), "it did not get every reply");
    // A client that reads its replies as it goes gets them all.
    let mut reader = cluster.client();
    let five = &pipeline[..pipeline.len() / 80];
    for _ in 0..80 {
        reader.send_raw(five);
        for _ in 0..5 {
            assert_eq!(reader.read_reply(), Frame::Bulk(value.clone()));
        }
    }
    assert_eq!(disconnects(&cluster, "output_limit"), 1.0);
}

#[test]
fn configured_request_bounds_refuse_long_inline_and_multibulk_requests() {
    let cluster = Cluster::start_with(2, "max_inline_bytes = 100\nmax_multibulk_length = 5", "");
    let mut c = cluster.client();
    // At the bounds: served.
    assert_eq!(c.cmd_str(&["MSET", "a", "1", "b", "2"]), ok());
    c.send_raw(format!("SET inline {}\r\n", "z".repeat(80)).as_bytes());
    assert_eq!(c.read_reply(), ok());
    // Past them: Redis's protocol errors, and the connection is closed.
    let too_many = Client::encode(&[b"MSET", b"a", b"1", b"b", b"2", b"c"]);
    let got = cluster.send_until_closed(&too_many);
    assert_eq!(got, b"-ERR Protocol error: invalid multibulk length\r\n");
    let long_inline = format!("SET inline {}\r\n", "z".repeat(200));
    let got = cluster.send_until_closed(long_inline.as_bytes());
    assert_eq!(got, b"-ERR Protocol error: too big inline request\r\n");
    let long_header = format!("*1\r\n${}\r\n", "1".repeat(150));
    let got = cluster.send_until_closed(long_header.as_bytes());
    assert_eq!(got, b"-ERR Protocol error: too big bulk count string\r\n");
    // Nested arrays are not requests.
    let got = cluster.send_until_closed(b"*1\r\n*1\r\n$4\r\nPING\r\n");
    assert_eq!(got, b"-ERR Protocol error: expected '$', got '*'\r\n");
    assert_eq!(c.cmd_str(&["GET", "a"]), bulk("1"));
}

#[test]
fn default_bounds_are_redis_s() {
    let cluster = Cluster::start(1);
    let mut c = cluster.client();
    // An inline command of 60 KiB is served; one over 64 KiB is refused.
    c.send_raw(format!("SET inline {}\r\n", "z".repeat(60 * 1024)).as_bytes());
    assert_eq!(c.read_reply(), ok());
    let got = cluster.send_until_closed(format!("SET x {}\r\n", "z".repeat(70 * 1024)).as_bytes());
    assert_eq!(got, b"-ERR Protocol error: too big inline request\r\n");
    let got = cluster.send_until_closed(b"*1048577\r\n");
    assert_eq!(got, b"-ERR Protocol error: invalid multibulk length\r\n");
    assert_eq!(
        c.cmd_str(&["GET", "nothing"]),
        Frame::Null,
        "the first client is still served"
    );
}
