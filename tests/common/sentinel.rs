//! Replicated shards for tests: shards of one primary and one replica (real redis-servers),
//! watched by three sentinels (`redis-server --sentinel`, `down-after-milliseconds` 1000,
//! quorum 2), all on free loopback ports and killed on drop. Every wait polls for a condition
//! with a deadline: sentinels take a few seconds to find each other and to agree.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::{
    Client, Frame, Redis, START_ATTEMPTS, STARTUP_DEADLINE, TempDir, find_program, free_port,
};

/// `down-after-milliseconds` of every master.
pub const DOWN_AFTER_MS: u64 = 1000;
/// How long sentinels may take to agree, or to fail a master over.
pub const SENTINEL_DEADLINE: Duration = Duration::from_secs(45);

/// One shard: its master name, and its two servers (which is primary changes with failovers).
pub struct Shard {
    pub name: String,
    pub nodes: Vec<Redis>,
}

/// A sentinel process.
pub struct SentinelProc {
    pub port: u16,
    child: Child,
    dir: TempDir,
}

impl SentinelProc {
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn client(&self) -> Client {
        Client::connect(&self.addr())
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("sentinel.log")).unwrap_or_default()
    }
}

impl Drop for SentinelProc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Shards and the sentinels that watch them.
pub struct Replicated {
    pub shards: Vec<Shard>,
    pub sentinels: Vec<SentinelProc>,
}

impl Replicated {
    /// `shards` shards (masters `s1`, `s2`, ...) of a primary and a replica, and three
    /// sentinels that know every master, its replica and each other.
    pub fn start(shards: usize) -> Replicated {
        let shards: Vec<Shard> = (1..=shards)
            .map(|i| {
                let primary = Redis::start();
                let replica = Redis::start();
                let reply = replica.client().cmd_str(&[
                    "REPLICAOF",
                    "127.0.0.1",
                    &primary.port.to_string(),
                ]);
                assert_eq!(reply, Frame::Simple("OK".into()), "REPLICAOF");
                Shard {
                    name: format!("s{i}"),
                    nodes: vec![primary, replica],
                }
            })
            .collect();
        for shard in &shards {
            wait_for(STARTUP_DEADLINE, "a replica in sync", || {
                info_field(&shard.nodes[1], "master_link_status") == "up"
            });
        }
        let sentinels = (0..3).map(|_| start_sentinel(&shards)).collect();
        let r = Replicated { shards, sentinels };
        r.wait_agreed();
        r
    }

    /// The sentinels' addresses as a TOML array.
    pub fn sentinels_toml(&self) -> String {
        let list: Vec<String> = self
            .sentinels
            .iter()
            .map(|s| format!("\"{}\"", s.addr()))
            .collect();
        format!("[{}]", list.join(", "))
    }

    /// A shardis config with one hashed pool over every shard by its master name; `extra`
    /// lines go in the pool.
    pub fn shardis_config(&self, extra: &str) -> String {
        let backends: Vec<String> = self
            .shards
            .iter()
            .map(|s| format!("{{ name = \"{0}\", sentinel_master = \"{0}\" }}", s.name))
            .collect();
        format!(
            "[server]\nlisten = \"127.0.0.1:0\"\n\n[admin]\nlisten = \"127.0.0.1:0\"\n\n\
             [[pools]]\nname = \"main\"\nsentinels = {}\nbackends = [{}]\n{extra}\n",
            self.sentinels_toml(),
            backends.join(", ")
        )
    }

    /// Every sentinel knows every master, its replica and the two other sentinels.
    pub fn wait_agreed(&self) {
        wait_for(SENTINEL_DEADLINE, "sentinels to agree", || {
            self.sentinels.iter().all(|s| {
                let mut c = s.client();
                self.shards.iter().all(|shard| {
                    let m = master_info(&mut c, &shard.name);
                    m.get("num-other-sentinels").map(String::as_str) == Some("2")
                        && m.get("num-slaves").map(String::as_str) == Some("1")
                        && m.get("flags").map(String::as_str) == Some("master")
                })
            })
        });
    }

    /// The index (into `shards[shard].nodes`) of the server the sentinels name primary.
    pub fn primary_index(&self, shard: usize) -> usize {
        let addr = self.master_addr(0, shard);
        self.shards[shard]
            .nodes
            .iter()
            .position(|n| n.addr() == addr)
            .unwrap_or_else(|| panic!("{addr} is none of shard {shard}'s servers"))
    }

    /// `host:port` of shard `shard`'s primary as sentinel `sentinel` names it.
    pub fn master_addr(&self, sentinel: usize, shard: usize) -> String {
        let mut c = self.sentinels[sentinel].client();
        match c.cmd_str(&[
            "SENTINEL",
            "get-master-addr-by-name",
            &self.shards[shard].name,
        ]) {
            Frame::Array(a) if a.len() == 2 => format!("{}:{}", a[0].as_text(), a[1].as_text()),
            other => panic!("get-master-addr-by-name: {other:?}"),
        }
    }

    /// The primary of shard `shard`.
    pub fn primary(&self, shard: usize) -> &Redis {
        &self.shards[shard].nodes[self.primary_index(shard)]
    }

    /// The replica of shard `shard`.
    pub fn replica(&self, shard: usize) -> &Redis {
        &self.shards[shard].nodes[1 - self.primary_index(shard)]
    }

    /// Kills shard `shard`'s primary with SIGKILL; returns its address.
    pub fn kill_primary(&mut self, shard: usize) -> String {
        let i = self.primary_index(shard);
        let node = &mut self.shards[shard].nodes[i];
        let addr = node.addr();
        node.kill();
        addr
    }

    /// Stops shard `shard`'s primary with SIGSTOP (it hangs, connections stay open); returns
    /// its pid, for [`Replicated::resume`].
    pub fn stop_primary(&self, shard: usize) -> u32 {
        let pid = self.primary(shard).pid();
        signal(pid, "STOP");
        pid
    }

    /// Resumes a process stopped by [`Replicated::stop_primary`].
    pub fn resume(&self, pid: u32) {
        signal(pid, "CONT");
    }

    /// Asks a sentinel for a planned failover of shard `shard` (`SENTINEL FAILOVER`).
    pub fn failover(&self, shard: usize) {
        let mut c = self.sentinels[0].client();
        let reply = c.cmd_str(&["SENTINEL", "FAILOVER", &self.shards[shard].name]);
        assert_eq!(reply, Frame::Simple("OK".into()), "SENTINEL FAILOVER");
    }

    /// Waits until every sentinel names a primary other than `old` for shard `shard` and that
    /// server says it is a primary; returns its address.
    pub fn wait_new_primary(&self, shard: usize, old: &str) -> String {
        let mut new = String::new();
        wait_for(SENTINEL_DEADLINE, "a new primary", || {
            let addrs: Vec<String> = (0..self.sentinels.len())
                .map(|s| self.master_addr(s, shard))
                .collect();
            if addrs.iter().any(|a| a == old || a != &addrs[0]) {
                return false;
            }
            new = addrs[0].clone();
            let node = self.shards[shard].nodes.iter().find(|n| n.addr() == new);
            node.is_some_and(|n| info_field(n, "role") == "master")
        });
        new
    }

    /// Waits until the old primary of shard `shard` (back, after a planned failover) is a
    /// replica of the new one and in sync.
    pub fn wait_replica_synced(&self, shard: usize) {
        wait_for(SENTINEL_DEADLINE, "the old primary to replicate", || {
            let replica = self.replica(shard);
            info_field(replica, "role") == "slave"
                && info_field(replica, "master_link_status") == "up"
        });
    }
}

/// Starts one sentinel that monitors every shard.
fn start_sentinel(shards: &[Shard]) -> SentinelProc {
    let dir = TempDir::new("sentinel");
    let program = find_program("redis-server", "redis-server");
    for _ in 0..START_ATTEMPTS {
        let port = free_port();
        let mut conf = format!(
            "port {port}\nbind 127.0.0.1\ndaemonize no\nlogfile \"{}\"\ndir \"{}\"\n",
            dir.path().join("sentinel.log").display(),
            dir.path().display()
        );
        for s in shards {
            let p = &s.nodes[0];
            conf.push_str(&format!(
                "sentinel monitor {0} 127.0.0.1 {1} 2\n\
                 sentinel down-after-milliseconds {0} {DOWN_AFTER_MS}\n\
                 sentinel failover-timeout {0} 10000\n\
                 sentinel parallel-syncs {0} 1\n",
                s.name, p.port
            ));
        }
        let path = dir.path().join("sentinel.conf");
        std::fs::write(&path, conf).expect("write sentinel.conf");
        let mut child = Command::new(&program)
            .arg(&path)
            .arg("--sentinel")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn redis-server --sentinel");
        let deadline = Instant::now() + STARTUP_DEADLINE;
        loop {
            if let Ok(Some(_)) = child.try_wait() {
                break; // the port was taken: try another
            }
            if let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) {
                use std::io::{Read, Write};
                let mut pong = [0u8; 7];
                let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
                if s.write_all(b"PING\r\n").is_ok()
                    && s.read_exact(&mut pong).is_ok()
                    && &pong == b"+PONG\r\n"
                {
                    return SentinelProc { port, child, dir };
                }
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    panic!(
        "sentinel did not start; log:\n{}",
        super::log_tail(&dir.path().join("sentinel.log"))
    );
}

/// `SENTINEL master NAME` as a map.
fn master_info(c: &mut Client, name: &str) -> std::collections::HashMap<String, String> {
    let mut out = std::collections::HashMap::new();
    if let Frame::Array(items) = c.cmd_str(&["SENTINEL", "master", name]) {
        for kv in items.chunks(2) {
            if let [k, v] = kv {
                out.insert(k.as_text(), v.as_text());
            }
        }
    }
    out
}

/// One field of `INFO` on `node` (empty when absent or the server does not answer).
pub fn info_field(node: &Redis, name: &str) -> String {
    let Ok(s) = std::net::TcpStream::connect(node.addr()) else {
        return String::new();
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    let mut c = Client::from_stream(s);
    let text = c.cmd_str(&["INFO"]).as_text();
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{name}:")))
        .map(|v| v.trim().to_string())
        .unwrap_or_default()
}

/// Sends signal `name` (`STOP`, `CONT`) to `pid`.
fn signal(pid: u32, name: &str) {
    let status = Command::new("kill")
        .args([&format!("-{name}"), &pid.to_string()])
        .status()
        .expect("run kill");
    assert!(status.success(), "kill -{name} {pid}");
}

/// Polls `ready` until it holds, or panics after `deadline` naming `what`.
pub fn wait_for(deadline: Duration, what: &str, mut ready: impl FnMut() -> bool) {
    let until = Instant::now() + deadline;
    while !ready() {
        assert!(Instant::now() < until, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}
