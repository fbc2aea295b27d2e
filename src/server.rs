//! Accept loop, client limits, shutdown and drain; the TLS handshake of clients of a TLS
//! listener.

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, mpsc, watch};
use tokio::task::JoinSet;
use tracing::{debug, info, warn};

use crate::config::{Config, Overrides};
use crate::control::LiveControl;
use crate::metrics::Metrics;
use crate::net::Stream;
use crate::protocol::command;
use crate::session::{self, Context, Stop};
use crate::state::ProxyState;
use crate::tls::{HandshakeError, ServerTls};
use crate::topology::Topology;
use crate::workers;

/// How long sessions get to write their error replies once the shutdown grace is over.
const ABANDON_WAIT: Duration = Duration::from_millis(200);

/// What a connection beyond `max_clients` is told, as Redis says it.
const REFUSAL: &[u8] = b"-ERR max number of clients reached\r\n";
/// Refused connections kept open at once so their clients can read the refusal; beyond this
/// (a connection flood) they are closed at once.
const REFUSALS_LINGERING: usize = 64;
/// How long a refused connection is kept open, and how much of its input is read and dropped.
const REFUSAL_LINGER: Duration = Duration::from_secs(1);
const REFUSAL_DRAIN: usize = 64 * 1024;

/// Like Redis: say why, then close. Closing a socket whose input was not read resets the
/// connection, and a reset can make the client lose the refusal (or see only the reset), so the
/// proxy half-closes, reads and drops what the client sent until it closes too, within bounds.
fn refuse(stream: TcpStream, lingering: &Arc<Semaphore>) {
    let _ = stream.try_write(REFUSAL);
    let Ok(slot) = lingering.clone().try_acquire_owned() else {
        return;
    };
    tokio::spawn(async move {
        let mut stream = stream;
        let _ = stream.shutdown().await;
        crate::net::drain_before_close(&mut stream, REFUSAL_DRAIN, REFUSAL_LINGER).await;
        drop(slot);
    });
}

/// Like [`refuse`], over TLS: a client of the TLS listener cannot read a plain refusal. The
/// handshake is run (within its timeout) only while few refusals linger; beyond that the
/// connection is closed at once.
fn refuse_tls(stream: TcpStream, tls: Arc<ServerTls>, lingering: &Arc<Semaphore>) {
    let Ok(slot) = lingering.clone().try_acquire_owned() else {
        return;
    };
    tokio::spawn(async move {
        let accepted = tokio::time::timeout(tls.handshake_timeout, tls.acceptor.accept(stream));
        if let Ok(Ok(mut conn)) = accepted.await {
            let _ = tokio::time::timeout(REFUSAL_LINGER, async {
                let _ = conn.write_all(REFUSAL).await;
                let _ = conn.shutdown().await;
            })
            .await;
        }
        drop(slot);
    });
}

/// How often a failed client TLS handshake is logged at info level; the others in between are
/// logged at debug level (and all are counted).
const HANDSHAKE_LOG_EVERY: Duration = Duration::from_secs(60);

/// Failed client handshakes, for logging them without a line per failure: a port scanner or a
/// plain client on the TLS port must not flood the log.
#[derive(Default)]
struct HandshakeFailures {
    /// When one was last logged at info level, and how many failed since.
    last: Mutex<(Option<Instant>, u64)>,
}

impl HandshakeFailures {
    fn failed(&self, peer: Option<SocketAddr>, e: &HandshakeError) {
        crate::metrics::tls_handshake_failed(matches!(e, HandshakeError::Timeout(_)));
        let peer = peer.map_or_else(|| "?".to_string(), |p| p.to_string());
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        match last.0 {
            Some(at) if now.duration_since(at) < HANDSHAKE_LOG_EVERY => {
                last.1 += 1;
                debug!("client {peer}: {e}");
            }
            _ => {
                let since = std::mem::take(&mut last.1);
                last.0 = Some(now);
                info!(
                    "client {peer}: {e}; connection closed ({since} other failed handshake(s) \
                     since the last report; each is logged at debug level, at most one a \
                     minute here, and counted in shardis_client_tls_handshake_errors_total)"
                );
            }
        }
    }
}

/// The client listeners: `listen` (TLS when `tls` is set, its acceptor swapped by reloads)
/// and `plain_listen`.
pub struct Listeners {
    pub main: TcpListener,
    pub tls: Option<Arc<ArcSwap<ServerTls>>>,
    pub plain: Option<TcpListener>,
}

/// What admitting a client needs: the limits, the ids, and what sessions share.
struct Admission {
    ctx: Arc<Context>,
    stop: watch::Receiver<Stop>,
    permits: Arc<Semaphore>,
    lingering: Arc<Semaphore>,
    failures: Arc<HandshakeFailures>,
    next_id: u64,
}

impl Admission {
    /// Starts a session for an accepted connection (after its TLS handshake, with `tls`), or
    /// refuses it beyond `max_clients`. A client in its handshake holds a slot like any client.
    fn admit(
        &mut self,
        sessions: &mut JoinSet<()>,
        stream: TcpStream,
        peer: SocketAddr,
        tls: Option<Arc<ServerTls>>,
    ) {
        let Ok(permit) = self.permits.clone().try_acquire_owned() else {
            match tls {
                None => refuse(stream, &self.lingering),
                Some(tls) => refuse_tls(stream, tls, &self.lingering),
            }
            return;
        };
        let (ctx, stop) = (self.ctx.clone(), self.stop.clone());
        let id = self.next_id;
        self.next_id += 1;
        let failures = self.failures.clone();
        // Round-robin over the workers (see crate::workers for why not SO_REUSEPORT). Worker 0
        // is this thread. The TLS handshake and relay run on the session's worker too.
        let worker = (id % workers::count() as u64) as usize;
        match workers::handle(worker).filter(|_| worker != 0) {
            None => {
                sessions.spawn(async move {
                    serve_client(stream, peer, tls, ctx, id, stop, &failures).await;
                    drop(permit);
                });
            }
            Some(handle) => {
                // Registered again with the worker's own reactor, so its I/O events wake the
                // session on that thread.
                let Ok(stream) = stream.into_std() else {
                    return;
                };
                sessions.spawn_on(
                    async move {
                        if let Ok(stream) = TcpStream::from_std(stream) {
                            serve_client(stream, peer, tls, ctx, id, stop, &failures).await;
                        }
                        drop(permit);
                    },
                    handle,
                );
            }
        }
    }
}

/// Runs one client's session, after its TLS handshake when it came to the TLS listener.
async fn serve_client(
    stream: TcpStream,
    peer: SocketAddr,
    tls: Option<Arc<ServerTls>>,
    ctx: Arc<Context>,
    id: u64,
    stop: watch::Receiver<Stop>,
    failures: &HandshakeFailures,
) {
    let stream = match tls {
        None => Stream::Tcp(stream),
        Some(tls) => match crate::tls::accept(stream, &tls).await {
            Ok(stream) => stream,
            Err(e) => {
                failures.failed(Some(peer), &e);
                return;
            }
        },
    };
    session::run(stream, ctx, id, stop).await;
}

/// Accepts on `listener`, or never when there is none.
async fn accept_on(listener: &Option<TcpListener>) -> std::io::Result<(TcpStream, SocketAddr)> {
    match listener {
        Some(l) => l.accept().await,
        None => std::future::pending().await,
    }
}

/// Out of file descriptors and similar: pause instead of spinning.
async fn accept_failed(e: std::io::Error) {
    warn!("accept failed: {e}");
    tokio::time::sleep(Duration::from_millis(50)).await;
}

/// Serves clients on the listeners until `shutdown` resolves, then drains: stops accepting,
/// marks the proxy as draining (readiness fails), lets sessions finish the commands they
/// already read, and gives up on the stragglers after `grace`.
pub async fn run(
    listeners: Listeners,
    ctx: Arc<Context>,
    max_clients: usize,
    grace: Duration,
    shutdown: impl Future<Output = ()>,
) {
    let (stop_tx, stop_rx) = watch::channel(Stop::No);
    let mut admission = Admission {
        ctx: ctx.clone(),
        stop: stop_rx,
        permits: Arc::new(Semaphore::new(max_clients)),
        lingering: Arc::new(Semaphore::new(REFUSALS_LINGERING)),
        failures: Arc::new(HandshakeFailures::default()),
        next_id: 1,
    };
    let Listeners { main, tls, plain } = listeners;
    let mut sessions = JoinSet::new();
    ctx.state.set_ready();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            accepted = main.accept() => match accepted {
                Ok((stream, peer)) => {
                    let tls = tls.as_ref().map(|t| t.load_full());
                    admission.admit(&mut sessions, stream, peer, tls);
                }
                Err(e) => accept_failed(e).await,
            },
            accepted = accept_on(&plain) => match accepted {
                Ok((stream, peer)) => admission.admit(&mut sessions, stream, peer, None),
                Err(e) => accept_failed(e).await,
            },
            Some(_) = sessions.join_next(), if !sessions.is_empty() => {}
        }
    }
    ctx.state.set_draining();
    drop(main);
    drop(plain);
    info!(
        "shutting down: draining {} client(s), grace {} ms",
        sessions.len(),
        grace.as_millis()
    );
    let _ = stop_tx.send(Stop::Drain);
    let drained = tokio::time::timeout(grace, async {
        while sessions.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        warn!(
            "shutdown grace of {} ms expired with {} client(s) still busy; answering their \
             waiting commands with an error and closing them",
            grace.as_millis(),
            sessions.len()
        );
        let _ = stop_tx.send(Stop::Abandon);
        let abandoned = tokio::time::timeout(ABANDON_WAIT, async {
            while sessions.join_next().await.is_some() {}
        })
        .await;
        if abandoned.is_err() {
            sessions.abort_all();
        }
    }
}

/// Starts the backends, the admin server and the client listeners for `config` (`listener`
/// speaks TLS when `[server.tls]` is set; `plain` is `plain_listen`), and serves until
/// `shutdown` resolves. Listeners are bound by the caller (tests bind port 0). Each
/// message on `reloads` (SIGHUP) re-reads `path` and swaps the new configuration in.
#[allow(clippy::too_many_arguments)]
pub async fn serve(
    config: Config,
    path: Option<PathBuf>,
    overrides: Overrides,
    listener: TcpListener,
    plain: Option<TcpListener>,
    admin: TcpListener,
    prometheus: Option<PrometheusHandle>,
    shutdown: impl Future<Output = ()>,
    mut reloads: mpsc::UnboundedReceiver<()>,
) {
    let (max_clients, grace) = (config.server.max_clients, config.server.shutdown_grace);
    let topology = Topology::start(config, path, overrides).await;
    let routing = topology.routing().clone();
    let metrics = Arc::new(Metrics::new(&command::names()));
    let state = Arc::new(ProxyState::live(routing.clone()));
    let ctx = Arc::new(Context {
        routing,
        metrics,
        state: state.clone(),
    });
    let reloader = topology.clone();
    let reload_task = tokio::spawn(async move {
        while reloads.recv().await.is_some() {
            info!("SIGHUP: reloading the configuration");
            // The outcome is logged and counted by reload() itself.
            let _ = reloader.reload();
        }
    });
    let (admin_stop, admin_stopped) = tokio::sync::oneshot::channel::<()>();
    let control = Arc::new(LiveControl::new(topology.clone(), state.clone()));
    let admin_task = tokio::spawn(crate::admin::serve(
        admin,
        state,
        prometheus,
        control,
        async {
            let _ = admin_stopped.await;
        },
    ));
    let listeners = Listeners {
        main: listener,
        tls: topology.server_tls(),
        plain,
    };
    run(listeners, ctx, max_clients, grace, shutdown).await;
    reload_task.abort();
    let _ = admin_stop.send(());
    let _ = admin_task.await;
}
