//! The command table: name, arity, where the keys are, and how shardis serves each command.
//!
//! Routing is driven entirely by this table; a command not in it is refused as unknown.

use std::collections::HashMap;
use std::sync::LazyLock;

/// Where a command's keys are, in argument positions (the command name is position 0).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Keys {
    /// No key.
    None,
    /// Keys from `first` to `last` (negative: counted from the end, -1 is the last argument), every `step`.
    Range { first: u8, last: i8, step: u8 },
    /// The argument at `count_at` says how many keys follow from `count_at + 1`; `dest` is a
    /// key before the count (ZUNIONSTORE's destination), if any.
    Counted { count_at: u8, dest: bool },
    /// One key at `key`, and options from `options` on, among which `STORE key` or
    /// `STOREDIST key` (SORT, GEORADIUS) names a destination key that is written too.
    Store { key: u8, options: u8 },
}

/// How multi-backend replies are combined.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Merge {
    /// MGET: arrays re-assembled in key order.
    Mget,
    /// MSET, FLUSHDB: `+OK` when every part says so.
    AllOk,
    /// DEL, EXISTS, DBSIZE: integers summed.
    Sum,
    /// INFO: rendered by shardis from every backend's reply.
    Info,
}

/// Commands shardis answers itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Local {
    Ping,
    Echo,
    Quit,
    Select,
    Command,
    Client,
    Hello,
    Auth,
    Time,
}

/// How a command is served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Sent to the one backend that owns all its keys (`-CROSSSLOT` otherwise).
    Forward,
    /// Split per backend by key and merged; `pairs` keeps key-value pairs together (MSET).
    Split { merge: Merge, pairs: bool },
    /// Sent unchanged to every backend and merged.
    Broadcast(Merge),
    /// Answered by shardis.
    Local(Local),
    /// Known to Redis but not served through a sharding proxy yet.
    Unsupported,
}

/// One command table entry.
#[derive(Debug, Clone, Copy)]
pub struct Command {
    /// Lowercase name; also the `command` metric label.
    pub name: &'static str,
    /// Redis convention: N exactly N arguments (name included), -N at least N.
    pub arity: i32,
    pub keys: Keys,
    pub kind: Kind,
    /// Whether it writes (reported by COMMAND).
    pub write: bool,
}

impl Command {
    /// Whether `argc` arguments (name included) satisfy the arity.
    #[inline]
    pub fn arity_ok(&self, argc: usize) -> bool {
        if self.arity >= 0 {
            argc == self.arity as usize
        } else {
            argc >= self.arity.unsigned_abs() as usize
        }
    }
}

const fn c(name: &'static str, arity: i32, keys: Keys, kind: Kind, write: bool) -> Command {
    Command {
        name,
        arity,
        keys,
        kind,
        write,
    }
}

const K1: Keys = Keys::Range {
    first: 1,
    last: 1,
    step: 1,
};
const K2: Keys = Keys::Range {
    first: 2,
    last: 2,
    step: 1,
};
const K12: Keys = Keys::Range {
    first: 1,
    last: 2,
    step: 1,
};
const KALL: Keys = Keys::Range {
    first: 1,
    last: -1,
    step: 1,
};
const KFROM2: Keys = Keys::Range {
    first: 2,
    last: -1,
    step: 1,
};
const KPAIRS: Keys = Keys::Range {
    first: 1,
    last: -1,
    step: 2,
};
const KN1: Keys = Keys::Counted {
    count_at: 1,
    dest: false,
};
const KN2: Keys = Keys::Counted {
    count_at: 2,
    dest: false,
};
const KDN2: Keys = Keys::Counted {
    count_at: 2,
    dest: true,
};
/// `SORT key [BY p] [LIMIT o c] [GET p ...] [ASC|DESC] [ALPHA] [STORE dest]`.
const KSORT: Keys = Keys::Store { key: 1, options: 2 };
/// `GEORADIUS key lon lat radius unit [...] [STORE dest] [STOREDIST dest]`.
const KGEORADIUS: Keys = Keys::Store { key: 1, options: 6 };
/// `GEORADIUSBYMEMBER key member radius unit [...] [STORE dest] [STOREDIST dest]`.
const KGEOMEMBER: Keys = Keys::Store { key: 1, options: 5 };
const NONE: Keys = Keys::None;
const F: Kind = Kind::Forward;
const U: Kind = Kind::Unsupported;
const R: bool = false;
const W: bool = true;

/// Every command shardis knows, in a fixed order (metric handles are indexed by position).
pub static COMMANDS: &[Command] = &[
    // strings
    c("get", 2, K1, F, R),
    c("set", -3, K1, F, W),
    c("setnx", 3, K1, F, W),
    c("setex", 4, K1, F, W),
    c("psetex", 4, K1, F, W),
    c("getset", 3, K1, F, W),
    c("getex", -2, K1, F, W),
    c("getdel", 2, K1, F, W),
    c("append", 3, K1, F, W),
    c("strlen", 2, K1, F, R),
    c("incr", 2, K1, F, W),
    c("decr", 2, K1, F, W),
    c("incrby", 3, K1, F, W),
    c("decrby", 3, K1, F, W),
    c("incrbyfloat", 3, K1, F, W),
    c("getrange", 4, K1, F, R),
    c("setrange", 4, K1, F, W),
    c("substr", 4, K1, F, R),
    c("lcs", -3, K12, F, R),
    c(
        "mget",
        -2,
        KALL,
        Kind::Split {
            merge: Merge::Mget,
            pairs: false,
        },
        R,
    ),
    c(
        "mset",
        -3,
        KPAIRS,
        Kind::Split {
            merge: Merge::AllOk,
            pairs: true,
        },
        W,
    ),
    c("msetnx", -3, KPAIRS, F, W),
    // keyspace
    c(
        "del",
        -2,
        KALL,
        Kind::Split {
            merge: Merge::Sum,
            pairs: false,
        },
        W,
    ),
    c(
        "unlink",
        -2,
        KALL,
        Kind::Split {
            merge: Merge::Sum,
            pairs: false,
        },
        W,
    ),
    c(
        "exists",
        -2,
        KALL,
        Kind::Split {
            merge: Merge::Sum,
            pairs: false,
        },
        R,
    ),
    c(
        "touch",
        -2,
        KALL,
        Kind::Split {
            merge: Merge::Sum,
            pairs: false,
        },
        R,
    ),
    c("expire", -3, K1, F, W),
    c("pexpire", -3, K1, F, W),
    c("expireat", -3, K1, F, W),
    c("pexpireat", -3, K1, F, W),
    c("expiretime", 2, K1, F, R),
    c("pexpiretime", 2, K1, F, R),
    c("ttl", 2, K1, F, R),
    c("pttl", 2, K1, F, R),
    c("persist", 2, K1, F, W),
    c("type", 2, K1, F, R),
    c("dump", 2, K1, F, R),
    c("restore", -4, K1, F, W),
    c("object", -3, K2, F, R),
    c("rename", 3, K12, F, W),
    c("renamenx", 3, K12, F, W),
    c("copy", -3, K12, F, W),
    c("sort", -2, KSORT, F, W),
    c("sort_ro", -2, K1, F, R),
    c("dbsize", 1, NONE, Kind::Broadcast(Merge::Sum), R),
    c("flushdb", -1, NONE, Kind::Broadcast(Merge::AllOk), W),
    c("flushall", -1, NONE, Kind::Broadcast(Merge::AllOk), W),
    c("info", -1, NONE, Kind::Broadcast(Merge::Info), R),
    // hashes
    c("hset", -4, K1, F, W),
    c("hsetnx", 4, K1, F, W),
    c("hget", 3, K1, F, R),
    c("hmset", -4, K1, F, W),
    c("hmget", -3, K1, F, R),
    c("hdel", -3, K1, F, W),
    c("hexists", 3, K1, F, R),
    c("hlen", 2, K1, F, R),
    c("hkeys", 2, K1, F, R),
    c("hvals", 2, K1, F, R),
    c("hgetall", 2, K1, F, R),
    c("hincrby", 4, K1, F, W),
    c("hincrbyfloat", 4, K1, F, W),
    c("hstrlen", 3, K1, F, R),
    c("hrandfield", -2, K1, F, R),
    c("hscan", -3, K1, F, R),
    // lists
    c("lpush", -3, K1, F, W),
    c("rpush", -3, K1, F, W),
    c("lpushx", -3, K1, F, W),
    c("rpushx", -3, K1, F, W),
    c("lpop", -2, K1, F, W),
    c("rpop", -2, K1, F, W),
    c("llen", 2, K1, F, R),
    c("lrange", 4, K1, F, R),
    c("lindex", 3, K1, F, R),
    c("lset", 4, K1, F, W),
    c("linsert", 5, K1, F, W),
    c("lrem", 4, K1, F, W),
    c("ltrim", 4, K1, F, W),
    c("lpos", -3, K1, F, R),
    c("rpoplpush", 3, K12, F, W),
    c("lmove", 5, K12, F, W),
    c("lmpop", -4, KN1, F, W),
    // sets
    c("sadd", -3, K1, F, W),
    c("srem", -3, K1, F, W),
    c("smembers", 2, K1, F, R),
    c("sismember", 3, K1, F, R),
    c("smismember", -3, K1, F, R),
    c("scard", 2, K1, F, R),
    c("spop", -2, K1, F, W),
    c("srandmember", -2, K1, F, R),
    c("sscan", -3, K1, F, R),
    c("smove", 4, K12, F, W),
    c("sinter", -2, KALL, F, R),
    c("sunion", -2, KALL, F, R),
    c("sdiff", -2, KALL, F, R),
    c("sinterstore", -3, KALL, F, W),
    c("sunionstore", -3, KALL, F, W),
    c("sdiffstore", -3, KALL, F, W),
    c("sintercard", -3, KN1, F, R),
    // sorted sets
    c("zadd", -4, K1, F, W),
    c("zincrby", 4, K1, F, W),
    c("zrem", -3, K1, F, W),
    c("zcard", 2, K1, F, R),
    c("zcount", 4, K1, F, R),
    c("zscore", 3, K1, F, R),
    c("zmscore", -3, K1, F, R),
    c("zrank", -3, K1, F, R),
    c("zrevrank", -3, K1, F, R),
    c("zrange", -4, K1, F, R),
    c("zrevrange", -4, K1, F, R),
    c("zrangebyscore", -4, K1, F, R),
    c("zrevrangebyscore", -4, K1, F, R),
    c("zrangebylex", -4, K1, F, R),
    c("zrevrangebylex", -4, K1, F, R),
    c("zremrangebyrank", 4, K1, F, W),
    c("zremrangebyscore", 4, K1, F, W),
    c("zremrangebylex", 4, K1, F, W),
    c("zlexcount", 4, K1, F, R),
    c("zpopmin", -2, K1, F, W),
    c("zpopmax", -2, K1, F, W),
    c("zrandmember", -2, K1, F, R),
    c("zscan", -3, K1, F, R),
    c("zrangestore", -5, K12, F, W),
    c("zunionstore", -4, KDN2, F, W),
    c("zinterstore", -4, KDN2, F, W),
    c("zdiffstore", -4, KDN2, F, W),
    c("zunion", -3, KN1, F, R),
    c("zinter", -3, KN1, F, R),
    c("zdiff", -3, KN1, F, R),
    c("zintercard", -3, KN1, F, R),
    c("zmpop", -4, KN1, F, W),
    // streams
    c("xadd", -5, K1, F, W),
    c("xrange", -4, K1, F, R),
    c("xrevrange", -4, K1, F, R),
    c("xlen", 2, K1, F, R),
    c("xdel", -3, K1, F, W),
    c("xtrim", -4, K1, F, W),
    c("xack", -4, K1, F, W),
    c("xpending", -3, K1, F, R),
    c("xclaim", -6, K1, F, W),
    c("xautoclaim", -6, K1, F, W),
    c("xsetid", -3, K1, F, W),
    c("xinfo", -3, K2, F, R),
    c("xgroup", -3, K2, F, W),
    // hyperloglog
    c("pfadd", -2, K1, F, W),
    c("pfcount", -2, KALL, F, R),
    c("pfmerge", -2, KALL, F, W),
    // bitmaps
    c("setbit", 4, K1, F, W),
    c("getbit", 3, K1, F, R),
    c("bitcount", -2, K1, F, R),
    c("bitpos", -3, K1, F, R),
    c("bitfield", -2, K1, F, W),
    c("bitfield_ro", -2, K1, F, R),
    c("bitop", -4, KFROM2, F, W),
    // geo
    c("geoadd", -5, K1, F, W),
    c("geodist", -4, K1, F, R),
    c("geohash", -2, K1, F, R),
    c("geopos", -2, K1, F, R),
    c("georadius", -6, KGEORADIUS, F, W),
    c("georadiusbymember", -5, KGEOMEMBER, F, W),
    c("georadius_ro", -6, K1, F, R),
    c("georadiusbymember_ro", -5, K1, F, R),
    c("geosearch", -7, K1, F, R),
    c("geosearchstore", -8, K12, F, W),
    // scripting: keys counted after the script
    c("eval", -3, KN2, F, W),
    c("evalsha", -3, KN2, F, W),
    c("eval_ro", -3, KN2, F, R),
    c("evalsha_ro", -3, KN2, F, R),
    // answered by shardis
    c("ping", -1, NONE, Kind::Local(Local::Ping), R),
    c("echo", 2, NONE, Kind::Local(Local::Echo), R),
    c("quit", -1, NONE, Kind::Local(Local::Quit), R),
    c("select", 2, NONE, Kind::Local(Local::Select), R),
    c("command", -1, NONE, Kind::Local(Local::Command), R),
    c("client", -2, NONE, Kind::Local(Local::Client), R),
    c("hello", -1, NONE, Kind::Local(Local::Hello), R),
    c("auth", -2, NONE, Kind::Local(Local::Auth), R),
    c("time", 1, NONE, Kind::Local(Local::Time), R),
    // known, not served yet (need dedicated connections or cross-shard state)
    c("keys", 2, NONE, U, R),
    c("scan", -2, NONE, U, R),
    c("randomkey", 1, NONE, U, R),
    c("move", 3, K1, U, W),
    c("swapdb", 3, NONE, U, W),
    c("migrate", -6, NONE, U, W),
    c("multi", 1, NONE, U, R),
    c("exec", 1, NONE, U, W),
    c("discard", 1, NONE, U, R),
    c("watch", -2, KALL, U, R),
    c("unwatch", 1, NONE, U, R),
    c("subscribe", -2, NONE, U, R),
    c("psubscribe", -2, NONE, U, R),
    c("ssubscribe", -2, NONE, U, R),
    c("unsubscribe", -1, NONE, U, R),
    c("punsubscribe", -1, NONE, U, R),
    c("publish", 3, NONE, U, W),
    c("pubsub", -2, NONE, U, R),
    c("blpop", -3, NONE, U, W),
    c("brpop", -3, NONE, U, W),
    c("brpoplpush", 4, NONE, U, W),
    c("blmove", 6, NONE, U, W),
    c("blmpop", -5, NONE, U, W),
    c("bzpopmin", -3, NONE, U, W),
    c("bzpopmax", -3, NONE, U, W),
    c("bzmpop", -5, NONE, U, W),
    c("xread", -4, NONE, U, R),
    c("xreadgroup", -7, NONE, U, W),
    c("wait", 3, NONE, U, R),
    c("script", -2, NONE, U, R),
    c("function", -2, NONE, U, W),
    c("fcall", -3, NONE, U, W),
    c("fcall_ro", -3, NONE, U, R),
    c("config", -2, NONE, U, R),
    c("save", 1, NONE, U, R),
    c("bgsave", -1, NONE, U, R),
    c("bgrewriteaof", 1, NONE, U, R),
    c("lastsave", 1, NONE, U, R),
    c("shutdown", -1, NONE, U, R),
    c("monitor", 1, NONE, U, R),
    c("debug", -2, NONE, U, R),
    c("slaveof", 3, NONE, U, R),
    c("replicaof", 3, NONE, U, R),
    c("sync", 1, NONE, U, R),
    c("psync", -3, NONE, U, R),
    c("cluster", -2, NONE, U, R),
    c("acl", -2, NONE, U, R),
    c("slowlog", -2, NONE, U, R),
    c("latency", -2, NONE, U, R),
    c("memory", -2, NONE, U, R),
    c("module", -2, NONE, U, R),
    c("readonly", 1, NONE, U, R),
    c("readwrite", 1, NONE, U, R),
    c("reset", 1, NONE, U, R),
];

/// Longest command name in the table; longer names are unknown without a lookup.
const MAX_NAME: usize = 24;

static INDEX: LazyLock<HashMap<&'static [u8], usize, ahash::RandomState>> = LazyLock::new(|| {
    COMMANDS
        .iter()
        .enumerate()
        .map(|(id, cmd)| (cmd.name.as_bytes(), id))
        .collect()
});

/// Looks a command up by name, case-insensitively, without allocating. Returns its id (its
/// position in [`COMMANDS`], which indexes the metric handles) and its entry.
#[inline]
pub fn lookup(name: &[u8]) -> Option<(usize, &'static Command)> {
    if name.len() > MAX_NAME {
        return None;
    }
    let mut lower = [0u8; MAX_NAME];
    for (dst, src) in lower.iter_mut().zip(name) {
        *dst = src.to_ascii_lowercase();
    }
    let id = *INDEX.get(&lower[..name.len()])?;
    Some((id, &COMMANDS[id]))
}

/// Lowercase names of all commands, in table order (metric handle ids).
pub fn names() -> Vec<&'static str> {
    COMMANDS.iter().map(|c| c.name).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookup_is_case_insensitive() {
        assert_eq!(lookup(b"GeT").map(|(_, c)| c.name), Some("get"));
        assert!(lookup(b"nosuchcommand").is_none());
        assert!(lookup(&[b'a'; 100]).is_none());
    }

    #[test]
    fn names_are_unique_lowercase_and_short() {
        let mut seen = std::collections::HashSet::new();
        for cmd in COMMANDS {
            assert!(seen.insert(cmd.name), "duplicate {}", cmd.name);
            assert_eq!(cmd.name, cmd.name.to_ascii_lowercase());
            assert!(cmd.name.len() <= MAX_NAME);
            assert_ne!(cmd.arity, 0);
        }
    }

    #[test]
    fn ids_are_positions() {
        for (i, cmd) in COMMANDS.iter().enumerate() {
            assert_eq!(lookup(cmd.name.as_bytes()).map(|(id, _)| id), Some(i));
        }
    }

    #[test]
    fn arity() {
        let (_, get) = lookup(b"get").unwrap();
        assert!(get.arity_ok(2) && !get.arity_ok(1) && !get.arity_ok(3));
        let (_, set) = lookup(b"set").unwrap();
        assert!(set.arity_ok(3) && set.arity_ok(6) && !set.arity_ok(2));
    }
}
