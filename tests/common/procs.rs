//! redis-server and nutcracker (twemproxy) processes on free loopback ports.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{
    Client, Pki, START_ATTEMPTS, STARTUP_DEADLINE, TempDir, find_program, free_port, log_tail,
};

/// How a redis-server speaks TLS (only TLS: its plain port is off), and how the harness
/// connects to it.
#[derive(Clone)]
pub struct RedisTls {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub ca: PathBuf,
    /// `--tls-auth-clients yes`: clients must show a certificate signed by `ca`.
    pub auth_clients: bool,
    /// What the harness's own connections use (with a client certificate).
    pub client: Arc<rustls::ClientConfig>,
}

/// A redis-server on 127.0.0.1:`port`, without persistence, with DEBUG allowed from loopback,
/// killed on drop.
pub struct Redis {
    /// The port it listens on.
    pub port: u16,
    /// The address it listens on.
    ip: String,
    child: Child,
    dir: TempDir,
    tls: Option<RedisTls>,
}

impl Redis {
    /// Starts a redis-server on a free port and waits until it answers PING.
    pub fn start() -> Redis {
        Redis::start_with_tls(None)
    }

    /// Starts a redis-server that speaks only TLS, with `pki`'s server certificate, trusting
    /// `pki`'s CA; with `auth_clients`, it requires a client certificate signed by that CA.
    pub fn start_tls(pki: &Pki, auth_clients: bool) -> Redis {
        Redis::start_with_tls(Some(RedisTls {
            cert: pki.server.cert.clone(),
            key: pki.server.key.clone(),
            ca: pki.ca.clone(),
            auth_clients,
            client: pki.client_config(true),
        }))
    }

    fn start_with_tls(tls: Option<RedisTls>) -> Redis {
        let dir = TempDir::new("redis");
        for _ in 0..START_ATTEMPTS {
            let port = free_port();
            if let Some(child) = spawn_redis_on("127.0.0.1", port, dir.path(), tls.as_ref()) {
                return Redis {
                    port,
                    ip: "127.0.0.1".into(),
                    child,
                    dir,
                    tls,
                };
            }
        }
        panic!(
            "redis-server did not start after {START_ATTEMPTS} attempts; log:\n{}",
            log_tail(&dir.path().join("redis.log"))
        );
    }

    /// Starts a redis-server bound to `ip` on `port` (for tests that give several servers the
    /// same port on different loopback addresses); `None` if the port is taken there.
    pub fn start_on(ip: &str, port: u16) -> Option<Redis> {
        let dir = TempDir::new("redis");
        let child = spawn_redis_on(ip, port, dir.path(), None)?;
        Some(Redis {
            port,
            ip: ip.into(),
            child,
            dir,
            tls: None,
        })
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Kills the server (SIGKILL, like a crash) and waits until it is gone; its port is free
    /// afterwards until [`Redis::restart`].
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Starts a fresh, empty server on the same port after [`Redis::kill`], retrying until
    /// [`STARTUP_DEADLINE`] while the port is still held by the closing sockets of the old one.
    pub fn restart(&mut self) {
        let deadline = Instant::now() + STARTUP_DEADLINE;
        loop {
            if let Some(child) =
                spawn_redis_on(&self.ip, self.port, self.dir.path(), self.tls.as_ref())
            {
                self.child = child;
                return;
            }
            assert!(
                Instant::now() < deadline,
                "redis-server did not restart on port {}; log:\n{}",
                self.port,
                log_tail(&self.dir.path().join("redis.log"))
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// "ip:port" (127.0.0.1 unless started with [`Redis::start_on`]).
    pub fn addr(&self) -> String {
        format!("{}:{}", self.ip, self.port)
    }

    /// A new connection to this server (over TLS for a TLS server).
    pub fn client(&self) -> Client {
        match &self.tls {
            None => Client::connect(&self.addr()),
            Some(tls) => Client::connect_tls(&self.addr(), tls.client.clone()),
        }
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("redis.log")).unwrap_or_default()
    }

    /// Sends `DEBUG SLEEP secs` on a new direct connection and returns it (its `+OK` comes when
    /// the sleep ends) once the server really sleeps: its main thread waits in nanosleep, per
    /// /proc/PID/wchan. A request sent afterwards, through the proxy or not, is then certain to
    /// wait for the sleep, however loaded the machine is.
    pub fn debug_sleep(&self, secs: f64) -> Client {
        let mut c = self.client();
        c.send_raw(&Client::encode(&[
            b"DEBUG",
            b"SLEEP",
            secs.to_string().as_bytes(),
        ]));
        let wchan = format!("/proc/{}/wchan", self.pid());
        let deadline = Instant::now() + STARTUP_DEADLINE;
        loop {
            let now = std::fs::read_to_string(&wchan).unwrap_or_default();
            if now.contains("nanosleep") {
                return c;
            }
            assert!(
                Instant::now() < deadline,
                "redis-server did not start sleeping ({wchan}: {now:?})"
            );
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}

/// redis-server with what every test server shares: no persistence, DEBUG allowed (fault
/// tests make a backend slow with DEBUG SLEEP, which Redis 7 refuses by default), its files
/// and log in `dir`, no stdio. The caller adds its own arguments and spawns it; the log's path
/// comes back for error messages.
pub(crate) fn redis_server_command(dir: &Path) -> (Command, PathBuf) {
    let program = find_program("redis-server", "redis-server");
    let log = dir.join("redis.log");
    let mut command = Command::new(&program);
    command
        .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
        .args(["--enable-debug-command", "local"])
        .arg("--dir")
        .arg(dir)
        .arg("--logfile")
        .arg(&log)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    (command, log)
}

/// Runs redis-server on `ip`:`port` in `dir` (that port speaking TLS only, with `tls`);
/// `None` if it exited at startup (port taken).
fn spawn_redis_on(ip: &str, port: u16, dir: &Path, tls: Option<&RedisTls>) -> Option<Child> {
    let (mut command, log) = redis_server_command(dir);
    match tls {
        None => command.args(["--port", &port.to_string()]),
        Some(tls) => command
            .args(["--port", "0", "--tls-port", &port.to_string()])
            .arg("--tls-cert-file")
            .arg(&tls.cert)
            .arg("--tls-key-file")
            .arg(&tls.key)
            .arg("--tls-ca-cert-file")
            .arg(&tls.ca)
            .args([
                "--tls-auth-clients",
                if tls.auth_clients { "yes" } else { "no" },
            ]),
    };
    let child = command
        .args(["--bind", ip])
        .spawn()
        .unwrap_or_else(|e| panic!("spawn redis-server: {e}"));
    let ready = |port| match tls {
        None => answers_ping_on(ip, port),
        Some(tls) => answers_ping_tls(ip, port, tls),
    };
    wait_ready_on(child, ip, port, "redis-server", &log, ready)
}

/// True when the listener on `port` answers PING with PONG. Any failure is false, not a
/// panic: under parallel tests the port may briefly belong to another test's process that
/// closes connections (a draining proxy), and [`wait_ready`] then retries on another port.
fn answers_ping_on(ip: &str, port: u16) -> bool {
    let Ok(mut s) = std::net::TcpStream::connect((ip, port)) else {
        return false;
    };
    let mut pong = [0u8; 7];
    s.set_read_timeout(Some(Duration::from_secs(2))).is_ok()
        && s.write_all(b"PING\r\n").is_ok()
        && s.read_exact(&mut pong).is_ok()
        && &pong == b"+PONG\r\n"
}

/// [`answers_ping_on`] over TLS.
fn answers_ping_tls(ip: &str, port: u16, tls: &RedisTls) -> bool {
    let Ok(mut s) = super::tls::tls_connect(&format!("{ip}:{port}"), tls.client.clone(), ip) else {
        return false;
    };
    let mut pong = [0u8; 7];
    s.sock
        .set_read_timeout(Some(Duration::from_secs(2)))
        .is_ok()
        && s.write_all(b"PING\r\n").is_ok()
        && s.flush().is_ok()
        && s.read_exact(&mut pong).is_ok()
        && &pong == b"+PONG\r\n"
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A nutcracker (twemproxy) with a single pool named `pool`, killed on drop.
pub struct Nutcracker {
    /// The port of the pool's listener.
    pub port: u16,
    child: Child,
    _dir: TempDir,
}

impl Nutcracker {
    /// Starts nutcracker with one redis pool. `yaml_pool_body` holds the pool's keys written
    /// at column 0 (the harness indents them), for example
    /// `"hash: fnv1a_64\ndistribution: ketama\nservers:\n  - 127.0.0.1:7001:1 s1\n"`.
    /// The harness adds `listen` (a free port) and `redis: true`; the stats port is free too.
    pub fn start(yaml_pool_body: &str) -> Nutcracker {
        let program = find_program("nutcracker", "nutcracker");
        let dir = TempDir::new("nutcracker");
        let conf = dir.path().join("nutcracker.yml");
        let log = dir.path().join("nutcracker.log");
        let body: String = yaml_pool_body.lines().map(|l| format!("  {l}\n")).collect();
        for _ in 0..START_ATTEMPTS {
            let port = free_port();
            let stats_port = free_port();
            let yaml = format!("pool:\n  listen: 127.0.0.1:{port}\n  redis: true\n{body}");
            std::fs::write(&conf, &yaml).expect("write nutcracker.yml");
            let child = Command::new(&program)
                .arg("-c")
                .arg(&conf)
                .args(["-s", &stats_port.to_string(), "-a", "127.0.0.1"])
                .arg("-o")
                .arg(&log)
                .arg("-p")
                .arg(dir.path().join("nutcracker.pid"))
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap_or_else(|e| panic!("spawn {}: {e}", program.display()));
            let connect = |port| std::net::TcpStream::connect(("127.0.0.1", port)).is_ok();
            if let Some(child) = wait_ready(child, port, "nutcracker", &log, connect) {
                return Nutcracker {
                    port,
                    child,
                    _dir: dir,
                };
            }
        }
        panic!(
            "nutcracker did not start after {START_ATTEMPTS} attempts; log:\n{}",
            log_tail(&log)
        );
    }

    /// "127.0.0.1:port".
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// A new connection to the pool's listener.
    pub fn client(&self) -> Client {
        Client::connect(&self.addr())
    }
}

impl Drop for Nutcracker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Polls until `ready(port)` holds and the listener on `port` belongs to `child` (not to some
/// other process that won the port race). `None` if the child exited (retry on another port);
/// panics if it is still not ready at the deadline.
fn wait_ready(
    child: Child,
    port: u16,
    what: &str,
    log: &Path,
    ready: impl Fn(u16) -> bool,
) -> Option<Child> {
    wait_ready_on(child, "127.0.0.1", port, what, log, ready)
}

fn wait_ready_on(
    mut child: Child,
    ip: &str,
    port: u16,
    what: &str,
    log: &Path,
    ready: impl Fn(u16) -> bool,
) -> Option<Child> {
    let deadline = Instant::now() + STARTUP_DEADLINE;
    loop {
        if let Ok(Some(_)) = child.try_wait() {
            return None;
        }
        if ready(port) && owns_listener_on(child.id(), ip, port) {
            return Some(child);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "{what} on port {port} not ready after {STARTUP_DEADLINE:?}; log:\n{}",
                log_tail(log)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// True when process `pid` holds the socket listening on 127.0.0.1:`port` (from /proc).
pub(super) fn owns_listener(pid: u32, port: u16) -> bool {
    owns_listener_on(pid, "127.0.0.1", port)
}

/// True when process `pid` holds the socket listening on `ip`:`port` (IPv4, from /proc).
fn owns_listener_on(pid: u32, ip: &str, port: u16) -> bool {
    let Ok(tcp) = std::fs::read_to_string("/proc/net/tcp") else {
        return true; // not Linux: trust the readiness probe
    };
    let octets: Vec<u8> = ip.split('.').filter_map(|o| o.parse().ok()).collect();
    let local = format!(
        "{:02X}{:02X}{:02X}{:02X}:{port:04X}",
        octets.get(3).copied().unwrap_or(0),
        octets.get(2).copied().unwrap_or(0),
        octets.get(1).copied().unwrap_or(0),
        octets.first().copied().unwrap_or(0)
    );
    let inodes: Vec<String> = tcp
        .lines()
        .skip(1)
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            // fields: sl local_address rem_address st ... inode (index 9); 0A = LISTEN
            (f.len() > 9 && f[1] == local && f[3] == "0A").then(|| format!("socket:[{}]", f[9]))
        })
        .collect();
    let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return false;
    };
    fds.flatten().any(|fd| {
        std::fs::read_link(fd.path())
            .map(|target| inodes.iter().any(|i| Path::new(i) == target))
            .unwrap_or(false)
    })
}
