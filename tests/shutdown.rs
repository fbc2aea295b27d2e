//! SIGTERM and SIGINT: shardis stops accepting at once, reports draining on /readyz, answers the
//! requests already in flight, closes idle clients, and exits 0 within the grace period; past
//! the grace it gives up on stragglers, says so, and still exits 0.

mod common;

use std::io::Read;
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::ops::{backends, http_get, inflight, key_on, start_redises, wait_for, with_server};
use common::{Client, Frame, Shardis, shardis_config};

/// Busy-waits ARGV[1] milliseconds inside Redis, then returns GET KEYS[1]: a request that is
/// in flight for as long as the test needs, sent through the proxy like any other.
const SLOW_GET: &str = "local function now() local t = redis.call('TIME') \
     return t[1] * 1000 + math.floor(t[2] / 1000) end \
     local stop = now() + tonumber(ARGV[1]) \
     while now() < stop do end \
     return redis.call('GET', KEYS[1])";

/// Slack for a loaded test machine running a debug build.
const MARGIN: Duration = Duration::from_millis(1500);

/// True once `stream` has been closed by the proxy (EOF or reset), false if it is still open
/// with nothing to read after `wait`.
fn closed_by_peer(stream: &mut TcpStream, wait: Duration) -> bool {
    stream
        .set_read_timeout(Some(wait))
        .expect("set_read_timeout");
    let mut buf = [0u8; 64];
    match stream.read(&mut buf) {
        Ok(0) => true,
        Ok(n) => panic!("unexpected bytes from the proxy: {:?}", &buf[..n]),
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => false,
        Err(_) => true,
    }
}

fn drains_in_flight_requests_then_exits_zero(signal: &str) {
    let redises = start_redises(2);
    let grace = Duration::from_millis(10_000);
    let config = with_server(
        &shardis_config(&backends(&redises), "timeout_ms = 20000"),
        &format!("shutdown_grace_ms = {}", grace.as_millis()),
    );
    let mut shardis = Shardis::start(&config);
    let key = key_on(&config, 0, "k");
    let mut setup = shardis.client();
    assert_eq!(
        setup.cmd_str(&["SET", &key, "v"]),
        Frame::Simple("OK".into())
    );
    let mut idle = TcpStream::connect(shardis.addr).expect("connect idle client");
    assert_eq!(http_get(shardis.admin, "/readyz").status, 200);

    let mut busy = shardis.client();
    busy.send_raw(&Client::encode(&[
        b"EVAL",
        SLOW_GET.as_bytes(),
        b"1",
        key.as_bytes(),
        b"3000",
    ]));
    wait_for(
        Duration::from_secs(5),
        "the slow request to be in flight",
        || (inflight(&shardis) > 0).then_some(()),
    );

    shardis.signal(signal);
    let signalled = Instant::now();
    let readyz = wait_for(Duration::from_secs(5), "/readyz to report draining", || {
        let r = http_get(shardis.admin, "/readyz");
        (r.status == 503).then_some(r)
    });
    assert!(readyz.body.starts_with("draining"), "{}", readyz.body);
    wait_for(
        Duration::from_secs(5),
        "new connections to be refused",
        || TcpStream::connect(shardis.addr).is_err().then_some(()),
    );
    assert!(
        closed_by_peer(&mut idle, Duration::from_secs(5)),
        "an idle client is closed when the drain starts"
    );
    // All of the above happened while the slow request was still running.
    assert!(
        inflight(&shardis) > 0 && shardis.try_exit().is_none(),
        "the proxy stopped before its in-flight request finished"
    );

    assert_eq!(busy.read_reply(), Frame::Bulk(b"v".to_vec()));
    let status = shardis.wait_exit(grace + MARGIN);
    assert!(status.success(), "exit status {status:?}");
    assert!(
        signalled.elapsed() < grace,
        "took {:?}: the drain should end when the last request is answered, not at the grace",
        signalled.elapsed()
    );
    let name = if signal == "INT" { "SIGINT" } else { "SIGTERM" };
    assert!(
        shardis.stderr().contains(&format!("{name} received")),
        "{}",
        shardis.stderr()
    );
}

#[test]
fn sigterm_drains_in_flight_requests_then_exits_zero() {
    drains_in_flight_requests_then_exits_zero("TERM");
}

#[test]
fn sigint_drains_in_flight_requests_then_exits_zero() {
    drains_in_flight_requests_then_exits_zero("INT");
}

#[test]
fn stragglers_past_the_grace_are_cut_off_and_the_exit_is_still_zero() {
    let redises = start_redises(1);
    let grace = Duration::from_millis(300);
    let config = with_server(
        &shardis_config(&backends(&redises), "timeout_ms = 10000"),
        &format!("shutdown_grace_ms = {}", grace.as_millis()),
    );
    let mut shardis = Shardis::start(&config);
    let mut busy = TcpStream::connect(shardis.addr).expect("connect");
    let mut c = Client::from_stream(busy.try_clone().expect("clone"));
    c.send_raw(&Client::encode(&[
        b"EVAL",
        SLOW_GET.as_bytes(),
        b"1",
        b"k",
        b"4000",
    ]));
    wait_for(
        Duration::from_secs(5),
        "the slow request to be in flight",
        || (inflight(&shardis) > 0).then_some(()),
    );
    // Timed from before the signal: the proxy's grace starts when the signal arrives.
    let signalled = Instant::now();
    shardis.signal("TERM");
    let status = shardis.wait_exit(grace + MARGIN);
    assert!(status.success(), "exit status {status:?}");
    assert!(
        signalled.elapsed() >= grace,
        "exited after {:?}, before the grace",
        signalled.elapsed()
    );
    // The straggler is told why its command got no reply, then its connection is closed.
    match c.read_reply() {
        Frame::Error(e) => assert!(
            e.starts_with("ERR shardis is shutting down"),
            "the straggler's error: {e}"
        ),
        other => panic!("expected an error reply for the straggler, got {other:?}"),
    }
    assert!(
        closed_by_peer(&mut busy, Duration::from_secs(5)),
        "the straggler's connection is closed, not left hanging"
    );
    assert!(
        shardis
            .stderr()
            .contains("shutdown grace of 300 ms expired with 1 client(s) still busy"),
        "{}",
        shardis.stderr()
    );
}

#[test]
fn a_signal_right_after_startup_still_exits_zero() {
    let redises = start_redises(1);
    let config = shardis_config(&backends(&redises), "");
    for _ in 0..10 {
        let mut shardis = Shardis::start(&config);
        let status = shardis.terminate();
        assert!(
            status.success(),
            "SIGTERM right after the listening line: {status:?}; stderr:\n{}",
            shardis.stderr()
        );
    }
}
