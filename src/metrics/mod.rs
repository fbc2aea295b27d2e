//! Every metric shardis exports: names as constants, described once in [`install`], and recorded
//! through handles built once per command, per backend and for the client side, so the request
//! path does no registry lookup and formats no label.

use std::sync::OnceLock;
use std::time::Duration;

use metrics::{Counter, Gauge, Histogram, Unit};
use metrics_exporter_prometheus::{BuildError, PrometheusBuilder, PrometheusHandle};

/// Latency of one client command, from parse to reply; label `command`.
pub const COMMAND_DURATION_SECONDS: &str = "shardis_command_duration_seconds";
/// Client commands answered; labels `command`, `result` (`ok` | `error`).
pub const COMMANDS_TOTAL: &str = "shardis_commands_total";
/// Latency of one request on a backend link; label `backend`.
pub const BACKEND_REQUEST_DURATION_SECONDS: &str = "shardis_backend_request_duration_seconds";
/// 1 while at least one connection to the backend is up; label `backend`.
pub const BACKEND_UP: &str = "shardis_backend_up";
/// Open connections to a backend; label `backend`.
pub const BACKEND_CONNECTIONS: &str = "shardis_backend_connections";
/// Backend failures; labels `backend`, `kind` (see [`BackendErrorKind`]).
pub const BACKEND_ERRORS_TOTAL: &str = "shardis_backend_errors_total";
/// Exclusive connections to a backend (blocking commands, WATCH); labels `backend`, `state`
/// (`idle` | `leased`).
pub const BACKEND_EXCLUSIVE_CONNECTIONS: &str = "shardis_backend_exclusive_connections";
/// Requests for an exclusive connection refused because `max_exclusive_per_backend` were in
/// use; label `backend`.
pub const BACKEND_EXCLUSIVE_REFUSED_TOTAL: &str = "shardis_backend_exclusive_refused_total";
/// Subscribers disconnected because their unread messages passed
/// `max_subscriber_output_bytes`.
pub const PUBSUB_EVICTED_TOTAL: &str = "shardis_pubsub_evicted_total";
/// Configuration reloads; label `result` (`ok` | `error`).
pub const CONFIG_RELOADS_TOTAL: &str = "shardis_config_reloads_total";
/// 1 for the live configuration's digest; label `digest`.
pub const CONFIG_INFO: &str = "shardis_config_info";
/// Failed AUTH (and HELLO AUTH) attempts; label `user` (a configured user, or `unknown`).
pub const AUTH_FAILURES_TOTAL: &str = "shardis_auth_failures_total";
/// Commands refused by ACL rules; labels `user`, `reason` (`command` | `key` | `channel`).
pub const ACL_DENIED_TOTAL: &str = "shardis_acl_denied_total";
/// Client connections open now.
pub const CLIENT_CONNECTIONS: &str = "shardis_client_connections";
/// Client connections accepted since start.
pub const CLIENT_CONNECTIONS_TOTAL: &str = "shardis_client_connections_total";
/// Client connections closed because of malformed RESP.
pub const CLIENT_PROTOCOL_ERRORS_TOTAL: &str = "shardis_client_protocol_errors_total";
/// Client connections to the TLS listener closed because their TLS handshake failed or timed
/// out; label `reason` (`timeout` | `error`).
pub const CLIENT_TLS_HANDSHAKE_ERRORS_TOTAL: &str = "shardis_client_tls_handshake_errors_total";
/// Client connections closed by the proxy for a limit; label `reason` (`idle_timeout` |
/// `output_limit` | `memory_limit` | `max_client_memory`).
pub const CLIENT_DISCONNECTS_TOTAL: &str = "shardis_client_disconnects_total";
/// Bytes buffered for all clients (input read ahead, replies, unwritten output, pub/sub
/// messages), as their sessions last published them; `max_client_memory` bounds it.
pub const CLIENT_BUFFERED_BYTES: &str = "shardis_client_buffered_bytes";
/// Bytes read from clients.
pub const RECEIVED_BYTES_TOTAL: &str = "shardis_received_bytes_total";
/// Bytes written to clients.
pub const SENT_BYTES_TOTAL: &str = "shardis_sent_bytes_total";
/// Cluster pools: redirections received from nodes; label `kind` (`moved`, `ask`,
/// `tryagain`, `clusterdown`).
pub const CLUSTER_REDIRECTIONS_TOTAL: &str = "shardis_cluster_redirections_total";
/// Cluster pools: fetches of the slot map; label `result` (`ok` | `error`).
pub const CLUSTER_SLOT_MAP_REFRESHES_TOTAL: &str = "shardis_cluster_slot_map_refreshes_total";

/// Every metric name above, for tests that check dashboards and alert rules against the code.
pub const ALL_METRICS: &[&str] = &[
    COMMAND_DURATION_SECONDS,
    COMMANDS_TOTAL,
    BACKEND_REQUEST_DURATION_SECONDS,
    BACKEND_UP,
    BACKEND_CONNECTIONS,
    BACKEND_ERRORS_TOTAL,
    BACKEND_EXCLUSIVE_CONNECTIONS,
    BACKEND_EXCLUSIVE_REFUSED_TOTAL,
    PUBSUB_EVICTED_TOTAL,
    CONFIG_RELOADS_TOTAL,
    CONFIG_INFO,
    AUTH_FAILURES_TOTAL,
    ACL_DENIED_TOTAL,
    CLIENT_CONNECTIONS,
    CLIENT_CONNECTIONS_TOTAL,
    CLIENT_PROTOCOL_ERRORS_TOTAL,
    CLIENT_TLS_HANDSHAKE_ERRORS_TOTAL,
    CLIENT_DISCONNECTS_TOTAL,
    CLIENT_BUFFERED_BYTES,
    RECEIVED_BYTES_TOTAL,
    SENT_BYTES_TOTAL,
    CLUSTER_REDIRECTIONS_TOTAL,
    CLUSTER_SLOT_MAP_REFRESHES_TOTAL,
];

/// Histogram bucket upper bounds in seconds, 10 µs to 1 s, shared by both latency histograms.
pub const LATENCY_BUCKETS: &[f64] = &[
    0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
    0.1, 0.25, 0.5, 1.0,
];

/// How often the owner of the [`PrometheusHandle`] should call `run_upkeep` so that recorded
/// histogram samples are folded into buckets even when nobody scrapes.
pub const UPKEEP_INTERVAL: Duration = Duration::from_secs(5);

/// Label value for commands that are not in the command table.
pub const UNKNOWN_COMMAND: &str = "unknown";

/// Why the metrics recorder could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    /// The Prometheus recorder could not be built or installed (for example, one is already installed).
    #[error("cannot install the Prometheus recorder: {0}")]
    Recorder(#[from] BuildError),
}

/// A Prometheus builder with shardis' histogram buckets; [`install`] uses it, and tests build a
/// local recorder from it.
pub fn builder() -> Result<PrometheusBuilder, MetricsError> {
    Ok(PrometheusBuilder::new().set_buckets(LATENCY_BUCKETS)?)
}

/// Registers the HELP text of every metric with the current recorder (global, or a local one
/// inside `metrics::with_local_recorder`).
pub fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram};
    describe_histogram!(
        COMMAND_DURATION_SECONDS,
        Unit::Seconds,
        "Time from reading a client command to having its reply ready, by command."
    );
    describe_counter!(
        COMMANDS_TOTAL,
        "Client commands answered, by command and result (ok or error)."
    );
    describe_histogram!(
        BACKEND_REQUEST_DURATION_SECONDS,
        Unit::Seconds,
        "Time from writing a request to a backend to reading its reply, by backend."
    );
    describe_gauge!(
        BACKEND_UP,
        "1 while at least one connection to the backend is established, else 0."
    );
    describe_gauge!(BACKEND_CONNECTIONS, "Open connections to the backend.");
    describe_counter!(
        BACKEND_ERRORS_TOTAL,
        "Backend failures, by backend and kind (connect, timeout, closed, protocol, handshake, auth, health, tls)."
    );
    describe_gauge!(
        BACKEND_EXCLUSIVE_CONNECTIONS,
        "Exclusive connections to the backend (blocking commands, WATCH), by state (idle, leased)."
    );
    describe_counter!(
        BACKEND_EXCLUSIVE_REFUSED_TOTAL,
        "Commands refused because every exclusive connection to the backend was in use."
    );
    describe_counter!(
        PUBSUB_EVICTED_TOTAL,
        "Subscribers disconnected for leaving more than max_subscriber_output_bytes unread."
    );
    describe_counter!(
        CONFIG_RELOADS_TOTAL,
        "Configuration reloads (SIGHUP, POST /admin/reload), by result (ok, error)."
    );
    describe_gauge!(
        CONFIG_INFO,
        "1 for the digest of the configuration in force (0 for earlier ones)."
    );
    describe_counter!(
        AUTH_FAILURES_TOTAL,
        "Failed AUTH and HELLO AUTH attempts, by user (a configured user, or unknown)."
    );
    describe_counter!(
        ACL_DENIED_TOTAL,
        "Commands refused by ACL rules, by user and reason (command, key, channel)."
    );
    describe_gauge!(CLIENT_CONNECTIONS, "Client connections open now.");
    describe_counter!(
        CLIENT_CONNECTIONS_TOTAL,
        "Client connections accepted since the proxy started."
    );
    describe_counter!(
        CLIENT_PROTOCOL_ERRORS_TOTAL,
        "Client connections closed because they sent malformed RESP."
    );
    describe_counter!(
        CLIENT_DISCONNECTS_TOTAL,
        "Client connections closed by the proxy for a limit, by reason (idle_timeout, output_limit, memory_limit, max_client_memory)."
    );
    describe_gauge!(
        CLIENT_BUFFERED_BYTES,
        Unit::Bytes,
        "Bytes buffered for all clients (input read ahead, replies, unwritten output, pub/sub messages); max_client_memory bounds it."
    );
    describe_counter!(
        CLIENT_TLS_HANDSHAKE_ERRORS_TOTAL,
        "Client connections to the TLS listener closed because their handshake failed (error) or did not finish in time (timeout)."
    );
    describe_counter!(
        RECEIVED_BYTES_TOTAL,
        Unit::Bytes,
        "Bytes read from clients."
    );
    describe_counter!(SENT_BYTES_TOTAL, Unit::Bytes, "Bytes written to clients.");
    describe_counter!(
        CLUSTER_REDIRECTIONS_TOTAL,
        "Cluster pools: redirections nodes answered (moved, ask, tryagain, clusterdown), each retried by shardis."
    );
    describe_counter!(
        CLUSTER_SLOT_MAP_REFRESHES_TOTAL,
        "Cluster pools: fetches of the slot map, by result (ok or error)."
    );
}

/// Installs the global Prometheus recorder with shardis' buckets and descriptions; call once in
/// `main`, before [`Metrics::new`]. The caller renders the handle (the admin server does) and must
/// call `run_upkeep` on it every [`UPKEEP_INTERVAL`] (the admin server does that too).
pub fn install() -> Result<PrometheusHandle, MetricsError> {
    let handle = builder()?.install_recorder()?;
    describe();
    Ok(handle)
}

/// Counts a subscriber disconnected for being too slow (a rare event: no pre-built handle).
pub fn slow_subscriber() {
    metrics::counter!(PUBSUB_EVICTED_TOTAL).increment(1);
}

/// Counts a client closed for a limit (a rare event: no pre-built handle).
pub fn client_disconnect(reason: &'static str) {
    metrics::counter!(CLIENT_DISCONNECTS_TOTAL, "reason" => reason).increment(1);
}

/// Sets [`CLIENT_BUFFERED_BYTES`] (when `/metrics` is rendered: no pre-built handle).
pub fn client_buffered(bytes: usize) {
    metrics::gauge!(CLIENT_BUFFERED_BYTES).set(bytes as f64);
}

/// Counts a client TLS handshake that failed (`timed_out`: did not finish in time).
pub fn tls_handshake_failed(timed_out: bool) {
    metrics::counter!(CLIENT_TLS_HANDSHAKE_ERRORS_TOTAL, "reason" => if timed_out { "timeout" } else { "error" })
        .increment(1);
}

/// Counts a configuration reload.
pub fn config_reload(ok: bool) {
    metrics::counter!(CONFIG_RELOADS_TOTAL, "result" => if ok { "ok" } else { "error" })
        .increment(1);
}

/// Marks `digest` as the configuration in force (and `previous`, if any, as no longer).
pub fn config_info(digest: &str, previous: Option<&str>) {
    if let Some(old) = previous
        && old != digest
    {
        metrics::gauge!(CONFIG_INFO, "digest" => old.to_owned()).set(0.0);
    }
    metrics::gauge!(CONFIG_INFO, "digest" => digest.to_owned()).set(1.0);
}

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

    fn index(self) -> usize {
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
    handles: OnceLock<CommandHandles>,
}

#[derive(Debug)]
struct CommandHandles {
    duration: Histogram,
    ok: Counter,
    error: Counter,
}

impl CommandMetrics {
    fn new(name: &'static str) -> Self {
        Self {
            name,
            handles: OnceLock::new(),
        }
    }

    /// The `command` label value.
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// Records one answered command.
    #[inline]
    pub fn record(&self, elapsed: Duration, ok: bool) {
        let h = self.handles();
        h.duration.record(elapsed.as_secs_f64());
        if ok {
            h.ok.increment(1);
        } else {
            h.error.increment(1);
        }
    }

    #[inline]
    fn handles(&self) -> &CommandHandles {
        self.handles.get_or_init(|| {
            let command = self.name;
            CommandHandles {
                duration: metrics::histogram!(COMMAND_DURATION_SECONDS, "command" => command),
                ok: metrics::counter!(COMMANDS_TOTAL, "command" => command, "result" => "ok"),
                error: metrics::counter!(COMMANDS_TOTAL, "command" => command, "result" => "error"),
            }
        })
    }
}

/// Latency, health and error handles of one backend.
#[derive(Debug)]
pub struct BackendMetrics {
    duration: Histogram,
    up: Gauge,
    connections: Gauge,
    errors: [Counter; BackendErrorKind::ALL.len()],
    exclusive_idle: Gauge,
    exclusive_leased: Gauge,
    exclusive_refused: Counter,
}

impl BackendMetrics {
    /// The handles of backend `backend`, bound to the recorder installed now.
    pub fn new(backend: &str) -> Self {
        Self::labelled(vec![metrics::Label::new("backend", backend.to_owned())])
    }

    /// The handles of a cluster node: labels `backend` (its address) and `role` (`primary`,
    /// `replica`).
    pub fn with_role(backend: &str, role: &'static str) -> Self {
        Self::labelled(vec![
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
        Self {
            duration: metrics::histogram!(BACKEND_REQUEST_DURATION_SECONDS, labels.clone()),
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

    /// Records the round trip of one request.
    #[inline]
    pub fn record(&self, elapsed: Duration) {
        self.duration.record(elapsed.as_secs_f64());
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

#[cfg(test)]
mod tests;
