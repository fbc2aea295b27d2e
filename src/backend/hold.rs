//! Requests held while a backend's primary is away: during a failover (Sentinel, a cluster
//! primary's promotion), a planned failover's switch, or a restart on the same address.
//!
//! A link whose connection fails keeps the requests it may send again instead of failing them:
//! - those never written to the dead connection (queued, or written only in part: a server
//!   runs no incomplete command) are sent again, in order, to the next connection;
//! - those written and not answered are sent again only if they are read-only (by the command
//!   table's flags); a write there gets [`OUTCOME_UNKNOWN`], since it may have been applied,
//!   and is never applied twice by shardis.
//!
//! Requests wait at most the backend's hold window ([`HoldSettings::window`]) and at most
//! [`HoldSettings::max`] of them per backend; past either, an error at once. An outage that
//! lasts longer than the window ends the hold: requests fail fast again, as without a hold,
//! until a connection opens or the backend moves.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::{mpsc, watch};
use tokio::time::{Instant, sleep_until};

use super::{Request, Spec};
use crate::protocol::command::{flag, lookup};

/// The words of the error a write gets when its connection died after it was written and
/// before its reply: it may or may not have been applied.
pub const OUTCOME_UNKNOWN: &str = "outcome unknown";

/// How a backend holds requests across a failover or restart.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HoldSettings {
    /// How long a request may be held; zero: never held (fail at once).
    pub window: Duration,
    /// Most requests held at once, for the backend.
    pub max: usize,
}

/// A backend's hold in progress, shared by its links: when the outage began (ms since
/// [`epoch`], 0: none), and how many requests are held.
#[derive(Debug, Default)]
pub struct HoldState {
    since: AtomicU64,
    held: AtomicUsize,
}

impl HoldState {
    /// Requests held now, over every link of the backend.
    pub fn held(&self) -> usize {
        self.held.load(Ordering::Relaxed)
    }
}

/// Milliseconds since the first call (+1, so that 0 means never).
fn now_ms() -> u64 {
    static EPOCH: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    EPOCH
        .get_or_init(std::time::Instant::now)
        .elapsed()
        .as_millis() as u64
        + 1
}

impl Spec {
    /// Whether requests are held now: the backend holds, and its outage (if one began) is
    /// younger than the window.
    pub fn holding(&self) -> bool {
        if self.hold.window.is_zero() {
            return false;
        }
        let since = self.hold_state.since.load(Ordering::Relaxed);
        since == 0 || now_ms().saturating_sub(since) < self.hold.window.as_millis() as u64
    }

    /// A connection failed: the outage begins now unless one already did.
    pub(super) fn outage_began(&self) {
        let _ = self.hold_state.since.compare_exchange(
            0,
            now_ms(),
            Ordering::Relaxed,
            Ordering::Relaxed,
        );
    }

    /// A connection opened or the backend moved: whatever outage there was is over.
    pub(super) fn outage_over(&self) {
        self.hold_state.since.store(0, Ordering::Relaxed);
    }

    /// How long the backend has been away, when an outage began and is not over.
    pub fn away_for(&self) -> Option<Duration> {
        let since = self.hold_state.since.load(Ordering::Relaxed);
        (since != 0).then(|| Duration::from_millis(now_ms().saturating_sub(since)))
    }

    /// The reply to a write whose connection died after it was written.
    pub fn outcome_unknown_reply(&self) -> Bytes {
        self.error_reply(&format!(
            "connection lost after the write was sent: {OUTCOME_UNKNOWN} (it may or may not have been applied; it was not retried)"
        ))
    }
}

/// One held request and since when.
struct Waiting {
    req: Request,
    since: Instant,
}

/// The requests one link holds, oldest first.
#[derive(Default)]
pub struct Held {
    queue: VecDeque<Waiting>,
}

impl Held {
    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    pub fn len(&self) -> usize {
        self.queue.len()
    }

    /// Holds `req` at the back, or answers it with an error when the backend holds its most.
    pub fn push(&mut self, spec: &Spec, req: Request) {
        if spec.hold_state.held.fetch_add(1, Ordering::Relaxed) >= spec.hold.max {
            spec.hold_state.held.fetch_sub(1, Ordering::Relaxed);
            let what = format!(
                "is failing over and already holds {} requests (failover_hold_requests): try again",
                spec.hold.max
            );
            return req.reply.send(spec.error_reply(&what));
        }
        crate::metrics::held_requests(1.0);
        self.queue.push_back(Waiting {
            req,
            since: Instant::now(),
        });
    }

    /// Holds requests that were in flight on a dead connection, before those held already
    /// (they were sent first). Admitted whatever the bound: they were already taken.
    pub fn push_front_all(&mut self, spec: &Spec, reqs: Vec<Request>) {
        let now = Instant::now();
        let n = reqs.len();
        for req in reqs.into_iter().rev() {
            self.queue.push_front(Waiting { req, since: now });
        }
        spec.hold_state.held.fetch_add(n, Ordering::Relaxed);
        crate::metrics::held_requests(n as f64);
    }

    /// The oldest held request, to be sent now.
    pub fn pop(&mut self, spec: &Spec) -> Option<Request> {
        let w = self.queue.pop_front()?;
        released(spec, w.since);
        Some(w.req)
    }

    /// When the oldest held request's time is up.
    fn next_expiry(&self, window: Duration) -> Option<Instant> {
        self.queue.front().map(|w| w.since + window)
    }

    /// Answers the requests held past the window.
    fn expire(&mut self, spec: &Spec, now: Instant) {
        while let Some(w) = self.queue.front()
            && w.since + spec.hold.window <= now
        {
            if let Some(w) = self.queue.pop_front() {
                released(spec, w.since);
                w.req.reply.send(spec.error_reply(&format!(
                    "is unavailable: no primary came back within failover_hold_ms ({} ms)",
                    spec.hold.window.as_millis()
                )));
            }
        }
    }

    /// Answers every held request with `reply` (the hold ended without a connection).
    pub fn fail_all(&mut self, spec: &Spec, reply: &Bytes) {
        while let Some(w) = self.queue.pop_front() {
            released(spec, w.since);
            w.req.reply.send(reply.clone());
        }
    }
}

/// A held request leaves the hold (sent, or answered with an error).
fn released(spec: &Spec, since: Instant) {
    spec.hold_state.held.fetch_sub(1, Ordering::Relaxed);
    crate::metrics::held_requests(-1.0);
    crate::metrics::hold_seconds(since.elapsed());
}

/// Whether a request may be sent again after its connection died with it written and not
/// answered: a single command that the command table marks read-only and not a write.
pub fn read_only(frame: &[u8], replies: u32) -> bool {
    if replies != 1 {
        // A transaction batch (or ASKING + command): treated as a write.
        return false;
    }
    let Some(name) = first_word(frame) else {
        return false;
    };
    lookup(name).is_some_and(|(_, cmd)| {
        cmd.flags & flag::READONLY != 0 && cmd.flags & flag::WRITE == 0 && !cmd.is_subcommand()
    })
}

/// The first bulk string of a RESP array frame (`*N\r\n$L\r\nNAME\r\n...`).
fn first_word(frame: &[u8]) -> Option<&[u8]> {
    let rest = frame.strip_prefix(b"*")?;
    let nl = rest.iter().position(|&b| b == b'\n')?;
    let rest = rest.get(nl + 1..)?.strip_prefix(b"$")?;
    let nl = rest.iter().position(|&b| b == b'\n')?;
    let len: usize = std::str::from_utf8(rest.get(..nl)?)
        .ok()?
        .trim_end()
        .parse()
        .ok()?;
    rest.get(nl + 1..nl + 1 + len)
}

/// Holds what comes on `rx` until `until`, or until the backend moves (or its pause is lifted
/// or set: `moves` changes); answers those held past the window. Returns false when every
/// sender is gone and nothing is held: the link is done.
pub async fn hold_until(
    spec: &Spec,
    rx: &mut mpsc::Receiver<Request>,
    held: &mut Held,
    moves: &mut watch::Receiver<u64>,
    until: Instant,
) -> bool {
    let mut open = true;
    loop {
        let expiry = held.next_expiry(spec.hold.window);
        tokio::select! {
            biased;
            Ok(()) = moves.changed() => return true,
            () = sleep_until(until) => return true,
            () = sleep_until(expiry.unwrap_or(until)), if expiry.is_some() => {
                held.expire(spec, Instant::now());
            }
            req = rx.recv(), if open => match req {
                Some(req) => held.push(spec, req),
                None => open = false,
            },
        }
        if !open && held.is_empty() {
            return false;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(words: &[&str]) -> Vec<u8> {
        let mut f = format!("*{}\r\n", words.len());
        for w in words {
            f.push_str(&format!("${}\r\n{w}\r\n", w.len()));
        }
        f.into_bytes()
    }

    #[test]
    fn reads_may_be_sent_again_and_writes_may_not() {
        assert!(read_only(&frame(&["GET", "k"]), 1));
        assert!(read_only(&frame(&["mget", "a", "b"]), 1));
        assert!(read_only(&frame(&["HGETALL", "h"]), 1));
        assert!(!read_only(&frame(&["SET", "k", "v"]), 1));
        assert!(!read_only(&frame(&["INCR", "k"]), 1));
        assert!(!read_only(&frame(&["EVAL", "return 1", "0"]), 1));
        assert!(!read_only(&frame(&["GET", "k"]), 2), "a batch is a write");
        assert!(!read_only(b"*1\r\n$3\r\nGE", 1), "a cut frame");
        assert!(!read_only(b"garbage", 1));
        assert!(!read_only(&frame(&["NOSUCHCOMMAND"]), 1));
    }
}
