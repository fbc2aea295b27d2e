//! Commands that need an exclusive backend connection: blocking commands (BLPOP, XREAD
//! BLOCK, ...), WAIT, and SCRIPT/FUNCTION KILL, which must not queue behind the shared link
//! they are meant to unblock. Leases come from the backend's bounded pool.

use std::ops::Range;

use bytes::Bytes;
use tokio::time::Instant;

use super::Session;
use super::pending::{Fanout, Pending, Then};
use super::route::RouteError;
use crate::backend::{ExclusiveError, Lease, Request};
use crate::protocol::command::{Command, Merge};

impl Session {
    /// Sends a request on an exclusive connection; if it is gone, answers with an error.
    pub(super) fn send_leased(lease: &Lease, req: Request) {
        if let Err(req) = lease.send(req) {
            req.reply.send(Bytes::from_static(
                b"-ERR exclusive backend connection closed\r\n",
            ));
        }
    }

    /// A lease on an exclusive connection to `backend`, or the error reply for the client.
    pub(super) async fn lease(&self, backend: usize) -> Result<Lease, String> {
        self.lease_even_if_down(backend, false).await
    }

    /// A lease; with `even_if_down`, also on a backend marked down (to cure it: SCRIPT KILL
    /// a backend that is busy running a script, and therefore timing out).
    pub(super) async fn lease_even_if_down(
        &self,
        backend: usize,
        even_if_down: bool,
    ) -> Result<Lease, String> {
        let Some(b) = self.table.backends.get(backend) else {
            return Err("ERR no such backend".into());
        };
        if b.state.is_down() && !even_if_down {
            return Err(format!("ERR backend {} is down", b.spec.describe));
        }
        b.exclusive.acquire(self.proto).await.map_err(|e| match e {
            ExclusiveError::Exhausted(_) => format!("ERR backend {}: {e}", b.spec.describe),
            ExclusiveError::Connect(e) => {
                format!("ERR backend {} is unavailable: {e}", b.spec.describe)
            }
        })
    }

    /// A blocking command: on an exclusive connection, with no timeout but its own; nothing
    /// else is sent until it is answered.
    pub(super) async fn blocking(
        &mut self,
        id: usize,
        cmd: &'static Command,
        frame: Bytes,
        args: &[Range<usize>],
        now: Instant,
    ) {
        let backend = match self.route(cmd, &frame, args) {
            Ok(b) => b.unwrap_or(0),
            Err(RouteError::Malformed) => return self.forward(id, 0, frame, now, Then::Pass).await,
            Err(e) => return self.fail(id, now, &e.message(cmd.name)),
        };
        let lease = match self.lease(backend).await {
            Ok(lease) => lease,
            Err(msg) => return self.fail(id, now, &msg),
        };
        let seq = self.next_seq();
        let mut req = Request::new(frame, self.reply_to(seq, 0));
        req.blocking = true;
        Self::send_leased(&lease, req);
        if let Some(conn_id) = lease.id() {
            self.client.set_blocked(Some((backend, conn_id)));
        }
        self.blocked = Some(seq);
        self.push_waiting(Pending::Single {
            cmd: id,
            start: now,
            backend,
            then: Then::Unblock,
            lease: Some(Box::new(lease)),
        });
    }

    /// WAIT: asked of every backend on exclusive connections (it blocks); the smallest count.
    pub(super) async fn wait(&mut self, id: usize, frame: Bytes, now: Instant) {
        if let Some(seq) = self
            .broadcast_exclusive(id, Merge::Min, frame, now, true)
            .await
        {
            self.blocked = Some(seq);
        }
    }

    /// Sends the command to every backend on exclusive connections (not behind the shared
    /// links' queues): WAIT, which blocks, and SCRIPT/FUNCTION KILL, which must reach a backend
    /// whose shared link waits on the very script to kill. Returns the command's sequence
    /// number, or `None` when it was answered with an error.
    pub(super) async fn broadcast_exclusive(
        &mut self,
        id: usize,
        merge: Merge,
        frame: Bytes,
        now: Instant,
        blocking: bool,
    ) -> Option<u64> {
        let n = self.table.backends.len();
        let mut leases = Vec::with_capacity(n);
        for backend in 0..n {
            match self.lease_even_if_down(backend, !blocking).await {
                Ok(lease) => leases.push(lease),
                Err(msg) => {
                    self.fail(id, now, &msg);
                    return None;
                }
            }
        }
        let seq = self.next_seq();
        for (part, lease) in leases.iter().enumerate() {
            let mut req = Request::new(frame.clone(), self.reply_to(seq, part as u32));
            req.blocking = blocking;
            Self::send_leased(lease, req);
        }
        let mut fanout = Box::new(Fanout::new(id, now, merge, self.proto, n, Vec::new()));
        fanout.leases = leases;
        self.push_waiting(Pending::Fanout(fanout));
        Some(seq)
    }
}

/// Whether XREAD / XREADGROUP has a `BLOCK` option (before `STREAMS`).
pub(super) fn has_block_option(frame: &[u8], args: &[Range<usize>]) -> bool {
    for r in &args[1..] {
        let a = &frame[r.clone()];
        if a.eq_ignore_ascii_case(b"streams") {
            return false;
        }
        if a.eq_ignore_ascii_case(b"block") {
            return true;
        }
    }
    false
}
