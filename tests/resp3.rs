//! RESP3 end to end: every client library's connection handshake, replayed byte for byte from
//! captures (tests/fixtures/handshakes), is answered as Redis answers it; after HELLO 3 the
//! replies are Redis's own RESP3 (maps, sets, doubles, nulls, verbatim strings, pushes), and a
//! RESP2 client's replies are unchanged.

mod common;

use std::collections::BTreeMap;
use std::path::Path;

use common::{Client, Cluster, Frame, bulk, int};

/// One captured handshake: the commands, grouped by the socket write that carried them, and
/// the reply a real redis-server gave to each (`true`: cut short in the capture, so only its
/// type can be compared).
struct Handshake {
    writes: BTreeMap<usize, Vec<Vec<u8>>>,
    replies: Vec<(Vec<u8>, bool)>,
}

fn unescape(line: &str) -> Vec<u8> {
    let b = line.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 1 < b.len() {
            match b[i + 1] {
                b'r' => out.push(b'\r'),
                b'n' => out.push(b'\n'),
                b't' => out.push(b'\t'),
                b'\\' => out.push(b'\\'),
                b'x' => {
                    let hex = std::str::from_utf8(&b[i + 2..i + 4]).expect("hex");
                    out.push(u8::from_str_radix(hex, 16).expect("hex escape"));
                    i += 2;
                }
                other => panic!("unknown escape \\{}", other as char),
            }
            i += 2;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    out
}

fn load(path: &Path) -> Handshake {
    let text = std::fs::read_to_string(path).expect("read fixture");
    let mut writes: BTreeMap<usize, Vec<Vec<u8>>> = BTreeMap::new();
    let mut replies = Vec::new();
    let mut write = 0;
    for line in text.lines() {
        if let Some(comment) = line.strip_prefix("# ")
            && let Some(at) = comment.find("[write ")
        {
            let n: String = comment[at + 7..]
                .chars()
                .take_while(char::is_ascii_digit)
                .collect();
            write = n.parse().expect("write number");
        } else if let Some(frame) = line.strip_prefix("> ") {
            writes.entry(write).or_default().push(unescape(frame));
        } else if let Some(frame) = line.strip_prefix("<~ ") {
            replies.push((unescape(frame), true));
        } else if let Some(frame) = line.strip_prefix("< ") {
            replies.push((unescape(frame), false));
        }
    }
    Handshake { writes, replies }
}

/// The first byte of a reply: its type.
fn kind(reply: &Frame) -> &'static str {
    match reply {
        Frame::Simple(_) => "simple",
        Frame::Error(_) => "error",
        Frame::Integer(_) => "integer",
        Frame::Bulk(_) => "bulk",
        Frame::Null => "null",
        Frame::Array(_) => "array",
        Frame::Map(_) => "map",
        Frame::Set(_) => "set",
        Frame::Push(_) => "push",
        Frame::Double(_) => "double",
        Frame::Boolean(_) => "boolean",
        Frame::Verbatim(..) => "verbatim",
        Frame::BigNumber(_) => "bignumber",
    }
}

/// The type named by a reply's first byte.
fn kind_of_byte(b: u8) -> &'static str {
    match b {
        b'+' => "simple",
        b'-' | b'!' => "error",
        b':' => "integer",
        b'$' => "bulk",
        b'_' => "null",
        b'*' => "array",
        b'%' => "map",
        b'~' => "set",
        b'>' => "push",
        b',' => "double",
        b'#' => "boolean",
        b'=' => "verbatim",
        _ => "other",
    }
}

fn parse(bytes: &[u8]) -> Frame {
    let (a, b) = std::os::unix::net::UnixStream::pair().expect("pair");
    std::io::Write::write_all(&mut &a, bytes).expect("write");
    drop(a);
    let mut c = Client::from_unix(b);
    c.read_reply()
}

#[test]
fn every_client_handshake_is_answered_like_redis() {
    let cluster = Cluster::start(3);
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/handshakes");
    let mut seen = 0;
    for entry in std::fs::read_dir(&dir).expect("fixtures") {
        let path = entry.expect("entry").path();
        if path.extension().is_none_or(|e| e != "txt") {
            continue;
        }
        let name = path
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned();
        let hs = load(&path);
        let mut c = cluster.client();
        let mut got = Vec::new();
        for frames in hs.writes.values() {
            c.send_raw(&frames.concat());
            for _ in frames {
                got.push(c.read_reply());
            }
        }
        assert_eq!(got.len(), hs.replies.len(), "{name}");
        for (i, (reply, (redis, cut))) in got.iter().zip(&hs.replies).enumerate() {
            if *cut {
                assert_eq!(
                    kind(reply),
                    kind_of_byte(redis[0]),
                    "{name} #{i}: a long reply of another type"
                );
                continue;
            }
            let redis = parse(redis);
            let cmd = hs
                .writes
                .values()
                .flatten()
                .nth(i)
                .map(|f| String::from_utf8_lossy(f).to_uppercase())
                .unwrap_or_default();
            if cmd.contains("SETINFO") {
                // Redis 7.0 predates CLIENT SETINFO; shardis accepts it, as 7.2 does.
                assert_eq!(reply, &Frame::Simple("OK".into()), "{name} #{i}");
                continue;
            }
            assert_eq!(
                kind(reply),
                kind(&redis),
                "{name} #{i} {cmd:?}: {reply:?} vs {redis:?}"
            );
            match (reply, &redis) {
                (Frame::Map(ours), Frame::Map(theirs)) => {
                    // HELLO: the same fields (the id is the proxy's own).
                    let keys = |m: &Vec<(Frame, Frame)>| {
                        m.iter().map(|(k, _)| k.clone()).collect::<Vec<_>>()
                    };
                    assert_eq!(keys(ours), keys(theirs), "{name} #{i}");
                }
                (Frame::Error(ours), Frame::Error(theirs)) => {
                    assert_eq!(ours, theirs, "{name} #{i}")
                }
                _ => {}
            }
        }
        // And the connection works in the protocol it asked for.
        assert_eq!(
            c.cmd_str(&["SET", "hs:k", &name]),
            Frame::Simple("OK".into()),
            "{name}"
        );
        assert_eq!(c.cmd_str(&["GET", "hs:k"]), bulk(&name), "{name}");
        assert_eq!(c.cmd_str(&["GET", "hs:missing"]), Frame::Null, "{name}");
        seen += 1;
    }
    assert!(
        seen >= 10,
        "only {seen} handshakes found in {}",
        dir.display()
    );
}

/// Commands whose RESP3 replies use RESP3's own types; run on keys of one backend so the
/// proxy's reply can be compared with that backend's, byte for byte.
const TYPED: &[&[&str]] = &[
    &["HGETALL", "{r}:h"],
    &["SMEMBERS", "{r}:s"],
    &["ZSCORE", "{r}:z", "a"],
    &["ZRANGE", "{r}:z", "0", "-1", "WITHSCORES"],
    &["ZPOPMIN", "{r}:z2"],
    &["GET", "{r}:missing"],
    &["LPOP", "{r}:missing"],
    &["XINFO", "STREAM", "{r}:x"],
    &["XRANGE", "{r}:x", "-", "+"],
    &["INCRBYFLOAT", "{r}:f", "1.5"],
    &["OBJECT", "HELP"],
    &["COMMAND", "DOCS", "get"],
    &["LCS", "{r}:s1", "{r}:s2", "IDX"],
    &["SMISMEMBER", "{r}:s", "a", "zz"],
    &["SINTERCARD", "1", "{r}:s"],
];

fn load_typed_data(c: &mut Client) {
    for args in [
        &["HSET", "{r}:h", "a", "1", "b", "2"][..],
        &["SADD", "{r}:s", "a", "b"],
        &["ZADD", "{r}:z", "1.5", "a", "2", "b"],
        &["ZADD", "{r}:z2", "3.25", "c", "4", "d"],
        &["XADD", "{r}:x", "1-1", "f", "v"],
        &["SET", "{r}:s1", "ohmytext"],
        &["SET", "{r}:s2", "mynewtext"],
    ] {
        assert!(!matches!(c.cmd_str(args), Frame::Error(_)), "{args:?}");
    }
}

#[test]
fn replies_are_redis_s_own_in_resp3_and_unchanged_in_resp2() {
    let cluster = Cluster::start(3);
    let home = cluster.route(&["{r}:h"])[0];
    for resp3 in [false, true] {
        let mut proxy = cluster.client();
        let mut direct = cluster.backend(home);
        if resp3 {
            assert!(matches!(proxy.cmd_str(&["HELLO", "3"]), Frame::Map(_)));
            assert!(matches!(direct.cmd_str(&["HELLO", "3"]), Frame::Map(_)));
        }
        load_typed_data(&mut proxy);
        // ZPOPMIN and INCRBYFLOAT change the data: compare each against a fresh copy.
        for args in TYPED {
            let ours = proxy.cmd_str(args);
            if args[0] == "ZPOPMIN" {
                assert_eq!(direct.cmd_str(&["ZADD", "{r}:z2", "3.25", "c"]), int(1));
            }
            if args[0] == "INCRBYFLOAT" {
                assert_eq!(
                    direct.cmd_str(&["INCRBYFLOAT", "{r}:f", "-1.5"]),
                    direct.cmd_str(&["GET", "{r}:f"])
                );
            }
            let theirs = direct.cmd_str(args);
            assert_eq!(ours, theirs, "resp3={resp3} {args:?}");
        }
        if resp3 {
            // Shape checks, so a proxy that answered RESP2 to both would not pass.
            assert!(matches!(
                proxy.cmd_str(&["HGETALL", "{r}:h"]),
                Frame::Map(_)
            ));
            assert!(matches!(
                proxy.cmd_str(&["SMEMBERS", "{r}:s"]),
                Frame::Set(_)
            ));
            assert_eq!(
                proxy.cmd_str(&["ZSCORE", "{r}:z", "a"]),
                Frame::Double("1.5".into())
            );
            assert_eq!(proxy.cmd_str(&["GET", "{r}:missing"]), Frame::Null);
            assert!(
                matches!(proxy.cmd_str(&["INFO", "keyspace"]), Frame::Verbatim(f, _) if f == "txt")
            );
            // A merged reply keeps RESP3 nulls.
            let a = cluster.key_on(0, "m3");
            let b = cluster.key_on(1, "m3");
            assert_eq!(proxy.cmd_str(&["SET", &a, "1"]), Frame::Simple("OK".into()));
            assert_eq!(
                proxy.cmd_str(&["MGET", &a, &b]),
                Frame::Array(vec![bulk("1"), Frame::Null])
            );
        } else {
            assert!(matches!(
                proxy.cmd_str(&["HGETALL", "{r}:h"]),
                Frame::Array(_)
            ));
            assert_eq!(proxy.cmd_str(&["ZSCORE", "{r}:z", "a"]), bulk("1.5"));
            assert!(matches!(
                proxy.cmd_str(&["INFO", "keyspace"]),
                Frame::Bulk(_)
            ));
        }
        for i in 0..3 {
            assert!(!matches!(
                cluster.backend(i).cmd_str(&["FLUSHALL"]),
                Frame::Error(_)
            ));
        }
    }
}

#[test]
fn hello_switches_protocols_both_ways_and_reset_goes_back_to_resp2() {
    let cluster = Cluster::start(2);
    let mut c = cluster.client();
    let Frame::Map(hello) = c.cmd_str(&["HELLO", "3", "SETNAME", "r3"]) else {
        panic!("HELLO 3 did not answer with a map");
    };
    assert!(hello.contains(&(bulk("proto"), int(3))), "{hello:?}");
    assert!(
        hello.contains(&(bulk("server"), bulk("redis"))),
        "{hello:?}"
    );
    assert_eq!(c.cmd_str(&["CLIENT", "GETNAME"]), bulk("r3"));
    assert_eq!(c.cmd_str(&["HSET", "p:h", "f", "v"]), int(1));
    assert!(matches!(c.cmd_str(&["HGETALL", "p:h"]), Frame::Map(_)));
    assert!(matches!(c.cmd_str(&["HELLO", "2"]), Frame::Array(_)));
    assert!(matches!(c.cmd_str(&["HGETALL", "p:h"]), Frame::Array(_)));
    assert!(matches!(c.cmd_str(&["HELLO", "3"]), Frame::Map(_)));
    assert_eq!(c.cmd_str(&["RESET"]), Frame::Simple("RESET".into()));
    assert!(matches!(c.cmd_str(&["HGETALL", "p:h"]), Frame::Array(_)));
    assert_eq!(c.cmd_str(&["CLIENT", "GETNAME"]), Frame::Null);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_client_in_resp3() {
    let cluster = Cluster::start(3);
    let mut con = cluster.connect(true).await;
    let _: () = redis::cmd("HSET")
        .arg("rc3:h")
        .arg("a")
        .arg("1")
        .query_async(&mut con)
        .await
        .expect("HSET");
    let map: std::collections::HashMap<String, String> = redis::cmd("HGETALL")
        .arg("rc3:h")
        .query_async(&mut con)
        .await
        .expect("HGETALL");
    assert_eq!(map.get("a").map(String::as_str), Some("1"));
    let keys: Vec<String> = (0..20).map(|i| format!("rc3:{i}")).collect();
    let mut pipe = redis::pipe();
    for k in &keys {
        pipe.set(k, k).ignore();
    }
    pipe.mget(&keys);
    let (values,): (Vec<String>,) = pipe.query_async(&mut con).await.expect("pipeline");
    assert_eq!(values, keys);
    let name: Option<String> = redis::cmd("CLIENT")
        .arg("GETNAME")
        .query_async(&mut con)
        .await
        .expect("GETNAME");
    assert_eq!(name, None);
}
