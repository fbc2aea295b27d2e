//! TEMPORARY stub, replaced by the router branch.
#![allow(missing_docs, dead_code)]
use crate::config::PoolConfig;
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum HashKind {
    Fnv1a64,
}
impl HashKind {
    pub fn name(self) -> &'static str {
        "fnv1a_64"
    }
}
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DistributionKind {
    Ketama,
}
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HashTag {
    open: u8,
    close: u8,
}
pub struct Ring {
    n: usize,
}
impl Ring {
    pub fn new(pool: &PoolConfig) -> Ring {
        Ring {
            n: pool.backends.len(),
        }
    }
    #[inline]
    pub fn backend_for(&self, key: &[u8]) -> usize {
        key.iter().map(|&b| b as usize).sum::<usize>() % self.n
    }
    pub fn len(&self) -> usize {
        self.n
    }
    pub fn is_empty(&self) -> bool {
        self.n == 0
    }
}
