//! Hot keys and big keys, seen from the proxy: each pool's keys by request rate (an
//! approximate top-k per worker, merged on read), its replies and requests over a size, and
//! the per-worker counters the near cache ([`crate::nearcache`]) keeps.
//!
//! The request path touches only its own worker's state: [`observe`] counts a key in the
//! worker's thread-local [`Sketch`] (no lock, no atomic), and a task on each worker decays the
//! counts and publishes a copy of them every [`TICK`] ([`worker`]). Readers (`/admin/hotkeys`,
//! `INFO hotkeys`, `/metrics`, `/status`) merge the copies ([`report`]). Big keys are rare by
//! definition: recording one takes a lock ([`bigkeys`]); the request path pays one comparison
//! against the threshold.
//!
//! A pool's [`Shared`] state is kept across reloads (by pool name), so a reload loses no
//! history; its [`Watch`] carries the settings of the table in force.

pub mod bigkeys;
pub mod report;
pub mod sketch;
mod worker;

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub use crate::config::KeysConfig;
pub use bigkeys::{BigKey, BigKeys, BigKind};
pub use sketch::{Entry, Sketch, key_hash};
pub use worker::{Published, observe, record};

/// How often each worker decays its counts and publishes them.
pub const TICK: Duration = Duration::from_millis(250);
/// Counts halve every this long: a key that became hot leads within a few seconds.
pub const HALF_LIFE: Duration = Duration::from_secs(2);
/// Ticks over which the request rate is measured.
pub const RATE_TICKS: usize = 4;

/// One pool's key-watch state that outlives a table: kept across reloads while a pool of that
/// name stays.
pub struct Shared {
    /// The pool's name.
    pub pool: String,
    /// Index of this pool's state in each worker's thread-local tables.
    id: usize,
    /// What each worker published last, by worker index.
    published: Mutex<Vec<Published>>,
    /// Replies and requests over the thresholds.
    pub bigkeys: BigKeys,
    /// The near cache's counters, per worker.
    pub near: Counters,
}

impl Shared {
    /// The state of pool `pool`.
    pub fn new(pool: &str) -> Arc<Shared> {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        Arc::new(Shared {
            pool: pool.to_owned(),
            id: NEXT.fetch_add(1, Ordering::Relaxed),
            published: Mutex::new(Vec::new()),
            bigkeys: BigKeys::default(),
            near: Counters::default(),
        })
    }

    /// A number no other pool's state has, for per-worker tables.
    pub fn id(&self) -> usize {
        self.id
    }

    /// Copies of what every worker published last.
    pub fn published(&self) -> Vec<Published> {
        self.published.lock().map(|p| p.clone()).unwrap_or_default()
    }

    /// What `f` makes of what the calling worker published last, if it did.
    pub fn with_own<T>(&self, f: impl FnOnce(&Published) -> T) -> Option<T> {
        let all = self.published.lock().ok()?;
        all.get(crate::workers::current()).map(f)
    }

    /// Stores what worker `worker` publishes.
    fn publish(&self, worker: usize, f: impl FnOnce(&mut Published)) {
        if let Ok(mut all) = self.published.lock() {
            if all.len() <= worker {
                all.resize_with(worker + 1, Published::default);
            }
            f(&mut all[worker]);
        }
    }
}

/// A pool's key-watch settings in one table, and its lasting state.
pub struct Watch {
    pub settings: KeysConfig,
    pub shared: Arc<Shared>,
}

impl Watch {
    pub fn new(settings: KeysConfig, shared: Arc<Shared>) -> Arc<Watch> {
        Arc::new(Watch { settings, shared })
    }
}

/// What the near cache counts, by index into [`Counters`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Count {
    Hits = 0,
    Misses = 1,
    Fills = 2,
    Evictions = 3,
    Invalidations = 4,
    /// Bytes held now (a gauge: added and taken away).
    Bytes = 5,
}

const COUNTS: usize = 6;

/// One worker's counters: a cache line of its own.
#[repr(align(64))]
#[derive(Default)]
struct Line([AtomicU64; COUNTS]);

/// Counters kept per worker (each adds to its own cache line), summed on read.
#[derive(Default)]
pub struct Counters {
    lines: std::sync::OnceLock<Box<[Line]>>,
}

impl Counters {
    fn line(&self) -> Option<&Line> {
        let lines = self.lines.get_or_init(|| {
            (0..crate::workers::count().max(1))
                .map(|_| Line::default())
                .collect()
        });
        lines.get(crate::workers::current()).or(lines.first())
    }

    /// Adds `n` to this worker's `what`.
    #[inline]
    pub fn add(&self, what: Count, n: u64) {
        if let Some(line) = self.line() {
            line.0[what as usize].fetch_add(n, Ordering::Relaxed);
        }
    }

    /// Takes `n` from this worker's `what` (a gauge).
    #[inline]
    pub fn sub(&self, what: Count, n: u64) {
        if let Some(line) = self.line() {
            line.0[what as usize].fetch_sub(n, Ordering::Relaxed);
        }
    }

    /// `what` summed over the workers.
    pub fn total(&self, what: Count) -> u64 {
        self.lines.get().map_or(0, |lines| {
            lines
                .iter()
                .map(|l| l.0[what as usize].load(Ordering::Relaxed))
                .fold(0u64, u64::wrapping_add)
        })
    }
}
