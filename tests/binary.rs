//! Binary safety through shardis: keys and values holding every byte value (NUL, CR, LF, 0xff),
//! and an 8 MB value, stored on the owning backend byte for byte and read back identical.

mod common;

use common::{Client, Cluster, Frame, bulk, int, ok};

/// Every byte value once, in order.
fn all_bytes() -> Vec<u8> {
    (0..=255u8).collect()
}

#[test]
fn every_byte_value_in_keys_and_values() {
    let cluster = Cluster::start(4);
    let mut c = cluster.client();
    let key = all_bytes();
    let value: Vec<u8> = all_bytes().into_iter().rev().collect();
    let crlf_key = b"line1\r\nline2\r\n$3\r\n*1\r\n".to_vec();
    let crlf_value = b"\r\n-ERR not an error\r\n+OK\r\n:1\r\n\0".to_vec();
    let nul_key = b"\0".to_vec();

    assert_eq!(c.cmd(&[b"SET", &key, &value]), ok());
    assert_eq!(c.cmd(&[b"SET", &crlf_key, &crlf_value]), ok());
    assert_eq!(c.cmd(&[b"SET", &nul_key, b""]), ok());
    assert_eq!(c.cmd(&[b"GET", &key]), Frame::Bulk(value.clone()));
    assert_eq!(c.cmd(&[b"GET", &crlf_key]), Frame::Bulk(crlf_value.clone()));
    assert_eq!(c.cmd(&[b"GET", &nul_key]), bulk(""));
    assert_eq!(c.cmd(&[b"STRLEN", &key]), int(256));
    assert_eq!(c.cmd(&[b"EXISTS", &key, &crlf_key, &nul_key]), int(3));

    // Each key is stored once, byte for byte, on the backend that owns it.
    for (k, v) in [
        (&key, &value),
        (&crlf_key, &crlf_value),
        (&nul_key, &vec![]),
    ] {
        let owner = cluster.holder(k);
        assert_eq!(
            cluster.backend(owner).cmd(&[b"GET", k]),
            Frame::Bulk(v.clone()),
            "{k:?} on s{}",
            owner + 1
        );
    }

    // Binary members and fields in other types, and across shards with MSET/MGET.
    assert_eq!(c.cmd(&[b"HSET", b"bin:hash", &key, &value]), int(1));
    assert_eq!(
        c.cmd(&[b"HGET", b"bin:hash", &key]),
        Frame::Bulk(value.clone())
    );
    assert_eq!(c.cmd(&[b"SADD", b"bin:set", &crlf_value]), int(1));
    assert_eq!(c.cmd(&[b"SISMEMBER", b"bin:set", &crlf_value]), int(1));
    let keys: Vec<Vec<u8>> = (0..=255u8).map(|b| vec![b, b'\r', b'\n', b]).collect();
    let mut mset: Vec<&[u8]> = vec![b"MSET"];
    for k in &keys {
        mset.push(k);
        mset.push(&k[..1]);
    }
    assert_eq!(c.cmd(&mset), ok());
    let mut mget: Vec<&[u8]> = vec![b"MGET"];
    mget.extend(keys.iter().map(Vec::as_slice));
    assert_eq!(
        c.cmd(&mget),
        Frame::Array(keys.iter().map(|k| Frame::Bulk(k[..1].to_vec())).collect())
    );
    let used: std::collections::HashSet<usize> = keys.iter().map(|k| cluster.holder(k)).collect();
    assert!(used.len() > 1, "256 binary keys all on one backend");
}

#[test]
fn eight_megabyte_value() {
    let cluster = Cluster::start(4);
    let mut c = cluster.client();
    const LEN: usize = 8 * 1024 * 1024;
    // Not a repeated byte, so a shifted or truncated copy cannot compare equal.
    let value: Vec<u8> = (0..LEN).map(|i| (i * 31 % 251) as u8).collect();

    assert_eq!(c.cmd(&[b"SET", b"big", &value]), ok());
    assert_eq!(c.cmd_str(&["STRLEN", "big"]), int(LEN as i64));
    assert_eq!(c.cmd(&[b"GET", b"big"]), Frame::Bulk(value.clone()));
    let owner = cluster.holder(b"big");
    assert_eq!(
        cluster.backend(owner).cmd(&[b"GET", b"big"]),
        Frame::Bulk(value.clone()),
        "the backend does not hold the 8 MB value as sent"
    );

    // Pipelined between small commands, the big reply keeps its place.
    let mut pipe = Client::encode(&[b"SET", b"before", b"1"]);
    pipe.extend(Client::encode(&[b"SET", b"big2", &value]));
    pipe.extend(Client::encode(&[b"GET", b"big2"]));
    pipe.extend(Client::encode(&[b"GET", b"before"]));
    pipe.extend(Client::encode(&[b"GET", b"big"]));
    c.send_raw(&pipe);
    assert_eq!(c.read_reply(), ok());
    assert_eq!(c.read_reply(), ok());
    assert_eq!(c.read_reply(), Frame::Bulk(value.clone()));
    assert_eq!(c.read_reply(), bulk("1"));
    assert_eq!(c.read_reply(), Frame::Bulk(value));
    assert_eq!(c.cmd_str(&["PING"]), Frame::Simple("PONG".into()));
}
