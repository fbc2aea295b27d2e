//! A pool's key-watch settings: hot-key tracking (`hotkeys_capacity`, `hotkeys_sample`), the
//! big-key thresholds (`bigkey_reply_bytes`, `bigkey_request_bytes`) and the near cache
//! (`near_cache`, `near_cache_bytes`), with their validation, description and JSON.

use std::fmt::Write as _;

use serde_json::Value;

use super::raw::RawPool;
use super::validate::Problems;

/// Default `hotkeys_capacity`: keys tracked per pool and worker.
pub const HOTKEYS_CAPACITY: i64 = 1000;
/// Largest `hotkeys_capacity`.
pub const MAX_HOTKEYS_CAPACITY: i64 = 100_000;
/// Default `hotkeys_sample`: one request in 16 is counted. Measured with callgrind (README,
/// "Hot keys"): counting every request of a uniform keyspace larger than the capacity (each
/// sample evicts the sketch's smallest key and sifts the heap) added about 19% to a GET's
/// instructions in the proxy; one in 16 costs about a sixteenth of that, and still ranks a key
/// with 5% of 10,000 requests a second within a few percent.
pub const HOTKEYS_SAMPLE: i64 = 16;
/// Largest `hotkeys_sample`.
pub const MAX_HOTKEYS_SAMPLE: i64 = 1_000_000;
/// Default `bigkey_reply_bytes` and `bigkey_request_bytes`: 1 MiB.
pub const BIGKEY_BYTES: i64 = 1024 * 1024;
/// Default `near_cache_bytes`: 16 MiB per proxy.
pub const NEAR_CACHE_BYTES: i64 = 16 * 1024 * 1024;

/// What a pool watches of its keys.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KeysConfig {
    /// Keys the hot-key sketch tracks, per worker.
    pub hotkeys_capacity: usize,
    /// One request in this many is counted; 0 turns hot-key tracking off.
    pub hotkeys_sample: u32,
    /// Replies larger than this are recorded as big keys; 0: off.
    pub bigkey_reply_bytes: usize,
    /// Requests larger than this are recorded as big keys; 0: off.
    pub bigkey_request_bytes: usize,
    /// Serve the values of hot keys from proxy memory, kept coherent by client tracking.
    pub near_cache: bool,
    /// Bytes of values the near cache holds, over all workers.
    pub near_cache_bytes: usize,
}

impl Default for KeysConfig {
    fn default() -> Self {
        KeysConfig {
            hotkeys_capacity: HOTKEYS_CAPACITY as usize,
            hotkeys_sample: HOTKEYS_SAMPLE as u32,
            bigkey_reply_bytes: BIGKEY_BYTES as usize,
            bigkey_request_bytes: BIGKEY_BYTES as usize,
            near_cache: false,
            near_cache_bytes: NEAR_CACHE_BYTES as usize,
        }
    }
}

/// The key-watch settings of pool `key` (`pools[i]`).
pub(super) fn keys(p: &mut Problems, key: &str, raw: &RawPool) -> KeysConfig {
    let mut int = |name: &str, value: Option<i64>, default: i64, min: i64, max: i64| {
        p.int(&format!("{key}.{name}"), value, default, min, max)
    };
    let capacity = int(
        "hotkeys_capacity",
        raw.hotkeys_capacity,
        HOTKEYS_CAPACITY,
        1,
        MAX_HOTKEYS_CAPACITY,
    );
    let sample = int(
        "hotkeys_sample",
        raw.hotkeys_sample,
        HOTKEYS_SAMPLE,
        0,
        MAX_HOTKEYS_SAMPLE,
    );
    let max_bytes = i64::from(u32::MAX);
    let reply = int(
        "bigkey_reply_bytes",
        raw.bigkey_reply_bytes,
        BIGKEY_BYTES,
        0,
        max_bytes,
    );
    let request = int(
        "bigkey_request_bytes",
        raw.bigkey_request_bytes,
        BIGKEY_BYTES,
        0,
        max_bytes,
    );
    let near_bytes = int(
        "near_cache_bytes",
        raw.near_cache_bytes,
        NEAR_CACHE_BYTES,
        1024,
        max_bytes,
    );
    let near_cache = raw.near_cache.unwrap_or(false);
    if near_cache && sample == 0 {
        p.add(
            format_args!("{key}.near_cache"),
            "needs hot-key tracking (it caches the hot keys): set hotkeys_sample to 1 or more",
        );
    }
    KeysConfig {
        hotkeys_capacity: capacity as usize,
        hotkeys_sample: sample as u32,
        bigkey_reply_bytes: reply as usize,
        bigkey_request_bytes: request as usize,
        near_cache,
        near_cache_bytes: near_bytes as usize,
    }
}

/// The lines of [`super::Config::describe`] for `k`.
pub(super) fn describe(out: &mut String, k: &KeysConfig) {
    let off = |v: usize| {
        if v == 0 {
            "off".to_string()
        } else {
            format!("{v} bytes")
        }
    };
    let sample = match k.hotkeys_sample {
        0 => "off".to_string(),
        n => format!("1 in {n}"),
    };
    let _ = writeln!(out, "  hotkeys_sample           {sample}");
    let _ = writeln!(out, "  hotkeys_capacity         {}", k.hotkeys_capacity);
    let _ = writeln!(
        out,
        "  bigkey_reply_bytes       {}",
        off(k.bigkey_reply_bytes)
    );
    let _ = writeln!(
        out,
        "  bigkey_request_bytes     {}",
        off(k.bigkey_request_bytes)
    );
    let _ = writeln!(out, "  near_cache               {}", k.near_cache);
    let _ = writeln!(out, "  near_cache_bytes         {}", k.near_cache_bytes);
}

/// Adds `k`'s settings to a pool's JSON table, under the names the file uses.
pub(super) fn to_json(pool: &mut Value, k: &KeysConfig) {
    let Some(map) = pool.as_object_mut() else {
        return;
    };
    let mut add = |name: &str, v: Value| {
        map.insert(name.to_owned(), v);
    };
    add("hotkeys_capacity", k.hotkeys_capacity.into());
    add("hotkeys_sample", k.hotkeys_sample.into());
    add("bigkey_reply_bytes", k.bigkey_reply_bytes.into());
    add("bigkey_request_bytes", k.bigkey_request_bytes.into());
    add("near_cache", k.near_cache.into());
    add("near_cache_bytes", k.near_cache_bytes.into());
}

#[cfg(test)]
mod tests {
    use crate::config::Config;

    fn pool(extra: &str) -> Result<Config, String> {
        Config::parse(&format!(
            "[server]\nlisten = \"127.0.0.1:6380\"\n[[pools]]\nname = \"main\"\n{extra}\nbackends = [{{ name = \"s1\", address = \"127.0.0.1:7001\" }}]\n"
        ))
        .map_err(|e| e.to_string())
    }

    #[test]
    fn defaults_and_values() {
        let c = pool("").unwrap();
        let k = c.pools[0].keys;
        assert_eq!(k, super::KeysConfig::default());
        assert_eq!(
            (k.hotkeys_capacity, k.hotkeys_sample, k.near_cache),
            (1000, 16, false)
        );
        let c = pool(
            "hotkeys_capacity = 50\nhotkeys_sample = 8\nbigkey_reply_bytes = 0\nnear_cache = true\nnear_cache_bytes = 4096",
        )
        .unwrap();
        let k = c.pools[0].keys;
        assert_eq!(
            (
                k.hotkeys_capacity,
                k.hotkeys_sample,
                k.bigkey_reply_bytes,
                k.near_cache,
                k.near_cache_bytes
            ),
            (50, 8, 0, true, 4096)
        );
        let text = c.describe();
        assert!(text.contains("hotkeys_sample           1 in 8"), "{text}");
        assert!(text.contains("bigkey_reply_bytes       off"), "{text}");
        let json = c.to_json();
        assert_eq!(json["pools"][0]["near_cache"], true);
        assert_eq!(json["pools"][0]["hotkeys_sample"], 8);
    }

    #[test]
    fn problems_are_reported() {
        let e =
            pool("hotkeys_capacity = 0\nhotkeys_sample = -1\nnear_cache_bytes = 10").unwrap_err();
        assert!(
            e.contains("pools[0].hotkeys_capacity: must be from 1"),
            "{e}"
        );
        assert!(e.contains("pools[0].hotkeys_sample: must be from 0"), "{e}");
        assert!(
            e.contains("pools[0].near_cache_bytes: must be from 1024"),
            "{e}"
        );
        let e = pool("hotkeys_sample = 0\nnear_cache = true").unwrap_err();
        assert!(
            e.contains("pools[0].near_cache: needs hot-key tracking"),
            "{e}"
        );
    }
}
