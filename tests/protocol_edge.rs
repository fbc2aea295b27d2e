//! The client side of the protocol at its edges: inline commands with quoting, frames sent one
//! byte per write, commands split at every boundary, refused commands that leave the
//! connection usable, and broken frames that end only the offending connection.

mod common;

use common::{Client, Cluster, Frame, bulk, err, int, ok, pong};

#[test]
fn inline_commands() {
    let cluster = Cluster::start(4);
    let mut c = cluster.client();
    let mut inline = |line: &[u8], expected: Frame| {
        c.send_raw(line);
        assert_eq!(
            c.read_reply(),
            expected,
            "{:?}",
            String::from_utf8_lossy(line)
        );
    };
    inline(b"PING\r\n", pong());
    inline(b"ping\n", pong());
    inline(b"SET a b\r\n", ok());
    inline(b"GET a\r\n", bulk("b"));
    inline(b"  SET    spaced\t  value  \r\n", ok());
    inline(b"GET spaced\r\n", bulk("value"));
    inline(b"SET \"key with space\" \"va\\x41l\\r\\nue\"\r\n", ok());
    inline(b"ECHO 'it\\'s'\r\n", bulk("it's"));
    inline(b"ECHO \"say \\\"hi\\\"\"\r\n", bulk("say \"hi\""));
    inline(b"ECHO \"\"\r\n", bulk(""));
    // Empty lines are skipped without a reply, as Redis does.
    inline(
        b"\r\n\r\n\nPING after-empty-lines\r\n",
        bulk("after-empty-lines"),
    );
    inline(
        b"MGET a spaced missing\r\n",
        Frame::Array(vec![bulk("b"), bulk("value"), Frame::Null]),
    );
    inline(
        b"GET\r\n",
        err("ERR wrong number of arguments for 'get' command"),
    );
    // The quoted arguments arrived decoded.
    assert_eq!(
        c.cmd(&[b"GET", b"key with space"]),
        Frame::Bulk(b"vaAl\r\nue".to_vec())
    );
    // Inline and RESP commands mixed in one write.
    let mut mixed = b"SET mixed 1\r\n".to_vec();
    mixed.extend(Client::encode(&[b"INCR", b"mixed"]));
    mixed.extend_from_slice(b"INCR mixed\r\n");
    mixed.extend(Client::encode(&[b"GET", b"mixed"]));
    c.send_raw(&mixed);
    assert_eq!(c.read_reply(), ok());
    assert_eq!(c.read_reply(), int(2));
    assert_eq!(c.read_reply(), int(3));
    assert_eq!(c.read_reply(), bulk("3"));

    assert_eq!(
        cluster.send_until_closed(b"PING\r\nSET \"unbalanced x\r\nPING\r\n"),
        b"+PONG\r\n-ERR Protocol error: unbalanced quotes in request\r\n"
    );
}

#[test]
fn frames_sent_one_byte_per_write() {
    let cluster = Cluster::start(4);
    let mut c = cluster.client(); // TCP_NODELAY: each write leaves as its own segment
    let mut one_by_one = |bytes: &[u8], expected: Frame| {
        for b in bytes {
            c.send_raw(std::slice::from_ref(b));
        }
        assert_eq!(
            c.read_reply(),
            expected,
            "{:?}",
            String::from_utf8_lossy(bytes)
        );
    };
    one_by_one(
        b"*3\r\n$3\r\nSET\r\n$5\r\nbytes\r\n$12\r\n01234\r\n56789\r\n",
        ok(),
    );
    one_by_one(
        b"*2\r\n$3\r\nGET\r\n$5\r\nbytes\r\n",
        bulk("01234\r\n56789"),
    );
    one_by_one(b"PING one-byte-inline\r\n", bulk("one-byte-inline"));
    one_by_one(
        &Client::encode(&[
            b"MSET", b"alpha:b", b"1", b"bravo:b", b"2", b"delta:b", b"3",
        ]),
        ok(),
    );
    one_by_one(
        &Client::encode(&[b"MGET", b"delta:b", b"alpha:b", b"missing", b"bravo:b"]),
        Frame::Array(vec![bulk("3"), bulk("1"), Frame::Null, bulk("2")]),
    );
    let mut big = vec![b'x'; 100_000];
    big[50_000] = b'\r';
    big[50_001] = b'\n';
    let frame = Client::encode(&[b"SET", b"big:b", &big]);
    // A long value byte by byte would take a while; its header and tail byte by byte, the
    // middle in one write.
    let header = frame.len() - big.len() - 2;
    for b in &frame[..header + 3] {
        c.send_raw(std::slice::from_ref(b));
    }
    c.send_raw(&frame[header + 3..frame.len() - 3]);
    for b in &frame[frame.len() - 3..] {
        c.send_raw(std::slice::from_ref(b));
    }
    assert_eq!(c.read_reply(), ok());
    assert_eq!(c.cmd(&[b"GET", b"big:b"]), Frame::Bulk(big));
}

#[test]
fn commands_split_at_every_boundary() {
    let cluster = Cluster::start(4);
    let mut c = cluster.client();
    // One frame with every kind of token, split in two at every position, including between
    // the CR and LF of each line and inside the length headers.
    let value = b"v\r\n$3\r\n*1\r\n";
    let frame = Client::encode(&[b"SET", b"split:key", value]);
    for cut in 1..frame.len() {
        c.send_raw(&frame[..cut]);
        c.send_raw(&frame[cut..]);
        assert_eq!(c.read_reply(), ok(), "split at {cut}");
    }
    assert_eq!(c.cmd(&[b"GET", b"split:key"]), Frame::Bulk(value.to_vec()));

    // Many commands in one stream, cut into chunks of odd sizes that never line up with the
    // command boundaries.
    let mut stream = Vec::new();
    let mut expected = Vec::new();
    for i in 0..60 {
        let k = format!("{:04x}:chunk", i * 7919);
        match i % 4 {
            0 => {
                stream.extend(Client::encode(&[
                    b"SET",
                    k.as_bytes(),
                    format!("v{i}").as_bytes(),
                ]));
                expected.push(ok());
            }
            1 => {
                stream.extend_from_slice(format!("SET {k} v{i}\r\n").as_bytes());
                expected.push(ok());
            }
            2 => {
                let prev = format!("{:04x}:chunk", (i - 1) * 7919);
                stream.extend(Client::encode(&[b"MGET", prev.as_bytes(), k.as_bytes()]));
                expected.push(Frame::Array(vec![bulk(format!("v{}", i - 1)), Frame::Null]));
            }
            _ => {
                stream.extend(Client::encode(&[b"PING"]));
                expected.push(pong());
            }
        }
    }
    for sizes in [
        &[1usize, 2, 3, 5, 7][..],
        &[11, 13, 17],
        &[64, 1, 127],
        &[4096],
    ] {
        // Fresh keys for each pass: the MGETs expect their second key missing.
        assert_eq!(c.cmd_str(&["FLUSHALL"]), ok());
        let mut pos = 0;
        for size in sizes.iter().cycle() {
            if pos >= stream.len() {
                break;
            }
            let end = (pos + size).min(stream.len());
            c.send_raw(&stream[pos..end]);
            pos = end;
        }
        for (j, e) in expected.iter().enumerate() {
            assert_eq!(&c.read_reply(), e, "chunks {sizes:?}, command {j}");
        }
    }
}

#[test]
fn refused_commands_leave_the_connection_usable() {
    let cluster = Cluster::start(4);
    let mut c = cluster.client();
    let refusals: Vec<(Vec<&[u8]>, &str)> = vec![
        (
            vec![b"FOOBAR", b"a", b"b"],
            "ERR unknown command 'FOOBAR', with args beginning with: 'a' 'b' ",
        ),
        (
            vec![b"foobar"],
            "ERR unknown command 'foobar', with args beginning with: ",
        ),
        // An error reply is one line, whatever the command name holds.
        (
            vec![b"BAD\r\nNAME"],
            "ERR unknown command 'BAD  NAME', with args beginning with: ",
        ),
        (
            vec![b"GET"],
            "ERR wrong number of arguments for 'get' command",
        ),
        (
            vec![b"GET", b"a", b"b"],
            "ERR wrong number of arguments for 'get' command",
        ),
        (
            vec![b"SET", b"k"],
            "ERR wrong number of arguments for 'set' command",
        ),
        (
            vec![b"HSET", b"h", b"f"],
            "ERR wrong number of arguments for 'hset' command",
        ),
        (
            vec![b"EXPIRE", b"k"],
            "ERR wrong number of arguments for 'expire' command",
        ),
        (
            vec![b"ZADD", b"z", b"1"],
            "ERR wrong number of arguments for 'zadd' command",
        ),
        (
            vec![b"MONITOR"],
            "ERR shardis does not serve 'monitor': it streams one server's commands: run it on a backend",
        ),
        (
            vec![b"CONFIG", b"SET", b"maxmemory", b"1"],
            "ERR shardis refuses 'config|set': it would act on every backend at once. Enable it with [server] allow_commands = [\"config\"]",
        ),
        (vec![b"SELECT", b"1"], "ERR shardis serves database 0 only"),
        (
            vec![b"OBJECT", b"NOSUCH"],
            "ERR unknown subcommand 'NOSUCH'. Try OBJECT HELP.",
        ),
    ];
    for (args, expected) in &refusals {
        assert_eq!(c.cmd(args), err(expected), "{args:?}");
        assert_eq!(c.cmd_str(&["PING"]), pong(), "after {args:?}");
    }
    let long_name = vec![b'x'; 500];
    let Frame::Error(e) = c.cmd(&[&long_name]) else {
        panic!("an unknown 500-byte command name is not an error");
    };
    assert!(e.starts_with("ERR unknown command 'xxx"), "{e}");
    assert!(e.len() < 200, "the error repeats the whole name: {e}");
    // Errors from the backend pass through and the connection goes on.
    assert_eq!(c.cmd_str(&["SET", "s", "text"]), ok());
    assert_eq!(
        c.cmd_str(&["INCR", "s"]),
        err("ERR value is not an integer or out of range")
    );
    assert_eq!(c.cmd_str(&["GET", "s"]), bulk("text"));
}

#[test]
fn broken_frames_close_only_their_connection() {
    let cluster = Cluster::start(4);
    let mut bystander = cluster.client();
    assert_eq!(bystander.cmd_str(&["SET", "bystander", "1"]), ok());
    let cases: [(&[u8], &str); 9] = [
        (b"*1\r\n$abc\r\n", "invalid bulk length"),
        // Numbers Redis' string2ll refuses: Redis would close a link other clients share.
        (b"*2\r\n$3\r\nGET\r\n$01\r\nk\r\n", "invalid bulk length"),
        (b"*01\r\n$4\r\nPING\r\n", "invalid multibulk length"),
        (b"*1\r\n$-0\r\n", "invalid bulk length"),
        (b"*1\r\n$-5\r\n", "invalid bulk length"),
        (b"*abc\r\n", "invalid multibulk length"),
        (b"*1\r\nPING\r\n", "expected '$', got 'P'"),
        (
            b"*1\r\n$3\r\nPINGX\r\n",
            "bulk string not terminated by CRLF",
        ),
        (b"*2\r\n$3\r\nGET\r\n:1\r\n", "expected '$', got ':'"),
    ];
    for (n, (input, why)) in cases.iter().enumerate() {
        // Commands before the broken frame are answered; nothing after it is.
        let mut bytes = b"PING\r\n".to_vec();
        bytes.extend_from_slice(input);
        bytes.extend(Client::encode(&[b"SET", b"after-broken", b"x"]));
        let out = cluster.send_until_closed(&bytes);
        assert_eq!(
            String::from_utf8_lossy(&out),
            format!("+PONG\r\n-ERR Protocol error: {why}\r\n"),
            "{:?}",
            String::from_utf8_lossy(input)
        );
        // The other client, connected all along, is unaffected.
        assert_eq!(bystander.cmd_str(&["INCR", "bystander"]), int(n as i64 + 2));
    }
    assert!(cluster.holders(b"after-broken").is_empty());
    assert_eq!(cluster.client().cmd_str(&["GET", "bystander"]), bulk("10"));
}

/// A header Redis refuses (`$01`) must be refused by the proxy, not forwarded: Redis would
/// close the shared backend link and fail every other client's requests in flight on it.
#[test]
fn a_header_redis_refuses_never_reaches_a_shared_link() {
    let cluster = Cluster::start(1);
    let mut setup = cluster.client();
    assert_eq!(setup.cmd_str(&["SET", "k", "v"]), ok());
    let addr = cluster.proxy.addr.to_string();
    let pipelined = std::thread::spawn(move || {
        let mut c = Client::connect(&addr);
        let mut lost = 0;
        for _ in 0..20 {
            let mut batch = Vec::new();
            for _ in 0..500 {
                batch.extend(Client::encode(&[b"GET", b"k"]));
            }
            c.send_raw(&batch);
            for _ in 0..500 {
                if c.read_reply() != bulk("v") {
                    lost += 1;
                }
            }
        }
        lost
    });
    for _ in 0..20 {
        let out = cluster.send_until_closed(b"*2\r\n$3\r\nGET\r\n$01\r\nk\r\n");
        assert_eq!(out, b"-ERR Protocol error: invalid bulk length\r\n");
    }
    assert_eq!(
        pipelined.join().unwrap(),
        0,
        "replies lost by the bystander"
    );
}

#[test]
fn empty_requests_get_no_reply() {
    let cluster = Cluster::start(4);
    let mut c = cluster.client();
    c.send_raw(b"*0\r\n*-1\r\n\r\n*0\r\nPING\r\n");
    assert_eq!(c.read_reply(), pong());
    assert_eq!(c.cmd_str(&["ECHO", "next"]), bulk("next"));
}
