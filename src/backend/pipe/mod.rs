//! One pipelined connection to a backend, once open: batched writes, FIFO reply matching and
//! per-request timeouts. Shared links and exclusive connections both run it.
//!
//! Requests queued on the channel are drained up to [`BATCH`] at a time into one write buffer
//! and written with one syscall; each reply read is matched to the oldest request in flight.
//! A request may expect several replies (a transaction sent as one batch) and gets them all
//! together. A request that passes the timeout gets an error reply at once and its late reply
//! is read and dropped when it comes, so one slow command fails only itself; the connection
//! is given up only when nothing at all is read for [`HARD_TIMEOUT_FACTOR`] timeouts, or the
//! backend closes it or sends something that is not RESP. Every request still waiting then
//! gets an error reply: a reply can never be matched to the wrong request.

use std::collections::VecDeque;

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::sync::mpsc;
use tokio::time::{Instant, sleep};

mod end;
mod read;

use super::hold::Held;
use super::{BackendError, Inbound, ReplyTo, Request, Spec};
use crate::net::{Stream, write_front};
use crate::protocol::reply::ReplyScanner;
use read::read_replies;

/// Requests taken from the queue per wake-up, written together.
const BATCH: usize = 512;
/// Requests written but not yet answered, per connection.
const MAX_INFLIGHT: usize = 16 * 1024;
/// Bytes buffered for writing before the connection stops taking requests.
const MAX_WRITE_BUFFER: usize = 4 * 1024 * 1024;
/// Socket reads per wake-up before the connection lets other tasks run.
const READS_PER_WAKE: usize = 16;
/// Read buffer growth step.
const READ_CHUNK: usize = 64 * 1024;
/// With requests waiting and nothing read for this many timeouts, the connection is reset.
pub const HARD_TIMEOUT_FACTOR: u32 = 4;

/// Why a connection ended.
pub enum End {
    /// Every sender is gone and nothing is in flight.
    Shutdown,
    /// The backend's name resolves to other addresses; everything sent was answered.
    Moved,
    Failed(BackendError),
}

/// What a connection needs to know about its backend.
pub struct PipeInfo<'a> {
    pub spec: &'a Spec,
    /// For an exclusive connection: its id on the backend and a shared link, to send
    /// `CLIENT UNBLOCK` when its owner leaves while a blocking command waits.
    pub unblock: Option<(i64, &'a mpsc::Sender<Request>)>,
    /// For a shared link: PING the backend after this long without a request.
    pub health: Option<Duration>,
}

/// The request a health check sends.
const PING: &[u8] = b"*1\r\n$4\r\nPING\r\n";

struct InFlight {
    /// `None` once the request has been answered with a timeout error.
    reply: Option<ReplyTo>,
    /// The request as sent (`None`: a health check), kept to send it again if the connection
    /// dies before it was written, or, for a read, before its reply.
    frame: Option<Bytes>,
    /// Where its last byte is in everything queued for writing on this connection.
    end: u64,
    /// Replies its frame brings.
    replies: u32,
    sent: Instant,
    /// Replies still expected.
    left: u32,
    /// No timeout: the command's own timeout governs it.
    blocking: bool,
}

/// One open connection being served: its buffers, the requests written and not yet answered,
/// and what the loop of [`serve`] decides on. Each event of the loop is one method.
struct Pipe<'a> {
    info: &'a PipeInfo<'a>,
    sock: &'a Stream,
    rbuf: BytesMut,
    wbuf: BytesMut,
    inflight: VecDeque<InFlight>,
    /// Requests at the front of `inflight` that can no longer time out (answered or blocking).
    settled: usize,
    batch: Vec<Request>,
    scanner: ReplyScanner,
    /// Bytes of the front request's earlier replies, when it expects several.
    partial: usize,
    /// Senders remain: more requests may come.
    rx_open: bool,
    last_read: Instant,
    /// A `CLIENT UNBLOCK` sent for a departed owner, until its reply is in.
    unblocking: Option<mpsc::UnboundedReceiver<Inbound>>,
    /// Where a health check's PONG goes, and whether one is in flight.
    health_tx: mpsc::UnboundedSender<Inbound>,
    pinging: bool,
    /// The address moved: take no more requests (they wait in the queue for the next
    /// connection), finish those sent, then end.
    moving: bool,
    /// Bytes queued for writing since the connection opened (those written are this less
    /// what `wbuf` still holds).
    appended: u64,
}

/// Serves one open connection until it fails, or until every sender is gone and nothing is in
/// flight. Every request still waiting when it fails gets an error reply.
///
/// With `held` (a backend that holds requests across failovers), the requests held from an
/// earlier connection are sent first, and when this one fails, those it may send again are
/// held for the next (see [`super::hold`]).
pub async fn serve(
    info: &PipeInfo<'_>,
    sock: &Stream,
    rx: &mut mpsc::Receiver<Request>,
    mut moves: Option<&mut tokio::sync::watch::Receiver<u64>>,
    mut held: Option<&mut Held>,
) -> End {
    let (health_tx, mut health_rx) = mpsc::unbounded_channel::<Inbound>();
    let mut pipe = Pipe::new(info, sock, health_tx);
    // The earliest deadline of a request in flight, when one is set.
    let timer = sleep(Duration::ZERO);
    tokio::pin!(timer);
    let mut armed = false;
    let health_timer = sleep(info.health.unwrap_or(Duration::MAX / 4));
    tokio::pin!(health_timer);

    let end = loop {
        if let Some(end) = pipe.finished() {
            break end;
        }
        let can_take = pipe.can_take();
        if let Some(h) = held.as_deref_mut()
            && can_take
            && !h.is_empty()
        {
            // Held requests go first, in the order they came.
            match pipe.take_held(h) {
                Err(end) => break end,
                Ok(Some(at)) if !armed => {
                    timer.as_mut().reset(at);
                    armed = true;
                }
                Ok(_) => {}
            }
            continue;
        }
        let step: Result<Option<Instant>, End> = tokio::select! {
            biased;
            ready = sock.readable() => match ready {
                Err(e) => Err(End::Failed(e.into())),
                Ok(()) => pipe.read().map(|read| {
                    if let (true, Some(every)) = (read, info.health) {
                        health_timer.as_mut().reset(pipe.last_read + every);
                    }
                    None
                }),
            },
            ready = sock.writable(), if !pipe.wbuf.is_empty() => {
                ready.map_err(|e| End::Failed(e.into())).and_then(|()| pipe.write()).map(|()| None)
            }
            n = rx.recv_many(&mut pipe.batch, BATCH), if can_take => pipe.take(n, rx).await,
            () = &mut health_timer, if info.health.is_some() && !pipe.pinging && pipe.rx_open => {
                let now = Instant::now();
                if let Some(every) = info.health {
                    health_timer.as_mut().reset(now + every);
                }
                pipe.ping(now)
            }
            Some(answer) = health_rx.recv() => {
                pipe.checked(answer);
                Ok(None)
            }
            Some(_) = recv_unblock(&mut pipe.unblocking), if pipe.unblocking.is_some() => {
                pipe.unblocking = None;
                Ok(None)
            }
            Ok(()) = changed(&mut moves), if moves.is_some() && !pipe.moving => {
                pipe.moving = true;
                Ok(None)
            }
            () = &mut timer, if armed => {
                armed = false;
                pipe.deadlines()
            }
        };
        match step {
            Err(end) => break end,
            // A deadline to watch: the first one set arms the timer (the deadline step sets
            // the next one itself).
            Ok(Some(at)) if !armed => {
                timer.as_mut().reset(at);
                armed = true;
            }
            Ok(_) => {}
        }
    };
    pipe.abandon(&end, held);
    end
}

impl<'a> Pipe<'a> {
    fn new(
        info: &'a PipeInfo<'a>,
        sock: &'a Stream,
        health_tx: mpsc::UnboundedSender<Inbound>,
    ) -> Self {
        Pipe {
            info,
            sock,
            rbuf: BytesMut::with_capacity(READ_CHUNK),
            wbuf: BytesMut::with_capacity(READ_CHUNK),
            inflight: VecDeque::with_capacity(256),
            settled: 0,
            batch: Vec::with_capacity(BATCH),
            scanner: ReplyScanner::new(),
            partial: 0,
            rx_open: true,
            last_read: Instant::now(),
            unblocking: None,
            health_tx,
            pinging: false,
            moving: false,
            appended: 0,
        }
    }
}

impl Pipe<'_> {
    /// Whether the connection is done: every sender gone and nothing owed, or its address
    /// moved and everything sent was answered.
    fn finished(&self) -> Option<End> {
        if !self.rx_open && self.inflight.is_empty() && self.unblocking.is_none() {
            return Some(End::Shutdown);
        }
        if self.moving && self.inflight.is_empty() && self.wbuf.is_empty() {
            return Some(End::Moved);
        }
        None
    }

    /// Whether more requests may be taken from the queue: within the bounds of what is in
    /// flight and waiting to be written.
    fn can_take(&self) -> bool {
        self.rx_open
            && !self.moving
            && self.inflight.len() < MAX_INFLIGHT
            && self.wbuf.len() < MAX_WRITE_BUFFER
    }

    /// The socket is readable: hands the replies read to their requests.
    fn read(&mut self) -> Result<bool, End> {
        let read = read_replies(
            self.info,
            self.sock,
            &mut self.rbuf,
            &mut self.scanner,
            &mut self.inflight,
            &mut self.partial,
            &mut self.settled,
        )?;
        if read {
            self.last_read = Instant::now();
        }
        Ok(read)
    }

    /// Writes what the socket takes.
    fn write(&mut self) -> Result<(), End> {
        write_front(self.sock, &mut self.wbuf).map_err(|e| End::Failed(e.into()))?;
        Ok(())
    }

    /// `n` requests were taken from the queue (0: every sender is gone): writes them with
    /// those that can join them at once, in one syscall. Returns their deadline.
    async fn take(
        &mut self,
        n: usize,
        rx: &mut mpsc::Receiver<Request>,
    ) -> Result<Option<Instant>, End> {
        if n == 0 {
            self.rx_open = false;
            if let (Some((id, link)), Some(head)) = (self.info.unblock, self.inflight.front())
                && head.blocking
            {
                self.unblocking = Some(send_unblock(id, link));
            }
            return Ok(None);
        }
        if self.batch.len() < BATCH && !self.inflight.is_empty() {
            // Busy connection: let the sessions that can run now queue their requests
            // too, so one write carries them all (what an event loop like twemproxy's
            // gets for free). An idle one writes at once: a lone client should not
            // wait for a trip through the scheduler.
            tokio::task::yield_now().await;
            while self.batch.len() < BATCH {
                match rx.try_recv() {
                    Ok(req) => self.batch.push(req),
                    Err(_) => break,
                }
            }
        }
        self.write_batch()
    }

    /// Takes up to a batch of held requests, oldest first, and writes them.
    fn take_held(&mut self, held: &mut Held) -> Result<Option<Instant>, End> {
        while self.batch.len() < BATCH
            && let Some(req) = held.pop(self.info.spec)
        {
            self.batch.push(req);
        }
        self.write_batch()
    }

    /// Writes the requests in `batch` in one syscall; returns their deadline.
    fn write_batch(&mut self) -> Result<Option<Instant>, End> {
        let now = Instant::now();
        if self.inflight.is_empty() {
            // Time without reads while nothing was asked does not count.
            self.last_read = now;
        }
        self.info.spec.state.add_inflight(self.batch.len());
        for req in self.batch.drain(..) {
            self.wbuf.extend_from_slice(&req.frame);
            self.appended += req.frame.len() as u64;
            let replies = req.replies.max(1);
            self.inflight.push_back(InFlight {
                reply: Some(req.reply),
                frame: Some(req.frame),
                end: self.appended,
                replies,
                sent: now,
                left: replies,
                blocking: req.blocking,
            });
        }
        self.write()?;
        Ok(Some(now + self.info.spec.timeout))
    }

    /// A health check is due: when the connection was idle a whole interval, asks the
    /// backend whether it still answers. Returns the PING's deadline.
    fn ping(&mut self, now: Instant) -> Result<Option<Instant>, End> {
        if !self.inflight.is_empty() {
            return Ok(None);
        }
        self.pinging = true;
        self.last_read = now;
        self.info.spec.state.add_inflight(1);
        self.wbuf.extend_from_slice(PING);
        self.appended += PING.len() as u64;
        self.inflight.push_back(InFlight {
            reply: Some(ReplyTo {
                tx: self.health_tx.clone(),
                seq: 0,
                part: 0,
            }),
            frame: None,
            end: self.appended,
            replies: 1,
            sent: now,
            left: 1,
            blocking: false,
        });
        self.write()?;
        Ok(Some(now + self.info.spec.timeout))
    }

    /// A health check's answer: anything but PONG is a failure (a timeout was counted when
    /// it happened).
    fn checked(&mut self, answer: Inbound) {
        self.pinging = false;
        if let Inbound::Reply(r) = answer
            && &r.frame[..] != b"+PONG\r\n"
            && r.frame != self.info.spec.timeout_reply
        {
            let text = String::from_utf8_lossy(&r.frame).trim_end().to_string();
            self.info.spec.failed(&BackendError::Health(text));
        }
    }
}

/// `-ERR backend NAME (ADDRESS) WHAT`.
pub fn error_reply(info: &PipeInfo<'_>, what: &str) -> Bytes {
    info.spec.error_reply(what)
}

/// Sends `CLIENT UNBLOCK id` on a shared link; the returned inbox gets its reply.
fn send_unblock(id: i64, link: &mpsc::Sender<Request>) -> mpsc::UnboundedReceiver<Inbound> {
    let (tx, rx) = mpsc::unbounded_channel();
    let mut frame = BytesMut::new();
    crate::protocol::reply::put_array_len(&mut frame, 3);
    crate::protocol::reply::put_bulk(&mut frame, b"CLIENT");
    crate::protocol::reply::put_bulk(&mut frame, b"UNBLOCK");
    crate::protocol::reply::put_bulk(&mut frame, id.to_string().as_bytes());
    let req = Request::new(
        frame.freeze(),
        ReplyTo {
            tx,
            seq: 0,
            part: 0,
        },
    );
    if let Err(e) = link.try_send(req) {
        // The link is full or gone: the reply will never come, so do not wait for it.
        let (tx, rx) = mpsc::unbounded_channel();
        drop(e);
        let _ = tx.send(Inbound::Closed);
        return rx;
    }
    rx
}

async fn changed(moves: &mut Option<&mut tokio::sync::watch::Receiver<u64>>) -> Result<(), ()> {
    match moves {
        Some(rx) => rx.changed().await.map_err(|_| ()),
        None => std::future::pending().await,
    }
}

async fn recv_unblock(rx: &mut Option<mpsc::UnboundedReceiver<Inbound>>) -> Option<Inbound> {
    match rx {
        Some(rx) => rx.recv().await.or(Some(Inbound::Closed)),
        None => std::future::pending().await,
    }
}
