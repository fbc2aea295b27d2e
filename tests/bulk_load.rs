//! Bulk loading: a pipeline of any size, written in one go or in pieces, read concurrently,
//! slowly or only once the write is done, gets every reply, in order. A session once stalled
//! for good when it stopped reading at `max_pipeline` and nothing woke it after the replies
//! drained; these tests cross every backpressure edge with `max_pipeline` at 1, 16 and the
//! default, on pipelines spread over four backends and aimed at one.
//!
//! They check progress and order, not speed: `make bench-load` measures bulk-load throughput.

mod common;

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::ops::{backends, start_redises, with_server};
use common::{Client, Frame, Redis, Shardis, TempDir, find_program, shardis_config};
use proptest::prelude::*;
use proptest::test_runner::{Config as ProptestConfig, TestRunner};

/// The `max_pipeline` values every test runs with: one command at a time, a small window, and
/// the default (`None`).
const MAX_PIPELINES: [Option<usize>; 3] = [Some(1), Some(16), None];
/// Commands in the large pipelines.
const LARGE: usize = 100_000;
/// Distinct keys the pipelines cycle through.
const KEYS: usize = 1000;
/// Size of the values the GET pipelines fetch.
const VALUE_BYTES: usize = 1024;

/// Four redis-servers and a shardis over them with `max_pipeline` set (`None`: the default).
struct Proxy {
    _redis: Vec<Redis>,
    shardis: Shardis,
    max_pipeline: Option<usize>,
}

impl Proxy {
    fn start(max_pipeline: Option<usize>) -> Proxy {
        let redis = start_redises(4);
        // A generous timeout: these tests are about progress and order, not latency.
        let mut config = shardis_config(&backends(&redis), "hash_tag = \"{}\"\ntimeout_ms = 30000");
        if let Some(n) = max_pipeline {
            config = with_server(&config, &format!("max_pipeline = {n}"));
        }
        let shardis = Shardis::start(&config);
        Proxy {
            _redis: redis,
            shardis,
            max_pipeline,
        }
    }

    fn addr(&self) -> SocketAddr {
        self.shardis.addr
    }

    /// A deadline for `commands` commands: generous, but proportional to the size, and long
    /// enough for one command per round trip when `max_pipeline` is 1.
    fn deadline(&self, commands: usize) -> Duration {
        let per_command = if self.max_pipeline == Some(1) {
            Duration::from_micros(500)
        } else {
            Duration::from_micros(100)
        };
        Duration::from_secs(20) + per_command * commands as u32
    }

    /// Stores `KEYS` values of `VALUE_BYTES` bytes under `big:{j}`, each naming its key.
    fn load_big_values(&self) {
        let mut c = Client::connect(&self.addr().to_string());
        for chunk in (0..KEYS).collect::<Vec<_>>().chunks(100) {
            let pairs: Vec<(String, Vec<u8>)> = chunk
                .iter()
                .map(|&j| (format!("big:{j}"), big_value(j)))
                .collect();
            let mut args: Vec<&[u8]> = vec![b"MSET"];
            for (k, v) in &pairs {
                args.push(k.as_bytes());
                args.push(v);
            }
            assert_eq!(c.cmd(&args), Frame::Simple("OK".into()));
        }
    }
}

fn big_value(j: usize) -> Vec<u8> {
    let mut v = format!("value of big:{j} ").into_bytes();
    v.resize(VALUE_BYTES, b'.');
    v
}

/// A pipeline and the exact bytes its replies must be, in order.
#[derive(Default)]
struct Exchange {
    requests: Vec<u8>,
    replies: Vec<u8>,
    commands: usize,
    /// What the keys hold, as the pipeline so far leaves them.
    model: HashMap<String, Vec<u8>>,
}

impl Exchange {
    /// `SET key value GET`: a write whose reply (the previous value) shows the order.
    fn set_get(&mut self, key: String, value: &[u8]) {
        self.request(&[b"SET", key.as_bytes(), value, b"GET"]);
        match self.model.insert(key, value.to_vec()) {
            Some(old) => put_bulk(&mut self.replies, &old),
            None => self.replies.extend_from_slice(b"$-1\r\n"),
        }
    }

    fn get_big(&mut self, j: usize) {
        self.request(&[b"GET", format!("big:{j}").as_bytes()]);
        put_bulk(&mut self.replies, &big_value(j));
    }

    /// MGET over keys that `set_get` wrote (several backends: a split command).
    fn mget(&mut self, keys: &[String]) {
        let mut args: Vec<&[u8]> = vec![b"MGET"];
        args.extend(keys.iter().map(|k| k.as_bytes()));
        self.request(&args);
        self.replies
            .extend_from_slice(format!("*{}\r\n", keys.len()).as_bytes());
        for k in keys {
            match self.model.get(k) {
                Some(v) => put_bulk(&mut self.replies, &v.clone()),
                None => self.replies.extend_from_slice(b"$-1\r\n"),
            }
        }
    }

    /// A command shardis answers itself.
    fn ping(&mut self) {
        self.request(&[b"PING"]);
        self.replies.extend_from_slice(b"+PONG\r\n");
    }

    fn request(&mut self, args: &[&[u8]]) {
        self.requests.extend(Client::encode(args));
        self.commands += 1;
    }
}

fn put_bulk(out: &mut Vec<u8>, v: &[u8]) {
    out.extend_from_slice(format!("${}\r\n", v.len()).as_bytes());
    out.extend_from_slice(v);
    out.extend_from_slice(b"\r\n");
}

/// `n` SETs (with GET, so the replies show their order) cycling over `KEYS` keys named
/// `{prefix}:{i}`. A prefix like `{one}` puts every key on one backend.
fn sets(n: usize, prefix: &str) -> Exchange {
    let mut ex = Exchange::default();
    for i in 0..n {
        ex.set_get(format!("{prefix}:{}", i % KEYS), i.to_string().as_bytes());
    }
    ex
}

/// `n` GETs of the `VALUE_BYTES` values, in an order that visits every backend.
fn gets(n: usize) -> Exchange {
    let mut ex = Exchange::default();
    for i in 0..n {
        ex.get_big(i * 7919 % KEYS);
    }
    ex
}

/// How the pipeline is written.
#[derive(Clone, Copy, Debug)]
enum Writing {
    /// One `write_all`.
    Whole,
    /// Pieces of random sizes (1 byte to 64 KiB), now and then after a short pause.
    Pieces { seed: u64 },
}

/// How the replies are read.
#[derive(Clone, Copy, Debug)]
enum Reading {
    /// Only once the whole pipeline is written (redis-py's `execute()` does this).
    AfterWrite,
    /// As fast as they come, while another thread writes.
    Concurrent,
    /// While another thread writes, in reads of random sizes with random pauses.
    Paced { seed: u64 },
}

/// A small deterministic generator for chunk sizes and pauses (xorshift64*).
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) % n.max(1)
    }
}

fn write_pipeline(mut stream: &TcpStream, bytes: &[u8], how: Writing) -> std::io::Result<()> {
    match how {
        Writing::Whole => stream.write_all(bytes),
        Writing::Pieces { seed } => {
            let mut rng = Rng(seed | 1);
            let mut at = 0;
            while at < bytes.len() {
                let n = match rng.below(4) {
                    0 => 1 + rng.below(16),
                    _ => 1 + rng.below(64 * 1024),
                } as usize;
                let end = (at + n).min(bytes.len());
                stream.write_all(&bytes[at..end])?;
                at = end;
                if rng.below(64) == 0 {
                    std::thread::sleep(Duration::from_micros(rng.below(2000)));
                }
            }
            Ok(())
        }
    }
}

/// Sends `ex`'s pipeline to `addr` and checks that exactly its replies come back, in order,
/// before `deadline`. Returns how long it took.
fn exchange(
    addr: SocketAddr,
    ex: &Exchange,
    writing: Writing,
    reading: Reading,
    deadline: Duration,
) -> Result<Duration, String> {
    let started = Instant::now();
    let stream = TcpStream::connect(addr).map_err(|e| format!("connect: {e}"))?;
    stream
        .set_write_timeout(Some(deadline))
        .map_err(|e| e.to_string())?;
    let writer = stream.try_clone().map_err(|e| e.to_string())?;
    let requests = ex.requests.clone();
    let write = move || write_pipeline(&writer, &requests, writing);
    let writer_thread = match reading {
        Reading::AfterWrite => {
            write().map_err(|e| {
                format!(
                    "the write did not complete within {deadline:?} ({e}): the proxy stopped \
                     reading a client that reads only after writing"
                )
            })?;
            None
        }
        Reading::Concurrent | Reading::Paced { .. } => Some(std::thread::spawn(write)),
    };
    let mut rng = Rng(match reading {
        Reading::Paced { seed } => seed | 1,
        _ => 1,
    });
    let mut stream = stream;
    let mut buf = vec![0u8; 256 * 1024];
    let mut got = 0;
    let expected = &ex.replies;
    while got < expected.len() {
        let left = deadline.saturating_sub(started.elapsed());
        if left.is_zero() {
            return Err(format!(
                "{} of {} reply bytes ({} commands) after {deadline:?}: the pipeline stalled",
                got,
                expected.len(),
                ex.commands
            ));
        }
        stream
            .set_read_timeout(Some(left.min(Duration::from_millis(200))))
            .map_err(|e| e.to_string())?;
        let want = match reading {
            Reading::Paced { .. } => 1 + rng.below(buf.len() as u64) as usize,
            _ => buf.len(),
        };
        match stream.read(&mut buf[..want]) {
            Ok(0) => {
                return Err(format!(
                    "connection closed after {got} of {} reply bytes",
                    expected.len()
                ));
            }
            Ok(n) => {
                let end = got + n;
                if end > expected.len() || buf[..n] != expected[got..end] {
                    let at = (0..n)
                        .find(|&i| expected.get(got + i) != Some(&buf[i]))
                        .unwrap_or(0);
                    let show =
                        |b: &[u8]| String::from_utf8_lossy(&b[..b.len().min(80)]).into_owned();
                    return Err(format!(
                        "reply bytes differ at offset {}: got {:?}, expected {:?}",
                        got + at,
                        show(&buf[at..n]),
                        show(expected.get(got + at..).unwrap_or_default())
                    ));
                }
                got = end;
            }
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut => {}
            Err(e) => return Err(format!("read: {e}")),
        }
        if let Reading::Paced { .. } = reading
            && rng.below(4) == 0
        {
            std::thread::sleep(Duration::from_micros(rng.below(1000)));
        }
    }
    if let Some(t) = writer_thread {
        t.join()
            .map_err(|_| "writer thread panicked".to_string())?
            .map_err(|e| format!("write: {e}"))?;
    }
    Ok(started.elapsed())
}

fn must_exchange(proxy: &Proxy, ex: &Exchange, writing: Writing, reading: Reading) {
    let deadline = proxy.deadline(ex.commands);
    if let Err(e) = exchange(proxy.addr(), ex, writing, reading, deadline) {
        panic!(
            "max_pipeline {:?}, {} commands, {writing:?}, {reading:?}: {e}",
            proxy.max_pipeline, ex.commands
        );
    }
}

#[test]
fn a_hundred_thousand_sets_in_one_write_read_after_it_and_concurrently() {
    for max_pipeline in MAX_PIPELINES {
        let proxy = Proxy::start(max_pipeline);
        must_exchange(
            &proxy,
            &sets(LARGE, "a"),
            Writing::Whole,
            Reading::AfterWrite,
        );
        must_exchange(
            &proxy,
            &sets(LARGE, "c"),
            Writing::Whole,
            Reading::Concurrent,
        );
    }
}

#[test]
fn a_hundred_thousand_gets_of_1kb_values_hit_the_output_bound_and_finish() {
    // 100 MB of replies: far past the session's output bound, so both bounds (pipeline and
    // output) are crossed while the client still writes.
    for max_pipeline in MAX_PIPELINES {
        let proxy = Proxy::start(max_pipeline);
        proxy.load_big_values();
        let ex = gets(LARGE);
        must_exchange(&proxy, &ex, Writing::Whole, Reading::AfterWrite);
        must_exchange(&proxy, &ex, Writing::Whole, Reading::Concurrent);
    }
}

#[test]
fn a_hundred_thousand_commands_aimed_at_one_backend() {
    // One backend link carries the whole pipeline: its own bounds (requests in flight, write
    // buffer) are crossed too.
    for max_pipeline in MAX_PIPELINES {
        let proxy = Proxy::start(max_pipeline);
        let ex = sets(LARGE, "{one}");
        must_exchange(&proxy, &ex, Writing::Whole, Reading::AfterWrite);
        must_exchange(
            &proxy,
            &sets(LARGE, "{one}x"),
            Writing::Pieces { seed: 7 },
            Reading::Concurrent,
        );
    }
}

/// The mass-insertion method of Redis's documentation: RESP-encoded SETs piped into
/// `redis-cli --pipe`, which writes and reads at once and waits at most 30 s for a reply.
#[test]
fn redis_cli_pipe_mass_insertion() {
    let redis_cli = find_program("redis-cli", "redis-tools");
    let dir = TempDir::new("mass-insert");
    for max_pipeline in MAX_PIPELINES {
        // One command per round trip is latency-bound: a tenth of the size proves the same.
        let n = if max_pipeline == Some(1) {
            100_000
        } else {
            1_000_000
        };
        let proxy = Proxy::start(max_pipeline);
        let input = dir.path().join(format!("insert-{n}.resp"));
        if !input.exists() {
            let mut data = Vec::with_capacity(n * 48);
            for i in 0..n {
                data.extend(Client::encode(&[
                    b"SET",
                    format!("key:{i}").as_bytes(),
                    format!("value:{i}").as_bytes(),
                ]));
            }
            std::fs::write(&input, data).expect("write the insertion file");
        }
        let started = Instant::now();
        let out = Command::new(&redis_cli)
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &proxy.addr().port().to_string(),
                "--pipe",
            ])
            .stdin(std::fs::File::open(&input).expect("open the insertion file"))
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .output()
            .expect("run redis-cli --pipe");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && text.contains(&format!("errors: 0, replies: {n}")),
            "max_pipeline {max_pipeline:?}: redis-cli --pipe of {n} SETs after {:?}:\n{text}{}",
            started.elapsed(),
            String::from_utf8_lossy(&out.stderr)
        );
        let mut c = Client::connect(&proxy.addr().to_string());
        assert_eq!(c.cmd_str(&["DBSIZE"]), Frame::Integer(n as i64));
        let last = format!("key:{}", n - 1);
        assert_eq!(
            c.cmd_str(&["GET", &last]),
            Frame::Bulk(format!("value:{}", n - 1).into_bytes())
        );
    }
}

/// One random pipeline: its size, which proxy (`max_pipeline`), how it is written and read,
/// and the seed of its commands.
#[derive(Clone, Debug)]
struct Case {
    commands: usize,
    proxy: usize,
    writing: Writing,
    reading: Reading,
    seed: u64,
}

fn case() -> impl Strategy<Value = Case> {
    let writing = prop_oneof![
        Just(Writing::Whole),
        any::<u64>().prop_map(|seed| Writing::Pieces { seed }),
    ];
    let reading = prop_oneof![
        Just(Reading::AfterWrite),
        Just(Reading::Concurrent),
        any::<u64>().prop_map(|seed| Reading::Paced { seed }),
    ];
    (
        prop_oneof![1..=100usize, 1..=50_000usize],
        0..MAX_PIPELINES.len(),
        writing,
        reading,
        any::<u64>(),
    )
        .prop_map(|(commands, proxy, writing, reading, seed)| Case {
            commands,
            proxy,
            writing,
            reading,
            seed,
        })
}

/// A mix of forwarded writes, large reads, split MGETs and local PINGs, with keys unique to
/// `case_id` so earlier cases do not matter.
fn mixed(case_id: usize, commands: usize, seed: u64) -> Exchange {
    let mut rng = Rng(seed | 1);
    let mut ex = Exchange::default();
    let key = |rng: &mut Rng| format!("p{case_id}:{}", rng.below(500));
    for i in 0..commands {
        match rng.below(10) {
            0..=4 => {
                let k = key(&mut rng);
                ex.set_get(k, i.to_string().as_bytes());
            }
            5..=7 => ex.get_big(rng.below(KEYS as u64) as usize),
            8 => {
                let keys: Vec<String> = (0..1 + rng.below(5)).map(|_| key(&mut rng)).collect();
                ex.mget(&keys);
            }
            _ => ex.ping(),
        }
    }
    ex
}

#[test]
fn random_pipelines_chunkings_and_read_paces_all_finish_in_order() {
    let proxies: Vec<Proxy> = MAX_PIPELINES.iter().map(|&mp| Proxy::start(mp)).collect();
    for p in &proxies {
        p.load_big_values();
    }
    let mut runner = TestRunner::new(ProptestConfig {
        cases: 24,
        failure_persistence: None,
        max_shrink_iters: 16,
        ..ProptestConfig::default()
    });
    let case_id = std::sync::atomic::AtomicUsize::new(0);
    let result = runner.run(&case(), |case| {
        let id = case_id.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let proxy = &proxies[case.proxy];
        let ex = mixed(id, case.commands, case.seed);
        let deadline = proxy.deadline(ex.commands);
        exchange(proxy.addr(), &ex, case.writing, case.reading, deadline).map_err(|e| {
            TestCaseError::fail(format!("max_pipeline {:?}: {e}", proxy.max_pipeline))
        })?;
        Ok(())
    });
    if let Err(e) = result {
        panic!("{e}");
    }
}
