//! Transactions: MULTI, EXEC, DISCARD, WATCH, UNWATCH.
//!
//! MULTI is answered by shardis, and the commands after it are checked and queued in the
//! session, each answered `+QUEUED`. All of them must run on one backend: the backend of the
//! first keyed command (or of the watched keys); a command for another backend gets
//! `-CROSSSLOT` and, like any command refused while queueing, makes EXEC answer `-EXECABORT`.
//! Nothing is sent before EXEC, so nothing queued in a refused or aborted transaction ever
//! runs. EXEC sends `MULTI`, the commands and `EXEC` as one batch: on a shared link, where the
//! batch cannot be interleaved with other clients' commands, or, after WATCH, on the exclusive
//! connection that holds the watch. No transaction opens a connection of its own.

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use tokio::time::Instant;

use super::Session;
use super::call::Call;
use super::pending::{Pending, Then};
use crate::backend::{Lease, Request};
use crate::protocol::command::{Allowed, Kind, Local, SessionCmd, flag};
use crate::protocol::request::parse_int;
use crate::routing::{Dest, Retry, RouteError, Sent};

const MULTI: &[u8] = b"*1\r\n$5\r\nMULTI\r\n";
const EXEC: &[u8] = b"*1\r\n$4\r\nEXEC\r\n";
const UNWATCH: &[u8] = b"*1\r\n$7\r\nUNWATCH\r\n";
pub(super) const EXECABORT: &str = "EXECABORT Transaction discarded because of previous errors.";
/// A transaction with WATCH stays on the watched keys' backend.
const WATCH_ACROSS: &str = "CROSSSLOT Keys in request don't hash to the same backend as the \
    watched keys: a transaction with WATCH runs on one backend (shardis runs transactions \
    across backends only without WATCH)";

/// Commands queued after MULTI.
pub struct Transaction {
    /// Where they run, once a keyed command has said.
    pub(super) dest: Option<Dest>,
    pub(super) frames: BytesMut,
    pub(super) count: u32,
    /// A command was refused while queueing: EXEC will answer EXECABORT.
    aborted: bool,
    /// Each command's backend (none: any) and place in `frames`.
    pub(super) parts: Vec<(Option<Dest>, std::ops::Range<usize>)>,
    /// The commands span backends: EXEC runs them across backends
    /// (session/transaction_cross.rs).
    pub(super) spans: bool,
}

/// Keys watched on one backend, over an exclusive connection.
pub struct Watch {
    pub dest: Dest,
    pub lease: Lease,
}

/// Why a command cannot be queued in MULTI; EXEC then answers EXECABORT.
#[derive(Debug, thiserror::Error)]
enum QueueError {
    #[error("{0}")]
    Route(RouteError),
    #[error("ERR shardis does not serve '{0}': {1}")]
    Refused(&'static str, &'static str),
    #[error("ERR Command not allowed inside a transaction")]
    NoMulti,
    #[error("ERR shardis cannot run '{0}' inside MULTI: a transaction runs on one backend")]
    OneBackend(&'static str),
}

/// Whether two destinations are the same backend.
fn same(a: &Dest, b: &Dest) -> bool {
    Arc::ptr_eq(&a.backend, &b.backend)
}

impl Session {
    /// MULTI.
    pub(super) fn multi(&mut self, id: usize, now: Instant) {
        self.modes.multi = Some(Box::new(Transaction {
            dest: None,
            frames: BytesMut::new(),
            count: 0,
            aborted: false,
            parts: Vec::new(),
            spans: false,
        }));
        self.ok(id, now, b"+OK\r\n");
    }

    /// A command was refused in a transaction: EXEC will abort it.
    pub(super) fn abort_transaction(&mut self) {
        if let Some(tx) = &mut self.modes.multi {
            tx.aborted = true;
        }
    }

    /// Queues a local reply for a command that succeeded, and counts it.
    pub(super) fn ok(&mut self, id: usize, now: Instant, reply: &'static [u8]) {
        self.ctx.metrics.command(id).record(now.elapsed(), true);
        self.push_ready(Bytes::from_static(reply));
    }

    /// A command received in a transaction.
    pub(super) async fn queue(&mut self, call: Call<'_>) {
        let (id, now, cmd) = (call.id, call.start, call.cmd);
        let target = match cmd.kind {
            Kind::Session(SessionCmd::Exec) => return self.exec(id, now).await,
            Kind::Session(SessionCmd::Discard) => return self.discard(id, now),
            Kind::Session(SessionCmd::Multi) => {
                return self.fail(id, now, "ERR MULTI calls can not be nested");
            }
            Kind::Session(SessionCmd::Watch) => {
                return self.fail(id, now, "ERR WATCH inside MULTI is not allowed");
            }
            Kind::Session(SessionCmd::Reset) => return self.reset(id, now),
            Kind::Local(Local::Quit) => return self.local(Local::Quit, call),
            _ => self.queued_target(&call),
        };
        let dest = match target {
            Ok(dest) => dest,
            Err(e) => {
                self.abort_transaction();
                return self.fail(id, now, &e.to_string());
            }
        };
        let pinned = self
            .modes
            .multi
            .as_ref()
            .and_then(|t| t.dest.as_ref())
            .or(self.modes.watch.as_ref().map(|w| &w.dest));
        let watching = self.modes.watch.is_some();
        let run = self.table.settings.scripts.cross_shard == crate::config::CrossShard::Run;
        if let (Some(d), Some(p)) = (&dest, pinned)
            && !same(d, p)
            && run
            && !watching
        {
            // Keys of another backend, no WATCH: EXEC runs the transaction across backends.
            if let Some(tx) = &mut self.modes.multi {
                tx.spans = true;
            }
        } else if let (Some(d), Some(p)) = (&dest, pinned)
            && !same(d, p)
        {
            let e = if matches!(p.retry, Retry::Cluster { .. }) {
                RouteError::CrossClusterSlot
            } else {
                RouteError::CrossSlot
            };
            self.abort_transaction();
            if watching && run {
                return self.fail(id, now, WATCH_ACROSS);
            }
            return self.fail(id, now, &e.to_string());
        }
        let db = self.table.settings.db;
        if let Some(tx) = &mut self.modes.multi {
            let start = tx.frames.len();
            if tx.dest.is_none() {
                tx.dest = dest.clone();
            }
            if cmd.kind == Kind::Local(Local::Select) && db != 0 {
                // The backend's database is the pool's: SELECT 0 must not leave it.
                let n = db.to_string();
                crate::protocol::reply::put_array_len(&mut tx.frames, 2);
                crate::protocol::reply::put_bulk(&mut tx.frames, b"SELECT");
                crate::protocol::reply::put_bulk(&mut tx.frames, n.as_bytes());
                tx.count += 1;
                tx.parts.push((None, start..tx.frames.len()));
                return self.ok(id, now, b"+QUEUED\r\n");
            }
            tx.frames.extend_from_slice(&call.frame);
            tx.count += 1;
            tx.parts.push((dest, start..tx.frames.len()));
        }
        self.ok(id, now, b"+QUEUED\r\n");
    }

    /// Where a command queued in MULTI runs: `Ok(None)` when any backend of the transaction
    /// may run it; `Err` with the refusal when it cannot be queued.
    fn queued_target(&self, call: &Call<'_>) -> Result<Option<Dest>, QueueError> {
        let (id, cmd) = (call.id, call.cmd);
        match cmd.kind {
            Kind::Forward
            | Kind::Split { .. }
            | Kind::Blocking { .. }
            | Kind::Session(SessionCmd::Publish(_)) => match self.route(call) {
                Ok(d) => Ok(d),
                // The backend will refuse it in Redis's words; EXEC reports that.
                Err(RouteError::Malformed) => Ok(None),
                Err(e) => Err(QueueError::Route(e)),
            },
            Kind::First | Kind::Local(Local::Ping | Local::Echo | Local::Time) => Ok(None),
            Kind::Local(Local::Select)
                if call
                    .arg(1)
                    .and_then(parse_int)
                    .is_some_and(|n| self.serves_db(n)) =>
            {
                Ok(None)
            }
            Kind::Guarded(Allowed::First) if self.table.settings.allowed[id] => Ok(None),
            Kind::Guarded(Allowed::Debug)
                if self.table.settings.allowed[id] && call.args.len() >= 3 =>
            {
                let key = call.arg(2).unwrap_or_default();
                self.table
                    .owner_of(key)
                    .map(Some)
                    .map_err(QueueError::Route)
            }
            Kind::Refused(reason) => Err(QueueError::Refused(cmd.name, reason)),
            _ if cmd.flags & flag::NO_MULTI != 0 => Err(QueueError::NoMulti),
            _ => Err(QueueError::OneBackend(cmd.name)),
        }
    }

    /// EXEC: the queued commands as one batch on one backend; the client gets EXEC's reply.
    async fn exec(&mut self, id: usize, now: Instant) {
        let Some(tx) = self.modes.multi.take() else {
            return self.fail(id, now, "ERR EXEC without MULTI");
        };
        let watch = self.modes.watch.take();
        if tx.aborted {
            // Dropping the watch sends UNWATCH, as Redis's EXEC does when it aborts.
            drop(watch);
            return self.fail(id, now, EXECABORT);
        }
        if tx.count == 0 && watch.is_none() {
            return self.ok(id, now, b"*0\r\n");
        }
        if tx.spans {
            return self.exec_across(id, now, *tx);
        }
        let dest = match tx.dest.or(watch.as_ref().map(|w| w.dest.clone())) {
            Some(dest) => dest,
            None => match self.table.any() {
                Ok(dest) => dest,
                Err(e) => return self.fail(id, now, &e.to_string()),
            },
        };
        let mut batch = BytesMut::with_capacity(MULTI.len() + tx.frames.len() + EXEC.len());
        batch.extend_from_slice(MULTI);
        batch.extend_from_slice(&tx.frames);
        batch.extend_from_slice(EXEC);
        let seq = self.next_seq();
        let mut req = Request::new(batch.freeze(), self.reply_to(seq, 0));
        req.replies = tx.count + 2;
        match watch {
            Some(mut w) => {
                // EXEC ends the watch: the connection needs no UNWATCH afterwards.
                w.lease.set_reset(None);
                let sent = Sent::plain(dest.backend, &req);
                Self::send_leased(&w.lease, req);
                self.push_waiting(Pending::Single {
                    cmd: id,
                    start: now,
                    sent,
                    then: Then::Last,
                    lease: Some(Box::new(w.lease)),
                });
            }
            None => {
                let backend = dest.backend.clone();
                let sent = Sent {
                    backend: dest.backend,
                    frame: req.frame.clone(),
                    replies: req.replies,
                    retry: dest.retry,
                };
                self.push_waiting(Pending::Single {
                    cmd: id,
                    start: now,
                    sent,
                    then: Then::Last,
                    lease: None,
                });
                self.send_to(&backend, req).await;
            }
        }
    }

    /// DISCARD: drops the queue and the watch.
    fn discard(&mut self, id: usize, now: Instant) {
        self.modes.multi = None;
        self.modes.watch = None;
        self.ok(id, now, b"+OK\r\n");
    }

    /// WATCH: on an exclusive connection to the keys' backend, kept until EXEC, DISCARD or
    /// UNWATCH. Keys of one backend only.
    pub(super) async fn watch(&mut self, call: Call<'_>) {
        let (id, now) = (call.id, call.start);
        let dest = match self
            .route(&call)
            .and_then(|d| d.map_or_else(|| self.table.any(), Ok))
        {
            Ok(dest) => dest,
            Err(e) => return self.fail(id, now, &e.to_string()),
        };
        match &self.modes.watch {
            Some(w) if !same(&w.dest, &dest) => {
                return self.fail(
                    id,
                    now,
                    "CROSSSLOT Keys in request don't hash to the same backend as the keys \
                     already watched",
                );
            }
            Some(_) => {}
            None => {
                let mut lease = match self.lease(&dest.backend).await {
                    Ok(lease) => lease,
                    Err(e) => return self.fail(id, now, &e.to_string()),
                };
                lease.set_reset(Some(Bytes::from_static(UNWATCH)));
                self.modes.watch = Some(Box::new(Watch {
                    dest: dest.clone(),
                    lease,
                }));
            }
        }
        let seq = self.next_seq();
        let req = Request::new(call.frame, self.reply_to(seq, 0));
        let sent = Sent::plain(dest.backend, &req);
        if let Some(w) = &self.modes.watch {
            Self::send_leased(&w.lease, req);
        }
        self.push_waiting(Pending::Single {
            cmd: id,
            start: now,
            sent,
            then: Then::Pass,
            lease: None,
        });
    }

    /// UNWATCH: ends the watch (its connection goes back to the pool once it has answered).
    pub(super) fn unwatch(&mut self, call: Call<'_>) {
        let (id, now) = (call.id, call.start);
        let Some(mut w) = self.modes.watch.take() else {
            return self.ok(id, now, b"+OK\r\n");
        };
        w.lease.set_reset(None);
        let seq = self.next_seq();
        let req = Request::new(call.frame, self.reply_to(seq, 0));
        let sent = Sent::plain(w.dest.backend.clone(), &req);
        Self::send_leased(&w.lease, req);
        self.push_waiting(Pending::Single {
            cmd: id,
            start: now,
            sent,
            then: Then::Pass,
            lease: Some(Box::new(w.lease)),
        });
    }
}
