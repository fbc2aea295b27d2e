//! The admin HTTP server: `/metrics` (Prometheus text), `/healthz`, `/readyz`, `/status` (JSON),
//! and the `/admin` API (`POST /admin/reload`, `GET /admin/config`, `GET /admin/backends`,
//! `GET /admin/hotkeys`, `GET /admin/bigkeys`).
//!
//! HTTP/1.1 by hyper, with keep-alive; every connection is bounded in head and body size and in
//! time (head, body, idle, a stalled write), and at most [`MAX_CONNECTIONS`] are served at once,
//! so a slow or hostile client costs one short-lived task at most.

mod api;
mod http;
mod keys;
mod routes;
mod status;

use std::convert::Infallible;
use std::future::{Future, poll_fn};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinHandle;

pub use self::api::mutations_allowed;
pub use self::http::Response;
use self::http::WriteDeadline;
use self::routes::Admin;
pub use self::status::{BackendStatus, Status};
use crate::metrics::UPKEEP_INTERVAL;
use crate::state::ProxyState;

/// What the admin API can ask of the running proxy beyond reading its state.
pub trait Control: Send + Sync + 'static {
    /// Re-reads the configuration file, validates it and swaps it in. `Ok` describes what
    /// changed; `Err` lists every problem (the running configuration stays).
    fn reload(
        &self,
    ) -> std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<serde_json::Value, Vec<String>>> + Send + '_>,
    >;
    /// The live configuration as JSON, secrets masked.
    ///
    /// Shaped like [`crate::config::Config::to_json`]: its `admin.allow_mutations` decides
    /// whether requests that change the proxy are served on a listener that is not loopback
    /// (absent means no).
    fn config(&self) -> serde_json::Value;
    /// The backends as JSON.
    fn backends(&self) -> serde_json::Value;
}

/// Largest request head (request line and headers), in bytes; a larger one gets 431.
pub const MAX_HEAD_BYTES: usize = 8 * 1024;
/// Largest request body, in bytes; a larger one gets 413. No endpoint reads a body today.
pub const MAX_BODY_BYTES: usize = 64 * 1024;
/// Time a client has to send a request head, counted from the end of the previous response on
/// a kept-alive connection (so it is also the idle timeout); then the connection is closed,
/// with a 408 if part of a head had arrived. A request body has as long again.
pub const READ_TIMEOUT: Duration = Duration::from_secs(5);
/// Time a response write may make no progress (the client reads nothing) before the
/// connection is closed.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// Admin connections served at once; further ones wait to be accepted.
pub const MAX_CONNECTIONS: usize = 64;

/// hyper's read buffer per connection: a head, or a slice of a body, fits.
const READ_BUFFER_BYTES: usize = 16 * 1024;
/// Longest time spent discarding a client's leftover input after the last response.
const LINGER: Duration = Duration::from_secs(2);
/// Most leftover input discarded after the last response.
const LINGER_BYTES: usize = 256 * 1024;

/// Serves the admin endpoints on `listener` until `shutdown` completes.
///
/// With a `prometheus` handle, `/metrics` renders it and this server also runs the recorder's
/// upkeep every [`UPKEEP_INTERVAL`]; without one, `/metrics` answers 404. `control` serves the
/// `/admin` API. After shutdown, connections already accepted finish the request they are
/// serving and close.
pub async fn serve(
    listener: TcpListener,
    state: Arc<ProxyState>,
    prometheus: Option<PrometheusHandle>,
    control: Arc<dyn Control>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    let _upkeep = prometheus.clone().map(|handle| {
        AbortOnDrop(tokio::spawn(async move {
            let mut every = tokio::time::interval(UPKEEP_INTERVAL);
            loop {
                every.tick().await;
                handle.run_upkeep();
            }
        }))
    });
    let admin = Arc::new(Admin {
        state,
        prometheus,
        control,
        listener: listener.local_addr().ok(),
    });
    // Dropped when serve returns, which tells every connection to finish up.
    let (_stop, stopping) = watch::channel(());
    let limit = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    tokio::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            _ = &mut shutdown => break,
            permit = limit.clone().acquire_owned() => match permit {
                Ok(p) => p,
                Err(_) => break,
            },
        };
        let (stream, peer) = tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Usually out of file descriptors: back off instead of spinning.
                    tracing::warn!(error = %e, "admin: accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let admin = admin.clone();
        let stopping = stopping.clone();
        tokio::spawn(async move {
            connection(stream, peer, admin, stopping).await;
            drop(permit);
        });
    }
}

/// Aborts the upkeep task when `serve` returns or is dropped.
struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Serves requests on one connection until the client closes it, a limit ends it, or the
/// server stops (`stopping` changes or closes: the request in progress is finished first).
async fn connection(
    stream: TcpStream,
    peer: SocketAddr,
    admin: Arc<Admin>,
    mut stopping: watch::Receiver<()>,
) {
    let service = service_fn(move |request| {
        let admin = admin.clone();
        Box::pin(async move { Ok::<_, Infallible>(answer(&admin, request, peer).await) })
    });
    let mut conn = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(READ_TIMEOUT)
        .max_header_size(MAX_HEAD_BYTES)
        .max_buf_size(READ_BUFFER_BYTES)
        .keep_alive(true)
        .serve_connection(
            TokioIo::new(WriteDeadline::new(stream, WRITE_TIMEOUT)),
            service,
        );
    let mut stop_asked = false;
    // Polled without shutdown so the socket comes back, even after an error, for a last word
    // and the drain below.
    let result = loop {
        tokio::select! {
            result = poll_fn(|cx| conn.poll_without_shutdown(cx)) => break result,
            _ = stopping.changed(), if !stop_asked => {
                stop_asked = true;
                std::pin::Pin::new(&mut conn).graceful_shutdown();
            }
        }
    };
    let parts = conn.into_parts();
    let mut stream = parts.io.into_inner().into_inner();
    if let Err(e) = &result {
        tracing::debug!(error = %e, %peer, "admin: connection ended");
        // hyper closes on a head timeout without a word; part of a head means a client is
        // waiting for an answer, none means an idle keep-alive connection.
        if e.is_timeout() && !parts.read_buf.is_empty() {
            let _ = tokio::time::timeout(
                WRITE_TIMEOUT,
                stream.write_all(&http::head_timeout(READ_TIMEOUT)),
            )
            .await;
        }
    }
    let _ = tokio::time::timeout(WRITE_TIMEOUT, stream.shutdown()).await;
    // An error response (413, 431) to a client still sending must not be lost to a reset.
    crate::net::drain_before_close(&mut stream, LINGER_BYTES, LINGER).await;
}

/// One request: the body is read (bounded) and dropped, then the endpoint answers.
async fn answer(
    admin: &Admin,
    request: hyper::Request<Incoming>,
    peer: SocketAddr,
) -> hyper::Response<http_body_util::Full<bytes::Bytes>> {
    let (head, body) = request.into_parts();
    let declared = head
        .headers
        .get(hyper::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let response = if declared.is_some_and(|n| n > MAX_BODY_BYTES as u64) {
        // Refused before reading any of it.
        http::too_large(MAX_BODY_BYTES)
    } else {
        match http::read_body(body, MAX_BODY_BYTES, READ_TIMEOUT).await {
            Ok(_) => {
                let (path, query) = (head.uri.path(), head.uri.query().unwrap_or(""));
                routes::route(admin, &head.method, path, query, peer).await
            }
            Err(refusal) => refusal,
        }
    };
    if response.status >= 400 {
        tracing::debug!(%peer, method = %head.method, uri = %head.uri, status = response.status, "admin: request refused");
    }
    response.into_http()
}
