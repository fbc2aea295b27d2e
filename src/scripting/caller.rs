//! Requests that a script or a transaction run in the proxy sends for itself: on the calling
//! client's own links (so they run after the client's earlier commands to the same backend),
//! with replies coming back to an inbox of its own, and a cluster node's redirections followed
//! as the session follows them.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use tokio::sync::{Mutex, mpsc};

use crate::backend::{Backend, Inbound, ReplyTo, Request};
use crate::protocol::out::Proto;
use crate::routing::followup::{self, Goal, Next, node_when_known};
use crate::routing::{Dest, Routing, Sent, Table};

const LINK_CLOSED: &[u8] = b"-ERR backend link closed\r\n";

/// One request of a batch: where it goes, its frame, and how many replies it brings.
pub struct Part {
    pub dest: Dest,
    pub frame: Bytes,
    pub replies: u32,
}

impl Part {
    pub fn new(dest: Dest, frame: Bytes) -> Part {
        Part {
            dest,
            frame,
            replies: 1,
        }
    }
}

/// Sends requests for one proxy-side script or transaction and waits for their replies.
pub struct Caller {
    routing: Arc<Routing>,
    /// The table in force when the script started: every call of the script routes by it.
    pub table: Arc<Table>,
    /// The client's protocol: the links its earlier commands went on.
    pub proto: Proto,
    client: u64,
    tx: mpsc::UnboundedSender<Inbound>,
    rx: Mutex<mpsc::UnboundedReceiver<Inbound>>,
    next: AtomicU64,
}

impl Caller {
    pub fn new(routing: Arc<Routing>, table: Arc<Table>, proto: Proto, client: u64) -> Caller {
        let (tx, rx) = mpsc::unbounded_channel();
        Caller {
            routing,
            table,
            proto,
            client,
            tx,
            rx: Mutex::new(rx),
            next: AtomicU64::new(1),
        }
    }

    /// Sends every part at once (each on the client's link for `proto`) and returns their
    /// replies in part order. Cancel-safe: the replies of a dropped batch are discarded by the
    /// next one.
    pub async fn send_all(&self, parts: Vec<Part>, proto: Proto) -> Vec<Bytes> {
        let seq = self.next.fetch_add(1, Ordering::Relaxed);
        let mut rx = self.rx.lock().await;
        let mut sent = Vec::with_capacity(parts.len());
        for (i, part) in parts.into_iter().enumerate() {
            let req = Request {
                frame: part.frame.clone(),
                reply: self.reply_to(seq, i as u32),
                replies: part.replies,
                blocking: false,
            };
            send_now(&part.dest.backend, proto, self.client, req).await;
            sent.push(Sent {
                backend: part.dest.backend,
                frame: part.frame,
                replies: part.replies,
                retry: part.dest.retry,
            });
        }
        let mut replies: Vec<Option<Bytes>> = vec![None; sent.len()];
        let mut left = sent.len();
        while left > 0 {
            let Some(msg) = rx.recv().await else {
                break;
            };
            let Inbound::Reply(reply) = msg else {
                continue;
            };
            let part = reply.part as usize;
            if reply.seq != seq || part >= sent.len() || replies[part].is_some() {
                continue;
            }
            let frame = match followup::next(&mut sent[part], reply.frame, &self.routing.load()) {
                Next::Deliver(frame) => frame,
                Next::Resend {
                    goal,
                    frame,
                    replies: n,
                    delay,
                    reply: last,
                } => {
                    let req = Request {
                        frame,
                        reply: self.reply_to(seq, part as u32),
                        replies: n,
                        blocking: false,
                    };
                    self.resend(goal, delay, req, proto, last);
                    continue;
                }
            };
            replies[part] = Some(frame);
            left -= 1;
        }
        replies
            .into_iter()
            .map(|r| r.unwrap_or_else(|| Bytes::from_static(LINK_CLOSED)))
            .collect()
    }

    /// Sends one request and returns its reply.
    pub async fn send(&self, dest: Dest, frame: Bytes, proto: Proto) -> Bytes {
        let mut out = self.send_all(vec![Part::new(dest, frame)], proto).await;
        out.pop().unwrap_or_else(|| Bytes::from_static(LINK_CLOSED))
    }

    /// Queues a request on the client's link and does not wait for its reply: what is sent
    /// after it on the same link still runs after it.
    pub async fn send_and_forget(&self, dest: &Dest, frame: Bytes) {
        let req = Request::new(frame, ReplyTo::nowhere());
        send_now(&dest.backend, self.proto, self.client, req).await;
    }

    fn reply_to(&self, seq: u64, part: u32) -> ReplyTo {
        ReplyTo {
            tx: self.tx.clone(),
            seq,
            part,
        }
    }

    fn resend(
        &self,
        goal: Goal,
        delay: std::time::Duration,
        req: Request,
        proto: Proto,
        last: Bytes,
    ) {
        let routing = self.routing.clone();
        let client = self.client;
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            let node: Arc<Backend> = match goal {
                Goal::Node(node) => node,
                Goal::Addr { addr, shared } => {
                    match node_when_known(&routing, &shared, &addr).await {
                        Some(node) => node,
                        None => return req.reply.send(last),
                    }
                }
            };
            send_now(&node, proto, client, req).await;
        });
    }
}

/// Sends `req` on `client`'s link to `backend`, or answers it with an error.
async fn send_now(backend: &Backend, proto: Proto, client: u64, req: Request) {
    if backend.state.is_down() {
        return req.reply.send(backend.spec.error_reply("is down"));
    }
    if let Err(err) = backend.link(proto, client).send(req).await {
        err.0.reply.send(Bytes::from_static(LINK_CLOSED));
    }
}
