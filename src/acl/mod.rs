//! ACL rules compiled for the data path, Redis 6/7 style: which commands a user may run (a
//! bitset over command ids, built from `+@category`, `-command`, `+parent|sub` rules applied in
//! order), which keys (glob patterns, each allowing reading, writing or both, as Redis's `~`,
//! `%R~` and `%W~`), and which pub/sub channels (`&`). Pure: no I/O.
//!
//! [`Acl::check`] answers for one parsed command in Redis's order: the command, then its keys
//! (each needing what its key spec says, see [`crate::protocol::command::KeyAccess`]), then its
//! channels. It costs a bit test for a user without key or channel restrictions.

mod rules;

use std::ops::Range;

use crate::protocol::command::{COMMANDS, Channels, Command, Kind, SessionCmd, access, flag};
use crate::protocol::glob;
use crate::protocol::keys::key_span;

/// The rules of one user as configured, for [`Acl::compile`].
#[derive(Debug, Default, Clone, Copy)]
pub struct Rules<'a> {
    /// `+@read`, `-@dangerous`, `+get`, `-config|set`, `allcommands`, ...
    pub commands: &'a [String],
    /// Key patterns the user may read and write (Redis `~pattern`).
    pub keys: &'a [String],
    /// Key patterns the user may only read (`%R~pattern`).
    pub read_keys: &'a [String],
    /// Key patterns the user may only write (`%W~pattern`).
    pub write_keys: &'a [String],
    /// Channel patterns (`&pattern`).
    pub channels: &'a [String],
}

/// A rule that does not compile: the list it is in, its index there, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleError {
    pub field: &'static str,
    pub index: usize,
    pub message: String,
}

/// Why a command is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Denied {
    /// The user may not run this command.
    Command,
    /// The key at this argument position is not allowed.
    Key(usize),
    /// The channel at this argument position is not allowed.
    Channel(usize),
    /// SORT ... BY pattern / GET pattern needs access to every key, as in Redis.
    SortBy,
    SortGet,
}

/// The `reason` label of a denial.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    Command = 0,
    Key = 1,
    Channel = 2,
}

impl Reason {
    pub const ALL: [Reason; 3] = [Reason::Command, Reason::Key, Reason::Channel];

    pub fn label(self) -> &'static str {
        match self {
            Reason::Command => "command",
            Reason::Key => "key",
            Reason::Channel => "channel",
        }
    }
}

impl Denied {
    pub fn reason(self) -> Reason {
        match self {
            Denied::Command => Reason::Command,
            Denied::Key(_) | Denied::SortBy | Denied::SortGet => Reason::Key,
            Denied::Channel(_) => Reason::Channel,
        }
    }

    /// Redis's error reply for it (without `-` and CRLF).
    pub fn message(self, command: &str) -> String {
        match self {
            Denied::Command => {
                format!("NOPERM this user has no permissions to run the '{command}' command")
            }
            Denied::Key(_) => "NOPERM this user has no permissions to access one of the keys \
                               used as arguments"
                .to_string(),
            Denied::Channel(_) => "NOPERM this user has no permissions to access one of the \
                                   channels used as arguments"
                .to_string(),
            Denied::SortBy => {
                "ERR BY option of SORT denied due to insufficient ACL permissions.".to_string()
            }
            Denied::SortGet => {
                "ERR GET option of SORT denied due to insufficient ACL permissions.".to_string()
            }
        }
    }

    /// What ACL DRYRUN says of it, as Redis words it; `None` for the SORT options, which Redis
    /// checks only when it runs the command.
    pub fn dryrun(self, command: &str, frame: &[u8], args: &[Range<usize>]) -> Option<String> {
        let arg = |pos: usize| {
            args.get(pos)
                .map(|r| String::from_utf8_lossy(&frame[r.clone()]).into_owned())
                .unwrap_or_default()
        };
        match self {
            Denied::Command => Some(format!(
                "This user has no permissions to run the '{command}' command"
            )),
            Denied::Key(pos) => Some(format!(
                "This user has no permissions to access the '{}' key",
                arg(pos)
            )),
            Denied::Channel(pos) => Some(format!(
                "This user has no permissions to access the '{}' channel",
                arg(pos)
            )),
            Denied::SortBy | Denied::SortGet => None,
        }
    }
}

/// How a pattern matches: most ACL key patterns are a prefix (`app1:*`) or a name.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Matcher {
    Exact(Box<[u8]>),
    Prefix(Box<[u8]>),
    Glob(Box<[u8]>),
}

impl Matcher {
    fn new(pattern: &[u8]) -> Matcher {
        let special = |b: &u8| matches!(b, b'*' | b'?' | b'[' | b'\\');
        match pattern.split_last() {
            Some((b'*', head)) if !head.iter().any(special) => Matcher::Prefix(head.into()),
            _ if !pattern.iter().any(special) => Matcher::Exact(pattern.into()),
            _ => Matcher::Glob(pattern.into()),
        }
    }

    #[inline]
    fn matches(&self, text: &[u8]) -> bool {
        match self {
            Matcher::Exact(p) => **p == *text,
            Matcher::Prefix(p) => text.starts_with(p),
            Matcher::Glob(p) => glob::matches(p, text),
        }
    }
}

/// A key pattern and what it allows ([`access::READ`] | [`access::WRITE`]).
#[derive(Debug, Clone, PartialEq, Eq)]
struct KeyPattern {
    matcher: Matcher,
    allows: u8,
}

/// Channel rules: every channel, or these patterns (kept as written: PSUBSCRIBE's patterns are
/// compared literally, as in Redis).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ChannelRules {
    all: bool,
    patterns: Vec<Box<[u8]>>,
}

/// One user's compiled permissions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Acl {
    /// Bit `id` set: command `id` (an entry of [`COMMANDS`]) may run.
    commands: Box<[u64]>,
    all_commands: bool,
    all_keys: bool,
    keys: Vec<KeyPattern>,
    /// Whether a pattern lets it read every key: SORT's BY and GET need that.
    full_read: bool,
    channels: ChannelRules,
}

fn words() -> usize {
    COMMANDS.len().div_ceil(64)
}

impl Acl {
    /// Everything allowed: the default user's permissions.
    pub fn everything() -> Acl {
        let mut acl = Acl::none();
        acl.set_all(true);
        acl.all_commands = true;
        acl.all_keys = true;
        acl.full_read = true;
        acl.channels.all = true;
        acl
    }

    /// Nothing allowed: where a user's rules start, as a new Redis ACL user's do.
    pub fn none() -> Acl {
        Acl {
            commands: vec![0; words()].into_boxed_slice(),
            all_commands: false,
            all_keys: false,
            keys: Vec::new(),
            full_read: false,
            channels: ChannelRules::default(),
        }
    }

    /// Whether command `id` may run (the bit alone; see [`Acl::check`]).
    #[inline]
    pub fn may_run(&self, id: usize) -> bool {
        self.commands
            .get(id / 64)
            .is_some_and(|w| w >> (id % 64) & 1 == 1)
    }

    /// Whether nothing is ever refused: the session then checks nothing.
    pub fn unrestricted(&self) -> bool {
        self.all_commands && self.all_keys && self.channels.all
    }

    /// The channel rules, to tell whether a reload changed them.
    pub fn channels(&self) -> &ChannelRules {
        &self.channels
    }

    /// Whether command `id` (`cmd`, with `args` in `frame`) may run, in Redis's order: the
    /// command, its keys, its channels.
    #[inline]
    pub fn check(
        &self,
        id: usize,
        cmd: &Command,
        frame: &[u8],
        args: &[Range<usize>],
    ) -> Result<(), Denied> {
        if cmd.flags & flag::NO_AUTH != 0 {
            // AUTH, HELLO, QUIT, RESET: every user may, as in Redis.
            return Ok(());
        }
        if !self.all_commands && !self.may_run(id) {
            return Err(Denied::Command);
        }
        if !self.all_keys && cmd.key_access.has_keys() {
            self.check_keys(cmd, frame, args)?;
        }
        if !self.channels.all {
            self.check_channels(cmd, frame, args)?;
        }
        Ok(())
    }

    fn check_keys(&self, cmd: &Command, frame: &[u8], args: &[Range<usize>]) -> Result<(), Denied> {
        // A malformed command (bad key count) touches no key: the backend refuses it.
        let Ok(Some(span)) = key_span(cmd, frame, args) else {
            return Ok(());
        };
        for pos in span.positions() {
            let mut need = cmd.key_access.at(pos);
            if cmd.key_access.variable {
                need = narrowed(cmd, frame, args, need);
            }
            if !self.key_allowed(&frame[args[pos].clone()], need) {
                return Err(Denied::Key(pos));
            }
        }
        if !self.full_read && cmd.name.starts_with("sort") {
            sort_options(frame, args)?;
        }
        Ok(())
    }

    /// Whether `key` may be accessed as `need` says ([`access`] bits).
    #[inline]
    pub fn key_allowed(&self, key: &[u8], need: u8) -> bool {
        if self.all_keys {
            return true;
        }
        let need = need & (access::READ | access::WRITE);
        self.keys
            .iter()
            .any(|k| k.allows & need == need && k.matcher.matches(key))
    }

    fn check_channels(
        &self,
        cmd: &Command,
        frame: &[u8],
        args: &[Range<usize>],
    ) -> Result<(), Denied> {
        match cmd.kind {
            Kind::Session(SessionCmd::Publish(_)) => match args.get(1) {
                Some(r) if !self.channel_allowed(&frame[r.clone()], false) => {
                    Err(Denied::Channel(1))
                }
                _ => Ok(()),
            },
            Kind::Session(SessionCmd::Subscribe(kind)) => self.check_subscribe(kind, frame, args),
            _ => Ok(()),
        }
    }

    fn check_subscribe(
        &self,
        kind: Channels,
        frame: &[u8],
        args: &[Range<usize>],
    ) -> Result<(), Denied> {
        let literal = kind == Channels::Pattern;
        for (pos, r) in args.iter().enumerate().skip(1) {
            if !self.channel_allowed(&frame[r.clone()], literal) {
                return Err(Denied::Channel(pos));
            }
        }
        Ok(())
    }

    /// Whether `channel` may be published or subscribed to; a PSUBSCRIBE pattern (`literal`)
    /// must be one of the user's patterns as written, as in Redis.
    pub fn channel_allowed(&self, channel: &[u8], literal: bool) -> bool {
        self.channels.all
            || self.channels.patterns.iter().any(|p| {
                if literal {
                    **p == *channel
                } else {
                    glob::matches(p, channel)
                }
            })
    }
}

/// What SET and BITFIELD need, from their arguments, as Redis narrows their key spec: SET
/// without GET only writes, BITFIELD with only GET (and OVERFLOW) only reads.
fn narrowed(cmd: &Command, frame: &[u8], args: &[Range<usize>], need: u8) -> u8 {
    let arg = |i: usize| &frame[args[i].clone()];
    match cmd.name {
        "set" => {
            if (3..args.len()).any(|i| arg(i).eq_ignore_ascii_case(b"get")) {
                access::RW
            } else {
                access::W
            }
        }
        "bitfield" => {
            let mut i = 2;
            while i < args.len() {
                let more = args.len() - i - 1;
                let a = arg(i);
                if a.eq_ignore_ascii_case(b"get") && more >= 2 {
                    i += 3;
                } else if a.eq_ignore_ascii_case(b"overflow") && more >= 1 {
                    i += 2;
                } else {
                    return access::RW;
                }
            }
            access::R
        }
        _ => need,
    }
}

/// SORT's BY (with a pattern) and GET read keys named by a pattern: Redis refuses them to a
/// user who may not read every key.
fn sort_options(frame: &[u8], args: &[Range<usize>]) -> Result<(), Denied> {
    let mut i = 2;
    while i < args.len() {
        let a = &frame[args[i].clone()];
        let more = args.len() - i - 1;
        if a.eq_ignore_ascii_case(b"by") && more >= 1 {
            if frame[args[i + 1].clone()].contains(&b'*') {
                return Err(Denied::SortBy);
            }
            i += 2;
        } else if a.eq_ignore_ascii_case(b"get") && more >= 1 {
            return Err(Denied::SortGet);
        } else if a.eq_ignore_ascii_case(b"limit") && more >= 2 {
            i += 3;
        } else if a.eq_ignore_ascii_case(b"store") && more >= 1 {
            i += 2;
        } else {
            i += 1;
        }
    }
    Ok(())
}

pub use rules::describe;

#[cfg(test)]
mod tests;
