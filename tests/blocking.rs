//! Blocking commands (BLPOP and friends, XREAD BLOCK, WAIT) run on pooled exclusive
//! connections: they never stall the shared links, their own timeout governs them (not
//! `timeout_ms`), a client that leaves while blocked gives its connection back, and the pool
//! is bounded.

mod common;

use std::io::Write;
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::ops::{metric, wait_for};
use common::{Client, Cluster, Frame, bulk, int, ok};

fn blocked_clients(cluster: &Cluster, backend: usize) -> i64 {
    let info = cluster
        .backend(backend)
        .cmd_str(&["INFO", "clients"])
        .as_text();
    info.lines()
        .find_map(|l| l.strip_prefix("blocked_clients:"))
        .and_then(|v| v.trim().parse().ok())
        .expect("blocked_clients in INFO")
}

fn exclusive(cluster: &Cluster, state: &str) -> f64 {
    let text = common::ops::http_get(cluster.proxy.admin, "/metrics").body;
    (0..cluster.redis.len())
        .filter_map(|i| {
            metric(
                &text,
                &format!(
                    "shardis_backend_exclusive_connections{{pool=\"main\",backend=\"s{}\",state=\"{state}\"}}",
                    i + 1
                ),
            )
        })
        .sum()
}

#[test]
fn blpop_is_woken_by_a_push_from_another_client_and_does_not_stall_others() {
    let cluster = Cluster::start_with(2, "", "timeout_ms = 500");
    let list = cluster.key_on(0, "queue");
    let other = cluster.key_on(0, "other");
    let mut waiter = cluster.client();
    waiter.send_raw(&Client::encode(&[b"BLPOP", list.as_bytes(), b"0"]));
    wait_for(Duration::from_secs(10), "BLPOP to block on s1", || {
        (blocked_clients(&cluster, 0) == 1).then_some(())
    });
    // Meanwhile the same backend serves everyone else at once, past timeout_ms too.
    let mut c = cluster.client();
    std::thread::sleep(Duration::from_millis(700));
    let t = Instant::now();
    assert_eq!(c.cmd_str(&["SET", &other, "x"]), ok());
    assert_eq!(c.cmd_str(&["GET", &other]), bulk("x"));
    assert!(
        t.elapsed() < Duration::from_millis(400),
        "{:?}",
        t.elapsed()
    );
    // A push wakes it, with its own reply.
    assert_eq!(c.cmd_str(&["LPUSH", &list, "job-1"]), int(1));
    assert_eq!(
        waiter.read_reply(),
        Frame::Array(vec![bulk(&list), bulk("job-1")])
    );
    // The waiter's connection is usable again, and the exclusive connection went back.
    assert_eq!(waiter.cmd_str(&["GET", &other]), bulk("x"));
    wait_for(Duration::from_secs(5), "the lease to end", || {
        (exclusive(&cluster, "leased") == 0.0 && exclusive(&cluster, "idle") == 1.0).then_some(())
    });
}

#[test]
fn the_command_s_own_timeout_governs_not_timeout_ms() {
    let cluster = Cluster::start_with(2, "", "timeout_ms = 300");
    let mut c = cluster.client();
    let t = Instant::now();
    assert_eq!(c.cmd_str(&["BLPOP", "nothing:here", "1.5"]), Frame::Null);
    let took = t.elapsed();
    assert!(
        took >= Duration::from_millis(1400) && took < Duration::from_secs(5),
        "BLPOP 1.5 returned after {took:?}"
    );
    // Commands pipelined behind a blocking one run after it, as in Redis.
    let list = cluster.key_on(1, "later");
    let mut pipeline = Client::encode(&[b"BLPOP", list.as_bytes(), b"0.5"]);
    pipeline.extend(Client::encode(&[b"RPUSH", list.as_bytes(), b"a"]));
    c.send_raw(&pipeline);
    assert_eq!(
        c.read_reply(),
        Frame::Null,
        "the push after BLPOP must not wake it"
    );
    assert_eq!(c.read_reply(), int(1));
}

#[test]
fn multi_key_forms_work_on_one_backend_and_are_refused_across_backends() {
    let cluster = Cluster::start(3);
    let mut c = cluster.client();
    assert_eq!(c.cmd_str(&["RPUSH", "{q}:b", "x"]), int(1));
    assert_eq!(
        c.cmd_str(&["BLPOP", "{q}:a", "{q}:b", "1"]),
        Frame::Array(vec![bulk("{q}:b"), bulk("x")])
    );
    assert_eq!(c.cmd_str(&["RPUSH", "{q}:src", "1", "2"]), int(2));
    assert_eq!(
        c.cmd_str(&["BLMOVE", "{q}:src", "{q}:dst", "LEFT", "RIGHT", "1"]),
        bulk("1")
    );
    assert_eq!(
        c.cmd_str(&["BRPOPLPUSH", "{q}:src", "{q}:dst", "1"]),
        bulk("2")
    );
    assert_eq!(
        c.cmd_str(&["BLMPOP", "1", "2", "{q}:none", "{q}:dst", "LEFT"]),
        Frame::Array(vec![bulk("{q}:dst"), Frame::Array(vec![bulk("2")])])
    );
    assert_eq!(c.cmd_str(&["ZADD", "{q}:z", "1", "m"]), int(1));
    assert_eq!(
        c.cmd_str(&["BZPOPMIN", "{q}:z", "1"]),
        Frame::Array(vec![bulk("{q}:z"), bulk("m"), bulk("1")])
    );
    let a = cluster.key_on(0, "a");
    let b = cluster.key_on(1, "b");
    assert!(matches!(
        c.cmd_str(&["BLPOP", &a, &b, "1"]),
        Frame::Error(e) if e.starts_with("CROSSSLOT")
    ));
    // A bad key count is Redis's own error.
    assert_eq!(
        c.cmd_str(&["BLMPOP", "1", "0", "k", "LEFT"]),
        Frame::Error("ERR numkeys should be greater than 0".into())
    );
}

#[test]
fn xread_block_waits_for_xadd_and_xread_without_block_is_plain() {
    let cluster = Cluster::start(2);
    let mut c = cluster.client();
    assert!(matches!(
        c.cmd_str(&["XADD", "{s}:st", "1-1", "f", "v"]),
        Frame::Bulk(_)
    ));
    assert!(matches!(
        c.cmd_str(&["XREAD", "COUNT", "10", "STREAMS", "{s}:st", "0"]),
        Frame::Array(_)
    ));
    let mut waiter = cluster.client();
    waiter.send_raw(&Client::encode(&[
        b"XREAD", b"BLOCK", b"0", b"STREAMS", b"{s}:st", b"$",
    ]));
    let home = cluster.route(&["{s}:st"])[0];
    wait_for(Duration::from_secs(10), "XREAD to block", || {
        (blocked_clients(&cluster, home) == 1).then_some(())
    });
    assert!(matches!(
        c.cmd_str(&["XADD", "{s}:st", "2-1", "f", "w"]),
        Frame::Bulk(_)
    ));
    let Frame::Array(streams) = waiter.read_reply() else {
        panic!("XREAD did not return its stream");
    };
    assert_eq!(streams.len(), 1);
}

#[test]
fn a_client_that_leaves_while_blocked_gives_its_connection_back() {
    let cluster = Cluster::start(1);
    for round in 0..3 {
        let mut s = TcpStream::connect(cluster.proxy.addr).expect("connect");
        s.write_all(&Client::encode(&[b"BLPOP", b"never", b"0"]))
            .expect("write");
        wait_for(Duration::from_secs(10), "BLPOP to block", || {
            (blocked_clients(&cluster, 0) == 1).then_some(())
        });
        drop(s);
        // CLIENT UNBLOCK frees the backend connection at once, not when BLPOP's timeout
        // (here: never) ends, and it goes back to the pool.
        wait_for(Duration::from_secs(5), "the backend to unblock", || {
            (blocked_clients(&cluster, 0) == 0).then_some(())
        });
        wait_for(
            Duration::from_secs(5),
            "the connection to be idle again",
            || {
                (exclusive(&cluster, "leased") == 0.0 && exclusive(&cluster, "idle") == 1.0)
                    .then_some(())
            },
        );
        assert_eq!(
            exclusive(&cluster, "idle"),
            1.0,
            "round {round}: reused, not leaked"
        );
    }
}

#[test]
fn client_unblock_through_the_proxy() {
    let cluster = Cluster::start(2);
    let mut waiter = cluster.client();
    let Frame::Integer(id) = waiter.cmd_str(&["CLIENT", "ID"]) else {
        panic!("CLIENT ID");
    };
    let list = cluster.key_on(1, "ub");
    waiter.send_raw(&Client::encode(&[b"BLPOP", list.as_bytes(), b"0"]));
    wait_for(Duration::from_secs(10), "BLPOP to block", || {
        (blocked_clients(&cluster, 1) == 1).then_some(())
    });
    let mut c = cluster.client();
    assert_eq!(c.cmd_str(&["CLIENT", "UNBLOCK", &id.to_string()]), int(1));
    assert_eq!(waiter.read_reply(), Frame::Null);
    assert_eq!(c.cmd_str(&["CLIENT", "UNBLOCK", &id.to_string()]), int(0));
    // ERROR makes the blocked command fail instead.
    waiter.send_raw(&Client::encode(&[b"BLPOP", list.as_bytes(), b"0"]));
    wait_for(Duration::from_secs(10), "BLPOP to block again", || {
        (blocked_clients(&cluster, 1) == 1).then_some(())
    });
    assert_eq!(
        c.cmd_str(&["CLIENT", "UNBLOCK", &id.to_string(), "ERROR"]),
        int(1)
    );
    assert!(matches!(waiter.read_reply(), Frame::Error(e) if e.starts_with("UNBLOCKED")));
}

#[test]
fn the_pool_is_bounded_and_a_client_over_it_gets_an_error_at_once() {
    let cluster = Cluster::start_with(1, "", "max_exclusive_per_backend = 2");
    let mut waiters: Vec<Client> = (0..2).map(|_| cluster.client()).collect();
    for w in &mut waiters {
        w.send_raw(&Client::encode(&[b"BLPOP", b"bounded", b"0"]));
    }
    wait_for(Duration::from_secs(10), "two clients to block", || {
        (blocked_clients(&cluster, 0) == 2).then_some(())
    });
    let mut third = cluster.client();
    let t = Instant::now();
    let reply = third.cmd_str(&["BLPOP", "bounded", "0"]);
    assert!(
        t.elapsed() < Duration::from_secs(1),
        "it waited {:?}",
        t.elapsed()
    );
    assert!(
        matches!(&reply, Frame::Error(e) if e.contains("max_exclusive_per_backend")),
        "{reply:?}"
    );
    let text = common::ops::http_get(cluster.proxy.admin, "/metrics").body;
    assert_eq!(
        metric(
            &text,
            r#"shardis_backend_exclusive_refused_total{pool="main",backend="s1"}"#
        ),
        Some(1.0)
    );
    assert_eq!(third.cmd_str(&["RPUSH", "bounded", "a", "b"]), int(2));
    let mut got: Vec<Frame> = waiters
        .iter_mut()
        .map(|w| match w.read_reply() {
            Frame::Array(items) if items[0] == bulk("bounded") => items[1].clone(),
            other => panic!("BLPOP: {other:?}"),
        })
        .collect();
    got.sort_by_key(|f| format!("{f:?}"));
    assert_eq!(got, vec![bulk("a"), bulk("b")]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blpop_through_a_real_client_in_both_protocols() {
    let cluster = Cluster::start(2);
    for resp3 in [false, true] {
        let list = format!("rc:list:{resp3}");
        let mut waiter = cluster.connect(resp3).await;
        let mut pusher = cluster.connect(resp3).await;
        let l = list.clone();
        let blocked = tokio::spawn(async move {
            redis::cmd("BLPOP")
                .arg(&l)
                .arg(5)
                .query_async::<Option<(String, String)>>(&mut waiter)
                .await
        });
        tokio::time::sleep(Duration::from_millis(200)).await;
        let _: i64 = redis::cmd("RPUSH")
            .arg(&list)
            .arg("v")
            .query_async(&mut pusher)
            .await
            .expect("RPUSH");
        let got = blocked.await.expect("join").expect("BLPOP");
        assert_eq!(got, Some((list.clone(), "v".to_string())), "resp3={resp3}");
        // A timeout is a null in both protocols.
        let none: Option<(String, String)> = redis::cmd("BLPOP")
            .arg(&list)
            .arg(0.2)
            .query_async(&mut pusher)
            .await
            .expect("BLPOP timeout");
        assert_eq!(none, None);
    }
}
