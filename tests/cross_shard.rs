//! Scripts and transactions whose keys span backends, run by shardis: the corpus of
//! tests/script_corpus through shardis over three backends against one plain redis-server,
//! isolation between two shardis instances, locks of a killed instance, the script timeout,
//! SCRIPT KILL, scripts shared between instances, and `cross_shard = "refuse"`.

mod common;
#[path = "script_corpus/mod.rs"]
mod script_corpus;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use common::{Cluster, Frame, Redis, Shardis, bulk, err, int, ok};
use shardis::protocol::reply::ReplyScanner;

/// A blocking connection that returns each reply's raw bytes.
struct Raw {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl Raw {
    fn connect(addr: &str, resp3: bool) -> Raw {
        let stream = TcpStream::connect(addr).expect("connect");
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .expect("timeout");
        let mut raw = Raw {
            stream,
            buf: Vec::new(),
        };
        if resp3 {
            raw.cmd(&[b"HELLO", b"3"]);
        }
        raw
    }

    fn cmd(&mut self, args: &[&[u8]]) -> Vec<u8> {
        self.stream
            .write_all(&common::Client::encode(args))
            .expect("write");
        let mut scanner = ReplyScanner::new();
        loop {
            if let Some(n) = scanner.scan(&self.buf).expect("valid reply") {
                return self.buf.drain(..n).collect();
            }
            let mut chunk = [0u8; 65536];
            let n = self.stream.read(&mut chunk).expect("read");
            assert!(n > 0, "connection closed");
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }
}

fn show(b: &[u8]) -> String {
    String::from_utf8_lossy(b).replace("\r\n", "\\r\\n")
}

/// Every key (shardis's own `__shardis:` keys left out) with its type, DUMP and whether it
/// has a TTL, sorted.
/// One key as [`snapshot`] sees it: name, type, DUMP, and whether it has a TTL.
type KeyState = (Vec<u8>, Vec<u8>, Vec<u8>, bool);

fn snapshot(conns: &mut [Raw]) -> Vec<KeyState> {
    let mut out = Vec::new();
    for conn in conns.iter_mut() {
        let keys = conn.cmd(&[b"KEYS", b"*"]);
        let body = &keys[keys.windows(2).position(|w| w == b"\r\n").expect("array") + 2..];
        let mut at = 0;
        while at < body.len() {
            let end = at
                + body[at..]
                    .windows(2)
                    .position(|w| w == b"\r\n")
                    .expect("bulk");
            let len: usize = std::str::from_utf8(&body[at + 1..end])
                .expect("len")
                .parse()
                .expect("len");
            let key = body[end + 2..end + 2 + len].to_vec();
            at = end + 2 + len + 2;
            if key.starts_with(b"__shardis:") {
                continue;
            }
            let ty = conn.cmd(&[b"TYPE", &key]);
            let dump = conn.cmd(&[b"DUMP", &key]);
            let ttl = conn.cmd(&[b"PTTL", &key]);
            out.push((key, ty, dump, ttl != b":-1\r\n"));
        }
    }
    out.sort();
    out
}

fn load_fixture(conn: &mut Raw) {
    assert_eq!(conn.cmd(&[b"FLUSHALL"]), b"+OK\r\n");
    for cmd in script_corpus::FIXTURE {
        let args: Vec<&[u8]> = cmd.iter().map(|a| a.as_bytes()).collect();
        let reply = conn.cmd(&args);
        assert!(
            !reply.starts_with(b"-"),
            "fixture {cmd:?}: {}",
            show(&reply)
        );
    }
}

/// Scripts whose replies through shardis differ from one redis-server's by design (README
/// "Scripts and transactions across backends").
const DIFFER_BY_DESIGN: &[&str] = &[];

#[test]
fn the_corpus_through_shardis_over_three_backends_matches_one_redis() {
    let cluster = Cluster::start(3);
    let plain = Redis::start();
    let proxy = cluster.proxy.addr.to_string();
    let mut p2 = Raw::connect(&proxy, false);
    let mut p3 = Raw::connect(&proxy, true);
    let mut r2 = Raw::connect(&plain.addr(), false);
    let mut r3 = Raw::connect(&plain.addr(), true);
    let mut backends: Vec<Raw> = cluster
        .redis
        .iter()
        .map(|r| Raw::connect(&r.addr(), false))
        .collect();
    // Keys of the fixture on every backend: the corpus's scripts run across backends. Where
    // a key lives is asked of `shardis route`: the fixture is not loaded yet, and a script's
    // keys need not exist before it runs.
    let spread: std::collections::BTreeSet<usize> = cluster
        .route(&["s", "n", "l", "h", "set", "z", "ttl"])
        .into_iter()
        .collect();
    assert!(spread.len() >= 2, "the fixture's keys are on one backend");
    let mut corpus = script_corpus::corpus();
    corpus.extend(
        script_corpus::library_corpus()
            .into_iter()
            .filter(|_| false),
    );
    let mut failures = Vec::new();
    let mut across = 0;
    for case in &corpus {
        if DIFFER_BY_DESIGN.contains(&case.name) {
            continue;
        }
        load_fixture(&mut p2);
        load_fixture(&mut r2);
        let mut argv: Vec<&[u8]> = vec![case.cmd.as_bytes(), case.script.as_bytes()];
        let numkeys = case.keys.len().to_string();
        argv.push(numkeys.as_bytes());
        argv.extend(case.keys.iter().map(|k| k.as_bytes()));
        argv.extend(case.args.iter().map(|k| k.as_bytes()));
        let holders: std::collections::BTreeSet<usize> = if case.keys.is_empty() {
            Default::default()
        } else {
            cluster.route(&case.keys).into_iter().collect()
        };
        if holders.len() != 1 {
            across += 1;
        }
        let (expected, got) = if case.resp3 {
            (r3.cmd(&argv), p3.cmd(&argv))
        } else {
            (r2.cmd(&argv), p2.cmd(&argv))
        };
        if got != expected {
            failures.push(format!(
                "{}: reply\n  redis:   {}\n  shardis: {}",
                case.name,
                show(&expected),
                show(&got)
            ));
            continue;
        }
        if snapshot(std::slice::from_mut(&mut r2)) != snapshot(&mut backends) {
            failures.push(format!("{}: data differs after the script", case.name));
        }
    }
    assert!(
        across >= 30,
        "only {across} scripts ran in the proxy (keyless or across backends)"
    );
    assert!(
        failures.is_empty(),
        "{} of {} scripts differ:\n{}",
        failures.len(),
        corpus.len(),
        failures.join("\n")
    );
    eprintln!(
        "{} passed, 0 failed ({across} run in the proxy)",
        corpus.len()
    );
}

/// Two shardis instances over the same three backends.
fn two_instances(server: &str) -> (Cluster, Shardis) {
    let cluster = Cluster::start_with(3, server, "");
    let config = std::fs::read_to_string(cluster.proxy.config_path()).expect("config");
    let second = Shardis::start(&config);
    (cluster, second)
}

const TRANSFER: &str = "local a = tonumber(redis.call('GET', KEYS[1])) \
    local b = tonumber(redis.call('GET', KEYS[2])) \
    redis.call('SET', KEYS[1], a - tonumber(ARGV[1])) \
    redis.call('SET', KEYS[2], b + tonumber(ARGV[1])) return a - tonumber(ARGV[1])";
const AUDIT: &str = "local sum = 0 for i = 1, #KEYS do \
    sum = sum + tonumber(redis.call('GET', KEYS[i])) end return sum";

/// Six accounts, two on each backend, and the pairs of accounts on different backends.
fn accounts(cluster: &Cluster) -> (Vec<String>, Vec<(usize, usize)>) {
    let mut accounts = Vec::new();
    for i in 0..3 {
        accounts.push(cluster.key_on(i, "acct-a"));
        accounts.push(cluster.key_on(i, "acct-b"));
    }
    let mut pairs = Vec::new();
    for a in 0..6 {
        for b in 0..6 {
            if a / 2 != b / 2 {
                pairs.push((a, b));
            }
        }
    }
    (accounts, pairs)
}

/// How long the isolation clients wait for one reply. The redis crate's default (500 ms) is
/// shorter than a lock wait the proxy allows by design (up to `lock_ttl_ms` plus
/// `script_timeout_ms`, 7 s here, before it answers an error): under contention a transfer
/// may wait behind audits that lock all six accounts (about 1.4 s at worst on a loaded
/// 2-core machine, debug build). A reply that never comes still fails the test.
const REPLY_TIMEOUT: Duration = Duration::from_secs(30);

async fn connect(url: String) -> redis::aio::MultiplexedConnection {
    let config = redis::AsyncConnectionConfig::new().set_response_timeout(Some(REPLY_TIMEOUT));
    redis::Client::open(url)
        .expect("url")
        .get_multiplexed_async_connection_with_config(&config)
        .await
        .expect("connect")
}

const START: i64 = 1000;
const TRANSFERS: usize = 300;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn transfers_by_script_across_two_instances_conserve_the_total() {
    let (cluster, second) = two_instances("lock_ttl_ms = 2000");
    let (accounts, pairs) = accounts(&cluster);
    let mut c = cluster.client();
    for a in &accounts {
        assert_eq!(c.cmd_str(&["SET", a, &START.to_string()]), ok());
    }
    let urls = [cluster.url(false), format!("redis://{}/", second.addr)];
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let slowest = std::sync::Arc::new(AtomicU64::new(0));
    let mut workers = Vec::new();
    for w in 0..6 {
        let url = urls[w % 2].clone();
        let (accounts, pairs, slowest) = (accounts.clone(), pairs.clone(), slowest.clone());
        workers.push(tokio::spawn(async move {
            let mut con = connect(url).await;
            for i in 0..TRANSFERS {
                let (a, b) = pairs[(i * 7 + w * 13) % pairs.len()];
                let t = Instant::now();
                let _: i64 = redis::cmd("EVAL")
                    .arg(TRANSFER)
                    .arg(2)
                    .arg(&accounts[a])
                    .arg(&accounts[b])
                    .arg(1 + (i % 5))
                    .query_async(&mut con)
                    .await
                    .expect("transfer");
                slowest.fetch_max(t.elapsed().as_micros() as u64, Relaxed);
            }
        }));
    }
    let mut auditors = Vec::new();
    for url in urls.clone() {
        let (accounts, done, slowest) = (accounts.clone(), done.clone(), slowest.clone());
        auditors.push(tokio::spawn(async move {
            let mut con = connect(url).await;
            let mut audits = 0;
            while !done.load(std::sync::atomic::Ordering::Relaxed) || audits == 0 {
                let mut cmd = redis::cmd("EVAL");
                cmd.arg(AUDIT).arg(6);
                for a in &accounts {
                    cmd.arg(a);
                }
                let t = Instant::now();
                let sum: i64 = cmd.query_async(&mut con).await.expect("audit");
                slowest.fetch_max(t.elapsed().as_micros() as u64, Relaxed);
                assert_eq!(sum, 6 * START, "audit {audits} saw a total of {sum}");
                audits += 1;
            }
            audits
        }));
    }
    for w in workers {
        w.await.expect("transfers");
    }
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut audits = 0;
    for a in auditors {
        audits += a.await.expect("audits");
    }
    let total: i64 = accounts
        .iter()
        .map(|a| match c.cmd_str(&["GET", a]) {
            Frame::Bulk(v) => String::from_utf8(v)
                .expect("utf8")
                .parse::<i64>()
                .expect("n"),
            other => panic!("GET {a}: {other:?}"),
        })
        .sum();
    assert_eq!(total, 6 * START);
    eprintln!(
        "isolation (scripts): {} transfers, {audits} audits, total conserved, slowest reply {} ms",
        6 * TRANSFERS,
        slowest.load(Relaxed) / 1000
    );
    // No lock is left behind.
    for i in 0..3 {
        assert_eq!(
            cluster.backend(i).cmd_str(&["KEYS", "__shardis:lock:*"]),
            Frame::Array(vec![])
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn transfers_by_multi_exec_across_two_instances_conserve_the_total() {
    let (cluster, second) = two_instances("lock_ttl_ms = 2000");
    let (accounts, pairs) = accounts(&cluster);
    let mut c = cluster.client();
    for a in &accounts {
        assert_eq!(c.cmd_str(&["SET", a, &START.to_string()]), ok());
    }
    let urls = [cluster.url(false), format!("redis://{}/", second.addr)];
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let slowest = std::sync::Arc::new(AtomicU64::new(0));
    let mut workers = Vec::new();
    for w in 0..6 {
        let url = urls[w % 2].clone();
        let (accounts, pairs, slowest) = (accounts.clone(), pairs.clone(), slowest.clone());
        workers.push(tokio::spawn(async move {
            let mut con = connect(url).await;
            for i in 0..TRANSFERS {
                let (a, b) = pairs[(i * 11 + w * 5) % pairs.len()];
                let amount = 1 + (i % 5) as i64;
                let t = Instant::now();
                let (_, _): (i64, i64) = redis::pipe()
                    .atomic()
                    .cmd("DECRBY")
                    .arg(&accounts[a])
                    .arg(amount)
                    .cmd("INCRBY")
                    .arg(&accounts[b])
                    .arg(amount)
                    .query_async(&mut con)
                    .await
                    .expect("transfer");
                slowest.fetch_max(t.elapsed().as_micros() as u64, Relaxed);
            }
        }));
    }
    let mut auditors = Vec::new();
    for url in urls.clone() {
        let (accounts, done, slowest) = (accounts.clone(), done.clone(), slowest.clone());
        auditors.push(tokio::spawn(async move {
            let mut con = connect(url).await;
            let mut audits = 0;
            while !done.load(std::sync::atomic::Ordering::Relaxed) || audits == 0 {
                let mut pipe = redis::pipe();
                pipe.atomic();
                for a in &accounts {
                    pipe.cmd("GET").arg(a);
                }
                let t = Instant::now();
                let values: Vec<i64> = pipe.query_async(&mut con).await.expect("audit");
                slowest.fetch_max(t.elapsed().as_micros() as u64, Relaxed);
                let sum: i64 = values.iter().sum();
                assert_eq!(sum, 6 * START, "audit {audits} saw {values:?}");
                audits += 1;
            }
            audits
        }));
    }
    for w in workers {
        w.await.expect("transfers");
    }
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut audits = 0;
    for a in auditors {
        audits += a.await.expect("audits");
    }
    let mut total = 0;
    for a in &accounts {
        let Frame::Bulk(v) = c.cmd_str(&["GET", a]) else {
            panic!("GET {a}");
        };
        total += String::from_utf8(v)
            .expect("utf8")
            .parse::<i64>()
            .expect("n");
    }
    assert_eq!(total, 6 * START);
    eprintln!(
        "isolation (MULTI/EXEC): {} transfers, {audits} audits, total conserved, slowest reply {} ms",
        6 * TRANSFERS,
        slowest.load(Relaxed) / 1000
    );
}

#[test]
fn locks_of_a_killed_instance_expire_after_lock_ttl() {
    let ttl = Duration::from_millis(1000);
    let (cluster, second) = two_instances("lock_ttl_ms = 1000\nscript_timeout_ms = 30000");
    let k1 = cluster.key_on(0, "crash");
    let k2 = cluster.key_on(1, "crash");
    // The second instance runs a script that holds the locks and never ends.
    let mut holder = second.client();
    holder.send_raw(&common::Client::encode(&[
        b"EVAL",
        b"redis.call('SET', KEYS[1], 'held') while true do end",
        b"2",
        k1.as_bytes(),
        k2.as_bytes(),
    ]));
    let lock = format!("__shardis:lock:{k1}");
    let deadline = Instant::now() + Duration::from_secs(20);
    while cluster.backend(0).cmd_str(&["EXISTS", &lock]) != int(1) {
        assert!(Instant::now() < deadline, "the lock was never taken");
        std::thread::sleep(Duration::from_millis(10));
    }
    // Renewed while the script runs: still there after its ttl.
    std::thread::sleep(ttl + Duration::from_millis(500));
    assert_eq!(cluster.backend(0).cmd_str(&["EXISTS", &lock]), int(1));
    second.signal("KILL");
    let killed = Instant::now();
    let mut c = cluster.client();
    assert_eq!(
        c.cmd_str(&["EVAL", "return redis.call('GET', KEYS[1])", "2", &k1, &k2]),
        bulk("held")
    );
    let delay = killed.elapsed();
    eprintln!("a killed instance's locks delayed the other instance's script by {delay:?}");
    assert!(
        delay <= ttl + Duration::from_secs(2),
        "waited {delay:?} for the locks of a killed instance (lock_ttl_ms = 1000)"
    );
}

#[test]
fn a_script_past_its_timeout_is_stopped_its_locks_released_and_others_served() {
    let cluster = Cluster::start_with(3, "script_timeout_ms = 500", "");
    let k1 = cluster.key_on(0, "slow");
    let k2 = cluster.key_on(2, "slow");
    let mut slow = cluster.client();
    slow.send_raw(&common::Client::encode(&[
        b"EVAL",
        b"while true do end",
        b"2",
        k1.as_bytes(),
        k2.as_bytes(),
    ]));
    // Meanwhile other clients are served, and /status shows the script.
    let mut other = cluster.client();
    let start = Instant::now();
    let mut worst = Duration::ZERO;
    let mut seen_running = false;
    while start.elapsed() < Duration::from_millis(400) {
        let t = Instant::now();
        assert_eq!(other.cmd_str(&["SET", &k1, "v"]), ok());
        worst = worst.max(t.elapsed());
        if !seen_running {
            let status = common::ops::status(&cluster.proxy);
            seen_running = status["scripts"]["running"]
                .as_array()
                .is_some_and(|r| !r.is_empty());
        }
    }
    eprintln!("worst latency of another client while a script ran: {worst:?}");
    assert!(worst < Duration::from_secs(1), "{worst:?}");
    assert!(seen_running, "/status never showed the running script");
    match slow.read_reply() {
        Frame::Error(e) => assert!(
            e.contains("timed out after 500 ms (script_timeout_ms)"),
            "{e}"
        ),
        other => panic!("{other:?}"),
    }
    // Its locks are gone: the next script on the same keys runs at once.
    let t = Instant::now();
    assert_eq!(
        slow.cmd_str(&["EVAL", "return redis.call('GET', KEYS[1])", "2", &k1, &k2]),
        bulk("v")
    );
    assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
}

#[test]
fn script_kill_stops_a_script_running_in_the_proxy() {
    let cluster = Cluster::start_with(3, "script_timeout_ms = 60000", "");
    let mut slow = cluster.client();
    slow.send_raw(&common::Client::encode(&[
        b"EVAL",
        b"while true do end",
        b"0",
    ]));
    let mut c = cluster.client();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match c.cmd_str(&["SCRIPT", "KILL"]) {
            Frame::Simple(s) if s == "OK" => break,
            Frame::Error(e) if e.starts_with("NOTBUSY") => {}
            other => panic!("{other:?}"),
        }
        assert!(Instant::now() < deadline, "the script never ran");
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(matches!(slow.read_reply(), Frame::Error(_)));
    assert_eq!(slow.cmd_str(&["PING"]), common::pong());
}

#[test]
fn scripts_across_backends_follow_redis_rules() {
    let cluster = Cluster::start(3);
    let k1 = cluster.key_on(0, "rules");
    let k2 = cluster.key_on(1, "rules");
    let mut c = cluster.client();
    // A keyless script reads and writes keys wherever they live.
    assert_eq!(
        c.cmd_str(&["EVAL", "redis.call('SET', ARGV[1], 'a') redis.call('SET', ARGV[2], 'b') return redis.call('MGET', ARGV[1], ARGV[2])", "0", &k1, &k2]),
        Frame::Array(vec![bulk("a"), bulk("b")])
    );
    assert_eq!(cluster.backend(0).cmd_str(&["GET", &k1]), bulk("a"));
    assert_eq!(cluster.backend(1).cmd_str(&["GET", &k2]), bulk("b"));
    // Writes before an error stay, as in Redis.
    assert!(matches!(
        c.cmd_str(&["EVAL", "redis.call('SET', KEYS[1], 'x') redis.call('INCR', KEYS[2]) return 1", "2", &k1, &k2]),
        Frame::Error(e) if e.contains("not an integer")
    ));
    assert_eq!(c.cmd_str(&["GET", &k1]), bulk("x"));
    // EVAL_RO refuses writes.
    assert!(matches!(
        c.cmd_str(&["EVAL_RO", "return redis.call('SET', KEYS[1], 'y')", "2", &k1, &k2]),
        Frame::Error(e) if e.contains("Write commands are not allowed from read-only scripts")
    ));
    // BLPOP is a `noscript` command: Redis 7.0.15 refuses it from a script, and so does the
    // proxy's engine.
    let blpop = "return redis.call('BLPOP', 'nolist', 0)";
    assert_eq!(
        c.cmd_str(&["EVAL", blpop, "0"]),
        err(&format!(
            "ERR This Redis command is not allowed from script script: {}, on @user_script:1.",
            sha1_hex(blpop)
        ))
    );
    // EVALSHA of a script first run here, through another instance.
    let config = std::fs::read_to_string(cluster.proxy.config_path()).expect("config");
    let second = Shardis::start(&config);
    let script = "return redis.call('GET', KEYS[1]) .. redis.call('GET', KEYS[2])";
    assert_eq!(c.cmd_str(&["EVAL", script, "2", &k1, &k2]), bulk("xb"));
    let sha = sha1_hex(script);
    let mut d = second.client();
    assert_eq!(
        d.cmd_str(&["SCRIPT", "EXISTS", &sha, &"0".repeat(40)]),
        Frame::Array(vec![int(1), int(0)])
    );
    assert_eq!(d.cmd_str(&["EVALSHA", &sha, "2", &k1, &k2]), bulk("xb"));
    assert_eq!(
        d.cmd_str(&["EVALSHA", &"0".repeat(40), "2", &k1, &k2]),
        err("NOSCRIPT No matching script. Please use EVAL.")
    );
    // The proxy counts its cached scripts and the errors it answered.
    let Frame::Bulk(memory) = c.cmd_str(&["INFO", "memory"]) else {
        panic!("INFO memory");
    };
    let memory = String::from_utf8(memory).expect("utf8");
    assert!(
        !memory.contains("number_of_cached_scripts:0\r\n"),
        "{memory}"
    );
    let Frame::Bulk(stats) = c.cmd_str(&["INFO", "errorstats"]) else {
        panic!("INFO errorstats");
    };
    let stats = String::from_utf8(stats).expect("utf8");
    // Three ERR replies, as redis-server 7.0.15 counts the same three scripts: the INCR
    // after a write, the write from EVAL_RO and the BLPOP.
    assert!(stats.contains("errorstat_ERR:count=3\r\n"), "{stats}");
    let Frame::Bulk(cpu) = c.cmd_str(&["INFO", "cpu"]) else {
        panic!("INFO cpu");
    };
    assert!(String::from_utf8_lossy(&cpu).contains("used_cpu_user:"));
    // FUNCTION LOAD is kept by the proxy: FCALL across backends runs here.
    let lib = "#!lua name=xlib\nredis.register_function('both', function(keys) return redis.call('GET', keys[1]) .. redis.call('GET', keys[2]) end)";
    assert_eq!(c.cmd_str(&["FUNCTION", "LOAD", lib]), bulk("xlib"));
    assert_eq!(c.cmd_str(&["FCALL", "both", "2", &k1, &k2]), bulk("xb"));
    // Through the other instance too. FCALL_RO refuses a function without the `no-writes`
    // flag, as redis-server 7.0.15 does.
    assert_eq!(d.cmd_str(&["FCALL", "both", "2", &k1, &k2]), bulk("xb"));
    assert_eq!(
        d.cmd_str(&["FCALL_RO", "both", "2", &k1, &k2]),
        err("ERR Can not execute a script with write flag using *_ro command.")
    );
}

fn sha1_hex(text: &str) -> String {
    shardis::script::sha1hex(text.as_bytes())
}

#[test]
fn refuse_keeps_crossslot_and_keyless_scripts_on_the_first_backend() {
    let cluster = Cluster::start_with(3, "cross_shard = \"refuse\"", "");
    let k1 = cluster.key_on(0, "ref");
    let k2 = cluster.key_on(1, "ref");
    let mut c = cluster.client();
    assert_eq!(
        c.cmd_str(&["EVAL", "return 1", "2", &k1, &k2]),
        err("CROSSSLOT Keys in request don't hash to the same backend")
    );
    assert_eq!(
        c.cmd_str(&[
            "EVAL",
            "redis.call('SET', 'refuse:keyless', 'x') return 1",
            "0"
        ]),
        int(1)
    );
    assert_eq!(
        cluster.backend(0).cmd_str(&["GET", "refuse:keyless"]),
        bulk("x")
    );
    assert_eq!(c.cmd_str(&["MULTI"]), ok());
    assert_eq!(
        c.cmd_str(&["SET", &k1, "1"]),
        Frame::Simple("QUEUED".into())
    );
    assert!(matches!(c.cmd_str(&["SET", &k2, "1"]), Frame::Error(e) if e.starts_with("CROSSSLOT")));
    assert!(matches!(c.cmd_str(&["EXEC"]), Frame::Error(e) if e.starts_with("EXECABORT")));
}

#[test]
fn multi_exec_across_backends_answers_in_order_and_refuses_watch_across() {
    let cluster = Cluster::start(3);
    let k1 = cluster.key_on(0, "tx");
    let k2 = cluster.key_on(1, "tx");
    let k3 = cluster.key_on(2, "tx");
    let mut c = cluster.client();
    assert_eq!(c.cmd_str(&["MULTI"]), ok());
    for cmd in [
        &["SET", &k1, "1"][..],
        &["INCR", &k2],
        &["PING"],
        &["GET", &k1],
        &["LPUSH", &k3, "a"],
        &["INCR", &k3],
    ] {
        assert_eq!(c.cmd_str(cmd), Frame::Simple("QUEUED".into()));
    }
    match c.cmd_str(&["EXEC"]) {
        Frame::Array(items) => {
            assert_eq!(
                items[..5],
                [ok(), int(1), common::pong(), bulk("1"), int(1)]
            );
            assert!(matches!(&items[5], Frame::Error(e) if e.starts_with("WRONGTYPE")));
        }
        other => panic!("{other:?}"),
    }
    // A queueing error aborts the whole transaction, as in Redis.
    assert_eq!(c.cmd_str(&["MULTI"]), ok());
    assert_eq!(
        c.cmd_str(&["SET", &k1, "2"]),
        Frame::Simple("QUEUED".into())
    );
    assert!(matches!(c.cmd_str(&["NOSUCH", &k2]), Frame::Error(_)));
    assert!(matches!(c.cmd_str(&["EXEC"]), Frame::Error(e) if e.starts_with("EXECABORT")));
    assert_eq!(c.cmd_str(&["GET", &k1]), bulk("1"));
    // WATCH with keys of another backend in the transaction is refused, never wrong.
    assert_eq!(c.cmd_str(&["WATCH", &k1]), ok());
    assert_eq!(c.cmd_str(&["MULTI"]), ok());
    assert!(matches!(c.cmd_str(&["SET", &k2, "x"]), Frame::Error(e) if e.contains("WATCH")));
    assert!(matches!(c.cmd_str(&["EXEC"]), Frame::Error(e) if e.starts_with("EXECABORT")));
}
