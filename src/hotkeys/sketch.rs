//! A bounded, approximate top-k of keys by request count: space-saving (Metwally, Agrawal and
//! El Abbadi, 2005) over a binary min-heap, with counts that decay.
//!
//! At most `capacity` keys are tracked. A tracked key's count grows by one per sample; an
//! untracked key replaces the key with the smallest count and starts from that count plus one,
//! remembering it as its error. So a count never underestimates (`count - err` never
//! overestimates), and a key with more than `total / capacity` samples is always tracked. The
//! owner calls [`Sketch::decay`] on a timer: every count is multiplied by the same factor, which
//! keeps the heap's order and makes old traffic fade, so a key that became hot shows within a
//! few half-lives and counts stay proportional to recent request rates.
//!
//! A sample costs one hash-map look-up and a sift of the heap (usually a step or two: a hot
//! key sits deep in a min-heap). Nothing is allocated once `capacity` keys have been seen: the
//! slots, the map and the key buffers are reused.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

/// Bytes of a key kept for display; a longer key is shown cut, with its full length.
pub const MAX_KEY_BYTES: usize = 256;
/// Backends counted per pool (the configuration's limit).
pub const MAX_BACKENDS: usize = 1024;

/// The hash of a key, as the sketch and the near cache use it.
#[inline]
pub fn key_hash(key: &[u8]) -> u64 {
    xxhash_rust::xxh3::xxh3_64(key)
}

/// Keys are already hashed: the map uses the hash as it is.
#[derive(Default)]
pub struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 << 8) | u64::from(b);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

/// A map keyed by a key hash.
pub type HashIndex<V> = HashMap<u64, V, BuildHasherDefault<IdHasher>>;

/// One tracked key.
struct Slot {
    hash: u64,
    count: f64,
    /// The count of the key it replaced: the most this one may be overcounted.
    err: f64,
    /// Its first [`MAX_KEY_BYTES`] bytes.
    key: Vec<u8>,
    /// Its full length.
    len: u32,
    /// The backend (index in its pool) of its last sample.
    backend: u16,
    /// Its position in the heap.
    pos: u32,
}

/// One tracked key, as [`Sketch::top`] lists it.
#[derive(Clone, Debug, PartialEq)]
pub struct Entry {
    /// The key's first [`MAX_KEY_BYTES`] bytes.
    pub key: Vec<u8>,
    /// The key's full length.
    pub len: u32,
    pub count: f64,
    pub err: f64,
    pub backend: u16,
}

/// The top-k sketch of one pool on one worker.
pub struct Sketch {
    slots: Vec<Slot>,
    /// Slot indices, a min-heap by count.
    heap: Vec<u32>,
    index: HashIndex<u32>,
    capacity: usize,
    /// Decayed count of every sample.
    total: f64,
    /// Decayed count of the samples per backend.
    backends: Vec<f64>,
}

impl Sketch {
    /// A sketch tracking at most `capacity` keys (at least one).
    pub fn new(capacity: usize) -> Sketch {
        let capacity = capacity.max(1);
        let mut index = HashIndex::default();
        index.reserve(capacity);
        Sketch {
            slots: Vec::with_capacity(capacity),
            heap: Vec::with_capacity(capacity),
            index,
            capacity,
            total: 0.0,
            backends: Vec::new(),
        }
    }

    /// Keys tracked at most.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Decayed count of all samples.
    pub fn total(&self) -> f64 {
        self.total
    }

    /// Decayed count of the samples per backend (index in the pool).
    pub fn backends(&self) -> &[f64] {
        &self.backends
    }

    /// Counts one sample of `key` (whose [`key_hash`] is `hash`), served by `backend`.
    #[inline]
    pub fn add(&mut self, hash: u64, key: &[u8], backend: u16) {
        self.total += 1.0;
        let b = usize::from(backend);
        if let Some(n) = self.backends.get_mut(b) {
            *n += 1.0;
        } else if b < MAX_BACKENDS {
            self.backends.resize(b + 1, 0.0);
            self.backends[b] = 1.0;
        }
        if let Some(&s) = self.index.get(&hash) {
            let slot = &mut self.slots[s as usize];
            slot.count += 1.0;
            slot.backend = backend;
            let pos = slot.pos as usize;
            self.sift_down(pos);
            return;
        }
        if self.slots.len() < self.capacity {
            let s = self.slots.len() as u32;
            let mut slot = Slot {
                hash,
                count: 1.0,
                err: 0.0,
                key: Vec::new(),
                len: 0,
                backend,
                pos: self.heap.len() as u32,
            };
            set_key(&mut slot, key);
            self.slots.push(slot);
            self.heap.push(s);
            self.index.insert(hash, s);
            let pos = self.heap.len() - 1;
            self.sift_up(pos);
            return;
        }
        // Full: the key with the smallest count makes room, and its count is the newcomer's
        // error.
        let s = self.heap[0];
        let slot = &mut self.slots[s as usize];
        self.index.remove(&slot.hash);
        slot.hash = hash;
        slot.err = slot.count;
        slot.count += 1.0;
        slot.backend = backend;
        set_key(slot, key);
        self.index.insert(hash, s);
        self.sift_down(0);
    }

    /// Multiplies every count by `factor` (0 to 1): old samples fade.
    pub fn decay(&mut self, factor: f64) {
        // Counts this small are gone: zero them rather than let them become subnormal.
        let keep = |v: f64| if v < 1e-6 { 0.0 } else { v };
        for slot in &mut self.slots {
            slot.count = keep(slot.count * factor);
            slot.err = keep(slot.err * factor);
        }
        self.total = keep(self.total * factor);
        for b in &mut self.backends {
            *b = keep(*b * factor);
        }
    }

    /// The tracked keys with a count, largest count first, written into `out` (cleared
    /// first; its buffers are reused).
    pub fn top(&self, out: &mut Vec<Entry>) {
        let mut order: Vec<&Slot> = self.slots.iter().filter(|s| s.count > 0.0).collect();
        order.sort_by(|a, b| b.count.total_cmp(&a.count));
        out.truncate(order.len());
        for (i, slot) in order.into_iter().enumerate() {
            match out.get_mut(i) {
                Some(e) => {
                    e.key.clear();
                    e.key.extend_from_slice(&slot.key);
                    e.len = slot.len;
                    e.count = slot.count;
                    e.err = slot.err;
                    e.backend = slot.backend;
                }
                None => out.push(Entry {
                    key: slot.key.clone(),
                    len: slot.len,
                    count: slot.count,
                    err: slot.err,
                    backend: slot.backend,
                }),
            }
        }
    }

    fn count_at(&self, pos: usize) -> f64 {
        self.slots[self.heap[pos] as usize].count
    }

    fn swap(&mut self, a: usize, b: usize) {
        self.heap.swap(a, b);
        self.slots[self.heap[a] as usize].pos = a as u32;
        self.slots[self.heap[b] as usize].pos = b as u32;
    }

    fn sift_up(&mut self, mut pos: usize) {
        while pos > 0 {
            let parent = (pos - 1) / 2;
            if self.count_at(parent) <= self.count_at(pos) {
                break;
            }
            self.swap(parent, pos);
            pos = parent;
        }
    }

    fn sift_down(&mut self, mut pos: usize) {
        let n = self.heap.len();
        loop {
            let left = 2 * pos + 1;
            if left >= n {
                return;
            }
            let right = left + 1;
            let child = if right < n && self.count_at(right) < self.count_at(left) {
                right
            } else {
                left
            };
            if self.count_at(pos) <= self.count_at(child) {
                return;
            }
            self.swap(pos, child);
            pos = child;
        }
    }
}

fn set_key(slot: &mut Slot, key: &[u8]) {
    slot.key.clear();
    slot.key
        .extend_from_slice(&key[..key.len().min(MAX_KEY_BYTES)]);
    slot.len = u32::try_from(key.len()).unwrap_or(u32::MAX);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn add(s: &mut Sketch, key: &str) {
        s.add(key_hash(key.as_bytes()), key.as_bytes(), 0);
    }

    fn top(s: &Sketch) -> Vec<(String, f64)> {
        let mut out = Vec::new();
        s.top(&mut out);
        out.into_iter()
            .map(|e| (String::from_utf8(e.key).unwrap(), e.count))
            .collect()
    }

    /// The heap property and the index agree with the slots.
    fn check(s: &Sketch) {
        for (pos, &slot) in s.heap.iter().enumerate() {
            assert_eq!(s.slots[slot as usize].pos as usize, pos);
            if pos > 0 {
                assert!(s.count_at((pos - 1) / 2) <= s.count_at(pos));
            }
            assert_eq!(s.index[&s.slots[slot as usize].hash], slot);
        }
        assert_eq!(s.index.len(), s.slots.len());
    }

    #[test]
    fn exact_while_under_capacity() {
        let mut s = Sketch::new(10);
        for (key, n) in [("a", 5), ("b", 3), ("c", 8)] {
            for _ in 0..n {
                add(&mut s, key);
            }
        }
        check(&s);
        assert_eq!(
            top(&s),
            vec![("c".into(), 8.0), ("a".into(), 5.0), ("b".into(), 3.0)]
        );
        assert_eq!(s.total(), 16.0);
    }

    #[test]
    fn heavy_hitters_survive_a_long_tail() {
        // 10,000 keys, one with 30% of the samples and four with 5% each, in a small sketch.
        let mut s = Sketch::new(100);
        let mut rng = 0x1234_5678_9abc_def0u64;
        let n = 200_000;
        for _ in 0..n {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            let r = rng % 100;
            let key = match r {
                0..30 => "hot0".to_string(),
                30..35 => "hot1".to_string(),
                35..40 => "hot2".to_string(),
                40..45 => "hot3".to_string(),
                45..50 => "hot4".to_string(),
                _ => format!("k{}", (rng >> 8) % 10_000),
            };
            add(&mut s, &key);
        }
        check(&s);
        let t = top(&s);
        assert_eq!(t[0].0, "hot0");
        for (i, (key, count)) in t.iter().take(5).enumerate() {
            assert!(key.starts_with("hot"), "{t:?}");
            let truth = if i == 0 { 0.30 } else { 0.05 };
            let share = count / s.total();
            assert!((share - truth).abs() < truth * 0.2, "{key} {share}");
        }
    }

    #[test]
    fn decay_lets_a_new_key_overtake() {
        let mut s = Sketch::new(4);
        for _ in 0..1000 {
            add(&mut s, "old");
        }
        for _ in 0..10 {
            s.decay(0.5);
            for _ in 0..100 {
                add(&mut s, "new");
            }
        }
        check(&s);
        let t = top(&s);
        assert_eq!(t[0].0, "new");
        assert!(t[1].1 < 1.0, "{t:?}");
        // Long idle: counts go to zero, not to subnormal numbers.
        for _ in 0..200 {
            s.decay(0.5);
        }
        assert_eq!(s.total(), 0.0);
        assert!(top(&s).is_empty());
    }

    #[test]
    fn long_keys_are_cut_and_backends_counted() {
        let mut s = Sketch::new(2);
        let long = vec![b'x'; 1000];
        s.add(key_hash(&long), &long, 3);
        s.add(key_hash(b"a"), b"a", 1);
        s.add(key_hash(b"a"), b"a", 1);
        let mut out = Vec::new();
        s.top(&mut out);
        assert_eq!(out[1].key.len(), MAX_KEY_BYTES);
        assert_eq!(out[1].len, 1000);
        assert_eq!(out[1].backend, 3);
        assert_eq!(s.backends(), &[0.0, 2.0, 0.0, 1.0]);
        // A third key replaces the smallest, and carries its count as error.
        s.add(key_hash(b"b"), b"b", 0);
        s.top(&mut out);
        assert_eq!(out.len(), 2);
        let b = out.iter().find(|e| e.key == b"b").unwrap();
        assert_eq!((b.count, b.err), (2.0, 1.0));
        check(&s);
    }
}
