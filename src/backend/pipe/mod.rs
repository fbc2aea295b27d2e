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
use std::io;
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use tokio::sync::mpsc;
use tokio::time::{Instant, sleep};

use super::{Inbound, ReplyTo, Request, Spec};
use crate::metrics::BackendErrorKind;
use crate::net::{Stream, read_once, write_front};
use crate::protocol::reply::{ReplyScanner, is_push};

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
    Failed(BackendErrorKind, String),
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
    sent: Instant,
    /// Replies still expected.
    left: u32,
    /// No timeout: the command's own timeout governs it.
    blocking: bool,
}

/// Serves one open connection until it fails, or until every sender is gone and nothing is in
/// flight. Every request still waiting when it fails gets an error reply.
pub async fn serve(
    info: &PipeInfo<'_>,
    sock: &Stream,
    rx: &mut mpsc::Receiver<Request>,
    mut moves: Option<&mut tokio::sync::watch::Receiver<u64>>,
) -> End {
    let mut rbuf = BytesMut::with_capacity(READ_CHUNK);
    let mut wbuf = BytesMut::with_capacity(READ_CHUNK);
    let mut inflight: VecDeque<InFlight> = VecDeque::with_capacity(256);
    // Requests at the front of `inflight` that can no longer time out (answered or blocking).
    let mut settled = 0usize;
    let mut batch: Vec<Request> = Vec::with_capacity(BATCH);
    let mut scanner = ReplyScanner::new();
    // Bytes of the front request's earlier replies, when it expects several.
    let mut partial = 0usize;
    let mut rx_open = true;
    let mut last_read = Instant::now();
    let timer = sleep(Duration::ZERO);
    tokio::pin!(timer);
    let mut armed = false;
    // A `CLIENT UNBLOCK` sent for a departed owner, until its reply is in.
    let mut unblocking: Option<mpsc::UnboundedReceiver<Inbound>> = None;
    // Health checks: the PING in flight, if any, and when the next one is due.
    let (health_tx, mut health_rx) = mpsc::unbounded_channel::<Inbound>();
    let mut pinging = false;
    let health_timer = sleep(info.health.unwrap_or(Duration::MAX / 4));
    tokio::pin!(health_timer);
    let timeout = info.spec.timeout;
    // The address moved: take no more requests (they wait in the queue for the next
    // connection), finish those sent, then end.
    let mut moving = false;

    let end = loop {
        if !rx_open && inflight.is_empty() && unblocking.is_none() {
            break End::Shutdown;
        }
        if moving && inflight.is_empty() && wbuf.is_empty() {
            break End::Moved;
        }
        let can_take =
            rx_open && !moving && inflight.len() < MAX_INFLIGHT && wbuf.len() < MAX_WRITE_BUFFER;
        tokio::select! {
            biased;
            ready = sock.readable() => {
                if let Err(e) = ready {
                    break End::Failed(BackendErrorKind::Closed, e.to_string());
                }
                match read_replies(info, sock, &mut rbuf, &mut scanner, &mut inflight, &mut partial, &mut settled) {
                    Ok(true) => {
                        last_read = Instant::now();
                        if let Some(every) = info.health {
                            health_timer.as_mut().reset(last_read + every);
                        }
                    }
                    Ok(false) => {}
                    Err(end) => break end,
                }
            }
            ready = sock.writable(), if !wbuf.is_empty() => {
                if let Err(e) = ready.and_then(|()| write_front(sock, &mut wbuf)) {
                    break End::Failed(BackendErrorKind::Closed, e.to_string());
                }
            }
            n = rx.recv_many(&mut batch, BATCH), if can_take => {
                if n == 0 {
                    rx_open = false;
                    if let (Some((id, link)), Some(head)) = (info.unblock, inflight.front())
                        && head.blocking
                    {
                        unblocking = Some(send_unblock(id, link));
                    }
                    continue;
                }
                if batch.len() < BATCH && !inflight.is_empty() {
                    // Busy connection: let the sessions that can run now queue their requests
                    // too, so one write carries them all (what an event loop like twemproxy's
                    // gets for free). An idle one writes at once: a lone client should not
                    // wait for a trip through the scheduler.
                    tokio::task::yield_now().await;
                    while batch.len() < BATCH {
                        match rx.try_recv() {
                            Ok(req) => batch.push(req),
                            Err(_) => break,
                        }
                    }
                }
                let now = Instant::now();
                if inflight.is_empty() {
                    // Time without reads while nothing was asked does not count.
                    last_read = now;
                }
                info.spec.state.add_inflight(batch.len());
                for req in batch.drain(..) {
                    wbuf.extend_from_slice(&req.frame);
                    inflight.push_back(InFlight {
                        reply: Some(req.reply),
                        sent: now,
                        left: req.replies.max(1),
                        blocking: req.blocking,
                    });
                }
                if !armed {
                    timer.as_mut().reset(now + timeout);
                    armed = true;
                }
                if let Err(e) = write_front(sock, &mut wbuf) {
                    break End::Failed(BackendErrorKind::Closed, e.to_string());
                }
            }
            () = &mut health_timer, if info.health.is_some() && !pinging && rx_open => {
                let now = Instant::now();
                if let Some(every) = info.health {
                    health_timer.as_mut().reset(now + every);
                }
                if inflight.is_empty() {
                    // Idle for a whole interval: ask the backend whether it still answers.
                    pinging = true;
                    last_read = now;
                    info.spec.state.add_inflight(1);
                    wbuf.extend_from_slice(PING);
                    inflight.push_back(InFlight {
                        reply: Some(ReplyTo { tx: health_tx.clone(), seq: 0, part: 0 }),
                        sent: now,
                        left: 1,
                        blocking: false,
                    });
                    if !armed {
                        timer.as_mut().reset(now + timeout);
                        armed = true;
                    }
                    if let Err(e) = write_front(sock, &mut wbuf) {
                        break End::Failed(BackendErrorKind::Closed, e.to_string());
                    }
                }
            }
            Some(answer) = health_rx.recv() => {
                pinging = false;
                // A timeout was counted when it happened; any other answer than PONG is a failure.
                if let Inbound::Reply(r) = answer
                    && &r.frame[..] != b"+PONG\r\n"
                    && r.frame != info.spec.timeout_reply
                {
                    let text = String::from_utf8_lossy(&r.frame).trim_end().to_string();
                    info.spec.failed(BackendErrorKind::Health, &format!("health check failed: {text}"));
                }
            }
            Some(_) = recv_unblock(&mut unblocking), if unblocking.is_some() => unblocking = None,
            Ok(()) = changed(&mut moves), if moves.is_some() && !moving => moving = true,
            () = &mut timer, if armed => {
                match check_deadlines(info, &mut inflight, &mut settled, last_read) {
                    Ok(Some(next)) => timer.as_mut().reset(next),
                    Ok(None) => armed = false,
                    Err(end) => break end,
                }
            }
        }
    };

    if !inflight.is_empty() {
        let reply = match &end {
            End::Failed(BackendErrorKind::Timeout, _) => info.spec.timeout_reply.clone(),
            End::Failed(_, msg) => error_reply(info, &format!("connection lost: {msg}")),
            End::Shutdown | End::Moved => error_reply(info, "shutting down"),
        };
        info.spec.state.sub_inflight(inflight.len());
        for pending in inflight.drain(..) {
            if let Some(to) = pending.reply {
                to.send(reply.clone());
            }
        }
    }
    end
}

/// `-ERR backend NAME (ADDRESS) WHAT`.
pub fn error_reply(info: &PipeInfo<'_>, what: &str) -> Bytes {
    info.spec.error_reply(what)
}

/// Answers requests whose timeout has passed, and fails the connection when nothing has been
/// read for the hard timeout while requests wait. Returns when to look again.
fn check_deadlines(
    info: &PipeInfo<'_>,
    inflight: &mut VecDeque<InFlight>,
    settled: &mut usize,
    last_read: Instant,
) -> Result<Option<Instant>, End> {
    let now = Instant::now();
    let timeout = info.spec.timeout;
    // Deadlines grow front to back, so the requests past theirs are a prefix of those not
    // yet settled.
    while let Some(req) = inflight.get_mut(*settled) {
        if req.blocking || req.reply.is_none() {
            *settled += 1;
            continue;
        }
        if req.sent + timeout > now {
            break;
        }
        if let Some(to) = req.reply.take() {
            to.send(info.spec.timeout_reply.clone());
        }
        info.spec.failed(
            BackendErrorKind::Timeout,
            &format!("no reply within {} ms", timeout.as_millis()),
        );
        *settled += 1;
    }
    let Some(head) = inflight.front() else {
        return Ok(None);
    };
    let hard = timeout * HARD_TIMEOUT_FACTOR;
    let mut next = inflight.get(*settled).map(|req| req.sent + timeout);
    if !head.blocking {
        let stalled_since = last_read.max(head.sent);
        if stalled_since + hard <= now {
            return Err(End::Failed(
                BackendErrorKind::Timeout,
                format!("nothing read for {} ms", hard.as_millis()),
            ));
        }
        next = Some(next.map_or(stalled_since + hard, |n| n.min(stalled_since + hard)));
    }
    Ok(next)
}

/// Reads what the socket has and hands every complete reply to its request, in order.
/// Returns whether anything was read.
fn read_replies(
    info: &PipeInfo<'_>,
    sock: &Stream,
    rbuf: &mut BytesMut,
    scanner: &mut ReplyScanner,
    inflight: &mut VecDeque<InFlight>,
    partial: &mut usize,
    settled: &mut usize,
) -> Result<bool, End> {
    let mut any = false;
    // A bounded number of reads per wake-up: a backend streaming a large reply goes back
    // through the select (and tokio's cooperative budget) instead of holding the worker.
    for _ in 0..READS_PER_WAKE {
        if rbuf.capacity() - rbuf.len() < READ_CHUNK / 4 {
            // Grow with the buffered partial reply, so a large reply is copied O(log n) times.
            rbuf.reserve(READ_CHUNK.max(rbuf.len()));
        }
        let spare = rbuf.capacity() - rbuf.len();
        match read_once(sock, rbuf) {
            Ok(0) => {
                return Err(End::Failed(
                    BackendErrorKind::Closed,
                    "closed by backend".into(),
                ));
            }
            Ok(n) => {
                any = true;
                deliver(info, rbuf, scanner, inflight, partial, settled)?;
                if n < spare {
                    return Ok(any);
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(any),
            Err(e) => return Err(End::Failed(BackendErrorKind::Closed, e.to_string())),
        }
    }
    Ok(any)
}

fn deliver(
    info: &PipeInfo<'_>,
    rbuf: &mut BytesMut,
    scanner: &mut ReplyScanner,
    inflight: &mut VecDeque<InFlight>,
    partial: &mut usize,
    settled: &mut usize,
) -> Result<(), End> {
    let now = Instant::now();
    let mut done = 0;
    let metrics = &info.spec.metrics;
    let result = loop {
        let len = match scanner.scan(&rbuf[*partial..]) {
            Ok(Some(len)) => len,
            Ok(None) => break Ok(()),
            Err(e) => break Err(End::Failed(BackendErrorKind::Protocol, e.to_string())),
        };
        if is_push(&rbuf[*partial..]) {
            // Out-of-band data no request asked for (shardis enables no tracking): drop it.
            drop_range(rbuf, *partial, len);
            continue;
        }
        let Some(head) = inflight.front_mut() else {
            break Err(End::Failed(
                BackendErrorKind::Protocol,
                "reply without a request".into(),
            ));
        };
        head.left -= 1;
        if head.left > 0 {
            *partial += len;
            continue;
        }
        let frame_len = *partial + len;
        *partial = 0;
        let Some(pending) = inflight.pop_front() else {
            break Ok(());
        };
        *settled = settled.saturating_sub(1);
        match pending.reply {
            Some(to) => {
                metrics.record(now.saturating_duration_since(pending.sent));
                to.send(rbuf.split_to(frame_len).freeze());
            }
            // Answered already (timed out): the late reply is dropped.
            None => rbuf.advance(frame_len),
        }
        done += 1;
    };
    if done > 0 {
        info.spec.state.sub_inflight(done);
        info.spec.succeeded();
    }
    result
}

/// Removes `len` bytes at `at` from the buffer (a push in the middle of a multi-reply request).
fn drop_range(rbuf: &mut BytesMut, at: usize, len: usize) {
    if at == 0 {
        rbuf.advance(len);
    } else {
        let mut tail = rbuf.split_off(at);
        tail.advance(len);
        rbuf.extend_from_slice(&tail);
    }
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
