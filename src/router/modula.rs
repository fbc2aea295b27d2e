//! Modula placement, compatible with twemproxy 0.5.0 `nc_modula.c`.
//!
//! twemproxy builds a continuum of `total_weight` slots where backend `i` fills `weight_i`
//! consecutive slots in configuration order, and picks `continuum[hash % total_weight]`. We keep
//! only the cumulative bounds and binary-search them: same answer, memory proportional to the
//! number of backends instead of the total weight.

/// Cumulative weights: backend `i` owns slots `bounds[i-1]..bounds[i]`.
#[derive(Debug)]
pub(super) struct Modula {
    bounds: Vec<u64>,
    total: u64,
}

impl Modula {
    /// Builds the slot bounds for backend weights in configuration order.
    pub(super) fn build(weights: impl IntoIterator<Item = u32>) -> Modula {
        let mut total = 0u64;
        let bounds = weights
            .into_iter()
            .map(|w| {
                total += u64::from(w);
                total
            })
            .collect();
        Modula { bounds, total }
    }

    /// The backend owning slot `hash % total_weight`.
    #[inline]
    pub(super) fn lookup(&self, hash: u32) -> usize {
        if self.total == 0 {
            return 0;
        }
        let slot = u64::from(hash) % self.total;
        self.bounds.partition_point(|&b| b <= slot)
    }

    /// Each backend's weight over the total: its share of the slots.
    pub(super) fn shares(&self) -> Vec<f64> {
        let mut below = 0u64;
        self.bounds
            .iter()
            .map(|&b| {
                let w = b - below;
                below = b;
                if self.total == 0 {
                    0.0
                } else {
                    w as f64 / self.total as f64
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_the_expanded_continuum() {
        let weights = [1u32, 2, 3, 1, 0, 4];
        let m = Modula::build(weights);
        let continuum: Vec<usize> = weights
            .iter()
            .enumerate()
            .flat_map(|(i, &w)| std::iter::repeat_n(i, w as usize))
            .collect();
        for hash in (0..1000u32).chain([u32::MAX, u32::MAX - 1, 1 << 31]) {
            assert_eq!(
                m.lookup(hash),
                continuum[hash as usize % continuum.len()],
                "{hash}"
            );
        }
    }

    #[test]
    fn equal_weights_are_plain_modulo() {
        let m = Modula::build([1, 1, 1]);
        assert_eq!(m.lookup(0), 0);
        assert_eq!(m.lookup(4), 1);
        assert_eq!(m.lookup(8), 2);
        assert_eq!(Modula::build([]).lookup(7), 0);
    }
}
