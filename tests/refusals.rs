//! Commands that act on whole servers are refused with a clear error, unless the operator
//! enables them with `[server] allow_commands`; then they reach every backend.

mod common;

use common::{Cluster, Frame, bulk, err, ok};

#[test]
fn server_wide_commands_are_refused_with_a_reason() {
    let cluster = Cluster::start(2);
    let mut c = cluster.client();
    let refused: &[&[&str]] = &[
        &["CONFIG", "SET", "maxmemory", "1"],
        &["CONFIG", "RESETSTAT"],
        &["SHUTDOWN"],
        &["DEBUG", "SLEEP", "0"],
        &["MONITOR"],
        &["SYNC"],
        &["PSYNC", "?", "-1"],
        &["REPLICAOF", "NO", "ONE"],
        &["SLAVEOF", "NO", "ONE"],
        &["CLUSTER", "INFO"],
        &["MIGRATE", "h", "1", "k", "0", "1"],
        &["MOVE", "k", "1"],
        &["SWAPDB", "0", "1"],
        &["SELECT", "1"],
    ];
    for args in refused {
        match c.cmd_str(args) {
            Frame::Error(e) => assert!(e.contains("shardis"), "{args:?}: {e}"),
            other => panic!("{args:?} was not refused: {other:?}"),
        }
    }
    assert_eq!(c.cmd_str(&["PING"]), Frame::Simple("PONG".into()));
    assert_eq!(
        c.cmd_str(&["CONFIG", "SET", "maxmemory", "1"]),
        err(
            "ERR shardis refuses 'config|set': it would act on every backend at once. Enable it with [server] allow_commands = [\"config\"]"
        )
    );
    // CONFIG GET only reads, from the first backend, and is served without allow_commands.
    assert_eq!(
        c.cmd_str(&["CONFIG", "GET", "maxmemory"]),
        Frame::Array(vec![bulk("maxmemory"), bulk("0")])
    );
    // Nothing reached a backend.
    for i in 0..2 {
        assert_eq!(
            cluster.backend(i).cmd_str(&["CONFIG", "GET", "maxmemory"]),
            Frame::Array(vec![bulk("maxmemory"), bulk("0")])
        );
    }
}

#[test]
fn allow_commands_enables_them_on_every_backend() {
    let cluster = Cluster::start_with(3, "allow_commands = [\"config\", \"debug\"]", "");
    let mut c = cluster.client();
    assert_eq!(
        c.cmd_str(&["CONFIG", "SET", "maxmemory-policy", "allkeys-lru"]),
        ok()
    );
    for i in 0..3 {
        assert_eq!(
            cluster
                .backend(i)
                .cmd_str(&["CONFIG", "GET", "maxmemory-policy"]),
            Frame::Array(vec![bulk("maxmemory-policy"), bulk("allkeys-lru")])
        );
    }
    assert_eq!(
        c.cmd_str(&["CONFIG", "GET", "maxmemory-policy"]),
        Frame::Array(vec![bulk("maxmemory-policy"), bulk("allkeys-lru")])
    );
    assert_eq!(c.cmd_str(&["DEBUG", "SLEEP", "0"]), ok());
    assert_eq!(c.cmd_str(&["SET", "dbg", "1"]), ok());
    assert!(
        matches!(c.cmd_str(&["DEBUG", "OBJECT", "dbg"]), Frame::Simple(s) if s.contains("encoding:int"))
    );
    // Still refused: not named.
    assert!(matches!(c.cmd_str(&["SAVE"]), Frame::Error(e) if e.contains("allow_commands")));
}
