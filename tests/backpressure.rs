//! A client that pipelines many large replies and does not read them must not grow the proxy's
//! memory, must not slow other clients down, and must still get every reply, in order, once it
//! reads.

mod common;

use std::io::Write;
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::ops::{backends, inflight, key_on, proc_kb, start_redises, wait_for};
use common::{Client, Frame, Shardis, shardis_config};

/// Size of the value every pipelined GET fetches.
const VALUE_BYTES: usize = 512 * 1024;
/// GETs the stalled client sends: 1000 x 512 KiB = 500 MiB of replies it does not read.
const GETS: usize = 1000;
/// How much the proxy's peak RSS may grow meanwhile.
const MAX_GROWTH_KB: u64 = 64 * 1024;
/// Slowest acceptable answer for the other client: the backend timeout. Typically ~50 ms; a
/// proxy that lets the stalled client's replies clog the shared link makes it wait for them,
/// ~0.7 s with a debug build, or time out.
const MAX_LATENCY: Duration = Duration::from_millis(1000);

#[test]
fn a_client_that_does_not_read_is_bounded_and_does_not_slow_others() {
    let redises = start_redises(2);
    let config = shardis_config(&backends(&redises), "");
    let shardis = Shardis::start(&config);
    let big = key_on(&config, 0, "big");
    let small = key_on(&config, 0, "small");
    let value: Vec<u8> = (0..VALUE_BYTES).map(|i| b'a' + (i % 26) as u8).collect();
    let mut setup = shardis.client();
    assert_eq!(
        setup.cmd(&[b"SET", big.as_bytes(), &value]),
        Frame::Simple("OK".into())
    );
    assert_eq!(
        setup.cmd_str(&["SET", &small, "s"]),
        Frame::Simple("OK".into())
    );
    // Warm up: one big reply read normally, so buffers that are reused exist before the baseline.
    assert_eq!(setup.cmd_str(&["GET", &big]), Frame::Bulk(value.clone()));
    let baseline = proc_kb(shardis.pid(), "VmRSS");

    // The stalled client: writes every GET from a thread (the write may block once the proxy
    // stops reading) and reads nothing for now.
    let stalled = TcpStream::connect(shardis.addr).expect("connect");
    let mut writer = stalled.try_clone().expect("clone");
    let get = Client::encode(&[b"GET", big.as_bytes()]);
    let pipeline: Vec<u8> = get.iter().copied().cycle().take(get.len() * GETS).collect();
    let write_thread = std::thread::spawn(move || writer.write_all(&pipeline));

    // Meanwhile another client, on the same backend, keeps getting quick answers; it keeps
    // going until the proxy has settled (nothing in flight) for at least a second.
    let mut other = shardis.client();
    let started = Instant::now();
    let mut slowest = Duration::ZERO;
    let mut answered = 0;
    wait_for(Duration::from_secs(30), "the proxy to settle", || {
        let t = Instant::now();
        assert_eq!(other.cmd_str(&["GET", &small]), Frame::Bulk(b"s".to_vec()));
        slowest = slowest.max(t.elapsed());
        answered += 1;
        (started.elapsed() > Duration::from_secs(1) && inflight(&shardis) == 0).then_some(())
    });
    let peak = proc_kb(shardis.pid(), "VmHWM");
    assert!(
        slowest < MAX_LATENCY,
        "another client waited {slowest:?} (of {answered} GETs) behind the stalled one"
    );
    assert!(
        peak.saturating_sub(baseline) < MAX_GROWTH_KB,
        "peak RSS grew by {} KiB (baseline {baseline} KiB, peak {peak} KiB) for a client \
         that does not read; the bound is {MAX_GROWTH_KB} KiB",
        peak.saturating_sub(baseline)
    );

    // Reading now gets every reply, complete and in order.
    let mut stalled = Client::from_stream(stalled);
    for i in 0..GETS {
        match stalled.read_reply() {
            Frame::Bulk(v) if v == value => {}
            other => panic!(
                "reply {i}: {:?}",
                match other {
                    Frame::Bulk(v) => format!("a bulk of {} bytes that differs", v.len()),
                    f => format!("{f:?}"),
                }
            ),
        }
    }
    write_thread
        .join()
        .expect("writer thread")
        .expect("write pipeline");
    assert_eq!(stalled.cmd_str(&["PING"]), Frame::Simple("PONG".into()));
}

#[test]
fn ten_thousand_small_commands_in_one_write_are_answered_in_order() {
    let redises = start_redises(3);
    let shardis = Shardis::start(&shardis_config(&backends(&redises), ""));
    let stream = TcpStream::connect(shardis.addr).expect("connect");
    let mut writer = stream.try_clone().expect("clone");
    let mut c = Client::from_stream(stream);
    let mut pipeline = Vec::new();
    for i in 0..10_000 {
        let (key, value) = (format!("p:{i}"), format!("v{i}"));
        let cmd = if i % 2 == 0 {
            Client::encode(&[b"SET", key.as_bytes(), value.as_bytes()])
        } else {
            Client::encode(&[b"GET", format!("p:{}", i - 1).as_bytes()])
        };
        pipeline.extend(cmd);
    }
    // Written from a thread: the proxy may stop reading until replies are read.
    let thread = std::thread::spawn(move || writer.write_all(&pipeline));
    for i in 0..10_000 {
        let expected = if i % 2 == 0 {
            Frame::Simple("OK".into())
        } else {
            Frame::Bulk(format!("v{}", i - 1).into_bytes())
        };
        assert_eq!(c.read_reply(), expected, "reply {i}");
    }
    thread.join().expect("writer").expect("write");
    assert_eq!(c.cmd_str(&["DBSIZE"]), Frame::Integer(5_000));
}

#[test]
fn large_and_small_replies_interleaved_stay_in_order() {
    let redises = start_redises(2);
    // About ordering, not timeouts: 130 MiB through a debug build on a loaded machine.
    let config = shardis_config(&backends(&redises), "timeout_ms = 10000");
    let shardis = Shardis::start(&config);
    let big = key_on(&config, 0, "big");
    let small = key_on(&config, 1, "small");
    let value = vec![b'x'; 2 * 1024 * 1024];
    let mut c = shardis.client();
    assert_eq!(
        c.cmd(&[b"SET", big.as_bytes(), &value]),
        Frame::Simple("OK".into())
    );
    assert_eq!(c.cmd_str(&["SET", &small, "s"]), Frame::Simple("OK".into()));
    let mut pipeline = Vec::new();
    for i in 0..200 {
        let key = if i % 3 == 0 { &big } else { &small };
        pipeline.extend(Client::encode(&[b"GET", key.as_bytes()]));
    }
    c.send_raw(&pipeline);
    for i in 0..200 {
        match c.read_reply() {
            Frame::Bulk(v) if i % 3 == 0 => assert!(v == value, "reply {i}: wrong big value"),
            Frame::Bulk(v) => assert_eq!(v, b"s", "reply {i}"),
            other => panic!("reply {i}: {other:?}"),
        }
    }
}
