//! The state of one mirror pool, shared by every session: the bytes of mirrored requests not
//! yet answered, bounded by `[routing] mirror_buffer_bytes` (past it a request is dropped at
//! once, never waited for), the counters of `shardis_mirror_requests_total{pool,result}`, and
//! where the mirrored requests' replies go: a small task that discards them, counts the errors
//! among them, and gives their bytes back to the budget.
//!
//! A backend answers every request exactly once (its reply, a timeout, or an error when the
//! connection breaks or the backend is down), so every byte taken is given back.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use metrics::Counter;
use tokio::sync::mpsc;

use crate::backend::{Inbound, ReplyTo};
use crate::metrics::MIRROR_REQUESTS_TOTAL;
use crate::protocol::reply::is_error;

/// What the reply task shares with the senders.
#[derive(Debug)]
struct Budget {
    used: AtomicUsize,
    limit: AtomicUsize,
    failed: Counter,
}

/// One mirror pool's budget, counters and reply sink. Kept across reloads while the pool is.
#[derive(Debug)]
pub struct Mirror {
    /// The mirror pool's name (the metric's `pool` label).
    pub pool: String,
    budget: Arc<Budget>,
    replies: mpsc::UnboundedSender<Inbound>,
    sent: Counter,
    dropped: Counter,
}

impl Mirror {
    /// The state of mirror pool `pool` with a budget of `limit` bytes; its reply task runs on
    /// the current runtime (without one, replies are discarded and no byte is given back).
    pub fn new(pool: &str, limit: usize) -> Arc<Mirror> {
        let counter = |result: &'static str| metrics::counter!(MIRROR_REQUESTS_TOTAL, "pool" => pool.to_owned(), "result" => result);
        let budget = Arc::new(Budget {
            used: AtomicUsize::new(0),
            limit: AtomicUsize::new(limit),
            failed: counter("failed"),
        });
        let (replies, rx) = mpsc::unbounded_channel();
        if tokio::runtime::Handle::try_current().is_ok() {
            tokio::spawn(discard(rx, budget.clone()));
        }
        Arc::new(Mirror {
            pool: pool.to_owned(),
            budget,
            replies,
            sent: counter("sent"),
            dropped: counter("dropped"),
        })
    }

    /// Puts a new budget in force (a reload).
    pub fn set_limit(&self, limit: usize) {
        self.budget.limit.store(limit, Ordering::Relaxed);
    }

    /// Takes `bytes` of the budget for one request, and returns where its reply goes; `None`
    /// (counted as dropped) when they do not fit.
    pub fn reserve(&self, bytes: usize) -> Option<ReplyTo> {
        let used = self.budget.used.fetch_add(bytes, Ordering::Relaxed);
        if used + bytes > self.budget.limit.load(Ordering::Relaxed) {
            self.budget.used.fetch_sub(bytes, Ordering::Relaxed);
            self.dropped.increment(1);
            return None;
        }
        Some(ReplyTo {
            tx: self.replies.clone(),
            // The reply task gives back what the sequence number says.
            seq: bytes as u64,
            part: 0,
        })
    }

    /// Gives back a reservation whose request was not sent.
    pub fn unreserve(&self, bytes: usize) {
        self.budget.used.fetch_sub(bytes, Ordering::Relaxed);
    }

    /// Bytes of mirrored requests not yet answered.
    pub fn in_flight(&self) -> usize {
        self.budget.used.load(Ordering::Relaxed)
    }

    /// Counts a request handed to a mirror backend's link.
    pub fn sent(&self) {
        self.sent.increment(1);
    }

    /// Counts a request dropped because its mirror was full.
    pub fn dropped(&self) {
        self.dropped.increment(1);
    }

    /// Counts a request that could not be mirrored (no backend, backend down, link gone, keys
    /// on several of the mirror's backends).
    pub fn failed(&self) {
        self.budget.failed.increment(1);
    }
}

/// Reads the replies to mirrored requests until the mirror is gone: each gives its bytes back,
/// and an error (the backend's, a timeout, a broken connection) counts as failed.
async fn discard(mut rx: mpsc::UnboundedReceiver<Inbound>, budget: Arc<Budget>) {
    let mut batch = Vec::with_capacity(64);
    while rx.recv_many(&mut batch, 64).await > 0 {
        for msg in batch.drain(..) {
            if let Inbound::Reply(r) = msg {
                budget
                    .used
                    .fetch_sub(usize::try_from(r.seq).unwrap_or(0), Ordering::Relaxed);
                if is_error(&r.frame) {
                    budget.failed.increment(1);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    #[tokio::test]
    async fn the_budget_bounds_requests_until_their_replies_are_in() {
        let m = Mirror::new("shadow", 100);
        let a = m.reserve(60).unwrap();
        assert!(m.reserve(60).is_none(), "over the budget: dropped");
        let b = m.reserve(40).unwrap();
        assert_eq!(m.in_flight(), 100);
        a.send(Bytes::from_static(b"+OK\r\n"));
        b.send(Bytes::from_static(b"-ERR timed out\r\n"));
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(5);
        while m.in_flight() > 0 && tokio::time::Instant::now() < deadline {
            tokio::task::yield_now().await;
        }
        assert_eq!(m.in_flight(), 0);
        m.unreserve(0);
        m.set_limit(10);
        assert!(m.reserve(11).is_none());
    }
}
