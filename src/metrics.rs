//! TEMPORARY stub, replaced by the obs branch.
#![allow(missing_docs, dead_code)]
use std::time::Duration;
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BackendErrorKind {
    Connect,
    Timeout,
    Closed,
    Protocol,
}
#[derive(Debug, thiserror::Error)]
#[error("metrics")]
pub struct MetricsError;
pub fn install() -> Result<metrics_exporter_prometheus::PrometheusHandle, MetricsError> {
    Err(MetricsError)
}
pub struct Metrics {
    c: CommandMetrics,
    b: Vec<BackendMetrics>,
    cl: ClientMetrics,
}
impl Metrics {
    pub fn new(_commands: &[&'static str], backends: &[String]) -> Metrics {
        Metrics {
            c: CommandMetrics,
            b: backends.iter().map(|_| BackendMetrics).collect(),
            cl: ClientMetrics,
        }
    }
    pub fn command(&self, _id: usize) -> &CommandMetrics {
        &self.c
    }
    pub fn unknown_command(&self) -> &CommandMetrics {
        &self.c
    }
    pub fn backend(&self, i: usize) -> Option<&BackendMetrics> {
        self.b.get(i)
    }
    pub fn clients(&self) -> &ClientMetrics {
        &self.cl
    }
}
pub struct CommandMetrics;
impl CommandMetrics {
    #[inline]
    pub fn record(&self, _e: Duration, _ok: bool) {}
}
pub struct BackendMetrics;
impl BackendMetrics {
    pub fn record(&self, _e: Duration) {}
    pub fn set_up(&self, _u: bool) {}
    pub fn set_connections(&self, _n: usize) {}
    pub fn error(&self, _k: BackendErrorKind) {}
}
pub struct ClientMetrics;
impl ClientMetrics {
    pub fn connected(&self) {}
    pub fn disconnected(&self) {}
    pub fn protocol_error(&self) {}
    pub fn received(&self, _b: u64) {}
    pub fn sent(&self, _b: u64) {}
}
