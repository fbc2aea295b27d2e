//! One task per client: read frames, route them, fan out multi-key commands, and answer in the
//! order the commands arrived.
//!
//! Bounds: at most `max_pipeline` commands in flight per client, replies are moved to the write
//! buffer only while it holds less than [`MAX_OUTPUT`], and commands are sent only while the
//! replies they are expected to bring (by this client's recent reply sizes) fit in
//! [`MAX_OUTPUT`] too. Input is read ahead of dispatch up to `client_read_ahead_bytes` beyond
//! the request being assembled. A client that writes a whole pipeline before it reads a reply
//! (redis-py, bulk loaders) fills both; then one side may grow, up to the client's
//! `client_memory_limit_bytes`, and every session's holdings count towards
//! `max_client_memory` (see [`budget`] for which side grows when, and what is counted).
//!
//! # Progress
//! A session never waits while it could act. Before every wait, [`Session::pump`] has:
//! 1. moved every complete reply at the front of the queue to the write buffer, unless the
//!    buffer is full;
//! 2. dispatched every complete command in the read buffer, unless [`Session::may_send`] says
//!    no;
//! 3. written what the socket takes;
//!
//! and repeated those steps until none of them changed anything. Each thing the session still
//! holds then waits on an event the wait listens for:
//! - unwritten replies wait for the socket to be writable;
//! - undispatched commands wait on `may_send`, which is false only while replies are awaited
//!   (they arrive on the inbox) or the write buffer is full (writable);
//! - unread input waits for the socket to be readable, which is listened for whenever the read
//!   buffer is below its bound; above it, dispatch (and so one of the two events above) must
//!   drain it first;
//! - when the read buffer is at its bound *and* the write buffer full, both wait on the client
//!   reading (writable) or, if it takes nothing for [`budget::STUCK_AFTER`], on the stuck
//!   timer, which the wait listens for then: it raises one side's bound (an overdraft), so the
//!   session can read or dispatch again. The overdraft lasts until the client reads, or until
//!   the client's budget closes it; while all clients together hold more than
//!   `max_client_memory`, it stops growing and waits on the same timer, which looks again.
//!
//! So backpressure slows a client down but cannot stop it. A blocking command (BLPOP, ...) is
//! the one deliberate exception: while it waits, nothing more is sent, as Redis runs nothing
//! else for a blocked client; its reply (or the client leaving) ends the wait.
//!
//! # Modes
//! See [`mode`]: normal, transaction (MULTI), subscribed, blocked.

mod bounds;
mod budget;
mod call;
mod client;
mod conn;
mod dispatch;
mod fault;
pub mod info;
mod keywatch;
mod leased;
mod local;
mod login;
mod mirror;
pub mod mode;
pub mod pending;
mod queue;
mod refusal;
mod reply;
mod routed;
mod scan;
mod script;
mod script_call;
mod send;
mod split;
mod subscribe;
mod transaction;
mod transaction_cross;

use std::collections::VecDeque;
use std::sync::Arc;

use bytes::BytesMut;
use tokio::sync::mpsc;

use crate::backend::Inbound;
pub use crate::clients::{ClientEntry, Clients};
use crate::metrics::Metrics;
use crate::protocol::out::Proto;
use crate::routing::{Routing, Table};
use crate::state::ProxyState;
pub use conn::run;
use login::Who;
use pending::Pending;
use split::SplitScratch;
use subscribe::Subscriptions;
use transaction::{Transaction, Watch};

/// Reply bytes buffered for a client before the session stops moving replies to it.
pub const MAX_OUTPUT: usize = 1024 * 1024;
/// The reply to each command still waiting for a backend when the shutdown grace runs out.
const ABANDONED: &[u8] =
    b"-ERR shardis is shutting down: no reply from the backend within the shutdown grace\r\n";
/// What every session shares.
pub struct Context {
    /// The live routing table (ring, backends, settings), swapped by reloads.
    pub routing: Arc<Routing>,
    pub metrics: Arc<Metrics>,
    pub state: Arc<ProxyState>,
}

/// What the server asks of its sessions, in the order it asks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stop {
    /// Serve as usual.
    No,
    /// Read no more commands; finish the ones in flight, then close.
    Drain,
    /// The shutdown grace is over: answer every command still waiting with an error, write
    /// what can be written at once, and close.
    Abandon,
}

/// CLIENT REPLY.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ReplyMode {
    On,
    Off,
    /// The next command's reply is not sent.
    Skip,
}

/// One client connection's state, grouped by concern.
pub struct Session {
    id: u64,
    ctx: Arc<Context>,
    /// What CLIENT LIST and friends show of this client.
    client: Arc<ClientEntry>,
    /// The sender of the session's inbox: replies and pub/sub messages arrive there.
    tx: mpsc::UnboundedSender<Inbound>,
    /// The routing table in force when the session last looked, and its generation.
    table: Arc<Table>,
    generation: u64,
    /// The commands in flight, in arrival order, and what they are expected to bring.
    queue: Queue,
    /// What goes back to the client: its protocol, the write buffer, CLIENT REPLY.
    out: Output,
    /// Transaction, watch, subscriptions, blocked command.
    modes: Modes,
    /// Who the client is, and what dispatch checks before each command (see [`login`]).
    who: Who,
    /// No more commands are read; the session ends once every reply is written.
    closing: bool,
    /// Why the proxy dropped the client, if it did.
    evicted: Option<&'static str>,
    /// Reused by every split command.
    split: SplitScratch,
    /// For RANDOMKEY's pick.
    rng: u64,
    /// What the session holds, and whether it may hold more (see [`budget`]).
    budget: budget::Budget,
    /// Writes in flight that hold the near cache's copies of their keys.
    holds: crate::nearcache::Holds,
}

/// A session's commands in flight.
struct Queue {
    /// Commands in arrival order; `pending[0]` has sequence number `base_seq`.
    pending: VecDeque<Pending>,
    base_seq: u64,
    /// Commands sent to backends whose replies are not all in.
    awaiting: usize,
    /// Bytes of complete replies in `pending` (not yet in the write buffer): with it, the
    /// client's output that `client_output_limit_bytes` bounds.
    held: usize,
    /// Expected size of this client's next reply: jumps up to any larger reply at once and
    /// decays by 1/16 per reply, so a pipeline of large values keeps few of them in flight.
    reply_estimate: usize,
}

/// What goes back to a client.
struct Output {
    /// The protocol the client speaks (RESP3 after HELLO 3).
    proto: Proto,
    wbuf: BytesMut,
    /// CLIENT REPLY, and the sequence numbers whose replies are not written.
    reply_mode: ReplyMode,
    silent: VecDeque<u64>,
}

/// The modes a session can be in besides normal (see [`mode`]).
#[derive(Default)]
struct Modes {
    /// A blocking command is waiting (its sequence number): nothing else is sent until it is
    /// answered.
    blocked: Option<u64>,
    /// After MULTI.
    multi: Option<Box<Transaction>>,
    /// After WATCH: the exclusive connection the watch lives on.
    watch: Option<Box<Watch>>,
    /// Channels and patterns subscribed.
    subs: Option<Box<Subscriptions>>,
    /// A script or transaction run in the proxy waits for the commands sent before it: fired
    /// when they are all answered.
    gate: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Session {
    /// A session for `client`, and the inbox its replies arrive on (hand each to
    /// [`Session::on_inbound`]).
    pub fn new(
        ctx: Arc<Context>,
        client: Arc<ClientEntry>,
    ) -> (Session, mpsc::UnboundedReceiver<Inbound>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let generation = ctx.routing.generation();
        let table = ctx.routing.load();
        let mut session = Session {
            id: client.id,
            table,
            generation,
            ctx,
            tx,
            queue: Queue {
                pending: VecDeque::new(),
                base_seq: 0,
                awaiting: 0,
                held: 0,
                // Until replies are seen, allow 16 in flight (the client may be fetching
                // large values).
                reply_estimate: MAX_OUTPUT / 16,
            },
            out: Output {
                proto: Proto::Resp2,
                wbuf: BytesMut::new(),
                reply_mode: ReplyMode::On,
                silent: VecDeque::new(),
            },
            modes: Modes::default(),
            closing: false,
            rng: client.id.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1,
            client,
            split: SplitScratch::default(),
            evicted: None,
            who: Who::default(),
            budget: budget::Budget::default(),
            holds: crate::nearcache::Holds::default(),
        };
        session.check_login();
        (session, rx)
    }
}
