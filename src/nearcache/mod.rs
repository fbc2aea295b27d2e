//! The near cache: the values of a pool's hottest keys kept in proxy memory (`near_cache =
//! true`), so a key that takes a large share of the traffic is answered by the proxy instead of
//! saturating its backend. Coherent through Redis's client-side caching.
//!
//! # How
//! Each worker caches its own hot keys (the top of its own sketch, [`crate::hotkeys`]), in a
//! thread-local: a hit takes no lock. Values are read by a *tracking connection* per worker and
//! backend ([`tracker`]): a RESP3 connection that ran `CLIENT TRACKING on`, so Redis sends it
//! an invalidation push for every key it read as soon as the key changes (written by anyone,
//! expired, evicted, flushed), on the same connection, after the reply that read it. Every
//! invalidation evicts at once. A fill is the client's own read followed by `PTTL key`, so a
//! key with a TTL is also dropped when its TTL runs out. Only reads whose reply depends on the
//! key alone and has the same shape in RESP2 and RESP3 are cached ([`reads`]).
//!
//! # Races, and what a client may see
//! - **A fill in flight when the key changes.** Every slot has a sequence number, bumped by
//!   each invalidation, hold and flush; a fill is stored only if the sequence is what it was
//!   when the fill was sent. An invalidation that arrives before the fill's reply drops it; one
//!   caused by a write after the fill ran arrives after the fill's reply on the same
//!   connection, and evicts what was just stored.
//! - **This worker's own writes.** A write (any command Redis flags as a write, or that may
//!   replicate) holds its keys' slots from dispatch until its reply is written to the client:
//!   their values are dropped, nothing is served or filled meanwhile. A transaction, a script,
//!   or a write whose keys are not known holds every slot of the worker. A key that became hot
//!   is not filled until the pool's `timeout` has passed, so a write sent before its slot
//!   existed has been answered by then. So a client always reads its own writes, in order,
//!   and so does every client of the same worker once a write is answered.
//! - **Writes through other workers, other proxies, or directly to Redis.** Seen once the
//!   invalidation arrives: Redis queues it while it runs the write, before the writer gets its
//!   reply, and the worker handles it when it next reads that connection. Until then a hit may
//!   return the value from before the write. That window is Redis's own client-side caching
//!   semantics: one network hop plus the time the worker takes to get to the socket
//!   (microseconds on a LAN; measured under load in the README).
//! - **A lost tracking connection** (closed, killed with CLIENT KILL, a backend restart): every
//!   value read on it is dropped when shardis reads the close, before anything else is served
//!   from it; values come back through a new connection. A connection that stops answering is
//!   pinged every [`tracker::PING_EVERY`]; when a reply is overdue by [`tracker::SUSPECT`],
//!   its values are dropped until it answers again, so a silent network partition serves stale
//!   values for at most about that long.

mod cache;
pub mod reads;
mod tracker;

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::ops::Range;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use tokio::time::Instant;

use crate::backend::Backend;
use crate::hotkeys::{Count, TICK, Watch};
use crate::protocol::out::Proto;
use crate::protocol::reply::{put_array_len, put_bulk};
use cache::{Cache, NearPool, Slot, Value, same_shape, shape, slot_key};
use reads::forms;

/// Hot keys cached per pool and worker, at most.
pub const MAX_KEYS: usize = 64;
/// A key is cached only while it takes at least this share of its pool's requests on the
/// worker.
pub const MIN_SHARE: f64 = 1.0 / 256.0;
/// Fills waiting per tracking connection; beyond, a miss sends none.
const FILL_QUEUE: usize = 256;

thread_local! {
    static CACHE: RefCell<Cache> = RefCell::default();
    static TRACKERS: RefCell<Vec<tracker::Handle>> = const { RefCell::new(Vec::new()) };
    /// This worker caches at least one key: reads and writes look further.
    static BUSY: Cell<bool> = const { Cell::new(false) };
}

/// Whether this worker caches any key now (one thread-local read): when false, nothing else
/// here needs calling but [`read`], which registers the pool.
#[inline]
pub fn busy() -> bool {
    BUSY.with(Cell::get)
}

/// One read, as the session has it.
pub struct Read<'a> {
    pub id: usize,
    pub frame: &'a [u8],
    pub args: &'a [Range<usize>],
    pub proto: Proto,
}

/// The near cache's reply to a read of `key` (hash `hash`) of `watch`'s pool routed to
/// `backend`, or `None` (the read goes to the backend; a hot key's value is read in the
/// background for the next time).
pub fn read(
    watch: &Arc<Watch>,
    hash: u64,
    key: &[u8],
    read: &Read<'_>,
    backend: &Arc<Backend>,
) -> Option<Bytes> {
    if !busy() {
        register(watch);
        return None;
    }
    let pool = watch.shared.id();
    let k = slot_key(pool, hash);
    CACHE.with(|c| {
        let mut c = c.try_borrow_mut().ok()?;
        let (global, epoch) = (c.global_holds, c.epoch);
        let slot = c.slots.get_mut(&k).filter(|s| *s.key == *key)?;
        let addr = Arc::as_ptr(backend) as usize;
        if global == 0 && slot.holds == 0 {
            let hit = slot.values.iter().find(|v| {
                v.backend == addr
                    && same_shape(&v.shape, read.id, read.frame, read.args)
                    && v.expires.is_none_or(|at| Instant::now() < at)
            });
            if let Some(v) = hit {
                watch.shared.near.add(Count::Hits, 1);
                return Some(match read.proto {
                    Proto::Resp2 => v.forms.resp2.clone(),
                    Proto::Resp3 => v.forms.resp3.clone(),
                });
            }
        }
        watch.shared.near.add(Count::Misses, 1);
        if !slot.filling
            && slot.holds == 0
            && global == 0
            && Instant::now() >= slot.created + backend.spec.timeout
        {
            let fill = tracker::Fill {
                slot: k,
                id: slot.id,
                seq: slot.seq,
                epoch,
                shape: shape(read.id, read.frame, read.args),
                frame: fill_frame(read.frame, read.args),
            };
            slot.filling = send_fill(backend, pool, fill);
        }
        None
    })
}

/// The read, then `PTTL key`.
fn fill_frame(frame: &[u8], args: &[Range<usize>]) -> Bytes {
    let mut out = BytesMut::with_capacity(frame.len() + 64);
    put_array_len(&mut out, args.len());
    for r in args {
        put_bulk(&mut out, &frame[r.clone()]);
    }
    put_array_len(&mut out, 2);
    put_bulk(&mut out, b"PTTL");
    if let Some(key) = args.get(1) {
        put_bulk(&mut out, &frame[key.clone()]);
    }
    out.freeze()
}

/// Registers `watch`'s pool on this worker, and starts the worker's tick.
fn register(watch: &Arc<Watch>) {
    // Thread-local state is this worker's only on a runtime of one thread.
    let Some(runtime) = tokio::runtime::Handle::try_current()
        .ok()
        .filter(|r| r.runtime_flavor() == tokio::runtime::RuntimeFlavor::CurrentThread)
    else {
        return;
    };
    let start = CACHE.with(|c| {
        let Ok(mut c) = c.try_borrow_mut() else {
            return false;
        };
        let id = watch.shared.id();
        if c.pools.len() <= id {
            c.pools.resize_with(id + 1, || None);
        }
        let known = c.pools[id]
            .as_ref()
            .is_some_and(|p| std::ptr::eq(p.watch.as_ptr(), Arc::as_ptr(watch)));
        if !known {
            let budget = watch.settings.near_cache_bytes / crate::workers::count().max(1);
            c.pools[id] = Some(NearPool {
                watch: Arc::downgrade(watch),
                budget,
            });
        }
        !std::mem::replace(&mut c.ticking, true)
    });
    if start {
        runtime.spawn(tick_forever());
    }
}

/// Sends `fill` on this worker's tracking connection to `backend` (starting it if needed);
/// false if it could not be queued.
fn send_fill(backend: &Arc<Backend>, pool: usize, fill: tracker::Fill) -> bool {
    TRACKERS.with(|t| {
        let Ok(mut trackers) = t.try_borrow_mut() else {
            return false;
        };
        let addr = Arc::as_ptr(backend) as usize;
        let live = trackers
            .iter()
            .position(|h| h.addr == addr && h.backend.upgrade().is_some());
        let i = match live {
            Some(i) => i,
            None => {
                trackers.retain(|h| h.addr != addr);
                let (tx, rx) = tokio::sync::mpsc::channel(FILL_QUEUE);
                tokio::spawn(tracker::run(backend.spec.clone(), addr, pool, rx));
                trackers.push(tracker::Handle {
                    addr,
                    backend: Arc::downgrade(backend),
                    tx,
                });
                trackers.len() - 1
            }
        };
        trackers[i].tx.try_send(fill).is_ok()
    })
}

async fn tick_forever() {
    let mut every = tokio::time::interval_at(Instant::now() + TICK, TICK);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        every.tick().await;
        tick();
    }
}

/// Every tick: each pool's slots follow the worker's hot keys, expired values go, and the
/// tracking connections of backends that are gone close.
fn tick() {
    let now = Instant::now();
    let dead: Vec<usize> = TRACKERS.with(|t| {
        let Ok(mut trackers) = t.try_borrow_mut() else {
            return Vec::new();
        };
        let dead = trackers
            .iter()
            .filter(|h| h.backend.upgrade().is_none())
            .map(|h| h.addr)
            .collect();
        // Dropping a handle closes its fill queue: the connection ends.
        trackers.retain(|h| h.backend.upgrade().is_some());
        dead
    });
    CACHE.with(|c| {
        let Ok(mut c) = c.try_borrow_mut() else {
            return;
        };
        if !dead.is_empty() {
            c.clear_where(Count::Evictions, |_, v| dead.contains(&v.backend));
        }
        c.clear_where(Count::Evictions, |_, v| {
            v.expires.is_some_and(|at| at <= now)
        });
        for pool in 0..c.pools.len() {
            follow_hot_keys(&mut c, pool, now);
        }
        BUSY.with(|b| b.set(!c.slots.is_empty()));
    });
}

/// Makes pool `pool`'s slots the worker's current hot keys of it.
fn follow_hot_keys(c: &mut Cache, pool: usize, now: Instant) {
    let watch = c.pools[pool].as_ref().and_then(|p| p.watch.upgrade());
    let hot: Vec<Vec<u8>> = match &watch {
        Some(w) if w.settings.near_cache => w
            .shared
            .with_own(|p| {
                p.entries
                    .iter()
                    .filter(|e| e.key.len() == e.len as usize && e.count >= p.total * MIN_SHARE)
                    .take(MAX_KEYS)
                    .map(|e| e.key.clone())
                    .collect()
            })
            .unwrap_or_default(),
        _ => Vec::new(),
    };
    if watch.is_none() {
        c.pools[pool] = None;
    }
    let hot_keys: Vec<u64> = hot
        .iter()
        .map(|k| slot_key(pool, crate::hotkeys::key_hash(k)))
        .collect();
    let gone: Vec<u64> = c
        .slots
        .iter()
        .filter(|(k, s)| s.pool == pool && !hot_keys.contains(k))
        .map(|(&k, _)| k)
        .collect();
    for k in gone {
        c.remove_slot(k);
    }
    for (rank, (key, k)) in hot.into_iter().zip(hot_keys).enumerate() {
        let next_id = c.next_id + 1;
        let slot = c.slots.entry(k).or_insert_with(|| Slot {
            id: next_id,
            pool,
            key: key.into_boxed_slice(),
            seq: 0,
            holds: 0,
            filling: false,
            created: now,
            rank: 0,
            values: Vec::new(),
        });
        slot.rank = rank as u32;
        if slot.id == next_id {
            c.next_id = next_id;
        }
    }
}

/// A fill's reply arrived on a tracking connection (`value`, and the key's `pttl`): stored if
/// nothing invalidated the key since the fill was sent (`sent`).
fn filled(fill: &tracker::Fill, backend: usize, value: &[u8], pttl: i64, sent: Instant) {
    CACHE.with(|c| {
        let Ok(mut c) = c.try_borrow_mut() else {
            return;
        };
        let (epoch, global) = (c.epoch, c.global_holds);
        let Some(slot) = c.slots.get_mut(&fill.slot).filter(|s| s.id == fill.id) else {
            return;
        };
        slot.filling = false;
        if slot.seq != fill.seq || slot.holds > 0 || epoch != fill.epoch || global > 0 {
            return;
        }
        // -2: no such key (its null is cached: Redis tracks a missing key too); -1: no TTL.
        let expires = match pttl {
            -2 | -1 => None,
            ms if ms > 0 => Some(sent + std::time::Duration::from_millis(ms as u64)),
            _ => return,
        };
        let Some(forms) = forms(value) else {
            return;
        };
        let (pool, rank) = (slot.pool, slot.rank);
        let value = Value {
            shape: fill.shape.clone(),
            forms,
            backend,
            expires,
        };
        if c.make_room(pool, rank, value.bytes()) {
            c.insert(fill.slot, value);
        }
    });
}

/// A fill that will get no reply (its connection failed): the key may be filled again.
fn unfilled(fill: &tracker::Fill) {
    CACHE.with(|c| {
        if let Ok(mut c) = c.try_borrow_mut()
            && let Some(slot) = c.slots.get_mut(&fill.slot).filter(|s| s.id == fill.id)
        {
            slot.filling = false;
        }
    });
}

/// Redis invalidated `keys` of pool `pool`.
fn invalidate<'k>(pool: usize, keys: impl Iterator<Item = &'k [u8]>) {
    CACHE.with(|c| {
        let Ok(mut c) = c.try_borrow_mut() else {
            return;
        };
        for key in keys {
            let k = slot_key(pool, crate::hotkeys::key_hash(key));
            if c.slots.get(&k).is_some_and(|s| *s.key == *key) {
                c.clear_slot(k, Count::Invalidations);
            }
        }
    });
}

/// Every value read on the tracking connection to `backend` is dropped (it was lost, stopped
/// answering, or Redis flushed its database); `what` counts them.
fn flush_backend(backend: usize, what: Count) {
    CACHE.with(|c| {
        if let Ok(mut c) = c.try_borrow_mut() {
            c.clear_where(what, |_, v| v.backend == backend);
            // Fills in flight on it are dropped by the connection itself.
        }
    });
}

/// A write in flight: the near cache serves and fills nothing it holds until it is dropped.
pub struct Hold {
    /// The slot held, and its id; `None`: every slot of the worker.
    slot: Option<(u64, u64)>,
}

impl Drop for Hold {
    fn drop(&mut self) {
        CACHE.with(|c| {
            let Ok(mut c) = c.try_borrow_mut() else {
                return;
            };
            match self.slot {
                None => {
                    c.global_holds = c.global_holds.saturating_sub(1);
                    c.epoch += 1;
                }
                Some((k, id)) => {
                    if let Some(slot) = c.slots.get_mut(&k).filter(|s| s.id == id) {
                        slot.holds = slot.holds.saturating_sub(1);
                        slot.seq += 1;
                    }
                }
            }
        });
    }
}

/// Holds the slot of `key` (hash `hash`) of `watch`'s pool, if this worker caches it: its
/// values are dropped, and none are served or filled until the hold is dropped.
pub fn hold_key(watch: &Watch, hash: u64, key: &[u8]) -> Option<Hold> {
    let k = slot_key(watch.shared.id(), hash);
    CACHE.with(|c| {
        let mut c = c.try_borrow_mut().ok()?;
        let slot = c.slots.get_mut(&k).filter(|s| *s.key == *key)?;
        slot.holds += 1;
        let id = slot.id;
        c.clear_slot(k, Count::Invalidations);
        Some(Hold {
            slot: Some((k, id)),
        })
    })
}

/// Holds every slot of this worker (a write whose keys are not known).
pub fn hold_all() -> Hold {
    CACHE.with(|c| {
        if let Ok(mut c) = c.try_borrow_mut() {
            c.global_holds += 1;
            c.epoch += 1;
            c.clear_where(Count::Invalidations, |_, _| true);
        }
    });
    Hold { slot: None }
}

/// A session's holds, each until the reply of the command that took it (its sequence number)
/// has left the queue.
#[derive(Default)]
pub struct Holds(VecDeque<(u64, Hold)>);

impl Holds {
    pub fn push(&mut self, seq: u64, hold: Hold) {
        self.0.push_back((seq, hold));
    }

    #[inline]
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Drops the holds of commands before `seq`.
    pub fn release_before(&mut self, seq: u64) {
        while self.0.front().is_some_and(|(s, _)| *s < seq) {
            self.0.pop_front();
        }
    }
}

#[cfg(test)]
mod tests;
