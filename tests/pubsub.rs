//! Pub/sub through shardis: subscriptions multiplexed on one subscriber connection per
//! backend, messages fanned out to every subscribed client in RESP2 or RESP3, Redis's replies
//! and counts, the RESP2 subscribed-mode rules, aggregated PUBSUB introspection, and a bound
//! on what a slow subscriber may leave unread.

mod common;

use std::io::Read;
use std::net::TcpStream;
use std::time::Duration;

use common::ops::{metric, wait_for};
use common::{Client, Cluster, Frame, bulk, bulks, err, int};

fn message(channel: &str, payload: &str) -> Frame {
    Frame::Array(vec![bulk("message"), bulk(channel), bulk(payload)])
}

fn subscribed(kind: &str, channel: &str, count: i64) -> Frame {
    Frame::Array(vec![bulk(kind), bulk(channel), int(count)])
}

#[test]
fn subscribe_publish_and_unsubscribe_like_redis() {
    let cluster = Cluster::start(3);
    let mut sub = cluster.client();
    let mut publisher = cluster.client();
    let (a, b) = (cluster.key_on(0, "chan"), cluster.key_on(2, "chan"));
    sub.send_raw(&Client::encode(&[b"SUBSCRIBE", a.as_bytes(), b.as_bytes()]));
    assert_eq!(sub.read_reply(), subscribed("subscribe", &a, 1));
    assert_eq!(sub.read_reply(), subscribed("subscribe", &b, 2));
    // The confirmation means the subscription is live: a message published now arrives.
    assert_eq!(publisher.cmd_str(&["PUBLISH", &a, "hello"]), int(1));
    assert_eq!(sub.read_reply(), message(&a, "hello"));
    assert_eq!(publisher.cmd_str(&["PUBLISH", &b, "world"]), int(1));
    assert_eq!(sub.read_reply(), message(&b, "world"));
    assert_eq!(publisher.cmd_str(&["PUBLISH", "nobody", "x"]), int(0));

    // RESP2 subscribed mode: only (un)subscribe, PING, QUIT and RESET.
    assert_eq!(
        sub.cmd_str(&["GET", "k"]),
        err(
            "ERR Can't execute 'get': only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / QUIT / RESET are allowed in this context"
        )
    );
    assert_eq!(sub.cmd_str(&["PING"]), bulks(&["pong", ""]));
    assert_eq!(sub.cmd_str(&["PING", "hi"]), bulks(&["pong", "hi"]));

    // Patterns listen everywhere.
    sub.send_raw(&Client::encode(&[b"PSUBSCRIBE", b"news.*"]));
    assert_eq!(sub.read_reply(), subscribed("psubscribe", "news.*", 3));
    let news = cluster.key_on(1, "news.");
    assert_eq!(publisher.cmd_str(&["PUBLISH", &news, "extra"]), int(1));
    assert_eq!(
        sub.read_reply(),
        Frame::Array(vec![
            bulk("pmessage"),
            bulk("news.*"),
            bulk(&news),
            bulk("extra")
        ])
    );

    sub.send_raw(&Client::encode(&[b"UNSUBSCRIBE", a.as_bytes()]));
    assert_eq!(sub.read_reply(), subscribed("unsubscribe", &a, 2));
    assert_eq!(publisher.cmd_str(&["PUBLISH", &a, "gone"]), int(0));
    sub.send_raw(&Client::encode(&[b"PUNSUBSCRIBE"]));
    assert_eq!(sub.read_reply(), subscribed("punsubscribe", "news.*", 1));
    sub.send_raw(&Client::encode(&[b"UNSUBSCRIBE"]));
    assert_eq!(sub.read_reply(), subscribed("unsubscribe", &b, 0));
    // Nothing left: one reply with a null channel, as Redis gives.
    sub.send_raw(&Client::encode(&[b"UNSUBSCRIBE"]));
    assert_eq!(
        sub.read_reply(),
        Frame::Array(vec![bulk("unsubscribe"), Frame::Null, int(0)])
    );
    // Out of subscribed mode again.
    assert_eq!(sub.cmd_str(&["SET", "k", "v"]), Frame::Simple("OK".into()));
}

#[test]
fn publish_counts_every_subscribed_client() {
    let cluster = Cluster::start(2);
    let channel = cluster.key_on(1, "count");
    let mut subs: Vec<Client> = (0..3).map(|_| cluster.client()).collect();
    for s in &mut subs {
        assert_eq!(
            s.cmd_str(&["SUBSCRIBE", &channel]),
            subscribed("subscribe", &channel, 1)
        );
    }
    let mut pat = cluster.client();
    assert_eq!(
        pat.cmd_str(&["PSUBSCRIBE", "coun*"]),
        subscribed("psubscribe", "coun*", 1)
    );
    let mut publisher = cluster.client();
    assert_eq!(publisher.cmd_str(&["PUBLISH", &channel, "m"]), int(4));
    for s in &mut subs {
        assert_eq!(s.read_reply(), message(&channel, "m"));
    }
    assert!(matches!(pat.read_reply(), Frame::Array(items) if items[0] == bulk("pmessage")));
    // PUBSUB answers about the clients, aggregated over the backends.
    assert_eq!(
        publisher.cmd_str(&["PUBSUB", "NUMSUB", &channel, "none"]),
        Frame::Array(vec![bulk(&channel), int(3), bulk("none"), int(0)])
    );
    assert_eq!(publisher.cmd_str(&["PUBSUB", "NUMPAT"]), int(1));
    assert_eq!(
        publisher.cmd_str(&["PUBSUB", "CHANNELS"]),
        bulks(&[&channel])
    );
    assert_eq!(
        publisher.cmd_str(&["PUBSUB", "CHANNELS", "zzz*"]),
        Frame::Array(vec![])
    );
}

#[test]
fn sharded_channels() {
    let cluster = Cluster::start(3);
    let channel = cluster.key_on(2, "shard");
    let mut sub = cluster.client();
    assert_eq!(
        sub.cmd_str(&["SSUBSCRIBE", &channel]),
        subscribed("ssubscribe", &channel, 1)
    );
    let mut publisher = cluster.client();
    assert_eq!(publisher.cmd_str(&["SPUBLISH", &channel, "s"]), int(1));
    assert_eq!(
        sub.read_reply(),
        Frame::Array(vec![bulk("smessage"), bulk(&channel), bulk("s")])
    );
    assert_eq!(
        publisher.cmd_str(&["PUBSUB", "SHARDCHANNELS"]),
        bulks(&[&channel])
    );
    assert_eq!(
        publisher.cmd_str(&["PUBSUB", "SHARDNUMSUB", &channel]),
        Frame::Array(vec![bulk(&channel), int(1)])
    );
    assert_eq!(
        sub.cmd_str(&["SUNSUBSCRIBE"]),
        subscribed("sunsubscribe", &channel, 0)
    );
}

#[test]
fn resp3_subscribers_get_pushes_between_replies_and_may_send_anything() {
    let cluster = Cluster::start(2);
    let mut sub = cluster.client();
    assert!(matches!(sub.cmd_str(&["HELLO", "3"]), Frame::Map(_)));
    let channel = cluster.key_on(0, "r3");
    assert_eq!(
        sub.cmd_str(&["SUBSCRIBE", &channel]),
        Frame::Push(vec![bulk("subscribe"), bulk(&channel), int(1)])
    );
    // Any command is allowed, and gets its ordinary reply.
    assert_eq!(
        sub.cmd_str(&["SET", "r3:k", "v"]),
        Frame::Simple("OK".into())
    );
    assert_eq!(sub.cmd_str(&["GET", "r3:k"]), bulk("v"));
    assert_eq!(sub.cmd_str(&["PING"]), Frame::Simple("PONG".into()));
    let mut publisher = cluster.client();
    assert_eq!(publisher.cmd_str(&["PUBLISH", &channel, "p"]), int(1));
    assert_eq!(
        sub.read_reply(),
        Frame::Push(vec![bulk("message"), bulk(&channel), bulk("p")])
    );
    assert_eq!(
        sub.cmd_str(&["UNSUBSCRIBE"]),
        Frame::Push(vec![bulk("unsubscribe"), bulk(&channel), int(0)])
    );
}

#[test]
fn ten_thousand_subscribers_share_one_connection_per_backend() {
    // Two workers: two links per backend, whatever the machine's cores.
    let cluster = Cluster::start_with(2, "max_clients = 20000\nthreads = 2", "");
    let channel = cluster.key_on(0, "many");
    let pattern = "man*";
    let n = 10_000;
    let mut subs = Vec::with_capacity(n);
    for i in 0..n {
        let mut s = TcpStream::connect(cluster.proxy.addr).expect("connect");
        let cmd = if i % 2 == 0 {
            Client::encode(&[b"SUBSCRIBE", channel.as_bytes()])
        } else {
            Client::encode(&[b"PSUBSCRIBE", pattern.as_bytes()])
        };
        std::io::Write::write_all(&mut s, &cmd).expect("subscribe");
        subs.push(s);
    }
    // Every subscription is confirmed...
    let mut buf = [0u8; 64];
    for s in &mut subs {
        s.set_read_timeout(Some(Duration::from_secs(30)))
            .expect("timeout");
        let n = s.read(&mut buf).expect("confirmation");
        assert!(
            buf[..n].windows(9).any(|w| w == b"subscribe"),
            "{:?}",
            &buf[..n]
        );
    }
    // ...and each backend sees its links (one per worker) and one subscriber connection, not
    // ten thousand.
    let after = cluster.backend_clients();
    assert!(
        after.iter().all(|&n| n <= 3),
        "backend connections with {n} subscribers: {after:?}"
    );
    let mut publisher = cluster.client();
    assert_eq!(
        publisher.cmd_str(&["PUBLISH", &channel, "all"]),
        int(n as i64)
    );
}

#[test]
fn a_subscriber_that_does_not_read_is_disconnected_at_its_limit() {
    let cluster = Cluster::start_with(1, "max_subscriber_output_bytes = 1048576", "");
    let mut slow = TcpStream::connect(cluster.proxy.addr).expect("connect");
    std::io::Write::write_all(&mut slow, &Client::encode(&[b"SUBSCRIBE", b"firehose"]))
        .expect("subscribe");
    let mut fast = cluster.client();
    assert_eq!(
        fast.cmd_str(&["SUBSCRIBE", "firehose"]),
        subscribed("subscribe", "firehose", 1)
    );
    std::thread::sleep(Duration::from_millis(200));
    let mut publisher = cluster.client();
    let payload = "x".repeat(64 * 1024);
    // 64 MiB of messages; the slow one reads nothing, its socket fills, and shardis drops it.
    for _ in 0..1024 {
        assert!(matches!(
            publisher.cmd_str(&["PUBLISH", "firehose", &payload]),
            Frame::Integer(_)
        ));
        // The fast subscriber keeps up.
        match fast.read_reply() {
            Frame::Array(items) if items.len() == 3 => {}
            other => panic!("fast subscriber: {other:?}"),
        }
    }
    wait_for(
        Duration::from_secs(10),
        "the slow subscriber to be dropped",
        || {
            let text = common::ops::http_get(cluster.proxy.admin, "/metrics").body;
            (metric(&text, "shardis_pubsub_evicted_total") == Some(1.0)).then_some(())
        },
    );
    // Only the slow one: the publisher now reaches one client.
    assert_eq!(publisher.cmd_str(&["PUBLISH", "firehose", "x"]), int(1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_client_s_pubsub_round_trip() {
    use futures_util::StreamExt;
    let cluster = Cluster::start(3);
    let client = redis::Client::open(cluster.url(false)).expect("url");
    let mut pubsub = client.get_async_pubsub().await.expect("pubsub connection");
    pubsub.subscribe("rc:chan").await.expect("subscribe");
    pubsub.psubscribe("rc:pat:*").await.expect("psubscribe");
    let mut con = cluster.connect(true).await;
    let n: i64 = redis::cmd("PUBLISH")
        .arg("rc:chan")
        .arg("one")
        .query_async(&mut con)
        .await
        .expect("publish");
    assert_eq!(n, 1);
    let _: i64 = redis::cmd("PUBLISH")
        .arg("rc:pat:x")
        .arg("two")
        .query_async(&mut con)
        .await
        .expect("publish");
    let mut stream = pubsub.on_message();
    let first = tokio::time::timeout(Duration::from_secs(5), stream.next())
        .await
        .expect("a message within 5 s")
        .expect("message");
    assert_eq!(first.get_channel_name(), "rc:chan");
    assert_eq!(first.get_payload::<String>().expect("payload"), "one");
    let second = tokio::time::timeout(Duration::from_secs(5), stream.next())
        .await
        .expect("a message within 5 s")
        .expect("message");
    assert_eq!(second.get_channel_name(), "rc:pat:x");
    assert_eq!(second.get_pattern::<String>().expect("pattern"), "rc:pat:*");
}
