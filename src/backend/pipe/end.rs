//! How requests in flight end without their reply: past their deadline, or on a connection
//! that ended (an error reply each, or held for the next connection).

use std::collections::VecDeque;

use tokio::time::Instant;

use super::super::BackendError;
use super::super::hold::Held;
use super::{End, HARD_TIMEOUT_FACTOR, InFlight, Pipe, PipeInfo, Request, error_reply};

impl Pipe<'_> {
    /// The deadline timer fired: answers the requests past theirs. Returns the next one.
    pub(super) fn deadlines(&mut self) -> Result<Option<Instant>, End> {
        check_deadlines(
            self.info,
            &mut self.inflight,
            &mut self.settled,
            self.last_read,
        )
    }

    /// The connection ended with requests still waiting: each gets an error reply, or with
    /// `held`, those that may be sent again are held for the next connection.
    pub(super) fn abandon(&mut self, end: &End, held: Option<&mut Held>) {
        if self.inflight.is_empty() {
            return;
        }
        let info = self.info;
        if let (Some(held), End::Failed(_)) = (held, end) {
            return self.hold_or_fail(held);
        }
        let reply = match end {
            End::Failed(BackendError::Timeout(_) | BackendError::Stalled(_)) => {
                info.spec.timeout_reply.clone()
            }
            End::Failed(e) => error_reply(info, &format!("connection lost: {e}")),
            End::Shutdown | End::Moved => error_reply(info, "shutting down"),
        };
        info.spec.state.sub_inflight(self.inflight.len());
        for pending in self.inflight.drain(..) {
            if let Some(to) = pending.reply {
                to.send(reply.clone());
            }
        }
    }
}

impl Pipe<'_> {
    /// The connection failed: requests never (wholly) written and reads written but not
    /// answered are held, in order; a write written but not answered gets the "outcome
    /// unknown" error, and is never sent again.
    fn hold_or_fail(&mut self, held: &mut Held) {
        let spec = self.info.spec;
        let written = self.appended - self.wbuf.len() as u64;
        spec.state.sub_inflight(self.inflight.len());
        let mut again = Vec::with_capacity(self.inflight.len());
        let lost = error_reply(self.info, "connection lost");
        for pending in self.inflight.drain(..) {
            let Some(to) = pending.reply else {
                // Answered already (it timed out).
                continue;
            };
            let Some(frame) = pending.frame else {
                to.send(lost.clone());
                continue;
            };
            let unanswered = pending.left == pending.replies;
            let resend = pending.end > written
                || (unanswered && super::super::hold::read_only(&frame, pending.replies));
            if resend {
                again.push(Request {
                    frame,
                    reply: to,
                    replies: pending.replies,
                    blocking: pending.blocking,
                });
            } else {
                to.send(spec.outcome_unknown_reply());
            }
        }
        held.push_front_all(spec, again);
    }
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
        info.spec
            .failed(&BackendError::Timeout(timeout.as_millis()));
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
            return Err(End::Failed(BackendError::Stalled(hard.as_millis())));
        }
        next = Some(next.map_or(stalled_since + hard, |n| n.min(stalled_since + hard)));
    }
    Ok(next)
}
