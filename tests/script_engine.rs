//! The script engine (src/script) against real Redis: every script of a corpus runs once
//! through the engine, whose `redis.call`s go to redis-server A, and once as EVAL on
//! redis-server B holding the same data; the replies must be the same bytes and the data
//! afterwards the same (DUMP of every key).

mod common;
#[path = "script_corpus/mod.rs"]
mod script_corpus;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::Redis;
use shardis::protocol::reply::ReplyScanner;
use shardis::script::{
    Call, CallError, Command, Dispatch, Engine, EngineConfig, Invocation, Protocol,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn encode(args: &[&[u8]]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        out.extend_from_slice(a);
        out.extend_from_slice(b"\r\n");
    }
    out
}

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
        self.stream.write_all(&encode(args)).expect("write");
        self.read()
    }

    fn read(&mut self) -> Vec<u8> {
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

/// [`Call`] over blocking connections to one redis-server (one per protocol).
struct BlockingCall {
    resp2: Raw,
    resp3: Raw,
}

impl Call for BlockingCall {
    fn call(
        &mut self,
        args: Vec<Vec<u8>>,
        protocol: Protocol,
        _: Option<Instant>,
    ) -> Result<Bytes, CallError> {
        let refs: Vec<&[u8]> = args.iter().map(|a| a.as_slice()).collect();
        let conn = match protocol {
            Protocol::Resp2 => &mut self.resp2,
            Protocol::Resp3 => &mut self.resp3,
        };
        Ok(Bytes::from(conn.cmd(&refs)))
    }
}

/// [`Dispatch`] over tokio connections to one redis-server.
struct AsyncDispatch {
    resp2: tokio::sync::Mutex<(tokio::net::TcpStream, Vec<u8>)>,
    resp3: tokio::sync::Mutex<(tokio::net::TcpStream, Vec<u8>)>,
}

impl AsyncDispatch {
    async fn connect(addr: &str) -> AsyncDispatch {
        let resp2 = tokio::net::TcpStream::connect(addr).await.expect("connect");
        let mut resp3 = (
            tokio::net::TcpStream::connect(addr).await.expect("connect"),
            Vec::new(),
        );
        async_cmd(&mut resp3, &encode(&[b"HELLO", b"3"])).await;
        AsyncDispatch {
            resp2: tokio::sync::Mutex::new((resp2, Vec::new())),
            resp3: tokio::sync::Mutex::new(resp3),
        }
    }
}

async fn async_cmd(conn: &mut (tokio::net::TcpStream, Vec<u8>), req: &[u8]) -> Vec<u8> {
    conn.0.write_all(req).await.expect("write");
    let mut scanner = ReplyScanner::new();
    loop {
        if let Some(n) = scanner.scan(&conn.1).expect("valid reply") {
            return conn.1.drain(..n).collect();
        }
        let mut chunk = [0u8; 65536];
        let n = conn.0.read(&mut chunk).await.expect("read");
        assert!(n > 0, "connection closed");
        conn.1.extend_from_slice(&chunk[..n]);
    }
}

impl Dispatch for AsyncDispatch {
    async fn call(&self, command: Command) -> Result<Bytes, CallError> {
        let mut conn = match command.protocol {
            Protocol::Resp2 => self.resp2.lock().await,
            Protocol::Resp3 => self.resp3.lock().await,
        };
        Ok(Bytes::from(async_cmd(&mut conn, &command.to_resp()).await))
    }
}

/// One key as [`snapshot`] sees it: name, TYPE reply, DUMP reply, whether it has a TTL.
type KeyState = (Vec<u8>, Vec<u8>, Vec<u8>, bool);

/// Every key's type, DUMP and whether it has a TTL, sorted by key.
fn snapshot(conn: &mut Raw) -> Vec<KeyState> {
    let keys = conn.cmd(&[b"KEYS", b"*"]);
    let mut names = Vec::new();
    let mut pos = 0;
    // *N\r\n then $len\r\nkey\r\n ...
    let text = keys.as_slice();
    let first_end = text.windows(2).position(|w| w == b"\r\n").expect("array");
    pos += first_end + 2;
    while pos < text.len() {
        let end = pos
            + text[pos..]
                .windows(2)
                .position(|w| w == b"\r\n")
                .expect("bulk");
        let len: usize = std::str::from_utf8(&text[pos + 1..end])
            .expect("len")
            .parse()
            .expect("len");
        names.push(text[end + 2..end + 2 + len].to_vec());
        pos = end + 2 + len + 2;
    }
    names.sort();
    names
        .into_iter()
        .map(|k| {
            let ty = conn.cmd(&[b"TYPE", &k]);
            let dump = conn.cmd(&[b"DUMP", &k]);
            let ttl = conn.cmd(&[b"PTTL", &k]);
            (k, ty, dump, ttl != b":-1\r\n")
        })
        .collect()
}

use script_corpus::{FIXTURE, corpus};

fn load_fixture(conn: &mut Raw) {
    assert_eq!(conn.cmd(&[b"FLUSHALL"]), b"+OK\r\n");
    for cmd in FIXTURE {
        let args: Vec<&[u8]> = cmd.iter().map(|a| a.as_bytes()).collect();
        let reply = conn.cmd(&args);
        assert!(
            !reply.starts_with(b"-"),
            "fixture {cmd:?}: {}",
            String::from_utf8_lossy(&reply)
        );
    }
}

fn show(b: &[u8]) -> String {
    String::from_utf8_lossy(b).replace("\r\n", "\\r\\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corpus_matches_redis() {
    let a = Redis::start();
    let b = Redis::start();
    let engine = Engine::new(EngineConfig::default());
    let dispatch = AsyncDispatch::connect(&a.addr()).await;
    let mut admin_a = Raw::connect(&a.addr(), false);
    let mut b2 = Raw::connect(&b.addr(), false);
    let mut b3 = Raw::connect(&b.addr(), true);
    let corpus = corpus();
    assert!(corpus.len() >= 40, "corpus has {} scripts", corpus.len());
    let mut failures = Vec::new();
    for case in &corpus {
        eprintln!("case: {}", case.name);
        load_fixture(&mut admin_a);
        load_fixture(&mut b2);
        let mut argv: Vec<&[u8]> = vec![case.cmd.as_bytes(), case.script.as_bytes()];
        let numkeys = case.keys.len().to_string();
        argv.push(numkeys.as_bytes());
        argv.extend(case.keys.iter().map(|k| k.as_bytes()));
        argv.extend(case.args.iter().map(|k| k.as_bytes()));
        let expected = if case.resp3 {
            b3.cmd(&argv)
        } else {
            b2.cmd(&argv)
        };
        let owned: Vec<Bytes> = argv.iter().map(|a| Bytes::copy_from_slice(a)).collect();
        let client = if case.resp3 {
            Protocol::Resp3
        } else {
            Protocol::Resp2
        };
        let inv = Invocation::parse(&owned, client).expect("valid EVAL");
        let got = engine.run(inv, &dispatch).await;
        if got.as_ref() != expected.as_slice() {
            failures.push(format!(
                "{}: reply\n  redis:  {}\n  engine: {}",
                case.name,
                show(&expected),
                show(&got)
            ));
            continue;
        }
        if snapshot(&mut admin_a) != snapshot(&mut b2) {
            failures.push(format!("{}: data differs after the script", case.name));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} scripts differ:\n{}",
        failures.len(),
        corpus.len(),
        failures.join("\n")
    );
    eprintln!("{} passed, 0 failed", corpus.len());
}

fn bytes_args(args: &[&[u8]]) -> Vec<Bytes> {
    args.iter().map(|a| Bytes::copy_from_slice(a)).collect()
}

const LIBRARY: &str = "#!lua name=shardislib\n\
local function incr_by(keys, args)\n\
  return redis.call('incrby', keys[1], args[1])\n\
end\n\
redis.register_function('incr_by', incr_by)\n\
redis.register_function{function_name = 'peek', callback = function(keys) return redis.call('get', keys[1]) end, flags = {'no-writes'}, description = 'reads'}\n\
redis.register_function('fails', function(keys, args)\n\
  redis.call('set', keys[1], 'partial')\n\
  error('function failed')\n\
end)\n\
redis.register_function('echo_all', function(keys, args) return {#keys, #args, keys[1], args[1], type(KEYS)} end)\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn functions_match_redis() {
    let a = Redis::start();
    let b = Redis::start();
    let engine = Engine::new(EngineConfig::default());
    let dispatch = AsyncDispatch::connect(&a.addr()).await;
    let mut admin_a = Raw::connect(&a.addr(), false);
    let mut b2 = Raw::connect(&b.addr(), false);

    // Loading: the library, then the errors FUNCTION LOAD gives.
    let loaded = b2.cmd(&[b"FUNCTION", b"LOAD", LIBRARY.as_bytes()]);
    let name = engine
        .load_library(Bytes::from_static(LIBRARY.as_bytes()), false)
        .await;
    assert_eq!(
        loaded,
        format!(
            "${}\r\n{}\r\n",
            name.as_ref().map_or(0, |n| n.len()),
            name.clone().unwrap_or_default()
        )
        .into_bytes()
    );
    for bad in [
        LIBRARY,
        "return 1",
        "#!lua name=x",
        "#!lua\nreturn 1",
        "#!lua name=x\nreturn +",
        "#!lua name=x\nlocal a = 1",
        "#!lua name=x\nredis.call('ping')",
        "#!lua name=x\nredis.register_function('bad name', function() end)",
        "#!lua name=x\nredis.register_function{function_name='f', callback=function() end, flags={'bogus'}}",
        "#!lua name=x\nredis.register_function('incr_by', function() end)",
        "#!lua name=x\nstring.x = 1",
    ] {
        let redis = b2.cmd(&[b"FUNCTION", b"LOAD", bad.as_bytes()]);
        let engine_err = engine
            .load_library(Bytes::copy_from_slice(bad.as_bytes()), false)
            .await;
        let mine = match engine_err {
            Ok(n) => format!("${}\r\n{n}\r\n", n.len()),
            Err(e) => format!("-{e}\r\n"),
        };
        assert_eq!(show(&redis), show(mine.as_bytes()), "FUNCTION LOAD {bad:?}");
    }

    let calls: &[&[&[u8]]] = &[
        &[b"FCALL", b"incr_by", b"1", b"n", b"5"],
        &[b"FCALL", b"peek", b"1", b"s"],
        &[b"FCALL_RO", b"peek", b"1", b"s"],
        &[b"FCALL_RO", b"incr_by", b"1", b"n", b"5"],
        &[b"FCALL", b"fails", b"1", b"f"],
        &[b"FCALL", b"echo_all", b"1", b"k", b"a"],
        &[b"FCALL", b"nosuch", b"0"],
    ];
    for call in calls {
        load_fixture(&mut admin_a);
        load_fixture(&mut b2);
        let expected = b2.cmd(call);
        let inv = Invocation::parse(&bytes_args(call), Protocol::Resp2).expect("valid FCALL");
        let got = engine.run(inv, &dispatch).await;
        assert_eq!(
            show(&expected),
            show(&got),
            "{:?}",
            call.iter()
                .map(|a| String::from_utf8_lossy(a))
                .collect::<Vec<_>>()
        );
        assert!(
            snapshot(&mut admin_a) == snapshot(&mut b2),
            "data after {call:?}"
        );
    }
    assert!(engine.delete_library("shardislib"));
    let inv = Invocation::parse(
        &bytes_args(&[b"FCALL", b"peek", b"1", b"s"]),
        Protocol::Resp2,
    )
    .expect("valid");
    assert_eq!(
        engine.run(inv, &dispatch).await.as_ref(),
        b"-ERR Function not found\r\n"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn evalsha_and_argument_errors_match_redis() {
    let a = Redis::start();
    let b = Redis::start();
    let engine = Engine::new(EngineConfig::default());
    let dispatch = AsyncDispatch::connect(&a.addr()).await;
    let mut b2 = Raw::connect(&b.addr(), false);
    let body = "return {KEYS[1], ARGV[1]}";
    let redis_sha = b2.cmd(&[b"SCRIPT", b"LOAD", body.as_bytes()]);
    let sha = engine.load_script(Bytes::from_static(body.as_bytes()));
    assert_eq!(redis_sha, format!("$40\r\n{sha}\r\n").into_bytes());
    assert!(engine.script_exists(&sha.to_uppercase()));
    for call in [
        vec![b"EVALSHA".as_slice(), sha.as_bytes(), b"1", b"k", b"v"],
        vec![b"EVALSHA_RO".as_slice(), sha.as_bytes(), b"1", b"k", b"v"],
        vec![
            b"EVALSHA".as_slice(),
            b"ffffffffffffffffffffffffffffffffffffffff",
            b"0",
        ],
        vec![b"EVAL".as_slice(), b"return 1", b"2", b"k"],
        vec![b"EVAL".as_slice(), b"return 1", b"-1"],
        vec![b"EVAL".as_slice(), b"return 1", b"x"],
    ] {
        let expected = b2.cmd(&call);
        let got = match Invocation::parse(&bytes_args(&call), Protocol::Resp2) {
            Ok(inv) => engine.run(inv, &dispatch).await,
            Err(e) => e,
        };
        assert_eq!(
            show(&expected),
            show(&got),
            "{:?}",
            String::from_utf8_lossy(call[0])
        );
    }
    // A script run with EVAL can be run by its sha afterwards, as in Redis.
    let other = "return 'cached'";
    let inv = Invocation::parse(
        &bytes_args(&[b"EVAL", other.as_bytes(), b"0"]),
        Protocol::Resp2,
    )
    .expect("valid");
    engine.run(inv, &dispatch).await;
    assert!(engine.script_exists(&shardis::script::sha1hex(other.as_bytes())));
    engine.flush_scripts();
    assert!(!engine.script_exists(&sha));
}

/// A [`Dispatch`] that answers PONG after a delay.
struct Slow(Duration);

impl Dispatch for Slow {
    async fn call(&self, _: Command) -> Result<Bytes, CallError> {
        tokio::time::sleep(self.0).await;
        Ok(Bytes::from_static(b"+PONG\r\n"))
    }
}

fn eval(script: &str) -> Invocation {
    Invocation::parse(
        &bytes_args(&[b"EVAL", script.as_bytes(), b"0"]),
        Protocol::Resp2,
    )
    .expect("valid EVAL")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timeout_stops_scripts_while_the_runtime_keeps_serving() {
    let engine = Engine::new(EngineConfig {
        timeout: Duration::from_millis(300),
        ..EngineConfig::default()
    });
    let slow = Slow(Duration::from_millis(1));
    // Another task on the same runtime keeps being served while scripts spin.
    let ticks = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let ticker = {
        let ticks = ticks.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(10)).await;
                ticks.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
        })
    };
    for (script, line) in [
        ("while true do end", 1),
        ("local x = 0\nwhile true do x = x + 1 end", 2),
        // pcall cannot swallow the stop.
        (
            "while true do pcall(function() while true do end end) end",
            1,
        ),
        (
            "redis.call('ping')\nwhile true do redis.call('ping') end",
            2,
        ),
    ] {
        let before = ticks.load(std::sync::atomic::Ordering::Relaxed);
        let got = engine.run(eval(script), &slow).await;
        let text = show(&got);
        let sha = shardis::script::sha1hex(script.as_bytes());
        assert_eq!(
            text,
            format!(
                "-ERR Script timed out after 300 ms (script_timeout_ms) and was stopped script: {sha}, on @user_script:{line}.\\r\\n"
            ),
            "{script}"
        );
        assert!(
            ticks.load(std::sync::atomic::Ordering::Relaxed) > before + 3,
            "the runtime kept serving during {script}"
        );
    }
    // A call that outlives the deadline stops the script too.
    let stuck = Slow(Duration::from_secs(5));
    let started = Instant::now();
    let got = engine.run(eval("return redis.call('ping')"), &stuck).await;
    assert!(show(&got).contains("script_timeout_ms"), "{}", show(&got));
    assert!(started.elapsed() < Duration::from_secs(5));
    ticker.abort();
}

#[test]
fn script_kill_matches_redis() {
    let b = Redis::start();
    let mut b2 = Raw::connect(&b.addr(), false);
    let mut admin = Raw::connect(&b.addr(), false);
    let engine = Engine::new(EngineConfig {
        timeout: Duration::from_secs(60),
        ..EngineConfig::default()
    });
    assert_eq!(
        show(engine.kill(true)),
        show(&admin.cmd(&[b"SCRIPT", b"KILL"]))
    );

    let script = "local i = 0 while true do i = i + 1 end";
    let runner = std::thread::spawn(move || {
        let reply = b2.cmd(&[b"EVAL", script.as_bytes(), b"0"]);
        (b2, reply)
    });
    let deadline = Instant::now() + Duration::from_secs(20);
    let redis_kill = loop {
        let r = admin.cmd(&[b"SCRIPT", b"KILL"]);
        if r != b"-NOTBUSY No scripts in execution right now.\r\n" || Instant::now() > deadline {
            break r;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let (mut b2, redis_reply) = runner.join().expect("runner");

    let e2 = engine.clone();
    let mine = std::thread::spawn(move || e2.run_blocking(eval(script), &mut NoCall));
    let deadline = Instant::now() + Duration::from_secs(20);
    let engine_kill = loop {
        let r = engine.kill(true);
        if r != b"-NOTBUSY No scripts in execution right now.\r\n" || Instant::now() > deadline {
            break r;
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    assert_eq!(show(&redis_kill), show(engine_kill));
    assert_eq!(show(&redis_reply), show(&mine.join().expect("engine run")));

    // A script that wrote cannot be killed (FUNCTION KILL names the other kind).
    let writer = "redis.call('set', 'w', '1') while true do end";
    let engine = Engine::new(EngineConfig {
        timeout: Duration::from_secs(2),
        ..EngineConfig::default()
    });
    let e2 = engine.clone();
    let addr = b.addr();
    let mine = std::thread::spawn(move || {
        let mut call = BlockingCall {
            resp2: Raw::connect(&addr, false),
            resp3: Raw::connect(&addr, true),
        };
        e2.run_blocking(eval(writer), &mut call)
    });
    let deadline = Instant::now() + Duration::from_secs(20);
    while engine.running() == 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(
        show(engine.kill(true)),
        "-UNKILLABLE Sorry the script already executed write commands against the dataset. You can either wait the script termination or kill the server in a hard way using the SHUTDOWN NOSAVE command.\\r\\n"
    );
    assert_eq!(
        show(engine.kill(false)),
        "-BUSY Redis is busy running a script. You can only call SCRIPT KILL or SHUTDOWN NOSAVE.\\r\\n"
    );
    assert!(show(&mine.join().expect("engine run")).contains("script_timeout_ms"));
    assert_eq!(b2.cmd(&[b"GET", b"w"]), b"$1\r\n1\r\n");
}

/// A [`Call`] for scripts that never call.
struct NoCall;

impl Call for NoCall {
    fn call(
        &mut self,
        _: Vec<Vec<u8>>,
        _: Protocol,
        _: Option<Instant>,
    ) -> Result<Bytes, CallError> {
        Err(CallError::Failed("ERR no backend".into()))
    }
}

#[test]
fn memory_limit_stops_a_script_and_the_engine_goes_on() {
    let engine = Engine::new(EngineConfig {
        memory_limit: 4 << 20,
        ..EngineConfig::default()
    });
    let hog = "local t = {} for i = 1, 10000000 do t[i] = 'item' .. i end return #t";
    let got = engine.run_blocking(eval(hog), &mut NoCall);
    let sha = shardis::script::sha1hex(hog.as_bytes());
    assert_eq!(
        show(&got),
        format!(
            "-ERR Lua memory limit of {} bytes exceeded by script {sha}\\r\\n",
            4 << 20
        )
    );
    // Caught by pcall, the script still fails with the limit's error.
    let caught = "local ok = pcall(function() local t = {} for i = 1, 10000000 do t[i] = 'x' .. i end end) return 'survived'";
    assert!(show(&engine.run_blocking(eval(caught), &mut NoCall)).contains("memory limit"));
    assert_eq!(
        engine
            .run_blocking(eval("return 'fine'"), &mut NoCall)
            .as_ref(),
        b"$4\r\nfine\r\n"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scripts_run_concurrently_on_pooled_states() {
    let engine = Engine::new(EngineConfig::default());
    let slow = Arc::new(Slow(Duration::from_millis(200)));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for i in 0..8 {
        let engine = engine.clone();
        let slow = slow.clone();
        tasks.push(tokio::spawn(async move {
            let script = format!("redis.call('ping') return {i}");
            engine.run(eval(&script), &*slow).await
        }));
    }
    for (i, t) in tasks.into_iter().enumerate() {
        assert_eq!(
            t.await.expect("task").as_ref(),
            format!(":{i}\r\n").as_bytes()
        );
    }
    // Eight scripts each waiting 200 ms on a call finish together, not one after another.
    assert!(
        started.elapsed() < Duration::from_millis(1500),
        "{:?}",
        started.elapsed()
    );
    // Globals written by one run do not leak into the next on a reused state.
    let leak = "pcall(function() table.insert(string, 'x') end) return 1";
    let check = "return rawget(string, 1) == nil";
    for _ in 0..3 {
        assert_eq!(engine.run(eval(leak), &*slow).await.as_ref(), b":1\r\n");
        assert_eq!(engine.run(eval(check), &*slow).await.as_ref(), b":1\r\n");
    }
}
