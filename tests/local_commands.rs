//! Commands shardis answers itself (PING, ECHO, QUIT, SELECT, COMMAND, CLIENT, HELLO, AUTH,
//! TIME) and the ones it answers for the whole pool (DBSIZE summed, INFO with a `# Proxy`
//! section), with exact replies.

mod common;

use std::time::{SystemTime, UNIX_EPOCH};

use common::{Client, Cluster, Frame, bulk, err, int, ok, pong};

#[track_caller]
fn check(c: &mut Client, args: &[&str], expected: Frame) {
    assert_eq!(c.cmd_str(args), expected, "{args:?}");
}

#[test]
fn ping_and_echo() {
    let cluster = Cluster::start(4);
    let mut c = cluster.client();
    check(&mut c, &["PING"], pong());
    check(&mut c, &["ping"], pong());
    check(&mut c, &["PING", "hello world"], bulk("hello world"));
    check(&mut c, &["PING", ""], bulk(""));
    check(
        &mut c,
        &["PING", "a", "b"],
        err("ERR wrong number of arguments for 'ping' command"),
    );
    check(&mut c, &["ECHO", "hi there"], bulk("hi there"));
    assert_eq!(
        c.cmd(&[b"ECHO", b"\r\n\0\xff"]),
        Frame::Bulk(b"\r\n\0\xff".to_vec())
    );
    check(
        &mut c,
        &["ECHO"],
        err("ERR wrong number of arguments for 'echo' command"),
    );
    check(
        &mut c,
        &["ECHO", "a", "b"],
        err("ERR wrong number of arguments for 'echo' command"),
    );
    check(&mut c, &["PING"], pong());
}

#[test]
fn quit_replies_ok_then_closes() {
    let cluster = Cluster::start(4);
    assert_eq!(cluster.send_until_closed(b"QUIT\r\n"), b"+OK\r\n");
    // Commands pipelined before QUIT run; commands after it do not.
    let mut pipe = Client::encode(&[b"SET", b"quit:before", b"1"]);
    pipe.extend(Client::encode(&[b"QUIT"]));
    pipe.extend(Client::encode(&[b"SET", b"quit:after", b"2"]));
    pipe.extend_from_slice(b"PING\r\n");
    assert_eq!(cluster.send_until_closed(&pipe), b"+OK\r\n+OK\r\n");
    let mut c = cluster.client();
    check(&mut c, &["GET", "quit:before"], bulk("1"));
    check(&mut c, &["EXISTS", "quit:after"], int(0));
    assert!(cluster.holders(b"quit:after").is_empty());
}

#[test]
fn select_only_database_zero() {
    let cluster = Cluster::start(4);
    let mut c = cluster.client();
    check(&mut c, &["SELECT", "0"], ok());
    check(
        &mut c,
        &["SELECT", "1"],
        err("ERR shardis serves database 0 only"),
    );
    check(
        &mut c,
        &["SELECT", "zero"],
        err("ERR value is not an integer or out of range"),
    );
    check(
        &mut c,
        &["SELECT"],
        err("ERR wrong number of arguments for 'select' command"),
    );
    // Still on database 0 of every backend.
    check(&mut c, &["SET", "db:key", "v"], ok());
    let owner = cluster.holder(b"db:key");
    assert_eq!(
        cluster.backend(owner).cmd_str(&["GET", "db:key"]),
        bulk("v")
    );
}

#[test]
fn copy_to_another_database_is_refused() {
    let cluster = Cluster::start(4);
    let mut c = cluster.client();
    check(&mut c, &["SET", "{c}:src", "v"], ok());
    for db in ["DB", "db"] {
        check(
            &mut c,
            &["COPY", "{c}:src", "{c}:dst", db, "1"],
            err("ERR shardis serves database 0 only: COPY ... DB is not supported"),
        );
    }
    // Redis's own check of the number comes first; DB 0 is this database.
    check(
        &mut c,
        &["COPY", "{c}:src", "{c}:dst", "DB", "zero"],
        err("ERR value is not an integer or out of range"),
    );
    check(&mut c, &["COPY", "{c}:src", "{c}:db0", "DB", "0"], int(1));
    // Nothing was written to database 1 of any backend.
    for i in 0..4 {
        let mut b = cluster.backend(i);
        check(&mut b, &["SELECT", "1"], ok());
        check(&mut b, &["DBSIZE"], int(0));
    }
    // COPY within database 0 still works.
    check(&mut c, &["COPY", "{c}:src", "{c}:dst", "REPLACE"], int(1));
    check(&mut c, &["GET", "{c}:dst"], bulk("v"));
}

#[test]
fn command_introspection_is_redis_s_own() {
    // COMMAND and its subcommands are Redis's own answers (from a backend): real arity,
    // flags, key specs and docs, which clients such as redis-cli and redis-py rely on.
    let cluster = Cluster::start(4);
    let mut c = cluster.client();
    let mut direct = cluster.backend(0);
    for args in [
        &["COMMAND", "COUNT"][..],
        &["COMMAND", "INFO", "get"],
        &["COMMAND", "INFO", "GET", "nosuchcommand", "eval", "mset"],
        &["COMMAND", "DOCS", "get"],
        &["COMMAND", "GETKEYS", "EVAL", "return 1", "2", "a", "b"],
        &["COMMAND", "LIST", "FILTERBY", "ACLCAT", "hyperloglog"],
    ] {
        assert_eq!(c.cmd_str(args), direct.cmd_str(args), "{args:?}");
    }
    let Frame::Array(all) = c.cmd_str(&["COMMAND"]) else {
        panic!("COMMAND did not return an array");
    };
    assert_eq!(
        Frame::Integer(all.len() as i64),
        direct.cmd_str(&["COMMAND", "COUNT"])
    );
    // EVAL's keys are found by its key specs, not as positions 0.
    check(
        &mut c,
        &["COMMAND", "GETKEYS", "EVAL", "return 1", "1", "k"],
        Frame::Array(vec![bulk("k")]),
    );
    check(&mut c, &["PING"], pong());
}

#[test]
fn client_name_info_and_id() {
    let cluster = Cluster::start(4);
    let mut c = cluster.client();
    check(&mut c, &["CLIENT", "GETNAME"], Frame::Null);
    check(&mut c, &["CLIENT", "SETNAME", "app-1"], ok());
    check(&mut c, &["client", "getname"], bulk("app-1"));
    check(
        &mut c,
        &["CLIENT", "SETNAME", "bad name"],
        err("ERR Client names cannot contain spaces, newlines or special characters."),
    );
    check(&mut c, &["CLIENT", "GETNAME"], bulk("app-1"));
    check(&mut c, &["CLIENT", "SETNAME", ""], ok());
    check(&mut c, &["CLIENT", "GETNAME"], Frame::Null);
    check(&mut c, &["CLIENT", "SETINFO", "lib-name", "redis-py"], ok());
    check(&mut c, &["CLIENT", "SETINFO", "lib-ver", "5.0.0"], ok());
    check(&mut c, &["CLIENT", "SETINFO", "LIB-NAME", "go-redis"], ok());
    check(
        &mut c,
        &["CLIENT", "SETINFO", "colour", "blue"],
        err("ERR Unrecognized option 'colour'"),
    );
    check(
        &mut c,
        &["CLIENT", "GETNAME", "extra"],
        err("ERR wrong number of arguments for 'client|getname' command"),
    );
    check(&mut c, &["CLIENT", "KILL", "ID", "999999"], int(0));
    check(
        &mut c,
        &["CLIENT", "NOSUCH"],
        err("ERR unknown subcommand 'NOSUCH'. Try CLIENT HELP."),
    );
    check(
        &mut c,
        &["CLIENT"],
        err("ERR wrong number of arguments for 'client' command"),
    );

    let Frame::Integer(id) = c.cmd_str(&["CLIENT", "ID"]) else {
        panic!("CLIENT ID is not an integer");
    };
    check(&mut c, &["CLIENT", "ID"], int(id));
    let Frame::Integer(other) = cluster.client().cmd_str(&["CLIENT", "ID"]) else {
        panic!("CLIENT ID is not an integer");
    };
    assert_ne!(id, other, "two connections share a client id");
    // Names are per connection.
    check(&mut c, &["CLIENT", "SETNAME", "mine"], ok());
    assert_eq!(
        cluster.client().cmd_str(&["CLIENT", "GETNAME"]),
        Frame::Null
    );
}

#[test]
fn hello_in_resp2() {
    let cluster = Cluster::start(4);
    let mut c = cluster.client();
    let Frame::Integer(id) = c.cmd_str(&["CLIENT", "ID"]) else {
        panic!("CLIENT ID is not an integer");
    };
    // The version clients can count on: the backends' (the oldest one's).
    let info = cluster.backend(0).cmd_str(&["INFO", "server"]).as_text();
    let version = info
        .lines()
        .find_map(|l| l.strip_prefix("redis_version:"))
        .expect("redis_version")
        .to_string();
    // RESP2 has no maps: HELLO answers with a flat array of field, value pairs.
    let expected = Frame::Array(vec![
        bulk("server"),
        bulk("redis"),
        bulk("version"),
        bulk(&version),
        bulk("proto"),
        int(2),
        bulk("id"),
        int(id),
        bulk("mode"),
        bulk("standalone"),
        bulk("role"),
        bulk("master"),
        bulk("modules"),
        Frame::Array(vec![]),
    ]);
    check(&mut c, &["HELLO", "2"], expected.clone());
    check(&mut c, &["HELLO"], expected.clone());
    check(
        &mut c,
        &[
            "HELLO",
            "2",
            "AUTH",
            "default",
            "secret",
            "SETNAME",
            "via-hello",
        ],
        expected.clone(),
    );
    check(&mut c, &["CLIENT", "GETNAME"], bulk("via-hello"));
    // Without a password only the default user exists, as in Redis; a failed HELLO changes
    // nothing, not even the name.
    check(
        &mut c,
        &["HELLO", "2", "SETNAME", "bob-conn", "AUTH", "bob", "secret"],
        err("WRONGPASS invalid username-password pair or user is disabled."),
    );
    check(&mut c, &["CLIENT", "GETNAME"], bulk("via-hello"));
    check(
        &mut c,
        &["HELLO", "4"],
        err("NOPROTO unsupported protocol version"),
    );
    // Refused: the connection stays in RESP2 and usable.
    check(&mut c, &["SET", "after:hello", "v"], ok());
    check(&mut c, &["GET", "after:hello"], bulk("v"));
    check(&mut c, &["HELLO", "2"], expected);
}

#[test]
fn auth_without_configured_password() {
    let cluster = Cluster::start(4);
    let mut c = cluster.client();
    check(
        &mut c,
        &["AUTH", "secret"],
        err(
            "ERR AUTH <password> called without any password configured for the default user. \
             Are you sure your configuration is correct?",
        ),
    );
    check(&mut c, &["AUTH", "default", "anything"], ok());
    check(
        &mut c,
        &["AUTH", "bob", "secret"],
        err("WRONGPASS invalid username-password pair or user is disabled."),
    );
    check(&mut c, &["PING"], pong());
}

#[test]
fn time_is_now() {
    let cluster = Cluster::start(4);
    let mut c = cluster.client();
    let before = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    let Frame::Array(parts) = c.cmd_str(&["TIME"]) else {
        panic!("TIME is not an array");
    };
    let after = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    assert_eq!(parts.len(), 2);
    let secs: u64 = parts[0].as_text().parse().expect("seconds");
    let micros: u64 = parts[1].as_text().parse().expect("microseconds");
    assert!(micros < 1_000_000);
    assert!((before.as_secs()..=after.as_secs()).contains(&secs));
}

#[test]
fn dbsize_sums_every_backend() {
    let cluster = Cluster::start(4);
    let mut c = cluster.client();
    check(&mut c, &["DBSIZE"], int(0));
    let mut pipe = Vec::new();
    for i in 0..200u32 {
        let k = format!("{:08x}:dbsize", i.wrapping_mul(0x9e37_79b9));
        pipe.extend(Client::encode(&[b"SET", k.as_bytes(), b"v"]));
    }
    c.send_raw(&pipe);
    for _ in 0..200 {
        assert_eq!(c.read_reply(), ok());
    }
    let sizes = cluster.dbsizes();
    assert!(sizes.iter().all(|&n| n > 0), "not spread: {sizes:?}");
    assert_eq!(sizes.iter().sum::<i64>(), 200);
    check(&mut c, &["DBSIZE"], int(200));
    // Keys written behind the proxy's back count too: it asks every backend.
    assert_eq!(cluster.backend(2).cmd_str(&["SET", "direct", "1"]), ok());
    check(&mut c, &["DBSIZE"], int(201));
    check(
        &mut c,
        &["DBSIZE", "extra"],
        err("ERR wrong number of arguments for 'dbsize' command"),
    );
}

#[test]
fn info_has_a_proxy_section_and_every_backend() {
    let cluster = Cluster::start(4);
    let mut c = cluster.client();
    for k in ["info:a", "bravo:info", "charlie:info", "delta:info"] {
        check(&mut c, &["SET", k, "v"], ok());
    }
    let text = c.cmd_str(&["INFO"]).as_text();
    assert!(text.starts_with("# Proxy\r\n"), "INFO starts with:\n{text}");
    let field = |section: &str, name: &str| -> String {
        let body = text
            .split("\r\n\r\n")
            .find(|s| s.starts_with(section))
            .unwrap_or_else(|| panic!("no section {section:?} in INFO:\n{text}"));
        body.lines()
            .find_map(|l| l.strip_prefix(&format!("{name}:")))
            .unwrap_or_else(|| panic!("no {name} in {section:?}:\n{text}"))
            .trim()
            .to_string()
    };
    assert_eq!(
        field("# Proxy", "shardis_version"),
        env!("CARGO_PKG_VERSION")
    );
    assert_eq!(field("# Proxy", "backends_total"), "4");
    assert_eq!(field("# Proxy", "backends_up"), "4");
    assert_eq!(field("# Proxy", "connected_clients"), "1");
    let sizes = cluster.dbsizes();
    for (i, r) in cluster.redis.iter().enumerate() {
        let section = format!("# Backend s{}", i + 1);
        assert_eq!(field(&section, "address"), r.addr());
        assert_eq!(field(&section, "connected"), "1");
        assert_eq!(field(&section, "keys"), sizes[i].to_string(), "{section}");
    }
    // INFO server is the proxy's own section (sections are tested in tests/info.rs).
    let server = c.cmd_str(&["INFO", "server"]).as_text();
    assert!(server.starts_with("# Proxy\r\n"), "{server}");
    assert!(!server.contains("# Backend"), "{server}");
    check(&mut c, &["PING"], pong());
}
