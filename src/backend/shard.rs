//! What /status shows of a replicated shard: where its primary is, its replicas, and the last
//! failover shardis followed. Written by the topology (Sentinel watcher, cluster refresh),
//! read by the admin server.

use std::time::{Duration, SystemTime};

/// A failover shardis followed: the primary moved from `from` to `to`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failover {
    pub at: SystemTime,
    pub from: String,
    pub to: String,
    /// From the first sign of it (the old primary lost, or the failover announced) to the
    /// connections moving to the new primary.
    pub took: Duration,
}

impl super::BackendState {
    /// A replicated shard's primary is at `address` now.
    pub fn set_primary(&self, address: String) {
        let mut shard = self.shard.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(s) = shard.as_mut() {
            s.primary = address;
        }
    }

    /// The shard's status as JSON, for /status (`None`: a plain backend).
    pub fn shard_json(&self) -> Option<serde_json::Value> {
        let shard = self.shard.lock().unwrap_or_else(|e| e.into_inner());
        shard.as_ref().map(ShardStatus::to_json)
    }
}

/// A shard's replication, as last seen.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ShardStatus {
    /// The master name the sentinels know it by (none for a cluster primary).
    pub master: Option<String>,
    /// Where its primary is now (empty: not known yet).
    pub primary: String,
    /// The replicas that serve (`host:port`).
    pub replicas: Vec<String>,
    pub last_failover: Option<Failover>,
    /// Failovers followed since shardis started.
    pub failovers: u64,
}

impl ShardStatus {
    /// As JSON for /status.
    pub fn to_json(&self) -> serde_json::Value {
        let last = self.last_failover.as_ref().map(|f| {
            let at =
                f.at.duration_since(SystemTime::UNIX_EPOCH)
                    .unwrap_or_default();
            serde_json::json!({
                "at_unix_ms": u64::try_from(at.as_millis()).unwrap_or(u64::MAX),
                "from": f.from,
                "to": f.to,
                "took_ms": u64::try_from(f.took.as_millis()).unwrap_or(u64::MAX),
            })
        });
        serde_json::json!({
            "master": self.master,
            "primary": self.primary,
            "replicas": self.replicas,
            "failovers": self.failovers,
            "last_failover": last,
        })
    }
}

impl super::Spec {
    fn shard(&self) -> std::sync::MutexGuard<'_, Option<ShardStatus>> {
        self.state.shard.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records a failover of this shard from `from` to `to` that took `took`, counts it, and
    /// logs it.
    pub fn failed_over(&self, pool: &str, from: &str, to: &str, took: Duration) {
        tracing::warn!(
            pool,
            backend = %self.name,
            "failover: primary {from} replaced by {to} ({} ms since it was first seen away)",
            took.as_millis()
        );
        crate::metrics::failover(pool, &self.name);
        let mut shard = self.shard();
        let status = shard.get_or_insert_with(ShardStatus::default);
        status.failovers += 1;
        status.last_failover = Some(Failover {
            at: SystemTime::now(),
            from: from.to_string(),
            to: to.to_string(),
            took,
        });
    }

    /// Sets the replicas /status shows.
    pub fn set_replicas(&self, replicas: Vec<String>) {
        let mut shard = self.shard();
        shard.get_or_insert_with(ShardStatus::default).replicas = replicas;
    }

    /// The shard's status, for /status (`None`: a plain backend).
    pub fn shard_status(&self) -> Option<ShardStatus> {
        self.shard().clone()
    }
}
