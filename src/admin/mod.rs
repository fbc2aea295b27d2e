//! The admin HTTP server: `/metrics` (Prometheus text), `/healthz`, `/readyz`, `/status` (JSON).
//!
//! HTTP is hand-written and minimal: GET only, one request per connection, a bounded request head
//! and a read timeout, so a slow or hostile client costs one short-lived task at most.

mod http;
mod status;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use metrics_exporter_prometheus::PrometheusHandle;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;

pub use self::http::{HeadError, Request, Response};
pub use self::status::{BackendStatus, Status};
use crate::metrics::UPKEEP_INTERVAL;
use crate::state::ProxyState;

/// Largest request head read, in bytes; a larger one gets 431.
pub const MAX_HEAD_BYTES: usize = 8 * 1024;
/// Time a client has to send its request head; then it gets 408.
pub const READ_TIMEOUT: Duration = Duration::from_secs(5);
/// Time allowed to write a response.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// Admin connections served at once; further ones wait to be accepted.
pub const MAX_CONNECTIONS: usize = 64;

/// Serves the admin endpoints on `listener` until `shutdown` completes.
///
/// With a `prometheus` handle, `/metrics` renders it and this server also runs the recorder's
/// upkeep every [`UPKEEP_INTERVAL`]; without one, `/metrics` answers 404. Connections already
/// accepted finish on their own (bounded by the timeouts) after shutdown.
pub async fn serve(
    listener: TcpListener,
    state: Arc<ProxyState>,
    prometheus: Option<PrometheusHandle>,
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
        let stream = tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // Usually out of file descriptors: back off instead of spinning.
                    tracing::warn!(error = %e, "admin: accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let state = state.clone();
        let prometheus = prometheus.clone();
        tokio::spawn(async move {
            answer(stream, &state, prometheus.as_ref()).await;
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

async fn answer(mut stream: TcpStream, state: &ProxyState, prometheus: Option<&PrometheusHandle>) {
    let response = match http::read_request(&mut stream, MAX_HEAD_BYTES, READ_TIMEOUT).await {
        Ok(request) => route(&request, state, prometheus),
        Err(e) => match e.response() {
            Some(r) => {
                tracing::debug!(error = %e, "admin: bad request");
                r
            }
            None => return,
        },
    };
    let write = async {
        stream.write_all(&response.encode()).await?;
        stream.shutdown().await
    };
    match tokio::time::timeout(WRITE_TIMEOUT, write).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::debug!(error = %e, "admin: writing the response failed"),
        Err(_) => tracing::debug!("admin: writing the response timed out"),
    }
    // A 431 to a client still sending must not be lost to a reset.
    crate::net::drain_before_close(&mut stream, LINGER_BYTES, LINGER).await;
}

/// Longest time spent discarding a client's leftover input after answering.
const LINGER: Duration = Duration::from_secs(2);
/// Most leftover input discarded after answering.
const LINGER_BYTES: usize = 256 * 1024;

/// Answers one request: unknown paths get 404, known paths with a method other than GET get 405.
pub fn route(
    request: &Request,
    state: &ProxyState,
    prometheus: Option<&PrometheusHandle>,
) -> Response {
    let known = matches!(
        request.path.as_str(),
        "/metrics" | "/healthz" | "/readyz" | "/status"
    );
    if !known {
        return Response::text(404, format!("no such endpoint: {}\n", request.path));
    }
    if request.method != "GET" {
        return Response::text(405, "only GET is served\n").header("Allow: GET");
    }
    match request.path.as_str() {
        "/metrics" => match prometheus {
            Some(handle) => {
                Response::with_type(200, http::PROMETHEUS_TEXT, handle.render().into_bytes())
            }
            None => Response::text(404, "metrics are not enabled\n"),
        },
        "/healthz" => Response::text(200, "ok\n"),
        "/readyz" => status::readiness(state, request.flag("strict")),
        _ => status::status(state),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::BackendState;

    fn get(path: &str) -> Request {
        http::parse_head(format!("GET {path} HTTP/1.1\r\n\r\n").as_bytes()).unwrap()
    }

    #[test]
    fn routes_paths_and_methods() {
        let state = ProxyState::new("d".into(), vec![Arc::new(BackendState::new("s1", "h:1"))]);
        assert_eq!(route(&get("/healthz"), &state, None).status, 200);
        assert_eq!(route(&get("/nope"), &state, None).status, 404);
        assert_eq!(route(&get("/metrics"), &state, None).status, 404);
        let mut post = get("/status");
        post.method = "POST".into();
        let r = route(&post, &state, None);
        assert_eq!(r.status, 405);
        assert_eq!(r.headers, ["Allow: GET"]);
        assert_eq!(route(&get("/readyz"), &state, None).status, 503);
        state.set_ready();
        // No backend up yet: not ready to serve.
        assert_eq!(route(&get("/readyz"), &state, None).status, 503);
        state.backends()[0].connection_opened();
        assert_eq!(route(&get("/readyz"), &state, None).status, 200);
        assert_eq!(route(&get("/readyz?strict=1"), &state, None).status, 200);
    }

    #[test]
    fn renders_metrics_from_the_handle() {
        let recorder = crate::metrics::builder().unwrap().build_recorder();
        let handle = recorder.handle();
        metrics::with_local_recorder(&recorder, || {
            crate::metrics::describe();
            crate::metrics::Metrics::new(&[]).clients().connected();
        });
        let state = ProxyState::new("d".into(), vec![]);
        let r = route(&get("/metrics"), &state, Some(&handle));
        assert_eq!(r.status, 200);
        assert_eq!(r.content_type, http::PROMETHEUS_TEXT);
        let text = String::from_utf8(r.body).unwrap();
        assert!(text.contains("\nshardis_client_connections 1\n"), "{text}");
    }
}
