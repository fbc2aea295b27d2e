//! Commands that need an exclusive backend connection: blocking commands (BLPOP, XREAD
//! BLOCK, ...), WAIT, and SCRIPT/FUNCTION KILL, which must not queue behind the shared link
//! they are meant to unblock. Leases come from the backend's bounded pool.

use std::ops::Range;

use bytes::Bytes;
use tokio::time::Instant;

use super::Session;
use super::call::Call;
use super::pending::{Fanout, Pending, Then};
use crate::backend::{Backend, ExclusiveError, Lease, Request};
use crate::protocol::command::Merge;
use crate::routing::{RouteError, Sent};

/// Why no exclusive connection could be had; the client gets its `Display`.
#[derive(Debug, thiserror::Error)]
pub(super) enum LeaseError {
    #[error("ERR backend {0} is down")]
    Down(String),
    #[error("ERR backend {0}: {1}")]
    Exhausted(String, ExclusiveError),
    #[error("ERR backend {0} is unavailable: {1}")]
    Unavailable(String, ExclusiveError),
}

impl Session {
    /// Sends a request on an exclusive connection; if it is gone, answers with an error.
    pub(super) fn send_leased(lease: &Lease, req: Request) {
        if let Err(req) = lease.send(req) {
            req.reply.send(Bytes::from_static(
                b"-ERR exclusive backend connection closed\r\n",
            ));
        }
    }

    /// A lease on an exclusive connection to `backend`, or why there is none.
    pub(super) async fn lease(&self, backend: &Backend) -> Result<Lease, LeaseError> {
        self.lease_even_if_down(backend, false).await
    }

    /// A lease; with `even_if_down`, also on a backend marked down (to cure it: SCRIPT KILL
    /// a backend that is busy running a script, and therefore timing out).
    pub(super) async fn lease_even_if_down(
        &self,
        b: &Backend,
        even_if_down: bool,
    ) -> Result<Lease, LeaseError> {
        if b.state.is_down() && !even_if_down {
            return Err(LeaseError::Down(b.spec.describe.clone()));
        }
        b.exclusive
            .acquire(self.out.proto)
            .await
            .map_err(|e| match e {
                ExclusiveError::Exhausted(_) => LeaseError::Exhausted(b.spec.describe.clone(), e),
                ExclusiveError::Connect(_) => LeaseError::Unavailable(b.spec.describe.clone(), e),
            })
    }

    /// A blocking command: on an exclusive connection, with no timeout but its own; nothing
    /// else is sent until it is answered.
    pub(super) async fn blocking(&mut self, call: Call<'_>) {
        let (id, now) = (call.id, call.start);
        let dest = match self.route(&call) {
            Ok(Some(dest)) => dest,
            Ok(None) | Err(RouteError::Malformed) => return self.forward_any(call).await,
            Err(e) => return self.fail(id, now, &e.to_string()),
        };
        let lease = match self.lease(&dest.backend).await {
            Ok(lease) => lease,
            Err(e) => return self.fail(id, now, &e.to_string()),
        };
        let seq = self.next_seq();
        let frame = self.table.unprefixed(call.cmd, call.frame, call.args);
        let mut req = Request::new(frame, self.reply_to(seq, 0));
        req.blocking = true;
        let sent = Sent::plain(dest.backend, &req);
        Self::send_leased(&lease, req);
        if let Some(conn_id) = lease.id() {
            self.client
                .set_blocked(Some((sent.backend.clone(), conn_id)));
        }
        self.modes.blocked = Some(seq);
        self.push_waiting(Pending::Single {
            cmd: id,
            start: now,
            sent,
            then: Then::Unblock,
            lease: Some(Box::new(lease)),
        });
    }

    /// WAIT: asked of every backend on exclusive connections (it blocks); the smallest count.
    pub(super) async fn wait(&mut self, call: Call<'_>) {
        if let Some(seq) = self
            .broadcast_exclusive(call.id, Merge::Min, call.frame, call.start, true)
            .await
        {
            self.modes.blocked = Some(seq);
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
        let table = self.table.clone();
        let n = table.backend_count();
        let mut leases = Vec::with_capacity(n);
        for backend in table.backends() {
            match self.lease_even_if_down(backend, !blocking).await {
                Ok(lease) => leases.push(lease),
                Err(e) => {
                    self.fail(id, now, &e.to_string());
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
        let mut fanout = Box::new(Fanout::new(id, now, merge, self.out.proto, n, Vec::new()));
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
