//! Every metric shardis exports: names as constants, described once in [`install`], and recorded
//! through handles built once per command, per backend and for the client side, so the request
//! path does no registry lookup and formats no label.

use std::time::Duration;

use metrics::Unit;
use metrics_exporter_prometheus::{BuildError, PrometheusBuilder, PrometheusHandle};

/// Latency of one client command, from parse to reply; label `command`.
pub const COMMAND_DURATION_SECONDS: &str = "shardis_command_duration_seconds";
/// Client commands answered; labels `command`, `result` (`ok` | `error`).
pub const COMMANDS_TOTAL: &str = "shardis_commands_total";
/// Latency of one request on a backend link; labels `pool`, `backend` (every backend metric
/// carries both: backends of two pools may share a name).
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
/// Mirrored requests; labels `pool` (the mirror pool), `result` (`sent` | `dropped` |
/// `failed`).
pub const MIRROR_REQUESTS_TOTAL: &str = "shardis_mirror_requests_total";
/// Faults injected (`[[faults]]`); label `kind` (`error` | `delay`).
pub const FAULTS_INJECTED_TOTAL: &str = "shardis_faults_injected_total";
/// Share of a backend's recent requests that its hottest key takes; labels `pool`, `backend`
/// (never a key: that would explode the series count).
pub const HOT_KEY_SHARE: &str = "shardis_hot_key_share";
/// Replies over the pool's `bigkey_reply_bytes`; labels `pool`, `backend`.
pub const BIG_REPLIES_TOTAL: &str = "shardis_big_replies_total";
/// Requests over the pool's `bigkey_request_bytes`; labels `pool`, `backend`.
pub const BIG_REQUESTS_TOTAL: &str = "shardis_big_requests_total";
/// Near cache: reads answered from it; label `pool`.
pub const NEAR_CACHE_HITS_TOTAL: &str = "shardis_near_cache_hits_total";
/// Near cache: reads of a cached hot key it could not answer; label `pool`.
pub const NEAR_CACHE_MISSES_TOTAL: &str = "shardis_near_cache_misses_total";
/// Near cache: values read into it; label `pool`.
pub const NEAR_CACHE_FILLS_TOTAL: &str = "shardis_near_cache_fills_total";
/// Near cache: values dropped for room, for keys no longer hot, or a lost tracking
/// connection; label `pool`.
pub const NEAR_CACHE_EVICTIONS_TOTAL: &str = "shardis_near_cache_evictions_total";
/// Near cache: invalidation messages from the backends; label `pool`.
pub const NEAR_CACHE_INVALIDATIONS_TOTAL: &str = "shardis_near_cache_invalidations_total";
/// Near cache: bytes of values held; label `pool`.
pub const NEAR_CACHE_BYTES: &str = "shardis_near_cache_bytes";
/// Scripts and transactions whose keys span backends, run in the proxy; labels `kind`
/// (`script` | `transaction`), `result` (`ok` | `error` | `timeout` | `locked`).
pub const CROSS_SHARD_TOTAL: &str = "shardis_cross_shard_total";
/// Time a cross-backend script or transaction waited for its locks.
pub const LOCK_WAIT_SECONDS: &str = "shardis_lock_wait_seconds";
/// Failovers shardis followed: a shard's primary replaced by another (Sentinel, or a cluster
/// primary's successor); labels `pool`, `backend`.
pub const FAILOVERS_TOTAL: &str = "shardis_failovers_total";
/// Requests held now, waiting for a primary to come back or be replaced.
pub const HELD_REQUESTS: &str = "shardis_held_requests";
/// How long requests were held, from being held to being sent again or failed.
pub const HOLD_SECONDS: &str = "shardis_hold_seconds";

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
    MIRROR_REQUESTS_TOTAL,
    FAULTS_INJECTED_TOTAL,
    HOT_KEY_SHARE,
    BIG_REPLIES_TOTAL,
    BIG_REQUESTS_TOTAL,
    NEAR_CACHE_HITS_TOTAL,
    NEAR_CACHE_MISSES_TOTAL,
    NEAR_CACHE_FILLS_TOTAL,
    NEAR_CACHE_EVICTIONS_TOTAL,
    NEAR_CACHE_INVALIDATIONS_TOTAL,
    NEAR_CACHE_BYTES,
    CROSS_SHARD_TOTAL,
    LOCK_WAIT_SECONDS,
    FAILOVERS_TOTAL,
    HELD_REQUESTS,
    HOLD_SECONDS,
];

/// Bucket upper bounds in seconds of [`HOLD_SECONDS`]: holds last up to `failover_hold_ms`.
pub const HOLD_BUCKETS: &[f64] = &[
    0.001, 0.005, 0.025, 0.1, 0.25, 0.5, 1.0, 2.0, 3.0, 5.0, 7.5, 10.0, 20.0, 30.0, 60.0,
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
    Ok(PrometheusBuilder::new()
        .set_buckets(LATENCY_BUCKETS)?
        .set_buckets_for_metric(
            metrics_exporter_prometheus::Matcher::Full(HOLD_SECONDS.to_string()),
            HOLD_BUCKETS,
        )?)
}

/// Registers the HELP text of every metric with the current recorder (global, or a local one
/// inside `metrics::with_local_recorder`).
pub fn describe() {
    use metrics::{describe_counter, describe_gauge};
    // The latency histograms and commands_total are described where they are rendered
    // (local.rs).
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
    describe_routing();
    describe_scripts_and_failover();
}

/// The descriptions of the cross-backend script and failover metrics.
fn describe_scripts_and_failover() {
    use metrics::{describe_counter, describe_gauge, describe_histogram};
    describe_counter!(
        CROSS_SHARD_TOTAL,
        "Scripts and transactions whose keys span backends run in the proxy, by kind (script, transaction) and result (ok, error, timeout, locked)."
    );
    describe_histogram!(
        LOCK_WAIT_SECONDS,
        Unit::Seconds,
        "Time a script or transaction across backends waited to take its locks."
    );
    describe_counter!(
        FAILOVERS_TOTAL,
        "Failovers followed: a shard's primary replaced by another, by pool and backend."
    );
    describe_gauge!(
        HELD_REQUESTS,
        "Requests held now while a shard's primary is away (failover, restart)."
    );
    describe_histogram!(
        HOLD_SECONDS,
        Unit::Seconds,
        "How long held requests waited before they were sent again or failed."
    );
    describe_keys();
}

/// The big-key counters; the hot-key share and the near cache's counters are rendered at
/// scrape (`hotkeys::report`).
fn describe_keys() {
    use metrics::describe_counter;
    describe_counter!(
        BIG_REPLIES_TOTAL,
        "Replies over the pool's bigkey_reply_bytes, by pool and backend (the keys are in /admin/bigkeys)."
    );
    describe_counter!(
        BIG_REQUESTS_TOTAL,
        "Requests over the pool's bigkey_request_bytes, by pool and backend (the keys are in /admin/bigkeys)."
    );
}

/// Counts a big reply or request (a rare event: no pre-built handle).
pub fn big_key(reply: bool, pool: &str, backend: &str) {
    let name = if reply {
        BIG_REPLIES_TOTAL
    } else {
        BIG_REQUESTS_TOTAL
    };
    metrics::counter!(name, "pool" => pool.to_owned(), "backend" => backend.to_owned())
        .increment(1);
}

/// The descriptions of the mirror and fault metrics.
fn describe_routing() {
    use metrics::describe_counter;
    describe_counter!(
        MIRROR_REQUESTS_TOTAL,
        "Requests mirrored to a pool, by mirror pool and result: sent (handed to a backend link), dropped (the mirror's buffer was full) or failed (not sent, or answered with an error)."
    );
    describe_counter!(
        FAULTS_INJECTED_TOTAL,
        "Faults injected into client commands ([[faults]]), by kind (error, delay)."
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

/// Counts a script or transaction run across backends (`kind`: script | transaction).
pub fn cross_shard(kind: &'static str, result: &'static str) {
    metrics::counter!(CROSS_SHARD_TOTAL, "kind" => kind, "result" => result).increment(1);
}

/// Records how long a script or transaction across backends waited for its locks.
pub fn lock_wait(waited: Duration) {
    metrics::histogram!(LOCK_WAIT_SECONDS).record(waited.as_secs_f64());
}

/// Counts a failover of `backend` in `pool` (rare: no pre-built handle).
pub fn failover(pool: &str, backend: &str) {
    metrics::counter!(FAILOVERS_TOTAL, "pool" => pool.to_owned(), "backend" => backend.to_owned())
        .increment(1);
}

/// Requests held changed by `delta` (only during failovers: no pre-built handle).
pub fn held_requests(delta: f64) {
    metrics::gauge!(HELD_REQUESTS).increment(delta);
}

/// A held request was released after `held`.
pub fn hold_seconds(held: std::time::Duration) {
    metrics::histogram!(HOLD_SECONDS).record(held.as_secs_f64());
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

mod handles;
pub mod local;

pub use handles::{BackendErrorKind, BackendMetrics, ClientMetrics, CommandMetrics, Metrics};

#[cfg(test)]
mod tests;
