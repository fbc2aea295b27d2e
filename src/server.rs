//! Accept loop, client limits, shutdown and drain.

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use metrics_exporter_prometheus::PrometheusHandle;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, mpsc, watch};
use tokio::task::JoinSet;
use tracing::{info, warn};

use crate::config::{Config, Overrides};
use crate::control::LiveControl;
use crate::metrics::Metrics;
use crate::protocol::command;
use crate::session::{self, Context, Stop};
use crate::state::ProxyState;
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

/// Serves clients on `listener` until `shutdown` resolves, then drains: stops accepting,
/// marks the proxy as draining (readiness fails), lets sessions finish the commands they
/// already read, and gives up on the stragglers after `grace`.
pub async fn run(
    listener: TcpListener,
    ctx: Arc<Context>,
    max_clients: usize,
    grace: Duration,
    shutdown: impl Future<Output = ()>,
) {
    let (stop_tx, stop_rx) = watch::channel(Stop::No);
    let permits = Arc::new(Semaphore::new(max_clients));
    let lingering = Arc::new(Semaphore::new(REFUSALS_LINGERING));
    let mut sessions = JoinSet::new();
    let mut next_id: u64 = 1;
    ctx.state.set_ready();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _peer)) => {
                    let Ok(permit) = permits.clone().try_acquire_owned() else {
                        refuse(stream, &lingering);
                        continue;
                    };
                    let (ctx, stop) = (ctx.clone(), stop_rx.clone());
                    let id = next_id;
                    next_id += 1;
                    // Round-robin over the workers (see crate::workers for why not
                    // SO_REUSEPORT). Worker 0 is this thread.
                    let worker = (id % workers::count() as u64) as usize;
                    match workers::handle(worker).filter(|_| worker != 0) {
                        None => {
                            sessions.spawn(async move {
                                session::run(stream, ctx, id, stop).await;
                                drop(permit);
                            });
                        }
                        Some(handle) => {
                            // Registered again with the worker's own reactor, so its I/O
                            // events wake the session on that thread.
                            let Ok(stream) = stream.into_std() else {
                                continue;
                            };
                            sessions.spawn_on(
                                async move {
                                    if let Ok(stream) = TcpStream::from_std(stream) {
                                        session::run(stream, ctx, id, stop).await;
                                    }
                                    drop(permit);
                                },
                                handle,
                            );
                        }
                    }
                }
                Err(e) => {
                    // Out of file descriptors and similar: pause instead of spinning.
                    warn!("accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            Some(_) = sessions.join_next(), if !sessions.is_empty() => {}
        }
    }
    ctx.state.set_draining();
    drop(listener);
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

/// Starts the backends, the admin server and the client listener for `config`, and serves
/// until `shutdown` resolves. Listeners are bound by the caller (tests bind port 0). Each
/// message on `reloads` (SIGHUP) re-reads `path` and swaps the new configuration in.
#[allow(clippy::too_many_arguments)]
pub async fn serve(
    config: Config,
    path: Option<PathBuf>,
    overrides: Overrides,
    listener: TcpListener,
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
    run(listener, ctx, max_clients, grace, shutdown).await;
    reload_task.abort();
    let _ = admin_stop.send(());
    let _ = admin_task.await;
}
