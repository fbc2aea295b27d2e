//! Fault injection (`[[faults]]`): an error fault answers a share of the targeted commands
//! with `-ERR Fault injected` and sends nothing; a delay fault holds only the targeted
//! command's reply, never another client's nor the same client's earlier commands; faults are
//! off by default, changed by a reload, scoped to a pool, and counted.

mod common;

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use common::ops::{http_get, metric, start_redises, wait_for};
use common::{Client, Frame, Redis, Shardis};

/// Pool a (two backends) for every key, pool b (one backend) for `b:` keys, then `faults`.
fn config(redis: &[Redis], faults: &str) -> String {
    format!(
        "[server]\nlisten = \"127.0.0.1:0\"\n\n[admin]\nlisten = \"127.0.0.1:0\"\n\n\
         [[pools]]\nname = \"a\"\nbackends = [\n  {{ name = \"a1\", address = \"{}\" }},\n  {{ name = \"a2\", address = \"{}\" }},\n]\n\n\
         [[pools]]\nname = \"b\"\nbackends = [{{ name = \"b1\", address = \"{}\" }}]\n\n\
         [routing]\ncatch_all = \"a\"\n\n[[routes]]\nprefix = \"b:\"\npool = \"b\"\n\n{faults}",
        redis[0].addr(),
        redis[1].addr(),
        redis[2].addr()
    )
}

fn ok() -> Frame {
    Frame::Simple("OK".into())
}

fn injected(proxy: &Shardis, kind: &str) -> f64 {
    let text = http_get(proxy.admin, "/metrics").body;
    metric(
        &text,
        &format!("shardis_faults_injected_total{{kind=\"{kind}\"}}"),
    )
    .unwrap_or(0.0)
}

fn is_fault(f: &Frame) -> bool {
    matches!(f, Frame::Error(e) if e == "ERR Fault injected")
}

#[test]
fn half_of_the_gets_fail_and_nothing_else_does() {
    let redis = start_redises(3);
    let faults = "[[faults]]\nkind = \"error\"\nfraction = 0.5\ncommands = [\"get\"]\n";
    let proxy = Shardis::start(&config(&redis, faults));
    let mut c = proxy.client();
    for i in 0..200 {
        assert_eq!(c.cmd_str(&["SET", &format!("k{i}"), "v"]), ok());
    }
    let before = redis.iter().map(gets).sum::<u64>();
    let mut failed = 0;
    for i in 0..2000 {
        let reply = c.cmd_str(&["GET", &format!("k{}", i % 200)]);
        if is_fault(&reply) {
            failed += 1;
        } else {
            assert_eq!(reply, Frame::Bulk(b"v".to_vec()));
        }
    }
    // Binomial(2000, 0.5): 850 to 1,150 is more than 6 sigma either side.
    assert!(
        (850..=1150).contains(&failed),
        "{failed} faults in 2000 GETs"
    );
    assert_eq!(injected(&proxy, "error"), failed as f64);
    // A faulted GET is not sent.
    let sent = redis.iter().map(gets).sum::<u64>() - before;
    assert_eq!(sent, 2000 - failed);
    // Other commands are untouched, split ones too.
    for i in 0..200 {
        assert_eq!(c.cmd_str(&["SET", &format!("k{i}"), "w"]), ok());
    }
    assert!(matches!(
        c.cmd_str(&["MGET", "k1", "k2", "k3"]),
        Frame::Array(_)
    ));
}

/// GETs the server has served.
fn gets(redis: &Redis) -> u64 {
    let text = redis.client().cmd_str(&["INFO", "commandstats"]).as_text();
    text.lines()
        .find_map(|l| l.strip_prefix("cmdstat_get:calls="))
        .and_then(|rest| rest.split(',').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

#[test]
fn a_fault_can_be_scoped_to_a_pool() {
    let redis = start_redises(3);
    let faults = "[[faults]]\nkind = \"error\"\npool = \"b\"\n";
    let proxy = Shardis::start(&config(&redis, faults));
    let mut c = proxy.client();
    for i in 0..50 {
        assert_eq!(c.cmd_str(&["SET", &format!("a{i}"), "v"]), ok());
        assert!(is_fault(&c.cmd_str(&["SET", &format!("b:{i}"), "v"])));
    }
    // A split command with a key in the pool is faulted whole.
    assert!(is_fault(&c.cmd_str(&["MGET", "a1", "b:1"])));
    assert!(matches!(c.cmd_str(&["MGET", "a1", "a2"]), Frame::Array(_)));
    assert_eq!(redis[2].client().cmd_str(&["DBSIZE"]), Frame::Integer(0));
}

#[test]
fn faults_are_off_by_default_and_follow_reloads() {
    let redis = start_redises(3);
    let plain = config(&redis, "");
    let proxy = Shardis::start(&plain);
    let mut c = proxy.client();
    for _ in 0..200 {
        assert_eq!(c.cmd_str(&["SET", "k", "v"]), ok());
    }
    proxy.reload(&config(
        &redis,
        "[[faults]]\nkind = \"error\"\ncommands = [\"set\"]\n",
    ));
    wait_for(Duration::from_secs(10), "the fault to be in force", || {
        is_fault(&c.cmd_str(&["SET", "k", "v"])).then_some(())
    });
    assert_eq!(c.cmd_str(&["GET", "k"]), Frame::Bulk(b"v".to_vec()));
    proxy.reload(&plain);
    wait_for(Duration::from_secs(10), "the fault to be gone", || {
        (c.cmd_str(&["SET", "k", "v"]) == ok()).then_some(())
    });
    for _ in 0..200 {
        assert_eq!(c.cmd_str(&["SET", "k", "v"]), ok());
    }
}

#[test]
fn a_delay_holds_only_the_targeted_command() {
    let redis = start_redises(3);
    let delay = Duration::from_millis(200);
    let faults = "[[faults]]\nkind = \"delay\"\ndelay_ms = 200\ncommands = [\"get\"]\n";
    let proxy = Shardis::start(&config(&redis, faults));
    let mut c = proxy.client();
    assert_eq!(c.cmd_str(&["SET", "k", "v"]), ok());

    // The same client: a SET pipelined before the delayed GET answers at once, the GET after
    // the delay, and the order holds.
    let mut raw = std::net::TcpStream::connect(proxy.addr).expect("connect");
    raw.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let start = Instant::now();
    raw.write_all(&Client::encode(&[b"SET", b"k2", b"v2"]))
        .expect("write");
    raw.write_all(&Client::encode(&[b"GET", b"k"]))
        .expect("write");
    let mut first = [0u8; 5];
    raw.read_exact(&mut first).expect("the SET's reply");
    let set_took = start.elapsed();
    assert_eq!(&first, b"+OK\r\n");
    let mut second = [0u8; 7];
    raw.read_exact(&mut second).expect("the GET's reply");
    let get_took = start.elapsed();
    assert_eq!(&second, b"$1\r\nv\r\n");
    assert!(get_took >= delay, "the GET answered after {get_took:?}");
    assert!(set_took < get_took, "the SET waited for the GET");

    // Another client's SETs while GETs are being delayed.
    let addr = proxy.addr;
    let getter = std::thread::spawn(move || {
        let mut g = Client::connect(&addr.to_string());
        let start = Instant::now();
        for _ in 0..5 {
            assert_eq!(g.cmd_str(&["GET", "k"]), Frame::Bulk(b"v".to_vec()));
        }
        start.elapsed()
    });
    let mut took = Vec::new();
    let start = Instant::now();
    while start.elapsed() < delay * 4 {
        let t = Instant::now();
        assert_eq!(c.cmd_str(&["SET", "other", "x"]), ok());
        took.push(t.elapsed());
    }
    let gets_took = getter.join().expect("getter");
    assert!(gets_took >= delay * 5, "5 delayed GETs took {gets_took:?}");
    took.sort();
    let p99 = took[took.len() * 99 / 100];
    assert!(
        p99 < Duration::from_millis(50),
        "SET p99 {p99:?} while another client's GETs were delayed"
    );
    assert!(injected(&proxy, "delay") >= 6.0);
}
