//! Following up a backend's reply: one path for every reply that says "send it elsewhere"
//! or "not now" before it may reach the client.
//!
//! A session keeps every request it sends ([`Sent`]: its backend, its refcounted frame, and
//! its pool's [`Retry`]) until the reply is in, and asks [`next`] what the reply means:
//! - a hashed pool's reply is delivered as it is (`Retry::Never`: one comparison);
//! - a cluster node's `-MOVED slot addr` corrects the map (at once, and by a coalesced fetch)
//!   and sends the request to `addr`; `-ASK slot addr` sends `ASKING` and the request to
//!   `addr` as one frame, so nothing comes between them; `-TRYAGAIN` (a multi-key request
//!   while its slot migrates) and `-CLUSTERDOWN` (a failover) send it again to the same node
//!   after a backoff. A transaction batch whose commands were redirected while queueing was
//!   discarded by the node (`-EXECABORT`), so it is sent again whole.
//!
//! A request is redirected at most [`MAX_REDIRECTS`] times and waits at most [`MAX_WAITS`]
//! backoffs; past that the client gets the node's last reply. The migration of a hashed pool
//! (moving a key to its new owner before the request runs there) is the next kind of
//! follow-up to join this one.

use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::time::{Instant, sleep};

use super::{Routing, Table};
use crate::backend::Backend;
use crate::cluster::redirect::{self, Redirect};
use crate::cluster::{Route, Shared};
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

/// How the replies of a request are followed up: its pool's kind.
#[derive(Clone, Default)]
pub enum Retry {
    /// The reply goes to the client as it is (a hashed pool, an exclusive connection).
    #[default]
    Never,
    /// A cluster node's reply: redirections are followed, waits waited out. `shared` is the
    /// cluster pool's (it outlives reloads); the counters say what was done so far.
    Cluster {
        shared: Arc<Shared>,
        /// It went after `ASKING`: its reply starts with `ASKING`'s.
        asking: bool,
        redirects: u8,
        waits: u8,
    },
}

impl Retry {
    /// A first request to a node of the cluster pool that `shared` belongs to.
    pub fn cluster(shared: &Arc<Shared>) -> Retry {
        Retry::Cluster {
            shared: shared.clone(),
            asking: false,
            redirects: 0,
            waits: 0,
        }
    }
}

/// A request in flight, as the session keeps it until its reply is in.
pub struct Sent {
    /// Where it went last.
    pub backend: Arc<Backend>,
    /// As the session sent it (without `ASKING`); refcounted, not copied.
    pub frame: Bytes,
    /// Replies the frame brings (several for a transaction sent as one batch).
    pub replies: u32,
    pub retry: Retry,
}

impl Sent {
    /// A request whose reply goes to the client as it is, whatever its pool: one on an
    /// exclusive connection (the client's alone; nothing is retried on it), or a control
    /// command (CLIENT UNBLOCK).
    pub fn plain(backend: Arc<Backend>, req: &crate::backend::Request) -> Sent {
        Sent {
            backend,
            frame: req.frame.clone(),
            replies: req.replies,
            retry: Retry::Never,
        }
    }
}

/// What becomes of a reply.
pub enum Next {
    /// It goes to the client.
    Deliver(Bytes),
    /// The request goes out again: to `goal`, after `delay`, as `frame` bringing `replies`
    /// replies. `reply` is the one that caused it, for the error if the goal never appears.
    Resend {
        goal: Goal,
        frame: Bytes,
        replies: u32,
        delay: Duration,
        reply: Bytes,
    },
}

/// Where a request goes again.
pub enum Goal {
    Node(Arc<Backend>),
    /// A node the table did not have when the redirection came: looked up again in the
    /// cluster pool of `shared`, for a while ([`node_when_known`]).
    Addr {
        addr: String,
        shared: Arc<Shared>,
    },
}

/// The reply `reply` to `sent` (its backend and counters updated when the request goes out
/// again). `latest` is the table in force, whose slot map a redirection is read against.
pub fn next(sent: &mut Sent, mut reply: Bytes, latest: &Table) -> Next {
    let Retry::Cluster {
        shared,
        asking,
        redirects,
        waits,
    } = &mut sent.retry
    else {
        return Next::Deliver(reply);
    };
    if *asking {
        // ASKING's own +OK comes first.
        let first = split_replies(&reply).next();
        if let Some(r) = first {
            reply = reply.slice(r.end..);
        }
    }
    let Some(redirect) = redirect::find(&reply, sent.replies) else {
        return Next::Deliver(reply);
    };
    let Some(route) = route_of(latest, shared) else {
        // No longer a cluster pool: the client gets what the node said.
        return Next::Deliver(reply);
    };
    shared.stats.redirected(redirect.kind());
    let ask = redirect.kind() == redirect::Kind::Ask;
    let (goal, delay) = match redirect {
        Redirect::Moved { slot, addr } | Redirect::Ask { slot, addr }
            if *redirects < MAX_REDIRECTS =>
        {
            *redirects += 1;
            *asking = ask;
            if !*asking {
                shared.moved(slot, &addr);
            }
            match route.node(&addr) {
                Some(node) => (Goal::Node(node.clone()), Duration::ZERO),
                None => {
                    // Not in the map yet (a node just added): the refresh brings it.
                    shared.request_refresh();
                    let shared = shared.clone();
                    (Goal::Addr { addr, shared }, Duration::ZERO)
                }
            }
        }
        Redirect::TryAgain | Redirect::ClusterDown if *waits < MAX_WAITS => {
            *waits += 1;
            (Goal::Node(sent.backend.clone()), backoff(*waits))
        }
        // Followed as often as it may be: the client gets the node's last reply.
        _ => return Next::Deliver(reply),
    };
    if let Goal::Node(node) = &goal {
        sent.backend = node.clone();
    }
    let (frame, replies) = if *asking {
        let mut f = BytesMut::with_capacity(ASKING.len() + sent.frame.len());
        f.extend_from_slice(ASKING);
        f.extend_from_slice(&sent.frame);
        (f.freeze(), sent.replies + 1)
    } else {
        (sent.frame.clone(), sent.replies)
    };
    Next::Resend {
        goal,
        frame,
        replies,
        delay,
        reply,
    }
}

/// The slot map of the cluster pool whose shared state is `shared`, in `table`.
fn route_of<'t>(table: &'t Table, shared: &Arc<Shared>) -> Option<&'t Route> {
    table
        .pools
        .iter()
        .filter_map(|p| p.cluster_route())
        .find(|r| Arc::ptr_eq(&r.shared, shared))
}

/// The wait before retry number `n` (from 1).
fn backoff(n: u8) -> Duration {
    let factor = 1u32 << (n.saturating_sub(1)).min(8);
    (FIRST_BACKOFF * factor).min(MAX_BACKOFF)
}

/// The node at `addr` of the cluster pool of `shared`, once the live table has it, polling
/// for [`UNKNOWN_NODE_WAIT`].
pub async fn node_when_known(
    routing: &Routing,
    shared: &Arc<Shared>,
    addr: &str,
) -> Option<Arc<Backend>> {
    let until = Instant::now() + UNKNOWN_NODE_WAIT;
    loop {
        let table = routing.load();
        if let Some(node) = route_of(&table, shared).and_then(|r| r.node(addr)) {
            return Some(node.clone());
        }
        if Instant::now() >= until {
            return None;
        }
        sleep(UNKNOWN_NODE_POLL).await;
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

    #[test]
    fn a_hashed_pool_reply_is_delivered_as_it_is() {
        let cfg = crate::config::Config::from_backends(&["127.0.0.1:1".to_string()]).unwrap();
        let (table, _rx) = Table::detached(&cfg.pools[0]);
        let backend = table.pools[0].backends[0].clone();
        let mut sent = Sent {
            backend,
            frame: Bytes::from_static(b"*1\r\n$4\r\nPING\r\n"),
            replies: 1,
            retry: Retry::Never,
        };
        let moved = Bytes::from_static(b"-MOVED 1 127.0.0.1:2\r\n");
        assert!(matches!(next(&mut sent, moved.clone(), &table), Next::Deliver(r) if r == moved));
    }
}
