//! A session's side of a cluster pool: every request sent to a node is kept (its frame is
//! refcounted, so keeping it costs no copy) until its reply is in, so that a redirection is
//! retried where the node points and never reaches the client; and reads may go to replicas.
//!
//! - `-MOVED slot addr`: the map is corrected at once and fetched again (coalesced), and the
//!   request is sent to `addr`.
//! - `-ASK slot addr`: `ASKING` and the request are sent to `addr` as one frame on one link,
//!   so nothing comes between them; the map stays.
//! - `-TRYAGAIN` (a multi-key request while its slot migrates) and `-CLUSTERDOWN` (a
//!   failover in progress): sent again to the same node after a backoff.
//!
//! A transaction (`MULTI` ... `EXEC` sent as one batch) whose commands were redirected while
//! queueing was discarded by the node (`-EXECABORT`), so it is sent again whole. A request is
//! redirected at most [`MAX_REDIRECTS`] times and waits at most [`MAX_WAITS`] backoffs; past
//! that the client gets the node's last reply.
//!
//! Retries go out in the order replies come in, on the client's own link to the new node; a
//! retry that must wait (backoff, a node not yet in the map, a full link queue) is sent by a
//! small task of its own, bounded like the request it carries.

use std::collections::HashMap;
use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::sync::mpsc::error::TrySendError;
use tokio::time::{Instant, sleep};

use super::Session;
use super::route::KeySpan;
use crate::backend::{Backend, Reply, Request, Routing, Table};
use crate::cluster::Route;
use crate::cluster::redirect::{self, Redirect};
use crate::config::ReadFrom;
use crate::protocol::command::{COMMANDS, Keys, flag};
use crate::protocol::out::Proto;
use crate::protocol::reply::split_replies;

/// `-MOVED` and `-ASK` followed per request.
pub const MAX_REDIRECTS: u8 = 5;
/// `-TRYAGAIN` and `-CLUSTERDOWN` waited out per request (backoffs of 25, 50, 100, 200 ms,
/// then 400 ms: about 2.8 s in all).
pub const MAX_WAITS: u8 = 10;
const FIRST_BACKOFF: Duration = Duration::from_millis(25);
const MAX_BACKOFF: Duration = Duration::from_millis(400);
/// How long a retry waits for a node named by a redirection to appear in the slot map.
const UNKNOWN_NODE_WAIT: Duration = Duration::from_secs(1);
const UNKNOWN_NODE_POLL: Duration = Duration::from_millis(20);

const ASKING: &[u8] = b"*1\r\n$6\r\nASKING\r\n";

/// One request sent to a cluster node and not yet answered.
pub(super) struct Tracked {
    /// As the session sent it (without `ASKING`).
    frame: Bytes,
    replies: u32,
    /// Where it went last.
    node: Arc<Backend>,
    /// It went after `ASKING`: its reply starts with `ASKING`'s.
    asking: bool,
    redirects: u8,
    waits: u8,
}

/// The requests of one session in flight to cluster nodes, by sequence number and part.
#[derive(Default)]
pub(super) struct Inflight(HashMap<(u64, u32), Tracked, ahash::RandomState>);

impl Inflight {
    pub(super) fn clear(&mut self) {
        self.0.clear();
    }
}

/// Where a retry goes.
enum Goal {
    Node(Arc<Backend>),
    /// A node the table did not have when the redirection came: looked up again, for a while.
    Addr(String),
}

/// Fills `out` with the group of each key in `span` for a split: its backend, or on a
/// cluster pool its hash slot (a node refuses keys of several slots in one command). Returns
/// how many groups there can be.
pub(super) fn split_groups(
    table: &Table,
    frame: &[u8],
    args: &[Range<usize>],
    span: KeySpan,
    out: &mut Vec<usize>,
) -> usize {
    out.clear();
    let key = |pos: usize| &frame[args[pos].clone()];
    if table.cluster.is_none() {
        out.extend(span.positions().map(|pos| table.backend_for(key(pos))));
        return table.backends.len();
    }
    out.extend(span.positions().map(|pos| Route::slot(key(pos)) as usize));
    crate::cluster::SLOTS
}

/// The backend of a group made by [`split_groups`].
#[inline]
pub(super) fn group_backend(table: &Table, group: usize) -> usize {
    match &table.cluster {
        None => group,
        Some(route) => route.owner(group as u16),
    }
}

impl Session {
    /// Hands a request to the backend's link; on a cluster pool, keeps it for redirections.
    pub(super) async fn send(&mut self, backend: usize, req: Request) {
        if self.table.cluster.is_some() {
            return self.send_cluster(backend, req, None).await;
        }
        self.send_to_link(backend, req).await
    }

    /// Sends one part of a split command `id` to the backend of `group`.
    pub(super) async fn send_part(&mut self, group: usize, req: Request, id: usize) {
        if self.table.cluster.is_none() {
            return self.send_to_link(group, req).await;
        }
        let backend = group_backend(&self.table, group);
        self.send_cluster(backend, req, Some(id)).await
    }

    /// Sends `req` for primary `backend` of a cluster table, or for one of its replicas when
    /// command `cmd` is a keyed read and `read_from` says so; keeps it for redirections.
    pub(super) async fn send_cluster(&mut self, backend: usize, req: Request, cmd: Option<usize>) {
        let table = self.table.clone();
        let Some(route) = table.cluster.as_deref() else {
            return self.send_to_link(backend, req).await;
        };
        let Some(primary) = table.backends.get(backend) else {
            return req.reply.send(route.no_node_reply());
        };
        let read = cmd.and_then(|id| COMMANDS.get(id)).is_some_and(|c| {
            c.flags & flag::READONLY != 0 && c.keys != Keys::None && c.flags & flag::WRITE == 0
        });
        let node = match route.read_from {
            ReadFrom::Primary => primary,
            _ if !read => primary,
            from => match route.replica(backend, self.id) {
                Some(replica) => replica,
                None if from == ReadFrom::PreferReplica => primary,
                None => {
                    return req.reply.send(Bytes::from(format!(
                        "-ERR no replica of {} is up to serve this read (read_from = \"replica\")\r\n",
                        primary.spec.address
                    )));
                }
            },
        };
        if node.state.is_down() {
            return req.reply.send(node.spec.error_reply("is down"));
        }
        self.cluster.get_or_insert_with(Default::default).0.insert(
            (req.reply.seq, req.reply.part),
            Tracked {
                frame: req.frame.clone(),
                replies: req.replies,
                node: node.clone(),
                asking: false,
                redirects: 0,
                waits: 0,
            },
        );
        if let Err(err) = node.link(self.proto, self.id).send(req).await {
            err.0
                .reply
                .send(Bytes::from_static(b"-ERR backend link closed\r\n"));
        }
    }

    /// Looks at a reply from a cluster node: `Some` to go on to the client, `None` when it
    /// was a redirection and the request went out again.
    pub(super) fn intercept(&mut self, mut reply: Reply) -> Option<Reply> {
        let Some(inflight) = self.cluster.as_mut() else {
            return Some(reply);
        };
        let Some(mut t) = inflight.0.remove(&(reply.seq, reply.part)) else {
            return Some(reply);
        };
        if t.asking {
            // ASKING's own +OK comes first.
            let first = split_replies(&reply.frame).next();
            if let Some(r) = first {
                reply.frame = reply.frame.slice(r.end..);
            }
        }
        let Some(redirect) = redirect::find(&reply.frame, t.replies) else {
            return Some(reply);
        };
        let found = redirect_from(&redirect);
        let latest = self.ctx.routing.load();
        let Some(route) = latest.cluster.as_deref() else {
            // No longer a cluster pool: the client gets what the node said.
            return Some(reply);
        };
        route.shared.stats.redirected(redirect.kind());
        let (goal, delay) = match found {
            Found::Redirect { slot, addr, ask } => {
                if t.redirects >= MAX_REDIRECTS {
                    return Some(reply);
                }
                t.redirects += 1;
                if !ask {
                    route.shared.moved(slot, &addr);
                }
                t.asking = ask;
                match route.node(&addr) {
                    Some(node) => (Goal::Node(node.clone()), None),
                    None => {
                        // Not in the map yet (a node just added): the refresh brings it.
                        route.shared.request_refresh();
                        (Goal::Addr(addr), None)
                    }
                }
            }
            Found::Wait => {
                if t.waits >= MAX_WAITS {
                    return Some(reply);
                }
                t.waits += 1;
                (Goal::Node(t.node.clone()), Some(backoff(t.waits)))
            }
        };
        let (frame, replies) = if t.asking {
            let mut f = BytesMut::with_capacity(ASKING.len() + t.frame.len());
            f.extend_from_slice(ASKING);
            f.extend_from_slice(&t.frame);
            (f.freeze(), t.replies + 1)
        } else {
            (t.frame.clone(), t.replies)
        };
        let req = Request {
            frame,
            reply: self.reply_to(reply.seq, reply.part),
            replies,
            blocking: false,
        };
        if let Goal::Node(node) = &goal {
            t.node = node.clone();
        }
        let key = (reply.seq, reply.part);
        if let Some(inflight) = self.cluster.as_mut() {
            inflight.0.insert(key, t);
        }
        match (goal, delay) {
            (Goal::Node(node), None) => {
                if node.state.is_down() {
                    req.reply.send(node.spec.error_reply("is down"));
                    return None;
                }
                match node.link(self.proto, self.id).try_send(req) {
                    Ok(()) => {}
                    Err(TrySendError::Full(req)) => {
                        self.resend_later(Goal::Node(node), Duration::ZERO, req, &reply.frame)
                    }
                    Err(TrySendError::Closed(req)) => req
                        .reply
                        .send(Bytes::from_static(b"-ERR backend link closed\r\n")),
                }
            }
            (goal, delay) => self.resend_later(goal, delay.unwrap_or_default(), req, &reply.frame),
        }
        None
    }

    /// Sends `req` to `goal` after `delay`, from a task of its own. `last` is the reply that
    /// caused the retry, for the error if the goal never appears.
    fn resend_later(&self, goal: Goal, delay: Duration, req: Request, last: &[u8]) {
        let routing = self.ctx.routing.clone();
        let (proto, client) = (self.proto, self.id);
        let text = String::from_utf8_lossy(last.get(1..).unwrap_or_default())
            .trim_end()
            .to_string();
        tokio::spawn(async move {
            sleep(delay).await;
            let node = match goal {
                Goal::Node(node) => node,
                Goal::Addr(addr) => match wait_for_node(&routing, &addr).await {
                    Some(node) => node,
                    None => {
                        return req.reply.send(Bytes::from(format!(
                            "-ERR cluster node {addr} is not in shardis's slot map (after: {text})\r\n"
                        )));
                    }
                },
            };
            send_now(&node, proto, client, req).await;
        });
    }
}

/// What a redirection asks for.
enum Found {
    Redirect { slot: u16, addr: String, ask: bool },
    Wait,
}

fn redirect_from(r: &Redirect) -> Found {
    match r {
        Redirect::Moved { slot, addr } => Found::Redirect {
            slot: *slot,
            addr: addr.clone(),
            ask: false,
        },
        Redirect::Ask { slot, addr } => Found::Redirect {
            slot: *slot,
            addr: addr.clone(),
            ask: true,
        },
        Redirect::TryAgain | Redirect::ClusterDown => Found::Wait,
    }
}

/// The wait before retry number `n` (from 1).
fn backoff(n: u8) -> Duration {
    let factor = 1u32 << (n.saturating_sub(1)).min(8);
    (FIRST_BACKOFF * factor).min(MAX_BACKOFF)
}

/// The node at `addr` once the live table has it, polling for [`UNKNOWN_NODE_WAIT`].
async fn wait_for_node(routing: &Routing, addr: &str) -> Option<Arc<Backend>> {
    let until = Instant::now() + UNKNOWN_NODE_WAIT;
    loop {
        let table = routing.load();
        if let Some(node) = table.cluster.as_deref().and_then(|r| r.node(addr)) {
            return Some(node.clone());
        }
        if Instant::now() >= until {
            return None;
        }
        sleep(UNKNOWN_NODE_POLL).await;
    }
}

async fn send_now(node: &Backend, proto: Proto, client: u64, req: Request) {
    if node.state.is_down() {
        return req.reply.send(node.spec.error_reply("is down"));
    }
    if let Err(err) = node.link(proto, client).send(req).await {
        err.0
            .reply
            .send(Bytes::from_static(b"-ERR backend link closed\r\n"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoffs_grow_and_stay_bounded() {
        let waits: Vec<u128> = (1..=MAX_WAITS).map(|n| backoff(n).as_millis()).collect();
        assert_eq!(waits, [25, 50, 100, 200, 400, 400, 400, 400, 400, 400]);
        assert_eq!(backoff(u8::MAX).as_millis(), 400);
    }
}
