//! Maglev lookup table (Google's Maglev paper, weighted as in Envoy's `maglev_lb.cc`).
//!
//! Minimal disruption and near-perfect balance; shardis-only, twemproxy has no equivalent.

/// Table size: a prime, so every backend's permutation visits every slot.
pub const TABLE_SIZE: usize = 65_537;

const EMPTY: u32 = u32::MAX;

/// The filled lookup table: slot -> backend index in configuration order.
#[derive(Debug)]
pub(super) struct Maglev {
    table: Vec<u32>,
}

struct Entry {
    index: u32,
    weight: u64,
    target: u64,
    position: u64,
    skip: u64,
}

impl Maglev {
    /// Builds the table for `(name, weight)` backends. Backends are visited in name order, so
    /// the table depends on names and weights only, not on the order of the configuration.
    /// Backends with weight 0 get no slot.
    pub(super) fn build(backends: &[(&str, u32)]) -> Maglev {
        let m = TABLE_SIZE as u64;
        let mut named: Vec<(&str, u32, u32)> = backends
            .iter()
            .enumerate()
            .filter(|&(_, &(_, w))| w > 0)
            .map(|(i, &(name, w))| (name, w, i as u32))
            .collect();
        named.sort_by(|a, b| a.0.cmp(b.0).then(a.2.cmp(&b.2)));
        let mut entries: Vec<Entry> = named
            .into_iter()
            .map(|(name, weight, index)| {
                let offset = xxhash_rust::xxh64::xxh64(name.as_bytes(), 0) % m;
                let skip = xxhash_rust::xxh64::xxh64(name.as_bytes(), 1) % (m - 1) + 1;
                Entry {
                    index,
                    weight: u64::from(weight),
                    target: 0,
                    position: offset,
                    skip,
                }
            })
            .collect();
        let Some(max_weight) = entries.iter().map(|e| e.weight).max() else {
            return Maglev { table: Vec::new() };
        };

        let mut table = vec![EMPTY; TABLE_SIZE];
        let mut filled = 0usize;
        let mut iteration: u64 = 1;
        while filled < TABLE_SIZE {
            for e in &mut entries {
                if filled == TABLE_SIZE {
                    break;
                }
                // A backend of the largest weight takes a slot every iteration; one of a third
                // of that weight every third iteration.
                if iteration * e.weight < e.target {
                    continue;
                }
                e.target += max_weight;
                // `position` walks offset, offset + skip, offset + 2 * skip, ... (mod M).
                while table[e.position as usize] != EMPTY {
                    e.position = (e.position + e.skip) % m;
                }
                table[e.position as usize] = e.index;
                e.position = (e.position + e.skip) % m;
                filled += 1;
            }
            iteration += 1;
        }
        Maglev { table }
    }

    /// The backend for `hash`: `table[hash % M]`.
    #[inline]
    pub(super) fn lookup(&self, hash: u32) -> usize {
        if self.table.is_empty() {
            return 0;
        }
        self.table[hash as usize % TABLE_SIZE] as usize
    }

    /// The share of the table's slots each of `n` backends owns.
    pub(super) fn shares(&self, n: usize) -> Vec<f64> {
        let mut shares = vec![0.0; n];
        for &b in &self.table {
            if let Some(s) = shares.get_mut(b as usize) {
                *s += 1.0 / TABLE_SIZE as f64;
            }
        }
        shares
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slots(t: &Maglev, n: usize) -> Vec<usize> {
        let mut counts = vec![0; n];
        for &b in &t.table {
            counts[b as usize] += 1;
        }
        counts
    }

    #[test]
    fn equal_weights_are_balanced() {
        let names: Vec<String> = (1..=7).map(|i| format!("shard-{i}")).collect();
        let backends: Vec<(&str, u32)> = names.iter().map(|n| (n.as_str(), 1)).collect();
        let t = Maglev::build(&backends);
        let ideal = TABLE_SIZE as f64 / 7.0;
        for c in slots(&t, 7) {
            assert!((c as f64 - ideal).abs() / ideal < 0.02, "{c} vs {ideal}");
        }
    }

    #[test]
    fn weights_are_proportional() {
        let t = Maglev::build(&[("a", 1), ("b", 2)]);
        let c = slots(&t, 2);
        let ratio = c[1] as f64 / c[0] as f64;
        assert!((ratio - 2.0).abs() < 0.05, "{c:?}");
        let t = Maglev::build(&[("a", 1), ("b", 0), ("c", 1)]);
        assert_eq!(slots(&t, 3)[1], 0);
    }

    #[test]
    fn config_order_does_not_matter() {
        let a = Maglev::build(&[("x", 1), ("y", 2), ("z", 1)]);
        let b = Maglev::build(&[("z", 1), ("x", 1), ("y", 2)]);
        let name_a = ["x", "y", "z"];
        let name_b = ["z", "x", "y"];
        for (sa, sb) in a.table.iter().zip(&b.table) {
            assert_eq!(name_a[*sa as usize], name_b[*sb as usize]);
        }
    }

    #[test]
    fn adding_a_backend_moves_about_a_fifth() {
        let four = Maglev::build(&[("a", 1), ("b", 1), ("c", 1), ("d", 1)]);
        let five = Maglev::build(&[("a", 1), ("b", 1), ("c", 1), ("d", 1), ("e", 1)]);
        let moved = four
            .table
            .iter()
            .zip(&five.table)
            .filter(|(x, y)| x != y)
            .count();
        let fraction = moved as f64 / TABLE_SIZE as f64;
        // Ideal is 1/5; Maglev trades a little extra movement for balance.
        assert!(fraction > 0.19 && fraction < 0.26, "{fraction}");
    }

    #[test]
    fn empty_and_single() {
        assert_eq!(Maglev::build(&[]).lookup(12345), 0);
        let one = Maglev::build(&[("only", 3)]);
        assert!(one.table.iter().all(|&b| b == 0));
    }
}
