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

use std::ops::Range;

use bytes::{Bytes, BytesMut};
use tokio::time::Instant;

use super::Session;
use super::pending::{Pending, Then};
use super::route::RouteError;
use crate::backend::{Lease, Request};
use crate::protocol::command::{Allowed, Command, Kind, Local, SessionCmd};
use crate::protocol::request::parse_int;

const MULTI: &[u8] = b"*1\r\n$5\r\nMULTI\r\n";
const EXEC: &[u8] = b"*1\r\n$4\r\nEXEC\r\n";
const UNWATCH: &[u8] = b"*1\r\n$7\r\nUNWATCH\r\n";
const EXECABORT: &str = "EXECABORT Transaction discarded because of previous errors.";

/// Commands queued after MULTI.
pub struct Transaction {
    /// Where they run, once a keyed command has said.
    backend: Option<usize>,
    frames: BytesMut,
    count: u32,
    /// A command was refused while queueing: EXEC will answer EXECABORT.
    aborted: bool,
}

/// Keys watched on one backend, over an exclusive connection.
pub struct Watch {
    pub backend: usize,
    pub lease: Lease,
}

impl Session {
    /// MULTI.
    pub(super) fn multi(&mut self, id: usize, now: Instant) {
        self.multi = Some(Box::new(Transaction {
            backend: None,
            frames: BytesMut::new(),
            count: 0,
            aborted: false,
        }));
        self.ok(id, now, b"+OK\r\n");
    }

    /// A command was refused in a transaction: EXEC will abort it.
    pub(super) fn abort_transaction(&mut self) {
        if let Some(tx) = &mut self.multi {
            tx.aborted = true;
        }
    }

    /// Queues a local reply for a command that succeeded, and counts it.
    pub(super) fn ok(&mut self, id: usize, now: Instant, reply: &'static [u8]) {
        self.ctx.metrics.command(id).record(now.elapsed(), true);
        self.push_ready(Bytes::from_static(reply));
    }

    /// A command received in a transaction.
    pub(super) async fn queue(
        &mut self,
        id: usize,
        cmd: &'static Command,
        frame: Bytes,
        args: &[Range<usize>],
        now: Instant,
    ) {
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
            Kind::Local(Local::Quit) => return self.local(Local::Quit, id, &frame, args, now),
            Kind::Forward
            | Kind::Split { .. }
            | Kind::Blocking { .. }
            | Kind::Session(SessionCmd::Publish(_)) => match self.route(cmd, &frame, args) {
                Ok(b) => Ok(b),
                // The backend will refuse it in Redis's words; EXEC reports that.
                Err(RouteError::Malformed) => Ok(None),
                Err(e) => Err(e.message(cmd.name)),
            },
            Kind::First | Kind::Local(Local::Ping | Local::Echo | Local::Time) => Ok(None),
            Kind::Local(Local::Select)
                if args
                    .get(1)
                    .and_then(|a| parse_int(&frame[a.clone()]))
                    .is_some_and(|n| self.serves_db(n)) =>
            {
                Ok(None)
            }
            Kind::Guarded(Allowed::First) if self.table.settings.allowed[id] => Ok(None),
            Kind::Guarded(Allowed::Debug) if self.table.settings.allowed[id] && args.len() >= 3 => {
                Ok(Some(self.table.backend_for(&frame[args[2].clone()])))
            }
            Kind::Refused(reason) => Err(format!(
                "ERR shardis does not serve '{}': {reason}",
                cmd.name
            )),
            _ if cmd.flags & crate::protocol::command::flag::NO_MULTI != 0 => {
                Err("ERR Command not allowed inside a transaction".into())
            }
            _ => Err(format!(
                "ERR shardis cannot run '{}' inside MULTI: a transaction runs on one backend",
                cmd.name
            )),
        };
        let backend = match target {
            Ok(b) => b,
            Err(msg) => {
                self.abort_transaction();
                return self.fail(id, now, &msg);
            }
        };
        let pinned = self
            .multi
            .as_ref()
            .and_then(|t| t.backend)
            .or(self.watch.as_ref().map(|w| w.backend));
        if let (Some(b), Some(p)) = (backend, pinned)
            && b != p
        {
            self.abort_transaction();
            return self.fail(id, now, &RouteError::CrossSlot.message(cmd.name));
        }
        let db = self.table.settings.db;
        if let Some(tx) = &mut self.multi {
            if backend.is_some() {
                tx.backend = backend;
            }
            if cmd.kind == Kind::Local(Local::Select) && db != 0 {
                // The backend's database is the pool's: SELECT 0 must not leave it.
                let n = db.to_string();
                crate::protocol::reply::put_array_len(&mut tx.frames, 2);
                crate::protocol::reply::put_bulk(&mut tx.frames, b"SELECT");
                crate::protocol::reply::put_bulk(&mut tx.frames, n.as_bytes());
                tx.count += 1;
                return self.ok(id, now, b"+QUEUED\r\n");
            }
            tx.frames.extend_from_slice(&frame);
            tx.count += 1;
        }
        self.ok(id, now, b"+QUEUED\r\n");
    }

    /// EXEC: the queued commands as one batch on one backend; the client gets EXEC's reply.
    async fn exec(&mut self, id: usize, now: Instant) {
        let Some(tx) = self.multi.take() else {
            return self.fail(id, now, "ERR EXEC without MULTI");
        };
        let watch = self.watch.take();
        if tx.aborted {
            // Dropping the watch sends UNWATCH, as Redis's EXEC does when it aborts.
            drop(watch);
            return self.fail(id, now, EXECABORT);
        }
        if tx.count == 0 && watch.is_none() {
            return self.ok(id, now, b"*0\r\n");
        }
        let backend = tx
            .backend
            .or(watch.as_ref().map(|w| w.backend))
            .unwrap_or(0);
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
                Self::send_leased(&w.lease, req);
                self.push_waiting(Pending::Single {
                    cmd: id,
                    start: now,
                    backend,
                    then: Then::Last,
                    lease: Some(Box::new(w.lease)),
                });
            }
            None => {
                self.push_waiting(Pending::Single {
                    cmd: id,
                    start: now,
                    backend,
                    then: Then::Last,
                    lease: None,
                });
                self.send(backend, req).await;
            }
        }
    }

    /// DISCARD: drops the queue and the watch.
    fn discard(&mut self, id: usize, now: Instant) {
        self.multi = None;
        self.watch = None;
        self.ok(id, now, b"+OK\r\n");
    }

    /// WATCH: on an exclusive connection to the keys' backend, kept until EXEC, DISCARD or
    /// UNWATCH. Keys of one backend only.
    pub(super) async fn watch(
        &mut self,
        id: usize,
        cmd: &'static Command,
        frame: Bytes,
        args: &[Range<usize>],
        now: Instant,
    ) {
        let backend = match self.route(cmd, &frame, args) {
            Ok(b) => b.unwrap_or(0),
            Err(e) => return self.fail(id, now, &e.message(cmd.name)),
        };
        match &self.watch {
            Some(w) if w.backend != backend => {
                return self.fail(
                    id,
                    now,
                    "CROSSSLOT Keys in request don't hash to the same backend as the keys \
                     already watched",
                );
            }
            Some(_) => {}
            None => {
                let mut lease = match self.lease(backend).await {
                    Ok(lease) => lease,
                    Err(msg) => return self.fail(id, now, &msg),
                };
                lease.set_reset(Some(Bytes::from_static(UNWATCH)));
                self.watch = Some(Box::new(Watch { backend, lease }));
            }
        }
        let seq = self.next_seq();
        let req = Request::new(frame, self.reply_to(seq, 0));
        if let Some(w) = &self.watch {
            Self::send_leased(&w.lease, req);
        }
        self.push_waiting(Pending::Single {
            cmd: id,
            start: now,
            backend,
            then: Then::Pass,
            lease: None,
        });
    }

    /// UNWATCH: ends the watch (its connection goes back to the pool once it has answered).
    pub(super) fn unwatch(&mut self, id: usize, frame: Bytes, now: Instant) {
        let Some(mut w) = self.watch.take() else {
            return self.ok(id, now, b"+OK\r\n");
        };
        w.lease.set_reset(None);
        let seq = self.next_seq();
        Self::send_leased(&w.lease, Request::new(frame, self.reply_to(seq, 0)));
        self.push_waiting(Pending::Single {
            cmd: id,
            start: now,
            backend: w.backend,
            then: Then::Pass,
            lease: Some(Box::new(w.lease)),
        });
    }
}
