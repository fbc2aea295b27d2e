//! Replicated shards: a hashed pool's Sentinel settings (`sentinels`, their credentials and
//! TLS, `sentinel_refresh_ms`, `read_from`), and the hold settings of every pool
//! (`failover_hold_ms`, `failover_hold_requests`, `restart_hold_ms`), with their validation
//! and the lines `shardis check` and `/admin/config` show of them.

use std::collections::HashSet;
use std::fmt::Write as _;
use std::time::Duration;

use serde_json::{Map, Value};

use super::raw::RawPool;
use super::secret::{self, BackendPassword, Sources};
use super::validate::Problems;
use super::{Address, ReadFrom};

/// Default `sentinel_refresh_ms`.
pub const SENTINEL_REFRESH_MS: i64 = 1000;
/// Default `failover_hold_ms`.
pub const FAILOVER_HOLD_MS: i64 = 10_000;
/// Default `failover_hold_requests`.
pub const FAILOVER_HOLD_REQUESTS: i64 = 10_000;
/// Most sentinels a pool may list.
const MAX_SENTINELS: usize = 16;
/// Longest master name (Sentinel has no limit; a longer one is a mistake in the file).
const MAX_MASTER_NAME: usize = 128;

/// How a pool's shards are found through Redis Sentinel.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SentinelConfig {
    /// The sentinels asked, in turn.
    pub sentinels: Vec<Address>,
    /// What shardis authenticates as on the sentinels (`sentinel_username`).
    pub username: Option<String>,
    /// `sentinel_password` (or `_env`, `_file`).
    pub password: Option<BackendPassword>,
    /// TLS to the sentinels, with the pool's TLS settings (`sentinel_tls`).
    pub tls: bool,
    /// How often each master's address and replicas are asked for again.
    pub refresh: Duration,
    /// Where keyed reads go: the primary, or the shard's replicas.
    pub read_from: ReadFrom,
}

/// How a pool holds requests while a primary is away.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HoldConfig {
    /// Sentinel-managed shards and cluster primaries: how long a request may wait for the
    /// new primary (`failover_hold_ms`); zero fails at once.
    pub failover: Duration,
    /// Most requests held per backend (`failover_hold_requests`).
    pub requests: usize,
    /// Plain backends: how long a request may wait for the backend to come back on its
    /// address (`restart_hold_ms`); zero (the default) fails at once.
    pub restart: Duration,
}

impl Default for HoldConfig {
    fn default() -> HoldConfig {
        HoldConfig {
            failover: Duration::from_millis(FAILOVER_HOLD_MS as u64),
            requests: FAILOVER_HOLD_REQUESTS as usize,
            restart: Duration::ZERO,
        }
    }
}

/// The hold settings of pool `key`.
pub(super) fn hold(p: &mut Problems, key: &str, raw: &RawPool) -> HoldConfig {
    let failover = p.int(
        &format!("{key}.failover_hold_ms"),
        raw.failover_hold_ms,
        FAILOVER_HOLD_MS,
        0,
        600_000,
    );
    let requests = p.int(
        &format!("{key}.failover_hold_requests"),
        raw.failover_hold_requests,
        FAILOVER_HOLD_REQUESTS,
        1,
        10_000_000,
    );
    let restart = p.int(
        &format!("{key}.restart_hold_ms"),
        raw.restart_hold_ms,
        0,
        0,
        600_000,
    );
    HoldConfig {
        failover: Duration::from_millis(failover as u64),
        requests: requests as usize,
        restart: Duration::from_millis(restart as u64),
    }
}

/// The Sentinel settings of hashed pool `key` (`None`: it lists no sentinels), reporting the
/// settings that need sentinels when there are none. `masters`: how many of its backends name
/// a `sentinel_master`.
pub(super) fn sentinel(
    p: &mut Problems,
    key: &str,
    raw: &mut RawPool,
    masters: usize,
) -> Option<SentinelConfig> {
    let Some(list) = raw.sentinels.take() else {
        for (name, set) in [
            ("sentinel_username", raw.sentinel_username.is_some()),
            ("sentinel_password", raw.sentinel_password.is_some()),
            ("sentinel_password_env", raw.sentinel_password_env.is_some()),
            (
                "sentinel_password_file",
                raw.sentinel_password_file.is_some(),
            ),
            ("sentinel_tls", raw.sentinel_tls.is_some()),
            ("sentinel_refresh_ms", raw.sentinel_refresh_ms.is_some()),
            ("read_from", raw.read_from.is_some()),
        ] {
            if set {
                p.add(
                    format_args!("{key}.{name}"),
                    "needs `sentinels` (the shards' replicas and primaries come from them), or kind = \"cluster\"",
                );
            }
        }
        if masters > 0 {
            p.add(
                format_args!("{key}.sentinels"),
                "backends name a sentinel_master: list the sentinels to ask (like [\"10.0.0.5:26379\"])",
            );
        }
        return None;
    };
    let sentinels = addresses(p, key, &list);
    if masters == 0 {
        p.add(
            format_args!("{key}.backends"),
            "with `sentinels`, give some backends as { name = \"...\", sentinel_master = \"...\" }",
        );
    }
    if raw.auto_eject == Some(true) {
        p.add(
            format_args!("{key}.auto_eject"),
            "cannot be used with sentinels: a failed primary is replaced, and its keys stay with its shard",
        );
    }
    let username = super::validate::username(
        p,
        &format!("{key}.sentinel_username"),
        raw.sentinel_username.take(),
    );
    let password = secret::backend_password(
        p,
        &format!("{key}.sentinel_password"),
        Sources {
            inline: raw.sentinel_password.take(),
            env: raw.sentinel_password_env.take(),
            file: raw.sentinel_password_file.take(),
            ..Sources::default()
        },
    );
    let tls = raw.sentinel_tls.unwrap_or(false);
    if tls && raw.tls != Some(true) {
        p.add(
            format_args!("{key}.sentinel_tls"),
            "uses the pool's TLS settings: set tls = true (and tls_ca ...) too",
        );
    }
    let refresh = p.int(
        &format!("{key}.sentinel_refresh_ms"),
        raw.sentinel_refresh_ms,
        SENTINEL_REFRESH_MS,
        100,
        i64::MAX,
    );
    let read_from = super::cluster::read_from(p, key, raw.read_from.take());
    Some(SentinelConfig {
        sentinels,
        username,
        password,
        tls,
        refresh: Duration::from_millis(refresh as u64),
        read_from,
    })
}

/// The sentinels' addresses: at least one, at most [`MAX_SENTINELS`], each once.
fn addresses(p: &mut Problems, key: &str, list: &[String]) -> Vec<Address> {
    if list.is_empty() {
        p.add(
            format_args!("{key}.sentinels"),
            "list at least one sentinel (like [\"10.0.0.5:26379\"])",
        );
    }
    if list.len() > MAX_SENTINELS {
        p.add(
            format_args!("{key}.sentinels"),
            format_args!(
                "{} sentinels; at most {MAX_SENTINELS} are supported",
                list.len()
            ),
        );
    }
    let mut seen = HashSet::new();
    let mut out = Vec::with_capacity(list.len());
    for (i, text) in list.iter().enumerate() {
        match text.parse::<Address>() {
            Ok(a) if !seen.insert(a.normalized()) => p.add(
                format_args!("{key}.sentinels[{i}]"),
                format_args!("{a} is listed twice"),
            ),
            Ok(a) => out.push(a),
            Err(e) => p.add(
                format_args!("{key}.sentinels[{i}]"),
                format_args!("{text:?}: {e}"),
            ),
        }
    }
    out
}

/// A backend's `sentinel_master`: a name without spaces.
pub(super) fn master_name(p: &mut Problems, key: &str, name: &str) {
    if name.is_empty()
        || name.len() > MAX_MASTER_NAME
        || name.chars().any(|c| c.is_whitespace() || c.is_control())
    {
        p.add(
            format_args!("{key}.sentinel_master"),
            format_args!("{name:?} must be 1 to {MAX_MASTER_NAME} bytes without spaces"),
        );
    }
}

/// The lines `shardis check` prints of a pool's replication and hold settings.
pub(super) fn describe(out: &mut String, s: Option<&SentinelConfig>, hold: &HoldConfig) {
    // Writing to a String cannot fail.
    if let Some(s) = s {
        let list: Vec<String> = s.sentinels.iter().map(ToString::to_string).collect();
        let _ = writeln!(out, "  sentinels                {}", list.join(" "));
        let user = s.username.as_deref().unwrap_or("default");
        let password = if s.password.is_some() { "set" } else { "none" };
        let _ = writeln!(
            out,
            "  sentinel auth            user {user}, password {password}"
        );
        let _ = writeln!(out, "  sentinel_tls             {}", s.tls);
        let _ = writeln!(
            out,
            "  sentinel_refresh         {} ms",
            s.refresh.as_millis()
        );
        let _ = writeln!(out, "  read_from                {}", s.read_from.name());
    }
    let _ = writeln!(
        out,
        "  failover_hold            {} ms, at most {} requests per backend",
        hold.failover.as_millis(),
        hold.requests
    );
    let restart = match hold.restart.as_millis() {
        0 => "off".to_string(),
        ms => format!("{ms} ms"),
    };
    let _ = writeln!(out, "  restart_hold             {restart}");
}

/// Adds the replication and hold settings to a pool's JSON (secrets masked by the caller).
pub(super) fn to_json(
    pool: &mut Map<String, Value>,
    s: Option<&SentinelConfig>,
    hold: &HoldConfig,
) {
    let ms = |d: Duration| Value::from(u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
    pool.insert("failover_hold_ms".into(), ms(hold.failover));
    pool.insert("failover_hold_requests".into(), hold.requests.into());
    pool.insert("restart_hold_ms".into(), ms(hold.restart));
    let Some(s) = s else { return };
    let list: Vec<Value> = s.sentinels.iter().map(|a| a.to_string().into()).collect();
    pool.insert("sentinels".into(), Value::Array(list));
    if let Some(user) = &s.username {
        pool.insert("sentinel_username".into(), user.clone().into());
    }
    if s.password.is_some() {
        pool.insert("sentinel_password".into(), super::MASK.into());
    }
    pool.insert("sentinel_tls".into(), s.tls.into());
    pool.insert("sentinel_refresh_ms".into(), ms(s.refresh));
    pool.insert("read_from".into(), s.read_from.name().into());
}
