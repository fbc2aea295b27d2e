//! Which endpoint a request is for and whether its method is served there: unknown paths get
//! 404, known paths with another method 405 with `Allow`, and each GET endpoint answers HEAD.

use std::net::SocketAddr;
use std::sync::Arc;

use hyper::Method;
use metrics_exporter_prometheus::PrometheusHandle;

use super::http::{PROMETHEUS_TEXT, Response};
use super::{Control, api, keys, status};
use crate::state::ProxyState;

/// The admin endpoints.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Endpoint {
    /// `GET /metrics`: Prometheus text.
    Metrics,
    /// `GET /healthz`: the process serves.
    Healthz,
    /// `GET /readyz[?strict=1]`: ready for clients.
    Readyz,
    /// `GET /status`: JSON snapshot.
    Status,
    /// `POST /admin/reload`: re-read the configuration.
    Reload,
    /// `GET /admin/config`: the live configuration.
    Config,
    /// `GET /admin/backends`: the backends.
    Backends,
    /// `GET /admin/hotkeys?pool=P&n=N`: the hottest keys.
    HotKeys,
    /// `GET /admin/bigkeys[?pool=P]`: the big keys.
    BigKeys,
}

impl Endpoint {
    /// The endpoint at `path`, if any.
    pub fn at(path: &str) -> Option<Self> {
        Some(match path {
            "/metrics" => Self::Metrics,
            "/healthz" => Self::Healthz,
            "/readyz" => Self::Readyz,
            "/status" => Self::Status,
            "/admin/reload" => Self::Reload,
            "/admin/config" => Self::Config,
            "/admin/backends" => Self::Backends,
            "/admin/hotkeys" => Self::HotKeys,
            "/admin/bigkeys" => Self::BigKeys,
            _ => return None,
        })
    }

    /// True for endpoints that change the running proxy.
    pub fn mutates(self) -> bool {
        self == Self::Reload
    }

    /// The methods served, as the `Allow` header lists them.
    pub fn allow(self) -> &'static str {
        if self.mutates() { "POST" } else { "GET, HEAD" }
    }

    /// True if `method` is served here.
    pub fn serves(self, method: &Method) -> bool {
        if self.mutates() {
            method == Method::POST
        } else {
            method == Method::GET || method == Method::HEAD
        }
    }
}

/// What every request of one admin server may read.
pub struct Admin {
    /// Proxy state for `/readyz` and `/status`.
    pub state: Arc<ProxyState>,
    /// Renders `/metrics`; without it `/metrics` answers 404.
    pub prometheus: Option<PrometheusHandle>,
    /// The running proxy's controls, for `/admin`.
    pub control: Arc<dyn Control>,
    /// The admin listener's address (None if the socket could not say).
    pub listener: Option<SocketAddr>,
}

/// Answers a request for `path` (query in `query`, without `?`) from `peer`. HEAD gets the
/// GET response; hyper leaves the body out.
pub async fn route(
    admin: &Admin,
    method: &Method,
    path: &str,
    query: &str,
    peer: SocketAddr,
) -> Response {
    let Some(endpoint) = Endpoint::at(path) else {
        return Response::text(404, format!("no such endpoint: {path}\n"));
    };
    if !endpoint.serves(method) {
        return Response::text(405, format!("{path} serves {}\n", endpoint.allow()))
            .header("allow", endpoint.allow());
    }
    if endpoint.mutates() && !api::mutations_allowed(&admin.control.config(), admin.listener) {
        tracing::warn!(%peer, path, "admin: refused a request that changes the proxy");
        return api::refused(admin.listener);
    }
    match endpoint {
        Endpoint::Metrics => match &admin.prometheus {
            Some(handle) => {
                crate::metrics::client_buffered(admin.state.clients.buffered());
                let mut text = crate::metrics::local::render(handle);
                text.push_str(&keys::metrics(&admin.state));
                Response::with_type(200, PROMETHEUS_TEXT, text.into_bytes())
            }
            None => Response::text(404, "metrics are not enabled\n"),
        },
        Endpoint::Healthz => Response::text(200, "ok\n"),
        Endpoint::Readyz => status::readiness(&admin.state, flag(query, "strict")),
        Endpoint::Status => status::status(&admin.state),
        Endpoint::Reload => {
            tracing::info!(%peer, "admin: reload requested");
            let r = api::reload(admin.control.as_ref()).await;
            tracing::info!(%peer, status = r.status, "admin: reload answered");
            r
        }
        Endpoint::Config => api::config(admin.control.as_ref()),
        Endpoint::Backends => api::backends(admin.control.as_ref()),
        Endpoint::HotKeys => keys::hotkeys(&admin.state, query),
        Endpoint::BigKeys => keys::bigkeys(&admin.state, query),
    }
}

/// True if `query` has `name`, `name=1` or `name=true`.
pub fn flag(query: &str, name: &str) -> bool {
    query.split('&').any(|pair| {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        key == name && matches!(value, "" | "1" | "true")
    })
}

#[cfg(test)]
mod tests {
    use std::future::Future;
    use std::pin::Pin;

    use serde_json::{Value, json};

    use super::*;
    use crate::backend::BackendState;

    struct Fake {
        allow_mutations: bool,
    }

    impl Control for Fake {
        fn reload(&self) -> Pin<Box<dyn Future<Output = Result<Value, Vec<String>>> + Send + '_>> {
            Box::pin(async { Err(vec!["a: bad".into(), "b: worse".into()]) })
        }
        fn config(&self) -> Value {
            json!({
                "admin": { "allow_mutations": self.allow_mutations },
                "auth": { "password": "hunter2" },
            })
        }
        fn backends(&self) -> Value {
            json!([{ "name": "s1" }])
        }
    }

    fn admin(listener: &str, allow_mutations: bool) -> Admin {
        let backends = vec![Arc::new(BackendState::new("s1", "h:1"))];
        Admin {
            state: Arc::new(ProxyState::new("d".into(), backends)),
            prometheus: None,
            control: Arc::new(Fake { allow_mutations }),
            listener: listener.parse().ok(),
        }
    }

    async fn ask(admin: &Admin, method: Method, target: &str) -> Response {
        let (path, query) = target.split_once('?').unwrap_or((target, ""));
        let peer = "127.0.0.1:5000".parse().unwrap();
        route(admin, &method, path, query, peer).await
    }

    fn json_body(r: &Response) -> Value {
        serde_json::from_slice(&r.body).unwrap()
    }

    #[tokio::test]
    async fn routes_paths_and_methods() {
        let a = admin("127.0.0.1:9121", false);
        assert_eq!(ask(&a, Method::GET, "/healthz").await.status, 200);
        assert_eq!(ask(&a, Method::HEAD, "/healthz").await.status, 200);
        assert_eq!(ask(&a, Method::GET, "/nope").await.status, 404);
        assert_eq!(ask(&a, Method::GET, "/status/").await.status, 404);
        assert_eq!(ask(&a, Method::GET, "/metrics").await.status, 404);
        let r = ask(&a, Method::POST, "/status").await;
        assert_eq!(r.status, 405);
        assert_eq!(r.header_value("allow"), Some("GET, HEAD"));
        let r = ask(&a, Method::GET, "/admin/reload").await;
        assert_eq!(r.status, 405);
        assert_eq!(r.header_value("allow"), Some("POST"));
        assert_eq!(ask(&a, Method::DELETE, "/admin/config").await.status, 405);
        assert_eq!(ask(&a, Method::GET, "/readyz").await.status, 503);
        a.state.set_ready();
        // No backend up yet: not ready to serve.
        assert_eq!(ask(&a, Method::GET, "/readyz").await.status, 503);
        a.state.backends()[0].connection_opened();
        assert_eq!(ask(&a, Method::GET, "/readyz").await.status, 200);
        assert_eq!(ask(&a, Method::GET, "/readyz?strict").await.status, 200);
    }

    #[tokio::test]
    async fn admin_api_answers_json() {
        let a = admin("127.0.0.1:9121", false);
        let r = ask(&a, Method::POST, "/admin/reload").await;
        assert_eq!(r.status, 422);
        assert_eq!(
            json_body(&r),
            json!({ "reloaded": false, "errors": ["a: bad", "b: worse"] })
        );
        let r = ask(&a, Method::GET, "/admin/config").await;
        assert_eq!(r.status, 200);
        assert_eq!(json_body(&r)["auth"]["password"], crate::config::MASK);
        let r = ask(&a, Method::GET, "/admin/backends").await;
        assert_eq!(json_body(&r), json!([{ "name": "s1" }]));
    }

    #[tokio::test]
    async fn mutations_are_refused_off_loopback_without_the_flag() {
        let a = admin("192.0.2.2:9121", false);
        assert_eq!(ask(&a, Method::POST, "/admin/reload").await.status, 403);
        // Reading stays allowed, and a wrong method is still a 405.
        assert_eq!(ask(&a, Method::GET, "/admin/config").await.status, 200);
        assert_eq!(ask(&a, Method::GET, "/admin/reload").await.status, 405);
        let a = admin("192.0.2.2:9121", true);
        assert_eq!(ask(&a, Method::POST, "/admin/reload").await.status, 422);
    }

    #[test]
    fn flags_in_queries() {
        assert!(flag("strict=1&x=y", "strict"));
        assert!(flag("x=y&strict", "strict"));
        assert!(flag("strict=true", "strict"));
        assert!(!flag("strict=0", "strict"));
        assert!(!flag("x=y", "x"));
        assert!(!flag("", "strict"));
    }

    #[tokio::test]
    async fn renders_metrics_from_the_handle() {
        let recorder = crate::metrics::builder().unwrap().build_recorder();
        let handle = recorder.handle();
        metrics::with_local_recorder(&recorder, || {
            crate::metrics::describe();
            crate::metrics::Metrics::new(&[]).clients().connected();
        });
        let mut a = admin("127.0.0.1:1", false);
        a.prometheus = Some(handle);
        let r = ask(&a, Method::GET, "/metrics").await;
        assert_eq!(r.status, 200);
        assert_eq!(r.content_type, PROMETHEUS_TEXT);
        let text = String::from_utf8(r.body).unwrap();
        assert!(text.contains("\nshardis_client_connections 1\n"), "{text}");
    }
}
