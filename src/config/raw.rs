//! The configuration file as written: serde structs that keep every value loosely typed
//! (optional, `i64`, `String`) so validation can report all problems at once. Keys they do not
//! have are collected by [`super::Config::parse`] and reported with the other problems.

use serde::Deserialize;

/// The whole file.
#[derive(Deserialize, Debug, Default)]
pub(super) struct RawConfig {
    pub server: Option<RawServer>,
    pub admin: Option<RawAdmin>,
    #[serde(default)]
    pub pools: Vec<RawPool>,
    #[serde(default)]
    pub users: Vec<RawUser>,
    /// `[routing]`, `[[routes]]` and `[[faults]]`: in `super::routes` and `super::faults`.
    pub routing: Option<super::routes::RawRouting>,
    #[serde(default)]
    pub routes: Vec<super::routes::RawRoute>,
    #[serde(default)]
    pub faults: Vec<super::faults::RawFault>,
}

/// `[server]`.
#[derive(Deserialize, Debug, Default)]
pub(super) struct RawServer {
    pub listen: Option<String>,
    pub plain_listen: Option<String>,
    pub tls: Option<RawServerTls>,
    pub max_clients: Option<i64>,
    pub max_pipeline: Option<i64>,
    pub max_request_bytes: Option<i64>,
    pub client_read_ahead_bytes: Option<i64>,
    pub client_memory_limit_bytes: Option<i64>,
    pub max_client_memory: Option<i64>,
    pub shutdown_grace_ms: Option<i64>,
    pub slowlog_ms: Option<i64>,
    pub threads: Option<i64>,
    pub allow_commands: Option<Vec<String>>,
    pub max_subscriber_output_bytes: Option<i64>,
    pub max_keys_reply: Option<i64>,
    pub max_inline_bytes: Option<i64>,
    pub max_multibulk_length: Option<i64>,
    pub client_idle_timeout_ms: Option<i64>,
    pub client_output_limit_bytes: Option<i64>,
    pub password: Option<String>,
    pub password_sha256: Option<String>,
    pub password_env: Option<String>,
    pub password_file: Option<String>,
    pub auth_failure_delay_ms: Option<i64>,
    pub auth_failure_limit: Option<i64>,
    pub cross_shard: Option<String>,
    pub script_timeout_ms: Option<i64>,
    pub lock_ttl_ms: Option<i64>,
}

/// One `[[users]]` entry.
#[derive(Deserialize, Debug, Default)]
pub(super) struct RawUser {
    pub name: Option<String>,
    pub password: Option<String>,
    pub password_sha256: Option<String>,
    pub password_env: Option<String>,
    pub password_file: Option<String>,
    pub nopass: Option<bool>,
    pub enabled: Option<bool>,
    pub commands: Option<Vec<String>>,
    pub keys: Option<Vec<String>>,
    pub read_keys: Option<Vec<String>>,
    pub write_keys: Option<Vec<String>>,
    pub channels: Option<Vec<String>>,
}

/// `[server.tls]`.
#[derive(Deserialize, Debug, Default)]
pub(super) struct RawServerTls {
    pub cert: Option<String>,
    pub key: Option<String>,
    pub client_ca: Option<String>,
    pub client_auth: Option<String>,
    pub handshake_timeout_ms: Option<i64>,
}

/// `[admin]`.
#[derive(Deserialize, Debug, Default)]
pub(super) struct RawAdmin {
    pub listen: Option<String>,
    pub allow_mutations: Option<bool>,
}

/// One `[[pools]]` entry.
#[derive(Deserialize, Debug, Default)]
pub(super) struct RawPool {
    pub name: Option<String>,
    pub distribution: Option<String>,
    pub hash: Option<String>,
    pub hash_tag: Option<String>,
    pub timeout_ms: Option<i64>,
    pub connect_timeout_ms: Option<i64>,
    pub connections_per_backend: Option<i64>,
    pub max_exclusive_per_backend: Option<i64>,
    pub health_interval_ms: Option<i64>,
    pub failure_limit: Option<i64>,
    pub retry_timeout_ms: Option<i64>,
    pub auto_eject: Option<bool>,
    pub dns_refresh_ms: Option<i64>,
    pub discovery: Option<String>,
    pub tls: Option<bool>,
    pub tls_ca: Option<String>,
    pub tls_cert: Option<String>,
    pub tls_key: Option<String>,
    pub tls_server_name: Option<String>,
    pub tls_insecure_skip_verify: Option<bool>,
    pub username: Option<String>,
    pub password: Option<String>,
    pub password_env: Option<String>,
    pub password_file: Option<String>,
    pub db: Option<i64>,
    pub backends: Option<Vec<RawBackend>>,
    /// `hashed` (default) or `cluster`; the cluster settings below are in `super::cluster`.
    pub kind: Option<String>,
    pub seeds: Option<Vec<String>>,
    pub read_from: Option<String>,
    pub refresh_interval_ms: Option<i64>,
    /// Key watch: hot keys, big keys, near cache (`super::keys`).
    pub hotkeys_capacity: Option<i64>,
    pub hotkeys_sample: Option<i64>,
    pub bigkey_reply_bytes: Option<i64>,
    pub bigkey_request_bytes: Option<i64>,
    pub near_cache: Option<bool>,
    pub near_cache_bytes: Option<i64>,
    /// Replicated shards (`super::sentinel`).
    pub sentinels: Option<Vec<String>>,
    pub sentinel_username: Option<String>,
    pub sentinel_password: Option<String>,
    pub sentinel_password_env: Option<String>,
    pub sentinel_password_file: Option<String>,
    pub sentinel_tls: Option<bool>,
    pub sentinel_refresh_ms: Option<i64>,
    pub failover_hold_ms: Option<i64>,
    pub failover_hold_requests: Option<i64>,
    pub restart_hold_ms: Option<i64>,
}

/// One entry of `backends = [...]`.
#[derive(Deserialize, Debug, Default)]
pub(super) struct RawBackend {
    pub name: Option<String>,
    pub address: Option<String>,
    pub weight: Option<i64>,
    pub username: Option<String>,
    pub password: Option<String>,
    pub password_env: Option<String>,
    pub password_file: Option<String>,
    /// A Sentinel-managed shard: the master name the sentinels know it by.
    pub sentinel_master: Option<String>,
}

/// A key's path as validation messages name keys: `pools[0].backends[1].weight`.
pub(super) fn key_path(path: &serde_ignored::Path) -> String {
    use serde_ignored::Path;
    match path {
        Path::Root => String::new(),
        Path::Seq { parent, index } => format!("{}[{index}]", key_path(parent)),
        Path::Map { parent, key } => match key_path(parent) {
            p if p.is_empty() => key.clone(),
            p => format!("{p}.{key}"),
        },
        Path::Some { parent }
        | Path::NewtypeStruct { parent }
        | Path::NewtypeVariant { parent } => key_path(parent),
    }
}
