//! Defaults and bounds of the numeric settings.

/// Default `server.max_clients`.
pub const MAX_CLIENTS: i64 = 10_000;
/// Default `server.max_pipeline`.
pub const MAX_PIPELINE: i64 = 1024;
/// Default `server.max_request_bytes`: 512 MiB, like Redis' `proto-max-bulk-len`.
pub const MAX_REQUEST_BYTES: i64 = 512 * 1024 * 1024;
/// Default `server.shutdown_grace_ms`.
pub const SHUTDOWN_GRACE_MS: i64 = 5000;
/// Largest `server.threads`.
pub const MAX_THREADS: i64 = 1024;
/// Default `timeout_ms` of a pool.
pub const TIMEOUT_MS: i64 = 1000;
/// Default `connections_per_backend`.
pub const CONNECTIONS_PER_BACKEND: i64 = 1;
/// Largest `connections_per_backend`.
pub const MAX_CONNECTIONS_PER_BACKEND: i64 = 64;
/// Default `max_exclusive_per_backend`.
pub const MAX_EXCLUSIVE_PER_BACKEND: i64 = 128;
/// Largest `max_exclusive_per_backend`.
pub const MAX_MAX_EXCLUSIVE: i64 = 10_000;
/// Default `server.max_subscriber_output_bytes`: 32 MiB, like Redis's pubsub hard limit.
pub const MAX_SUBSCRIBER_OUTPUT_BYTES: i64 = 32 * 1024 * 1024;
/// Default `health_interval_ms` of a pool.
pub const HEALTH_INTERVAL_MS: i64 = 1000;
/// Default `failure_limit` of a pool.
pub const FAILURE_LIMIT: i64 = 3;
/// Default `dns_refresh_ms` of a pool.
pub const DNS_REFRESH_MS: i64 = 5000;
/// Default `server.tls.handshake_timeout_ms`.
pub const TLS_HANDSHAKE_TIMEOUT_MS: i64 = 5000;
/// Default `server.max_keys_reply`.
pub const MAX_KEYS_REPLY: i64 = 1_000_000;
/// Default `server.max_inline_bytes`, as Redis's `PROTO_INLINE_MAX_SIZE`.
pub const MAX_INLINE_BYTES: i64 = 64 * 1024;
/// Default `server.max_multibulk_length`.
pub const MAX_MULTIBULK_LENGTH: i64 = 1024 * 1024;
/// Default `server.auth_failure_delay_ms`.
pub const AUTH_FAILURE_DELAY_MS: i64 = 100;
/// Largest `server.auth_failure_delay_ms`.
pub const MAX_AUTH_FAILURE_DELAY_MS: i64 = 60_000;
/// Default `server.auth_failure_limit`.
pub const AUTH_FAILURE_LIMIT: i64 = 10;
/// Longest user name in bytes.
pub const MAX_USER_NAME: usize = 128;
/// Largest `db` of a pool (Redis's default `databases` is 16; some run more).
pub const MAX_DB: i64 = 1_000_000;
/// Largest backend `weight`.
pub const MAX_WEIGHT: i64 = 1_000_000;
/// Most backends in a pool (maglev's 65537-slot table stays balanced within a few %).
pub const MAX_BACKENDS: usize = 1024;
/// Longest backend name in bytes (twemproxy truncates ketama point names at 85 bytes).
pub const MAX_BACKEND_NAME: usize = 80;
/// Default `server.script_timeout_ms`.
pub const SCRIPT_TIMEOUT_MS: i64 = 5000;
/// Default and largest `server.lock_ttl_ms`.
pub const LOCK_TTL_MS: i64 = 10_000;
pub const MAX_LOCK_TTL_MS: i64 = 10_000;
