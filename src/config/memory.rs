//! The client memory settings of `[server]`: read-ahead, the per-client budget and the
//! proxy-wide budget, whose default is a share of the process's cgroup memory limit.

use std::fmt::Write as _;

use super::raw::RawServer;
use super::validate::Problems;
use super::{ServerConfig, limits};

/// The share of the cgroup memory limit that clients may hold by default: half, leaving the
/// other half for the proxy itself (tasks, links, idle connections at ~8 KiB each) and for
/// the allocator's slack.
const CGROUP_SHARE_DIVISOR: u64 = 2;

/// Where the limit is read: cgroup v2 (the container's own, with a cgroup namespace), then
/// cgroup v1's memory controller.
const CGROUP_FILES: [&str; 2] = [
    "/sys/fs/cgroup/memory.max",
    "/sys/fs/cgroup/memory/memory.limit_in_bytes",
];

/// A limit at or above this (cgroup v1 writes 2^63 rounded to a page for "none") is no limit.
const UNLIMITED: u64 = 1 << 60;

/// `[server] client_read_ahead_bytes`, `client_memory_limit_bytes` and `max_client_memory`,
/// validated (0 turns either budget off).
pub(super) struct MemorySettings {
    pub read_ahead: usize,
    pub client_limit: Option<usize>,
    pub max_client_memory: Option<usize>,
}

pub(super) fn memory(p: &mut Problems, raw: &RawServer) -> MemorySettings {
    let max = i64::MAX;
    let read_ahead = p.int(
        "server.client_read_ahead_bytes",
        raw.client_read_ahead_bytes,
        limits::CLIENT_READ_AHEAD_BYTES,
        1024,
        max,
    );
    let default_max = i64::try_from(default_max_client_memory()).unwrap_or(max);
    let mut budget = |key: &str, value: Option<i64>, default: i64| {
        let v = p.int(key, value, default, 0, max);
        if v > 0 && v < 1024 {
            p.add(key, "must be 0 (off) or at least 1024");
        }
        (v > 0).then(|| usize::try_from(v).unwrap_or(usize::MAX))
    };
    let client_limit = budget(
        "server.client_memory_limit_bytes",
        raw.client_memory_limit_bytes,
        limits::CLIENT_MEMORY_LIMIT_BYTES,
    );
    let max_client_memory = budget(
        "server.max_client_memory",
        raw.max_client_memory,
        default_max,
    );
    MemorySettings {
        read_ahead: usize::try_from(read_ahead).unwrap_or(usize::MAX),
        client_limit,
        max_client_memory,
    }
}

/// The lines of `shardis check` for these settings, in bytes.
pub(super) fn describe(out: &mut String, s: &ServerConfig) {
    let bytes = |n: Option<usize>| n.map_or("off".to_string(), |n| n.to_string());
    // Writing to a String cannot fail.
    let _ = writeln!(
        out,
        "  client_read_ahead_bytes  {}",
        s.client_read_ahead_bytes
    );
    let _ = writeln!(
        out,
        "  client_memory_limit      {}",
        bytes(s.client_memory_limit_bytes)
    );
    let _ = writeln!(
        out,
        "  max_client_memory        {}",
        bytes(s.max_client_memory)
    );
}

/// The default `[server] max_client_memory`: half the cgroup memory limit when the process
/// has one, else [`limits::MAX_CLIENT_MEMORY`].
pub fn default_max_client_memory() -> u64 {
    share_of(cgroup_memory_limit())
}

fn share_of(limit: Option<u64>) -> u64 {
    limit.map_or(limits::MAX_CLIENT_MEMORY, |l| l / CGROUP_SHARE_DIVISOR)
}

/// The memory limit of the process's cgroup, if it has one.
pub fn cgroup_memory_limit() -> Option<u64> {
    CGROUP_FILES
        .iter()
        .filter_map(|f| std::fs::read_to_string(f).ok())
        .find_map(|text| parse_limit(&text))
}

/// A cgroup limit file's value: `max` (v2) or a huge number (v1) mean none.
fn parse_limit(text: &str) -> Option<u64> {
    let n: u64 = text.trim().parse().ok()?;
    (n > 0 && n < UNLIMITED).then_some(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cgroup_limit_files_are_read_as_written() {
        assert_eq!(parse_limit("134217728\n"), Some(128 << 20));
        assert_eq!(parse_limit("max\n"), None);
        assert_eq!(parse_limit("9223372036854771712\n"), None);
        assert_eq!(parse_limit("0"), None);
        assert_eq!(parse_limit(""), None);
    }

    #[test]
    fn the_default_is_half_the_cgroup_limit_or_a_fixed_amount() {
        assert_eq!(share_of(Some(128 << 20)), 64 << 20);
        assert_eq!(share_of(None), limits::MAX_CLIENT_MEMORY);
        assert_eq!(default_max_client_memory(), share_of(cgroup_memory_limit()));
    }
}
