//! `[server]`'s settings for scripts and transactions whose keys span backends:
//! `cross_shard`, `script_timeout_ms`, `lock_ttl_ms`.

use std::time::Duration;

use super::super::raw::RawServer;
use super::super::{CrossShard, ScriptsConfig, limits};
use super::Problems;

/// The scripts settings of `[server]`.
pub(super) fn scripts(p: &mut Problems, raw: &RawServer) -> ScriptsConfig {
    let cross_shard = match raw.cross_shard.as_deref() {
        None | Some("run") => CrossShard::Run,
        Some("refuse") => CrossShard::Refuse,
        Some(other) => {
            p.add(
                "server.cross_shard",
                format_args!("must be \"run\" or \"refuse\" (got {other:?})"),
            );
            CrossShard::Run
        }
    };
    let timeout = p.int(
        "server.script_timeout_ms",
        raw.script_timeout_ms,
        limits::SCRIPT_TIMEOUT_MS,
        1,
        3_600_000,
    );
    let ttl = p.int(
        "server.lock_ttl_ms",
        raw.lock_ttl_ms,
        limits::LOCK_TTL_MS,
        100,
        limits::MAX_LOCK_TTL_MS,
    );
    ScriptsConfig {
        cross_shard,
        script_timeout: Duration::from_millis(timeout as u64),
        lock_ttl: Duration::from_millis(ttl as u64),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_values_and_problems() {
        let mut p = Problems::default();
        let d = scripts(&mut p, &RawServer::default());
        assert_eq!(d, ScriptsConfig::default());
        assert_eq!(d.script_timeout, Duration::from_millis(5000));
        assert_eq!(d.lock_ttl, Duration::from_millis(10_000));
        assert!(p.0.is_empty());
        let raw = RawServer {
            cross_shard: Some("refuse".into()),
            script_timeout_ms: Some(200),
            lock_ttl_ms: Some(1000),
            ..RawServer::default()
        };
        let s = scripts(&mut p, &raw);
        assert_eq!(s.cross_shard, CrossShard::Refuse);
        assert_eq!(s.script_timeout, Duration::from_millis(200));
        assert_eq!(s.lock_ttl, Duration::from_millis(1000));
        let raw = RawServer {
            cross_shard: Some("maybe".into()),
            script_timeout_ms: Some(0),
            lock_ttl_ms: Some(60_000),
            ..RawServer::default()
        };
        scripts(&mut p, &raw);
        assert_eq!(p.0.len(), 3, "{:?}", p.0);
        assert!(p.0[0].starts_with("server.cross_shard: must be \"run\" or \"refuse\""));
        assert!(p.0[2].starts_with("server.lock_ttl_ms: must be from 100 to 10000"));
    }
}
