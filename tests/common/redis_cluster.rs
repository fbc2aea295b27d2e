//! A real Redis Cluster for tests: redis-server processes with `--cluster-enabled yes` on free
//! loopback ports (client and bus port both picked free), each in its own directory with its
//! own nodes.conf, joined with `redis-cli --cluster create`, and waited for by polling until
//! every node says `cluster_state:ok` and agrees on the slots. Killed on drop.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::{Client, Frame, START_ATTEMPTS, STARTUP_DEADLINE, TempDir, find_program, free_port};

/// `cluster-node-timeout`: small, so a failover takes about two seconds.
pub const NODE_TIMEOUT_MS: u64 = 1000;
/// How long the cluster may take to form, settle after a change, or fail over.
pub const SETTLE_DEADLINE: Duration = Duration::from_secs(60);

/// One node of a [`RedisCluster`].
pub struct Node {
    pub port: u16,
    child: Option<Child>,
    dir: TempDir,
}

impl Node {
    /// Starts an empty cluster-enabled redis-server on free ports.
    fn start() -> Node {
        let dir = TempDir::new("cluster-node");
        for _ in 0..START_ATTEMPTS {
            let (port, bus) = (free_port(), free_port());
            if port == bus {
                continue;
            }
            if let Some(child) = spawn(port, bus, dir.path()) {
                return Node {
                    port,
                    child: Some(child),
                    dir,
                };
            }
        }
        panic!(
            "cluster redis-server did not start after {START_ATTEMPTS} attempts; log:\n{}",
            super::log_tail(&dir.path().join("redis.log"))
        );
    }

    /// "127.0.0.1:port".
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// A direct connection to this node.
    pub fn client(&self) -> Client {
        Client::connect(&self.addr())
    }

    pub fn alive(&self) -> bool {
        self.child.is_some()
    }

    /// SIGKILL, like a crash.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// The node's cluster id.
    pub fn id(&self) -> String {
        self.client().cmd_str(&["CLUSTER", "MYID"]).as_text()
    }

    /// One field of `CLUSTER INFO` (empty when unreachable).
    pub fn info_field(&self, name: &str) -> String {
        let Ok(stream) = std::net::TcpStream::connect(self.addr()) else {
            return String::new();
        };
        let mut c = Client::from_stream(stream);
        let text = match c.cmd_str(&["CLUSTER", "INFO"]) {
            Frame::Bulk(b) => String::from_utf8_lossy(&b).into_owned(),
            _ => return String::new(),
        };
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{name}:")))
            .unwrap_or_default()
            .trim()
            .to_string()
    }

    /// A primary, or a replica whose link to its primary is up (so it serves reads).
    pub fn replica_synced(&self) -> bool {
        let Ok(stream) = std::net::TcpStream::connect(self.addr()) else {
            return false;
        };
        let text = match Client::from_stream(stream).cmd_str(&["INFO", "replication"]) {
            Frame::Bulk(b) => String::from_utf8_lossy(&b).into_owned(),
            _ => return false,
        };
        text.contains("role:master") || text.contains("master_link_status:up")
    }

    /// The log, for failure messages.
    pub fn log(&self) -> String {
        super::log_tail(&self.dir.path().join("redis.log"))
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill();
    }
}

fn spawn(port: u16, bus: u16, dir: &Path) -> Option<Child> {
    let (mut command, log) = super::procs::redis_server_command(dir);
    let mut child = command
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
        .args([
            "--cluster-enabled",
            "yes",
            "--cluster-config-file",
            "nodes.conf",
        ])
        .args(["--cluster-port", &bus.to_string()])
        .args(["--cluster-node-timeout", &NODE_TIMEOUT_MS.to_string()])
        .spawn()
        .unwrap_or_else(|e| panic!("spawn redis-server: {e}"));
    let deadline = Instant::now() + STARTUP_DEADLINE;
    loop {
        if let Ok(Some(_)) = child.try_wait() {
            return None;
        }
        if super::procs::owns_listener(child.id(), port) && super::accepts(addr(port)) {
            return Some(child);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "cluster node on {port} not ready; log:\n{}",
                super::log_tail(&log)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn addr(port: u16) -> std::net::SocketAddr {
    std::net::SocketAddr::from(([127, 0, 0, 1], port))
}

/// A Redis Cluster of real redis-servers.
pub struct RedisCluster {
    pub nodes: Vec<Node>,
}

impl RedisCluster {
    /// Three primaries with one replica each, formed and settled.
    pub fn start() -> RedisCluster {
        RedisCluster::start_with(3, 1)
    }

    /// `primaries` primaries with `replicas` replicas each.
    pub fn start_with(primaries: usize, replicas: usize) -> RedisCluster {
        let nodes: Vec<Node> = (0..primaries * (1 + replicas))
            .map(|_| Node::start())
            .collect();
        let cluster = RedisCluster { nodes };
        let mut args: Vec<String> = vec!["--cluster".into(), "create".into()];
        args.extend(cluster.nodes.iter().map(Node::addr));
        args.extend([
            "--cluster-replicas".into(),
            replicas.to_string(),
            "--cluster-yes".into(),
        ]);
        cli(&args);
        cluster.wait_settled();
        cluster
    }

    /// Seed addresses for a shardis config (two of them).
    pub fn seeds(&self) -> Vec<String> {
        self.nodes.iter().take(2).map(Node::addr).collect()
    }

    /// A shardis config with one cluster pool on these seeds; `extra_pool` lines go in the
    /// `[[pools]]` table.
    pub fn shardis_config(&self, extra_pool: &str) -> String {
        let seeds: Vec<String> = self.seeds().iter().map(|s| format!("\"{s}\"")).collect();
        let mut out = format!(
            "[server]\nlisten = \"127.0.0.1:0\"\n\n[admin]\nlisten = \"127.0.0.1:0\"\n\n\
             [[pools]]\nname = \"main\"\nkind = \"cluster\"\nseeds = [{}]\n\
             refresh_interval_ms = 1000\n",
            seeds.join(", ")
        );
        for line in extra_pool.lines() {
            out.push_str(line.trim());
            out.push('\n');
        }
        out
    }

    /// A node that is alive, to ask about the cluster.
    pub fn any(&self) -> &Node {
        self.nodes
            .iter()
            .find(|n| n.alive())
            .expect("a live cluster node")
    }

    /// The index of the node that serves `slot` as primary now (asked of a live node).
    pub fn primary_of(&self, slot: u16) -> usize {
        let Frame::Array(ranges) = self.any().client().cmd_str(&["CLUSTER", "SLOTS"]) else {
            panic!("CLUSTER SLOTS");
        };
        for range in ranges {
            let Frame::Array(f) = range else { continue };
            let (Frame::Integer(a), Frame::Integer(b)) = (&f[0], &f[1]) else {
                continue;
            };
            if (*a..=*b).contains(&(slot as i64)) {
                let Frame::Array(node) = &f[2] else { break };
                let Frame::Integer(port) = node[1] else { break };
                return self
                    .nodes
                    .iter()
                    .position(|n| n.port as i64 == port)
                    .expect("a node of ours");
            }
        }
        panic!("slot {slot} has no primary");
    }

    /// How many slots node `i` owns as primary (asked of a live node).
    pub fn slot_count(&self, i: usize) -> u64 {
        let Frame::Array(ranges) = self.any().client().cmd_str(&["CLUSTER", "SLOTS"]) else {
            panic!("CLUSTER SLOTS");
        };
        let port = Frame::Integer(self.nodes[i].port as i64);
        ranges
            .iter()
            .filter_map(|r| match r {
                Frame::Array(f) => match (&f[0], &f[1], f.get(2)) {
                    (Frame::Integer(a), Frame::Integer(b), Some(Frame::Array(node)))
                        if node.get(1) == Some(&port) =>
                    {
                        Some((b - a + 1) as u64)
                    }
                    _ => None,
                },
                _ => None,
            })
            .sum()
    }

    /// Indexes of the nodes that own slots as primaries now (asked of a live node).
    pub fn primaries(&self) -> Vec<usize> {
        let Frame::Array(ranges) = self.any().client().cmd_str(&["CLUSTER", "SLOTS"]) else {
            panic!("CLUSTER SLOTS");
        };
        let mut out: Vec<usize> = ranges
            .iter()
            .filter_map(|r| match r {
                Frame::Array(f) => match f.get(2) {
                    Some(Frame::Array(node)) => match node.get(1) {
                        Some(Frame::Integer(port)) => {
                            self.nodes.iter().position(|n| n.port as i64 == *port)
                        }
                        _ => None,
                    },
                    _ => None,
                },
                _ => None,
            })
            .collect();
        out.sort();
        out.dedup();
        out
    }

    /// Polls until every live node says `cluster_state:ok`, knows every live node, and
    /// `redis-cli --cluster check` finds the nodes agreeing with all slots covered.
    pub fn wait_settled(&self) {
        let live = self.nodes.iter().filter(|n| n.alive()).count();
        let deadline = Instant::now() + SETTLE_DEADLINE;
        loop {
            let ok = self.nodes.iter().filter(|n| n.alive()).all(|n| {
                n.info_field("cluster_state") == "ok"
                    && n.info_field("cluster_slots_ok") == "16384"
                    && n.info_field("cluster_known_nodes")
                        .parse::<usize>()
                        .unwrap_or(0)
                        >= live
                    && n.replica_synced()
            }) && check(&self.any().addr());
            if ok {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the cluster did not settle within {SETTLE_DEADLINE:?}; a node's log:\n{}",
                self.any().log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Kills node `i` (SIGKILL).
    pub fn kill(&mut self, i: usize) {
        self.nodes[i].kill();
    }

    /// Moves `slots` slots from node `from` to node `to` with `redis-cli --cluster reshard`
    /// (which migrates keys with MIGRATE and sets the slots' owner with CLUSTER SETSLOT).
    pub fn reshard(&self, from: usize, to: usize, slots: usize) {
        let (from_id, to_id) = (self.nodes[from].id(), self.nodes[to].id());
        cli(&[
            "--cluster".into(),
            "reshard".into(),
            self.nodes[from].addr(),
            "--cluster-from".into(),
            from_id,
            "--cluster-to".into(),
            to_id,
            "--cluster-slots".into(),
            slots.to_string(),
            "--cluster-yes".into(),
        ]);
    }

    /// Starts a new empty node and adds it as a primary with `redis-cli --cluster add-node`;
    /// returns its index once every node knows it.
    pub fn add_node(&mut self) -> usize {
        let node = Node::start();
        cli(&[
            "--cluster".into(),
            "add-node".into(),
            node.addr(),
            self.any().addr(),
        ]);
        self.nodes.push(node);
        self.wait_settled();
        self.nodes.len() - 1
    }

    /// `redis-cli --cluster rebalance --cluster-use-empty-masters`.
    pub fn rebalance(&self) {
        cli(&[
            "--cluster".into(),
            "rebalance".into(),
            self.any().addr(),
            "--cluster-use-empty-masters".into(),
            "--cluster-yes".into(),
        ]);
    }
}

/// Runs `redis-cli ARGS`; panics with its output when it fails.
pub fn cli(args: &[String]) -> String {
    let program = find_program("redis-cli", "redis-tools");
    let out = Command::new(&program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("run {}: {e}", program.display()));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && !text.contains("[ERR]"),
        "redis-cli {} failed:\n{text}",
        args.join(" ")
    );
    text
}

/// `redis-cli --cluster check`: the nodes agree and every slot is covered.
fn check(addr: &str) -> bool {
    let program = find_program("redis-cli", "redis-tools");
    let Ok(out) = Command::new(&program)
        .args(["--cluster", "check", addr])
        .stdin(Stdio::null())
        .output()
    else {
        return false;
    };
    let text = String::from_utf8_lossy(&out.stdout);
    out.status.success()
        && text.contains("[OK] All nodes agree about slots configuration.")
        && text.contains("[OK] All 16384 slots covered.")
        && !text.contains("[WARNING]")
        && !text.contains("[ERR]")
}
