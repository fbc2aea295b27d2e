//! Random keys spread evenly over four backends, measured on the backends themselves.

mod common;

use common::{Client, Cluster, int, ok};

const KEYS: usize = 20_000;
const BATCH: usize = 1000;

/// Deterministic pseudo-random keys (xorshift): printable, 6 to 40 bytes, as an application
/// might use; unique by construction.
fn random_keys() -> Vec<Vec<u8>> {
    let mut state: u64 = 0x2545_f491_4f6c_dd1d;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789:_-.";
    (0..KEYS)
        .map(|i| {
            let len = 6 + (next() % 35) as usize;
            let mut k: Vec<u8> = (0..len)
                .map(|_| ALPHABET[(next() % ALPHABET.len() as u64) as usize])
                .collect();
            k.extend_from_slice(format!("#{i}").as_bytes());
            k
        })
        .collect()
}

#[test]
fn twenty_thousand_random_keys_spread_evenly() {
    let cluster = Cluster::start(4);
    let mut c = cluster.client();
    let keys = random_keys();
    for batch in keys.chunks(BATCH) {
        let mut pipe = Vec::new();
        for k in batch {
            pipe.extend(Client::encode(&[b"SET", k, b"1"]));
        }
        c.send_raw(&pipe);
        for k in batch {
            assert_eq!(c.read_reply(), ok(), "SET {:?}", String::from_utf8_lossy(k));
        }
    }
    assert_eq!(c.cmd_str(&["DBSIZE"]), int(KEYS as i64));

    let sizes = cluster.dbsizes();
    eprintln!("keys per backend: {sizes:?}");
    assert_eq!(sizes.iter().sum::<i64>(), KEYS as i64, "{sizes:?}");
    let mean = KEYS as f64 / 4.0;
    for (i, &n) in sizes.iter().enumerate() {
        let off = (n as f64 - mean).abs() / mean;
        assert!(
            off <= 0.15,
            "s{} holds {n} keys, {:.1}% off the mean {mean}: {sizes:?}",
            i + 1,
            off * 100.0
        );
    }

    // A sample of keys is where `shardis route` says, and nowhere else.
    let sample: Vec<String> = keys
        .iter()
        .step_by(100)
        .map(|k| String::from_utf8(k.clone()).expect("printable key"))
        .collect();
    let refs: Vec<&str> = sample.iter().map(String::as_str).collect();
    for (k, owner) in refs.iter().zip(cluster.route(&refs)) {
        assert_eq!(cluster.holder(k.as_bytes()), owner, "{k}");
    }
}
