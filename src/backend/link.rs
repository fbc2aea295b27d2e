//! One pipelined connection to a backend: batched writes, FIFO reply matching, a timeout on the
//! oldest request, and reconnection with backoff.
//!
//! A link owns its socket in one task. It drains up to [`BATCH`] queued requests at a time into
//! one write buffer and writes it with one syscall; each reply read is matched to the oldest
//! request in flight. If the backend is slower than the pool's timeout, closes the connection,
//! or sends something that is not RESP, every request in flight gets an error reply and the
//! link reconnects: a reply can never be matched to the wrong request.

use std::collections::VecDeque;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::time::{Instant, sleep, sleep_until, timeout};
use tracing::{debug, info, warn};

use super::{BackendState, ReplyTo, Request};
use crate::config::{BackendConfig, PoolConfig};
use crate::metrics::{BackendErrorKind, Metrics};
use crate::net::{read_once, write_front};
use crate::protocol::reply::ReplyScanner;

/// Requests taken from the queue per wake-up, written together.
const BATCH: usize = 512;
/// Requests written but not yet answered, per link.
const MAX_INFLIGHT: usize = 16 * 1024;
/// Bytes buffered for writing before the link stops taking requests.
const MAX_WRITE_BUFFER: usize = 4 * 1024 * 1024;
/// Socket reads per wake-up before the link lets other tasks run.
const READS_PER_WAKE: usize = 16;
/// Read buffer growth step.
const READ_CHUNK: usize = 64 * 1024;
const MIN_BACKOFF: Duration = Duration::from_millis(50);
const MAX_BACKOFF: Duration = Duration::from_secs(2);
/// A connection that lived this long resets the backoff.
const STABLE: Duration = Duration::from_secs(1);

/// How often a backend that stays down is logged again at warning level.
const REMIND_EVERY: Duration = Duration::from_secs(30);

/// Consecutive failed connection attempts, for logging an outage without a line per retry.
#[derive(Default)]
struct Outage {
    failures: u32,
    last_warned: Option<Instant>,
}

/// What to log for one failed attempt.
#[derive(Debug, PartialEq, Eq)]
enum Log {
    First,
    Reminder,
    Quiet,
}

impl Outage {
    fn failed(&mut self, now: Instant) -> Log {
        self.failures = self.failures.saturating_add(1);
        let log = match self.last_warned {
            None => Log::First,
            Some(at) if now.saturating_duration_since(at) >= REMIND_EVERY => Log::Reminder,
            Some(_) => return Log::Quiet,
        };
        self.last_warned = Some(now);
        log
    }
}

/// Why a connection ended.
enum End {
    /// Every sender is gone and nothing is in flight.
    Shutdown,
    Failed(BackendErrorKind, String),
}

struct InFlight {
    reply: ReplyTo,
    sent: Instant,
}

pub(super) struct Link {
    index: usize,
    name: String,
    host: String,
    port: u16,
    timeout: Duration,
    connect_timeout: Duration,
    state: Arc<BackendState>,
    metrics: Arc<Metrics>,
    timeout_reply: Bytes,
}

impl Link {
    pub(super) fn new(
        index: usize,
        backend: &BackendConfig,
        pool: &PoolConfig,
        state: Arc<BackendState>,
        metrics: Arc<Metrics>,
    ) -> Link {
        let timeout_reply = Bytes::from(format!(
            "-ERR backend {} ({}) timed out after {} ms\r\n",
            backend.name,
            backend.address,
            pool.timeout.as_millis()
        ));
        Link {
            index,
            name: backend.name.clone(),
            host: backend.address.host.clone(),
            port: backend.address.port,
            timeout: pool.timeout,
            connect_timeout: pool.connect_timeout,
            state,
            metrics,
            timeout_reply,
        }
    }

    fn error_reply(&self, what: &str) -> Bytes {
        Bytes::from(format!(
            "-ERR backend {} ({}:{}) {what}\r\n",
            self.name, self.host, self.port
        ))
    }

    fn record_error(&self, kind: BackendErrorKind, msg: &str) {
        self.state.set_error(msg);
        if let Some(m) = self.metrics.backend(self.index) {
            m.error(kind);
        }
    }

    fn set_connected(&self, up: bool) {
        if up {
            self.state.connection_opened();
        } else {
            self.state.connection_closed();
        }
        if let Some(m) = self.metrics.backend(self.index) {
            m.set_connections(self.state.connections());
            m.set_up(self.state.is_up());
        }
    }

    /// Runs until every sender is dropped.
    pub(super) async fn run(self, mut rx: mpsc::Receiver<Request>) {
        let mut backoff = MIN_BACKOFF;
        let mut outage = Outage::default();
        loop {
            let attempt = timeout(
                self.connect_timeout,
                TcpStream::connect((self.host.as_str(), self.port)),
            )
            .await;
            let err = match attempt {
                Ok(Ok(sock)) => {
                    let _ = sock.set_nodelay(true);
                    self.set_connected(true);
                    match outage.failures {
                        0 => {
                            info!(backend = %self.name, "connected to {}:{}", self.host, self.port)
                        }
                        n => info!(
                            backend = %self.name,
                            "connected to {}:{} after {n} failed attempt(s)", self.host, self.port
                        ),
                    }
                    outage = Outage::default();
                    let opened = Instant::now();
                    let end = self.serve(&sock, &mut rx).await;
                    self.set_connected(false);
                    match end {
                        End::Shutdown => return,
                        End::Failed(kind, msg) => {
                            warn!(backend = %self.name, "connection ended: {msg}");
                            self.record_error(kind, &msg);
                        }
                    }
                    if opened.elapsed() >= STABLE {
                        backoff = MIN_BACKOFF;
                    }
                    // Reconnect at once; a backend that refuses will fail fast below.
                    continue;
                }
                Ok(Err(e)) => format!("connect failed: {e}"),
                Err(_) => format!(
                    "connect timed out after {} ms",
                    self.connect_timeout.as_millis()
                ),
            };
            // Every attempt is counted in the metrics and shown in /status; the log says
            // once that the backend is down and then reminds every REMIND_EVERY, instead of
            // a line per retry.
            match outage.failed(Instant::now()) {
                Log::First => warn!(
                    backend = %self.name,
                    "{err}; retrying with backoff up to {} ms (repeats are logged at debug \
                     level, with a reminder every {} s)",
                    MAX_BACKOFF.as_millis(),
                    REMIND_EVERY.as_secs()
                ),
                Log::Reminder => warn!(
                    backend = %self.name,
                    "still unavailable after {} attempts: {err}", outage.failures
                ),
                Log::Quiet => {
                    debug!(backend = %self.name, "{err}; retrying in {} ms", backoff.as_millis())
                }
            }
            self.record_error(BackendErrorKind::Connect, &err);
            // Down: answer at once rather than queueing behind a dead backend.
            let reply = self.error_reply(&format!("is unavailable: {err}"));
            let retry_at = Instant::now() + backoff;
            loop {
                tokio::select! {
                    req = rx.recv() => match req {
                        Some(req) => req.reply.send(reply.clone()),
                        None => return,
                    },
                    () = sleep_until(retry_at) => break,
                }
            }
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }

    /// Serves one connection until it fails or the link shuts down. Every request still in
    /// flight when it ends gets an error reply.
    async fn serve(&self, sock: &TcpStream, rx: &mut mpsc::Receiver<Request>) -> End {
        let mut rbuf = BytesMut::with_capacity(READ_CHUNK);
        let mut wbuf = BytesMut::with_capacity(READ_CHUNK);
        let mut inflight: VecDeque<InFlight> = VecDeque::with_capacity(1024);
        let mut batch: Vec<Request> = Vec::with_capacity(BATCH);
        let mut scanner = ReplyScanner::new();
        let mut rx_open = true;
        let timer = sleep(Duration::ZERO);
        tokio::pin!(timer);
        let mut armed = false;

        let end = loop {
            if !rx_open && inflight.is_empty() {
                break End::Shutdown;
            }
            let can_take =
                rx_open && inflight.len() < MAX_INFLIGHT && wbuf.len() < MAX_WRITE_BUFFER;
            tokio::select! {
                biased;
                ready = sock.readable() => {
                    if let Err(e) = ready {
                        break End::Failed(BackendErrorKind::Closed, e.to_string());
                    }
                    if let Err(end) = self.read_replies(sock, &mut rbuf, &mut scanner, &mut inflight) {
                        break end;
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
                        continue;
                    }
                    if batch.len() < BATCH && !inflight.is_empty() {
                        // Busy link: let the sessions that can run now queue their requests
                        // too, so one write carries them all (what an event loop like
                        // twemproxy's gets for free). An idle link writes at once: a lone
                        // client should not wait for a trip through the scheduler.
                        tokio::task::yield_now().await;
                        while batch.len() < BATCH {
                            match rx.try_recv() {
                                Ok(req) => batch.push(req),
                                Err(_) => break,
                            }
                        }
                    }
                    let now = Instant::now();
                    self.state.add_inflight(batch.len());
                    for req in batch.drain(..) {
                        wbuf.extend_from_slice(&req.frame);
                        inflight.push_back(InFlight { reply: req.reply, sent: now });
                    }
                    if !armed {
                        timer.as_mut().reset(now + self.timeout);
                        armed = true;
                    }
                    if let Err(e) = write_front(sock, &mut wbuf) {
                        break End::Failed(BackendErrorKind::Closed, e.to_string());
                    }
                }
                () = &mut timer, if armed => {
                    // Deadlines grow front to back, so only the oldest request needs a timer.
                    match inflight.front() {
                        None => armed = false,
                        Some(head) if head.sent + self.timeout <= Instant::now() => {
                            break End::Failed(
                                BackendErrorKind::Timeout,
                                format!("no reply within {} ms", self.timeout.as_millis()),
                            );
                        }
                        Some(head) => timer.as_mut().reset(head.sent + self.timeout),
                    }
                }
            }
        };

        if !inflight.is_empty() {
            let reply = match &end {
                End::Failed(BackendErrorKind::Timeout, _) => self.timeout_reply.clone(),
                End::Failed(_, msg) => self.error_reply(&format!("connection lost: {msg}")),
                End::Shutdown => self.error_reply("shutting down"),
            };
            self.state.sub_inflight(inflight.len());
            for pending in inflight.drain(..) {
                pending.reply.send(reply.clone());
            }
        }
        end
    }

    /// Reads what the socket has and hands every complete reply to its request, in order.
    fn read_replies(
        &self,
        sock: &TcpStream,
        rbuf: &mut BytesMut,
        scanner: &mut ReplyScanner,
        inflight: &mut VecDeque<InFlight>,
    ) -> Result<(), End> {
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
                    self.deliver(rbuf, scanner, inflight)?;
                    if n < spare {
                        return Ok(());
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) => return Err(End::Failed(BackendErrorKind::Closed, e.to_string())),
            }
        }
        Ok(())
    }

    fn deliver(
        &self,
        rbuf: &mut BytesMut,
        scanner: &mut ReplyScanner,
        inflight: &mut VecDeque<InFlight>,
    ) -> Result<(), End> {
        let now = Instant::now();
        let metrics = self.metrics.backend(self.index);
        let mut done = 0;
        let result = loop {
            let len = match scanner.scan(rbuf) {
                Ok(Some(len)) => len,
                Ok(None) => break Ok(()),
                Err(e) => break Err(End::Failed(BackendErrorKind::Protocol, e.to_string())),
            };
            let Some(pending) = inflight.pop_front() else {
                break Err(End::Failed(
                    BackendErrorKind::Protocol,
                    "reply without a request".into(),
                ));
            };
            if let Some(m) = metrics {
                m.record(now.saturating_duration_since(pending.sent));
            }
            pending.reply.send(rbuf.split_to(len).freeze());
            done += 1;
        };
        self.state.sub_inflight(done);
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_outage_is_logged_once_then_reminded() {
        let t0 = Instant::now();
        let mut outage = Outage::default();
        assert_eq!(outage.failed(t0), Log::First);
        for ms in [50, 150, 350, 750, 1550, 29_000] {
            assert_eq!(outage.failed(t0 + Duration::from_millis(ms)), Log::Quiet);
        }
        assert_eq!(outage.failed(t0 + REMIND_EVERY), Log::Reminder);
        assert_eq!(
            outage.failed(t0 + REMIND_EVERY + Duration::from_secs(2)),
            Log::Quiet
        );
        assert_eq!(outage.failed(t0 + REMIND_EVERY * 2), Log::Reminder);
        assert_eq!(outage.failures, 10);
    }
}
