//! The script engine (src/script) against real Redis: every script of a corpus runs once
//! through the engine, whose `redis.call`s go to redis-server A, and once as EVAL on
//! redis-server B holding the same data; the replies must be the same bytes and the data
//! afterwards the same (DUMP of every key).

mod common;

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

/// One corpus entry.
struct Case {
    name: &'static str,
    script: String,
    keys: Vec<&'static str>,
    args: Vec<&'static str>,
    resp3: bool,
    /// EVAL, or EVAL_RO.
    cmd: &'static str,
}

fn case(name: &'static str, script: &str, keys: &[&'static str], args: &[&'static str]) -> Case {
    Case {
        name,
        script: script.to_string(),
        keys: keys.to_vec(),
        args: args.to_vec(),
        resp3: false,
        cmd: "EVAL",
    }
}

fn read_only(mut c: Case) -> Case {
    c.cmd = "EVAL_RO";
    c
}

fn resp3(mut c: Case) -> Case {
    c.resp3 = true;
    c
}

/// The data every case starts from.
const FIXTURE: &[&[&str]] = &[
    &["SET", "s", "hello"],
    &["SET", "n", "41"],
    &["RPUSH", "l", "a", "b", "c"],
    &["HSET", "h", "f1", "v1", "f2", "v2"],
    &["SADD", "set", "x"],
    &["ZADD", "z", "1.5", "m1", "2", "m2"],
    &["SET", "ttl", "v", "PX", "100000"],
];

fn corpus() -> Vec<Case> {
    let mut c = vec![
        // Conversions, Lua to Redis.
        case("number truncates", "return 3.99", &[], &[]),
        case("negative number truncates", "return -3.99", &[], &[]),
        case("string to bulk", "return 'bulk'", &[], &[]),
        case("true to 1", "return true", &[], &[]),
        case("false to nil", "return false", &[], &[]),
        case("nil to nil", "return nil", &[], &[]),
        case(
            "table stops at first nil",
            "return {1, 'two', 3.7, nil, 5}",
            &[],
            &[],
        ),
        case(
            "nested tables",
            "return {1, {2, {3, 'x'}}, {}, true, false}",
            &[],
            &[],
        ),
        case("ok table to status", "return {ok='FINE'}", &[], &[]),
        case(
            "err table to error",
            "return {err='MYCODE something bad'}",
            &[],
            &[],
        ),
        case(
            "status_reply",
            "return redis.status_reply('ALL GOOD')",
            &[],
            &[],
        ),
        case(
            "error_reply",
            "return redis.error_reply('My Error')",
            &[],
            &[],
        ),
        case(
            "error_reply with dash",
            "return redis.error_reply('-CODE detail')",
            &[],
            &[],
        ),
        case(
            "error_reply bad args",
            "return redis.error_reply(1)",
            &[],
            &[],
        ),
        case(
            "keys and argv",
            "return {KEYS[1], KEYS[2], ARGV[1], ARGV[2], #KEYS, #ARGV}",
            &["k1", "k2"],
            &["a1", "a2"],
        ),
        // Conversions, Redis to Lua.
        case(
            "replies to lua types",
            "local r = {} \
             r[1] = type(redis.call('get', 's')) \
             r[2] = type(redis.call('incr', 'n')) \
             r[3] = tostring(redis.call('get', 'nokey')) \
             r[4] = redis.call('set', 'x', 'y').ok \
             r[5] = #redis.call('lrange', 'l', 0, -1) \
             r[6] = redis.call('hgetall', 'h')[1] \
             return r",
            &[],
            &[],
        ),
        case(
            "integer reply round trip",
            "return redis.call('incrby', 'n', 10) + 0.5",
            &["n"],
            &[],
        ),
        case(
            "call error raises",
            "redis.call('set', 'w', '1') return redis.call('incr', 's')",
            &[],
            &[],
        ),
        case(
            "pcall error is a table",
            "local e = redis.pcall('incr', 's') return {type(e), e.err}",
            &[],
            &[],
        ),
        case(
            "pcall error returned",
            "return redis.pcall('lpush', 's', 'x')",
            &[],
            &[],
        ),
        case(
            "pcall of redis.call",
            "local ok, e = pcall(redis.call, 'incr', 's') return {tostring(ok), e}",
            &[],
            &[],
        ),
        case(
            "pcall of error string",
            "local ok, e = pcall(error, 'boom') return {tostring(ok), e}",
            &[],
            &[],
        ),
        case(
            "pcall of error table",
            "local ok, e = pcall(error, {err='X y'}) return {tostring(ok), e}",
            &[],
            &[],
        ),
        case(
            "pcall success values",
            "return {pcall(function(a, b) return a + b, 'z' end, 2, 3)}",
            &[],
            &[],
        ),
        case(
            "errors after writes stay",
            "redis.call('set', 'a', '1') redis.call('rpush', 'l', 'd') error('late failure')",
            &[],
            &[],
        ),
        case(
            "unknown command",
            "return redis.call('nosuchcommand', 'x')",
            &[],
            &[],
        ),
        case("wrong arity", "return redis.call('get')", &[], &[]),
        case("no arguments", "return redis.call()", &[], &[]),
        case(
            "bad argument type",
            "return redis.call('get', {})",
            &[],
            &[],
        ),
        case(
            "numbers as arguments",
            "redis.call('set', 'num', 3.14159) redis.call('set', 'big', 1e20) return {redis.call('get', 'num'), redis.call('get', 'big')}",
            &[],
            &[],
        ),
        case(
            "noscript command refused",
            "return redis.call('multi')",
            &[],
            &[],
        ),
        case("error with position", "local x = nil\nreturn x.y", &[], &[]),
        case(
            "error raised in a function",
            "local function f()\n  error('inner')\nend\nf()",
            &[],
            &[],
        ),
        case(
            "error object table",
            "error({err='CUSTOM raised'})",
            &[],
            &[],
        ),
        case("compile error", "return +", &[], &[]),
        // Sandbox.
        case("global write refused", "x = 1", &[], &[]),
        case("global read refused", "return undefined_thing", &[], &[]),
        case("os absent", "return os.time()", &[], &[]),
        case("io absent", "return io", &[], &[]),
        case("require absent", "return require('x')", &[], &[]),
        case(
            "loadfile absent",
            "return loadfile('/etc/passwd')",
            &[],
            &[],
        ),
        case("print absent", "print('x')", &[], &[]),
        case("library table read-only", "string.foo = 1", &[], &[]),
        case("redis table read-only", "redis.call = nil", &[], &[]),
        case("rawset on globals refused", "rawset(_G, 'x', 1)", &[], &[]),
        case(
            "loadstring available",
            "return loadstring('return 1 + 1')()",
            &[],
            &[],
        ),
        case(
            "types of builtins",
            "return {type(loadstring), type(load), type(pcall), type(xpcall), type(unpack), type(coroutine), type(select), type(_G), _VERSION}",
            &[],
            &[],
        ),
        // redis.* helpers.
        case(
            "sha1hex",
            "return {redis.sha1hex(''), redis.sha1hex('abc'), redis.sha1hex(ARGV[1])}",
            &[],
            &["hello world"],
        ),
        case("sha1hex arity", "return redis.sha1hex()", &[], &[]),
        case(
            "version",
            "return {redis.REDIS_VERSION, redis.REDIS_VERSION_NUM}",
            &[],
            &[],
        ),
        case(
            "log levels",
            "redis.log(redis.LOG_WARNING, 'from a test', 42) return {redis.LOG_DEBUG, redis.LOG_VERBOSE, redis.LOG_NOTICE, redis.LOG_WARNING}",
            &[],
            &[],
        ),
        case("log arity", "redis.log(redis.LOG_NOTICE)", &[], &[]),
        case(
            "set_repl and replicate_commands",
            "redis.set_repl(redis.REPL_ALL) return {redis.replicate_commands(), redis.REPL_NONE, redis.REPL_AOF, redis.REPL_REPLICA, redis.REPL_SLAVE, redis.REPL_ALL}",
            &[],
            &[],
        ),
        case("set_repl bad flags", "redis.set_repl(12)", &[], &[]),
        case(
            "breakpoint and debug",
            "return {redis.breakpoint(), redis.debug('x')}",
            &[],
            &[],
        ),
        case("setresp bad", "redis.setresp(4)", &[], &[]),
        case(
            "math.random seeded",
            "return {math.random(100), math.random(1, 6), math.random() < 1}",
            &[],
            &[],
        ),
        case(
            "math.randomseed",
            "math.randomseed(42) return {math.random(1000), math.random(1000)}",
            &[],
            &[],
        ),
        case(
            "string and table libs",
            "local t = {} for w in string.gmatch('a b c', '%a') do table.insert(t, string.upper(w)) end return {table.concat(t, ','), string.format('%5.2f|%d|%s', 3.14159, 42, 'x'), string.rep('ab', 3), ('x'):byte()}",
            &[],
            &[],
        ),
        case(
            "tostring of numbers",
            "return {tostring(1/3), tostring(1e100), tostring(-0), tostring(2^53)}",
            &[],
            &[],
        ),
        case(
            "one thousand calls",
            "for i = 1, 1000 do redis.call('incr', 'counter') redis.call('rpush', 'biglist', i) end return {redis.call('get', 'counter'), redis.call('llen', 'biglist')}",
            &[],
            &[],
        ),
        case(
            "scan types",
            "return {redis.call('type', 'z'), redis.call('zscore', 'z', 'm1'), redis.call('ttl', 'ttl') > 0}",
            &[],
            &[],
        ),
        case(
            "expire inside script",
            "redis.call('expire', 's', 1000) return redis.call('ttl', 's')",
            &[],
            &[],
        ),
        // RESP3.
        resp3(case(
            "resp3 map",
            "redis.setresp(3) return redis.call('hgetall', 'h')",
            &[],
            &[],
        )),
        resp3(case(
            "resp3 set",
            "redis.setresp(3) return redis.call('smembers', 'set')",
            &[],
            &[],
        )),
        resp3(case(
            "resp3 double",
            "redis.setresp(3) return redis.call('zscore', 'z', 'm1')",
            &[],
            &[],
        )),
        resp3(case(
            "resp3 null",
            "redis.setresp(3) return {redis.call('get', 'nokey') == nil}",
            &[],
            &[],
        )),
        resp3(case(
            "resp3 booleans",
            "redis.setresp(3) return {true, false}",
            &[],
            &[],
        )),
        resp3(case(
            "resp3 boolean alone",
            "redis.setresp(3) return false",
            &[],
            &[],
        )),
        resp3(case(
            "resp3 big number",
            "return {big_number='123456789012345678901234567890'}",
            &[],
            &[],
        )),
        resp3(case(
            "resp3 verbatim",
            "return {verbatim_string={format='txt', string='hello'}}",
            &[],
            &[],
        )),
        resp3(case(
            "resp3 map literal",
            "return {map={a=1, b={1, 2}}}",
            &[],
            &[],
        )),
        resp3(case("resp3 set literal", "return {set={x=true}}", &[], &[])),
        resp3(case(
            "resp3 double literal",
            "return {double=3.5}",
            &[],
            &[],
        )),
        resp3(case(
            "resp3 double inf",
            "return {{double=1/0}, {double=-1/0}}",
            &[],
            &[],
        )),
        resp3(case(
            "resp2 script to resp3 client",
            "return {true, false, nil, 1}",
            &[],
            &[],
        )),
        case(
            "resp2 client gets flattened map",
            "return {map={k='v'}}",
            &[],
            &[],
        ),
        case(
            "resp2 client gets set as array",
            "return {set={only=true}}",
            &[],
            &[],
        ),
        case(
            "resp2 client gets double as bulk",
            "return {double=0.1}",
            &[],
            &[],
        ),
        case(
            "resp2 client big number",
            "return {big_number='1234'}",
            &[],
            &[],
        ),
        case(
            "resp2 client verbatim",
            "return {verbatim_string={format='txt', string='v'}}",
            &[],
            &[],
        ),
        case(
            "resp3 replies in a resp2 client",
            "redis.setresp(3) local m = redis.call('hgetall', 'h') local d = redis.call('zscore', 'z', 'm1') return {m.map.f1, d.double, redis.call('exists', 's')}",
            &[],
            &[],
        ),
        resp3(case(
            "resp3 call reply types",
            "redis.setresp(3) local r = redis.call('hello') return type(r.map)",
            &[],
            &[],
        )),
        case(
            "resp3 false as nil in resp2",
            "redis.setresp(3) return false",
            &[],
            &[],
        ),
        // Shebang and flags.
        case(
            "shebang no-writes refuses write",
            "#!lua flags=no-writes\nreturn redis.call('set', 'q', '1')",
            &[],
            &[],
        ),
        case(
            "shebang no-writes reads",
            "#!lua flags=no-writes\nreturn redis.call('get', 's')",
            &[],
            &[],
        ),
        case("shebang bad flag", "#!lua flags=bogus\nreturn 1", &[], &[]),
        read_only(case(
            "EVAL_RO refuses a write",
            "redis.call('set', 'ro', '1') return 1",
            &[],
            &[],
        )),
        read_only(case(
            "EVAL_RO refuses a may-replicate command",
            "return redis.pcall('publish', 'ch', 'm')",
            &[],
            &[],
        )),
        read_only(case(
            "EVAL_RO reads",
            "return redis.call('lrange', 'l', 0, -1)",
            &[],
            &[],
        )),
        read_only(case(
            "EVAL_RO with a write shebang",
            "#!lua\nreturn 1",
            &[],
            &[],
        )),
        read_only(case(
            "EVAL_RO with no-writes",
            "#!lua flags=no-writes\nreturn redis.call('get', 's')",
            &[],
            &[],
        )),
        case(
            "pcall inside pcall",
            "return {pcall(function() return {pcall(redis.call, 'nosuch')} end)}",
            &[],
            &[],
        ),
        case(
            "xpcall with handler",
            "return {xpcall(function() error('deep') end, function(e) return 'handled: ' .. e end)}",
            &[],
            &[],
        ),
        case(
            "error in tail call",
            "local function f() return redis.call('incr', 's') end\nreturn f()",
            &[],
            &[],
        ),
        case(
            "coroutines",
            "local co = coroutine.create(function(a) local b = coroutine.yield(a + 1) return b * 2 end) local _, x = coroutine.resume(co, 1) local _, y = coroutine.resume(co, 10) return {x, y, coroutine.status(co)}",
            &[],
            &[],
        ),
        case(
            "redis.call inside a coroutine",
            "return coroutine.wrap(function() return redis.call('get', 's') end)()",
            &[],
            &[],
        ),
        case(
            "unpack and select",
            "return {select('#', unpack({1, 2, 3})), select(2, 'a', 'b', 'c')}",
            &[],
            &[],
        ),
        case(
            "tonumber and string coercion",
            "return {tonumber('0x10'), tonumber('  12  '), tonumber('1e2'), '10' + 5, tostring(nil)}",
            &[],
            &[],
        ),
        case(
            "setmetatable on a user table",
            "local t = setmetatable({}, {__index = function(t, k) return k .. '!' end}) return t.hi",
            &[],
            &[],
        ),
        case(
            "getmetatable of a string",
            "return type(getmetatable('').__index)",
            &[],
            &[],
        ),
        case(
            "hgetall in a loop",
            "local out = {} for i = 1, 50 do local r = redis.call('hgetall', 'h') out[#out + 1] = r[2] end return #out",
            &[],
            &[],
        ),
        case(
            "binary safe strings",
            "redis.call('set', 'bin', 'a\\0b\\255') return {redis.call('strlen', 'bin'), redis.call('get', 'bin')}",
            &[],
            &[],
        ),
        case(
            "shebang keeps line numbers",
            "#!lua\nlocal a = 1\nerror('line three')",
            &[],
            &[],
        ),
    ];
    c.extend(library_corpus());
    c
}

fn library_corpus() -> Vec<Case> {
    vec![
        case(
            "cmsgpack wide strings and tables",
            "local big = {} for i = 1, 20 do big[i] = i end local m = {} for i = 1, 20 do m['k' .. i] = i end return {#cmsgpack.pack(string.rep('y', 300)), cmsgpack.pack(big), #cmsgpack.pack(m), cmsgpack.unpack(cmsgpack.pack(m)).k7}",
            &[],
            &[],
        ),
        case(
            "cjson bad keys",
            "return {pcall(cjson.encode, {[true] = 1})}",
            &[],
            &[],
        ),
        case(
            "cjson numeric keys",
            "return cjson.encode({[-1] = 'a', [1.5] = 'b'})",
            &[],
            &[],
        ),
        case(
            "cjson config",
            "return {cjson.encode_max_depth(), cjson.decode_max_depth(), cjson.encode_number_precision(), cjson.encode_sparse_array(), cjson.encode_invalid_numbers(), cjson.decode_invalid_numbers(), cjson._NAME, cjson._VERSION}",
            &[],
            &[],
        ),
        case(
            "cjson invalid numbers",
            "return {pcall(cjson.encode, 1/0)}",
            &[],
            &[],
        ),
        case(
            "cjson unicode escapes",
            "return {cjson.decode('\"\\ud83d\\ude00\"'), pcall(cjson.decode, '\"\\ud800\"'), pcall(cjson.decode, '\"\\q\"')}",
            &[],
            &[],
        ),
        case(
            "struct offsets and padding",
            "local a, b, n = struct.unpack('>!4 b i', struct.pack('>!4 b i', 7, 9)) local c, n2 = struct.unpack('B', 'xyz', 2) return {a, b, n, c, n2, struct.pack('bxb', 1, 2)}",
            &[],
            &[],
        ),
        case(
            "struct c0 and bad option",
            "local s, n = struct.unpack('b c0', struct.pack('b c0', 3, 'abc')) return {s, n, pcall(struct.pack, 'q', 1)}",
            &[],
            &[],
        ),
        case(
            "large numbers to integers",
            "return {2^53, -2^53, 2^63, -2^63, 1e300, 0/0}",
            &[],
            &[],
        ),
        case(
            "error_reply with newlines",
            "return redis.error_reply('BAD line one\\nline two')",
            &[],
            &[],
        ),
        case(
            "status_reply with newlines",
            "return redis.status_reply('fine\\r\\nnow')",
            &[],
            &[],
        ),
        case(
            "pcall error table fields",
            "local e = redis.pcall('incr', 's') return {e.err, tostring(e.ignore_error_stats_update)}",
            &[],
            &[],
        ),
        case("error from a number", "error(42)", &[], &[]),
        case(
            "error with level 2",
            "local function f() error('from caller', 2) end\nf()",
            &[],
            &[],
        ),
        case("string library errors", "return string.rep()", &[], &[]),
        case(
            "string.format with a number",
            "return string.format('%d %s %q', 3.0, 1/3, 'a\\nb')",
            &[],
            &[],
        ),
        // cjson.
        case(
            "cjson encode scalars",
            "return {cjson.encode(1), cjson.encode(-0), cjson.encode(1e308), cjson.encode(0.1), cjson.encode('a\"b\\\\c/\\n'), cjson.encode(true), cjson.encode(cjson.null)}",
            &[],
            &[],
        ),
        case(
            "cjson encode tables",
            "return {cjson.encode({}), cjson.encode({1, 2, 3}), cjson.encode({a = {b = {1, 'x'}}}), cjson.encode({[1] = 'a', [3] = 'c'})}",
            &[],
            &[],
        ),
        case(
            "cjson encode sparse",
            "return cjson.encode({[1] = 1, [100] = 2})",
            &[],
            &[],
        ),
        case(
            "cjson encode bad type",
            "return cjson.encode(function() end)",
            &[],
            &[],
        ),
        case(
            "cjson decode",
            "local t = cjson.decode('{\"a\":[1,2,{\"b\":null}],\"c\":\"\\\\u00e9x\",\"d\":1.5e3,\"e\":true}') return {t.a[1], t.a[3].b == cjson.null, t.c, t.d, tostring(t.e), #t.a}",
            &[],
            &[],
        ),
        case(
            "cjson decode invalid",
            "return cjson.decode('{\"a\":}')",
            &[],
            &[],
        ),
        case(
            "cjson decode trailing",
            "return cjson.decode('[1] x')",
            &[],
            &[],
        ),
        case(
            "cjson decode numbers",
            "local t = cjson.decode('[-0, 1e308, 12345678901234567890, 0.1, -1.5e-3]') return {tostring(t[1]), tostring(t[2]), tostring(t[3]), tostring(t[4]), tostring(t[5])}",
            &[],
            &[],
        ),
        case(
            "cjson round trip",
            "return cjson.encode(cjson.decode('{\"k\":[1,{\"x\":\"y\"},[]]}'))",
            &[],
            &[],
        ),
        case(
            "cjson nesting",
            "local s = string.rep('[', 1001) .. string.rep(']', 1001) return {pcall(cjson.decode, s)}",
            &[],
            &[],
        ),
        // cmsgpack.
        case(
            "cmsgpack pack types",
            "return {cmsgpack.pack(1), cmsgpack.pack(-1), cmsgpack.pack(200), cmsgpack.pack(70000), cmsgpack.pack(-40000), cmsgpack.pack(2^40), cmsgpack.pack(1.5), cmsgpack.pack(0.1), cmsgpack.pack('str'), cmsgpack.pack(string.rep('x', 40)), cmsgpack.pack(true), cmsgpack.pack(false), cmsgpack.pack(nil)}",
            &[],
            &[],
        ),
        case(
            "cmsgpack pack tables",
            "return {cmsgpack.pack({1, 2, 3}), cmsgpack.pack({a = 1}), cmsgpack.pack({}), cmsgpack.pack({1, {2, {x = 'y'}}})}",
            &[],
            &[],
        ),
        case(
            "cmsgpack pack many",
            "return cmsgpack.pack(1, 'two', {3})",
            &[],
            &[],
        ),
        case(
            "cmsgpack unpack",
            "local a, b, c = cmsgpack.unpack(cmsgpack.pack(1, 'two', {3, 4})) return {a, b, c[1], c[2]}",
            &[],
            &[],
        ),
        case(
            "cmsgpack unpack every type",
            "local t = {cmsgpack.unpack(cmsgpack.pack(-5, 300, -300, 70000, 5000000000, 1.25, 'abc', true, {k = 'v'}))} return {t[1], t[2], t[3], t[4], t[5], tostring(t[6]), t[7], tostring(t[8]), t[9].k}",
            &[],
            &[],
        ),
        case(
            "cmsgpack unpack_one and limit",
            "local off, v = cmsgpack.unpack_one(cmsgpack.pack(7, 8)) local o2, a, b = cmsgpack.unpack_limit(cmsgpack.pack(1, 2, 3), 2) return {off, v, o2, a, b}",
            &[],
            &[],
        ),
        case(
            "cmsgpack bad input",
            "return {pcall(cmsgpack.unpack, '\\193')}",
            &[],
            &[],
        ),
        // bit.
        case(
            "bit ops",
            "return {bit.band(0xff, 0x0f), bit.bor(1, 2, 4), bit.bxor(5, 3), bit.bnot(0), bit.lshift(1, 31), bit.rshift(-1, 28), bit.arshift(-256, 4), bit.rol(0x12345678, 8), bit.ror(0x12345678, 8), bit.bswap(0x12345678), bit.tobit(2^32 + 5)}",
            &[],
            &[],
        ),
        case(
            "bit negatives and tohex",
            "return {bit.tohex(-1), bit.tohex(255, 4), bit.tohex(255, -4), bit.tohex(0x12345678), bit.band(-1, -2), bit.tobit(-1), bit.tobit(0xffffffff)}",
            &[],
            &[],
        ),
        // struct.
        case(
            "struct pack",
            "return {struct.pack('>I2', 258), struct.pack('<i4', -2), struct.pack('b', -1), struct.pack('s', 'ab'), struct.pack('c3', 'xyz'), struct.pack('>d', 1.5), struct.pack('>f', 0.5), struct.pack('!4 B i', 1, 2)}",
            &[],
            &[],
        ),
        case(
            "struct unpack",
            "local a, b, c, n = struct.unpack('>I2 i4 c2', struct.pack('>I2 i4 c2', 513, -7, 'hi')) return {a, b, c, n}",
            &[],
            &[],
        ),
        case(
            "struct unpack strings",
            "local s, f, n = struct.unpack('s >f', struct.pack('s >f', 'zero', 0.25)) return {s, tostring(f), n}",
            &[],
            &[],
        ),
        case(
            "struct size",
            "return {struct.size('i'), struct.size('>I2 d'), struct.size('c10'), struct.size('!8 b d')}",
            &[],
            &[],
        ),
        case(
            "struct errors",
            "return {pcall(struct.pack, 'i4')}",
            &[],
            &[],
        ),
    ]
}

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
