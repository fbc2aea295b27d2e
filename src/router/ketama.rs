//! The ketama continuum, bit-compatible with twemproxy 0.5.0 `nc_ketama.c`.
//!
//! Each backend gets about 160 points per unit of relative weight, placed at the MD5 of
//! `"{name}-{j}"`; a key goes to the first point at or after its hash, wrapping around.

use super::hash::md5_digest;

/// Points per backend when weights are equal (twemproxy's `KETAMA_POINTS_PER_SERVER`).
pub const POINTS_PER_SERVER: u32 = 160;

/// The longest `"{name}-{j}"` twemproxy hashes without truncating (`KETAMA_MAX_HOSTLEN` - 1).
pub const MAX_POINT_KEY_LEN: usize = 85;

/// How many points twemproxy gives a backend of `weight` out of `total_weight` among `nservers`.
///
/// Mimics the C expression exactly: `floorf((float)(pct * 160 / 4 * (float)n + 0.0000000001)) * 4`
/// with `pct` a `float`; the products are single precision and only the addition is double.
pub fn points_for(weight: u32, total_weight: u32, nservers: usize) -> u32 {
    let pct = weight as f32 / total_weight as f32;
    let product = pct * POINTS_PER_SERVER as f32 / 4.0 * nservers as f32;
    let sum = (f64::from(product) + 0.000_000_000_1) as f32;
    // Saturating float-to-int, like the values C produces for any sane weights.
    (sum.floor() * 4.0) as u32
}

/// The sorted continuum: parallel arrays so the binary search touches only `points`.
#[derive(Debug)]
pub(super) struct Ketama {
    points: Vec<u32>,
    owners: Vec<u32>,
}

impl Ketama {
    /// Builds the continuum for `(name, weight)` backends in configuration order.
    pub(super) fn build(backends: &[(&str, u32)]) -> Ketama {
        let total: u32 = backends
            .iter()
            .fold(0u32, |acc, &(_, w)| acc.saturating_add(w));
        let mut all: Vec<(u32, u32)> = Vec::new();
        for (index, &(name, weight)) in backends.iter().enumerate() {
            let points = points_for(weight, total, backends.len());
            for j in 0..points / 4 {
                let digest = md5_digest(format!("{name}-{j}").as_bytes());
                for chunk in digest.chunks_exact(4) {
                    let value = u32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
                    all.push((value, index as u32));
                }
            }
        }
        // Stable, so equal values keep configuration order. twemproxy's qsort leaves the
        // order of equal values unspecified; two backends sharing a point is rare enough
        // (about one ring in 10^4 for four backends) to accept.
        all.sort_by_key(|&(value, _)| value);
        Ketama {
            points: all.iter().map(|&(v, _)| v).collect(),
            owners: all.iter().map(|&(_, i)| i).collect(),
        }
    }

    /// The backend owning the first point at or after `hash`, wrapping to the first point.
    #[inline]
    pub(super) fn lookup(&self, hash: u32) -> usize {
        let i = self.points.partition_point(|&p| p < hash);
        let i = if i == self.points.len() { 0 } else { i };
        self.owners.get(i).map_or(0, |&o| o as usize)
    }

    /// The share of the hash space each of `n` backends owns: the arcs that end at its
    /// points (the first point's arc wraps around from the last).
    pub(super) fn shares(&self, n: usize) -> Vec<f64> {
        let mut shares = vec![0.0; n];
        let Some(&last) = self.points.last() else {
            return shares;
        };
        let space = f64::from(u32::MAX) + 1.0;
        let mut prev = f64::from(last) - space;
        for (&p, &o) in self.points.iter().zip(&self.owners) {
            if let Some(s) = shares.get_mut(o as usize) {
                *s += (f64::from(p) - prev) / space;
            }
            prev = f64::from(p);
        }
        shares
    }

    /// Number of points in the continuum.
    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.points.len()
    }

    /// Number of points owned by `backend`.
    #[cfg(test)]
    pub(super) fn points_of(&self, backend: usize) -> usize {
        self.owners
            .iter()
            .filter(|&&o| o as usize == backend)
            .count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_weights_give_160_points_each() {
        for n in 1..=20 {
            for _ in 0..n {
                assert_eq!(points_for(1, n, n as usize), 160);
                assert_eq!(points_for(7, 7 * n, n as usize), 160);
            }
        }
        let ring = Ketama::build(&[("a", 1), ("b", 1), ("c", 1)]);
        assert_eq!(ring.len(), 480);
        for b in 0..3 {
            assert_eq!(ring.points_of(b), 160);
        }
    }

    #[test]
    fn unequal_weights_follow_the_c_rounding() {
        // weights 1,2,3,1 (total 7, 4 servers): 1/7*40*4 = 22.857 -> 22*4 = 88 points, etc.
        assert_eq!(points_for(1, 7, 4), 88);
        assert_eq!(points_for(2, 7, 4), 180);
        assert_eq!(points_for(3, 7, 4), 272);
        // With 25 equal backends, 1/25 * 160 / 4 * 25 is 39.999996 in f32, and the tiny
        // double addend does not survive the cast back to float: C floors it to 39, so each
        // backend gets 156 points, not 160 (tests/placement.rs checks this against nutcracker).
        assert_eq!(points_for(1, 25, 25), 156);
        assert_eq!(points_for(1, 47, 47), 156);
        assert_eq!(points_for(1, 24, 24), 160);
        assert_eq!(points_for(0, 3, 3), 0);
    }

    #[test]
    fn lookup_wraps_and_takes_the_first_point_at_or_after() {
        let ring = Ketama {
            points: vec![10, 20, 30],
            owners: vec![0, 1, 2],
        };
        assert_eq!(ring.lookup(0), 0);
        assert_eq!(ring.lookup(10), 0);
        assert_eq!(ring.lookup(11), 1);
        assert_eq!(ring.lookup(30), 2);
        assert_eq!(ring.lookup(31), 0);
        assert_eq!(ring.lookup(u32::MAX), 0);
        let empty = Ketama::build(&[]);
        assert_eq!(empty.lookup(5), 0);
    }

    #[test]
    fn points_are_the_md5_of_name_dash_index() {
        let ring = Ketama::build(&[("s1", 1)]);
        let d = md5_digest(b"s1-0");
        let first = u32::from_le_bytes([d[0], d[1], d[2], d[3]]);
        assert!(ring.points.binary_search(&first).is_ok());
        assert!(ring.points.windows(2).all(|w| w[0] <= w[1]));
    }
}
