//! One task per client: read frames, route them, fan out multi-key commands, and answer in the
//! order the commands arrived.
//!
//! Bounds: at most `max_pipeline` commands in flight per client, replies are moved to the write
//! buffer only while it holds less than [`MAX_OUTPUT`], and commands are sent only while the
//! replies they are expected to bring (by this client's recent reply sizes) fit in
//! [`MAX_OUTPUT`] too. Input is read ahead of dispatch, up to `max_request_bytes` of unanswered
//! input, so a client that writes a whole pipeline before it reads a reply (redis-py,
//! `redis-cli --pipe`, bulk loaders) can always finish writing; a client that writes more than
//! that without reading is no longer read from until it catches up.
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
//!   drain it first.
//!
//! So backpressure slows a client down but cannot stop it. A blocking command (BLPOP, ...) is
//! the one deliberate exception: while it waits, nothing more is sent, as Redis runs nothing
//! else for a blocked client; its reply (or the client leaving) ends the wait.
//!
//! # Modes
//! See [`mode`]: normal, transaction (MULTI), subscribed, blocked.

mod bounds;
mod cluster;
mod dispatch;
pub mod info;
mod leased;
mod local;
mod login;
pub mod mode;
pub mod pending;
pub mod route;
mod scan;
mod subscribe;
mod transaction;

use std::collections::VecDeque;
use std::io;
use std::sync::Arc;

use bytes::{Buf, Bytes, BytesMut};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tracing::{debug, info};

use crate::backend::{Inbound, Reply, Routing, Table};
pub use crate::clients::{ClientEntry, Clients};
use crate::metrics::Metrics;
use crate::net::{Stream, read_once, write_front};
use crate::protocol::out::Proto;
use crate::protocol::reply::{is_error, put_error};
use crate::protocol::request::{Request, RequestParser};
use crate::state::ProxyState;
use bounds::{IdleTimer, READ_MIN, ReadSize, idle_fired, reserve_read};
use login::Who;
use pending::{MergeEnv, Pending, Then, next_random};
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

/// Working space for splitting a multi-key command, kept between commands so a split
/// allocates nothing once the session has seen one of its size.
#[derive(Default)]
struct SplitScratch {
    /// Backend of each key, in request order (on a cluster pool: its slot).
    backend_of: Vec<usize>,
    /// Part number of each backend or slot (`u32::MAX`: none).
    part_of: Vec<u32>,
    /// Keys per part, and each part's backend (on a cluster pool: its slot).
    counts: Vec<u32>,
    part_backend: Vec<usize>,
    /// Key argument positions grouped by part, and where each part's group starts.
    by_part: Vec<usize>,
    starts: Vec<usize>,
    /// The parts' frames are written here and split off.
    arena: BytesMut,
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

/// One client connection's state.
pub struct Session {
    id: u64,
    ctx: Arc<Context>,
    tx: mpsc::UnboundedSender<Inbound>,
    /// Commands in arrival order; `pending[0]` has sequence number `base_seq`.
    pending: VecDeque<Pending>,
    base_seq: u64,
    wbuf: BytesMut,
    /// No more commands are read; the session ends once every reply is written.
    closing: bool,
    /// The protocol the client speaks (RESP3 after HELLO 3).
    proto: Proto,
    /// What CLIENT LIST and friends show of this client.
    client: Arc<ClientEntry>,
    /// The routing table in force when the session last looked, and its generation.
    table: Arc<Table>,
    generation: u64,
    /// Reused by every split command.
    split: SplitScratch,
    /// Commands sent to backends whose replies are not all in.
    awaiting: usize,
    /// Expected size of this client's next reply: jumps up to any larger reply at once and
    /// decays by 1/16 per reply, so a pipeline of large values keeps few of them in flight.
    reply_estimate: usize,
    /// A blocking command is waiting (its sequence number): nothing else is sent until it is
    /// answered.
    blocked: Option<u64>,
    /// After MULTI.
    multi: Option<Box<Transaction>>,
    /// After WATCH: the exclusive connection the watch lives on.
    watch: Option<Box<Watch>>,
    /// Channels and patterns subscribed.
    subs: Option<Box<Subscriptions>>,
    /// CLIENT REPLY, and the sequence numbers whose replies are not written.
    reply_mode: ReplyMode,
    silent: VecDeque<u64>,
    /// For RANDOMKEY's pick.
    rng: u64,
    /// Why the proxy dropped the client, if it did.
    evicted: Option<&'static str>,
    /// A cluster pool: the requests in flight to its nodes, kept for redirections.
    cluster: Option<Box<cluster::Inflight>>,
    /// Bytes of complete replies in `pending` (not yet in `wbuf`): with `wbuf`, the client's
    /// output that `client_output_limit_bytes` bounds.
    held: usize,
    /// Who the client is, and what dispatch checks before each command (see [`login`]).
    who: Who,
}

/// Serves one client until it disconnects, sends QUIT, breaks the protocol, or shutdown
/// drains it.
pub async fn run(stream: Stream, ctx: Arc<Context>, id: u64, mut shutdown: watch::Receiver<Stop>) {
    let _ = stream.set_nodelay(true);
    let client = ctx.state.clients.register(id, &stream);
    let (mut session, mut rx) = Session::new(ctx.clone(), client.clone());
    session.closing = *shutdown.borrow() != Stop::No;
    let mut rbuf = BytesMut::new();
    let mut read_size = ReadSize(READ_MIN);
    let mut parser = RequestParser::with_limits(session.table.settings.request);
    let mut eof = false;
    let mut idle = IdleTimer::new(session.table.settings.idle_timeout);
    let clients = ctx.metrics.clients();
    clients.connected();
    debug!(client = id, "connected");

    let result: io::Result<()> = loop {
        // Before pump: an evicted client gets nothing more (not the reply past its limit).
        if session.evicted.is_some() {
            break Ok(());
        }
        match session.pump(&stream, &mut rbuf, &mut parser).await {
            Ok(n) => {
                if n > 0
                    && let Some(t) = idle.as_mut()
                {
                    t.touch();
                }
                clients.sent(n as u64);
            }
            Err(e) => break Err(e),
        }
        if eof && session.blocked.is_some() {
            // Gone while blocked: as Redis does, the blocked command is dropped (its
            // exclusive connection is unblocked and goes back to the pool).
            break Ok(());
        }
        if (session.closing || eof) && session.pending.is_empty() && session.wbuf.is_empty() {
            break Ok(());
        }
        // Input is read ahead of dispatch up to the request bound, whatever `may_send` says:
        // a client blocked writing its pipeline must be able to finish before it reads.
        let can_read = !session.closing && !eof && rbuf.len() < session.input_bound(&parser);
        tokio::select! {
            biased;
            Some(msg) = rx.recv() => {
                session.on_inbound(msg);
                while let Ok(msg) = rx.try_recv() {
                    session.on_inbound(msg);
                }
            }
            ready = stream.readable(), if can_read => {
                if let Err(e) = ready {
                    break Err(e);
                }
                let offered = reserve_read(&mut rbuf, &parser, read_size);
                match read_once(&stream, &mut rbuf) {
                    Ok(0) => eof = true,
                    Ok(n) => {
                        read_size.after_read(n, offered);
                        if let Some(t) = idle.as_mut() {
                            t.touch();
                        }
                        clients.received(n as u64);
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(e) => break Err(e),
                }
            }
            ready = stream.writable(), if !session.wbuf.is_empty() => {
                match ready.and_then(|()| write_front(&stream, &mut session.wbuf)) {
                    Ok(n) => {
                        if n > 0
                            && let Some(t) = idle.as_mut()
                        {
                            t.touch();
                        }
                        clients.sent(n as u64);
                    }
                    Err(e) => break Err(e),
                }
            }
            () = idle_fired(&mut idle), if idle.is_some() => {
                let exempt = session.idle_exempt();
                if idle.as_mut().is_some_and(|t| t.expired(exempt)) {
                    session.evict("idle timeout", "idle_timeout");
                    break Ok(());
                }
            }
            () = client.killed() => break Ok(()),
            Ok(()) = shutdown.changed() => match *shutdown.borrow_and_update() {
                Stop::No => {}
                Stop::Drain => session.closing = true,
                Stop::Abandon => {
                    session.abandon();
                    // One attempt: a client that is not reading gets nothing more.
                    let _ = write_front(&stream, &mut session.wbuf);
                    break Ok(());
                }
            },
        }
        if rbuf.is_empty() && rbuf.capacity() > 4 * read_size.0 {
            // A burst grew the buffer and reads are small again: do not keep it.
            rbuf = BytesMut::new();
        }
    };
    match (result, session.evicted) {
        (Err(e), _) => debug!(client = id, "connection error: {e}"),
        (Ok(()), Some(why)) => info!(client = id, "disconnected by shardis: {why}"),
        _ => {}
    }
    drop(session);
    ctx.state.clients.unregister(id);
    clients.disconnected();
    debug!(client = id, "disconnected");
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
            pending: VecDeque::new(),
            base_seq: 0,
            wbuf: BytesMut::new(),
            closing: false,
            proto: Proto::Resp2,
            rng: client.id.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1,
            client,
            split: SplitScratch::default(),
            awaiting: 0,
            // Until replies are seen, allow 16 in flight (the client may be fetching large values).
            reply_estimate: MAX_OUTPUT / 16,
            blocked: None,
            multi: None,
            watch: None,
            subs: None,
            reply_mode: ReplyMode::On,
            silent: VecDeque::new(),
            evicted: None,
            cluster: None,
            held: 0,
            who: Who::default(),
        };
        session.check_login();
        (session, rx)
    }

    /// Does everything the session can do without waiting (see the module's "Progress"):
    /// moves ready replies to the output, dispatches the commands in `rbuf` that may be sent,
    /// and writes what the socket takes, until none of these changes anything. Returns the
    /// bytes written.
    async fn pump(
        &mut self,
        stream: &Stream,
        rbuf: &mut BytesMut,
        parser: &mut RequestParser,
    ) -> io::Result<usize> {
        let mut sent = 0;
        loop {
            self.move_ready();
            let fed = self.feed(rbuf, parser).await;
            self.move_ready();
            let wrote = if self.wbuf.is_empty() {
                0
            } else {
                write_front(stream, &mut self.wbuf)?
            };
            sent += wrote;
            if fed == 0 && wrote == 0 {
                return Ok(sent);
            }
        }
    }

    /// How much input may be buffered before the session stops reading: `max_request_bytes`,
    /// or more while the frame being read needs it.
    fn input_bound(&self, parser: &RequestParser) -> usize {
        self.table.settings.request.request_bytes.max(parser.want())
    }

    /// Serves every complete command in `rbuf` (up to `max_pipeline` in flight) and removes
    /// it from the buffer; returns how many it took. A protocol error queues an error reply
    /// and closes the session to further input.
    pub async fn feed(&mut self, rbuf: &mut BytesMut, parser: &mut RequestParser) -> u64 {
        let now = Instant::now();
        // A reload or an ejection swapped the table: commands from here on use the new one.
        let generation = self.ctx.routing.generation();
        if generation != self.generation {
            self.table = self.ctx.routing.load();
            self.generation = generation;
            self.check_login();
        }
        let mut commands = 0u64;
        while !self.closing && self.may_send() {
            match parser.parse(rbuf) {
                Ok(Some(Request::Multibulk { len })) => {
                    let frame = rbuf.split_to(len).freeze();
                    self.dispatch(frame, parser.args(), now).await;
                }
                Ok(Some(Request::Inline { len, encoded })) => {
                    rbuf.advance(len);
                    self.dispatch(encoded, parser.args(), now).await;
                }
                Ok(Some(Request::Empty { len })) => {
                    rbuf.advance(len);
                    continue;
                }
                Ok(None) => break,
                Err(e) => {
                    self.ctx.metrics.clients().protocol_error();
                    info!(client = self.id, "protocol error: {e}");
                    let mut out = BytesMut::new();
                    put_error(&mut out, &format!("ERR Protocol error: {e}"));
                    self.push_ready(out.freeze());
                    self.closing = true;
                    break;
                }
            }
            commands += 1;
        }
        if commands > 0 {
            self.ctx.state.add_commands(commands);
        }
        commands
    }

    /// Moves the replies that are complete, in order, to the output buffer and returns it;
    /// the caller writes from its front.
    pub fn output(&mut self) -> &mut BytesMut {
        self.move_ready();
        &mut self.wbuf
    }

    /// Sequence number the next command gets.
    fn next_seq(&self) -> u64 {
        self.base_seq + self.pending.len() as u64
    }

    /// True while another command may be sent: no blocking command waits, fewer than
    /// `max_pipeline` in the queue, less than [`MAX_OUTPUT`] waiting to be written, and the
    /// replies expected for the commands in flight within [`MAX_OUTPUT`]. With nothing in
    /// flight one command may always go.
    fn may_send(&self) -> bool {
        self.blocked.is_none()
            && self.pending.len() < self.table.settings.max_pipeline
            && self.wbuf.len() < MAX_OUTPUT
            && self.awaiting.saturating_mul(self.reply_estimate) < MAX_OUTPUT
    }

    /// Queues a command that was sent to a backend; [`Session::on_reply`] completes it.
    fn push_waiting(&mut self, entry: Pending) {
        self.awaiting += 1;
        self.note_reply_mode();
        self.pending.push_back(entry);
    }

    /// Queues a reply that is already complete (local answers, errors).
    fn push_ready(&mut self, reply: Bytes) {
        self.note_reply_mode();
        self.held += reply.len();
        self.pending.push_back(Pending::Ready(reply));
    }

    /// Applies CLIENT REPLY OFF / SKIP to the command being queued.
    #[inline]
    fn note_reply_mode(&mut self) {
        match self.reply_mode {
            ReplyMode::On => {}
            ReplyMode::Off => self.silent.push_back(self.next_seq()),
            ReplyMode::Skip => {
                self.silent.push_back(self.next_seq());
                self.reply_mode = ReplyMode::On;
            }
        }
    }

    /// Moves complete replies at the front of the queue to the write buffer.
    fn move_ready(&mut self) {
        while self.wbuf.len() < MAX_OUTPUT {
            let frame = match self.pending.front() {
                Some(Pending::Ready(_) | Pending::Push(_)) => self.pending.pop_front(),
                _ => break,
            };
            let silent = self.silent.front() == Some(&self.base_seq);
            if silent {
                self.silent.pop_front();
            }
            self.base_seq += 1;
            match frame {
                Some(Pending::Ready(reply)) => {
                    self.held = self.held.saturating_sub(reply.len());
                    if !silent {
                        self.wbuf.extend_from_slice(&reply);
                    }
                }
                Some(Pending::Push(message)) => {
                    self.wbuf.extend_from_slice(&message);
                    if let Some(subs) = &self.subs {
                        subs.me.written(message.len());
                    }
                }
                _ => {}
            }
        }
    }

    /// Answers every command still waiting for a backend with [`ABANDONED`] (finished as
    /// failed, like any other error) and moves what is ready to the output, for a shutdown that
    /// cannot wait longer.
    pub fn abandon(&mut self) {
        self.closing = true;
        for i in 0..self.pending.len() {
            let (cmd, start, backend) = match &self.pending[i] {
                Pending::Ready(_) | Pending::Push(_) | Pending::Subscribe { .. } => continue,
                Pending::Single {
                    cmd,
                    start,
                    backend,
                    ..
                } => (*cmd, *start, Some(*backend)),
                Pending::Fanout(fanout) => (fanout.cmd, fanout.start, None),
            };
            self.finish(cmd, start, false, backend);
            self.pending[i] = Pending::Ready(Bytes::from_static(ABANDONED));
        }
        self.awaiting = 0;
        self.blocked = None;
        if let Some(inflight) = &mut self.cluster {
            // Answered already: a redirection of theirs is not retried.
            inflight.clear();
        }
        self.move_ready();
    }

    /// Takes one message from the inbox.
    pub fn on_inbound(&mut self, msg: Inbound) {
        match msg {
            Inbound::Reply(reply) => self.on_reply(reply),
            Inbound::Push(frame) => self.pending.push_back(Pending::Push(frame)),
            Inbound::Subscribed { seq } => self.on_subscribed(seq),
            Inbound::Evicted(why) => self.evicted = Some(why),
            Inbound::Closed => {}
        }
    }

    /// Takes one reply from a backend connection.
    pub fn on_reply(&mut self, reply: Reply) {
        let reply = if self.cluster.is_some() {
            match self.intercept(reply) {
                Some(reply) => reply,
                // A redirection: the request went out again.
                None => return,
            }
        } else {
            reply
        };
        let len = reply.frame.len();
        self.reply_estimate = len.max(self.reply_estimate - self.reply_estimate / 16);
        let Some(index) = reply.seq.checked_sub(self.base_seq) else {
            return;
        };
        let Some(entry) = self.pending.get_mut(index as usize) else {
            return;
        };
        let done = match entry {
            Pending::Single {
                cmd,
                start,
                backend,
                then,
                ..
            } => {
                let (cmd, start, backend, then) = (*cmd, *start, *backend, *then);
                let frame = then.apply(reply.frame);
                self.finish(cmd, start, !is_error(&frame), Some(backend));
                if then == Then::Unblock && self.blocked == Some(reply.seq) {
                    self.blocked = None;
                    self.client.set_blocked(None);
                }
                frame
            }
            Pending::Fanout(fanout) => {
                if !fanout.fill(reply.part, reply.frame) {
                    return;
                }
                let env = MergeEnv {
                    state: &self.ctx.state,
                    table: &self.table,
                    max_keys: self.table.settings.max_keys_reply,
                    pick: next_random(&mut self.rng),
                };
                let merged = fanout.merge(&env);
                let (cmd, start) = (fanout.cmd, fanout.start);
                self.finish(cmd, start, !is_error(&merged), None);
                if self.blocked == Some(reply.seq) {
                    // WAIT is answered: the session may send again.
                    self.blocked = None;
                }
                merged
            }
            Pending::Ready(_) | Pending::Push(_) | Pending::Subscribe { .. } => return,
        };
        if let Some(entry) = self.pending.get_mut(index as usize) {
            // Replacing the entry drops its lease, if it held one: the exclusive connection
            // goes back to its pool.
            self.held += done.len();
            *entry = Pending::Ready(done);
            self.awaiting -= 1;
            if let Some(limit) = self.table.settings.output_limit
                && self.held + self.wbuf.len() > limit
            {
                self.evict("output buffer limit reached", "output_limit");
            }
        }
    }

    /// Records a command's latency and result, and logs it if slow.
    fn finish(&self, cmd: usize, start: Instant, ok: bool, backend: Option<usize>) {
        let elapsed = start.elapsed();
        self.ctx.metrics.command(cmd).record(elapsed, ok);
        if let Some(limit) = self.table.settings.slowlog
            && elapsed >= limit
        {
            let name = crate::protocol::command::COMMANDS
                .get(cmd)
                .map_or("unknown", |c| c.name);
            let backend = backend
                .and_then(|b| self.table.backends.get(b))
                .map_or("(several)", |b| b.state.name.as_str());
            info!(target: "shardis::slowlog", command = name, backend, duration_us = elapsed.as_micros() as u64, "slow command");
        }
    }
}
