//! `[routing]` and `[[routes]]`: which pool serves a key. A route names a key prefix and its
//! pool (the longest matching prefix wins, whatever the order of the entries), may remove the
//! prefix before the key reaches the pool, and may mirror what it serves to other pools;
//! `[routing] catch_all` names the pool of every other key. Matching is
//! [`crate::routing`]'s; this file reads and checks the settings.

use std::collections::HashMap;
use std::fmt::Write as _;

use serde::Deserialize;
use serde_json::{Value, json};

use super::validate::Problems;
use super::{PoolConfig, limits};

/// Default `[routing] mirror_buffer_bytes`: 8 MiB of mirrored requests in flight per mirror
/// pool.
pub const MIRROR_BUFFER_BYTES: i64 = 8 * 1024 * 1024;

/// `[routing]` and the `[[routes]]` entries, validated.
#[derive(Clone, Debug, PartialEq)]
pub struct RoutingConfig {
    /// The pool (index into `pools`) of keys that no route matches; `None`: such keys are
    /// refused. Without `[[routes]]`, the one pool.
    pub catch_all: Option<usize>,
    /// Mirrors of what the catch-all serves.
    pub catch_all_mirror: Vec<MirrorConfig>,
    /// Bytes of mirrored requests each mirror pool may have queued or in flight; more are
    /// dropped at once.
    pub mirror_buffer_bytes: usize,
    /// `[[routes]]`, in file order.
    pub routes: Vec<RouteConfig>,
}

impl RoutingConfig {
    /// The routing of a single pool with no routes: it serves every key.
    pub fn single() -> RoutingConfig {
        RoutingConfig {
            catch_all: Some(0),
            catch_all_mirror: Vec::new(),
            mirror_buffer_bytes: MIRROR_BUFFER_BYTES as usize,
            routes: Vec::new(),
        }
    }

    /// Whether pool `pool` serves keys: a route or the catch-all names it (a pool that is
    /// only a mirror does not).
    pub fn serves(&self, pool: usize) -> bool {
        self.catch_all == Some(pool) || self.routes.iter().any(|r| r.pool == pool)
    }
}

/// One `[[routes]]` entry.
#[derive(Clone, Debug, PartialEq)]
pub struct RouteConfig {
    /// Keys that start with these bytes take this route (a key equal to it too).
    pub prefix: String,
    /// The pool (index into `pools`) that serves them.
    pub pool: usize,
    /// The prefix is removed from the key before it is sent (and hashed).
    pub remove_prefix: bool,
    /// ASCII letters of the prefix match either case.
    pub case_insensitive: bool,
    /// Pools that get a copy of the requests this route serves.
    pub mirror: Vec<MirrorConfig>,
}

/// One mirror of a route: a pool that gets a fire-and-forget copy of some of its requests.
#[derive(Clone, Debug, PartialEq)]
pub struct MirrorConfig {
    /// The mirror pool (index into `pools`).
    pub pool: usize,
    /// The share of requests mirrored, from 0 to 1.
    pub fraction: f64,
    /// Only commands that write are mirrored.
    pub exclude_reads: bool,
}

/// `[routing]` as written.
#[derive(Deserialize, Debug, Default)]
pub(super) struct RawRouting {
    pub catch_all: Option<String>,
    pub catch_all_mirror: Option<Vec<RawMirror>>,
    pub mirror_buffer_bytes: Option<i64>,
}

/// One `[[routes]]` entry as written.
#[derive(Deserialize, Debug, Default)]
pub(super) struct RawRoute {
    pub prefix: Option<String>,
    pub pool: Option<String>,
    pub remove_prefix: Option<bool>,
    pub case_insensitive: Option<bool>,
    pub mirror: Option<Vec<RawMirror>>,
}

/// One entry of `mirror = [...]` as written.
#[derive(Deserialize, Debug, Default)]
pub(super) struct RawMirror {
    pub pool: Option<String>,
    pub fraction: Option<f64>,
    pub exclude_reads: Option<bool>,
}

/// The index of the pool named `name`, or a problem under `key`.
pub(super) fn pool_named(
    p: &mut Problems,
    key: &str,
    name: Option<&str>,
    pools: &[PoolConfig],
) -> Option<usize> {
    let Some(name) = name else {
        p.add(key, "is required: the name of a [[pools]] entry");
        return None;
    };
    let found = pools.iter().position(|pool| pool.name == name);
    if found.is_none() {
        let names: Vec<&str> = pools.iter().map(|pool| pool.name.as_str()).collect();
        p.add(
            key,
            format_args!("no pool is named {name:?} (pools: {})", names.join(", ")),
        );
    }
    found
}

/// A share from 0 to 1 (1 when absent).
pub(super) fn fraction(p: &mut Problems, key: &str, raw: Option<f64>) -> f64 {
    match raw {
        None => 1.0,
        Some(f) if (0.0..=1.0).contains(&f) => f,
        Some(f) => {
            p.add(key, format_args!("must be from 0 to 1 (got {f})"));
            1.0
        }
    }
}

/// Validates `[routing]` and `[[routes]]` against the pools.
pub(super) fn routing(
    p: &mut Problems,
    raw: Option<RawRouting>,
    routes: Vec<RawRoute>,
    pools: &[PoolConfig],
) -> RoutingConfig {
    let raw = raw.unwrap_or_default();
    let mirror_buffer_bytes = p.int(
        "routing.mirror_buffer_bytes",
        raw.mirror_buffer_bytes,
        MIRROR_BUFFER_BYTES,
        1,
        i64::MAX,
    );
    let routes: Vec<RouteConfig> = routes
        .into_iter()
        .enumerate()
        .filter_map(|(i, r)| route(p, &format!("routes[{i}]"), r, pools))
        .collect();
    duplicates(p, &routes);
    let catch_all = match raw.catch_all.as_deref() {
        Some(name) => pool_named(p, "routing.catch_all", Some(name), pools),
        None if routes.is_empty() && pools.len() == 1 => Some(0),
        None if routes.is_empty() && pools.len() > 1 => {
            p.add(
                "routing.catch_all",
                "with several pools, say which pool serves which keys: [[routes]] entries, \
                 [routing] catch_all, or both",
            );
            None
        }
        None => None,
    };
    let catch_all_mirror = mirrors(
        p,
        "routing.catch_all_mirror",
        raw.catch_all_mirror.unwrap_or_default(),
        catch_all,
        pools,
    );
    if catch_all.is_none() && !catch_all_mirror.is_empty() {
        p.add("routing.catch_all_mirror", "needs routing.catch_all");
    }
    let config = RoutingConfig {
        catch_all,
        catch_all_mirror,
        mirror_buffer_bytes: mirror_buffer_bytes as usize,
        routes,
    };
    unused_pools(p, &config, pools);
    config
}

/// One `[[routes]]` entry; `None` after a problem that leaves it without prefix or pool.
fn route(p: &mut Problems, key: &str, raw: RawRoute, pools: &[PoolConfig]) -> Option<RouteConfig> {
    let prefix = raw.prefix.unwrap_or_default();
    if prefix.is_empty() {
        p.add(
            format_args!("{key}.prefix"),
            "is required and may not be empty (keys that match no route go to [routing] catch_all)",
        );
    }
    let pool = pool_named(p, &format!("{key}.pool"), raw.pool.as_deref(), pools);
    let mirror = mirrors(
        p,
        &format!("{key}.mirror"),
        raw.mirror.unwrap_or_default(),
        pool,
        pools,
    );
    Some(RouteConfig {
        pool: pool?,
        remove_prefix: raw.remove_prefix.unwrap_or(false),
        case_insensitive: raw.case_insensitive.unwrap_or(false),
        mirror,
        prefix: (!prefix.is_empty()).then_some(prefix)?,
    })
}

/// A route's mirrors; `own` is the route's pool, which may not mirror itself.
fn mirrors(
    p: &mut Problems,
    key: &str,
    raw: Vec<RawMirror>,
    own: Option<usize>,
    pools: &[PoolConfig],
) -> Vec<MirrorConfig> {
    let mut out: Vec<MirrorConfig> = Vec::with_capacity(raw.len());
    for (i, m) in raw.into_iter().enumerate() {
        let key = format!("{key}[{i}]");
        let pool = pool_named(p, &format!("{key}.pool"), m.pool.as_deref(), pools);
        let fraction = fraction(p, &format!("{key}.fraction"), m.fraction);
        let Some(pool) = pool else { continue };
        if Some(pool) == own {
            p.add(
                format_args!("{key}.pool"),
                format_args!("{:?} is the route's own pool", pools[pool].name),
            );
        } else if out.iter().any(|o| o.pool == pool) {
            p.add(
                format_args!("{key}.pool"),
                format_args!("{:?} is already a mirror of this route", pools[pool].name),
            );
        } else {
            out.push(MirrorConfig {
                pool,
                fraction,
                exclude_reads: m.exclude_reads.unwrap_or(false),
            });
        }
    }
    out
}

/// Two routes with the same prefix (compared case-insensitively when both are): which one a
/// key takes would depend on nothing the file says.
fn duplicates(p: &mut Problems, routes: &[RouteConfig]) {
    let mut seen: HashMap<(String, bool), usize> = HashMap::new();
    for (i, r) in routes.iter().enumerate() {
        let folded = if r.case_insensitive {
            r.prefix.to_ascii_lowercase()
        } else {
            r.prefix.clone()
        };
        if let Some(first) = seen.insert((folded, r.case_insensitive), i) {
            p.add(
                format_args!("routes[{i}].prefix"),
                format_args!("{:?} is already routed by routes[{first}]", r.prefix),
            );
        }
    }
}

/// Every pool must serve keys or mirror them, and the backends of all pools together must
/// fit SCAN's cursors.
fn unused_pools(p: &mut Problems, config: &RoutingConfig, pools: &[PoolConfig]) {
    let mirrored = |i: usize| {
        config.catch_all_mirror.iter().any(|m| m.pool == i)
            || config
                .routes
                .iter()
                .any(|r| r.mirror.iter().any(|m| m.pool == i))
    };
    for (i, pool) in pools.iter().enumerate() {
        if pools.len() > 1 && !config.serves(i) && !mirrored(i) {
            p.add(
                format_args!("pools[{i}]"),
                format_args!(
                    "pool {:?} serves nothing: name it in a [[routes]] entry, [routing] \
                     catch_all or a mirror",
                    pool.name
                ),
            );
        }
    }
    let total: usize = pools.iter().map(|pool| pool.backends.len()).sum();
    if pools.len() > 1 && total > limits::MAX_BACKENDS {
        p.add(
            "pools",
            format_args!(
                "{total} backends in all; at most {} (SCAN cursors number every backend)",
                limits::MAX_BACKENDS
            ),
        );
    }
}

/// The `[routing]` and `[route ...]` part of [`super::Config::describe`]; nothing for a single
/// pool without routes (so its digest is what it was before routes existed).
pub(super) fn describe(out: &mut String, r: &RoutingConfig, pools: &[PoolConfig]) {
    let name = |i: usize| pools.get(i).map_or("?", |p| p.name.as_str());
    if pools.len() <= 1 && r.routes.is_empty() && r.catch_all_mirror.is_empty() {
        if r.mirror_buffer_bytes != MIRROR_BUFFER_BYTES as usize {
            let _ = writeln!(out, "[routing]");
            let _ = writeln!(out, "  mirror_buffer_bytes      {}", r.mirror_buffer_bytes);
        }
        return;
    }
    let _ = writeln!(out, "[routing]");
    let catch_all = r
        .catch_all
        .map_or("none: keys that match no route are refused", name);
    let _ = writeln!(out, "  catch_all                {catch_all}");
    let _ = writeln!(out, "  mirror_buffer_bytes      {}", r.mirror_buffer_bytes);
    describe_mirrors(out, "catch_all_mirror", &r.catch_all_mirror, pools);
    for route in &r.routes {
        let _ = writeln!(out, "[route {:?}]", route.prefix);
        let _ = writeln!(out, "  pool                     {}", name(route.pool));
        let _ = writeln!(out, "  remove_prefix            {}", route.remove_prefix);
        let _ = writeln!(out, "  case_insensitive         {}", route.case_insensitive);
        describe_mirrors(out, "mirror", &route.mirror, pools);
    }
}

fn describe_mirrors(out: &mut String, key: &str, mirrors: &[MirrorConfig], pools: &[PoolConfig]) {
    for m in mirrors {
        let what = if m.exclude_reads { "writes" } else { "all" };
        let _ = writeln!(
            out,
            "  {key:<24} {} fraction {} ({what})",
            pools.get(m.pool).map_or("?", |p| p.name.as_str()),
            m.fraction
        );
    }
}

/// `routing` and `routes` as JSON, shaped like the file.
pub(super) fn to_json(r: &RoutingConfig, pools: &[PoolConfig]) -> (Value, Value) {
    let name = |i: usize| pools.get(i).map_or(String::new(), |p| p.name.clone());
    let mirrors = |list: &[MirrorConfig]| -> Vec<Value> {
        list.iter()
            .map(|m| json!({ "pool": name(m.pool), "fraction": m.fraction, "exclude_reads": m.exclude_reads }))
            .collect()
    };
    let mut routing = json!({
        "mirror_buffer_bytes": r.mirror_buffer_bytes,
        "catch_all_mirror": mirrors(&r.catch_all_mirror),
    });
    if let (Some(i), Some(map)) = (r.catch_all, routing.as_object_mut()) {
        map.insert("catch_all".into(), name(i).into());
    }
    let routes = r
        .routes
        .iter()
        .map(|route| {
            json!({
                "prefix": route.prefix,
                "pool": name(route.pool),
                "remove_prefix": route.remove_prefix,
                "case_insensitive": route.case_insensitive,
                "mirror": mirrors(&route.mirror),
            })
        })
        .collect();
    (routing, Value::Array(routes))
}
