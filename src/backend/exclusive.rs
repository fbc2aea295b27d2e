//! Exclusive connections: a bounded pool per backend of connections that one session holds at
//! a time, for commands that tie a connection up (blocking pops, WATCH ... EXEC).
//!
//! A session leases a connection, sends on it like on a link, and drops the lease when done;
//! the connection then finishes what it was asked, runs the lease's reset command if any
//! (`UNWATCH`), and goes back to the pool. If its owner leaves while a blocking command waits,
//! it sends `CLIENT UNBLOCK` for itself on a shared link, so it is back within a round trip
//! instead of when the command's timeout ends. A connection is checked before reuse (a closed
//! or dirty one is dropped), at most `max_exclusive_per_backend` exist per backend, and a
//! session that would go over that gets an error at once: nobody waits for one.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;
use tokio::sync::mpsc;
use tracing::debug;

use super::conn::{self, Conn};
use super::link::Spec;
use super::pipe::{self, End, PipeInfo};
use super::{LINK_QUEUE, ReplyTo, Request};
use crate::protocol::out::Proto;

/// Why no exclusive connection was had.
#[derive(Debug, thiserror::Error)]
pub enum ExclusiveError {
    #[error("all {0} exclusive connections are in use (max_exclusive_per_backend)")]
    Exhausted(usize),
    #[error("{0}")]
    Connect(super::BackendError),
}

/// The pool of one backend.
pub struct ExclusivePool {
    spec: Arc<Spec>,
    max: usize,
    /// A shared link of this backend, for `CLIENT UNBLOCK`.
    unblock: mpsc::Sender<Request>,
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    /// Parked connections by protocol.
    idle: [Vec<Conn>; 2],
    /// Connections that exist: idle, leased, or finishing after their lease ended.
    open: usize,
    leased: usize,
}

impl ExclusivePool {
    pub fn new(spec: Arc<Spec>, max: usize, unblock: mpsc::Sender<Request>) -> Arc<Self> {
        Arc::new(ExclusivePool {
            spec,
            max,
            unblock,
            inner: Mutex::new(Inner::default()),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock cannot leave the counts half-updated in a way that
        // matters more than refusing service forever would.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn publish(&self, inner: &Inner) {
        self.spec
            .metrics
            .set_exclusive(inner.idle[0].len() + inner.idle[1].len(), inner.leased);
    }

    /// A connection of protocol `proto` for one session: an idle one that is still sound, or
    /// a new one while fewer than the maximum exist.
    pub async fn acquire(self: &Arc<Self>, proto: Proto) -> Result<Lease, ExclusiveError> {
        loop {
            let mut inner = self.lock();
            match inner.idle[proto.index()].pop() {
                Some(conn) if is_sound(&conn) && conn.epoch == *self.spec.moves.borrow() => {
                    inner.leased += 1;
                    self.publish(&inner);
                    drop(inner);
                    return Ok(self.lease(conn));
                }
                Some(_) => {
                    inner.open -= 1;
                    continue;
                }
                None if inner.open >= self.max => {
                    drop(inner);
                    self.spec.metrics.exclusive_refused();
                    return Err(ExclusiveError::Exhausted(self.max));
                }
                None => {
                    inner.open += 1;
                    inner.leased += 1;
                    self.publish(&inner);
                    break;
                }
            }
        }
        let epoch = *self.spec.moves.borrow();
        match conn::open(&self.spec.target_now(), proto).await {
            Ok(mut conn) => {
                conn.epoch = epoch;
                Ok(self.lease(conn))
            }
            Err(e) => {
                let mut inner = self.lock();
                inner.open -= 1;
                inner.leased -= 1;
                self.publish(&inner);
                drop(inner);
                let err = super::BackendError::Connect(e);
                self.spec.failed(&err);
                Err(ExclusiveError::Connect(err))
            }
        }
    }

    /// Starts the connection's task and hands out the lease.
    fn lease(self: &Arc<Self>, conn: Conn) -> Lease {
        let (tx, rx) = mpsc::channel(LINK_QUEUE);
        let poisoned = Arc::new(AtomicBool::new(false));
        let id = conn.id;
        tokio::spawn(drive(self.clone(), conn, rx, poisoned.clone()));
        Lease {
            tx,
            id,
            reset: None,
            poisoned,
            pool: self.clone(),
        }
    }

    /// Counts and shows how many exist; for tests and /status.
    pub fn counts(&self) -> (usize, usize) {
        let inner = self.lock();
        (inner.open, inner.leased)
    }
}

/// A connection that is idle must have nothing to read: data means a reply nobody asked for,
/// and end of stream means the backend closed it.
fn is_sound(conn: &Conn) -> bool {
    let mut byte = [0u8; 1];
    matches!(conn.stream.try_read(&mut byte), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
}

/// Serves a leased connection until its lease is dropped and everything asked is answered,
/// then parks it (or closes it, if it failed or could not be reset).
async fn drive(
    pool: Arc<ExclusivePool>,
    conn: Conn,
    mut rx: mpsc::Receiver<Request>,
    poisoned: Arc<AtomicBool>,
) {
    let info = PipeInfo {
        unblock: conn.id.map(|id| (id, &pool.unblock)),
        ..pool.spec.pipe_info()
    };
    let end = pipe::serve(&info, &conn.stream, &mut rx, None, None).await;
    let mut inner = pool.lock();
    match end {
        End::Shutdown
            if !poisoned.load(Ordering::Relaxed) && conn.epoch == *pool.spec.moves.borrow() =>
        {
            inner.idle[conn.proto.index()].push(conn);
        }
        // Poisoned, or opened before the backend's address moved: closed.
        End::Shutdown | End::Moved => inner.open -= 1,
        End::Failed(err) => {
            debug!(backend = %pool.spec.name, "exclusive connection ended: {err}");
            pool.spec.failed(&err);
            inner.open -= 1;
        }
    }
    pool.publish(&inner);
}

/// One session's hold on an exclusive connection.
pub struct Lease {
    tx: mpsc::Sender<Request>,
    /// The connection's id on the backend.
    id: Option<i64>,
    /// Sent when the lease ends, to leave the connection as it was found.
    reset: Option<Bytes>,
    poisoned: Arc<AtomicBool>,
    pool: Arc<ExclusivePool>,
}

impl Lease {
    /// Queues a request on the connection; gives it back if the connection is gone.
    pub fn send(&self, req: Request) -> Result<(), Request> {
        self.tx.try_send(req).map_err(|e| match e {
            mpsc::error::TrySendError::Full(r) | mpsc::error::TrySendError::Closed(r) => r,
        })
    }

    /// The command that cleans the connection when the lease ends (`UNWATCH`), or none.
    pub fn set_reset(&mut self, frame: Option<Bytes>) {
        self.reset = frame;
    }

    /// The connection's id on its backend.
    pub fn id(&self) -> Option<i64> {
        self.id
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        if let Some(frame) = self.reset.take() {
            let (tx, _) = mpsc::unbounded_channel();
            let req = Request::new(
                frame,
                ReplyTo {
                    tx,
                    seq: 0,
                    part: 0,
                },
            );
            if self.tx.try_send(req).is_err() {
                self.poisoned.store(true, Ordering::Relaxed);
            }
        }
        let mut inner = self.pool.lock();
        inner.leased -= 1;
        self.pool.publish(&inner);
    }
}
