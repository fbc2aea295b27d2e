//! Raw configuration -> typed [`Config`]: every problem is collected, each naming its key.

use std::collections::HashMap;
use std::fmt::Display;
use std::net::SocketAddr;
use std::num::{NonZeroU32, NonZeroUsize};
use std::time::Duration;

use super::raw::{RawAdmin, RawBackend, RawConfig, RawPool, RawServer};
use super::secret::{self, Sources};
use super::tls::{check_backend_names, pool_tls, server_tls};
use super::{
    Address, AdminConfig, BackendConfig, Config, ConfigError, DEFAULT_ADMIN_LISTEN, Discovery,
    PoolConfig, ServerConfig, limits,
};
use crate::router::{DistributionKind, HashKind, HashTag, ketama};

/// twemproxy hash functions shardis does not implement.
const TWEMPROXY_ONLY_HASHES: [&str; 5] = ["one_at_a_time", "fnv1_32", "hsieh", "jenkins", "crc32a"];

/// Accumulates problems as `key: message` lines.
#[derive(Default)]
pub(super) struct Problems(pub(super) Vec<String>);

impl Problems {
    pub(super) fn add(&mut self, key: impl Display, message: impl Display) {
        self.0.push(format!("{key}: {message}"));
    }

    /// An integer setting: `default` when absent; reported and replaced by `default` when
    /// outside `min..=max`.
    pub(super) fn int(
        &mut self,
        key: &str,
        value: Option<i64>,
        default: i64,
        min: i64,
        max: i64,
    ) -> i64 {
        match value {
            None => default,
            Some(v) if (min..=max).contains(&v) => v,
            Some(_) if max == i64::MAX => {
                self.add(key, format_args!("must be at least {min}"));
                default
            }
            Some(v) => {
                self.add(key, format_args!("must be from {min} to {max} (got {v})"));
                default
            }
        }
    }

    fn socket_addr(&mut self, key: &str, value: Option<&str>, default: &str) -> SocketAddr {
        let text = value.unwrap_or(default);
        match text.parse() {
            Ok(addr) => addr,
            Err(_) => {
                self.add(
                    key,
                    format_args!(
                        "{text:?} is not an IP:PORT socket address (like \"127.0.0.1:6380\")"
                    ),
                );
                SocketAddr::from(([127, 0, 0, 1], 0))
            }
        }
    }
}

/// Converts and checks a raw configuration, reporting every problem found: first the
/// `unknown` keys (paths like `pools[0].hashtag`), then every invalid value.
pub(super) fn validate(raw: RawConfig, unknown: Vec<String>) -> Result<Config, ConfigError> {
    let mut p = Problems::default();
    for key in unknown {
        p.add(key, "unknown key (config/shardis.toml lists every key)");
    }
    let server = server(&mut p, raw.server);
    let admin = admin(&mut p, raw.admin);
    if server.listen == admin.listen && server.listen.port() != 0 {
        p.add("admin.listen", "must differ from server.listen");
    }
    if let Some(plain) = server.plain_listen
        && plain.port() != 0
    {
        if plain == server.listen {
            p.add("server.plain_listen", "must differ from server.listen");
        }
        if plain == admin.listen {
            p.add("admin.listen", "must differ from server.plain_listen");
        }
    }
    let pools: Vec<PoolConfig> = raw
        .pools
        .into_iter()
        .enumerate()
        .map(|(i, pool)| self::pool(&mut p, &format!("pools[{i}]"), pool))
        .collect();
    match pools.len() {
        0 => p.add("pools", "at least one [[pools]] section is required"),
        1 => {}
        n => p.add(
            "pools",
            format_args!("{n} pools are defined, but this version of shardis supports exactly one"),
        ),
    }
    let users = super::users::users(&mut p, raw.users, server.password.is_some());
    if !p.0.is_empty() {
        return Err(ConfigError::Invalid(p.0));
    }
    let mut config = Config {
        server,
        admin,
        pools,
        users,
        digest: String::new(),
    };
    config.digest = config.compute_digest();
    Ok(config)
}

fn server(p: &mut Problems, raw: Option<RawServer>) -> ServerConfig {
    let Some(raw) = raw else {
        p.add("server", "the [server] section with `listen` is required");
        return server(&mut Problems::default(), Some(RawServer::default()));
    };
    if raw.listen.is_none() {
        p.add("server.listen", "is required (like \"127.0.0.1:6380\")");
    }
    let listen = p.socket_addr("server.listen", raw.listen.as_deref(), "127.0.0.1:0");
    let plain_listen = raw
        .plain_listen
        .as_deref()
        .map(|text| p.socket_addr("server.plain_listen", Some(text), "127.0.0.1:0"));
    if plain_listen.is_some() && raw.tls.is_none() {
        p.add(
            "server.plain_listen",
            "is a plain listener beside a TLS one: set [server.tls] too, or use server.listen alone",
        );
    }
    let memory = super::memory::memory(p, &raw);
    let tls = raw.tls.and_then(|t| server_tls(p, t));
    let max = i64::MAX;
    let max_clients = p.int(
        "server.max_clients",
        raw.max_clients,
        limits::MAX_CLIENTS,
        1,
        max,
    );
    let max_pipeline = p.int(
        "server.max_pipeline",
        raw.max_pipeline,
        limits::MAX_PIPELINE,
        1,
        max,
    );
    let max_request_bytes = p.int(
        "server.max_request_bytes",
        raw.max_request_bytes,
        limits::MAX_REQUEST_BYTES,
        1,
        max,
    );
    let grace = p.int(
        "server.shutdown_grace_ms",
        raw.shutdown_grace_ms,
        limits::SHUTDOWN_GRACE_MS,
        0,
        max,
    );
    let slowlog = p.int("server.slowlog_ms", raw.slowlog_ms, 0, 0, max);
    let threads = p.int("server.threads", raw.threads, 0, 0, limits::MAX_THREADS);
    let max_subscriber_output = p.int(
        "server.max_subscriber_output_bytes",
        raw.max_subscriber_output_bytes,
        limits::MAX_SUBSCRIBER_OUTPUT_BYTES,
        1024,
        max,
    );
    let max_keys_reply = p.int(
        "server.max_keys_reply",
        raw.max_keys_reply,
        limits::MAX_KEYS_REPLY,
        1,
        max,
    );
    let max_inline = p.int(
        "server.max_inline_bytes",
        raw.max_inline_bytes,
        limits::MAX_INLINE_BYTES,
        64,
        max,
    );
    let max_multibulk = p.int(
        "server.max_multibulk_length",
        raw.max_multibulk_length,
        limits::MAX_MULTIBULK_LENGTH,
        1,
        i64::from(i32::MAX),
    );
    let idle = p.int(
        "server.client_idle_timeout_ms",
        raw.client_idle_timeout_ms,
        0,
        0,
        max,
    );
    let output_limit = p.int(
        "server.client_output_limit_bytes",
        raw.client_output_limit_bytes,
        0,
        0,
        max,
    );
    if output_limit > 0 && output_limit < 1024 {
        p.add(
            "server.client_output_limit_bytes",
            "must be 0 (off) or at least 1024",
        );
    }
    let auth_failure_delay = p.int(
        "server.auth_failure_delay_ms",
        raw.auth_failure_delay_ms,
        limits::AUTH_FAILURE_DELAY_MS,
        0,
        limits::MAX_AUTH_FAILURE_DELAY_MS,
    );
    let auth_failure_limit = p.int(
        "server.auth_failure_limit",
        raw.auth_failure_limit,
        limits::AUTH_FAILURE_LIMIT,
        0,
        1_000_000,
    );
    let password = secret::client_password(
        p,
        "server.password",
        Sources {
            inline: raw.password,
            sha256: raw.password_sha256,
            env: raw.password_env,
            file: raw.password_file,
        },
    );
    let mut allow_commands = Vec::new();
    for (i, name) in raw
        .allow_commands
        .unwrap_or_default()
        .into_iter()
        .enumerate()
    {
        let lower = name.to_ascii_lowercase();
        if crate::protocol::command::allowable(&lower) {
            if !allow_commands.contains(&lower) {
                allow_commands.push(lower);
            }
        } else {
            p.add(
                format_args!("server.allow_commands[{i}]"),
                format_args!(
                    "{name:?} cannot be enabled; these can: {}",
                    crate::protocol::command::ALLOWABLE.join(", ")
                ),
            );
        }
    }
    ServerConfig {
        listen,
        plain_listen,
        tls,
        max_clients: to_usize(max_clients),
        max_pipeline: to_usize(max_pipeline),
        max_request_bytes: to_usize(max_request_bytes),
        client_read_ahead_bytes: memory.read_ahead,
        client_memory_limit_bytes: memory.client_limit,
        max_client_memory: memory.max_client_memory,
        shutdown_grace: Duration::from_millis(grace as u64),
        slowlog: (slowlog > 0).then(|| Duration::from_millis(slowlog as u64)),
        threads: NonZeroUsize::new(to_usize(threads)),
        allow_commands,
        max_subscriber_output_bytes: to_usize(max_subscriber_output),
        max_keys_reply: to_usize(max_keys_reply),
        max_inline_bytes: to_usize(max_inline),
        max_multibulk_length: to_usize(max_multibulk),
        client_idle_timeout: (idle > 0).then(|| Duration::from_millis(idle as u64)),
        client_output_limit_bytes: (output_limit > 0).then(|| to_usize(output_limit)),
        password,
        auth_failure_delay: Duration::from_millis(auth_failure_delay as u64),
        auth_failure_limit: auth_failure_limit as u32,
    }
}

fn admin(p: &mut Problems, raw: Option<RawAdmin>) -> AdminConfig {
    let raw = raw.unwrap_or_default();
    AdminConfig {
        listen: p.socket_addr("admin.listen", raw.listen.as_deref(), DEFAULT_ADMIN_LISTEN),
        allow_mutations: raw.allow_mutations.unwrap_or(false),
    }
}

fn pool(p: &mut Problems, key: &str, mut raw: RawPool) -> PoolConfig {
    let cluster = super::cluster::cluster(p, key, &mut raw);
    let tls = pool_tls(p, key, &mut raw);
    let name = raw.name.unwrap_or_else(|| "main".to_string());
    let name_ok = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
    if !name_ok {
        p.add(
            format_args!("{key}.name"),
            "must be 1 to 64 characters from A-Z, a-z, 0-9, '_', '-', '.'",
        );
    }

    let distribution = match raw.distribution.as_deref() {
        None => DistributionKind::default(),
        Some(s) => DistributionKind::from_name(s).unwrap_or_else(|| {
            let valid: Vec<&str> = DistributionKind::ALL.iter().map(|d| d.name()).collect();
            let note = if s == "random" {
                " (twemproxy's random distribution cannot shard data and is not supported)"
            } else {
                ""
            };
            p.add(
                format_args!("{key}.distribution"),
                format_args!(
                    "unknown distribution {s:?}{note}; valid: {}",
                    valid.join(", ")
                ),
            );
            DistributionKind::default()
        }),
    };

    let hash = match raw.hash.as_deref() {
        None => HashKind::default(),
        Some(s) => HashKind::from_name(s).unwrap_or_else(|| {
            let valid: Vec<&str> = HashKind::ALL.iter().map(|h| h.name()).collect();
            let note = if TWEMPROXY_ONLY_HASHES.contains(&s) {
                " (twemproxy has it, shardis does not)"
            } else {
                ""
            };
            p.add(
                format_args!("{key}.hash"),
                format_args!("unknown hash {s:?}{note}; valid: {}", valid.join(", ")),
            );
            HashKind::default()
        }),
    };

    let hash_tag = raw.hash_tag.as_deref().and_then(|s| {
        let tag = HashTag::parse(s);
        if tag.is_none() {
            p.add(
                format_args!("{key}.hash_tag"),
                format_args!("{s:?} must be exactly two bytes, like \"{{}}\" or \"$$\""),
            );
        }
        tag
    });

    let max = i64::MAX;
    let timeout = p.int(
        &format!("{key}.timeout_ms"),
        raw.timeout_ms,
        limits::TIMEOUT_MS,
        1,
        max,
    );
    let connect_timeout = p.int(
        &format!("{key}.connect_timeout_ms"),
        raw.connect_timeout_ms,
        timeout,
        1,
        max,
    );
    let connections = p.int(
        &format!("{key}.connections_per_backend"),
        raw.connections_per_backend,
        limits::CONNECTIONS_PER_BACKEND,
        1,
        limits::MAX_CONNECTIONS_PER_BACKEND,
    );

    let max_exclusive = p.int(
        &format!("{key}.max_exclusive_per_backend"),
        raw.max_exclusive_per_backend,
        limits::MAX_EXCLUSIVE_PER_BACKEND,
        1,
        limits::MAX_MAX_EXCLUSIVE,
    );

    let health = p.int(
        &format!("{key}.health_interval_ms"),
        raw.health_interval_ms,
        limits::HEALTH_INTERVAL_MS,
        0,
        max,
    );
    let failure_limit = p.int(
        &format!("{key}.failure_limit"),
        raw.failure_limit,
        limits::FAILURE_LIMIT,
        1,
        1_000_000,
    );
    let retry = p.int(
        &format!("{key}.retry_timeout_ms"),
        raw.retry_timeout_ms,
        if health > 0 {
            health
        } else {
            limits::HEALTH_INTERVAL_MS
        },
        1,
        max,
    );
    let dns_refresh = p.int(
        &format!("{key}.dns_refresh_ms"),
        raw.dns_refresh_ms,
        limits::DNS_REFRESH_MS,
        0,
        max,
    );
    let discovery = match raw.discovery.as_deref() {
        None | Some("static") => Discovery::Static,
        Some("dns") => Discovery::Dns,
        Some(other) => {
            p.add(
                format_args!("{key}.discovery"),
                format_args!("unknown discovery {other:?}; valid: static, dns"),
            );
            Discovery::Static
        }
    };
    let ms = |v: i64| (v > 0).then(|| Duration::from_millis(v as u64));
    let db = p.int(&format!("{key}.db"), raw.db, 0, 0, limits::MAX_DB);
    let username = username(p, &format!("{key}.username"), raw.username);
    let password = secret::backend_password(
        p,
        &format!("{key}.password"),
        Sources {
            inline: raw.password,
            env: raw.password_env,
            file: raw.password_file,
            ..Sources::default()
        },
    );

    let backends = match cluster {
        // Its nodes come from the cluster.
        Some(_) => Vec::new(),
        None => backends(p, key, raw.backends, distribution),
    };
    if discovery == Discovery::Dns && backends.len() != 1 {
        p.add(
            format_args!("{key}.backends"),
            "with discovery = \"dns\" list exactly one backend: the host name whose addresses are the backends",
        );
    }
    if let Some(tls) = &tls {
        check_backend_names(p, key, tls, &backends);
    }
    PoolConfig {
        name,
        distribution,
        hash,
        hash_tag,
        timeout: Duration::from_millis(timeout as u64),
        connect_timeout: Duration::from_millis(connect_timeout as u64),
        connections_per_backend: NonZeroUsize::new(to_usize(connections))
            .unwrap_or(NonZeroUsize::MIN),
        max_exclusive: to_usize(max_exclusive),
        health_interval: ms(health),
        failure_limit: failure_limit as u32,
        retry_timeout: Duration::from_millis(retry as u64),
        auto_eject: raw.auto_eject.unwrap_or(false),
        dns_refresh: ms(dns_refresh),
        discovery,
        tls,
        username,
        password,
        db: db as u32,
        backends,
        cluster,
    }
}

/// A backend username: sent as a RESP argument, so any bytes would do, but a name with spaces
/// or control characters is a mistake in the file.
fn username(p: &mut Problems, key: &str, raw: Option<String>) -> Option<String> {
    let name = raw?;
    if name.is_empty() || name.chars().any(|c| c.is_whitespace() || c.is_control()) {
        p.add(key, "must be a non-empty name without spaces");
        return None;
    }
    Some(name)
}

fn backends(
    p: &mut Problems,
    pool_key: &str,
    raw: Option<Vec<RawBackend>>,
    distribution: DistributionKind,
) -> Vec<BackendConfig> {
    let raw = raw.unwrap_or_default();
    if raw.is_empty() {
        p.add(
            format_args!("{pool_key}.backends"),
            "at least one backend is required",
        );
    }
    if raw.len() > limits::MAX_BACKENDS {
        p.add(
            format_args!("{pool_key}.backends"),
            format_args!(
                "{} backends; at most {} are supported",
                raw.len(),
                limits::MAX_BACKENDS
            ),
        );
    }
    let mut names: HashMap<String, String> = HashMap::new();
    let mut addresses: HashMap<(String, u16), String> = HashMap::new();
    let mut out = Vec::with_capacity(raw.len());
    for (i, b) in raw.into_iter().enumerate() {
        let key = format!("{pool_key}.backends[{i}]");
        let address_text = b.address.unwrap_or_default();
        let address = match address_text.parse::<Address>() {
            Ok(a) => a,
            Err(_) if address_text.is_empty() => {
                p.add(
                    format_args!("{key}.address"),
                    "is required (like \"10.0.0.1:6379\")",
                );
                Address {
                    host: String::new(),
                    port: 0,
                }
            }
            Err(e) => {
                p.add(
                    format_args!("{key}.address"),
                    format_args!("{address_text:?}: {e}"),
                );
                Address {
                    host: String::new(),
                    port: 0,
                }
            }
        };
        if address.port != 0
            && let Some(first) = addresses.insert(address.normalized(), key.clone())
        {
            p.add(
                format_args!("{key}.address"),
                format_args!("{address} is already used by {first}"),
            );
        }
        // twemproxy's default name is the address as written, and so is ours.
        let name = b.name.unwrap_or_else(|| address_text.clone());
        if name.is_empty() {
            p.add(format_args!("{key}.name"), "must not be empty");
        } else if name.len() > limits::MAX_BACKEND_NAME {
            p.add(
                format_args!("{key}.name"),
                format_args!(
                    "is {} bytes; at most {} are allowed (twemproxy truncates longer ketama names)",
                    name.len(),
                    limits::MAX_BACKEND_NAME
                ),
            );
        } else if name.chars().any(|c| c.is_whitespace() || c.is_control()) {
            p.add(
                format_args!("{key}.name"),
                format_args!("{name:?} must not contain whitespace or control characters"),
            );
        } else if let Some(first) = names.insert(name.clone(), key.clone()) {
            p.add(
                format_args!("{key}.name"),
                format_args!("{name:?} is already used by {first}"),
            );
        }
        let weight = p.int(&format!("{key}.weight"), b.weight, 1, 1, limits::MAX_WEIGHT);
        let username = username(p, &format!("{key}.username"), b.username);
        let password = secret::backend_password(
            p,
            &format!("{key}.password"),
            Sources {
                inline: b.password,
                env: b.password_env,
                file: b.password_file,
                ..Sources::default()
            },
        );
        out.push(BackendConfig {
            name,
            address,
            weight: NonZeroU32::new(weight as u32).unwrap_or(NonZeroU32::MIN),
            username,
            password,
        });
    }
    if distribution == DistributionKind::Ketama {
        check_ketama_point_keys(p, pool_key, &out);
    }
    out
}

/// twemproxy formats each ketama point as `"{name}-{j}"` into an 86-byte buffer; a longer
/// string would be truncated there and hashed differently from ours.
fn check_ketama_point_keys(p: &mut Problems, pool_key: &str, backends: &[BackendConfig]) {
    let total = backends
        .iter()
        .fold(0u32, |acc, b| acc.saturating_add(b.weight.get()));
    for (i, b) in backends.iter().enumerate() {
        if b.name.len() > limits::MAX_BACKEND_NAME {
            continue; // already reported
        }
        let points = ketama::points_for(b.weight.get(), total, backends.len());
        let Some(last) = (points / 4).checked_sub(1) else {
            continue;
        };
        let longest = b.name.len() + 1 + last.to_string().len();
        if longest > ketama::MAX_POINT_KEY_LEN {
            p.add(
                format_args!("{pool_key}.backends[{i}].name"),
                format_args!(
                    "is too long for its share of ketama points: \"{}-{last}\" exceeds {} bytes",
                    b.name,
                    ketama::MAX_POINT_KEY_LEN
                ),
            );
        }
    }
}

fn to_usize(v: i64) -> usize {
    usize::try_from(v).unwrap_or(usize::MAX)
}
