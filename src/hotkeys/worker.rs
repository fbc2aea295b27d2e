//! Each worker's own sketches, one per pool, in a thread-local: the request path counts into
//! them with no lock and no atomic. A task on the worker (started by the first sample) decays
//! them every [`TICK`] and publishes a copy for readers.

use std::cell::{Cell, RefCell};
use std::sync::{Arc, Weak};

use tokio::time::Instant;

use super::sketch::{Entry, Sketch};
use super::{HALF_LIFE, RATE_TICKS, Shared, TICK, Watch};

/// What one worker published of one pool's sketch.
#[derive(Clone, Debug, Default)]
pub struct Published {
    /// Tracked keys, largest count first.
    pub entries: Vec<Entry>,
    /// Decayed count of all samples.
    pub total: f64,
    /// Decayed count of the samples per backend (index in the pool).
    pub backends: Vec<f64>,
    /// Requests per second this worker served for the pool, over the last [`RATE_TICKS`]
    /// ticks (samples times the sampling interval).
    pub rate: f64,
    /// Keys the sketch tracks.
    pub capacity: usize,
}

/// One pool's sketch on this worker.
struct Tracked {
    shared: Weak<Shared>,
    sketch: Sketch,
    sample: u32,
    /// Samples since the last tick.
    samples: u64,
    /// Samples and seconds of the last [`RATE_TICKS`] ticks.
    window: [(u64, f64); RATE_TICKS],
    next: usize,
    /// Reused by every publication.
    scratch: Vec<Entry>,
}

#[derive(Default)]
struct Local {
    /// By [`Shared::id`].
    pools: Vec<Option<Tracked>>,
    publishing: bool,
}

thread_local! {
    static LOCAL: RefCell<Local> = RefCell::default();
    /// Requests to skip before the next sample.
    static SKIP: Cell<u32> = const { Cell::new(0) };
    static RNG: Cell<u64> = const { Cell::new(0x9E37_79B9_7F4A_7C15) };
}

/// Counts a request for `key` of `watch`'s pool, one in `hotkeys_sample` of them; the key's
/// hash and `backend` (the index of the backend serving it in its pool) are computed only for
/// the requests counted.
#[inline]
pub fn observe(watch: &Watch, key: &[u8], backend: impl FnOnce() -> u16) {
    let sample = watch.settings.hotkeys_sample;
    if sample == 0 {
        return;
    }
    if sample > 1 {
        let skip = SKIP.with(Cell::get);
        if skip > 0 {
            SKIP.with(|s| s.set(skip - 1));
            return;
        }
        // The next sample after a random number of requests, `sample` on average: a fixed
        // stride would see only some keys of a client that cycles through them.
        SKIP.with(|s| s.set((next_random() % (2 * u64::from(sample) - 1)) as u32));
    }
    record(watch, super::key_hash(key), key, backend());
}

/// Counts one sample of `key` in this worker's sketch of `watch`'s pool.
pub fn record(watch: &Watch, hash: u64, key: &[u8], backend: u16) {
    let start = LOCAL.with(|local| {
        let Ok(mut local) = local.try_borrow_mut() else {
            return false;
        };
        let id = watch.shared.id();
        if local.pools.len() <= id {
            local.pools.resize_with(id + 1, || None);
        }
        let slot = &mut local.pools[id];
        let stale = slot.as_ref().is_none_or(|t| {
            t.sketch.capacity() != watch.settings.hotkeys_capacity.max(1)
                || !std::ptr::eq(t.shared.as_ptr(), Arc::as_ptr(&watch.shared))
        });
        if stale {
            if !own_thread() {
                return false;
            }
            *slot = Some(Tracked {
                shared: Arc::downgrade(&watch.shared),
                sketch: Sketch::new(watch.settings.hotkeys_capacity),
                sample: watch.settings.hotkeys_sample,
                samples: 0,
                window: [(0, 0.0); RATE_TICKS],
                next: 0,
                scratch: Vec::new(),
            });
        }
        if let Some(t) = slot {
            t.sample = watch.settings.hotkeys_sample;
            t.samples += 1;
            t.sketch.add(hash, key, backend);
        }
        !std::mem::replace(&mut local.publishing, true)
    });
    if start && let Ok(runtime) = tokio::runtime::Handle::try_current() {
        // On this worker's own runtime: the task runs on this thread, beside the sketches.
        runtime.spawn(publish_every_tick());
    }
}

/// Whether the caller runs on a runtime of one thread (a worker's): thread-local sketches are
/// that worker's, and its publishing task runs beside them.
fn own_thread() -> bool {
    tokio::runtime::Handle::try_current()
        .is_ok_and(|r| r.runtime_flavor() == tokio::runtime::RuntimeFlavor::CurrentThread)
}

fn next_random() -> u64 {
    RNG.with(|r| {
        let mut x = r.get();
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        r.set(x);
        x
    })
}

/// Decays and publishes this worker's sketches every [`TICK`], for as long as the worker runs.
async fn publish_every_tick() {
    let mut last = Instant::now();
    let mut every = tokio::time::interval_at(last + TICK, TICK);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        every.tick().await;
        let now = Instant::now();
        let elapsed = now.saturating_duration_since(last).as_secs_f64();
        last = now;
        tick(elapsed);
    }
}

/// One tick: `elapsed` seconds since the last.
fn tick(elapsed: f64) {
    let worker = crate::workers::current();
    let factor = 0.5f64.powf(elapsed / HALF_LIFE.as_secs_f64());
    LOCAL.with(|local| {
        let Ok(mut local) = local.try_borrow_mut() else {
            return;
        };
        for slot in &mut local.pools {
            let Some(t) = slot else {
                continue;
            };
            let Some(shared) = t.shared.upgrade() else {
                // The pool is gone: so is its sketch.
                *slot = None;
                continue;
            };
            t.window[t.next] = (std::mem::take(&mut t.samples), elapsed);
            t.next = (t.next + 1) % RATE_TICKS;
            let (samples, seconds) = t
                .window
                .iter()
                .fold((0u64, 0.0f64), |(n, s), &(dn, ds)| (n + dn, s + ds));
            let rate = if seconds > 0.0 {
                samples as f64 * f64::from(t.sample.max(1)) / seconds
            } else {
                0.0
            };
            t.sketch.decay(factor);
            t.sketch.top(&mut t.scratch);
            let (sketch, scratch) = (&t.sketch, &mut t.scratch);
            shared.publish(worker, |p| {
                std::mem::swap(&mut p.entries, scratch);
                p.total = sketch.total();
                p.backends.clear();
                p.backends.extend_from_slice(sketch.backends());
                p.rate = rate;
                p.capacity = sketch.capacity();
            });
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::KeysConfig;

    fn watch(sample: u32) -> Arc<Watch> {
        let settings = KeysConfig {
            hotkeys_sample: sample,
            hotkeys_capacity: 16,
            ..KeysConfig::default()
        };
        Watch::new(settings, Shared::new("main"))
    }

    fn count(w: &Watch, key: &str, n: usize, backend: u16) {
        for _ in 0..n {
            observe(w, key.as_bytes(), || backend);
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_tick_publishes_decayed_counts_and_a_rate() {
        let w = watch(1);
        count(&w, "a", 300, 0);
        count(&w, "b", 100, 1);
        assert!(w.shared.published().is_empty());
        tokio::time::sleep(TICK + std::time::Duration::from_millis(1)).await;
        let p = &w.shared.published()[0];
        let factor = 0.5f64.powf(TICK.as_secs_f64() / HALF_LIFE.as_secs_f64());
        assert_eq!(p.entries[0].key, b"a");
        assert!((p.entries[0].count - 300.0 * factor).abs() < 1.0);
        assert!((p.total - 400.0 * factor).abs() < 1.0);
        assert_eq!(p.backends.len(), 2);
        // 400 requests in the first of RATE_TICKS ticks.
        let seconds = TICK.as_secs_f64();
        assert!((p.rate - 400.0 / seconds).abs() < 40.0, "{}", p.rate);
        // A pool that is gone is dropped at the next tick.
        let shared = Arc::downgrade(&w.shared);
        drop(w);
        tokio::time::sleep(TICK).await;
        assert!(shared.upgrade().is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn sampling_counts_about_one_in_n() {
        let w = watch(10);
        count(&w, "a", 20_000, 0);
        tokio::time::sleep(TICK + std::time::Duration::from_millis(1)).await;
        let p = &w.shared.published()[0];
        let factor = 0.5f64.powf(TICK.as_secs_f64() / HALF_LIFE.as_secs_f64());
        let samples = p.total / factor;
        assert!((1600.0..2400.0).contains(&samples), "{samples}");
        // The rate is scaled back up by the interval.
        let rate = 20_000.0 / TICK.as_secs_f64();
        assert!((p.rate - rate).abs() < rate * 0.2, "{}", p.rate);
        // Off: nothing is counted.
        let off = watch(0);
        count(&off, "a", 100, 0);
        tokio::time::sleep(TICK).await;
        assert!(off.shared.published().is_empty());
    }
}
