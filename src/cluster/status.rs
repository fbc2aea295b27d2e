//! What a cluster pool reports: redirections by kind, slot map refreshes, and the slot map
//! itself, for `/status`, `INFO` and the metrics.

use std::fmt::Write as _;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Instant, SystemTime};

use metrics::Counter;
use serde_json::{Value, json};

use super::Route;
use super::redirect::Kind;

/// Counters of one cluster pool, kept across slot maps and reloads.
pub struct Stats {
    redirections: [AtomicU64; 4],
    redirection_counters: [Counter; 4],
    /// Fetches of the slot map: ok, failed.
    refreshes: [AtomicU64; 2],
    refresh_counters: [Counter; 2],
    last: Mutex<Last>,
}

/// The last fetch of the slot map.
#[derive(Default, Clone)]
struct Last {
    /// When the map in force was fetched, and from which node.
    fetched: Option<(Instant, SystemTime, String)>,
    /// Why the last fetch failed, if it did.
    error: Option<String>,
}

impl Default for Stats {
    fn default() -> Self {
        Self::new()
    }
}

impl Stats {
    /// Counters bound to the recorder installed now.
    pub fn new() -> Stats {
        Stats {
            redirections: Default::default(),
            redirection_counters: Kind::ALL.map(|k| {
                metrics::counter!(crate::metrics::CLUSTER_REDIRECTIONS_TOTAL, "kind" => k.label())
            }),
            refreshes: Default::default(),
            refresh_counters: ["ok", "error"].map(|r| {
                metrics::counter!(crate::metrics::CLUSTER_SLOT_MAP_REFRESHES_TOTAL, "result" => r)
            }),
            last: Mutex::new(Last::default()),
        }
    }

    /// Counts one redirection (retried or not).
    pub fn redirected(&self, kind: Kind) {
        self.redirections[kind.index()].fetch_add(1, Ordering::Relaxed);
        self.redirection_counters[kind.index()].increment(1);
    }

    /// Redirections of `kind` so far.
    pub fn redirections(&self, kind: Kind) -> u64 {
        self.redirections[kind.index()].load(Ordering::Relaxed)
    }

    /// Counts a fetch of the slot map that worked, from node `source`.
    pub fn refreshed(&self, source: &str) {
        self.refreshes[0].fetch_add(1, Ordering::Relaxed);
        self.refresh_counters[0].increment(1);
        if let Ok(mut last) = self.last.lock() {
            last.fetched = Some((Instant::now(), SystemTime::now(), source.to_string()));
            last.error = None;
        }
    }

    /// Counts a fetch of the slot map that failed.
    pub fn refresh_failed(&self, error: &str) {
        self.refreshes[1].fetch_add(1, Ordering::Relaxed);
        self.refresh_counters[1].increment(1);
        if let Ok(mut last) = self.last.lock() {
            last.error = Some(error.to_string());
        }
    }

    /// Fetches so far: (ok, failed).
    pub fn refreshes(&self) -> (u64, u64) {
        (
            self.refreshes[0].load(Ordering::Relaxed),
            self.refreshes[1].load(Ordering::Relaxed),
        )
    }

    /// Whether the last fetch of the slot map failed.
    pub fn failing(&self) -> bool {
        self.last.lock().map(|l| l.error.is_some()).unwrap_or(false)
    }

    fn last(&self) -> Last {
        self.last.lock().map(|l| l.clone()).unwrap_or_default()
    }
}

impl Route {
    /// The `cluster` object of `/status`.
    pub fn status(&self) -> Value {
        let stats = &self.shared.stats;
        let last = stats.last();
        let (ok, failed) = stats.refreshes();
        let layout = &self.layout;
        let shards: Vec<Value> = layout
            .shards
            .iter()
            .enumerate()
            .map(|(i, s)| {
                json!({
                    "primary": s.primary,
                    "slots": layout.ranges_text(i),
                    "slot_count": layout.slot_count(i),
                    "replicas": s.replicas,
                })
            })
            .collect();
        let redirections: serde_json::Map<String, Value> = Kind::ALL
            .iter()
            .map(|k| (k.label().to_string(), json!(stats.redirections(*k))))
            .collect();
        json!({
            "read_from": self.read_from.name(),
            "slot_map": shards,
            "unassigned_slots": layout.unassigned(),
            "slot_map_age_seconds": last.fetched.as_ref().map(|(at, _, _)| at.elapsed().as_secs_f64()),
            "slot_map_fetched_unix": last.fetched.as_ref().and_then(|(_, t, _)| t.duration_since(SystemTime::UNIX_EPOCH).ok()).map(|d| d.as_secs()),
            "slot_map_source": last.fetched.as_ref().map(|(_, _, s)| s.clone()),
            "refreshes": { "ok": ok, "error": failed },
            "last_refresh_error": last.error,
            "redirections": redirections,
        })
    }

    /// The `# Cluster` section of `INFO`. It starts with `cluster_enabled:0`: clients see one
    /// standalone server, and must not switch to cluster mode because of this section.
    pub fn info(&self) -> String {
        let stats = &self.shared.stats;
        let last = stats.last();
        let (ok, failed) = stats.refreshes();
        let layout = &self.layout;
        let mut out = String::from("# Cluster\r\ncluster_enabled:0\r\nupstream:redis-cluster\r\n");
        // Writing to a String cannot fail.
        let _ = write!(
            out,
            "read_from:{}\r\nslot_map_shards:{}\r\nslot_map_unassigned_slots:{}\r\n",
            self.read_from.name(),
            layout.shards.len(),
            layout.unassigned()
        );
        if let Some((at, _, source)) = &last.fetched {
            let _ = write!(
                out,
                "slot_map_age_seconds:{}\r\nslot_map_source:{source}\r\n",
                at.elapsed().as_secs()
            );
        }
        let _ = write!(
            out,
            "slot_map_refreshes_ok:{ok}\r\nslot_map_refreshes_error:{failed}\r\n"
        );
        for k in Kind::ALL {
            let _ = write!(
                out,
                "redirections_{}:{}\r\n",
                k.label(),
                stats.redirections(k)
            );
        }
        for (i, s) in layout.shards.iter().enumerate() {
            let _ = write!(
                out,
                "shard{i}:primary={},slots={},slot_count={},replicas={}\r\n",
                s.primary,
                layout.ranges_text(i),
                layout.slot_count(i),
                if s.replicas.is_empty() {
                    "-".to_string()
                } else {
                    s.replicas.join(";")
                }
            );
        }
        out
    }
}
