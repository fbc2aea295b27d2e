//! Sending: a request goes to the link of the backend routing chose, and is kept ([`Sent`])
//! until its reply is in; a reply that [`crate::routing::followup`] says must go elsewhere
//! first is sent again from here, and never reaches the client.
//!
//! Retries go out in the order replies come in, on the client's own link to the new node; a
//! retry that must wait (a backoff, a node not yet in the map, a full link queue) is sent by a
//! small task of its own, bounded like the request it carries.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::mpsc;
use tokio::sync::mpsc::error::TrySendError;
use tokio::time::Instant;

use super::Session;
use super::pending::{Pending, Then};
use crate::backend::{Backend, Inbound, ReplyTo, Request};
use crate::protocol::out::Proto;
use crate::routing::followup::node_when_known;
use crate::routing::{Dest, Goal, Sent};

const LINK_CLOSED: &[u8] = b"-ERR backend link closed\r\n";

impl Session {
    pub(super) fn reply_to(&self, seq: u64, part: u32) -> ReplyTo {
        ReplyTo {
            tx: self.tx.clone(),
            seq,
            part,
        }
    }

    /// Sends the whole command to one backend; its reply takes the next place in the queue.
    pub(super) async fn forward(
        &mut self,
        id: usize,
        dest: Dest,
        frame: Bytes,
        now: Instant,
        then: Then,
    ) {
        let tx = self.tx.clone();
        self.forward_via(id, dest, frame, now, then, tx).await;
    }

    /// [`Session::forward`] whose reply comes through `via`: the session's own inbox, or a
    /// delay fault's relay.
    pub(super) async fn forward_via(
        &mut self,
        id: usize,
        dest: Dest,
        frame: Bytes,
        now: Instant,
        then: Then,
        via: mpsc::UnboundedSender<Inbound>,
    ) {
        let seq = self.next_seq();
        let reply = ReplyTo {
            tx: via,
            seq,
            part: 0,
        };
        let req = Request::new(frame.clone(), reply);
        // Sent first, queued after: nothing can answer it before the session next looks at its
        // inbox, and the destination moves into the queue entry without another refcount.
        self.send_to(&dest.backend, req).await;
        self.push_waiting(Pending::Single {
            cmd: id,
            start: now,
            sent: Sent {
                backend: dest.backend,
                frame,
                replies: 1,
                retry: dest.retry,
            },
            then,
            lease: None,
        });
    }

    /// Hands a request to the backend's link for this client's protocol; if the backend is
    /// marked down or the link is gone, answers with an error at once.
    pub(super) async fn send_to(&self, backend: &Backend, req: Request) {
        send_now(backend, self.out.proto, self.id, req).await;
    }

    /// Sends part `req` of a fanned-out command to `dest`, and returns what to keep of it.
    pub(super) async fn send_part(&self, dest: Dest, req: Request) -> Sent {
        let sent = Sent {
            backend: dest.backend,
            frame: req.frame.clone(),
            replies: req.replies,
            retry: dest.retry,
        };
        self.send_to(&sent.backend, req).await;
        sent
    }

    /// Sends again a request whose reply said to (see [`crate::routing::followup::next`]):
    /// at once on the client's link to the node when it can, else from a task of its own.
    pub(super) fn resend(&self, goal: Goal, delay: Duration, req: Request, last: &[u8]) {
        if let (Goal::Node(node), true) = (&goal, delay.is_zero()) {
            if node.refuses() {
                return req.reply.send(node.spec.error_reply("is down"));
            }
            match node.link(self.out.proto, self.id).try_send(req) {
                Ok(()) => {}
                Err(TrySendError::Full(req)) => self.resend_later(goal, delay, req, last),
                Err(TrySendError::Closed(req)) => req.reply.send(Bytes::from_static(LINK_CLOSED)),
            }
            return;
        }
        self.resend_later(goal, delay, req, last);
    }

    /// Sends `req` to `goal` after `delay`, from a task of its own. `last` is the reply that
    /// caused the retry, for the error if the goal never appears.
    fn resend_later(&self, goal: Goal, delay: Duration, req: Request, last: &[u8]) {
        let routing = self.ctx.routing.clone();
        let (proto, client) = (self.out.proto, self.id);
        let text = String::from_utf8_lossy(last.get(1..).unwrap_or_default())
            .trim_end()
            .to_string();
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            let node: Arc<Backend> = match goal {
                Goal::Node(node) => node,
                Goal::Addr { addr, shared } => {
                    match node_when_known(&routing, &shared, &addr).await {
                        Some(node) => node,
                        None => {
                            return req.reply.send(Bytes::from(format!(
                                "-ERR cluster node {addr} is not in shardis's slot map (after: {text})\r\n"
                            )));
                        }
                    }
                }
            };
            send_now(&node, proto, client, req).await;
        });
    }
}

/// Sends `req` on `client`'s link to `backend` for `proto`, or answers it with an error.
async fn send_now(backend: &Backend, proto: Proto, client: u64, req: Request) {
    if backend.refuses() {
        // Marked down: fail at once instead of waiting out the timeout.
        return req.reply.send(backend.spec.error_reply("is down"));
    }
    if let Err(err) = backend.link(proto, client).send(req).await {
        err.0.reply.send(Bytes::from_static(LINK_CLOSED));
    }
}
