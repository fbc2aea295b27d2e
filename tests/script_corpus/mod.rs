//! The corpus of scripts that tests/script_engine.rs (the engine against redis-server) and
//! tests/cross_shard.rs (through shardis over three backends against one redis-server) run:
//! every conversion rule, pcall, the libraries, errors after writes, the sandbox, loops.

#![allow(dead_code)]

/// One corpus entry.
pub struct Case {
    pub name: &'static str,
    pub script: String,
    pub keys: Vec<&'static str>,
    pub args: Vec<&'static str>,
    pub resp3: bool,
    /// EVAL, or EVAL_RO.
    pub cmd: &'static str,
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
pub const FIXTURE: &[&[&str]] = &[
    &["SET", "s", "hello"],
    &["SET", "n", "41"],
    &["RPUSH", "l", "a", "b", "c"],
    &["HSET", "h", "f1", "v1", "f2", "v2"],
    &["SADD", "set", "x"],
    &["ZADD", "z", "1.5", "m1", "2", "m2"],
    &["SET", "ttl", "v", "PX", "100000"],
];

pub fn corpus() -> Vec<Case> {
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

pub fn library_corpus() -> Vec<Case> {
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
