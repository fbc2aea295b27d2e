//! What readers see: every worker's published sketch of a pool merged into one list of hot keys
//! (estimated requests per second, share, backend), as JSON (`/admin/hotkeys`), as `INFO`
//! lines, and the metric families rendered at scrape (`shardis_hot_key_share`, the near
//! cache's counters).

use std::collections::HashMap;
use std::fmt::Write as _;

use serde_json::{Value, json};

use super::bigkeys::BigKey;
use super::{Count, Watch};
use crate::metrics::{
    HOT_KEY_SHARE, NEAR_CACHE_BYTES, NEAR_CACHE_EVICTIONS_TOTAL, NEAR_CACHE_FILLS_TOTAL,
    NEAR_CACHE_HITS_TOTAL, NEAR_CACHE_INVALIDATIONS_TOTAL, NEAR_CACHE_MISSES_TOTAL,
};

/// One hot key of a pool, over every worker.
#[derive(Clone, Debug, PartialEq)]
pub struct HotKey {
    /// Its first bytes (see [`super::sketch::MAX_KEY_BYTES`]), and its full length.
    pub key: Vec<u8>,
    pub len: u32,
    /// Its decayed count, and the most of it that may be overcounted.
    pub count: f64,
    pub err: f64,
    /// Its share of the pool's requests.
    pub share: f64,
    /// Estimated requests per second.
    pub rate: f64,
    /// Index of its backend in the pool.
    pub backend: u16,
}

/// A pool's hot keys and request counts, merged over the workers.
#[derive(Clone, Debug, Default)]
pub struct View {
    /// Hottest first.
    pub keys: Vec<HotKey>,
    /// Requests per second to the pool.
    pub rate: f64,
    /// Decayed count of all samples, and per backend (index in the pool).
    pub total: f64,
    pub backends: Vec<f64>,
    /// Keys tracked per worker.
    pub capacity: usize,
}

impl View {
    /// Merges what every worker published of `watch`'s pool.
    pub fn of(watch: &Watch) -> View {
        let published = watch.shared.published();
        let mut view = View {
            capacity: watch.settings.hotkeys_capacity,
            ..View::default()
        };
        let mut merged: HashMap<(&[u8], u32), HotKey> = HashMap::new();
        for p in &published {
            view.rate += p.rate;
            view.total += p.total;
            if view.backends.len() < p.backends.len() {
                view.backends.resize(p.backends.len(), 0.0);
            }
            for (sum, n) in view.backends.iter_mut().zip(&p.backends) {
                *sum += n;
            }
            for e in &p.entries {
                let k = merged.entry((&e.key, e.len)).or_insert_with(|| HotKey {
                    key: e.key.clone(),
                    len: e.len,
                    count: 0.0,
                    err: 0.0,
                    share: 0.0,
                    rate: 0.0,
                    backend: e.backend,
                });
                k.count += e.count;
                k.err += e.err;
            }
        }
        let mut keys: Vec<HotKey> = merged.into_values().collect();
        keys.sort_by(|a, b| b.count.total_cmp(&a.count).then(a.key.cmp(&b.key)));
        for k in &mut keys {
            k.share = if view.total > 0.0 {
                k.count / view.total
            } else {
                0.0
            };
            k.rate = k.share * view.rate;
        }
        view.keys = keys;
        view
    }

    /// Per backend (index in the pool), the share of its requests that its hottest key takes.
    pub fn top_share_per_backend(&self) -> Vec<f64> {
        let mut top = vec![0.0f64; self.backends.len()];
        for k in &self.keys {
            let b = usize::from(k.backend);
            if let (Some(t), Some(&n)) = (top.get_mut(b), self.backends.get(b))
                && n > 0.0
            {
                *t = t.max((k.count / n).min(1.0));
            }
        }
        top
    }
}

/// `key` as text: as it is when it is UTF-8, else with `\xHH` for each byte that is not
/// (and for control characters, so a line stays one line).
pub fn display_key(key: &[u8]) -> String {
    let mut out = String::with_capacity(key.len());
    for chunk in key.utf8_chunks() {
        for c in chunk.valid().chars() {
            if c.is_control() {
                let mut buf = [0u8; 4];
                for b in c.encode_utf8(&mut buf).bytes() {
                    let _ = write!(out, "\\x{b:02x}");
                }
            } else {
                out.push(c);
            }
        }
        for b in chunk.invalid() {
            let _ = write!(out, "\\x{b:02x}");
        }
    }
    out
}

/// The name of backend `index` in `names`, or `?`.
fn name(names: &[&str], index: u16) -> String {
    names
        .get(usize::from(index))
        .map_or_else(|| "?".to_owned(), |n| (*n).to_owned())
}

/// `/admin/hotkeys` for one pool: its top `n` keys.
pub fn json(watch: &Watch, names: &[&str], n: usize) -> Value {
    let view = View::of(watch);
    let keys: Vec<Value> = view
        .keys
        .iter()
        .take(n)
        .map(|k| {
            let mut v = json!({
                "key": display_key(&k.key),
                "requests_per_second": round(k.rate, 1),
                "share": round(k.share, 4),
                "backend": name(names, k.backend),
            });
            if k.key.len() < k.len as usize
                && let Some(map) = v.as_object_mut()
            {
                map.insert("key_bytes".into(), k.len.into());
                map.insert("key_truncated".into(), true.into());
            }
            v
        })
        .collect();
    json!({
        "pool": watch.shared.pool,
        "sample": watch.settings.hotkeys_sample,
        "capacity": view.capacity,
        "half_life_seconds": super::HALF_LIFE.as_secs_f64(),
        "requests_per_second": round(view.rate, 1),
        "keys": keys,
    })
}

/// `/admin/bigkeys` for one pool.
pub fn bigkeys_json(watch: &Watch) -> Value {
    let keys: Vec<Value> = watch
        .shared
        .bigkeys
        .list()
        .iter()
        .map(|b| {
            json!({
                "key": display_key(&b.key),
                "key_bytes": b.len,
                "command": b.command,
                "kind": b.kind.name(),
                "bytes": b.bytes,
                "max_bytes": b.max_bytes,
                "count": b.count,
                "backend": b.backend,
                "first_seen_unix": unix(b.first_seen),
                "last_seen_unix": unix(b.last_seen),
            })
        })
        .collect();
    json!({
        "pool": watch.shared.pool,
        "reply_threshold_bytes": watch.settings.bigkey_reply_bytes,
        "request_threshold_bytes": watch.settings.bigkey_request_bytes,
        "keys": keys,
    })
}

fn unix(t: std::time::SystemTime) -> f64 {
    t.duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| round(d.as_secs_f64(), 3))
}

fn round(v: f64, digits: i32) -> f64 {
    let m = 10f64.powi(digits);
    (v * m).round() / m
}

/// Hot keys shown per pool in `INFO hotkeys`.
pub const INFO_KEYS: usize = 10;

/// `INFO hotkeys` lines for one pool (after the section header).
pub fn info_hotkeys(out: &mut String, watch: &Watch, names: &[&str]) {
    let view = View::of(watch);
    let pool = &watch.shared.pool;
    let _ = write!(
        out,
        "pool_{pool}:sample={},capacity={},requests_per_second={:.1}\r\n",
        watch.settings.hotkeys_sample, view.capacity, view.rate
    );
    for (i, k) in view.keys.iter().take(INFO_KEYS).enumerate() {
        let _ = write!(
            out,
            "hotkey_{pool}_{i}:key={},requests_per_second={:.1},share={:.4},backend={}\r\n",
            display_key(&k.key),
            k.rate,
            k.share,
            name(names, k.backend)
        );
    }
}

/// `INFO bigkeys` lines for one pool (after the section header).
pub fn info_bigkeys(out: &mut String, watch: &Watch) {
    let pool = &watch.shared.pool;
    let list: Vec<BigKey> = watch.shared.bigkeys.list();
    for (i, b) in list.iter().enumerate() {
        let _ = write!(
            out,
            "bigkey_{pool}_{i}:key={},kind={},command={},bytes={},max_bytes={},count={},backend={},last_seen={:.0}\r\n",
            display_key(&b.key),
            b.kind.name(),
            b.command,
            b.bytes,
            b.max_bytes,
            b.count,
            b.backend,
            unix(b.last_seen),
        );
    }
}

/// The families rendered at scrape, for the pools in `pools` (each with its backends' names):
/// the hottest key's share per backend, and the near cache's counters where it is on.
pub fn render_metrics(pools: &[(&Watch, Vec<&str>)]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# HELP {HOT_KEY_SHARE} Share of a backend's recent requests (decayed, half-life {} s) that its hottest key takes, by pool and backend.\n# TYPE {HOT_KEY_SHARE} gauge",
        super::HALF_LIFE.as_secs()
    );
    for (watch, names) in pools {
        if watch.settings.hotkeys_sample == 0 {
            continue;
        }
        let view = View::of(watch);
        for (b, share) in view.top_share_per_backend().iter().enumerate() {
            let Some(backend) = names.get(b) else {
                continue;
            };
            let _ = writeln!(
                out,
                "{HOT_KEY_SHARE}{{pool=\"{}\",backend=\"{}\"}} {share}",
                watch.shared.pool,
                escape(backend)
            );
        }
    }
    let near: Vec<&Watch> = pools
        .iter()
        .map(|(w, _)| *w)
        .filter(|w| w.settings.near_cache)
        .collect();
    for (name, what, help, kind) in [
        (
            NEAR_CACHE_HITS_TOTAL,
            Count::Hits,
            "Reads answered from the near cache.",
            "counter",
        ),
        (
            NEAR_CACHE_MISSES_TOTAL,
            Count::Misses,
            "Reads of a near-cached hot key that the cache could not answer (sent to the backend).",
            "counter",
        ),
        (
            NEAR_CACHE_FILLS_TOTAL,
            Count::Fills,
            "Values read into the near cache on its tracking connections.",
            "counter",
        ),
        (
            NEAR_CACHE_EVICTIONS_TOTAL,
            Count::Evictions,
            "Near cache values dropped for room, for a key no longer hot, or a tracking connection lost.",
            "counter",
        ),
        (
            NEAR_CACHE_INVALIDATIONS_TOTAL,
            Count::Invalidations,
            "Invalidation messages from the backends' client tracking (each drops a key at once).",
            "counter",
        ),
        (
            NEAR_CACHE_BYTES,
            Count::Bytes,
            "Bytes of values in the near cache.",
            "gauge",
        ),
    ] {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for w in &near {
            let _ = writeln!(
                out,
                "{name}{{pool=\"{}\"}} {}",
                w.shared.pool,
                w.shared.near.total(what) as i64
            );
        }
    }
    out
}

fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_display_as_sent_with_escapes_for_bytes_that_are_not_text() {
        assert_eq!(display_key(b"user:42"), "user:42");
        assert_eq!(display_key("clé".as_bytes()), "clé");
        assert_eq!(display_key(b"a\xffb\r\n"), "a\\xffb\\x0d\\x0a");
    }
}
