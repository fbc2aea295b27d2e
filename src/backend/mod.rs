//! Backend connections, of three kinds, all opened by one handshake ([`conn`]):
//! - shared links: a few long-lived, pipelined connections per backend and protocol, used by
//!   every session ([`link`], served by [`pipe`]);
//! - exclusive connections: a bounded pool per backend, leased to one session at a time for
//!   blocking commands and WATCH ([`exclusive`]);
//! - the pub/sub subscriber connection, one per backend, multiplexing every subscription
//!   ([`pubsub`]).
//!
//! A [`Backend`] owns all three, its health ([`BackendState`]) and its metrics. Which
//! backend serves a request is [`crate::routing`]'s to say; backends are made from the
//! configuration by [`build`].
//!
//! Sessions send [`Request`]s; each is answered with exactly one reply frame (all of its
//! replies, when it expects several), in order: the backend's, or an error reply if the
//! backend is down, too slow, or the connection broke.

pub mod build;
pub mod conn;
mod error;
pub mod exclusive;
pub mod hold;
mod link;
pub mod pipe;
pub mod pubsub;
pub mod sentinel;
pub mod shard;
mod state;

use std::sync::{Arc, OnceLock};

use arc_swap::ArcSwap;
use bytes::Bytes;
use tokio::sync::mpsc;

pub use error::BackendError;
pub use exclusive::{ExclusiveError, ExclusivePool, Lease};
pub use link::{HealthEvent, Spec};
pub use state::{BackendState, Change};

use crate::config::ReadFrom;
use crate::protocol::out::Proto;

/// Requests a link accepts before senders wait: the bound on a backend's queue.
pub const LINK_QUEUE: usize = 4096;

/// Where a reply goes: the session's inbox, the command's sequence number, and the part of a
/// fanned-out command it answers.
#[derive(Debug, Clone)]
pub struct ReplyTo {
    pub tx: mpsc::UnboundedSender<Inbound>,
    pub seq: u64,
    pub part: u32,
}

impl ReplyTo {
    /// Delivers a reply; a session that has gone away is not an error.
    #[inline]
    pub fn send(self, frame: Bytes) {
        let _ = self.tx.send(Inbound::Reply(Reply {
            seq: self.seq,
            part: self.part,
            frame,
        }));
    }

    /// A destination whose replies nobody reads (requests shardis sends for itself).
    pub fn nowhere() -> ReplyTo {
        let (tx, _) = mpsc::unbounded_channel();
        ReplyTo {
            tx,
            seq: 0,
            part: 0,
        }
    }
}

/// One reply frame for a session.
#[derive(Debug)]
pub struct Reply {
    pub seq: u64,
    pub part: u32,
    pub frame: Bytes,
}

/// What arrives in a session's inbox.
#[derive(Debug)]
pub enum Inbound {
    /// The reply to a request.
    Reply(Reply),
    /// A pub/sub message, already in the session's protocol.
    Push(Bytes),
    /// The subscriptions asked for by command `seq` are active.
    Subscribed { seq: u64 },
    /// The session is dropped by the proxy (a subscriber too slow to keep up).
    Evicted(&'static str),
    /// The other end went away without answering.
    Closed,
}

/// One command for a backend: its complete RESP frame, and where its reply goes.
#[derive(Debug)]
pub struct Request {
    pub frame: Bytes,
    pub reply: ReplyTo,
    /// Replies the frame brings (several for a transaction sent as one batch).
    pub replies: u32,
    /// A blocking command: no timeout but its own.
    pub blocking: bool,
}

impl Request {
    /// A request with one reply and the pool's timeout.
    #[inline]
    pub fn new(frame: Bytes, reply: ReplyTo) -> Request {
        Request {
            frame,
            reply,
            replies: 1,
            blocking: false,
        }
    }
}

/// One backend: its state, its links per protocol (RESP3 ones start on first use), its
/// exclusive connections, and its pub/sub hub.
pub struct Backend {
    pub state: Arc<BackendState>,
    pub spec: Arc<Spec>,
    links: [OnceLock<Box<[mpsc::Sender<Request>]>>; 2],
    connections: usize,
    pub exclusive: Arc<ExclusivePool>,
    pub hub: OnceLock<Arc<pubsub::Hub>>,
    /// What it was built from, so a reload keeps it only when nothing changed.
    pub fingerprint: String,
    /// Where its keyed reads go (a Sentinel-managed shard may send them to its replicas).
    pub read_from: ReadFrom,
    /// Its replicas (a Sentinel-managed shard's), kept current by the topology.
    pub replicas: ArcSwap<Vec<Arc<Backend>>>,
}

impl std::fmt::Debug for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Backend")
            .field("name", &self.state.name)
            .finish()
    }
}

impl Backend {
    /// A backend whose RESP2 links start at once (on the current runtime).
    pub fn start(
        spec: Arc<Spec>,
        connections: usize,
        max_exclusive: usize,
        fingerprint: String,
    ) -> Arc<Backend> {
        let links = Self::spawn_links(&spec, Proto::Resp2, connections);
        let unblock = links[0].clone();
        let spec_read_from = spec.read_from;
        let backend = Backend {
            state: spec.state.clone(),
            exclusive: ExclusivePool::new(spec.clone(), max_exclusive, unblock),
            spec,
            links: [OnceLock::from(links), OnceLock::new()],
            connections,
            hub: OnceLock::new(),
            fingerprint,
            read_from: spec_read_from,
            replicas: ArcSwap::from_pointee(Vec::new()),
        };
        Arc::new(backend)
    }

    /// A backend whose links are one queue, for both protocols, that the caller reads: for
    /// benches and tests of the data path without sockets.
    pub fn detached(spec: Arc<Spec>) -> (Arc<Backend>, mpsc::Receiver<Request>) {
        let (tx, rx) = mpsc::channel(LINK_QUEUE);
        let links: Box<[mpsc::Sender<Request>]> = Box::new([tx.clone()]);
        let backend = Backend {
            state: spec.state.clone(),
            exclusive: ExclusivePool::new(spec.clone(), 1, tx),
            spec,
            links: [OnceLock::from(links.clone()), OnceLock::from(links)],
            connections: 1,
            hub: OnceLock::new(),
            fingerprint: String::new(),
            read_from: ReadFrom::Primary,
            replicas: ArcSwap::from_pointee(Vec::new()),
        };
        (Arc::new(backend), rx)
    }

    /// The link a client uses for `proto`: one of the calling worker's own links (a session
    /// never leaves its worker). A client always uses the same link to a backend, so its
    /// commands to that backend run in the order it sent them.
    #[inline]
    pub fn link(&self, proto: Proto, client_id: u64) -> &mpsc::Sender<Request> {
        let links = self.links[proto.index()]
            .get_or_init(|| Self::spawn_links(&self.spec, proto, self.connections));
        let n = self.connections.max(1);
        let index = crate::workers::current() * n + (client_id % n as u64) as usize;
        links.get(index).unwrap_or(&links[0])
    }

    /// `n` links per worker, each started on its worker: worker `w`'s are at `w * n..`.
    fn spawn_links(spec: &Arc<Spec>, proto: Proto, n: usize) -> Box<[mpsc::Sender<Request>]> {
        let n = n.max(1);
        (0..crate::workers::count() * n)
            .map(|i| {
                let (tx, rx) = mpsc::channel(LINK_QUEUE);
                crate::workers::spawn_on(i / n, link::run(spec.clone(), proto, rx));
                tx
            })
            .collect()
    }

    /// Whether a request for this backend is answered with an error at once: it is marked
    /// down and does not hold requests (see [`hold`]).
    #[inline]
    pub fn refuses(&self) -> bool {
        self.state.is_down() && !self.spec.holding()
    }

    /// A replica that is not down for a keyed read of `client`, the same one as long as the
    /// replicas stay.
    pub fn replica(&self, client: u64) -> Option<Arc<Backend>> {
        let all = self.replicas.load();
        let up = all.iter().filter(|b| !b.state.is_down()).count();
        if up == 0 {
            return None;
        }
        let pick = (client % up as u64) as usize;
        all.iter().filter(|b| !b.state.is_down()).nth(pick).cloned()
    }

    /// The pub/sub hub of this backend, started on first use.
    pub fn hub(&self) -> &Arc<pubsub::Hub> {
        self.hub
            .get_or_init(|| pubsub::Hub::start(self.spec.clone()))
    }
}
