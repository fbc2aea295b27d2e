//! A tracking connection: one per worker and backend, opened on the first fill, RESP3 with
//! `CLIENT TRACKING on`. It sends fills (the read and `PTTL key`), hands their replies to the
//! cache, and evicts every key Redis says was invalidated, in the order the connection
//! delivers them. A lost connection drops every value read on it; one that stops answering is
//! suspected after [`SUSPECT`] and its values are dropped until it answers again.

use std::collections::VecDeque;
use std::io;
use std::sync::{Arc, Weak};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tracing::{debug, info, warn};

use crate::backend::conn::{self, Conn};
use crate::backend::{Backend, Spec};
use crate::hotkeys::Count;
use crate::net::{read_once, write_front};
use crate::protocol::out::Proto;
use crate::protocol::reply::{
    ReplyScanner, elements, integer_value, is_error, is_push, string_value,
};

/// An idle connection is pinged this often, and the age of the oldest request is checked.
pub const PING_EVERY: Duration = Duration::from_millis(100);
/// A request unanswered this long: the connection's values are dropped until it answers.
pub const SUSPECT: Duration = Duration::from_millis(250);
/// The name the connection carries in the backend's `CLIENT LIST`.
pub const CLIENT_NAME: &str = "shardis-nearcache";
/// Fills and pings in flight per connection.
const MAX_INFLIGHT: usize = 1024;
const MAX_BACKOFF: Duration = Duration::from_secs(2);
const MIN_BACKOFF: Duration = Duration::from_millis(50);

/// A value to read into the cache.
pub(super) struct Fill {
    /// The slot it is for, the slot's id, and its sequence and the worker's epoch when sent.
    pub slot: u64,
    pub id: u64,
    pub seq: u64,
    pub epoch: u64,
    pub shape: Box<[u8]>,
    /// The read, then `PTTL key`.
    pub frame: Bytes,
}

/// A worker's handle on its tracking connection to one backend.
pub(super) struct Handle {
    /// The backend, by address in memory.
    pub addr: usize,
    pub backend: Weak<Backend>,
    pub tx: mpsc::Sender<Fill>,
}

/// Runs the tracking connection to `spec`'s backend (`addr`) for pool `pool`, until its
/// handle is dropped.
pub(super) async fn run(spec: Arc<Spec>, addr: usize, pool: usize, mut rx: mpsc::Receiver<Fill>) {
    let mut backoff = MIN_BACKOFF;
    loop {
        let Some(first) = rx.recv().await else {
            return;
        };
        let opened = Instant::now();
        let conn = match open(&spec).await {
            Ok(conn) => conn,
            Err(e) => {
                warn!(backend = %spec.name, "near cache: cannot open a tracking connection: {e}");
                super::unfilled(&first);
                if !refuse_until(&mut rx, Instant::now() + backoff).await {
                    return;
                }
                backoff = (backoff * 2).min(MAX_BACKOFF);
                continue;
            }
        };
        debug!(backend = %spec.name, "near cache: tracking connection open");
        let mut link = Link::new(&spec, addr, pool);
        let end = link.serve(&conn, &mut rx, first).await;
        link.abandon();
        // Whatever was read on it can no longer be invalidated.
        super::flush_backend(addr, Count::Evictions);
        match end {
            Ok(()) => return,
            Err(e) => {
                info!(backend = %spec.name, "near cache: tracking connection lost ({e}); its values were dropped")
            }
        }
        if opened.elapsed() < Duration::from_secs(1) {
            if !refuse_until(&mut rx, Instant::now() + backoff).await {
                return;
            }
            backoff = (backoff * 2).min(MAX_BACKOFF);
        } else {
            backoff = MIN_BACKOFF;
        }
    }
}

/// Opens a RESP3 connection and turns tracking on.
async fn open(spec: &Spec) -> Result<Conn, String> {
    let mut conn = conn::open(&spec.target, Proto::Resp3)
        .await
        .map_err(|e| e.to_string())?;
    for args in [
        &[&b"CLIENT"[..], b"TRACKING", b"on"][..],
        &[b"CLIENT", b"SETNAME", CLIENT_NAME.as_bytes()],
    ] {
        let mut req = BytesMut::new();
        crate::protocol::reply::put_array_len(&mut req, args.len());
        for a in args {
            crate::protocol::reply::put_bulk(&mut req, a);
        }
        let exchange = conn::exchange(&mut conn.stream, &req, 64 * 1024);
        let reply = tokio::time::timeout(spec.target.connect_timeout, exchange)
            .await
            .map_err(|_| "timed out turning tracking on".to_string())?
            .map_err(|e| e.to_string())?;
        if is_error(&reply) {
            return Err(String::from_utf8_lossy(&reply).trim_end().to_string());
        }
    }
    Ok(conn)
}

/// Drops every fill until `until`; false when the handle is gone.
async fn refuse_until(rx: &mut mpsc::Receiver<Fill>, until: Instant) -> bool {
    loop {
        tokio::select! {
            fill = rx.recv() => match fill {
                Some(fill) => super::unfilled(&fill),
                None => return false,
            },
            () = tokio::time::sleep_until(until) => return true,
        }
    }
}

/// A request in flight: a fill (two replies) or a ping (one).
struct Flight {
    fill: Option<Fill>,
    sent: Instant,
    /// The suspicion generation it was sent in: a fill sent before the connection was last
    /// suspected is not stored.
    generation: u64,
    value: Option<Bytes>,
}

/// One open tracking connection's state.
struct Link<'a> {
    spec: &'a Spec,
    addr: usize,
    pool: usize,
    rbuf: BytesMut,
    wbuf: BytesMut,
    scanner: ReplyScanner,
    inflight: VecDeque<Flight>,
    generation: u64,
    suspect: bool,
}

impl<'a> Link<'a> {
    fn new(spec: &'a Spec, addr: usize, pool: usize) -> Link<'a> {
        Link {
            spec,
            addr,
            pool,
            rbuf: BytesMut::with_capacity(16 * 1024),
            wbuf: BytesMut::new(),
            scanner: ReplyScanner::new(),
            inflight: VecDeque::new(),
            generation: 0,
            suspect: false,
        }
    }

    /// Serves the connection until it fails (`Err`) or the handle is dropped (`Ok`).
    async fn serve(
        &mut self,
        conn: &Conn,
        rx: &mut mpsc::Receiver<Fill>,
        first: Fill,
    ) -> Result<(), String> {
        let sock = &conn.stream;
        self.send(Some(first));
        let mut every = tokio::time::interval(PING_EVERY);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            write_front(sock, &mut self.wbuf).map_err(|e| e.to_string())?;
            tokio::select! {
                biased;
                ready = sock.readable() => {
                    ready.map_err(|e| e.to_string())?;
                    self.read(conn)?;
                }
                ready = sock.writable(), if !self.wbuf.is_empty() => {
                    ready.map_err(|e| e.to_string())?;
                }
                fill = rx.recv(), if self.inflight.len() < MAX_INFLIGHT => match fill {
                    Some(fill) => self.send(Some(fill)),
                    None => return Ok(()),
                },
                _ = every.tick() => self.check()?,
            }
        }
    }

    fn send(&mut self, fill: Option<Fill>) {
        match &fill {
            Some(f) => self.wbuf.extend_from_slice(&f.frame),
            None => self.wbuf.extend_from_slice(b"*1\r\n$4\r\nPING\r\n"),
        }
        self.inflight.push_back(Flight {
            fill,
            sent: Instant::now(),
            generation: self.generation,
            value: None,
        });
    }

    /// Pings an idle connection; suspects (or gives up on) one whose oldest request is overdue.
    fn check(&mut self) -> Result<(), String> {
        let Some(oldest) = self.inflight.front().map(|f| f.sent) else {
            self.send(None);
            return Ok(());
        };
        let age = oldest.elapsed();
        let hard = self.spec.timeout * crate::backend::pipe::HARD_TIMEOUT_FACTOR;
        if age >= hard.max(SUSPECT) {
            return Err(format!("no reply for {} ms", age.as_millis()));
        }
        if age >= SUSPECT && !self.suspect {
            // Invalidations may be stuck behind the late replies: serve nothing read here
            // until the connection catches up.
            self.suspect = true;
            self.generation += 1;
            super::flush_backend(self.addr, Count::Evictions);
            debug!(backend = %self.spec.name, "near cache: tracking connection slow; values dropped");
        }
        Ok(())
    }

    /// Reads what the socket has and handles every complete frame.
    fn read(&mut self, conn: &Conn) -> Result<(), String> {
        for _ in 0..16 {
            if self.rbuf.capacity() - self.rbuf.len() < 4096 {
                self.rbuf.reserve((16 * 1024).max(self.rbuf.len()));
            }
            let spare = self.rbuf.capacity() - self.rbuf.len();
            match read_once(&conn.stream, &mut self.rbuf) {
                Ok(0) => return Err("closed by the backend".into()),
                Ok(n) => {
                    self.frames()?;
                    if n < spare {
                        return Ok(());
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) => return Err(e.to_string()),
            }
        }
        Ok(())
    }

    fn frames(&mut self) -> Result<(), String> {
        loop {
            let len = match self.scanner.scan(&self.rbuf) {
                Ok(Some(len)) => len,
                Ok(None) => return Ok(()),
                Err(e) => return Err(e.to_string()),
            };
            let frame = self.rbuf.split_to(len).freeze();
            if is_push(&frame) {
                self.pushed(&frame);
            } else {
                self.replied(frame)?;
            }
        }
    }

    /// A push: an invalidation of some keys, or (a null) of all of them.
    fn pushed(&mut self, frame: &[u8]) {
        let Some(parts) = elements(frame) else {
            return;
        };
        if parts.first().and_then(|p| string_value(p)) != Some(&b"invalidate"[..]) {
            return;
        }
        match parts.get(1).and_then(|keys| elements(keys)) {
            Some(keys) => super::invalidate(self.pool, keys.into_iter().filter_map(string_value)),
            // A flush (FLUSHDB, FLUSHALL): every key of the connection.
            None => super::flush_backend(self.addr, Count::Invalidations),
        }
    }

    /// A reply: the next part of the oldest request.
    fn replied(&mut self, frame: Bytes) -> Result<(), String> {
        let Some(head) = self.inflight.front_mut() else {
            return Err("a reply nothing asked for".into());
        };
        if head.fill.is_some() && head.value.is_none() {
            head.value = Some(frame);
            return Ok(());
        }
        let Some(flight) = self.inflight.pop_front() else {
            return Ok(());
        };
        if let (Some(fill), Some(value)) = (&flight.fill, &flight.value) {
            if flight.generation == self.generation {
                let pttl = integer_value(&frame).unwrap_or(0);
                super::filled(fill, self.addr, value, pttl, flight.sent);
            } else {
                super::unfilled(fill);
            }
        }
        if self.suspect
            && self
                .inflight
                .front()
                .is_none_or(|f| f.sent.elapsed() < SUSPECT)
        {
            self.suspect = false;
        }
        Ok(())
    }

    /// The connection ended: the fills in flight will get no reply.
    fn abandon(&mut self) {
        for flight in self.inflight.drain(..) {
            if let Some(fill) = &flight.fill {
                super::unfilled(fill);
            }
        }
    }
}
