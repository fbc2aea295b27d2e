//! `[[pools]]`: a pool's name, how it places keys (distribution, hash, hash tag), its timing and
//! health settings, discovery, credentials, TLS, and its backends ([`super::backends`]) or its
//! cluster (`super::super::cluster`).

use std::num::NonZeroUsize;
use std::time::Duration;

use super::super::raw::RawPool;
use super::super::secret::{self, Sources};
use super::super::tls::{check_backend_names, pool_tls};
use super::super::{Discovery, PoolConfig, limits};
use super::backends::{backends, username};
use super::{Problems, to_usize};
use crate::router::{DistributionKind, HashKind, HashTag};

/// twemproxy hash functions shardis does not implement.
const TWEMPROXY_ONLY_HASHES: [&str; 5] = ["one_at_a_time", "fnv1_32", "hsieh", "jenkins", "crc32a"];

/// Pool `key` (`pools[i]`).
pub(super) fn pool(p: &mut Problems, key: &str, mut raw: RawPool) -> PoolConfig {
    let cluster = super::super::cluster::cluster(p, key, &mut raw);
    let tls = pool_tls(p, key, &mut raw);
    let name = name(p, key, raw.name.take());
    let distribution = distribution(p, key, raw.distribution.as_deref());
    let hash = hash(p, key, raw.hash.as_deref());
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
    let mut config = timing(p, key, &raw);
    let db = p.int(&format!("{key}.db"), raw.db, 0, 0, limits::MAX_DB);
    let username = username(p, &format!("{key}.username"), raw.username.take());
    let password = secret::backend_password(
        p,
        &format!("{key}.password"),
        Sources {
            inline: raw.password.take(),
            env: raw.password_env.take(),
            file: raw.password_file.take(),
            ..Sources::default()
        },
    );
    let hold = super::super::sentinel::hold(p, key, &raw);
    let masters = raw
        .backends
        .iter()
        .flatten()
        .filter(|b| b.sentinel_master.is_some())
        .count();
    let sentinel = match cluster {
        Some(_) => None,
        None => super::super::sentinel::sentinel(p, key, &mut raw, masters),
    };
    let backends = match cluster {
        // Its nodes come from the cluster.
        Some(_) => Vec::new(),
        None => backends(p, key, raw.backends.take(), distribution),
    };
    if config.discovery == Discovery::Dns && backends.len() != 1 {
        p.add(
            format_args!("{key}.backends"),
            "with discovery = \"dns\" list exactly one backend: the host name whose addresses are the backends",
        );
    }
    if let Some(tls) = &tls {
        check_backend_names(p, key, tls, &backends);
    }
    config.name = name;
    config.distribution = distribution;
    config.hash = hash;
    config.hash_tag = hash_tag;
    config.auto_eject = raw.auto_eject.unwrap_or(false);
    config.tls = tls;
    config.username = username;
    config.password = password;
    config.db = db as u32;
    config.backends = backends;
    config.cluster = cluster;
    config.keys = super::super::keys::keys(p, key, &raw);
    config.sentinel = sentinel;
    config.hold = hold;
    config
}

/// The pool's name: it labels metrics, so it is kept short and plain.
fn name(p: &mut Problems, key: &str, raw: Option<String>) -> String {
    let name = raw.unwrap_or_else(|| "main".to_string());
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
    if !ok {
        p.add(
            format_args!("{key}.name"),
            "must be 1 to 64 characters from A-Z, a-z, 0-9, '_', '-', '.'",
        );
    }
    name
}

fn distribution(p: &mut Problems, key: &str, raw: Option<&str>) -> DistributionKind {
    let Some(s) = raw else {
        return DistributionKind::default();
    };
    DistributionKind::from_name(s).unwrap_or_else(|| {
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
    })
}

fn hash(p: &mut Problems, key: &str, raw: Option<&str>) -> HashKind {
    let Some(s) = raw else {
        return HashKind::default();
    };
    HashKind::from_name(s).unwrap_or_else(|| {
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
    })
}

/// Timeouts, connections, health checks and discovery: a pool with everything else empty.
fn timing(p: &mut Problems, key: &str, raw: &RawPool) -> PoolConfig {
    let max = i64::MAX;
    let mut int = |name: &str, value: Option<i64>, default: i64, min: i64, max: i64| {
        p.int(&format!("{key}.{name}"), value, default, min, max)
    };
    let timeout = int("timeout_ms", raw.timeout_ms, limits::TIMEOUT_MS, 1, max);
    let connect_timeout = int(
        "connect_timeout_ms",
        raw.connect_timeout_ms,
        timeout,
        1,
        max,
    );
    let connections = int(
        "connections_per_backend",
        raw.connections_per_backend,
        limits::CONNECTIONS_PER_BACKEND,
        1,
        limits::MAX_CONNECTIONS_PER_BACKEND,
    );
    let max_exclusive = int(
        "max_exclusive_per_backend",
        raw.max_exclusive_per_backend,
        limits::MAX_EXCLUSIVE_PER_BACKEND,
        1,
        limits::MAX_MAX_EXCLUSIVE,
    );
    let health = int(
        "health_interval_ms",
        raw.health_interval_ms,
        limits::HEALTH_INTERVAL_MS,
        0,
        max,
    );
    let failure_limit = int(
        "failure_limit",
        raw.failure_limit,
        limits::FAILURE_LIMIT,
        1,
        1_000_000,
    );
    let retry_default = if health > 0 {
        health
    } else {
        limits::HEALTH_INTERVAL_MS
    };
    let retry = int(
        "retry_timeout_ms",
        raw.retry_timeout_ms,
        retry_default,
        1,
        max,
    );
    let dns_refresh = int(
        "dns_refresh_ms",
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
    PoolConfig {
        timeout: Duration::from_millis(timeout as u64),
        connect_timeout: Duration::from_millis(connect_timeout as u64),
        connections_per_backend: NonZeroUsize::new(to_usize(connections))
            .unwrap_or(NonZeroUsize::MIN),
        max_exclusive: to_usize(max_exclusive),
        health_interval: ms(health),
        failure_limit: failure_limit as u32,
        retry_timeout: Duration::from_millis(retry as u64),
        dns_refresh: ms(dns_refresh),
        discovery,
        ..PoolConfig::empty()
    }
}
