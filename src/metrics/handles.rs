//! The handles the data path records through: built once (per proxy, per backend) so that a
//! request costs no metric lookup, only the update of a handle it already holds.

use std::sync::{Arc, OnceLock};

use metrics::{Counter, Gauge};

use super::local::{Family, Series};
use super::*;

/// Why a backend request or connection failed; the `kind` label of [`BACKEND_ERRORS_TOTAL`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BackendErrorKind {
    /// Connecting (or re-connecting) failed.
    Connect,
    /// A request got no reply in time.
    Timeout,
    /// The backend closed the connection.
    Closed,
    /// The backend sent something that is not RESP.
    Protocol,
    /// The backend refused the connection's handshake (HELLO).
    Handshake,
    /// The backend refused the credentials.
    Auth,
    /// A health check (PING) got a wrong answer.
    Health,
    /// The TLS handshake failed (certificate not trusted, wrong name, not a TLS server).
    Tls,
}

impl BackendErrorKind {
    /// Every kind, in the order of their index into per-kind tables.
    pub const ALL: [BackendErrorKind; 8] = [
        BackendErrorKind::Connect,
        BackendErrorKind::Timeout,
        BackendErrorKind::Closed,
        BackendErrorKind::Protocol,
        BackendErrorKind::Handshake,
        BackendErrorKind::Auth,
        BackendErrorKind::Health,
        BackendErrorKind::Tls,
    ];

    /// The metric label value.
    pub fn label(self) -> &'static str {
        match self {
            BackendErrorKind::Connect => "connect",
            BackendErrorKind::Timeout => "timeout",
            BackendErrorKind::Closed => "closed",
            BackendErrorKind::Protocol => "protocol",
            BackendErrorKind::Handshake => "handshake",
            BackendErrorKind::Auth => "auth",
            BackendErrorKind::Health => "health",
            BackendErrorKind::Tls => "tls",
        }
    }

    pub(super) fn index(self) -> usize {
        self as usize
    }
}

/// The command and client handles of the proxy, built once at startup and shared as
/// `Arc<Metrics>`. Each backend owns its own [`BackendMetrics`], made when the backend is.
#[derive(Debug)]
pub struct Metrics {
    commands: Vec<CommandMetrics>,
    unknown: CommandMetrics,
    clients: ClientMetrics,
}

impl Metrics {
    /// `commands`: lowercase command names, in command-table order; id i → `commands[i]`; id ==
    /// commands.len() → "unknown".
    ///
    /// Client handles bind to the recorder installed now (none: no-ops); command handles bind
    /// to the recorder installed when each command is first recorded.
    pub fn new(commands: &[&'static str]) -> Metrics {
        Metrics {
            commands: commands.iter().map(|c| CommandMetrics::new(c)).collect(),
            unknown: CommandMetrics::new(UNKNOWN_COMMAND),
            clients: ClientMetrics::new(),
        }
    }

    /// Handles of command `id`; out-of-range ids map to "unknown".
    #[inline]
    pub fn command(&self, id: usize) -> &CommandMetrics {
        self.commands.get(id).unwrap_or(&self.unknown)
    }

    /// Handles for commands that are not in the command table.
    pub fn unknown_command(&self) -> &CommandMetrics {
        &self.unknown
    }

    /// Client-side handles.
    pub fn clients(&self) -> &ClientMetrics {
        &self.clients
    }
}

/// Latency and result counters of one command.
///
/// The handles are registered on first use, so that `/metrics` lists only commands that clients
/// actually sent instead of a histogram for each of the ~200 commands in the table.
#[derive(Debug)]
pub struct CommandMetrics {
    name: &'static str,
    series: OnceLock<Arc<Series>>,
}

impl CommandMetrics {
    fn new(name: &'static str) -> Self {
        Self {
            name,
            series: OnceLock::new(),
        }
    }

    /// The `command` label value.
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// Records one answered command: its latency, in this worker's buckets, and its result.
    #[inline]
    pub fn record(&self, elapsed: Duration, ok: bool) {
        self.series
            .get_or_init(|| Series::new(Family::Command, &[("command", self.name)]))
            .record(elapsed, !ok);
    }
}

/// Latency, health and error handles of one backend.
#[derive(Debug)]
pub struct BackendMetrics {
    duration: Arc<Series>,
    up: Gauge,
    connections: Gauge,
    errors: [Counter; BackendErrorKind::ALL.len()],
    exclusive_idle: Gauge,
    exclusive_leased: Gauge,
    exclusive_refused: Counter,
}

impl BackendMetrics {
    /// The handles of backend `backend` of pool `pool`, bound to the recorder installed now.
    pub fn new(pool: &str, backend: &str) -> Self {
        Self::labelled(vec![
            metrics::Label::new("pool", pool.to_owned()),
            metrics::Label::new("backend", backend.to_owned()),
        ])
    }

    /// The handles of a node of cluster pool `pool`: labels `pool`, `backend` (its address)
    /// and `role` (`primary`, `replica`).
    pub fn with_role(pool: &str, backend: &str, role: &'static str) -> Self {
        Self::labelled(vec![
            metrics::Label::new("pool", pool.to_owned()),
            metrics::Label::new("backend", backend.to_owned()),
            metrics::Label::new("role", role),
        ])
    }

    fn labelled(labels: Vec<metrics::Label>) -> Self {
        let with = |name: &'static str, value: &'static str| {
            let mut l = labels.clone();
            l.push(metrics::Label::new(name, value));
            l
        };
        let errors = BackendErrorKind::ALL
            .map(|kind| metrics::counter!(BACKEND_ERRORS_TOTAL, with("kind", kind.label())));
        let up = metrics::gauge!(BACKEND_UP, labels.clone());
        // Register the series at 0 so a backend that never connected shows as down.
        up.set(0.0);
        let pairs: Vec<(&str, &str)> = labels.iter().map(|l| (l.key(), l.value())).collect();
        Self {
            duration: Series::new(Family::Backend, &pairs),
            up,
            connections: metrics::gauge!(BACKEND_CONNECTIONS, labels.clone()),
            errors,
            exclusive_idle: metrics::gauge!(BACKEND_EXCLUSIVE_CONNECTIONS, with("state", "idle")),
            exclusive_leased: metrics::gauge!(
                BACKEND_EXCLUSIVE_CONNECTIONS,
                with("state", "leased")
            ),
            exclusive_refused: metrics::counter!(BACKEND_EXCLUSIVE_REFUSED_TOTAL, labels),
        }
    }

    /// Sets the exclusive connection gauges.
    pub fn set_exclusive(&self, idle: usize, leased: usize) {
        self.exclusive_idle.set(idle as f64);
        self.exclusive_leased.set(leased as f64);
    }

    /// Counts a command refused for want of a free exclusive connection.
    pub fn exclusive_refused(&self) {
        self.exclusive_refused.increment(1);
    }

    /// Records the round trip of one request, in this worker's buckets.
    #[inline]
    pub fn record(&self, elapsed: Duration) {
        self.duration.record(elapsed, false);
    }

    /// Requests answered since the backend's metrics were made (the histogram's count).
    pub fn requests(&self) -> u64 {
        self.duration.count()
    }

    /// Sets `shardis_backend_up` to 1 or 0.
    pub fn set_up(&self, up: bool) {
        self.up.set(if up { 1.0 } else { 0.0 });
    }

    /// Sets the number of open connections.
    pub fn set_connections(&self, n: usize) {
        self.connections.set(n as f64);
    }

    /// Counts one failure of the given kind.
    pub fn error(&self, kind: BackendErrorKind) {
        self.errors[kind.index()].increment(1);
    }
}

/// Client-side connection and traffic handles.
#[derive(Debug)]
pub struct ClientMetrics {
    connections: Gauge,
    connections_total: Counter,
    protocol_errors: Counter,
    received: Counter,
    sent: Counter,
}

impl ClientMetrics {
    fn new() -> Self {
        Self {
            connections: metrics::gauge!(CLIENT_CONNECTIONS),
            connections_total: metrics::counter!(CLIENT_CONNECTIONS_TOTAL),
            protocol_errors: metrics::counter!(CLIENT_PROTOCOL_ERRORS_TOTAL),
            received: metrics::counter!(RECEIVED_BYTES_TOTAL),
            sent: metrics::counter!(SENT_BYTES_TOTAL),
        }
    }

    /// A client connection was accepted.
    pub fn connected(&self) {
        self.connections.increment(1.0);
        self.connections_total.increment(1);
    }

    /// A client connection was closed.
    pub fn disconnected(&self) {
        self.connections.decrement(1.0);
    }

    /// A client sent malformed RESP.
    pub fn protocol_error(&self) {
        self.protocol_errors.increment(1);
    }

    /// Bytes read from a client.
    #[inline]
    pub fn received(&self, bytes: u64) {
        self.received.increment(bytes);
    }

    /// Bytes written to a client.
    #[inline]
    pub fn sent(&self, bytes: u64) {
        self.sent.increment(bytes);
    }
}
