//! One worker's near cache: a slot per hot key (chosen every tick from the worker's own hot
//! keys), each with the values read for it, their bytes within the worker's budget, the
//! invalidation sequence that guards fills, and the writes in flight that hold it.

use std::ops::Range;
use std::sync::{Arc, Weak};

use tokio::time::Instant;

use super::reads::Forms;
use crate::hotkeys::sketch::HashIndex;
use crate::hotkeys::{Count, Shared, Watch};

/// The slot map's key for `key` (hash `hash`) of pool `pool`.
#[inline]
pub(super) fn slot_key(pool: usize, hash: u64) -> u64 {
    hash ^ (pool as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15)
}

/// One cached reply of a key.
pub(super) struct Value {
    /// The read it answers: [`shape`] of its command and arguments after the key.
    pub shape: Box<[u8]>,
    pub forms: Forms,
    /// The backend whose tracking connection read it (its address in memory): a value is
    /// served only for reads routed there, and dropped when that connection is lost.
    pub backend: usize,
    /// The key's TTL ran out, at the latest.
    pub expires: Option<Instant>,
}

impl Value {
    /// What it costs the budget (the two forms once when they are the same bytes).
    pub fn bytes(&self) -> usize {
        let f = &self.forms;
        let forms = if f.resp2.as_ptr() == f.resp3.as_ptr() {
            f.resp2.len()
        } else {
            f.resp2.len() + f.resp3.len()
        };
        forms + self.shape.len() + 64
    }
}

/// A hot key of one pool on this worker.
pub(super) struct Slot {
    /// Unique on the worker, so a hold never releases a later slot of the same key.
    pub id: u64,
    pub pool: usize,
    pub key: Box<[u8]>,
    /// Bumped by every invalidation, hold and flush: a fill sent before a bump is dropped.
    pub seq: u64,
    /// Writes to the key in flight from this worker's clients.
    pub holds: u32,
    pub filling: bool,
    pub created: Instant,
    /// Its place among the pool's hot keys (0: hottest), for eviction.
    pub rank: u32,
    pub values: Vec<Value>,
}

/// A pool whose reads this worker caches.
pub(super) struct NearPool {
    /// The pool's settings and state in the newest table a session read it through.
    pub watch: Weak<Watch>,
    /// This worker's share of `near_cache_bytes`.
    pub budget: usize,
}

/// This worker's near cache.
#[derive(Default)]
pub(super) struct Cache {
    pub slots: HashIndex<Slot>,
    pub bytes: usize,
    /// Bumped while a write of unknown keys (a transaction, a script, a flush) is in flight.
    pub epoch: u64,
    pub global_holds: u32,
    /// By [`Shared::id`].
    pub pools: Vec<Option<NearPool>>,
    pub next_id: u64,
    pub ticking: bool,
}

/// The shape of a read: its command id, then each argument after the key (length, bytes).
pub(super) fn shape(id: usize, frame: &[u8], args: &[Range<usize>]) -> Box<[u8]> {
    let mut out = Vec::with_capacity(2 + args.iter().skip(2).map(|r| r.len() + 4).sum::<usize>());
    out.extend_from_slice(&(id as u16).to_le_bytes());
    for r in args.iter().skip(2) {
        out.extend_from_slice(&(r.len() as u32).to_le_bytes());
        out.extend_from_slice(&frame[r.clone()]);
    }
    out.into_boxed_slice()
}

/// Whether `stored` is the shape of this read, compared without building it.
#[inline]
pub(super) fn same_shape(stored: &[u8], id: usize, frame: &[u8], args: &[Range<usize>]) -> bool {
    let Some((head, mut rest)) = stored.split_first_chunk::<2>() else {
        return false;
    };
    if u16::from_le_bytes(*head) != id as u16 {
        return false;
    }
    for r in args.iter().skip(2) {
        let Some((len, tail)) = rest.split_first_chunk::<4>() else {
            return false;
        };
        let len = u32::from_le_bytes(*len) as usize;
        if len != r.len() || tail.get(..len) != Some(&frame[r.clone()]) {
            return false;
        }
        rest = &tail[len..];
    }
    rest.is_empty()
}

impl Cache {
    /// The pool's counters, while it exists.
    pub fn shared(&self, pool: usize) -> Option<Arc<Shared>> {
        self.pools
            .get(pool)
            .and_then(Option::as_ref)
            .and_then(|p| p.watch.upgrade())
            .map(|w| w.shared.clone())
    }

    fn count(&self, pool: usize, what: Count, n: u64) {
        if n > 0
            && let Some(shared) = self.shared(pool)
        {
            shared.near.add(what, n);
        }
    }

    fn release_bytes(&mut self, pool: usize, bytes: usize) {
        self.bytes = self.bytes.saturating_sub(bytes);
        if let Some(shared) = self.shared(pool) {
            shared.near.sub(Count::Bytes, bytes as u64);
        }
    }

    /// Drops every value of slot `k` (and bumps its sequence); counts them as `what`.
    pub fn clear_slot(&mut self, k: u64, what: Count) {
        let Some(slot) = self.slots.get_mut(&k) else {
            return;
        };
        slot.seq += 1;
        let freed: usize = slot.values.iter().map(Value::bytes).sum();
        let n = slot.values.len() as u64;
        slot.values.clear();
        let pool = slot.pool;
        self.count(pool, what, n);
        self.release_bytes(pool, freed);
    }

    /// Drops the values that `keep` refuses, in every slot (bumping the sequence of each
    /// slot that lost one); counts them as `what`.
    pub fn clear_where(&mut self, what: Count, mut drop: impl FnMut(&Slot, &Value) -> bool) {
        let keys: Vec<u64> = self
            .slots
            .iter()
            .filter(|(_, s)| s.values.iter().any(|v| drop(s, v)))
            .map(|(&k, _)| k)
            .collect();
        for k in keys {
            let Some(slot) = self.slots.get_mut(&k) else {
                continue;
            };
            slot.seq += 1;
            let (mut freed, mut n) = (0, 0u64);
            let mut i = 0;
            while i < slot.values.len() {
                if drop(slot, &slot.values[i]) {
                    freed += slot.values.swap_remove(i).bytes();
                    n += 1;
                } else {
                    i += 1;
                }
            }
            let pool = slot.pool;
            self.count(pool, what, n);
            self.release_bytes(pool, freed);
        }
    }

    /// Makes room for `need` more bytes in pool `pool`'s budget by dropping the values of
    /// colder slots than `rank`; false when there is not enough to drop.
    pub fn make_room(&mut self, pool: usize, rank: u32, need: usize) -> bool {
        let budget = self
            .pools
            .get(pool)
            .and_then(Option::as_ref)
            .map_or(0, |p| p.budget);
        if need > budget {
            return false;
        }
        while self.bytes + need > budget {
            let coldest = self
                .slots
                .iter()
                .filter(|(_, s)| !s.values.is_empty() && s.rank > rank)
                .max_by_key(|(_, s)| s.rank)
                .map(|(&k, _)| k);
            match coldest {
                Some(k) => self.clear_slot(k, Count::Evictions),
                None => return false,
            }
        }
        true
    }

    /// Stores `value` in slot `k`, replacing one of the same shape.
    pub fn insert(&mut self, k: u64, value: Value) {
        let size = value.bytes();
        let Some(slot) = self.slots.get_mut(&k) else {
            return;
        };
        let pool = slot.pool;
        let old = slot
            .values
            .iter()
            .position(|v| v.shape == value.shape)
            .map(|i| slot.values.swap_remove(i).bytes());
        slot.values.push(value);
        if let Some(freed) = old {
            self.release_bytes(pool, freed);
        }
        self.bytes += size;
        self.count(pool, Count::Bytes, size as u64);
        self.count(pool, Count::Fills, 1);
    }

    /// Removes slot `k` and its values (a key no longer hot, or a pool gone).
    pub fn remove_slot(&mut self, k: u64) {
        self.clear_slot(k, Count::Evictions);
        self.slots.remove(&k);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(parts: &[&str]) -> (Vec<u8>, Vec<Range<usize>>) {
        let mut frame = Vec::new();
        let mut ranges = Vec::new();
        for p in parts {
            let start = frame.len();
            frame.extend_from_slice(p.as_bytes());
            ranges.push(start..frame.len());
        }
        (frame, ranges)
    }

    #[test]
    fn shapes_match_the_read_they_were_made_from() {
        let (f, a) = args(&["HGET", "h", "field"]);
        let s = shape(7, &f, &a);
        assert!(same_shape(&s, 7, &f, &a));
        assert!(!same_shape(&s, 8, &f, &a));
        let (f2, a2) = args(&["hget", "other", "field"]);
        assert!(
            same_shape(&s, 7, &f2, &a2),
            "the key is not part of the shape"
        );
        let (f3, a3) = args(&["HGET", "h", "fielx"]);
        assert!(!same_shape(&s, 7, &f3, &a3));
        let (f4, a4) = args(&["HGET", "h", "field", "x"]);
        assert!(!same_shape(&s, 7, &f4, &a4));
        let (f5, a5) = args(&["GET", "h"]);
        assert!(same_shape(&shape(1, &f5, &a5), 1, &f5, &a5));
    }
}
