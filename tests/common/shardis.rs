//! The shardis binary under test, started with a generated config on ports it picks itself.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use super::{Client, STARTUP_DEADLINE, TempDir, log_tail};

/// How long [`Shardis::terminate`] waits for the process to exit after SIGTERM.
const EXIT_DEADLINE: Duration = Duration::from_secs(30);

/// A running shardis process, killed on drop.
pub struct Shardis {
    /// The client listener, as reported by the process.
    pub addr: SocketAddr,
    /// The admin HTTP listener, as reported by the process.
    pub admin: SocketAddr,
    /// The `plain_listen` listener, when there is one.
    pub plain: Option<SocketAddr>,
    child: Child,
    dir: TempDir,
}

impl Shardis {
    /// Writes `config_toml` to a temp file and runs `shardis --config FILE`.
    pub fn start(config_toml: &str) -> Shardis {
        Shardis::start_with_args(config_toml, &[])
    }

    /// Like [`Shardis::start`], with `args` appended to the command line.
    ///
    /// The binary must print, as its first stdout line,
    /// `shardis listening on <addr>, admin on <addr>`; that line (read with a deadline) gives
    /// the ports, so configs can use `listen = "127.0.0.1:0"`. Stderr goes to a log file, see
    /// [`Shardis::stderr`].
    pub fn start_with_args(config_toml: &str, args: &[&str]) -> Shardis {
        Shardis::start_with_env(config_toml, args, &[])
    }

    /// Like [`Shardis::start_with_args`], with environment variables set for the process.
    pub fn start_with_env(config_toml: &str, args: &[&str], env: &[(&str, &str)]) -> Shardis {
        let dir = TempDir::new("shardis");
        let config = dir.path().join("shardis.toml");
        std::fs::write(&config, config_toml).expect("write shardis.toml");
        let mut all = vec!["--config".to_string(), config.display().to_string()];
        all.extend(args.iter().map(|a| a.to_string()));
        Shardis::launch(dir, &all, env)
    }

    /// Writes a new configuration file and sends SIGHUP (a reload).
    pub fn reload(&self, config_toml: &str) {
        std::fs::write(self.config_path(), config_toml).expect("rewrite shardis.toml");
        self.signal("HUP");
    }

    /// The process's CPU time so far (user + system), from /proc.
    pub fn cpu_time(&self) -> std::time::Duration {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.pid()))
            .expect("read /proc/PID/stat");
        let fields: Vec<&str> = stat[stat.rfind(')').map_or(0, |i| i + 2)..]
            .split_whitespace()
            .collect();
        let ticks: u64 =
            fields[11].parse::<u64>().unwrap_or(0) + fields[12].parse::<u64>().unwrap_or(0);
        // USER_HZ is 100 on Linux.
        std::time::Duration::from_millis(ticks * 10)
    }

    /// Runs `shardis ARGS` without writing a config file (for `--backend` mode); the arguments
    /// must choose free listeners (`--listen 127.0.0.1:0 --admin 127.0.0.1:0`).
    pub fn start_cli(args: &[&str]) -> Shardis {
        let all: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        Shardis::launch(TempDir::new("shardis"), &all, &[])
    }

    fn launch(dir: TempDir, args: &[String], env: &[(&str, &str)]) -> Shardis {
        let stderr_path = dir.path().join("stderr.log");
        let stderr = std::fs::File::create(&stderr_path).expect("create stderr.log");
        let mut child = Command::new(env!("CARGO_BIN_EXE_shardis"))
            .args(args)
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .expect("spawn the shardis binary");

        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            let _ = tx.send(lines.next());
            // Keep draining so the process never blocks on a full pipe.
            for _ in lines {}
        });
        let line = match rx.recv_timeout(STARTUP_DEADLINE) {
            Ok(Some(Ok(line))) => line,
            Ok(_) | Err(mpsc::RecvTimeoutError::Disconnected) => {
                let status = child.wait().ok();
                panic!(
                    "shardis exited ({status:?}) before printing its listening line; stderr:\n{}",
                    log_tail(&stderr_path)
                );
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "shardis printed nothing within {STARTUP_DEADLINE:?}; stderr:\n{}",
                    log_tail(&stderr_path)
                );
            }
        };
        let Some((addr, admin, plain)) = parse_listening_line(&line) else {
            let _ = child.kill();
            let _ = child.wait();
            panic!("unexpected first stdout line from shardis: {line:?}");
        };
        Shardis {
            addr,
            admin,
            plain,
            child,
            dir,
        }
    }

    /// A new client connection to the proxy.
    pub fn client(&self) -> Client {
        Client::connect(&self.addr.to_string())
    }

    /// A new TLS client connection to the proxy's (TLS) listener.
    pub fn tls_client(&self, config: std::sync::Arc<rustls::ClientConfig>) -> Client {
        Client::connect_tls(&self.addr.to_string(), config)
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Everything the process wrote to stderr so far (its logs).
    pub fn stderr(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("stderr.log")).unwrap_or_default()
    }

    /// Sends SIGTERM (with the `kill` command) and waits up to 30 s for the exit status.
    /// Panics if the process does not exit in time (it is then killed).
    pub fn terminate(&mut self) -> ExitStatus {
        if let Ok(Some(status)) = self.child.try_wait() {
            return status;
        }
        self.signal("TERM");
        self.wait_exit(EXIT_DEADLINE)
    }

    /// Sends a signal by name ("TERM", "INT") with the `kill` command, without waiting.
    pub fn signal(&self, name: &str) {
        let sent = Command::new("kill")
            .args([&format!("-{name}"), &self.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(sent.success(), "kill -{name} {} failed", self.child.id());
    }

    /// The exit status if the process has exited.
    pub fn try_exit(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().expect("wait for shardis")
    }

    /// Waits up to `deadline` for the process to exit; panics (after killing it) if it does not.
    pub fn wait_exit(&mut self, deadline: Duration) -> ExitStatus {
        let until = Instant::now() + deadline;
        loop {
            if let Some(status) = self.try_exit() {
                return status;
            }
            if Instant::now() > until {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!(
                    "shardis did not exit within {deadline:?}; stderr:\n{}",
                    log_tail(&self.dir.path().join("stderr.log"))
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// The config file written by [`Shardis::start`] (absent for [`Shardis::start_cli`]).
    pub fn config_path(&self) -> std::path::PathBuf {
        self.dir.path().join("shardis.toml")
    }
}

impl Drop for Shardis {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Parses `shardis listening on <addr>, admin on <addr>[, plain on <addr>]`.
fn parse_listening_line(line: &str) -> Option<(SocketAddr, SocketAddr, Option<SocketAddr>)> {
    let rest = line.trim().strip_prefix("shardis listening on ")?;
    let (addr, rest) = rest.split_once(", admin on ")?;
    let (admin, plain) = match rest.split_once(", plain on ") {
        Some((admin, plain)) => (admin, Some(plain.parse().ok()?)),
        None => (rest, None),
    };
    Some((addr.parse().ok()?, admin.parse().ok()?, plain))
}

/// A shardis TOML config for `backends` (name, "host:port") in one pool "main", with
/// `listen` and `[admin] listen` on 127.0.0.1:0. `extra_pool` lines (like `hash = "md5"`)
/// are added to the `[[pools]]` table.
pub fn shardis_config(backends: &[(&str, String)], extra_pool: &str) -> String {
    let mut out = String::from(
        "[server]\nlisten = \"127.0.0.1:0\"\n\n[admin]\nlisten = \"127.0.0.1:0\"\n\n[[pools]]\nname = \"main\"\n",
    );
    for line in extra_pool.lines() {
        out.push_str(line.trim());
        out.push('\n');
    }
    out.push_str("backends = [\n");
    for (name, address) in backends {
        out.push_str(&format!(
            "  {{ name = {}, address = {} }},\n",
            toml_string(name),
            toml_string(address)
        ));
    }
    out.push_str("]\n");
    out
}

/// A TOML basic string.
fn toml_string(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}
