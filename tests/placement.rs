//! Placement compatibility with the real twemproxy: keys written through nutcracker must be on
//! exactly the redis-server that `Ring::backend_for` names, for every hash function twemproxy
//! shares with us, for ketama and modula, with equal and unequal weights.

mod common;

use std::collections::HashMap;

use common::{Client, Frame, Nutcracker, Redis, Shardis, shardis_config};
use shardis::router::{DistributionKind, HashKind, HashTag, Ring};

/// Hash functions twemproxy has, by the name both it and shardis use.
const TWEMPROXY_HASHES: [HashKind; 7] = [
    HashKind::Fnv1a64,
    HashKind::Fnv1_64,
    HashKind::Fnv1a32,
    HashKind::Murmur,
    HashKind::Md5,
    HashKind::Crc32,
    HashKind::Crc16,
];

const KEYS: usize = 5000;
const BATCH: usize = 500;

/// Deterministic test keys: ASCII, bytes >= 0x80, binary (NUL, CR, LF), tagged, empty tags,
/// unclosed and reversed tags, every length remainder mod 4 (murmur's tail), and the empty key.
fn keys() -> Vec<Vec<u8>> {
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    (0..KEYS)
        .map(|i| {
            let mut k = match i % 10 {
                0..=3 => format!("key:{i}").into_bytes(),
                4 => vec![0x80 + (i % 128) as u8, 0xff, 0xc3, 0xa9, b'-'],
                5 => (0..next() % 24).map(|_| next() as u8).collect(),
                6 => format!("{{user:{}}}:field:", i % 50).into_bytes(),
                7 if i % 20 == 7 => b"{}x".to_vec(),
                7 => b"x{}".to_vec(),
                8 if i % 20 == 8 => b"{unclosed".to_vec(),
                8 => b"}before{".to_vec(),
                _ => vec![b'k'; i % 17],
            };
            // Unique, and varied at the end too (FNV-1's weak spot).
            k.extend_from_slice(i.to_string().as_bytes());
            k
        })
        // twemproxy hashes an empty key to 0 without calling the hash function.
        .chain([Vec::new()])
        .collect()
}

/// `n` redis-servers with names s1..sN.
struct Cluster {
    redis: Vec<Redis>,
    names: Vec<String>,
}

impl Cluster {
    fn start(n: usize) -> Cluster {
        Cluster {
            redis: (0..n).map(|_| Redis::start()).collect(),
            names: (1..=n).map(|i| format!("s{i}")).collect(),
        }
    }

    fn flush(&self) {
        for r in &self.redis {
            assert_eq!(
                r.client().cmd_str(&["FLUSHALL"]),
                Frame::Simple("OK".into())
            );
        }
    }

    /// The nutcracker pool body for these servers with the given weights.
    fn yaml(
        &self,
        hash: HashKind,
        dist: DistributionKind,
        weights: &[u32],
        tag: Option<&str>,
    ) -> String {
        let mut y = format!("hash: {}\ndistribution: {}\n", hash.name(), dist.name());
        if let Some(t) = tag {
            y.push_str(&format!("hash_tag: \"{t}\"\n"));
        }
        y.push_str("servers:\n");
        for ((r, name), w) in self.redis.iter().zip(&self.names).zip(weights) {
            y.push_str(&format!("  - {}:{w} {name}\n", r.addr()));
        }
        y
    }

    fn ring(
        &self,
        hash: HashKind,
        dist: DistributionKind,
        weights: &[u32],
        tag: Option<&str>,
    ) -> Ring {
        let backends: Vec<(&str, u32)> = self
            .names
            .iter()
            .map(String::as_str)
            .zip(weights.iter().copied())
            .collect();
        Ring::from_parts(hash, tag.and_then(HashTag::parse), dist, &backends)
    }

    /// Which server holds each key (KEYS * on every server).
    fn locate(&self) -> HashMap<Vec<u8>, usize> {
        let mut found = HashMap::new();
        for (i, r) in self.redis.iter().enumerate() {
            let Frame::Array(keys) = r.client().cmd_str(&["KEYS", "*"]) else {
                panic!("KEYS * did not return an array");
            };
            for k in keys {
                let Frame::Bulk(k) = k else {
                    panic!("non-bulk key {k:?}")
                };
                if let Some(other) = found.insert(k.clone(), i) {
                    panic!("key {k:?} is on both s{} and s{}", other + 1, i + 1);
                }
            }
        }
        found
    }
}

/// `SET key value` for every key, pipelined in batches; every reply must be +OK.
fn write_all(client: &mut Client, keys: &[Vec<u8>]) {
    for (b, batch) in keys.chunks(BATCH).enumerate() {
        let mut buf = Vec::new();
        for (j, k) in batch.iter().enumerate() {
            let value = format!("v{}", b * BATCH + j);
            buf.extend(Client::encode(&[b"SET", k, value.as_bytes()]));
        }
        client.send_raw(&buf);
        for k in batch {
            let reply = client.read_reply();
            assert_eq!(reply, Frame::Simple("OK".into()), "SET {k:?}");
        }
    }
}

/// Writes all keys through a nutcracker configured like the ring and checks every key is
/// where `Ring::backend_for` says.
fn check(
    cluster: &Cluster,
    hash: HashKind,
    dist: DistributionKind,
    weights: &[u32],
    tag: Option<&str>,
) {
    cluster.flush();
    let keys = keys();
    let nutcracker = Nutcracker::start(&cluster.yaml(hash, dist, weights, tag));
    write_all(&mut nutcracker.client(), &keys);
    let found = cluster.locate();
    assert_eq!(found.len(), keys.len(), "{hash} {dist}: keys stored");

    let ring = cluster.ring(hash, dist, weights, tag);
    let mut per_server = vec![0usize; weights.len()];
    let mismatches: Vec<String> = keys
        .iter()
        .filter_map(|k| {
            let actual = found[k];
            per_server[actual] += 1;
            let expected = ring.backend_for(k);
            (actual != expected).then(|| {
                format!(
                    "{k:?}: twemproxy s{}, shardis s{}",
                    actual + 1,
                    expected + 1
                )
            })
        })
        .collect();
    assert!(
        mismatches.is_empty(),
        "{hash} {dist} weights {weights:?} tag {tag:?}: {} of {} keys placed differently, e.g.\n{}",
        mismatches.len(),
        keys.len(),
        mismatches[..mismatches.len().min(10)].join("\n")
    );
    eprintln!("{hash} {dist} weights {weights:?}: keys per server {per_server:?}");
}

macro_rules! ketama_equal_weights {
    ($($test:ident => $hash:expr),* $(,)?) => {$(
        #[test]
        fn $test() {
            let cluster = Cluster::start(4);
            check(&cluster, $hash, DistributionKind::Ketama, &[1, 1, 1, 1], Some("{}"));
        }
    )*};
}

ketama_equal_weights! {
    ketama_fnv1a_64 => HashKind::Fnv1a64,
    ketama_fnv1_64 => HashKind::Fnv1_64,
    ketama_fnv1a_32 => HashKind::Fnv1a32,
    ketama_murmur => HashKind::Murmur,
    ketama_md5 => HashKind::Md5,
    ketama_crc32 => HashKind::Crc32,
    ketama_crc16 => HashKind::Crc16,
}

#[test]
fn ketama_without_hash_tag() {
    let cluster = Cluster::start(4);
    check(
        &cluster,
        HashKind::Fnv1a64,
        DistributionKind::Ketama,
        &[1, 1, 1, 1],
        None,
    );
    check(
        &cluster,
        HashKind::Murmur,
        DistributionKind::Ketama,
        &[1, 1, 1, 1],
        Some("$$"),
    );
}

#[test]
fn ketama_unequal_weights() {
    let cluster = Cluster::start(4);
    for hash in [HashKind::Fnv1a64, HashKind::Md5, HashKind::Murmur] {
        check(
            &cluster,
            hash,
            DistributionKind::Ketama,
            &[1, 2, 3, 1],
            Some("{}"),
        );
    }
    check(
        &cluster,
        HashKind::Fnv1a64,
        DistributionKind::Ketama,
        &[5, 1, 1, 10],
        None,
    );
}

/// 25 equal backends: float rounding gives each 156 ketama points instead of 160.
#[test]
fn ketama_float_rounding_with_25_backends() {
    assert_eq!(shardis::router::ketama::points_for(1, 25, 25), 156);
    let cluster = Cluster::start(25);
    check(
        &cluster,
        HashKind::Fnv1a64,
        DistributionKind::Ketama,
        &[1; 25],
        Some("{}"),
    );
}

#[test]
fn modula_unequal_weights_every_hash() {
    let cluster = Cluster::start(4);
    for hash in TWEMPROXY_HASHES {
        check(
            &cluster,
            hash,
            DistributionKind::Modula,
            &[1, 2, 3, 1],
            Some("{}"),
        );
    }
}

/// Keys written through nutcracker are all readable through shardis configured with the same
/// names, hash, distribution and tag. Needs the real shardis binary (src/main.rs).
#[test]
fn shardis_reads_what_nutcracker_wrote() {
    let cluster = Cluster::start(4);
    let keys = keys();
    let nutcracker = Nutcracker::start(&cluster.yaml(
        HashKind::Fnv1a64,
        DistributionKind::Ketama,
        &[1, 1, 1, 1],
        Some("{}"),
    ));
    write_all(&mut nutcracker.client(), &keys);

    // --- through shardis ---
    let backends: Vec<(&str, String)> = cluster
        .names
        .iter()
        .map(String::as_str)
        .zip(cluster.redis.iter().map(Redis::addr))
        .collect();
    let proxy = Shardis::start(&shardis_config(
        &backends,
        "distribution = \"ketama\"\nhash = \"fnv1a_64\"\nhash_tag = \"{}\"",
    ));
    let mut client = proxy.client();
    for (b, batch) in keys.chunks(BATCH).enumerate() {
        let mut buf = Vec::new();
        for k in batch {
            buf.extend(Client::encode(&[b"GET", k]));
        }
        client.send_raw(&buf);
        for (j, k) in batch.iter().enumerate() {
            let expected = format!("v{}", b * BATCH + j).into_bytes();
            assert_eq!(
                client.read_reply(),
                Frame::Bulk(expected),
                "GET {k:?} through shardis"
            );
        }
    }
}

/// The harness itself: the client decodes every RESP2 reply type, from redis and through
/// nutcracker, so a placement failure is never a decoding bug.
#[test]
fn harness_client_decodes_every_reply_type() {
    let redis = Redis::start();
    let mut c = redis.client();
    assert_eq!(c.cmd_str(&["SET", "k", "v"]), Frame::Simple("OK".into()));
    assert_eq!(c.cmd_str(&["GET", "k"]), Frame::Bulk(b"v".to_vec()));
    assert_eq!(c.cmd_str(&["GET", "missing"]), Frame::Null);
    assert_eq!(
        c.cmd(&[b"SET", b"bin\r\n\0", b"\xff\r\n"]),
        Frame::Simple("OK".into())
    );
    assert_eq!(
        c.cmd(&[b"GET", b"bin\r\n\0"]),
        Frame::Bulk(b"\xff\r\n".to_vec())
    );
    assert_eq!(c.cmd_str(&["INCR", "n"]), Frame::Integer(1));
    assert_eq!(
        c.cmd_str(&["MGET", "k", "missing"]),
        Frame::Array(vec![Frame::Bulk(b"v".to_vec()), Frame::Null])
    );
    assert!(matches!(c.cmd_str(&["INCR", "k"]), Frame::Error(e) if e.starts_with("ERR")));
    c.send_raw(b"PING\r\n");
    assert_eq!(c.read_reply(), Frame::Simple("PONG".into()));

    let nutcracker = Nutcracker::start(&format!("servers:\n  - {}:1 only\n", redis.addr()));
    let mut n = nutcracker.client();
    assert_eq!(n.cmd_str(&["GET", "k"]), Frame::Bulk(b"v".to_vec()));
    assert_eq!(
        n.cmd_str(&["MGET", "k", "n", "missing"]),
        Frame::Array(vec![
            Frame::Bulk(b"v".to_vec()),
            Frame::Bulk(b"1".to_vec()),
            Frame::Null
        ])
    );
}
