//! Big keys: replies and requests over a pool's thresholds, in a bounded list per pool (the key,
//! the command, the size, when, how often), with a rate-limited warning. Rare by definition, so
//! recording one takes a lock and may allocate; the request path only compares a size.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use super::sketch::MAX_KEY_BYTES;

/// Big keys kept per pool; a new one replaces the one seen least recently.
pub const MAX_BIG_KEYS: usize = 64;
/// At most one warning per pool this often; the ones in between are counted in the next.
pub const WARN_EVERY: Duration = Duration::from_secs(1);

/// What was big.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BigKind {
    Reply,
    Request,
}

impl BigKind {
    pub fn name(self) -> &'static str {
        match self {
            BigKind::Reply => "reply",
            BigKind::Request => "request",
        }
    }
}

/// One big key.
#[derive(Clone, Debug, PartialEq)]
pub struct BigKey {
    /// Its first [`MAX_KEY_BYTES`] bytes (empty for a command without a key).
    pub key: Vec<u8>,
    /// Its full length.
    pub len: usize,
    /// The command, lower case.
    pub command: &'static str,
    pub kind: BigKind,
    /// The backend that served it.
    pub backend: String,
    /// Bytes of the last one seen, and of the largest.
    pub bytes: usize,
    pub max_bytes: usize,
    /// How many were seen.
    pub count: u64,
    pub first_seen: SystemTime,
    pub last_seen: SystemTime,
}

/// A pool's big keys.
pub struct BigKeys {
    list: Mutex<Vec<BigKey>>,
    /// Per kind (reply, request): when the last warning was logged (ms since `epoch`, +1; 0:
    /// never), and how many were not logged since.
    warned: [AtomicU64; 2],
    quiet: [AtomicU64; 2],
    epoch: Instant,
}

impl Default for BigKeys {
    fn default() -> Self {
        BigKeys {
            list: Mutex::new(Vec::new()),
            warned: Default::default(),
            quiet: Default::default(),
            epoch: Instant::now(),
        }
    }
}

/// One occurrence, for [`BigKeys::record`].
pub struct Seen<'a> {
    pub key: &'a [u8],
    pub command: &'static str,
    pub kind: BigKind,
    pub backend: &'a str,
    pub bytes: usize,
}

impl BigKeys {
    /// Records `seen` in `pool`'s list; returns whether to log it (and how many of its kind were
    /// not logged before it), at most once per [`WARN_EVERY`] for each kind.
    pub fn record(&self, seen: &Seen<'_>) -> Option<u64> {
        let now = SystemTime::now();
        if let Ok(mut list) = self.list.lock() {
            let shown = &seen.key[..seen.key.len().min(MAX_KEY_BYTES)];
            let found = list.iter_mut().find(|b| {
                b.key == shown
                    && b.len == seen.key.len()
                    && b.command == seen.command
                    && b.kind == seen.kind
            });
            match found {
                Some(b) => {
                    b.count += 1;
                    b.bytes = seen.bytes;
                    b.max_bytes = b.max_bytes.max(seen.bytes);
                    b.last_seen = now;
                    seen.backend.clone_into(&mut b.backend);
                }
                None => {
                    if list.len() >= MAX_BIG_KEYS
                        && let Some(oldest) = (0..list.len()).min_by_key(|&i| list[i].last_seen)
                    {
                        list.swap_remove(oldest);
                    }
                    list.push(BigKey {
                        key: shown.to_vec(),
                        len: seen.key.len(),
                        command: seen.command,
                        kind: seen.kind,
                        backend: seen.backend.to_owned(),
                        bytes: seen.bytes,
                        max_bytes: seen.bytes,
                        count: 1,
                        first_seen: now,
                        last_seen: now,
                    });
                }
            }
        }
        self.may_warn(seen.kind as usize)
    }

    fn may_warn(&self, kind: usize) -> Option<u64> {
        let (warned, quiet) = (&self.warned[kind], &self.quiet[kind]);
        let now = self.epoch.elapsed().as_millis() as u64 + 1;
        let last = warned.load(Ordering::Relaxed);
        let due = last == 0 || now.saturating_sub(last) >= WARN_EVERY.as_millis() as u64;
        if due
            && warned
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            return Some(quiet.swap(0, Ordering::Relaxed));
        }
        quiet.fetch_add(1, Ordering::Relaxed);
        None
    }

    /// The big keys, largest first.
    pub fn list(&self) -> Vec<BigKey> {
        let mut list = self.list.lock().map(|l| l.clone()).unwrap_or_default();
        list.sort_by(|a, b| b.max_bytes.cmp(&a.max_bytes).then(b.count.cmp(&a.count)));
        list
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seen<'a>(key: &'a [u8], kind: BigKind, bytes: usize) -> Seen<'a> {
        Seen {
            key,
            command: "get",
            kind,
            backend: "s1",
            bytes,
        }
    }

    #[test]
    fn counts_repeats_and_stays_bounded() {
        let big = BigKeys {
            epoch: Instant::now() - Duration::from_secs(5),
            ..BigKeys::default()
        };
        assert_eq!(big.record(&seen(b"a", BigKind::Reply, 10)), Some(0));
        // Within WARN_EVERY: recorded, not logged.
        assert_eq!(big.record(&seen(b"a", BigKind::Reply, 30)), None);
        // Each kind has its own limit.
        assert_eq!(big.record(&seen(b"a", BigKind::Request, 20)), Some(0));
        let list = big.list();
        assert_eq!(list.len(), 2);
        assert_eq!(
            (list[0].count, list[0].bytes, list[0].max_bytes),
            (2, 30, 30)
        );
        assert_eq!(list[1].kind, BigKind::Request);
        for i in 0..(MAX_BIG_KEYS * 2) {
            big.record(&seen(format!("k{i}").as_bytes(), BigKind::Reply, i));
        }
        assert_eq!(big.list().len(), MAX_BIG_KEYS);
        // The suppressed warnings are counted in the next one.
        big.warned[BigKind::Reply as usize].store(1, Ordering::Relaxed);
        let quiet = big.record(&seen(b"b", BigKind::Reply, 1));
        assert_eq!(quiet, Some(1 + MAX_BIG_KEYS as u64 * 2));
    }

    #[test]
    fn long_keys_are_cut() {
        let big = BigKeys::default();
        let key = vec![b'k'; 1000];
        big.record(&seen(&key, BigKind::Reply, 5));
        big.record(&seen(&key, BigKind::Reply, 5));
        let list = big.list();
        assert_eq!(
            (list[0].key.len(), list[0].len, list[0].count),
            (MAX_KEY_BYTES, 1000, 2)
        );
    }
}
