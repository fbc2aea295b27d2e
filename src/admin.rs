//! TEMPORARY stub, replaced by the obs branch.
#![allow(missing_docs, dead_code)]
use crate::server::ProxyState;
use std::sync::Arc;
pub async fn serve(
    _l: tokio::net::TcpListener,
    _s: Arc<ProxyState>,
    _p: Option<metrics_exporter_prometheus::PrometheusHandle>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) {
    shutdown.await
}
pub fn render_info(_s: &ProxyState, _b: &[Option<&[u8]>]) -> String {
    "# Proxy\r\n".into()
}
