//! What a client costs in memory, and what it may hold beyond backpressure's bounds.
//!
//! A session holds its read buffer (input read ahead of dispatch), the replies that are
//! complete but not yet moved to the output, its output buffer, and (a subscriber) the
//! messages queued for it. Counted by what costs memory: buffer capacities, not lengths.
//!
//! # Normal bounds
//! Input is read ahead up to `client_read_ahead_bytes` beyond the request being assembled (one
//! request may be as large as `max_request_bytes`); output up to [`MAX_OUTPUT`], plus the
//! replies to the commands in flight (about [`MAX_OUTPUT`] more, by the client's reply sizes).
//! A client that reads its replies never needs more.
//!
//! # Overdraft: a client that writes its whole pipeline before reading
//! Such a client (redis-py's `execute()`, bulk loaders) reads nothing until it has written
//! everything, so once both bounds are full, holding both would stall it for good. When the
//! session has had both full for [`STUCK_AFTER`] and the client took no byte of output
//! meanwhile, one side grows, whichever costs less per command by the client's own sizes:
//! - **output**, when its replies are no larger than its requests (SET: 5 bytes of reply per
//!   ~40 bytes of request): commands keep being dispatched and their replies gathered in
//!   the output buffer (1,000,000 SETs: 5 MB);
//! - **input**, when its replies are larger (GET of 1 KB values: ~30 bytes of request per
//!   1 KB of reply): the input is read on, unanswered (100,000 GETs: 3 MB).
//!
//! The overdraft ends once the client has read its output back below [`MAX_OUTPUT`]. While it
//! lasts, the session may hold at most `client_memory_limit_bytes` in all; past that the
//! client is closed, as Redis closes a client past its query or output buffer limit, and
//! counted (`shardis_client_disconnects_total{reason="memory_limit"}`). A client that never
//! reads is thus closed once it has sent that much; one that reads slowly (taking a byte
//! within each [`STUCK_AFTER`]) is only slowed down, and holds nothing beyond the normal bounds.
//!
//! # All clients together
//! Each session publishes what it holds into its [`crate::state::ClientEntry`] and the
//! proxy-wide total whenever it has moved by [`STEP`] (so a busy client touches the shared
//! total rarely, an idle one never); when a publication takes the total past
//! `max_client_memory`, the client holding the most is closed, then the next, until the total
//! is back under it ([`crate::state::Clients::enforce`]). Meanwhile no overdraft grows: each
//! waits on its stuck timer and looks again, so the total stays near the budget while the
//! clients closed for it free their memory.

use std::mem::size_of;
use std::pin::Pin;
use std::time::Duration;

use bytes::BytesMut;
use tokio::time::{Instant, Sleep};
use tracing::debug;

use super::pending::Pending;
use super::{MAX_OUTPUT, Session};
use crate::protocol::request::{Request, RequestParser};

/// How long a session waits with its input and output full and the client taking nothing,
/// before it concludes that the client writes a whole pipeline before reading.
pub(super) const STUCK_AFTER: Duration = Duration::from_millis(50);
/// A session publishes what it holds once that has moved by this much since it last did.
pub(super) const STEP: usize = 64 * 1024;
/// An empty output buffer with more capacity than this is given back (after an overdraft or a
/// huge reply).
const KEEP_OUTPUT: usize = 4 * MAX_OUTPUT;

/// Which side may grow past its normal bound.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
enum Overdraft {
    #[default]
    None,
    /// Input is read on past `client_read_ahead_bytes`.
    Input,
    /// Replies are gathered in the output buffer past [`MAX_OUTPUT`].
    Output,
}

/// A session's memory bookkeeping (see the module doc).
#[derive(Default)]
pub(super) struct Budget {
    overdraft: Overdraft,
    /// What the session last published as buffered.
    published: usize,
    /// Fires [`STUCK_AFTER`] after the session found both sides full; made on first use.
    stuck: Option<Pin<Box<Sleep>>>,
    armed: bool,
    /// The client took output since the timer was armed.
    took: bool,
}

impl Budget {
    /// True while the stuck timer runs.
    #[inline]
    pub(super) fn armed(&self) -> bool {
        self.armed
    }
}

/// Resolves when the stuck timer fires; never, when there is none.
pub(super) async fn stuck_fired(budget: &mut Budget) {
    match &mut budget.stuck {
        Some(sleep) => sleep.as_mut().await,
        None => std::future::pending().await,
    }
}

impl Session {
    /// The side that may grow now: the overdraft's, unless all clients together hold more
    /// than `max_client_memory`. Then the overdraft waits (checking again every
    /// [`STUCK_AFTER`]) for the clients holding the most to be closed and their memory freed.
    #[inline]
    fn growing(&self) -> Overdraft {
        if self.budget.overdraft == Overdraft::None || self.proxy_full() {
            Overdraft::None
        } else {
            self.budget.overdraft
        }
    }

    fn proxy_full(&self) -> bool {
        self.table
            .settings
            .max_client_memory
            .is_some_and(|max| self.ctx.state.clients.buffered() > max)
    }

    /// True while input is read past its normal bound.
    #[inline]
    pub(super) fn reads_on(&self) -> bool {
        self.growing() == Overdraft::Input
    }

    /// How full the output buffer may be while commands are sent.
    #[inline]
    pub(super) fn output_bound(&self) -> usize {
        if self.growing() == Overdraft::Output {
            usize::MAX
        } else {
            MAX_OUTPUT
        }
    }

    /// How full the output buffer may be while replies that have arrived are moved to it:
    /// no bound during an overdraft, so that held replies do not keep the backend link's read
    /// buffers (which they are slices of) alive.
    #[inline]
    pub(super) fn move_bound(&self) -> usize {
        if self.budget.overdraft == Overdraft::None {
            MAX_OUTPUT
        } else {
            usize::MAX
        }
    }

    /// The client took `n` bytes of its output.
    #[inline]
    pub(super) fn took(&mut self, n: usize) {
        if n > 0 {
            self.budget.took = true;
        }
    }

    /// Bytes this session holds, by what they cost: read and output buffers, complete replies
    /// not yet moved to the output, the command queue, and queued pub/sub messages. A buffer
    /// consumed from the front (dispatched requests, written replies) keeps the consumed bytes
    /// until it reclaims them, which its capacity does not show; it reclaims them once they
    /// are as long as its data, so each buffer counts its capacity plus its length up to its
    /// normal bound. (A client reading back a large overdraft briefly holds more.)
    pub(super) fn holding(&self, rbuf: &BytesMut) -> usize {
        rbuf.capacity()
            + rbuf.len().min(self.table.settings.read_ahead)
            + self.out.wbuf.capacity()
            + self.out.wbuf.len().min(MAX_OUTPUT)
            + self.queue.held
            + self.queue.pending.capacity() * size_of::<Pending>()
            + self.modes.subs.as_ref().map_or(0, |s| s.me.queued())
    }

    /// After pumping, before waiting: ends an overdraft the client has read its way out of,
    /// closes the client if it is over its budget, and publishes what it holds when that has
    /// moved by [`STEP`], closing the greediest clients if all of them hold too much.
    pub(super) fn account(&mut self, rbuf: &BytesMut) {
        if self.budget.overdraft != Overdraft::None && self.out.wbuf.len() < MAX_OUTPUT {
            self.budget.overdraft = Overdraft::None;
        }
        if self.out.wbuf.is_empty() && self.out.wbuf.capacity() > KEEP_OUTPUT {
            self.out.wbuf = BytesMut::new();
        }
        let holding = self.holding(rbuf);
        let (limit, max) = (
            self.table.settings.memory_limit,
            self.table.settings.max_client_memory,
        );
        if self.budget.overdraft != Overdraft::None
            && limit.is_some_and(|limit| holding > limit)
            && !self.client.is_killed()
        {
            self.evict(
                "over client_memory_limit_bytes while not reading",
                "memory_limit",
            );
        }
        if holding.abs_diff(self.budget.published) >= STEP && self.evicted.is_none() {
            let grew = holding > self.budget.published;
            self.budget.published = holding;
            let clients = &self.ctx.state.clients;
            let total = clients.publish(&self.client, holding);
            if grew
                && let Some(max) = max
                && total > max
            {
                clients.enforce(max);
            }
        }
    }

    /// Before waiting: runs the stuck timer while the session can neither read (`input_full`)
    /// nor send (its output is full), which only the client reading can change, or the timer:
    /// then an overdraft begins, or one that waits for memory to be freed checks again.
    pub(super) fn watch_stuck(&mut self, input_full: bool) {
        let stuck = input_full
            && !self.closing
            && self.out.wbuf.len() >= MAX_OUTPUT
            && self.growing() == Overdraft::None;
        if !stuck {
            self.budget.armed = false;
        } else if !self.budget.armed {
            self.budget.armed = true;
            self.budget.took = false;
            let deadline = Instant::now() + STUCK_AFTER;
            match &mut self.budget.stuck {
                Some(sleep) => sleep.as_mut().reset(deadline),
                None => self.budget.stuck = Some(Box::pin(tokio::time::sleep_until(deadline))),
            }
        }
    }

    /// The stuck timer fired. If the client took output meanwhile, it reads, only slowly:
    /// the timer starts again. Otherwise it writes before it reads: the side that costs less
    /// per command (its first waiting request against its recent replies) may now grow.
    pub(super) fn on_stuck(&mut self, rbuf: &mut BytesMut, parser: &mut RequestParser) {
        self.budget.armed = false;
        if self.budget.overdraft != Overdraft::None {
            // An overdraft waiting for memory to be freed: make sure someone is being closed
            // for it (a no-op when enough is on its way out); the loop looks again.
            if let Some(max) = self.table.settings.max_client_memory {
                self.ctx.state.clients.enforce(max);
            }
            return;
        }
        if self.budget.took {
            // Reading, only slowly: the timer starts again.
            return;
        }
        // Whichever side grows, it starts from a buffer of its own, without the bytes already
        // consumed before its data.
        self.out.wbuf = BytesMut::from(&self.out.wbuf[..]);
        let request = match parser.parse(rbuf) {
            Ok(Some(Request::Multibulk { len } | Request::Inline { len, .. })) => len,
            _ => 0,
        };
        self.budget.overdraft = if request > 0 && self.queue.reply_estimate <= request {
            Overdraft::Output
        } else {
            *rbuf = BytesMut::from(&rbuf[..]);
            Overdraft::Input
        };
        debug!(
            client = self.id,
            overdraft = ?self.budget.overdraft,
            request,
            reply = self.queue.reply_estimate,
            "client writes before reading: overdraft"
        );
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::backend::Inbound;
    use crate::clients::Clients;
    use crate::config::Config;
    use crate::metrics::Metrics;
    use crate::routing::{Routing, Settings, Table};
    use crate::session::Context;
    use crate::state::ProxyState;

    /// A session over one detached backend (nothing answers), registered in its state.
    fn session(set: impl FnOnce(&mut Settings)) -> (Session, Arc<ProxyState>) {
        let config = Config::from_backends(&["127.0.0.1:7001".into()]).expect("config");
        let (mut table, _links) = Table::detached(&config.pools[0]);
        set(&mut table.settings);
        let state = Arc::new(ProxyState::new(String::new(), table.states()));
        let ctx = Context {
            routing: Arc::new(Routing::new(table)),
            metrics: Arc::new(Metrics::new(&crate::protocol::command::names())),
            state: state.clone(),
        };
        let client = Clients::detached(1);
        state.clients.insert(client.clone());
        let (session, _inbox): (Session, tokio::sync::mpsc::UnboundedReceiver<Inbound>) =
            Session::new(Arc::new(ctx), client);
        (session, state)
    }

    fn pipeline(args: &[&[u8]], n: usize) -> BytesMut {
        let mut frame = BytesMut::new();
        crate::protocol::reply::put_array_len(&mut frame, args.len());
        for a in args {
            crate::protocol::reply::put_bulk(&mut frame, a);
        }
        BytesMut::from(&frame.repeat(n)[..])
    }

    /// `session`, stuck: its read buffer past the read-ahead bound and its output full.
    fn stuck(session: &mut Session, rbuf: &BytesMut, reply_size: usize) {
        session.queue.reply_estimate = reply_size;
        session.out.wbuf = BytesMut::from(&vec![b'x'; MAX_OUTPUT][..]);
        session.watch_stuck(rbuf.len() >= session.input_bound(&RequestParser::new(1 << 20)));
        assert!(session.budget.armed(), "stuck, so the timer runs");
    }

    #[tokio::test(start_paused = true)]
    async fn a_client_that_writes_before_reading_overdraws_the_cheaper_side() {
        let (mut s, _) = session(|s| s.read_ahead = 1024);
        let mut parser = RequestParser::new(1 << 20);
        // GETs of large values: the input is cheaper.
        let mut rbuf = pipeline(&[b"GET", b"k"], 200);
        stuck(&mut s, &rbuf, 10 * 1024);
        s.on_stuck(&mut rbuf, &mut parser);
        assert!(s.reads_on());
        assert_eq!(s.input_bound(&parser), usize::MAX);
        assert_eq!(s.output_bound(), MAX_OUTPUT, "no more commands are sent");
        assert_eq!(
            s.move_bound(),
            usize::MAX,
            "replies that arrive are moved out"
        );
        // Once the client has read its output back, the normal bounds hold again.
        s.out.wbuf.clear();
        s.account(&rbuf);
        assert!(!s.reads_on());
        assert_eq!(s.input_bound(&parser), 1024);

        // SETs: 5-byte replies, the output is cheaper.
        let mut rbuf = pipeline(&[b"SET", b"key", b"value"], 200);
        stuck(&mut s, &rbuf, 5);
        s.on_stuck(&mut rbuf, &mut parser);
        assert!(!s.reads_on());
        assert_eq!(s.output_bound(), usize::MAX);
        assert_eq!(s.input_bound(&parser), 1024);
    }

    #[tokio::test(start_paused = true)]
    async fn a_client_that_reads_however_slowly_gets_no_overdraft() {
        let (mut s, _) = session(|s| s.read_ahead = 1024);
        let mut parser = RequestParser::new(1 << 20);
        let mut rbuf = pipeline(&[b"GET", b"k"], 200);
        stuck(&mut s, &rbuf, 10 * 1024);
        // The timer fires only after STUCK_AFTER.
        let fired = tokio::time::timeout(STUCK_AFTER / 2, stuck_fired(&mut s.budget)).await;
        assert!(fired.is_err());
        stuck_fired(&mut s.budget).await;
        // The client took a byte meanwhile: no overdraft, the timer starts again.
        s.took(1);
        s.on_stuck(&mut rbuf, &mut parser);
        assert_eq!(s.budget.overdraft, Overdraft::None);
        s.watch_stuck(true);
        assert!(s.budget.armed());
        // Not stuck any more (the output drained): the timer stops.
        s.out.wbuf.clear();
        s.watch_stuck(true);
        assert!(!s.budget.armed());
    }

    #[tokio::test(start_paused = true)]
    async fn an_overdraft_waits_while_all_clients_hold_more_than_max_client_memory() {
        let (mut s, state) = session(|s| {
            s.read_ahead = 1024;
            s.max_client_memory = Some(64 * MAX_OUTPUT);
        });
        let mut parser = RequestParser::new(1 << 20);
        let mut rbuf = pipeline(&[b"GET", b"k"], 200);
        stuck(&mut s, &rbuf, 10 * 1024);
        s.on_stuck(&mut rbuf, &mut parser);
        assert!(s.reads_on());
        // Another client holds more than the whole budget (and is being closed for it).
        let other = Clients::detached(2);
        state.clients.insert(other.clone());
        state.clients.publish(&other, 65 * MAX_OUTPUT);
        assert!(!s.reads_on());
        assert_eq!(s.input_bound(&parser), 1024);
        // It waits on the timer, not on the client, and reads on once memory is freed.
        s.watch_stuck(true);
        assert!(s.budget.armed());
        stuck_fired(&mut s.budget).await;
        s.on_stuck(&mut rbuf, &mut parser);
        state.clients.unregister(2);
        assert!(s.reads_on());
        s.watch_stuck(false);
        assert!(!s.budget.armed());
    }

    #[tokio::test(start_paused = true)]
    async fn only_an_overdraft_past_the_budget_closes_the_client() {
        let (mut s, _) = session(|s| {
            s.read_ahead = 1024;
            s.memory_limit = Some(4 * MAX_OUTPUT);
        });
        let mut parser = RequestParser::new(1 << 20);
        let mut rbuf = pipeline(&[b"GET", b"k"], 200);
        stuck(&mut s, &rbuf, 10 * 1024);
        rbuf.reserve(8 * MAX_OUTPUT);
        // Within the normal bounds (one large request being read, say): not counted against
        // the budget.
        s.account(&rbuf);
        assert_eq!(s.evicted, None);
        s.on_stuck(&mut rbuf, &mut parser);
        s.account(&rbuf);
        assert_eq!(s.evicted, None, "compacted: {}", s.holding(&rbuf));
        rbuf.reserve(8 * MAX_OUTPUT);
        s.account(&rbuf);
        assert!(s.evicted.is_some());
    }

    #[tokio::test(start_paused = true)]
    async fn holdings_are_published_in_steps() {
        let (mut s, state) = session(|_| {});
        let mut rbuf = BytesMut::with_capacity(1024);
        s.account(&rbuf);
        assert_eq!(
            state.clients.buffered(),
            0,
            "an idle client publishes nothing"
        );
        rbuf.reserve(4 * STEP);
        s.account(&rbuf);
        let published = state.clients.buffered();
        assert_eq!(published, s.holding(&rbuf));
        rbuf.extend_from_slice(&[b'x'; 100]);
        s.account(&rbuf);
        assert_eq!(
            state.clients.buffered(),
            published,
            "less than a step: not again"
        );
        drop(s);
        state.clients.unregister(1);
        assert_eq!(state.clients.buffered(), 0);
    }
}
