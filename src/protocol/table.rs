//! How shardis serves each command: the routing half of the command table. What Redis says of
//! each command (arity, flags, ACL categories, key positions) comes from
//! [`super::redis_commands`]; this file decides the path each one takes, and where the keys are
//! when Redis's own first/last/step positions do not say (movable keys).
//!
//! A command with keys and no entry here is forwarded to the backend that owns its keys. A
//! keyless command with no entry here is refused: every keyless command is a decision.

use super::command::{
    Allowed, Channels, Command, KeyAccess, Keys, Kind, Local, Merge, RedisCommand, SessionCmd, acl,
    flag,
};
use super::redis_commands::REDIS_COMMANDS;

const fn split(merge: Merge) -> Kind {
    Kind::Split {
        merge,
        pairs: false,
    }
}
const fn broadcast(merge: Merge) -> Kind {
    Kind::Broadcast(merge)
}
const fn session(cmd: SessionCmd) -> Kind {
    Kind::Session(cmd)
}
const fn local(l: Local) -> Kind {
    Kind::Local(l)
}
const fn guarded(a: Allowed) -> Kind {
    Kind::Guarded(a)
}
const BLOCKING: Kind = Kind::Blocking { option: false };

const DB0: &str = "shardis serves database 0 only";
const REPLICATION: &str = "replication runs between the backends, not through shardis";
const CLUSTER: &str = "shardis shows its clients one standalone Redis, not a cluster";
const ONE_SERVER: &str = "it describes one server: run it on a backend directly";
const ACL_USERS: &str =
    "shardis's users are defined in its configuration ([[users]]); change them there and reload";

/// Commands that do not simply go to the backend owning their keys.
#[rustfmt::skip]
static ROUTES: &[(&str, Kind)] = &[
    // keyspace
    ("mget", split(Merge::Mget)),
    ("mset", Kind::Split { merge: Merge::AllOk, pairs: true }),
    ("del", split(Merge::Sum)),
    ("unlink", split(Merge::Sum)),
    ("exists", split(Merge::Sum)),
    ("touch", split(Merge::Sum)),
    ("dbsize", broadcast(Merge::Sum)),
    ("flushdb", broadcast(Merge::AllOk)),
    ("flushall", broadcast(Merge::AllOk)),
    ("info", broadcast(Merge::Info)),
    ("keys", broadcast(Merge::Concat)),
    ("randomkey", broadcast(Merge::Random)),
    ("scan", session(SessionCmd::Scan)),
    ("move", Kind::Refused(DB0)),
    ("swapdb", Kind::Refused(DB0)),
    ("migrate", Kind::Refused("it moves keys behind shardis's back: run it on a backend")),
    ("restore-asking", Kind::Refused(CLUSTER)),
    // blocking
    ("blpop", BLOCKING),
    ("brpop", BLOCKING),
    ("brpoplpush", BLOCKING),
    ("blmove", BLOCKING),
    ("blmpop", BLOCKING),
    ("bzpopmin", BLOCKING),
    ("bzpopmax", BLOCKING),
    ("bzmpop", BLOCKING),
    ("xread", Kind::Blocking { option: true }),
    ("xreadgroup", Kind::Blocking { option: true }),
    ("wait", session(SessionCmd::Wait)),
    // transactions
    ("multi", session(SessionCmd::Multi)),
    ("exec", session(SessionCmd::Exec)),
    ("discard", session(SessionCmd::Discard)),
    ("watch", session(SessionCmd::Watch)),
    ("unwatch", session(SessionCmd::Unwatch)),
    // scripts and functions
    ("script|load", broadcast(Merge::Same)),
    ("script|exists", broadcast(Merge::AllTrue)),
    ("script|flush", broadcast(Merge::AllOk)),
    ("script|kill", broadcast(Merge::AnyOk)),
    ("script|help", Kind::First),
    ("script|debug", Kind::Refused("the Lua debugger needs a direct connection to one server")),
    ("function|load", broadcast(Merge::Same)),
    ("function|delete", broadcast(Merge::AllOk)),
    ("function|flush", broadcast(Merge::AllOk)),
    ("function|restore", broadcast(Merge::AllOk)),
    ("function|kill", broadcast(Merge::AnyOk)),
    ("function|list", Kind::First),
    ("function|dump", Kind::First),
    ("function|stats", Kind::First),
    ("function|help", Kind::First),
    // pub/sub
    ("subscribe", session(SessionCmd::Subscribe(Channels::Plain))),
    ("psubscribe", session(SessionCmd::Subscribe(Channels::Pattern))),
    ("ssubscribe", session(SessionCmd::Subscribe(Channels::Shard))),
    ("unsubscribe", session(SessionCmd::Unsubscribe(Channels::Plain))),
    ("punsubscribe", session(SessionCmd::Unsubscribe(Channels::Pattern))),
    ("sunsubscribe", session(SessionCmd::Unsubscribe(Channels::Shard))),
    ("publish", session(SessionCmd::Publish(Channels::Plain))),
    ("spublish", session(SessionCmd::Publish(Channels::Shard))),
    ("pubsub|channels", broadcast(Merge::Union)),
    ("pubsub|shardchannels", broadcast(Merge::Union)),
    ("pubsub|numsub", session(SessionCmd::Numsub(Channels::Plain))),
    ("pubsub|shardnumsub", session(SessionCmd::Numsub(Channels::Shard))),
    ("pubsub|numpat", session(SessionCmd::Numpat)),
    ("pubsub|help", Kind::First),
    // connection
    ("ping", local(Local::Ping)),
    ("echo", local(Local::Echo)),
    ("quit", local(Local::Quit)),
    ("select", local(Local::Select)),
    ("hello", local(Local::Hello)),
    ("auth", local(Local::Auth)),
    ("time", local(Local::Time)),
    ("reset", session(SessionCmd::Reset)),
    ("client|setname", local(Local::ClientSetname)),
    ("client|getname", local(Local::ClientGetname)),
    ("client|setinfo", local(Local::ClientSetinfo)),
    ("client|id", local(Local::ClientId)),
    ("client|info", local(Local::ClientInfo)),
    ("client|list", local(Local::ClientList)),
    ("client|reply", local(Local::ClientReply)),
    ("client|unblock", local(Local::ClientUnblock)),
    ("client|kill", local(Local::ClientKill)),
    ("client|no-evict", local(Local::ClientNoEvict)),
    ("client|no-touch", local(Local::ClientNoTouch)),
    ("client|getredir", local(Local::ClientGetredir)),
    ("client|trackinginfo", local(Local::ClientTrackinginfo)),
    ("client|help", local(Local::ClientHelp)),
    ("client|tracking", Kind::Refused("client-side caching needs a direct connection to the server holding the keys")),
    ("client|caching", Kind::Refused("client-side caching needs a direct connection to the server holding the keys")),
    ("client|pause", guarded(Allowed::Broadcast(Merge::AllOk))),
    ("client|unpause", guarded(Allowed::Broadcast(Merge::AllOk))),
    ("acl|whoami", local(Local::AclWhoami)),
    ("acl|cat", local(Local::AclCat)),
    ("acl|users", local(Local::AclUsers)),
    ("acl|list", local(Local::AclList)),
    ("acl|dryrun", local(Local::AclDryrun)),
    // introspection answered the same by every backend
    ("command", Kind::First),
    ("command|count", Kind::First),
    ("command|docs", Kind::First),
    ("command|getkeys", Kind::First),
    ("command|getkeysandflags", Kind::First),
    ("command|help", Kind::First),
    ("command|info", Kind::First),
    ("command|list", Kind::First),
    ("object|help", Kind::First),
    ("xinfo|help", Kind::First),
    ("xgroup|help", Kind::First),
    ("memory|help", Kind::First),
    ("memory|purge", broadcast(Merge::AllOk)),
    ("memory|doctor", Kind::Refused(ONE_SERVER)),
    ("memory|stats", Kind::Refused(ONE_SERVER)),
    ("memory|malloc-stats", Kind::Refused(ONE_SERVER)),
    ("lolwut", Kind::First),
    ("role", Kind::First),
    ("pfselftest", Kind::First),
    // administration: CONFIG GET is a read of the first backend; the rest is refused unless
    // enabled in [server] allow_commands
    ("config|get", Kind::First),
    ("config|set", guarded(Allowed::Broadcast(Merge::AllOk))),
    ("config|resetstat", guarded(Allowed::Broadcast(Merge::AllOk))),
    ("config|rewrite", guarded(Allowed::Broadcast(Merge::AllOk))),
    ("config|help", Kind::First),
    ("debug", guarded(Allowed::Debug)),
    ("save", guarded(Allowed::Broadcast(Merge::AllOk))),
    ("bgsave", guarded(Allowed::Broadcast(Merge::Same))),
    ("bgrewriteaof", guarded(Allowed::Broadcast(Merge::Same))),
    ("lastsave", guarded(Allowed::First)),
    ("shutdown", guarded(Allowed::Broadcast(Merge::AllOk))),
    ("slowlog|get", guarded(Allowed::First)),
    ("slowlog|len", guarded(Allowed::Broadcast(Merge::Sum))),
    ("slowlog|reset", guarded(Allowed::Broadcast(Merge::AllOk))),
    ("slowlog|help", Kind::First),
    ("latency|doctor", guarded(Allowed::First)),
    ("latency|graph", guarded(Allowed::First)),
    ("latency|histogram", guarded(Allowed::First)),
    ("latency|history", guarded(Allowed::First)),
    ("latency|latest", guarded(Allowed::First)),
    ("latency|reset", guarded(Allowed::Broadcast(Merge::Sum))),
    ("latency|help", Kind::First),
    // never through a proxy
    ("monitor", Kind::Refused("it streams one server's commands: run it on a backend")),
    ("sync", Kind::Refused(REPLICATION)),
    ("psync", Kind::Refused(REPLICATION)),
    ("replconf", Kind::Refused(REPLICATION)),
    ("replicaof", Kind::Refused(REPLICATION)),
    ("slaveof", Kind::Refused(REPLICATION)),
    ("failover", Kind::Refused(REPLICATION)),
    ("readonly", Kind::Refused(CLUSTER)),
    ("readwrite", Kind::Refused(CLUSTER)),
    ("asking", Kind::Refused(CLUSTER)),
];

/// Parents whose subcommands all get the same treatment unless listed above.
static CONTAINER_DEFAULTS: &[(&str, Kind)] = &[
    ("cluster", Kind::Refused(CLUSTER)),
    (
        "module",
        Kind::Refused("modules are loaded on the backends"),
    ),
    ("acl", Kind::Refused(ACL_USERS)),
];

const fn counted(count_at: u8, dest: bool, zero: bool) -> Keys {
    Keys::Counted {
        count_at,
        dest,
        zero,
    }
}
const K1: Keys = Keys::Range {
    first: 1,
    last: 1,
    step: 1,
};

/// Key positions Redis cannot give as first/last/step (its "movable keys"), and channels that
/// shardis places like keys.
#[rustfmt::skip]
static KEYS: &[(&str, Keys)] = &[
    ("eval", counted(2, false, true)),
    ("evalsha", counted(2, false, true)),
    ("eval_ro", counted(2, false, true)),
    ("evalsha_ro", counted(2, false, true)),
    ("fcall", counted(2, false, true)),
    ("fcall_ro", counted(2, false, true)),
    ("zunionstore", counted(2, true, false)),
    ("zinterstore", counted(2, true, false)),
    ("zdiffstore", counted(2, true, false)),
    ("zunion", counted(1, false, false)),
    ("zinter", counted(1, false, false)),
    ("zdiff", counted(1, false, false)),
    ("zintercard", counted(1, false, false)),
    ("sintercard", counted(1, false, false)),
    ("lmpop", counted(1, false, false)),
    ("zmpop", counted(1, false, false)),
    ("blmpop", counted(2, false, false)),
    ("bzmpop", counted(2, false, false)),
    // SORT key [BY p] [LIMIT o c] [GET p ...] [ASC|DESC] [ALPHA] [STORE dest]
    ("sort", Keys::Store { key: 1, options: 2 }),
    ("sort_ro", K1),
    // GEORADIUS key lon lat radius unit [...] [STORE dest] [STOREDIST dest]
    ("georadius", Keys::Store { key: 1, options: 6 }),
    // GEORADIUSBYMEMBER key member radius unit [...] [STORE dest] [STOREDIST dest]
    ("georadiusbymember", Keys::Store { key: 1, options: 5 }),
    ("xread", Keys::Streams),
    ("xreadgroup", Keys::Streams),
    // A channel lives on the backend its name hashes to, like a key.
    ("publish", K1),
    ("spublish", K1),
];

/// Commands newer than the Redis the table was generated from that clients send anyway.
#[rustfmt::skip]
static EXTRA: &[RedisCommand] = &[
    RedisCommand { name: "client|setinfo", arity: 4, flags: flag::NOSCRIPT | flag::LOADING | flag::STALE, acl: acl::SLOW | acl::CONNECTION, first: 0, last: 0, step: 0, key_access: KeyAccess::NONE },
    RedisCommand { name: "client|no-touch", arity: 3, flags: flag::NOSCRIPT | flag::LOADING | flag::STALE, acl: acl::SLOW | acl::CONNECTION, first: 0, last: 0, step: 0, key_access: KeyAccess::NONE },
];

/// The command table: Redis's commands with shardis's routing, ids in this order.
pub fn build() -> Box<[Command]> {
    REDIS_COMMANDS
        .iter()
        .chain(EXTRA)
        .map(|rc| Command {
            name: rc.name,
            arity: rc.arity,
            keys: keys_of(rc),
            kind: kind_of(rc),
            flags: rc.flags,
            acl: rc.acl,
            key_access: rc.key_access,
        })
        .collect()
}

fn keys_of(rc: &RedisCommand) -> Keys {
    if let Some((_, keys)) = KEYS.iter().find(|(n, _)| *n == rc.name) {
        return *keys;
    }
    if rc.first > 0 && rc.flags & flag::MOVABLEKEYS == 0 {
        Keys::Range {
            first: rc.first as u8,
            last: rc.last.clamp(i8::MIN as i32, i8::MAX as i32) as i8,
            step: rc.step.max(1) as u8,
        }
    } else {
        Keys::None
    }
}

fn kind_of(rc: &RedisCommand) -> Kind {
    if let Some((_, kind)) = ROUTES.iter().find(|(n, _)| *n == rc.name) {
        return *kind;
    }
    let is_container = !rc.name.contains('|')
        && REDIS_COMMANDS
            .iter()
            .chain(EXTRA)
            .any(|c| c.name.split_once('|').is_some_and(|(p, _)| p == rc.name));
    if is_container {
        return Kind::Container;
    }
    if let Some((parent, _)) = rc.name.split_once('|')
        && let Some((_, kind)) = CONTAINER_DEFAULTS.iter().find(|(n, _)| *n == parent)
    {
        return *kind;
    }
    match keys_of(rc) {
        Keys::None => Kind::Refused("shardis does not serve it"),
        _ => Kind::Forward,
    }
}

/// How a command is served, as the support table says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Support {
    /// Served whatever its keys.
    Served,
    /// Served when all its keys live on one backend (else `-CROSSSLOT`).
    SameBackend,
    /// Answered by shardis itself.
    Local,
    /// Refused unless `[server] allow_commands` names it.
    Guarded,
    /// Refused.
    Refused,
}

impl Support {
    pub fn label(self) -> &'static str {
        match self {
            Support::Served => "served",
            Support::SameBackend => "served when the keys share a backend",
            Support::Local => "answered by shardis",
            Support::Guarded => "refused unless enabled in `allow_commands`",
            Support::Refused => "refused",
        }
    }
}

/// Whether a command's keys may be several (so they must share a backend).
fn several_keys(keys: Keys) -> bool {
    match keys {
        Keys::None => false,
        Keys::Range { first, last, .. } => last < 0 || last as u8 != first,
        Keys::Counted { .. } | Keys::Store { .. } | Keys::Streams => true,
    }
}

/// How `cmd` is served.
pub fn support(cmd: &Command) -> Support {
    match cmd.kind {
        Kind::Local(_) | Kind::Session(SessionCmd::Reset) => Support::Local,
        Kind::Refused(_) => Support::Refused,
        Kind::Guarded(_) => Support::Guarded,
        Kind::Forward | Kind::Blocking { .. } | Kind::Session(SessionCmd::Watch)
            if several_keys(cmd.keys) =>
        {
            Support::SameBackend
        }
        _ => Support::Served,
    }
}

/// The command support table in Markdown, generated from the command table (docs/commands.md
/// is this text; a test keeps the two equal).
pub fn support_table() -> String {
    use std::fmt::Write as _;
    let commands = super::command::COMMANDS
        .iter()
        .filter(|c| c.kind != Kind::Container);
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# Commands\n\nGenerated from shardis's command table by `shardis commands`; do not edit \
         (a test checks this file against the code). Redis {} has {} commands and \
         subcommands; each row says how shardis serves one.\n",
        super::redis_commands::REDIS_VERSION,
        commands.clone().count()
    );
    let mut counts = [0usize; 5];
    for cmd in commands.clone() {
        counts[support(cmd) as usize] += 1;
    }
    let _ = writeln!(out, "| how | commands |\n| --- | ---: |");
    for (i, s) in [
        Support::Served,
        Support::SameBackend,
        Support::Local,
        Support::Guarded,
        Support::Refused,
    ]
    .into_iter()
    .enumerate()
    {
        let _ = writeln!(out, "| {} | {} |", s.label(), counts[i]);
    }
    let _ = writeln!(out, "\n| command | how | notes |\n| --- | --- | --- |");
    for cmd in commands {
        let note = match cmd.kind {
            Kind::Forward => "to the backend of its keys".to_string(),
            Kind::Split { .. } => "split by backend, replies merged".to_string(),
            Kind::Broadcast(_) => "to every backend, replies merged".to_string(),
            Kind::First => "to the first backend (any backend answers the same)".to_string(),
            Kind::Blocking { option: false } => "on an exclusive connection".to_string(),
            Kind::Blocking { option: true } => {
                "on an exclusive connection with BLOCK, else to the backend of its keys".to_string()
            }
            Kind::Session(SessionCmd::Multi | SessionCmd::Exec | SessionCmd::Discard) => {
                "queued by shardis, run as one batch on one backend".to_string()
            }
            Kind::Session(SessionCmd::Watch | SessionCmd::Unwatch) => {
                "on an exclusive connection to the keys' backend".to_string()
            }
            Kind::Session(SessionCmd::Subscribe(_) | SessionCmd::Unsubscribe(_)) => {
                "multiplexed on one subscriber connection per backend".to_string()
            }
            Kind::Session(SessionCmd::Publish(_)) => "to the backend of its channel".to_string(),
            Kind::Session(SessionCmd::Numsub(_) | SessionCmd::Numpat) => {
                "every backend, counted per client".to_string()
            }
            Kind::Session(SessionCmd::Scan) => {
                "every backend in turn; the cursor names it".to_string()
            }
            Kind::Session(SessionCmd::Wait) => {
                "every backend, on exclusive connections".to_string()
            }
            Kind::Session(SessionCmd::Reset) | Kind::Local(_) => String::new(),
            Kind::Guarded(Allowed::Broadcast(_)) => "when enabled: to every backend".to_string(),
            Kind::Guarded(Allowed::First) => "when enabled: to the first backend".to_string(),
            Kind::Guarded(Allowed::Debug) => {
                "when enabled: DEBUG OBJECT by key, the rest to every backend".to_string()
            }
            Kind::Refused(reason) => reason.to_string(),
            Kind::Container => continue,
        };
        let _ = writeln!(
            out,
            "| `{}` | {} | {} |",
            cmd.name.replace('|', "\\|"),
            support(cmd).label(),
            note.replace('|', "\\|")
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::super::command::{COMMANDS, lookup};
    use super::*;

    #[test]
    fn every_route_and_key_override_names_a_command() {
        for (name, _) in ROUTES.iter().chain(CONTAINER_DEFAULTS) {
            assert!(
                lookup(name.as_bytes()).is_some(),
                "ROUTES names unknown {name}"
            );
        }
        for (name, _) in KEYS {
            assert!(
                lookup(name.as_bytes()).is_some(),
                "KEYS names unknown {name}"
            );
        }
    }

    #[test]
    fn keyless_commands_are_each_decided() {
        // A keyless command refused by default is a decision made here, not an accident: the
        // list of them is short and every entry has a reason.
        let refused: Vec<&str> = COMMANDS
            .iter()
            .filter(|c| c.kind == Kind::Refused("shardis does not serve it"))
            .map(|c| c.name)
            .collect();
        assert_eq!(refused, Vec::<&str>::new());
    }

    #[test]
    fn the_support_table_in_docs_is_the_code_s() {
        let doc = include_str!("../../docs/commands.md");
        assert!(
            doc == support_table(),
            "docs/commands.md is out of date: run `cargo run -- commands > docs/commands.md`"
        );
    }

    #[test]
    fn routes_of_everyday_commands() {
        let kind = |n: &str| lookup(n.as_bytes()).unwrap().1.kind;
        let keys = |n: &str| lookup(n.as_bytes()).unwrap().1.keys;
        assert_eq!(kind("get"), Kind::Forward);
        assert_eq!(keys("get"), K1);
        assert_eq!(kind("object"), Kind::Container);
        assert_eq!(kind("object|encoding"), Kind::Forward);
        assert_eq!(kind("object|help"), Kind::First);
        assert_eq!(kind("blpop"), BLOCKING);
        assert_eq!(
            keys("blpop"),
            Keys::Range {
                first: 1,
                last: -2,
                step: 1
            }
        );
        assert_eq!(keys("eval"), counted(2, false, true));
        assert_eq!(kind("cluster|info"), Kind::Refused(CLUSTER));
        assert_eq!(kind("client|setinfo"), local(Local::ClientSetinfo));
        assert_eq!(
            keys("mset"),
            Keys::Range {
                first: 1,
                last: -1,
                step: 2
            }
        );
    }
}
