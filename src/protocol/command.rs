//! The command table: for every command and subcommand, what Redis says of it (arity, flags,
//! ACL categories; generated into [`super::redis_commands`]) and how shardis serves it (decided
//! in [`super::table`]): where its keys are and which path it takes.
//!
//! Routing is driven entirely by this table; a command not in it is refused as unknown.

use std::collections::HashMap;
use std::sync::LazyLock;

/// What Redis says of a command (one row of `COMMAND`).
#[derive(Debug, Clone, Copy)]
pub struct RedisCommand {
    pub name: &'static str,
    pub arity: i32,
    /// [`flag`] bits.
    pub flags: u32,
    /// [`acl`] category bits.
    pub acl: u32,
    pub first: i32,
    pub last: i32,
    pub step: i32,
    /// What ACL key patterns must allow for its keys.
    pub key_access: KeyAccess,
}

/// What an ACL key pattern must allow for a key, as bits: Redis's key-spec flags read as its
/// ACL check reads them (`access` needs read, `insert`/`delete`/`update` need write).
pub mod access {
    /// Not a key.
    pub const NONE: u8 = 0;
    /// A key that any matching pattern allows (EXISTS, TYPE: neither read nor write).
    pub const KEY: u8 = 1;
    /// Needs a pattern that allows reading.
    pub const READ: u8 = 2;
    /// Needs a pattern that allows writing.
    pub const WRITE: u8 = 4;
    pub const R: u8 = KEY | READ;
    pub const W: u8 = KEY | WRITE;
    pub const RW: u8 = KEY | READ | WRITE;
}

/// The [`access`] a command's keys need: the keys at argument positions before `split` need
/// `first`, the others `rest` (LMOVE's source is read and written, its destination only
/// written). `variable`: Redis narrows it by the arguments (SET without GET only writes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyAccess {
    pub first: u8,
    pub split: u8,
    pub rest: u8,
    pub variable: bool,
}

impl KeyAccess {
    /// No keys.
    pub const NONE: KeyAccess = KeyAccess::all(access::NONE);

    /// Every key needs `access`.
    pub const fn all(access: u8) -> KeyAccess {
        KeyAccess {
            first: access,
            split: 0,
            rest: access,
            variable: false,
        }
    }

    /// Keys before argument `split` need `first`, the others `rest`.
    pub const fn split(first: u8, split: u8, rest: u8) -> KeyAccess {
        KeyAccess {
            first,
            split,
            rest,
            variable: false,
        }
    }

    /// Redis narrows it by the arguments.
    pub const fn variable(self) -> KeyAccess {
        KeyAccess {
            variable: true,
            ..self
        }
    }

    /// Whether the command has keys at all, for ACLs.
    #[inline]
    pub fn has_keys(&self) -> bool {
        self.first | self.rest != access::NONE
    }

    /// What the key at argument `pos` needs.
    #[inline]
    pub fn at(&self, pos: usize) -> u8 {
        if pos < self.split as usize {
            self.first
        } else {
            self.rest
        }
    }
}

/// Redis command flags, as bits.
pub mod flag {
    pub const WRITE: u32 = 1 << 0;
    pub const READONLY: u32 = 1 << 1;
    pub const DENYOOM: u32 = 1 << 2;
    pub const ADMIN: u32 = 1 << 3;
    pub const PUBSUB: u32 = 1 << 4;
    pub const NOSCRIPT: u32 = 1 << 5;
    pub const BLOCKING: u32 = 1 << 6;
    pub const LOADING: u32 = 1 << 7;
    pub const STALE: u32 = 1 << 8;
    pub const SKIP_MONITOR: u32 = 1 << 9;
    pub const SKIP_SLOWLOG: u32 = 1 << 10;
    pub const FAST: u32 = 1 << 11;
    pub const NO_AUTH: u32 = 1 << 12;
    pub const MAY_REPLICATE: u32 = 1 << 13;
    pub const NO_MANDATORY_KEYS: u32 = 1 << 14;
    pub const MOVABLEKEYS: u32 = 1 << 15;
    pub const NO_MULTI: u32 = 1 << 16;
    pub const ALLOW_BUSY: u32 = 1 << 17;
    pub const MODULE: u32 = 1 << 18;
    pub const NO_ASYNC_LOADING: u32 = 1 << 19;
    pub const ASKING: u32 = 1 << 20;
}

/// Redis ACL categories, as bits, in [`acl::NAMES`] order.
pub mod acl {
    pub const KEYSPACE: u32 = 1 << 0;
    pub const READ: u32 = 1 << 1;
    pub const WRITE: u32 = 1 << 2;
    pub const SET: u32 = 1 << 3;
    pub const SORTEDSET: u32 = 1 << 4;
    pub const LIST: u32 = 1 << 5;
    pub const HASH: u32 = 1 << 6;
    pub const STRING: u32 = 1 << 7;
    pub const BITMAP: u32 = 1 << 8;
    pub const HYPERLOGLOG: u32 = 1 << 9;
    pub const GEO: u32 = 1 << 10;
    pub const STREAM: u32 = 1 << 11;
    pub const PUBSUB: u32 = 1 << 12;
    pub const ADMIN: u32 = 1 << 13;
    pub const FAST: u32 = 1 << 14;
    pub const SLOW: u32 = 1 << 15;
    pub const BLOCKING: u32 = 1 << 16;
    pub const DANGEROUS: u32 = 1 << 17;
    pub const CONNECTION: u32 = 1 << 18;
    pub const TRANSACTION: u32 = 1 << 19;
    pub const SCRIPTING: u32 = 1 << 20;

    /// Category names, bit i named by `NAMES[i]`.
    pub const NAMES: [&str; 21] = [
        "keyspace",
        "read",
        "write",
        "set",
        "sortedset",
        "list",
        "hash",
        "string",
        "bitmap",
        "hyperloglog",
        "geo",
        "stream",
        "pubsub",
        "admin",
        "fast",
        "slow",
        "blocking",
        "dangerous",
        "connection",
        "transaction",
        "scripting",
    ];
}

/// Where a command's keys are, in argument positions (the command name is position 0).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Keys {
    /// No key.
    None,
    /// Keys from `first` to `last` (negative: counted from the end, -1 is the last argument), every `step`.
    Range { first: u8, last: i8, step: u8 },
    /// The argument at `count_at` says how many keys follow from `count_at + 1`; `dest` is a
    /// key before the count (ZUNIONSTORE's destination), if any. `zero`: a count of 0 is
    /// valid and the command runs keyless (EVAL, FCALL).
    Counted {
        count_at: u8,
        dest: bool,
        zero: bool,
    },
    /// One key at `key`, and options from `options` on, among which `STORE key` or
    /// `STOREDIST key` (SORT, GEORADIUS) names a destination key that is written too.
    Store { key: u8, options: u8 },
    /// The keys are the first half of the arguments after `STREAMS` (XREAD, XREADGROUP).
    Streams,
}

/// How the replies of a command sent to several backends are combined.
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
    /// SCRIPT LOAD, FUNCTION LOAD, BGSAVE: the same answer from all; the first error if any.
    Same,
    /// SCRIPT KILL: `+OK` if any backend had something to kill, else the first error.
    AnyOk,
    /// SCRIPT EXISTS: element by element, 1 only where every backend says 1.
    AllTrue,
    /// KEYS: the arrays concatenated, up to `max_keys_reply`.
    Concat,
    /// PUBSUB CHANNELS: the arrays' union.
    Union,
    /// RANDOMKEY: one of the non-null answers, at random.
    Random,
    /// WAIT (set by the session): the smallest count.
    Min,
    /// PUBSUB NUMSUB (set by the session): counts summed, sessions counted instead of hubs.
    Numsub,
    /// PUBSUB NUMPAT (set by the session): summed, each hub's patterns counted once.
    Numpat,
}

/// Commands shardis answers itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Local {
    Ping,
    Echo,
    Quit,
    Select,
    Hello,
    Auth,
    Time,
    ClientSetname,
    ClientGetname,
    ClientSetinfo,
    ClientId,
    ClientInfo,
    ClientList,
    ClientReply,
    ClientUnblock,
    ClientKill,
    ClientNoEvict,
    ClientNoTouch,
    ClientGetredir,
    ClientTrackinginfo,
    ClientHelp,
    AclWhoami,
    AclCat,
    AclUsers,
    AclList,
    AclDryrun,
}

/// Pub/sub namespaces.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Channels {
    /// SUBSCRIBE / PUBLISH.
    Plain,
    /// PSUBSCRIBE.
    Pattern,
    /// SSUBSCRIBE / SPUBLISH.
    Shard,
}

/// Commands the session serves with state of its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionCmd {
    Multi,
    Exec,
    Discard,
    Watch,
    Unwatch,
    Subscribe(Channels),
    Unsubscribe(Channels),
    /// PUBLISH and SPUBLISH: forwarded by channel; the receiver count counts the proxy's
    /// subscribers instead of its subscriber connection.
    Publish(Channels),
    /// PUBSUB NUMSUB / SHARDNUMSUB.
    Numsub(Channels),
    /// PUBSUB NUMPAT.
    Numpat,
    Scan,
    Reset,
    /// WAIT: every backend, on exclusive connections.
    Wait,
}

/// How a command refused by default is served once `[server] allow_commands` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Allowed {
    Broadcast(Merge),
    First,
    /// DEBUG: `DEBUG OBJECT key` by its key, anything else to every backend.
    Debug,
}

/// How a command is served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Sent to the one backend that owns all its keys (`-CROSSSLOT` otherwise); with a valid
    /// key count of 0 (EVAL ... 0), to the first backend.
    Forward,
    /// Split per backend by key and merged; `pairs` keeps key-value pairs together (MSET).
    Split { merge: Merge, pairs: bool },
    /// Sent unchanged to every backend and merged.
    Broadcast(Merge),
    /// Sent to the first backend: any backend gives the same answer (COMMAND DOCS, ... HELP).
    First,
    /// Answered by shardis.
    Local(Local),
    /// Like [`Kind::Forward`], on an exclusive connection and with no timeout but its own;
    /// `option`: only when it has a `BLOCK` option (XREAD), otherwise forwarded.
    Blocking { option: bool },
    /// Served by the session with state of its own.
    Session(SessionCmd),
    /// Has subcommands, each with its own entry named `parent|sub`.
    Container,
    /// Refused unless named in `[server] allow_commands`; then served as given.
    Guarded(Allowed),
    /// Cannot be served through this proxy; the reason ends the error message.
    Refused(&'static str),
}

/// One command table entry.
#[derive(Debug, Clone, Copy)]
pub struct Command {
    /// Lowercase name (`parent|sub` for a subcommand); also the `command` metric label.
    pub name: &'static str,
    /// Redis convention: N exactly N arguments (name included), -N at least N.
    pub arity: i32,
    pub keys: Keys,
    pub kind: Kind,
    /// [`flag`] bits.
    pub flags: u32,
    /// [`acl`] category bits.
    pub acl: u32,
    /// What ACL key patterns must allow for its keys.
    pub key_access: KeyAccess,
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

    /// Whether Redis flags it as a write.
    pub fn is_write(&self) -> bool {
        self.flags & flag::WRITE != 0
    }

    /// Whether it is a subcommand (`parent|sub`).
    pub fn is_subcommand(&self) -> bool {
        self.name.contains('|')
    }
}

/// Every command shardis knows, in a fixed order (metric handles are indexed by position).
pub static COMMANDS: LazyLock<Box<[Command]>> = LazyLock::new(super::table::build);

/// Longest command name in the table; longer names are unknown without a lookup.
const MAX_NAME: usize = 40;

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

/// The subcommand `sub` of container `parent` (`"object"`, `b"encoding"`).
pub fn lookup_sub(parent: &str, sub: &[u8]) -> Option<(usize, &'static Command)> {
    let len = parent.len() + 1 + sub.len();
    if len > MAX_NAME {
        return None;
    }
    let mut name = [0u8; MAX_NAME];
    name[..parent.len()].copy_from_slice(parent.as_bytes());
    name[parent.len()] = b'|';
    name[parent.len() + 1..len].copy_from_slice(sub);
    lookup(&name[..len])
}

/// Lowercase names of all commands, in table order (metric handle ids).
pub fn names() -> Vec<&'static str> {
    COMMANDS.iter().map(|c| c.name).collect()
}

/// Commands that `[server] allow_commands` can enable: those refused by default only because
/// they act on every backend at once.
pub static ALLOWABLE: LazyLock<Vec<&'static str>> = LazyLock::new(|| {
    let mut names: Vec<&str> = COMMANDS
        .iter()
        .filter(|c| matches!(c.kind, Kind::Guarded(_)))
        .map(|c| c.name.split('|').next().unwrap_or(c.name))
        .collect();
    names.dedup();
    names
});

/// Whether `name` (lowercase) can be named in `allow_commands`.
pub fn allowable(name: &str) -> bool {
    ALLOWABLE.contains(&name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookup_is_case_insensitive() {
        assert_eq!(lookup(b"GeT").map(|(_, c)| c.name), Some("get"));
        assert!(lookup(b"nosuchcommand").is_none());
        assert!(lookup(&[b'a'; 100]).is_none());
        assert_eq!(
            lookup_sub("object", b"encoding").map(|(_, c)| c.name),
            Some("object|encoding")
        );
        assert!(lookup_sub("object", b"nosuch").is_none());
    }

    #[test]
    fn names_are_unique_lowercase_and_short() {
        let mut seen = std::collections::HashSet::new();
        for cmd in COMMANDS.iter() {
            assert!(seen.insert(cmd.name), "duplicate {}", cmd.name);
            assert_eq!(cmd.name, cmd.name.to_ascii_lowercase());
            assert!(cmd.name.len() <= MAX_NAME);
            assert_ne!(cmd.arity, 0, "{}", cmd.name);
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
        assert!(set.is_write() && !get.is_write());
    }

    #[test]
    fn allowable_commands() {
        for name in ["config", "debug", "save", "shutdown"] {
            assert!(allowable(name), "{name}");
        }
        for name in ["get", "monitor", "sync", "cluster"] {
            assert!(!allowable(name), "{name}");
        }
    }
}
