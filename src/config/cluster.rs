//! The settings of a `kind = "cluster"` pool (a Redis Cluster upstream), and their validation.
//!
//! A cluster pool lists `seeds` instead of `backends`: the nodes and the slot map come from the
//! cluster itself at run time, so the keys that shape a hashed pool's ring (`backends`,
//! `distribution`, `hash`, `hash_tag`, `discovery`, `auto_eject`) are refused with a reason.

use std::collections::HashSet;
use std::fmt::Write as _;
use std::time::Duration;

use super::Address;
use super::raw::RawPool;
use super::validate::Problems;

/// Default `refresh_interval_ms`.
pub const REFRESH_INTERVAL_MS: i64 = 5000;
/// Most seeds a pool may list.
const MAX_SEEDS: usize = 64;

/// Where read-only commands of a cluster pool go.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum ReadFrom {
    /// Every command to the primary that owns the slot.
    #[default]
    Primary,
    /// Read-only commands to a replica of that primary; an error when none is up.
    Replica,
    /// Read-only commands to a replica when one is up, else to the primary.
    PreferReplica,
}

impl ReadFrom {
    /// Every value, in the order the documentation lists them.
    pub const ALL: [ReadFrom; 3] = [
        ReadFrom::Primary,
        ReadFrom::Replica,
        ReadFrom::PreferReplica,
    ];

    /// The configuration name.
    pub fn name(self) -> &'static str {
        match self {
            ReadFrom::Primary => "primary",
            ReadFrom::Replica => "replica",
            ReadFrom::PreferReplica => "prefer_replica",
        }
    }
}

/// The settings only a cluster pool has.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClusterConfig {
    /// Nodes asked for the slot map until the cluster's own nodes are known (and again when
    /// none of those answers).
    pub seeds: Vec<Address>,
    /// Where read-only commands go.
    pub read_from: ReadFrom,
    /// How often the slot map is fetched again even when nothing asked for it.
    pub refresh_interval: Duration,
}

/// The pool kind named by `kind` (`None` for a hashed pool), reporting settings that do not
/// belong to it. Call before the hashed-pool checks: for a cluster pool, `backends` must be
/// absent and is taken out of `raw` so that those checks do not ask for it.
pub(super) fn cluster(p: &mut Problems, key: &str, raw: &mut RawPool) -> Option<ClusterConfig> {
    let is_cluster = match raw.kind.as_deref() {
        None | Some("hashed") => false,
        Some("cluster") => true,
        Some(other) => {
            p.add(
                format_args!("{key}.kind"),
                format_args!("unknown pool kind {other:?}; valid: hashed, cluster"),
            );
            false
        }
    };
    if !is_cluster {
        for (name, set) in [
            ("seeds", raw.seeds.is_some()),
            // A hashed pool with sentinels reads from replicas too (`super::sentinel`).
            (
                "read_from",
                raw.read_from.is_some() && raw.sentinels.is_none(),
            ),
            ("refresh_interval_ms", raw.refresh_interval_ms.is_some()),
        ] {
            if set {
                p.add(
                    format_args!("{key}.{name}"),
                    "is a setting of cluster pools: add kind = \"cluster\" or remove it",
                );
            }
        }
        return None;
    }
    for (name, set) in [
        ("backends", raw.backends.is_some()),
        ("distribution", raw.distribution.is_some()),
        ("hash", raw.hash.is_some()),
        ("hash_tag", raw.hash_tag.is_some()),
        ("discovery", raw.discovery.is_some()),
        ("auto_eject", raw.auto_eject.is_some()),
        ("sentinels", raw.sentinels.is_some()),
    ] {
        if set {
            p.add(
                format_args!("{key}.{name}"),
                "is not used by a cluster pool: keys go to the node that owns their hash \
                 slot, and the nodes come from the cluster (list some in `seeds`)",
            );
        }
    }
    if raw.db.is_some_and(|db| db != 0) {
        p.add(
            format_args!("{key}.db"),
            "a Redis Cluster has only database 0",
        );
    }
    // Taken out so the hashed-pool checks neither ask for backends nor build a ring of them.
    raw.backends = None;

    let seeds = seeds(p, key, raw.seeds.take().unwrap_or_default());
    raw.sentinels = None;
    let read_from = read_from(p, key, raw.read_from.take());
    let refresh = p.int(
        &format!("{key}.refresh_interval_ms"),
        raw.refresh_interval_ms,
        REFRESH_INTERVAL_MS,
        100,
        i64::MAX,
    );
    Some(ClusterConfig {
        seeds,
        read_from,
        refresh_interval: Duration::from_millis(refresh as u64),
    })
}

/// Pool `key`'s `read_from` (a cluster's, or a hashed pool's with sentinels).
pub(super) fn read_from(p: &mut Problems, key: &str, raw: Option<String>) -> ReadFrom {
    let Some(s) = raw else {
        return ReadFrom::default();
    };
    ReadFrom::ALL
        .into_iter()
        .find(|r| r.name() == s)
        .unwrap_or_else(|| {
            let valid: Vec<&str> = ReadFrom::ALL.iter().map(|r| r.name()).collect();
            p.add(
                format_args!("{key}.read_from"),
                format_args!("unknown value {s:?}; valid: {}", valid.join(", ")),
            );
            ReadFrom::default()
        })
}

/// A cluster pool's seed nodes: at least one, at most [`MAX_SEEDS`], each once.
fn seeds(p: &mut Problems, key: &str, seeds_raw: Vec<String>) -> Vec<Address> {
    if seeds_raw.is_empty() {
        p.add(
            format_args!("{key}.seeds"),
            "a cluster pool needs at least one seed node (like [\"10.0.0.1:6379\"])",
        );
    }
    if seeds_raw.len() > MAX_SEEDS {
        p.add(
            format_args!("{key}.seeds"),
            format_args!(
                "{} seeds; at most {MAX_SEEDS} are supported",
                seeds_raw.len()
            ),
        );
    }
    let mut seen = HashSet::new();
    let mut seeds = Vec::with_capacity(seeds_raw.len());
    for (i, text) in seeds_raw.iter().enumerate() {
        match text.parse::<Address>() {
            Ok(a) if !seen.insert(a.normalized()) => p.add(
                format_args!("{key}.seeds[{i}]"),
                format_args!("{a} is listed twice"),
            ),
            Ok(a) => seeds.push(a),
            Err(e) => p.add(
                format_args!("{key}.seeds[{i}]"),
                format_args!("{text:?}: {e}"),
            ),
        }
    }

    seeds
}

/// The lines `shardis check` prints for a cluster pool (in place of the ring's).
pub(super) fn describe(out: &mut String, c: &ClusterConfig) {
    // Writing to a String cannot fail.
    let _ = writeln!(out, "  kind                     cluster");
    let seeds: Vec<String> = c.seeds.iter().map(ToString::to_string).collect();
    let _ = writeln!(out, "  seeds                    {}", seeds.join(" "));
    let _ = writeln!(out, "  read_from                {}", c.read_from.name());
    let _ = writeln!(
        out,
        "  refresh_interval         {} ms",
        c.refresh_interval.as_millis()
    );
}
