//! What `/readyz` and `/status` say about the proxy: readiness with the list of down backends,
//! and a JSON snapshot of the proxy and every backend.

use serde::Serialize;

use super::http::{JSON, Response};
use crate::state::ProxyState;

/// `/readyz`: 200 when the proxy can serve: started, not draining, and at least one backend up
/// (with `strict`, every backend up); 503 otherwise. The body names the state, then one
/// `down: NAME (ADDRESS)` line per backend that is not up.
pub fn readiness(state: &ProxyState, strict: bool) -> Response {
    let backends = state.backends();
    let down: Vec<_> = backends.iter().filter(|b| !b.is_up()).collect();
    let (status, headline) = if state.is_draining() {
        (503, "draining".to_owned())
    } else if !state.is_ready() {
        (503, "not ready".to_owned())
    } else if !backends.is_empty() && down.len() == backends.len() {
        (503, "not ready: no backend is up".to_owned())
    } else if strict && !down.is_empty() {
        (
            503,
            format!(
                "not ready: {} of {} backends down",
                down.len(),
                backends.len()
            ),
        )
    } else {
        (200, "ready".to_owned())
    };
    let mut body = headline;
    body.push('\n');
    for b in down {
        body.push_str(&format!("down: {} ({})\n", b.name, b.address));
    }
    Response::text(status, body)
}

/// The JSON document served on `/status`.
#[derive(Debug, Serialize)]
pub struct Status {
    /// Crate version of the running binary.
    pub version: &'static str,
    /// Whole seconds since the proxy state was created.
    pub uptime_seconds: u64,
    /// Hex digest of the configuration in force.
    pub config_digest: String,
    /// When it was loaded (Unix seconds), if it came from a file.
    pub config_loaded_unix: Option<u64>,
    /// True once the proxy accepts clients.
    pub ready: bool,
    /// True while the proxy drains before exiting.
    pub draining: bool,
    /// Connected clients.
    pub clients: usize,
    /// Commands processed since start.
    pub commands: u64,
    /// Bytes buffered for all clients (input read ahead, replies, unwritten output, pub/sub
    /// messages), as sessions last published them (in 64 KiB steps).
    pub client_buffered_bytes: usize,
    /// `[server] max_client_memory` in force (null: off, or not known).
    pub max_client_memory: Option<usize>,
    /// One entry per backend, in configuration order (for a cluster pool: every node,
    /// primaries first).
    pub backends: Vec<BackendStatus>,
    /// A cluster pool: the slot map (ranges per primary, replicas), its age and source,
    /// refreshes and redirections by kind.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cluster: Option<serde_json::Value>,
    /// Per pool, each backend's share of the requests against the share its ring gives it.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub load_balance: Vec<serde_json::Value>,
    /// Scripts and transactions across backends running in the proxy now, and the number of
    /// scripts cached.
    pub scripts: serde_json::Value,
}

/// One backend in [`Status`].
#[derive(Debug, Serialize)]
pub struct BackendStatus {
    /// Configured name.
    pub name: String,
    /// The pool it belongs to.
    pub pool: String,
    /// Configured `host:port`.
    pub address: String,
    /// `up` (connected and answering), `down` (marked down after failures), or `connecting`.
    pub state: &'static str,
    /// Taken out of the ring while down (auto_eject).
    pub ejected: bool,
    /// Consecutive failures since the last success.
    pub failures: u32,
    /// Open connections.
    pub connections: usize,
    /// Requests written and not yet answered.
    pub inflight: usize,
    /// The last error seen on this backend, if any.
    pub last_error: Option<String>,
    /// Its kind, as the `kind` label of `shardis_backend_errors_total`: `auth` when the
    /// backend refused the pool's credentials.
    pub last_error_kind: Option<&'static str>,
    /// A replicated shard (Sentinel-managed, or a cluster primary): its primary now, its
    /// replicas and the last failover shardis followed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shard: Option<serde_json::Value>,
}

impl Status {
    /// Takes a snapshot of `state`.
    pub fn snapshot(state: &ProxyState) -> Self {
        Status {
            version: env!("CARGO_PKG_VERSION"),
            uptime_seconds: state.started.elapsed().as_secs(),
            config_digest: state.config_digest(),
            config_loaded_unix: state
                .config_loaded()
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .map(|d| d.as_secs()),
            ready: state.is_ready(),
            draining: state.is_draining(),
            clients: state.client_count(),
            commands: state.commands(),
            client_buffered_bytes: state.clients.buffered(),
            max_client_memory: state.max_client_memory(),
            backends: state
                .backends()
                .iter()
                .map(|b| BackendStatus {
                    name: b.name.clone(),
                    pool: b.pool.clone(),
                    address: b.address.clone(),
                    state: if b.is_up() {
                        "up"
                    } else if b.is_down() || b.failures() > 0 {
                        "down"
                    } else {
                        "connecting"
                    },
                    ejected: b.is_ejected(),
                    failures: b.failures(),
                    connections: b.connections(),
                    inflight: b.inflight(),
                    last_error: b.last_error(),
                    last_error_kind: b.last_error_kind(),
                    shard: b.shard_json(),
                })
                .collect(),
            cluster: state.cluster_status(),
            load_balance: super::keys::balance(state),
            scripts: state.scripting.status(),
        }
    }
}

/// `/status`: the [`Status`] snapshot as JSON.
pub fn status(state: &ProxyState) -> Response {
    match serde_json::to_vec_pretty(&Status::snapshot(state)) {
        Ok(mut body) => {
            body.push(b'\n');
            Response::with_type(200, JSON, body)
        }
        Err(e) => Response::text(500, format!("cannot encode status: {e}\n")),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::backend::BackendState;

    fn state() -> ProxyState {
        let s1 = Arc::new(BackendState::new("s1", "127.0.0.1:7001").in_pool("main"));
        let s2 = Arc::new(BackendState::new("s2", "127.0.0.1:7002").in_pool("main"));
        s2.connection_opened();
        s2.add_inflight(3);
        s1.set_failure_limit(1);
        s1.failed();
        s1.set_error(
            crate::metrics::BackendErrorKind::Connect,
            "connect: connection refused",
        );
        ProxyState::new("abc123".into(), vec![s1, s2])
    }

    fn body(r: &Response) -> &str {
        std::str::from_utf8(&r.body).unwrap()
    }

    #[test]
    fn readiness_follows_ready_draining_and_strict() {
        let st = state();
        let r = readiness(&st, false);
        assert_eq!(
            (r.status, body(&r)),
            (503, "not ready\ndown: s1 (127.0.0.1:7001)\n")
        );
        st.set_ready();
        let r = readiness(&st, false);
        assert_eq!(
            (r.status, body(&r)),
            (200, "ready\ndown: s1 (127.0.0.1:7001)\n")
        );
        let r = readiness(&st, true);
        assert_eq!(r.status, 503);
        assert!(body(&r).starts_with("not ready: 1 of 2 backends down\n"));
        st.backends()[0].connection_opened();
        st.backends()[0].succeeded();
        let r = readiness(&st, true);
        assert_eq!((r.status, body(&r)), (200, "ready\n"));
        st.set_draining();
        let r = readiness(&st, false);
        assert_eq!((r.status, body(&r)), (503, "draining\n"));
    }

    #[test]
    fn status_reports_every_backend() {
        let st = state();
        st.clients.insert(crate::clients::Clients::detached(1));
        st.add_commands(42);
        let r = status(&st);
        assert_eq!(r.status, 200);
        assert_eq!(r.content_type, JSON);
        let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(v["version"], env!("CARGO_PKG_VERSION"));
        assert_eq!(v["config_digest"], "abc123");
        assert_eq!(v["clients"], 1);
        assert_eq!(v["commands"], 42);
        assert_eq!(v["client_buffered_bytes"], 0);
        assert!(v["uptime_seconds"].is_u64());
        let b = &v["backends"];
        assert_eq!(b[0]["name"], "s1");
        assert_eq!(b[0]["pool"], "main");
        assert_eq!(b[0]["state"], "down");
        assert_eq!(b[0]["last_error"], "connect: connection refused");
        assert_eq!(b[0]["last_error_kind"], "connect");
        assert_eq!(b[1]["address"], "127.0.0.1:7002");
        assert_eq!(b[1]["state"], "up");
        assert_eq!(b[1]["connections"], 1);
        assert_eq!(b[1]["inflight"], 3);
        assert!(b[1]["last_error"].is_null());
    }
}
