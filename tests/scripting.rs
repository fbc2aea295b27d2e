//! Scripts and functions through shardis: SCRIPT and FUNCTION management reach every backend,
//! so EVALSHA and FCALL work whatever backend their keys live on; a script without keys runs
//! in the proxy (tests/cross_shard.rs has the rest).

mod common;

use common::{Cluster, Frame, bulk, err, int, ok};

const GET_SCRIPT: &str = "return redis.call('GET', KEYS[1])";

#[test]
fn script_load_reaches_every_backend_and_evalsha_works_anywhere() {
    let cluster = Cluster::start(3);
    let mut c = cluster.client();
    let Frame::Bulk(sha) = c.cmd_str(&["SCRIPT", "LOAD", GET_SCRIPT]) else {
        panic!("SCRIPT LOAD did not return a sha");
    };
    let sha = String::from_utf8(sha).expect("sha");
    for i in 0..3 {
        assert_eq!(
            cluster.backend(i).cmd_str(&["SCRIPT", "EXISTS", &sha]),
            Frame::Array(vec![int(1)]),
            "s{}",
            i + 1
        );
        let key = cluster.key_on(i, "script");
        assert_eq!(c.cmd_str(&["SET", &key, &format!("v{i}")]), ok());
        assert_eq!(
            c.cmd_str(&["EVALSHA", &sha, "1", &key]),
            bulk(format!("v{i}"))
        );
        assert_eq!(
            c.cmd_str(&["EVALSHA_RO", &sha, "1", &key]),
            bulk(format!("v{i}"))
        );
        assert_eq!(
            c.cmd_str(&["EVAL_RO", GET_SCRIPT, "1", &key]),
            bulk(format!("v{i}"))
        );
    }
    // SCRIPT EXISTS says 1 only when every backend has the script.
    let Frame::Bulk(partial) = cluster.backend(1).cmd_str(&["SCRIPT", "LOAD", "return 7"]) else {
        panic!("SCRIPT LOAD on s2");
    };
    let partial = String::from_utf8(partial).expect("sha");
    assert_eq!(
        c.cmd_str(&["SCRIPT", "EXISTS", &sha, &partial, &"0".repeat(40)]),
        Frame::Array(vec![int(1), int(0), int(0)])
    );
    assert_eq!(c.cmd_str(&["SCRIPT", "FLUSH"]), ok());
    assert_eq!(
        c.cmd_str(&["SCRIPT", "EXISTS", &sha]),
        Frame::Array(vec![int(0)])
    );
    assert_eq!(
        c.cmd_str(&["EVALSHA", &sha, "1", "k"]),
        err("NOSCRIPT No matching script. Please use EVAL.")
    );
    assert_eq!(
        c.cmd_str(&["SCRIPT", "KILL"]),
        err("NOTBUSY No scripts in execution right now.")
    );
}

#[test]
fn a_keyless_script_runs_in_the_proxy_and_its_calls_follow_their_keys() {
    let cluster = Cluster::start(3);
    let mut c = cluster.client();
    assert_eq!(c.cmd_str(&["EVAL", "return 1", "0"]), int(1));
    assert_eq!(
        c.cmd_str(&[
            "EVAL",
            "redis.call('SET', 'eval:keyless', 'x') return 1",
            "0"
        ]),
        int(1)
    );
    let owner = cluster.holder(b"eval:keyless");
    assert_eq!(
        cluster.backend(owner).cmd_str(&["GET", "eval:keyless"]),
        bulk("x")
    );
    // Redis's own errors for bad key counts.
    assert_eq!(
        c.cmd_str(&["EVAL", "return 1", "-1"]),
        err("ERR Number of keys can't be negative")
    );
    assert_eq!(
        c.cmd_str(&["EVAL", "return 1", "3", "a"]),
        err("ERR Number of keys can't be greater than number of args")
    );
}

#[test]
fn functions_are_loaded_everywhere_and_fcall_follows_its_keys() {
    let cluster = Cluster::start(3);
    let mut c = cluster.client();
    let lib = "#!lua name=shardislib\nredis.register_function('getk', function(keys, args) return redis.call('GET', keys[1]) end)\nredis.register_function{function_name='ro', callback=function(keys, args) return 'ro' end, flags={'no-writes'}}";
    assert_eq!(c.cmd_str(&["FUNCTION", "LOAD", lib]), bulk("shardislib"));
    for i in 0..3 {
        let key = cluster.key_on(i, "fn");
        assert_eq!(c.cmd_str(&["SET", &key, &format!("f{i}")]), ok());
        assert_eq!(
            c.cmd_str(&["FCALL", "getk", "1", &key]),
            bulk(format!("f{i}"))
        );
        assert_eq!(c.cmd_str(&["FCALL_RO", "ro", "1", &key]), bulk("ro"));
    }
    assert_eq!(c.cmd_str(&["FCALL_RO", "ro", "0"]), bulk("ro"));
    let Frame::Array(list) = c.cmd_str(&["FUNCTION", "LIST"]) else {
        panic!("FUNCTION LIST");
    };
    assert_eq!(list.len(), 1);
    let Frame::Bulk(dump) = c.cmd_str(&["FUNCTION", "DUMP"]) else {
        panic!("FUNCTION DUMP");
    };
    assert_eq!(c.cmd_str(&["FUNCTION", "DELETE", "shardislib"]), ok());
    assert_eq!(
        c.cmd_str(&["FUNCTION", "DELETE", "shardislib"]),
        err("ERR Library not found")
    );
    assert_eq!(c.cmd(&[b"FUNCTION", b"RESTORE", &dump]), ok());
    for i in 0..3 {
        assert!(
            matches!(cluster.backend(i).cmd_str(&["FUNCTION", "LIST"]), Frame::Array(l) if l.len() == 1),
            "s{} has the restored library",
            i + 1
        );
    }
    assert_eq!(c.cmd_str(&["FUNCTION", "FLUSH"]), ok());
    assert_eq!(c.cmd_str(&["FUNCTION", "LIST"]), Frame::Array(vec![]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_client_s_script_helper_falls_back_from_evalsha_to_eval() {
    let cluster = Cluster::start(3);
    for resp3 in [false, true] {
        let mut con = cluster.connect(resp3).await;
        // redis::Script sends EVALSHA, and EVAL (which caches it) on NOSCRIPT.
        let script = redis::Script::new(
            "redis.call('INCRBY', KEYS[1], ARGV[1]) return redis.call('GET', KEYS[1])",
        );
        for i in 0..3 {
            let key = cluster.key_on(i, &format!("rc-script-{resp3}"));
            let v: String = script
                .key(&key)
                .arg(5)
                .invoke_async(&mut con)
                .await
                .expect("script");
            assert_eq!(v, "5");
            let v: String = script
                .key(&key)
                .arg(1)
                .invoke_async(&mut con)
                .await
                .expect("script again (EVALSHA)");
            assert_eq!(v, "6");
        }
        let keyless = redis::Script::new("return 'none'");
        let v: String = keyless
            .invoke_async(&mut con)
            .await
            .expect("keyless script");
        assert_eq!(v, "none");
    }
}
