//! Per-client resource bounds that the session loop applies besides backpressure: the read
//! buffer's size (small while idle, large during a pipeline) and the idle timeout.

use std::pin::Pin;
use std::time::Duration;

use bytes::BytesMut;
use tokio::time::{Instant, Sleep};

use super::mode::Mode;
use super::{MAX_OUTPUT, Session};
use crate::protocol::request::RequestParser;

/// Smallest and largest room offered to one read when no large frame is due. A client's reads
/// start small (an idle connection then holds little memory) and grow while reads fill the
/// room offered (a pipeline, a bulk load), shrinking again once they stop.
pub(super) const READ_MIN: usize = 1024;
const READ_MAX: usize = 64 * 1024;

/// The room the next read is offered.
#[derive(Debug, Clone, Copy)]
pub(super) struct ReadSize(pub(super) usize);

impl ReadSize {
    /// Adjusts to a read that took `n` bytes of the `offered`.
    #[inline]
    pub(super) fn after_read(&mut self, n: usize, offered: usize) {
        if n >= offered {
            self.0 = (self.0 * 2).min(READ_MAX);
        } else if n < self.0 / 4 {
            self.0 = (self.0 / 2).max(READ_MIN);
        }
    }
}

/// Makes room for the next read: at least `size`, the rest of a large frame whose size is
/// known, and otherwise as much again as is buffered, so that a buffer that holds a long
/// pipeline grows geometrically instead of being copied for every read. Returns the room.
pub(super) fn reserve_read(rbuf: &mut BytesMut, parser: &RequestParser, size: ReadSize) -> usize {
    let spare = rbuf.capacity() - rbuf.len();
    let due = parser.want().saturating_sub(rbuf.len());
    if spare < size.0 || spare < due {
        let want = due.max(size.0).max(rbuf.len().min(MAX_OUTPUT * 16));
        rbuf.reserve(want);
    }
    rbuf.capacity() - rbuf.len()
}

/// `[server] client_idle_timeout_ms`: fires when a client has neither sent a byte nor taken
/// one of its replies for the limit. One timer per client, re-armed only when it fires (a
/// read or write just records the time), so an active client costs a clock read per I/O.
pub(super) struct IdleTimer {
    limit: Duration,
    last: Instant,
    sleep: Pin<Box<Sleep>>,
}

impl IdleTimer {
    /// A timer for `limit`, or none when the timeout is off.
    pub(super) fn new(limit: Option<Duration>) -> Option<IdleTimer> {
        let limit = limit?;
        let last = Instant::now();
        Some(IdleTimer {
            limit,
            last,
            sleep: Box::pin(tokio::time::sleep_until(last + limit)),
        })
    }

    /// The client sent or took bytes.
    #[inline]
    pub(super) fn touch(&mut self) {
        self.last = Instant::now();
    }

    /// After the timer fired: true if the client has been idle for the limit. Otherwise
    /// (activity since, or `exempt`: a blocked or subscribed client, or one waiting for a
    /// backend) the timer is re-armed.
    pub(super) fn expired(&mut self, exempt: bool) -> bool {
        let now = Instant::now();
        if exempt {
            self.last = now;
        }
        let deadline = self.last + self.limit;
        if now >= deadline {
            return true;
        }
        self.sleep.as_mut().reset(deadline);
        false
    }
}

/// Resolves when the idle timer fires; never, when there is none.
pub(super) async fn idle_fired(timer: &mut Option<IdleTimer>) {
    match timer {
        Some(t) => t.sleep.as_mut().await,
        None => std::future::pending().await,
    }
}

impl Session {
    /// Drops the client for a limit: logged when the session ends, and counted.
    pub(super) fn evict(&mut self, why: &'static str, reason: &'static str) {
        if self.evicted.is_none() {
            self.evicted = Some(why);
            crate::metrics::client_disconnect(reason);
        }
    }

    /// True while the idle timeout does not apply: blocked and subscribed clients wait by
    /// design (as in Redis), and a client waiting for a backend is not idle.
    pub(super) fn idle_exempt(&self) -> bool {
        self.queue.awaiting > 0 || matches!(self.mode(), Mode::Blocked | Mode::Subscribed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn read_size_grows_while_reads_fill_and_shrinks_when_they_do_not() {
        let mut size = ReadSize(READ_MIN);
        for _ in 0..20 {
            let offered = size.0;
            size.after_read(offered, offered);
        }
        assert_eq!(size.0, READ_MAX);
        for _ in 0..20 {
            size.after_read(10, size.0);
        }
        assert_eq!(size.0, READ_MIN);
    }

    #[tokio::test(start_paused = true)]
    async fn idle_timer_fires_after_the_limit_without_activity_only() {
        let mut timer = IdleTimer::new(Some(Duration::from_secs(10)));
        assert!(IdleTimer::new(None).is_none());
        tokio::time::advance(Duration::from_secs(6)).await;
        if let Some(t) = timer.as_mut() {
            t.touch();
        }
        idle_fired(&mut timer).await;
        // Fired at 10 s, but the client was active at 6 s: re-armed for 16 s.
        assert!(!timer.as_mut().is_some_and(|t| t.expired(false)));
        idle_fired(&mut timer).await;
        assert!(timer.as_mut().is_some_and(|t| t.expired(false)));
        // An exempt client (blocked, subscribed) never expires.
        assert!(!timer.as_mut().is_some_and(|t| t.expired(true)));
    }
}
