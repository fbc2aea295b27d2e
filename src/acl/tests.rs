//! The rule compiler and the check, against what redis-server 7.0 answers for the same rules
//! (each case below was run against a real server with `ACL SETUSER`).

use super::*;
use crate::protocol::command::lookup;
use crate::protocol::request::RequestParser;

fn strings(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

struct User {
    commands: Vec<String>,
    keys: Vec<String>,
    read_keys: Vec<String>,
    write_keys: Vec<String>,
    channels: Vec<String>,
}

impl User {
    fn new(commands: &[&str]) -> User {
        User {
            commands: strings(commands),
            keys: Vec::new(),
            read_keys: Vec::new(),
            write_keys: Vec::new(),
            channels: Vec::new(),
        }
    }
    fn keys(mut self, keys: &[&str]) -> User {
        self.keys = strings(keys);
        self
    }
    fn read_keys(mut self, keys: &[&str]) -> User {
        self.read_keys = strings(keys);
        self
    }
    fn write_keys(mut self, keys: &[&str]) -> User {
        self.write_keys = strings(keys);
        self
    }
    fn channels(mut self, channels: &[&str]) -> User {
        self.channels = strings(channels);
        self
    }
    fn rules(&self) -> Rules<'_> {
        Rules {
            commands: &self.commands,
            keys: &self.keys,
            read_keys: &self.read_keys,
            write_keys: &self.write_keys,
            channels: &self.channels,
        }
    }
    fn acl(&self) -> Acl {
        Acl::compile(self.rules()).unwrap()
    }
}

fn encode(parts: &[&str]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", parts.len());
    for p in parts {
        out += &format!("${}\r\n{p}\r\n", p.len());
    }
    out.into_bytes()
}

/// What `acl` says of the command line `line` (words split on spaces).
fn check(acl: &Acl, line: &str) -> Result<(), Denied> {
    let parts: Vec<&str> = line.split(' ').collect();
    let frame = encode(&parts);
    let mut parser = RequestParser::new(1 << 20);
    parser.parse(&frame).unwrap().unwrap();
    let args = parser.args().to_vec();
    let (mut id, mut cmd) = lookup(&frame[args[0].clone()]).unwrap();
    if cmd.kind == Kind::Container {
        (id, cmd) =
            crate::protocol::command::lookup_sub(cmd.name, &frame[args[1].clone()]).unwrap();
    }
    acl.check(id, cmd, &frame, &args)
}

fn allowed(acl: &Acl, line: &str) -> bool {
    check(acl, line).is_ok()
}

#[test]
fn categories_and_commands_apply_in_order() {
    let read = User::new(&["+@read"]).keys(&["*"]).acl();
    assert!(allowed(&read, "GET k"));
    assert!(allowed(&read, "MGET a b"));
    assert_eq!(check(&read, "SET k v"), Err(Denied::Command));
    // PING is @fast @connection, not @read: Redis refuses it to such a user too.
    assert_eq!(check(&read, "PING"), Err(Denied::Command));
    assert_eq!(check(&read, "ACL WHOAMI"), Err(Denied::Command));
    // AUTH, HELLO, QUIT and RESET are never refused.
    for line in ["AUTH x", "HELLO 3", "QUIT", "RESET"] {
        assert!(allowed(&read, line), "{line}");
    }

    let rw = User::new(&["+@read", "+@write", "-@dangerous", "-flushall", "+ping"])
        .keys(&["*"])
        .acl();
    assert!(allowed(&rw, "SET k v"));
    assert!(allowed(&rw, "PING"));
    assert_eq!(check(&rw, "FLUSHALL"), Err(Denied::Command));
    assert_eq!(
        check(&rw, "KEYS *"),
        Err(Denied::Command),
        "KEYS is @dangerous"
    );

    // A parent stands for its subcommands; a subcommand rule for itself.
    let cfg = User::new(&["+@all", "-config|get"])
        .keys(&["*"])
        .channels(&["*"])
        .acl();
    assert_eq!(check(&cfg, "CONFIG GET maxmemory"), Err(Denied::Command));
    assert!(allowed(&cfg, "CONFIG SET maxmemory 0"));
    assert!(!cfg.unrestricted());
    let client = User::new(&["-@all", "+client"]).acl();
    assert!(allowed(&client, "CLIENT ID"));
    assert!(allowed(&client, "CLIENT KILL ID 1"));
    let none = User::new(&["allcommands", "nocommands", "+get"])
        .keys(&["*"])
        .acl();
    assert!(allowed(&none, "GET k"));
    assert_eq!(check(&none, "SET k v"), Err(Denied::Command));
}

#[test]
fn everything_is_unrestricted() {
    let all = User::new(&["+@all"]).keys(&["*"]).channels(&["*"]).acl();
    assert!(all.unrestricted());
    assert!(Acl::everything().unrestricted());
    assert!(!User::new(&["+@all"]).keys(&["*"]).acl().unrestricted());
    assert!(!User::new(&["+@all"]).channels(&["*"]).acl().unrestricted());
}

#[test]
fn keys_are_checked_for_every_argument_key() {
    let app = User::new(&["+@read"]).keys(&["app1:*"]).acl();
    assert!(allowed(&app, "GET app1:x"));
    assert_eq!(check(&app, "GET other:x"), Err(Denied::Key(1)));
    assert_eq!(check(&app, "MGET app1:x other:y"), Err(Denied::Key(2)));
    assert!(allowed(&app, "MGET app1:x app1:y"));
    // EXISTS neither reads nor writes, but the key must still match a pattern.
    assert_eq!(check(&app, "EXISTS other:x"), Err(Denied::Key(1)));
    // Commands without keys are not key-checked.
    assert!(allowed(&app, "DBSIZE"));

    let all = User::new(&["+@all"]).keys(&["app1:*", "{t}*"]).acl();
    assert!(allowed(&all, "MSET app1:a 1 app1:b 2"));
    assert_eq!(check(&all, "MSET app1:a 1 b 2"), Err(Denied::Key(3)));
    assert!(allowed(&all, "EVAL s 2 app1:a {t}b"));
    assert_eq!(check(&all, "EVAL s 2 app1:a b"), Err(Denied::Key(4)));
    assert!(allowed(&all, "EVAL s 0"), "no keys");
    assert!(allowed(&all, "ZUNIONSTORE app1:d 2 app1:a {t}b"));
    assert_eq!(
        check(&all, "ZUNIONSTORE d 2 app1:a app1:b"),
        Err(Denied::Key(1))
    );
    assert_eq!(
        check(&all, "XREAD COUNT 1 STREAMS app1:s other 0 0"),
        Err(Denied::Key(5))
    );
    assert_eq!(check(&all, "SORT app1:l STORE other"), Err(Denied::Key(3)));
    assert_eq!(check(&all, "BLPOP app1:a x 0"), Err(Denied::Key(2)));
    // Pub/sub channels are not keys, even where shardis routes them like keys.
    assert!(allowed(
        &User::new(&["+@all"]).keys(&["k"]).channels(&["*"]).acl(),
        "PUBLISH chan msg"
    ));
}

#[test]
fn read_and_write_patterns_follow_redis_key_specs() {
    // ACL SETUSER rw on >pw +@all %R~r:* %W~w:* ~both:*
    let rw = User::new(&["+@all"])
        .read_keys(&["r:*"])
        .write_keys(&["w:*"])
        .keys(&["both:*"])
        .acl();
    for (line, ok) in [
        ("GET r:1", true),
        ("SET r:1 x", false),
        ("GET w:1", false),
        ("SET w:1 x", true),
        ("SET w:1 x GET", false),
        ("EXISTS w:1", true),
        ("EXISTS r:1", true),
        ("GET both:1", true),
        ("LMOVE r:1 w:1 LEFT RIGHT", false),
        ("LMOVE w:1 r:1 LEFT RIGHT", false),
        ("LMOVE both:1 w:1 LEFT RIGHT", true),
        ("COPY r:1 w:2", true),
        ("SETNX r:2 x", false),
        ("APPEND w:1 x", true),
        ("INCR w:1", false),
        ("GETDEL r:1", false),
        ("DEL r:1", false),
        ("DEL w:1", true),
        ("TYPE w:1", true),
        ("EVAL s 1 r:1", false),
        ("EVAL s 1 w:1", false),
        ("EVAL s 1 both:1", true),
        ("EVAL_RO s 1 r:1", true),
        ("OBJECT ENCODING w:1", true),
        ("STRLEN w:1", true),
        ("TTL w:1", false),
        ("EXPIRE w:1 10", true),
        ("SORT both:1 STORE w:5", true),
        ("SORT both:1 STORE r:5", false),
        ("MSET w:1 a r:1 b", false),
        ("MGET w:1 r:1", false),
        ("BITFIELD r:1 GET u8 0", true),
        ("BITFIELD r:1 GET u8 0 OVERFLOW SAT", true),
        ("BITFIELD r:1 SET u8 0 1", false),
        ("BITOP AND w:d r:1 both:2", true),
        ("BITOP AND r:d r:1", false),
    ] {
        assert_eq!(allowed(&rw, line), ok, "{line}");
    }
    // SORT's BY pattern and GET need every key readable.
    assert_eq!(check(&rw, "SORT both:1 BY x_*"), Err(Denied::SortBy));
    assert_eq!(check(&rw, "SORT both:1 GET #"), Err(Denied::SortGet));
    assert!(allowed(&rw, "SORT both:1 BY nosort"));
    let reader = User::new(&["+@all"])
        .read_keys(&["*"])
        .write_keys(&["w:*"])
        .acl();
    assert!(allowed(&reader, "SORT w:1 BY x_* GET #"));
}

#[test]
fn channels_match_as_in_redis() {
    // ACL SETUSER ch on >pw +@all ~* resetchannels &news.* &exact
    let ch = User::new(&["+@all"])
        .keys(&["*"])
        .channels(&["news.*", "exact"])
        .acl();
    assert_eq!(check(&ch, "PUBLISH other x"), Err(Denied::Channel(1)));
    assert!(allowed(&ch, "PUBLISH news.a x"));
    assert_eq!(check(&ch, "SPUBLISH other x"), Err(Denied::Channel(1)));
    assert_eq!(
        check(&ch, "SUBSCRIBE news.a other"),
        Err(Denied::Channel(2))
    );
    assert!(allowed(&ch, "SSUBSCRIBE exact news.b"));
    // A PSUBSCRIBE pattern must be one of the user's, as written.
    assert!(allowed(&ch, "PSUBSCRIBE news.*"));
    assert_eq!(check(&ch, "PSUBSCRIBE news.x*"), Err(Denied::Channel(1)));
    // Leaving is never refused.
    assert!(allowed(&ch, "UNSUBSCRIBE other"));
    let any = User::new(&["+@all"]).keys(&["*"]).channels(&["*"]).acl();
    assert!(allowed(&any, "PSUBSCRIBE whatever*"));
}

#[test]
fn denials_read_as_redis_writes_them() {
    assert_eq!(
        Denied::Command.message("config|get"),
        "NOPERM this user has no permissions to run the 'config|get' command"
    );
    assert_eq!(
        Denied::Key(1).message("get"),
        "NOPERM this user has no permissions to access one of the keys used as arguments"
    );
    assert_eq!(
        Denied::Channel(1).message("publish"),
        "NOPERM this user has no permissions to access one of the channels used as arguments"
    );
    assert_eq!(
        Denied::SortBy.message("sort"),
        "ERR BY option of SORT denied due to insufficient ACL permissions."
    );
    let frame = b"GETother";
    let args = [0..3, 3..8];
    assert_eq!(
        Denied::Key(1).dryrun("get", frame, &args).unwrap(),
        "This user has no permissions to access the 'other' key"
    );
    assert_eq!(Denied::SortGet.dryrun("sort", frame, &args), None);
    assert_eq!(Denied::Key(1).reason().label(), "key");
}

#[test]
fn bad_rules_are_each_reported() {
    let u = User::new(&[
        "+@read",
        "+@raed",
        "get",
        "+nosuch",
        "+select|0",
        "+config|nosuch",
    ])
    .keys(&["~app:*", ""])
    .read_keys(&["%R~x"])
    .channels(&["&news"]);
    let errors = Acl::compile(u.rules()).unwrap_err();
    let found: Vec<(&str, usize)> = errors.iter().map(|e| (e.field, e.index)).collect();
    assert_eq!(
        found,
        [
            ("commands", 1),
            ("commands", 2),
            ("commands", 3),
            ("commands", 4),
            ("commands", 5),
            ("keys", 0),
            ("keys", 1),
            ("read_keys", 0),
            ("channels", 0),
        ]
    );
    assert!(
        errors[0].message.starts_with("unknown category \"raed\""),
        "{}",
        errors[0].message
    );
    assert!(
        errors[3].message.contains("first argument"),
        "{}",
        errors[3].message
    );
    assert!(
        errors[5].message.contains("without Redis's '~' prefix"),
        "{}",
        errors[5].message
    );
    // Rule names and categories are case-insensitive, as in Redis.
    assert!(Acl::compile(User::new(&["+@READ", "-FlushAll", "+CONFIG|GET"]).rules()).is_ok());
}

#[test]
fn patterns_match_like_globs() {
    for (pattern, text, hit) in [
        ("app1:*", "app1:x", true),
        ("app1:*", "app1:", true),
        ("app1:*", "app2:x", false),
        ("exact", "exact", true),
        ("exact", "exactly", false),
        ("a?c", "abc", true),
        ("user:[0-9]*", "user:7x", true),
        ("user:[0-9]*", "user:x7", false),
        ("esc\\*", "esc*", true),
        ("esc\\*", "escx", false),
        ("*", "", true),
    ] {
        assert_eq!(
            Matcher::new(pattern.as_bytes()).matches(text.as_bytes()),
            hit,
            "{pattern} {text}"
        );
        assert_eq!(
            glob::matches(pattern.as_bytes(), text.as_bytes()),
            hit,
            "glob {pattern} {text}"
        );
    }
    assert!(matches!(Matcher::new(b"app1:*"), Matcher::Prefix(_)));
    assert!(matches!(Matcher::new(b"exact"), Matcher::Exact(_)));
    assert!(matches!(Matcher::new(b"a*b"), Matcher::Glob(_)));
}

#[test]
fn every_command_with_keys_has_key_positions() {
    // The key check reads positions from shardis's own key table: a command Redis gives keys
    // must have positions there, or be refused anyway.
    for cmd in COMMANDS.iter() {
        if cmd.key_access.has_keys() {
            assert!(
                cmd.keys != crate::protocol::command::Keys::None
                    || matches!(cmd.kind, Kind::Refused(_)),
                "{} has keys for Redis but none for shardis",
                cmd.name
            );
        }
    }
}

#[test]
fn descriptions_read_like_acl_list() {
    let u = User::new(&["+@read"])
        .keys(&["app1:*"])
        .read_keys(&["r:*"])
        .channels(&["news.*"]);
    assert_eq!(
        describe(u.rules()),
        "~app1:* %R~r:* resetchannels &news.* -@all +@read"
    );
}
