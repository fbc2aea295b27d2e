//! The `shardis` binary: parse the command line, set up logging and metrics, run.

use std::io::{IsTerminal, Write};
use std::net::SocketAddr;
use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use shardis::config::{Config, Overrides};
use shardis::router::{DistributionKind, HashKind};
use tokio::net::TcpListener;

/// shardis: a sharding Redis proxy. Point Redis clients at it; it spreads keys over several
/// Redis servers with a consistent hash (twemproxy-compatible ketama by default).
#[derive(Parser, Debug)]
#[command(name = "shardis", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    /// TOML configuration file (see config/shardis.toml); re-read on SIGHUP.
    #[arg(long, short = 'c', value_name = "FILE")]
    config: Option<PathBuf>,
    /// Run without a file: one pool with default settings over these backends, each named
    /// "HOST:PORT". Repeat for each backend.
    #[arg(long = "backend", value_name = "HOST:PORT", conflicts_with = "config")]
    backends: Vec<String>,
    /// Client listen address; overrides [server] listen (which speaks TLS when [server.tls]
    /// is set).
    #[arg(long, value_name = "ADDR")]
    listen: Option<SocketAddr>,
    /// Admin HTTP address (/metrics, /healthz, /readyz, /status, /admin API); overrides
    /// [admin] listen.
    #[arg(long, value_name = "ADDR")]
    admin: Option<SocketAddr>,
    /// Worker threads; overrides [server] threads. Default: one per two cores (at least one).
    #[arg(long, value_name = "N")]
    threads: Option<NonZeroUsize>,
    /// Log line format (logs go to stderr).
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    /// Log level or tracing filter, e.g. "info", "debug", "shardis=debug".
    #[arg(long, value_name = "FILTER", default_value = "info")]
    log_level: String,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Validate a configuration file and print the resolved settings; exits 1 listing every problem.
    Check {
        #[arg(long, short = 'c', value_name = "FILE")]
        config: PathBuf,
    },
    /// Print the command support table (Markdown): how shardis serves each Redis command.
    Commands,
    /// Ask a running shardis to re-read its configuration file (POST /admin/reload on its admin
    /// listener); prints the answer and exits 0 if the reload was applied.
    Reload {
        /// The running proxy's admin address.
        #[arg(long, value_name = "ADDR", default_value = shardis::config::DEFAULT_ADMIN_LISTEN)]
        admin: SocketAddr,
    },
    /// Print where each KEY goes, as the running proxy routes it: "KEY<TAB>POOL<TAB>BACKEND<TAB>ADDRESS"
    /// (the pool its route or the catch-all names, and the backend its key as sent hashes to;
    /// for a cluster pool BACKEND is "slot N" and ADDRESS the primary that owns it now, asked
    /// of the seeds). A key that no route takes is reported on stderr, and the exit code is 1.
    Route {
        #[arg(long, short = 'c', value_name = "FILE")]
        config: PathBuf,
        /// Keys may start with '-' (anything after the first key is a key).
        #[arg(value_name = "KEY", required = true, allow_hyphen_values = true)]
        keys: Vec<String>,
    },
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match &cli.command {
        Some(Command::Check { config }) => check(config),
        Some(Command::Route { config, keys }) => route(config, keys),
        Some(Command::Reload { admin }) => reload(*admin),
        Some(Command::Commands) => {
            print!("{}", shardis::protocol::table::support_table());
            ExitCode::SUCCESS
        }
        None => run(&cli),
    }
}

/// Gives every allocation of 128 KiB or more (a client's read-ahead or output past that) its
/// own mapping, returned to the system when freed. By default glibc raises this threshold after
/// each large free and serves later large buffers from its heaps, which keep freed memory
/// resident: after clients closed for memory, RSS would stay at its peak while the next ones
/// grow elsewhere, and `max_client_memory` would not bound it.
fn map_large_buffers() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets a parameter of glibc's allocator; it is called before any other
    // thread starts.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 128 * 1024);
        // Fixing one threshold fixes the other too, at 128 KiB: the heap would then be
        // trimmed and grown again all the time. 16 MiB is within what glibc would reach.
        libc::mallopt(libc::M_TRIM_THRESHOLD, 16 * 1024 * 1024);
    }
}

fn check(path: &Path) -> ExitCode {
    match Config::load(path) {
        Ok(config) => {
            println!("{}", config.describe());
            for pool in &config.pools {
                if pool.distribution == DistributionKind::Ketama && pool.hash == HashKind::Crc32 {
                    println!(
                        "warning: pools {:?}: crc32 is a 15-bit hash; with ketama nearly every \
                         key lands on one backend (as in twemproxy). Prefer fnv1a_64, murmur or xxh3.",
                        pool.name
                    );
                }
                if pool
                    .tls
                    .as_ref()
                    .is_some_and(|t| t.files.insecure_skip_verify)
                {
                    println!(
                        "warning: pools {:?}: tls_insecure_skip_verify = true: the backends' \
                         certificates are NOT verified; set tls_ca instead.",
                        pool.name
                    );
                }
            }
            println!("{}: OK", path.display());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{}: {e}", path.display());
            ExitCode::FAILURE
        }
    }
}

fn reload(admin: SocketAddr) -> ExitCode {
    use std::io::Read;
    use std::time::Duration;
    let result = (|| -> std::io::Result<(u16, String)> {
        let mut s = std::net::TcpStream::connect_timeout(&admin, Duration::from_secs(5))?;
        s.set_read_timeout(Some(Duration::from_secs(30)))?;
        write!(
            s,
            "POST /admin/reload HTTP/1.1\r\nHost: {admin}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        )?;
        let mut raw = String::new();
        s.read_to_string(&mut raw)?;
        let (head, body) = raw.split_once("\r\n\r\n").unwrap_or((&raw, ""));
        let status = head
            .split(' ')
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        Ok((status, body.to_string()))
    })();
    match result {
        Ok((200, body)) => {
            println!("{}", body.trim_end());
            ExitCode::SUCCESS
        }
        Ok((status, body)) => {
            eprintln!("shardis reload: HTTP {status}: {}", body.trim_end());
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("shardis reload: cannot reach the admin listener at {admin}: {e}");
            ExitCode::FAILURE
        }
    }
}

fn route(path: &Path, keys: &[String]) -> ExitCode {
    let config = match Config::load(path) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("{}: {e}", path.display());
            return ExitCode::FAILURE;
        }
    };
    // The same routes and rings as the proxy's table, built from the same file.
    let routes = shardis::routing::Routes::new(&config.routing);
    let rings: Vec<_> = config.pools.iter().map(|p| p.ring()).collect();
    let mut layouts = std::collections::HashMap::new();
    let mut code = ExitCode::SUCCESS;
    for key in keys {
        let located = match &routes {
            None => config
                .catch_all()
                .map(|pool| (pool, 0))
                .ok_or_else(|| "no pool".to_string()),
            Some(r) => r
                .locate(key.as_bytes())
                .map(|l| (l.pool, l.strip))
                .map_err(|e| e.to_string()),
        };
        let (index, strip) = match located {
            Ok(found) => found,
            Err(e) => {
                eprintln!("{key}: {e}");
                code = ExitCode::FAILURE;
                continue;
            }
        };
        let pool = &config.pools[index];
        let sent = &key.as_bytes()[strip..];
        if pool.cluster.is_none() {
            let backend = &pool.backends[rings[index].backend_for(sent)];
            println!(
                "{key}\t{}\t{}\t{}",
                pool.name, backend.name, backend.address
            );
            continue;
        }
        if let std::collections::hash_map::Entry::Vacant(slot) = layouts.entry(index) {
            match cluster_layout(pool) {
                Ok(layout) => slot.insert(layout),
                Err(e) => {
                    eprintln!("shardis route: pool {}: {e}", pool.name);
                    return ExitCode::FAILURE;
                }
            };
        }
        if let Some(layout) = layouts.get(&index) {
            use shardis::cluster::{Route, UNASSIGNED};
            let slot = Route::slot(sent);
            let owner = match layout.owner[slot as usize] {
                UNASSIGNED => "unassigned",
                i => layout.shards[i as usize].primary.as_str(),
            };
            println!("{key}\t{}\tslot {slot}\t{owner}", pool.name);
        }
    }
    code
}

/// The slot map a cluster pool's seeds give now.
fn cluster_layout(pool: &shardis::config::PoolConfig) -> Result<shardis::cluster::Layout, String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the runtime: {e}"))?;
    runtime
        .block_on(shardis::cluster::refresh::from_seeds(pool))
        .map(|(layout, _)| layout)
        .map_err(|e| format!("cannot fetch the slot map from the seeds: {e}"))
}

fn run(cli: &Cli) -> ExitCode {
    map_large_buffers();
    let (config, overrides) = match configure(cli) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let threads = config
        .server
        .threads
        .map_or_else(shardis::workers::default_count, NonZeroUsize::get);
    let runtime = match shardis::workers::start(threads) {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("shardis: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async {
        let shutdown = match shutdown_signal() {
            Ok(signal) => signal,
            Err(e) => {
                eprintln!("shardis: cannot listen for SIGTERM/SIGINT: {e}");
                return ExitCode::FAILURE;
            }
        };
        let reloads = match hangups() {
            Ok(reloads) => reloads,
            Err(e) => {
                eprintln!("shardis: cannot listen for SIGHUP: {e}");
                return ExitCode::FAILURE;
            }
        };
        let prometheus = match shardis::metrics::install() {
            Ok(handle) => Some(handle),
            Err(e) => {
                tracing::warn!("metrics disabled: {e}");
                None
            }
        };
        let Some((listener, plain, admin)) = bind(&config, threads).await else {
            return ExitCode::FAILURE;
        };
        let path = cli.config.clone();
        shardis::server::serve(
            config, path, overrides, listener, plain, admin, prometheus, shutdown, reloads,
        )
        .await;
        tracing::info!("stopped");
        ExitCode::SUCCESS
    })
}

/// The configuration to run (from the file or `--backend` flags, with the command line's
/// overrides applied) and the overrides, after setting up logging; or the exit code.
fn configure(cli: &Cli) -> Result<(Config, Overrides), ExitCode> {
    let config = match (&cli.config, cli.backends.is_empty()) {
        (Some(path), _) => Config::load(path).map_err(|e| format!("{}: {e}", path.display())),
        (None, false) => Config::from_backends(&cli.backends).map_err(|e| e.to_string()),
        (None, true) => {
            Err("nothing to proxy: give --config FILE or --backend HOST:PORT (see --help)".into())
        }
    };
    let mut config = config.map_err(|e| {
        eprintln!("shardis: {e}");
        ExitCode::from(2)
    })?;
    let overrides = Overrides {
        listen: cli.listen,
        admin: cli.admin,
        threads: cli.threads,
    };
    overrides.apply(&mut config);
    if let Err(e) = init_logging(cli) {
        eprintln!("shardis: bad --log-level: {e}");
        return Err(ExitCode::from(2));
    }
    Ok((config, overrides))
}

/// Binds the client listener, the plain one if any, and the admin one, and prints the first
/// stdout line; `None` (after saying why) when one cannot be bound.
async fn bind(
    config: &Config,
    threads: usize,
) -> Option<(TcpListener, Option<TcpListener>, TcpListener)> {
    let listen = |addr: std::net::SocketAddr, what: &'static str| async move {
        TcpListener::bind(addr)
            .await
            .map_err(|e| eprintln!("shardis: cannot listen on {addr}{what}: {e}"))
            .ok()
    };
    let listener = listen(config.server.listen, "").await?;
    let plain = match config.server.plain_listen {
        None => None,
        Some(addr) => Some(listen(addr, " (plain_listen)").await?),
    };
    let admin = listen(config.admin.listen, " (admin)").await?;
    let (addr, admin_addr) = (local(&listener), local(&admin));
    // The first stdout line is a contract with scripts and tests: they read the ports here
    // (", plain on ADDR" is added only with plain_listen).
    let plain_addr = plain
        .as_ref()
        .map_or(String::new(), |l| format!(", plain on {}", local(l)));
    println!("shardis listening on {addr}, admin on {admin_addr}{plain_addr}");
    let _ = std::io::stdout().flush();
    let tls = if config.server.tls.is_some() {
        " (TLS)"
    } else {
        ""
    };
    tracing::info!(
        threads,
        "listening on {addr}{tls}, admin on {admin_addr}{plain_addr}"
    );
    Some((listener, plain, admin))
}

fn local(listener: &TcpListener) -> String {
    listener
        .local_addr()
        .map_or_else(|e| format!("? ({e})"), |a| a.to_string())
}

fn init_logging(cli: &Cli) -> Result<(), String> {
    let filter =
        tracing_subscriber::EnvFilter::try_new(&cli.log_level).map_err(|e| e.to_string())?;
    // Colours only on a terminal: in a file, journald or a container log they are escape
    // sequences that break grep and log parsers.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    match cli.log_format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    }
    .map_err(|e| e.to_string())
}

/// A channel that gets a message on every SIGHUP (reload the configuration). Registered before
/// the listeners are announced, so an early SIGHUP does not kill the process.
fn hangups() -> std::io::Result<tokio::sync::mpsc::UnboundedReceiver<()>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut hup = signal(SignalKind::hangup())?;
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while hup.recv().await.is_some() {
            if tx.send(()).is_err() {
                return;
            }
        }
    });
    Ok(rx)
}

/// A future that resolves on SIGTERM or SIGINT. The handlers are registered here, before the
/// proxy announces its listeners: a signal that arrives earlier would otherwise still have its
/// default action and kill the process instead of draining it.
fn shutdown_signal() -> std::io::Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    Ok(async move {
        tokio::select! {
            _ = int.recv() => tracing::info!("SIGINT received"),
            _ = term.recv() => tracing::info!("SIGTERM received"),
        }
    })
}
