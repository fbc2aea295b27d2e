//! Configuration: a TOML file (or `--backend` flags) turned into a validated, typed [`Config`].
//!
//! Validation reports every unknown key and every invalid value at once, each line naming its
//! key (`pools[0].backends[2].weight: must be from 1 to 1000000 (got 0)`).

mod address;
mod cluster;
mod describe;
mod faults;
mod json;
mod keys;
mod memory;
mod raw;
mod routes;
mod secret;
mod sentinel;
mod tls;
mod users;
mod validate;

use std::net::SocketAddr;
use std::num::{NonZeroU32, NonZeroUsize};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

pub use address::{Address, AddressError};
pub use cluster::{ClusterConfig, ReadFrom};
pub use faults::{FaultConfig, FaultKind, MAX_FAULT_DELAY_MS};
pub use json::{MASK, mask_secrets};
pub use keys::KeysConfig;
pub use memory::{cgroup_memory_limit, default_max_client_memory};
pub use routes::{MIRROR_BUFFER_BYTES, MirrorConfig, RouteConfig, RoutingConfig};
pub use secret::{
    BackendPassword, ClientPassword, Credentials, MAX_SECRET_FILE, PasswordDigest, Secret,
    SecretSource,
};
pub use sentinel::{HoldConfig, SentinelConfig};

use crate::router::{DistributionKind, HashKind, HashTag};
use crate::tls::{ClientTls, ClientTlsFiles, ServerTls, ServerTlsFiles};
use raw::{RawBackend, RawConfig, RawPool, RawServer};

/// Default `[server] listen` for `--backend` mode.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:6380";
/// Default `[admin] listen`.
pub const DEFAULT_ADMIN_LISTEN: &str = "127.0.0.1:9121";

pub mod limits;

/// A validated configuration.
#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    /// `[server]`: the client-facing listener and its limits.
    pub server: ServerConfig,
    /// `[admin]`: the HTTP admin listener.
    pub admin: AdminConfig,
    /// `[[pools]]`, in file order; names are unique.
    pub pools: Vec<PoolConfig>,
    /// `[routing]` and `[[routes]]`: which pool serves which keys, and the mirrors.
    pub routing: RoutingConfig,
    /// `[[faults]]`: errors and delays injected into commands; none by default.
    pub faults: Vec<FaultConfig>,
    /// `[[users]]`: the ACL users clients may authenticate as.
    pub users: Vec<UserConfig>,
    /// Hex MD5 of the canonical settings ([`Config::describe`] without the digest line): equal
    /// for equal settings, whatever the comments, order or spelling of defaults in the file.
    pub digest: String,
}

/// `[server]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerConfig {
    /// Client listener; port 0 picks a free port. Speaks TLS when `tls` is set.
    pub listen: SocketAddr,
    /// With `tls`: a second client listener that speaks plain RESP.
    pub plain_listen: Option<SocketAddr>,
    /// `[server.tls]`: TLS on `listen`.
    pub tls: Option<ServerTlsConfig>,
    /// Most concurrent clients.
    pub max_clients: usize,
    /// Commands in flight per client before the proxy holds its further commands.
    pub max_pipeline: usize,
    /// Largest single request in bytes.
    pub max_request_bytes: usize,
    /// Input read ahead of dispatch per client, beyond the request being assembled.
    pub client_read_ahead_bytes: usize,
    /// What one client may hold (input, replies, output) once it holds more than its normal
    /// bounds; more closes it. `None` is off.
    pub client_memory_limit_bytes: Option<usize>,
    /// Bytes buffered for all clients together; past it the client holding the most is
    /// closed. `None` is off.
    pub max_client_memory: Option<usize>,
    /// How long in-flight requests may finish after a shutdown signal.
    pub shutdown_grace: Duration,
    /// Log commands slower than this; `None` is off.
    pub slowlog: Option<Duration>,
    /// Worker threads; `None` means [`crate::workers::default_count`].
    pub threads: Option<NonZeroUsize>,
    /// Commands refused by default that the operator enabled (lowercase names).
    pub allow_commands: Vec<String>,
    /// Pub/sub messages queued for one subscriber before it is disconnected as too slow.
    pub max_subscriber_output_bytes: usize,
    /// Most keys a KEYS reply may merge; more is an error that points to SCAN.
    pub max_keys_reply: usize,
    /// Longest inline command line, and longest `*N`/`$N` header line of a request.
    pub max_inline_bytes: usize,
    /// Most arguments in one request.
    pub max_multibulk_length: usize,
    /// Close a client that neither sent nor read anything for this long; `None` is off.
    /// Blocked and subscribed clients are exempt, as in Redis.
    pub client_idle_timeout: Option<Duration>,
    /// Close a client whose unwritten replies exceed this many bytes; `None` is off.
    pub client_output_limit_bytes: Option<usize>,
    /// The `default` user's password (Redis's `requirepass`): clients must AUTH with it.
    pub password: Option<ClientPassword>,
    /// How long a client's reply to its first failed AUTH waits; doubled for each further
    /// consecutive failure (at most [`MAX_AUTH_DELAY`]). Zero: no wait.
    pub auth_failure_delay: Duration,
    /// Consecutive failed AUTHs after which the connection is closed; 0: never.
    pub auth_failure_limit: u32,
    /// Scripts and transactions whose keys span backends.
    pub scripts: ScriptsConfig,
}

/// What shardis does with a script or transaction whose keys live on several backends.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum CrossShard {
    /// Run it in the proxy, under locks on every declared key (the default).
    #[default]
    Run,
    /// Refuse it with `-CROSSSLOT`, as Redis Cluster does.
    Refuse,
}

/// `[server] cross_shard`, `script_timeout_ms`, `lock_ttl_ms`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ScriptsConfig {
    pub cross_shard: CrossShard,
    /// A script run in the proxy is stopped past this.
    pub script_timeout: Duration,
    /// How long a lock taken on a backend lives unless renewed (renewed while its script runs).
    pub lock_ttl: Duration,
}

impl Default for ScriptsConfig {
    fn default() -> Self {
        ScriptsConfig {
            cross_shard: CrossShard::Run,
            script_timeout: Duration::from_millis(limits::SCRIPT_TIMEOUT_MS as u64),
            lock_ttl: Duration::from_millis(limits::LOCK_TTL_MS as u64),
        }
    }
}

/// The longest a failed AUTH's reply waits, however many failures came before.
pub const MAX_AUTH_DELAY: Duration = Duration::from_secs(10);

/// One `[[users]]` entry: an ACL user, as Redis's `ACL SETUSER` would define it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UserConfig {
    /// What clients name in `AUTH user password`; `default` configures the default user.
    pub name: String,
    /// An off user cannot authenticate; sessions authenticated as it are closed by a reload.
    pub enabled: bool,
    /// Any password is accepted (Redis's `nopass`).
    pub nopass: bool,
    pub password: Option<ClientPassword>,
    /// Command rules, applied in order from "nothing allowed": `+@read`, `-flushall`, ...
    pub commands: Vec<String>,
    /// Key patterns (globs) the user may read and write.
    pub keys: Vec<String>,
    /// Key patterns the user may only read.
    pub read_keys: Vec<String>,
    /// Key patterns the user may only write.
    pub write_keys: Vec<String>,
    /// Pub/sub channel patterns.
    pub channels: Vec<String>,
}

impl UserConfig {
    /// The rules, for the ACL compiler.
    pub fn rules(&self) -> crate::acl::Rules<'_> {
        crate::acl::Rules {
            commands: &self.commands,
            keys: &self.keys,
            read_keys: &self.read_keys,
            write_keys: &self.write_keys,
            channels: &self.channels,
        }
    }
}

/// `[server.tls]`: the files and settings, and what was loaded from them when the
/// configuration was read (a reload reads them again).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerTlsConfig {
    pub files: ServerTlsFiles,
    pub loaded: Arc<ServerTls>,
}

/// A pool's backend TLS (`tls = true`): the files and settings, and what was loaded from them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PoolTlsConfig {
    pub files: ClientTlsFiles,
    pub loaded: Arc<ClientTls>,
}

/// `[admin]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AdminConfig {
    /// HTTP listener for /metrics, /healthz, /readyz, /status and the /admin API.
    pub listen: SocketAddr,
    /// Serve mutating admin requests (POST /admin/reload) on a listener that is not loopback.
    /// On a loopback listener they are always served.
    pub allow_mutations: bool,
}

/// One `[[pools]]` entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PoolConfig {
    /// Pool name (metrics label).
    pub name: String,
    /// Key distribution.
    pub distribution: DistributionKind,
    /// Key hash function.
    pub hash: HashKind,
    /// Optional hash tag.
    pub hash_tag: Option<HashTag>,
    /// Reply timeout per request.
    pub timeout: Duration,
    /// Connect timeout.
    pub connect_timeout: Duration,
    /// Pipelined connections kept to each backend (per protocol in use).
    pub connections_per_backend: NonZeroUsize,
    /// Most exclusive connections (blocking commands, WATCH) open to each backend.
    pub max_exclusive: usize,
    /// PING an idle link this often; `None`: off.
    pub health_interval: Option<Duration>,
    /// Consecutive failures that mark a backend down.
    pub failure_limit: u32,
    /// How long a backend marked down waits before it is probed again.
    pub retry_timeout: Duration,
    /// Take a down backend out of the ring (its keys move to the others) until it is up.
    pub auto_eject: bool,
    /// Re-resolve backend host names this often; `None`: only when connecting.
    pub dns_refresh: Option<Duration>,
    /// How the backends are found.
    pub discovery: Discovery,
    /// TLS to the backends (`tls = true`); `None`: plain TCP.
    pub tls: Option<PoolTlsConfig>,
    /// The user shardis authenticates as on every backend connection (AUTH / HELLO AUTH).
    pub username: Option<String>,
    /// Its password.
    pub password: Option<BackendPassword>,
    /// The database every backend connection selects; clients see it as their only one.
    pub db: u32,
    /// Backends in configuration order (the order [`crate::router::Ring`] indexes); empty
    /// for a cluster pool.
    pub backends: Vec<BackendConfig>,
    /// `kind = "cluster"`: a Redis Cluster upstream, whose nodes come from its slot map.
    pub cluster: Option<ClusterConfig>,
    /// Hot keys, big keys and the near cache.
    pub keys: KeysConfig,
    /// `sentinels = [...]`: shards whose primary and replicas Redis Sentinel names.
    pub sentinel: Option<SentinelConfig>,
    /// How requests are held while a primary is away (failover, restart).
    pub hold: HoldConfig,
}

impl PoolConfig {
    /// The ring that places this pool's keys over its backends, in configuration order.
    pub fn ring(&self) -> crate::router::Ring {
        let backends: Vec<(&str, u32)> = self
            .backends
            .iter()
            .map(|b| (b.name.as_str(), b.weight.get()))
            .collect();
        crate::router::Ring::from_parts(self.hash, self.hash_tag, self.distribution, &backends)
    }

    /// A pool without backends (the table of a configuration with no pool).
    pub fn empty() -> PoolConfig {
        PoolConfig {
            name: String::new(),
            distribution: DistributionKind::default(),
            hash: HashKind::default(),
            hash_tag: None,
            timeout: Duration::from_millis(limits::TIMEOUT_MS as u64),
            connect_timeout: Duration::from_millis(limits::TIMEOUT_MS as u64),
            connections_per_backend: NonZeroUsize::MIN,
            max_exclusive: 1,
            health_interval: None,
            failure_limit: limits::FAILURE_LIMIT as u32,
            retry_timeout: Duration::from_millis(limits::HEALTH_INTERVAL_MS as u64),
            auto_eject: false,
            dns_refresh: None,
            discovery: Discovery::Static,
            tls: None,
            username: None,
            password: None,
            db: 0,
            backends: Vec::new(),
            cluster: None,
            keys: KeysConfig::default(),
            sentinel: None,
            hold: HoldConfig::default(),
        }
    }

    /// The credentials and database of `backend`'s connections: its own username and password
    /// where it sets them, else the pool's.
    /// What the pool's own connections (a cluster pool's slot-map queries) authenticate as.
    pub fn pool_credentials(&self) -> Credentials {
        Credentials {
            username: self.username.clone(),
            password: self.password.as_ref().map(|p| p.secret.clone()),
            db: self.db,
        }
    }

    pub fn credentials(&self, backend: &BackendConfig) -> Credentials {
        Credentials {
            username: backend.username.clone().or_else(|| self.username.clone()),
            password: backend
                .password
                .as_ref()
                .or(self.password.as_ref())
                .map(|p| p.secret.clone()),
            db: self.db,
        }
    }
}

/// Settings given on the command line, which win over the file's (also after a reload).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Overrides {
    pub listen: Option<SocketAddr>,
    pub admin: Option<SocketAddr>,
    pub threads: Option<NonZeroUsize>,
}

impl Overrides {
    /// Puts the command line's settings into `config`.
    pub fn apply(&self, config: &mut Config) {
        if let Some(listen) = self.listen {
            config.server.listen = listen;
        }
        if let Some(admin) = self.admin {
            config.admin.listen = admin;
        }
        if let Some(threads) = self.threads {
            config.server.threads = Some(threads);
        }
    }
}

/// How a pool finds its backends.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Discovery {
    /// The backends listed.
    #[default]
    Static,
    /// One backend per address the single listed host name resolves to, named by address.
    Dns,
}

/// One backend of a pool.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BackendConfig {
    /// Placement identity: renaming a backend moves its keys, moving its address does not.
    pub name: String,
    /// Where to connect.
    pub address: Address,
    /// Relative share of keys.
    pub weight: NonZeroU32,
    /// Overrides the pool's `username` for this backend.
    pub username: Option<String>,
    /// Overrides the pool's `password` for this backend.
    pub password: Option<BackendPassword>,
    /// A Sentinel-managed shard: the master name its sentinels know it by; its address
    /// then comes from them (and `address` is unused).
    pub sentinel_master: Option<String>,
}

/// Why a configuration could not be loaded.
#[derive(thiserror::Error, Debug)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// Not valid TOML, or a value of the wrong type.
    #[error("config syntax error: {0}")]
    Syntax(#[from] toml::de::Error),
    /// Well-formed but invalid settings: one `key: problem` line each.
    #[error("invalid configuration:\n{}", .0.join("\n"))]
    Invalid(Vec<String>),
}

impl ConfigError {
    /// A short static label for metrics and logs.
    pub fn kind(&self) -> &'static str {
        match self {
            ConfigError::Io { .. } => "io",
            ConfigError::Syntax(_) => "syntax",
            ConfigError::Invalid(_) => "invalid",
        }
    }
}

impl Config {
    /// The pool (index into `pools`) of keys that no route names: the catch-all; `None` when
    /// such keys are refused.
    pub fn catch_all(&self) -> Option<usize> {
        self.routing.catch_all
    }

    /// Reads and validates a TOML file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Config::parse(&text)
    }

    /// Parses and validates TOML text.
    pub fn parse(text: &str) -> Result<Config, ConfigError> {
        // Unknown keys are collected rather than rejected by serde, so that they are reported
        // together with every other problem instead of hiding them.
        let mut unknown = Vec::new();
        let raw: RawConfig =
            serde_ignored::deserialize(toml::Deserializer::parse(text)?, |path| {
                unknown.push(raw::key_path(&path))
            })?;
        validate::validate(raw, unknown)
    }

    /// The `--backend HOST:PORT` mode: one pool "main" with default settings, each backend
    /// named by its address as given; listeners on [`DEFAULT_LISTEN`] and [`DEFAULT_ADMIN_LISTEN`].
    pub fn from_backends(addrs: &[String]) -> Result<Config, ConfigError> {
        let raw = RawConfig {
            server: Some(RawServer {
                listen: Some(DEFAULT_LISTEN.to_string()),
                ..RawServer::default()
            }),
            admin: None,
            users: Vec::new(),
            routing: None,
            routes: Vec::new(),
            faults: Vec::new(),
            pools: vec![RawPool {
                name: Some("main".to_string()),
                backends: Some(
                    addrs
                        .iter()
                        .map(|a| RawBackend {
                            name: Some(a.trim().to_string()),
                            address: Some(a.trim().to_string()),
                            ..RawBackend::default()
                        })
                        .collect(),
                ),
                ..RawPool::default()
            }],
        };
        validate::validate(raw, Vec::new())
    }

    /// With `[[users]]` and neither a `[server] password` nor a `default` user, the default
    /// user is off: every client must authenticate as one of the users.
    pub fn default_user_off(&self) -> bool {
        !self.users.is_empty()
            && self.server.password.is_none()
            && !self.users.iter().any(|u| u.name == "default")
    }

    /// Whether clients are asked to authenticate or checked against ACL rules at all.
    pub fn auth_configured(&self) -> bool {
        self.server.password.is_some() || !self.users.is_empty()
    }
}

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_auth;
#[cfg(test)]
mod tests_cluster;
