//! The connection loop of one client: read requests, let the session serve them, write
//! replies, until the client leaves, breaks the protocol, idles out, is killed or evicted, or
//! shutdown ends it. The order of the steps is what keeps the session's "# Progress"
//! invariant (see the module doc of [`super`]).

use std::io;
use std::sync::Arc;

use bytes::{Buf, BytesMut};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tracing::{debug, info};

use super::bounds::{IdleTimer, READ_MIN, ReadSize, idle_fired, reserve_read};
use super::{Context, Session, Stop};
use crate::backend::Inbound;
use crate::metrics::ClientMetrics;
use crate::net::{Stream, read_once, write_front};
use crate::protocol::reply::put_error;
use crate::protocol::request::{Request, RequestParser};

/// The client's side of the loop: its socket, the input read and not yet served, and the
/// idle timer.
struct Client<'a> {
    stream: &'a Stream,
    rbuf: BytesMut,
    parser: RequestParser,
    /// The room offered to the next read.
    read_size: ReadSize,
    /// The client closed its side.
    eof: bool,
    idle: Option<IdleTimer>,
    metrics: &'a ClientMetrics,
}

impl Client<'_> {
    /// The client sent or took bytes.
    pub(super) fn active(&mut self) {
        if let Some(t) = self.idle.as_mut() {
            t.touch();
        }
    }

    /// Reads what the socket has.
    pub(super) fn read(&mut self) -> io::Result<()> {
        let offered = reserve_read(&mut self.rbuf, &self.parser, self.read_size);
        match read_once(self.stream, &mut self.rbuf) {
            Ok(0) => self.eof = true,
            Ok(n) => {
                self.read_size.after_read(n, offered);
                self.active();
                self.metrics.received(n as u64);
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e),
        }
        Ok(())
    }

    /// Counts `n` bytes written to the client.
    pub(super) fn wrote(&mut self, n: usize) {
        if n > 0 {
            self.active();
        }
        self.metrics.sent(n as u64);
    }
}

/// Serves one client until it disconnects, sends QUIT, breaks the protocol, or shutdown
/// drains it.
pub async fn run(stream: Stream, ctx: Arc<Context>, id: u64, mut shutdown: watch::Receiver<Stop>) {
    let _ = stream.set_nodelay(true);
    let client = ctx.state.clients.register(id, &stream);
    let (mut session, mut rx) = Session::new(ctx.clone(), client.clone());
    session.closing = *shutdown.borrow() != Stop::No;
    let metrics = ctx.metrics.clients();
    let mut io = Client {
        stream: &stream,
        rbuf: BytesMut::new(),
        parser: RequestParser::with_limits(session.table.settings.request),
        read_size: ReadSize(READ_MIN),
        eof: false,
        idle: IdleTimer::new(session.table.settings.idle_timeout),
        metrics,
    };
    metrics.connected();
    debug!(client = id, "connected");
    let result = session.converse(&mut io, &mut rx, &mut shutdown).await;
    match (result, session.evicted.or(client.evicted_for())) {
        (Err(e), _) => debug!(client = id, "connection error: {e}"),
        (Ok(()), Some(why)) => info!(client = id, "disconnected by shardis: {why}"),
        _ => {}
    }
    drop(session);
    ctx.state.clients.unregister(id);
    metrics.disconnected();
    debug!(client = id, "disconnected");
}

impl Session {
    /// The loop: act on everything there is to do (see [`Session::pump`]), then wait for the
    /// next event. Returns when the session ends.
    async fn converse(
        &mut self,
        io: &mut Client<'_>,
        rx: &mut mpsc::UnboundedReceiver<Inbound>,
        shutdown: &mut watch::Receiver<Stop>,
    ) -> io::Result<()> {
        let client = self.client.clone();
        loop {
            // Before pump: an evicted client gets nothing more (not the reply past its limit).
            if self.evicted.is_some() {
                return Ok(());
            }
            let sent = self.pump(io.stream, &mut io.rbuf, &mut io.parser).await?;
            io.wrote(sent);
            self.account(&io.rbuf);
            // Killed (CLIENT KILL, or by `max_client_memory`) or over its budget: checked here
            // too, since a client that floods keeps the branches before `killed()` ready.
            if self.evicted.is_some() || client.is_killed() || self.ended(io.eof) {
                return Ok(());
            }
            // Input is read ahead of dispatch up to its bound, whatever `may_send` says; past
            // it, a client that writes its pipeline before reading gets an overdraft (see
            // `budget`).
            let input_full = io.rbuf.len() >= self.input_bound(&io.parser);
            let can_read = !self.closing && !io.eof && !input_full;
            self.watch_stuck(!io.eof && input_full);
            tokio::select! {
                biased;
                Some(msg) = rx.recv() => {
                    self.on_inbound(msg);
                    while let Ok(msg) = rx.try_recv() {
                        self.on_inbound(msg);
                    }
                }
                ready = io.stream.readable(), if can_read => {
                    ready?;
                    io.read()?;
                    if self.reads_on() {
                        // Reading past the read-ahead bound: one read per turn, so a client
                        // that floods cannot hold the worker.
                        tokio::task::yield_now().await;
                    }
                }
                ready = io.stream.writable(), if !self.out.wbuf.is_empty() => {
                    ready?;
                    let n = write_front(io.stream, &mut self.out.wbuf)?;
                    self.took(n);
                    io.wrote(n);
                }
                () = idle_fired(&mut io.idle), if io.idle.is_some() => {
                    let exempt = self.idle_exempt();
                    if io.idle.as_mut().is_some_and(|t| t.expired(exempt)) {
                        self.evict("idle timeout", "idle_timeout");
                        return Ok(());
                    }
                }
                () = super::budget::stuck_fired(&mut self.budget), if self.budget.armed() => {
                    self.on_stuck(&mut io.rbuf, &mut io.parser);
                }
                () = client.killed() => return Ok(()),
                Ok(()) = shutdown.changed() => {
                    let stop = *shutdown.borrow_and_update();
                    if self.on_stop(stop, io.stream) {
                        return Ok(());
                    }
                }
            }
            if io.rbuf.is_empty() && io.rbuf.capacity() > 4 * io.read_size.0 {
                // A burst grew the buffer and reads are small again: do not keep it.
                io.rbuf = BytesMut::new();
            }
        }
    }

    /// Whether the session is over: the client left while blocked (as Redis does, the
    /// blocked command is dropped: its exclusive connection is unblocked and goes back to the
    /// pool), or it is closing and everything owed was written.
    fn ended(&self, eof: bool) -> bool {
        if eof && self.modes.blocked.is_some() {
            return true;
        }
        (self.closing || eof) && self.queue.pending.is_empty() && self.out.wbuf.is_empty()
    }

    /// What the server asks: drain (read no more), or abandon (answer what still waits with
    /// an error, one write, and end). Returns whether the session ends now.
    fn on_stop(&mut self, stop: Stop, stream: &Stream) -> bool {
        match stop {
            Stop::No => false,
            Stop::Drain => {
                self.closing = true;
                false
            }
            Stop::Abandon => {
                self.abandon();
                // One attempt: a client that is not reading gets nothing more.
                let _ = write_front(stream, &mut self.out.wbuf);
                true
            }
        }
    }

    /// Does everything the session can do without waiting (see the module's "Progress"):
    /// moves ready replies to the output, dispatches the commands in `rbuf` that may be sent,
    /// and writes what the socket takes, until none of these changes anything. Returns the
    /// bytes written.
    pub(super) async fn pump(
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
            let wrote = if self.out.wbuf.is_empty() {
                0
            } else {
                write_front(stream, &mut self.out.wbuf)?
            };
            sent += wrote;
            self.took(wrote);
            if fed == 0 && wrote == 0 {
                return Ok(sent);
            }
        }
    }

    /// How much input may be buffered before the session stops reading:
    /// `client_read_ahead_bytes`, or the frame being assembled if it is larger; no bound
    /// during an input overdraft (see [`super::budget`]).
    pub(super) fn input_bound(&self, parser: &RequestParser) -> usize {
        if self.reads_on() {
            return usize::MAX;
        }
        self.table.settings.read_ahead.max(parser.want())
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
}
