//! Pipelining through shardis: thousands of commands in one write answered in order across
//! shards; local, forwarded, fanned-out and refused commands interleaved; big replies followed
//! by small ones; and a client that writes without reading is throttled, not buffered.

mod common;

use std::io::Write;
use std::net::TcpStream;
use std::thread;

use common::{Client, Cluster, Frame, bulk, err, int, ok};

/// Sends `bytes` with one `write_all` from another thread (so a full socket cannot deadlock
/// the test), and returns a client reading the replies on the same connection.
fn pipeline(cluster: &Cluster, bytes: Vec<u8>) -> (Client, thread::JoinHandle<()>) {
    let stream = TcpStream::connect(cluster.proxy.addr).expect("connect to shardis");
    let mut writer = stream.try_clone().expect("clone stream");
    let handle = thread::spawn(move || writer.write_all(&bytes).expect("write the pipeline"));
    (Client::from_stream(stream), handle)
}

#[test]
fn ten_thousand_commands_in_one_write() {
    let cluster = Cluster::start(4);
    const PAIRS: usize = 5000;
    let mut buf = Vec::new();
    for i in 0..PAIRS {
        let (k, v) = (format!("key_{i}"), format!("value_{i}"));
        buf.extend(Client::encode(&[b"SET", k.as_bytes(), v.as_bytes()]));
        buf.extend(Client::encode(&[b"GET", k.as_bytes()]));
    }
    let (mut c, writer) = pipeline(&cluster, buf);
    for i in 0..PAIRS {
        assert_eq!(c.read_reply(), ok(), "reply to SET key_{i}");
        assert_eq!(
            c.read_reply(),
            bulk(format!("value_{i}")),
            "reply to GET key_{i}"
        );
    }
    writer.join().expect("writer thread");
    assert_eq!(c.cmd_str(&["DBSIZE"]), int(PAIRS as i64));

    // Every key is stored once, with its value, and the keys used every backend.
    let found = cluster.locate();
    assert_eq!(found.len(), PAIRS);
    let sizes = cluster.dbsizes();
    assert!(
        sizes.iter().all(|&n| n > 0),
        "keys per backend {sizes:?}: not spread over all four"
    );
    for (i, mut direct) in (0..4).map(|i| (i, cluster.backend(i))) {
        let mut keys: Vec<&Vec<u8>> = found
            .iter()
            .filter(|&(_, b)| *b == i)
            .map(|(k, _)| k)
            .collect();
        keys.sort();
        let mut mget: Vec<&[u8]> = vec![b"MGET"];
        mget.extend(keys.iter().map(|k| k.as_slice()));
        let expected: Vec<Frame> = keys
            .iter()
            .map(|k| {
                let n = std::str::from_utf8(&k[4..]).unwrap();
                bulk(format!("value_{n}"))
            })
            .collect();
        assert_eq!(
            direct.cmd(&mget),
            Frame::Array(expected),
            "values on s{}",
            i + 1
        );
    }
}

#[test]
fn mixed_commands_answered_in_order() {
    let cluster = Cluster::start(4);
    const ROUNDS: usize = 100;
    let mut buf = Vec::new();
    for r in 0..ROUNDS {
        let (a, b, missing) = (format!("a{r}"), format!("b{r}"), format!("m{r}"));
        let keys = [a.as_str(), b.as_str(), missing.as_str()];
        let enc = |args: &[&str]| {
            let args: Vec<&[u8]> = args.iter().map(|a| a.as_bytes()).collect();
            Client::encode(&args)
        };
        buf.extend(enc(&["PING"]));
        buf.extend(enc(&["SET", keys[0], "1"]));
        buf.extend(enc(&["FOOBAR", "x"]));
        buf.extend(enc(&["GET", keys[0]]));
        buf.extend(enc(&["ECHO", &format!("round {r}")]));
        buf.extend(enc(&["MSET", keys[1], "2", &format!("c{r}"), "3"]));
        buf.extend(enc(&["MGET", keys[0], keys[2], keys[1]]));
        buf.extend(enc(&["GET"]));
        buf.extend_from_slice(b"PING inline\r\n");
        buf.extend(enc(&["EXISTS", keys[0], keys[1], keys[2], keys[0]]));
        buf.extend(enc(&["INCR", "counter"]));
        buf.extend(enc(&["SELECT", "1"]));
        buf.extend(enc(&["DEL", keys[1], keys[2], &format!("c{r}")]));
        buf.extend(enc(&["DBSIZE"]));
    }
    let (mut c, writer) = pipeline(&cluster, buf);
    for r in 0..ROUNDS {
        let expected = [
            Frame::Simple("PONG".into()),
            ok(),
            err("ERR unknown command 'FOOBAR', with args beginning with: 'x' "),
            bulk("1"),
            bulk(format!("round {r}")),
            ok(),
            Frame::Array(vec![bulk("1"), Frame::Null, bulk("2")]),
            err("ERR wrong number of arguments for 'get' command"),
            bulk("inline"),
            int(3),
            int(r as i64 + 1),
            err("ERR shardis serves database 0 only"),
            int(2),
            // a0..ar and counter remain.
            int(r as i64 + 2),
        ];
        for (j, e) in expected.into_iter().enumerate() {
            assert_eq!(c.read_reply(), e, "round {r}, command {j}");
        }
    }
    writer.join().expect("writer thread");
}

/// Replies larger than the proxy's output buffer, each followed by small ones: every reply
/// arrives, in order, however the big ones are split into writes.
#[test]
fn big_replies_followed_by_small_ones() {
    let cluster = Cluster::start(4);
    let mut c = cluster.client();
    let big: Vec<u8> = (0..3 * 512 * 1024).map(|i| (i % 253) as u8).collect();
    assert_eq!(c.cmd(&[b"SET", b"big", &big]), ok());
    assert_eq!(c.cmd_str(&["SET", "small", "s"]), ok());
    const ROUNDS: usize = 12;
    let mut buf = Vec::new();
    for _ in 0..ROUNDS {
        buf.extend(Client::encode(&[b"GET", b"big"]));
        buf.extend(Client::encode(&[b"GET", b"small"]));
        buf.extend(Client::encode(&[b"PING"]));
    }
    let (mut c, writer) = pipeline(&cluster, buf);
    for r in 0..ROUNDS {
        match c.read_reply() {
            Frame::Bulk(v) if v == big => {}
            Frame::Bulk(v) => panic!("round {r}: GET big: {} bytes, not the value", v.len()),
            other => panic!("round {r}: GET big: {other:?}"),
        }
        assert_eq!(c.read_reply(), bulk("s"), "round {r}: GET small");
        assert_eq!(
            c.read_reply(),
            Frame::Simple("PONG".into()),
            "round {r}: PING"
        );
    }
    writer.join().expect("writer thread");
}

/// A memory figure of a process in KiB from /proc/PID/status: "VmRSS" (now) or "VmHWM" (peak).
fn memory_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("read status");
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("{field} in /proc/{pid}/status"))
}

/// `total_commands_processed` from the proxy's INFO.
fn commands_processed(c: &mut Client) -> u64 {
    let info = c.cmd_str(&["INFO"]).as_text();
    info.lines()
        .find_map(|l| l.strip_prefix("total_commands_processed:"))
        .and_then(|v| v.trim().parse().ok())
        .expect("total_commands_processed in INFO")
}

/// A client that pipelines far more than it reads: the proxy holds at most `max_pipeline`
/// (1024) of its replies and stops reading from it, rather than buffering every reply; once
/// the client reads, every reply comes, in order.
#[test]
fn client_that_does_not_read_is_throttled() {
    let cluster = Cluster::start(4);
    const COMMANDS: usize = 50_000;
    const VALUE: usize = 4096;
    let value = vec![b'v'; VALUE];
    let mut c = cluster.client();
    assert_eq!(c.cmd(&[b"SET", b"throttled", &value]), ok());
    let pid = cluster.proxy.pid();
    let before = memory_kib(pid, "VmRSS");

    // 1.5 MB of requests fit in the socket buffers, so all are sent at once; answered and
    // buffered, their replies would take 200 MB.
    let mut requests = Vec::new();
    for _ in 0..COMMANDS {
        requests.extend(Client::encode(&[b"GET", b"throttled"]));
    }
    let (mut reader, writer) = pipeline(&cluster, requests);
    // Before reading anything, wait until the proxy has taken more commands than it may
    // hold replies for (1024 in flight, 256 in its output buffer, then it stops reading).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while commands_processed(&mut c) < 1200 {
        assert!(
            std::time::Instant::now() < deadline,
            "the proxy did not take 1200 commands within 10 s"
        );
        thread::sleep(std::time::Duration::from_millis(10));
    }
    for i in 0..COMMANDS {
        assert!(
            reader.read_reply() == Frame::Bulk(value.clone()),
            "reply {i} of {COMMANDS}"
        );
    }
    writer.join().expect("writer thread");
    assert_eq!(reader.cmd_str(&["PING"]), Frame::Simple("PONG".into()));

    // 1024 replies of 4 KiB, the 1 MiB output buffer, read buffers: about 12 MiB measured;
    // without the pipeline bound the proxy grew by over 40 MiB.
    let peak_growth_mib = memory_kib(pid, "VmHWM").saturating_sub(before) / 1024;
    eprintln!("peak growth {peak_growth_mib} MiB");
    assert!(
        peak_growth_mib < 24,
        "shardis grew by up to {peak_growth_mib} MiB for a client that did not read 200 MB of replies"
    );
}
