//! What clients may make the proxy hold (issue 22): input is read ahead only up to
//! `client_read_ahead_bytes`; a client that writes its whole pipeline before reading still
//! finishes (one side grows, up to `client_memory_limit_bytes`); a client that never reads is
//! closed at that budget; and all clients together stay under `max_client_memory`, the client
//! holding the most closed first. Memory is the proxy process's RSS, read from /proc.
//!
//! Latency bounds here are generous (the machine is shared); the README's "Memory" section
//! gives the figures measured.

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use common::ops::{http_get, metric, proc_kb, status, wait_for};
use common::{Client, Cluster, Frame, bulk, ok, pong};

const MIB: u64 = 1024 * 1024;
/// The value every flooding GET fetches.
const FLOOD_VALUE: usize = 10 * 1024;

fn disconnects(cluster: &Cluster, reason: &str) -> f64 {
    let text = http_get(cluster.proxy.admin, "/metrics").body;
    metric(
        &text,
        &format!("shardis_client_disconnects_total{{reason=\"{reason}\"}}"),
    )
    .unwrap_or(0.0)
}

fn buffered(cluster: &Cluster) -> u64 {
    status(&cluster.proxy)["client_buffered_bytes"]
        .as_u64()
        .expect("client_buffered_bytes")
}

/// A client that writes `GET key` forever and never reads, until the proxy closes it or `stop`
/// is set. Returns the bytes it wrote.
fn flooder(addr: SocketAddr, key: &str, stop: Arc<AtomicBool>) -> JoinHandle<u64> {
    let chunk: Vec<u8> = Client::encode(&[b"GET", key.as_bytes()]).repeat(16 * 1024);
    std::thread::spawn(move || {
        let mut s = TcpStream::connect(addr).expect("connect");
        s.set_write_timeout(Some(Duration::from_millis(200)))
            .expect("set_write_timeout");
        let (mut at, mut sent) = (0, 0u64);
        while !stop.load(Ordering::Relaxed) {
            match s.write(&chunk[at..]) {
                Ok(0) => break,
                Ok(n) => {
                    sent += n as u64;
                    at = (at + n) % chunk.len();
                }
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                Err(_) => break,
            }
        }
        sent
    })
}

/// Latencies of a well-behaved client doing `GET key` about every millisecond until `stop`.
fn prober(addr: SocketAddr, key: String, stop: Arc<AtomicBool>) -> JoinHandle<Vec<Duration>> {
    std::thread::spawn(move || {
        let mut c = Client::connect(&addr.to_string());
        let mut took = Vec::new();
        while !stop.load(Ordering::Relaxed) {
            let t = Instant::now();
            assert_eq!(c.cmd_str(&["GET", &key]), bulk("s"), "the prober's answer");
            took.push(t.elapsed());
            std::thread::sleep(Duration::from_millis(1));
        }
        took
    })
}

/// (p50, p99, max) of `took`, in ms.
fn percentiles(mut took: Vec<Duration>) -> (f64, f64, f64) {
    took.sort();
    let at = |q: f64| took[((took.len() - 1) as f64 * q) as usize].as_secs_f64() * 1000.0;
    (at(0.5), at(0.99), at(1.0))
}

/// A cluster with the flooded value and the prober's key set, and its RSS once warm (KiB).
fn flood_setup(server: &str) -> (Cluster, u64) {
    let cluster = Cluster::start_with(2, server, "");
    let mut c = cluster.client();
    assert_eq!(c.cmd(&[b"SET", b"ten", &[b'x'; FLOOD_VALUE]]), ok());
    assert_eq!(c.cmd_str(&["SET", "small", "s"]), ok());
    // Warm the paths a flood takes (a pipeline of large replies, read) before the baseline.
    let pipeline = Client::encode(&[b"GET", b"ten"]).repeat(200);
    c.send_raw(&pipeline);
    for _ in 0..200 {
        assert_eq!(c.read_reply(), Frame::Bulk(vec![b'x'; FLOOD_VALUE]));
    }
    let rss = proc_kb(cluster.proxy.pid(), "VmRSS");
    (cluster, rss)
}

/// Floods with `n` clients that never read while a prober measures; returns once every
/// flooder was closed, with the prober's latencies.
fn flood(cluster: &Cluster, n: usize) -> Vec<Duration> {
    let addr = cluster.proxy.addr;
    let stop = Arc::new(AtomicBool::new(false));
    let probe = prober(addr, "small".into(), stop.clone());
    std::thread::sleep(Duration::from_millis(200));
    let flooders: Vec<_> = (0..n).map(|_| flooder(addr, "ten", stop.clone())).collect();
    let started = Instant::now();
    let deadline = Duration::from_secs(120);
    while flooders.iter().any(|f| !f.is_finished()) {
        assert!(
            started.elapsed() < deadline,
            "flooders still connected after {deadline:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    eprintln!("{n} flooders closed after {:?}", started.elapsed());
    // The prober goes on a little after the flood, as a client would.
    std::thread::sleep(Duration::from_millis(300));
    stop.store(true, Ordering::Relaxed);
    for f in flooders {
        f.join().expect("flooder");
    }
    probe.join().expect("prober")
}

#[test]
fn a_client_that_floods_and_never_reads_is_closed_at_its_budget() {
    let (cluster, before) = flood_setup("");
    let took = flood(&cluster, 1);
    let peak = proc_kb(cluster.proxy.pid(), "VmHWM");
    let (p50, p99, max) = percentiles(took);
    eprintln!(
        "1 flooder: RSS {before} KiB -> peak {peak} KiB (+{} KiB); prober p50 {p50:.2} ms, \
         p99 {p99:.2} ms, max {max:.2} ms",
        peak.saturating_sub(before)
    );
    assert!(
        peak.saturating_sub(before) < 64 * 1024,
        "RSS grew {} KiB for one client that never reads",
        peak.saturating_sub(before)
    );
    assert_eq!(disconnects(&cluster, "memory_limit"), 1.0);
    assert!(p99 < 250.0, "the prober's p99 was {p99:.1} ms");
    let mut c = cluster.client();
    assert_eq!(c.cmd_str(&["PING"]), pong());
    wait_for(Duration::from_secs(5), "the buffers freed", || {
        (buffered(&cluster) < MIB).then_some(())
    });
}

#[test]
fn fifty_clients_that_flood_keep_the_proxy_under_max_client_memory() {
    let max = 256 * MIB;
    let (cluster, before) = flood_setup(&format!("max_client_memory = {max}"));
    let took = flood(&cluster, 50);
    let peak = proc_kb(cluster.proxy.pid(), "VmHWM");
    let (p50, p99, peak_latency) = percentiles(took);
    eprintln!(
        "50 flooders, max_client_memory {} MiB: RSS {before} KiB -> peak {peak} KiB; closed: \
         {} at max_client_memory, {} at their own budget; prober p50 {p50:.2} ms, \
         p99 {p99:.2} ms, max {peak_latency:.2} ms",
        max / MIB,
        disconnects(&cluster, "max_client_memory"),
        disconnects(&cluster, "memory_limit"),
    );
    assert!(
        peak < (max + 64 * MIB) / 1024,
        "peak RSS {peak} KiB, over max_client_memory + 64 MiB"
    );
    assert!(disconnects(&cluster, "max_client_memory") >= 1.0);
    assert_eq!(
        disconnects(&cluster, "max_client_memory") + disconnects(&cluster, "memory_limit"),
        50.0,
        "each flooder closed once, for one reason"
    );
    assert!(p99 < 500.0, "the prober's p99 was {p99:.1} ms");
    let mut c = cluster.client();
    assert_eq!(c.cmd_str(&["PING"]), pong());
    wait_for(Duration::from_secs(5), "the buffers freed", || {
        (buffered(&cluster) < MIB).then_some(())
    });
}

/// Sends `pipeline` whole, then reads until `expected` came back or the connection closed;
/// returns what arrived. The write may fail if the proxy closes the connection first.
fn write_then_read(addr: SocketAddr, pipeline: &[u8], expected: usize) -> Vec<u8> {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_write_timeout(Some(Duration::from_secs(60)))
        .expect("set_write_timeout");
    s.set_read_timeout(Some(Duration::from_secs(60)))
        .expect("set_read_timeout");
    if let Err(e) = s.write_all(pipeline) {
        assert!(
            !matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut),
            "the write of {} bytes stalled: the proxy stopped reading a client that reads \
             only after writing",
            pipeline.len()
        );
    }
    let mut got = Vec::with_capacity(expected);
    let mut buf = vec![0u8; 256 * 1024];
    while got.len() < expected {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
        }
    }
    got
}

/// Asserts `got == want`, showing where they part.
fn same_replies(got: &[u8], want: &[u8]) {
    if got == want {
        return;
    }
    let at = got.iter().zip(want).take_while(|(a, b)| a == b).count();
    let show = |b: &[u8]| {
        String::from_utf8_lossy(&b[at.saturating_sub(40)..(at + 80).min(b.len())]).into_owned()
    };
    panic!(
        "{} of {} reply bytes; they part at {at}: got {:?}, want {:?}",
        got.len(),
        want.len(),
        show(got),
        show(want)
    );
}

/// `n` GETs cycling over 1000 keys `v:{j}` holding 1 KB each (set here), and their replies.
fn gets_of_1kb(c: &mut Client, n: usize) -> (Vec<u8>, Vec<u8>) {
    let value = |j: usize| format!("{j:<1024}").into_bytes();
    for chunk in (0..1000).collect::<Vec<_>>().chunks(100) {
        let pairs: Vec<(String, Vec<u8>)> = chunk
            .iter()
            .map(|&j| (format!("v:{j}"), value(j)))
            .collect();
        let mut args: Vec<&[u8]> = vec![b"MSET"];
        for (k, v) in &pairs {
            args.extend([k.as_bytes(), v.as_slice()]);
        }
        assert_eq!(c.cmd(&args), ok());
    }
    let (mut requests, mut replies) = (Vec::new(), Vec::new());
    for i in 0..n {
        let j = i * 7919 % 1000;
        requests.extend(Client::encode(&[b"GET", format!("v:{j}").as_bytes()]));
        replies.extend(b"$1024\r\n");
        replies.extend(value(j));
        replies.extend(b"\r\n");
    }
    (requests, replies)
}

fn sets(n: usize) -> (Vec<u8>, Vec<u8>) {
    let mut requests = Vec::new();
    for i in 0..n {
        requests.extend(Client::encode(&[
            b"SET",
            format!("key:{i}").as_bytes(),
            format!("value:{i}").as_bytes(),
        ]));
    }
    (requests, b"+OK\r\n".repeat(n))
}

#[test]
fn input_is_read_ahead_only_up_to_client_read_ahead_bytes() {
    let cluster = Cluster::start(2);
    let stream = TcpStream::connect(cluster.proxy.addr).expect("connect");
    let mut writer = stream.try_clone().expect("clone");
    // Nothing is sent while BLPOP waits (3 s), so everything behind it is read ahead.
    let mut pipeline = Client::encode(&[b"BLPOP", b"nothing", b"3"]);
    let pings = 600_000;
    pipeline.extend(Client::encode(&[b"PING"]).repeat(pings));
    let total = pipeline.len();
    let write = std::thread::spawn(move || writer.write_all(&pipeline));
    std::thread::sleep(Duration::from_millis(1000));
    let held = buffered(&cluster);
    assert!(
        held < 4 * MIB,
        "the proxy holds {held} bytes of a {total}-byte pipeline it cannot send yet"
    );
    assert!(
        !write.is_finished(),
        "the proxy read all {total} bytes ahead while it could send none"
    );
    // Once BLPOP is answered, everything is.
    let mut c = Client::from_stream(stream);
    assert_eq!(c.read_reply(), Frame::Null);
    for _ in 0..pings {
        assert_eq!(c.read_reply(), pong());
    }
    write.join().expect("writer").expect("write");
}

#[test]
fn pipelines_written_before_reading_finish_with_a_tiny_read_ahead() {
    // With 1 KiB of read-ahead both sides are full almost at once: SETs (small replies) get
    // their replies gathered, GETs of 1 KB values get their input read on.
    // A generous backend timeout: on a loaded machine a SET waiting 1 s behind 200,000 others
    // would be answered with a timeout error instead of +OK.
    let cluster = Cluster::start_with(2, "client_read_ahead_bytes = 1024", "timeout_ms = 30000");
    let (requests, replies) = sets(200_000);
    let got = write_then_read(cluster.proxy.addr, &requests, replies.len());
    same_replies(&got, &replies);
    let (requests, replies) = gets_of_1kb(&mut cluster.client(), 100_000);
    let got = write_then_read(cluster.proxy.addr, &requests, replies.len());
    same_replies(&got, &replies);
    assert_eq!(disconnects(&cluster, "memory_limit"), 0.0);
}

#[test]
fn a_client_that_writes_more_than_its_budget_before_reading_is_closed() {
    let cluster = Cluster::start_with(
        2,
        "client_memory_limit_bytes = 4194304\nclient_read_ahead_bytes = 65536",
        "",
    );
    let mut c = cluster.client();
    // 300,000 GETs of 1 KB values: 9 MB of input to read on before the replies can go.
    let (requests, replies) = gets_of_1kb(&mut c, 300_000);
    let got = write_then_read(cluster.proxy.addr, &requests, replies.len());
    assert!(got.len() < replies.len(), "it got every reply");
    assert_eq!(disconnects(&cluster, "memory_limit"), 1.0);
    // 2,000,000 SETs: 10 MB of replies to gather before the client reads.
    let (requests, replies) = sets(2_000_000);
    let got = write_then_read(cluster.proxy.addr, &requests, replies.len());
    assert!(got.len() < replies.len(), "it got every reply");
    assert_eq!(disconnects(&cluster, "memory_limit"), 2.0);
    // Within the budget, the same kinds of pipeline finish; other clients never noticed.
    let (requests, replies) = sets(100_000);
    assert!(write_then_read(cluster.proxy.addr, &requests, replies.len()) == replies);
    assert_eq!(c.cmd_str(&["GET", "key:99999"]), bulk("value:99999"));
}

/// A connection that has sent the start of `SET key <len bytes>` and `sent` bytes of it.
fn partial_set(addr: SocketAddr, key: &str, len: usize, sent: usize) -> TcpStream {
    let mut s = TcpStream::connect(addr).expect("connect");
    let head = format!("*3\r\n$3\r\nSET\r\n${}\r\n{key}\r\n${len}\r\n", key.len());
    s.write_all(head.as_bytes()).expect("write");
    s.write_all(&vec![b'v'; sent]).expect("write");
    s
}

#[test]
fn over_max_client_memory_the_client_holding_the_most_is_closed_first() {
    let cluster = Cluster::start_with(2, "max_client_memory = 12582912", "");
    let addr = cluster.proxy.addr;
    let small = 4_000_000;
    let mut a = partial_set(addr, "a", small, 1000);
    wait_for(Duration::from_secs(10), "a's request counted", || {
        (buffered(&cluster) >= small as u64).then_some(())
    });
    let metrics = http_get(cluster.proxy.admin, "/metrics").body;
    let gauge = metric(&metrics, "shardis_client_buffered_bytes").expect("gauge");
    assert!(
        gauge >= small as f64,
        "shardis_client_buffered_bytes {gauge}"
    );
    assert_eq!(
        status(&cluster.proxy)["max_client_memory"].as_u64(),
        Some(12 * MIB)
    );
    // A 20 MB request on another connection: over the total, and the largest holder.
    let mut b = partial_set(addr, "b", 20_000_000, 1000);
    wait_for(Duration::from_secs(10), "a client closed", || {
        (disconnects(&cluster, "max_client_memory") >= 1.0).then_some(())
    });
    b.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("set_read_timeout");
    let mut end = [0u8; 16];
    assert!(
        matches!(b.read(&mut end), Ok(0) | Err(_)),
        "the 20 MB request's client is closed"
    );
    // The smaller one finishes its request.
    a.write_all(&vec![b'v'; small - 1000]).expect("write");
    a.write_all(b"\r\n").expect("write");
    let mut a = Client::from_stream(a);
    assert_eq!(a.read_reply(), ok());
    assert_eq!(a.cmd_str(&["STRLEN", "a"]), common::int(small as i64));
    assert_eq!(disconnects(&cluster, "max_client_memory"), 1.0);
}

#[test]
fn a_subscriber_s_unread_messages_count_towards_max_client_memory() {
    // max_subscriber_output_bytes stays at its 32 MiB: the proxy-wide 8 MiB comes first.
    let cluster = Cluster::start_with(2, "max_client_memory = 8388608", "");
    let mut subscriber = cluster.client();
    assert_eq!(
        subscriber.cmd_str(&["SUBSCRIBE", "news"]),
        Frame::Array(vec![bulk("subscribe"), bulk("news"), common::int(1)])
    );
    // It reads nothing more; 256 KiB messages pile up for it.
    let mut publisher = cluster.client();
    let message = vec![b'm'; 256 * 1024];
    let mut published = 0;
    while disconnects(&cluster, "max_client_memory") < 1.0 {
        assert!(
            published < 400,
            "100 MB published and the subscriber is still there"
        );
        publisher.cmd(&[b"PUBLISH", b"news", &message]);
        published += 1;
    }
    let text = http_get(cluster.proxy.admin, "/metrics").body;
    assert_eq!(
        metric(&text, "shardis_pubsub_evicted_total").unwrap_or(0.0),
        0.0
    );
    assert_eq!(
        publisher.cmd(&[b"PUBLISH", b"news", b"x"]),
        common::int(0),
        "the subscriber is gone"
    );
}
