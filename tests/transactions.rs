//! MULTI / EXEC / DISCARD / WATCH through shardis: a transaction runs on the backend of its
//! keys; a command for another backend makes EXEC abort, and then nothing queued runs; WATCH
//! works across the transaction; and transactions open no backend connection of their own.

mod common;

use common::{Client, Cluster, Frame, bulk, err, int, ok};

const QUEUED: &str = "QUEUED";
const EXECABORT: &str = "EXECABORT Transaction discarded because of previous errors.";

fn queued() -> Frame {
    Frame::Simple(QUEUED.into())
}

#[test]
fn a_transaction_on_one_backend_runs_atomically_and_answers_like_redis() {
    let cluster = Cluster::start(3);
    let mut c = cluster.client();
    assert_eq!(c.cmd_str(&["MULTI"]), ok());
    assert_eq!(c.cmd_str(&["SET", "{user:1}:a", "1"]), queued());
    assert_eq!(c.cmd_str(&["INCR", "{user:1}:a"]), queued());
    assert_eq!(c.cmd_str(&["GET", "{user:1}:a"]), queued());
    assert_eq!(c.cmd_str(&["PING"]), queued());
    assert_eq!(
        c.cmd_str(&["EXEC"]),
        Frame::Array(vec![ok(), int(2), bulk("2"), Frame::Simple("PONG".into())])
    );
    // An empty transaction.
    assert_eq!(c.cmd_str(&["MULTI"]), ok());
    assert_eq!(c.cmd_str(&["EXEC"]), Frame::Array(vec![]));
    // Errors that Redis reports at EXEC come back in their place.
    assert_eq!(c.cmd_str(&["MULTI"]), ok());
    assert_eq!(c.cmd_str(&["SET", "{user:1}:s", "x"]), queued());
    assert_eq!(c.cmd_str(&["INCR", "{user:1}:s"]), queued());
    let Frame::Array(replies) = c.cmd_str(&["EXEC"]) else {
        panic!("EXEC is not an array");
    };
    assert_eq!(replies[0], ok());
    assert!(
        matches!(&replies[1], Frame::Error(e) if e.contains("not an integer")),
        "{replies:?}"
    );
}

#[test]
fn under_refuse_a_command_for_another_backend_aborts_the_transaction_and_nothing_runs() {
    let cluster = Cluster::start_with(3, "cross_shard = \"refuse\"", "");
    let here = cluster.key_on(0, "here");
    let there = cluster.key_on(1, "there");
    let mut c = cluster.client();
    // The client pipelines the whole transaction, as ioredis and node-redis do.
    let mut pipeline = Vec::new();
    for cmd in [
        &["MULTI"][..],
        &["SET", &here, "1"],
        &["SET", &there, "2"],
        &["INCR", &here],
        &["EXEC"],
        &["EXISTS", &here],
        &["EXISTS", &there],
    ] {
        pipeline.extend(Client::encode(
            &cmd.iter().map(|a| a.as_bytes()).collect::<Vec<_>>(),
        ));
    }
    c.send_raw(&pipeline);
    assert_eq!(c.read_reply(), ok());
    assert_eq!(c.read_reply(), queued());
    assert!(
        matches!(c.read_reply(), Frame::Error(e) if e.starts_with("CROSSSLOT")),
        "the second key's command is refused"
    );
    assert_eq!(c.read_reply(), queued());
    assert_eq!(c.read_reply(), err(EXECABORT));
    assert_eq!(c.read_reply(), int(0), "nothing queued ran");
    assert_eq!(c.read_reply(), int(0), "nothing queued ran");
    for i in 0..3 {
        assert_eq!(
            cluster.backend(i).cmd_str(&["DBSIZE"]),
            int(0),
            "s{}",
            i + 1
        );
    }
    // After the abort the connection is out of MULTI.
    assert_eq!(c.cmd_str(&["EXEC"]), err("ERR EXEC without MULTI"));
}

#[test]
fn errors_while_queueing_abort_like_in_redis_and_misuse_is_refused() {
    let cluster = Cluster::start(2);
    let mut c = cluster.client();
    assert_eq!(c.cmd_str(&["EXEC"]), err("ERR EXEC without MULTI"));
    assert_eq!(c.cmd_str(&["DISCARD"]), err("ERR DISCARD without MULTI"));
    assert_eq!(c.cmd_str(&["MULTI"]), ok());
    assert_eq!(
        c.cmd_str(&["MULTI"]),
        err("ERR MULTI calls can not be nested")
    );
    assert_eq!(
        c.cmd_str(&["WATCH", "k"]),
        err("ERR WATCH inside MULTI is not allowed")
    );
    // Neither of those aborts the transaction...
    assert_eq!(c.cmd_str(&["SET", "k", "v"]), queued());
    assert_eq!(c.cmd_str(&["EXEC"]), Frame::Array(vec![ok()]));
    // ...but an unknown command or a wrong arity does, as in Redis.
    for bad in [&["NOSUCH"][..], &["GET"], &["DBSIZE"]] {
        assert_eq!(c.cmd_str(&["MULTI"]), ok());
        assert_eq!(c.cmd_str(&["SET", "k", "w"]), queued());
        assert!(matches!(c.cmd_str(bad), Frame::Error(_)), "{bad:?}");
        assert_eq!(c.cmd_str(&["EXEC"]), err(EXECABORT), "{bad:?}");
        assert_eq!(c.cmd_str(&["GET", "k"]), bulk("v"), "{bad:?}: nothing ran");
    }
    // DISCARD drops everything queued.
    assert_eq!(c.cmd_str(&["MULTI"]), ok());
    assert_eq!(c.cmd_str(&["SET", "k", "discarded"]), queued());
    assert_eq!(c.cmd_str(&["DISCARD"]), ok());
    assert_eq!(c.cmd_str(&["GET", "k"]), bulk("v"));
}

#[test]
fn watch_aborts_exec_when_a_watched_key_changes() {
    let cluster = Cluster::start(3);
    let mut c = cluster.client();
    let mut other = cluster.client();
    assert_eq!(c.cmd_str(&["SET", "{w}:k", "1"]), ok());

    // Unchanged: EXEC runs.
    assert_eq!(c.cmd_str(&["WATCH", "{w}:k"]), ok());
    assert_eq!(c.cmd_str(&["GET", "{w}:k"]), bulk("1"));
    assert_eq!(c.cmd_str(&["MULTI"]), ok());
    assert_eq!(c.cmd_str(&["INCR", "{w}:k"]), queued());
    assert_eq!(c.cmd_str(&["EXEC"]), Frame::Array(vec![int(2)]));

    // Changed by another client: EXEC returns a null and nothing runs.
    assert_eq!(c.cmd_str(&["WATCH", "{w}:k"]), ok());
    assert_eq!(other.cmd_str(&["SET", "{w}:k", "10"]), ok());
    assert_eq!(c.cmd_str(&["MULTI"]), ok());
    assert_eq!(c.cmd_str(&["INCR", "{w}:k"]), queued());
    assert_eq!(c.cmd_str(&["EXEC"]), Frame::Null);
    assert_eq!(c.cmd_str(&["GET", "{w}:k"]), bulk("10"));

    // After EXEC the key is no longer watched.
    assert_eq!(other.cmd_str(&["SET", "{w}:k", "20"]), ok());
    assert_eq!(c.cmd_str(&["MULTI"]), ok());
    assert_eq!(c.cmd_str(&["INCR", "{w}:k"]), queued());
    assert_eq!(c.cmd_str(&["EXEC"]), Frame::Array(vec![int(21)]));

    // UNWATCH and DISCARD end the watch too.
    assert_eq!(c.cmd_str(&["WATCH", "{w}:k"]), ok());
    assert_eq!(c.cmd_str(&["UNWATCH"]), ok());
    assert_eq!(other.cmd_str(&["SET", "{w}:k", "30"]), ok());
    assert_eq!(c.cmd_str(&["MULTI"]), ok());
    assert_eq!(c.cmd_str(&["INCR", "{w}:k"]), queued());
    assert_eq!(c.cmd_str(&["EXEC"]), Frame::Array(vec![int(31)]));

    // Keys on another backend than the watched ones cannot join the transaction.
    let elsewhere = cluster.key_on((cluster.route(&["{w}:k"])[0] + 1) % 3, "elsewhere");
    assert_eq!(c.cmd_str(&["WATCH", "{w}:k"]), ok());
    assert!(
        matches!(c.cmd_str(&["WATCH", &elsewhere]), Frame::Error(e) if e.starts_with("CROSSSLOT"))
    );
    assert_eq!(c.cmd_str(&["MULTI"]), ok());
    assert!(
        matches!(c.cmd_str(&["SET", &elsewhere, "x"]), Frame::Error(e) if e.starts_with("CROSSSLOT"))
    );
    assert_eq!(c.cmd_str(&["EXEC"]), err(EXECABORT));
    assert_eq!(c.cmd_str(&["EXISTS", &elsewhere]), int(0));
}

#[test]
fn transactions_open_no_backend_connections_of_their_own() {
    let cluster = Cluster::start(2);
    let mut c = cluster.client();
    assert_eq!(c.cmd_str(&["PING"]), Frame::Simple("PONG".into()));
    let before = cluster.backend_clients();
    for i in 0..200 {
        assert_eq!(c.cmd_str(&["MULTI"]), ok());
        assert_eq!(c.cmd_str(&["INCR", "{n}:count"]), queued());
        assert_eq!(c.cmd_str(&["EXEC"]), Frame::Array(vec![int(i + 1)]));
    }
    assert_eq!(
        cluster.backend_clients(),
        before,
        "one shared link per backend, as before"
    );
    // WATCH takes one pooled exclusive connection and gives it back: at most one more, reused.
    for _ in 0..50 {
        assert_eq!(c.cmd_str(&["WATCH", "{n}:count"]), ok());
        assert_eq!(c.cmd_str(&["MULTI"]), ok());
        assert_eq!(c.cmd_str(&["INCR", "{n}:count"]), queued());
        assert!(matches!(c.cmd_str(&["EXEC"]), Frame::Array(_)));
    }
    let after: usize = cluster.backend_clients().iter().sum();
    assert!(
        after <= before.iter().sum::<usize>() + 1,
        "WATCH transactions reuse one exclusive connection: {before:?} then {after}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_client_s_pipelined_transaction_is_atomic_and_an_aborted_one_writes_nothing() {
    let cluster = Cluster::start(3);
    let here = cluster.key_on(0, "rc-here");
    let there = cluster.key_on(2, "rc-there");
    for resp3 in [false, true] {
        let mut con = cluster.connect(resp3).await;
        // redis::pipe().atomic() writes MULTI, the commands and EXEC in one go.
        let (a, b): (i64, i64) = redis::pipe()
            .atomic()
            .cmd("INCR")
            .arg("{tx}:a")
            .cmd("INCRBY")
            .arg("{tx}:b")
            .arg(5)
            .query_async(&mut con)
            .await
            .expect("a transaction on hash-tagged keys");
        assert!(a >= 1 && b >= 5);

        // Keys on two backends: run across them (one MULTI/EXEC per backend, under locks).
        let (a, b, c): (String, String, i64) = redis::pipe()
            .atomic()
            .set(&here, "1")
            .set(&there, "2")
            .incr(&here, 1)
            .query_async(&mut con)
            .await
            .expect("a transaction across backends");
        assert_eq!((a.as_str(), b.as_str(), c), ("OK", "OK", 2));
        let exists: i64 = redis::cmd("EXISTS")
            .arg(&here)
            .arg(&there)
            .query_async(&mut con)
            .await
            .expect("EXISTS");
        assert_eq!(exists, 2, "resp3={resp3}");
        let _: i64 = redis::cmd("DEL")
            .arg(&here)
            .arg(&there)
            .query_async(&mut con)
            .await
            .expect("DEL");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_refuse_a_real_client_s_transaction_across_backends_writes_nothing() {
    let cluster = Cluster::start_with(3, "cross_shard = \"refuse\"", "");
    let here = cluster.key_on(0, "rc-here");
    let there = cluster.key_on(2, "rc-there");
    let mut con = cluster.connect(false).await;
    let result: redis::RedisResult<(String, String)> = redis::pipe()
        .atomic()
        .set(&here, "1")
        .set(&there, "2")
        .query_async(&mut con)
        .await;
    let e = result.expect_err("a cross-backend transaction is refused");
    let text = e.to_string().to_ascii_lowercase();
    assert!(
        text.contains("execabort") || text.contains("crossslot"),
        "{e}"
    );
    let exists: i64 = redis::cmd("EXISTS")
        .arg(&here)
        .arg(&there)
        .query_async(&mut con)
        .await
        .expect("EXISTS");
    assert_eq!(exists, 0, "a write of the refused transaction ran");
}
