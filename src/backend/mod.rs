//! Backend connections, of three kinds, all opened by one handshake ([`conn`]):
//! - shared links: a few long-lived, pipelined connections per backend and protocol, used by
//!   every session ([`link`], served by [`pipe`]);
//! - exclusive connections: a bounded pool per backend, leased to one session at a time for
//!   blocking commands and WATCH ([`exclusive`]);
//! - the pub/sub subscriber connection, one per backend, multiplexing every subscription
//!   ([`crate::pubsub`]).
//!
//! Sessions send [`Request`]s; each is answered with exactly one reply frame (all of its
//! replies, when it expects several), in order: the backend's, or an error reply if the
//! backend is down, too slow, or the connection broke.

pub mod conn;
pub mod exclusive;
mod link;
pub mod pipe;
mod state;

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::mpsc;

pub use exclusive::{ExclusiveError, ExclusivePool, Lease};
pub use link::Spec;
pub use state::BackendState;

use crate::config::PoolConfig;
use crate::metrics::Metrics;
use crate::protocol::out::Proto;
use crate::router::Ring;
use conn::Target;

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
    pub hub: OnceLock<Arc<crate::pubsub::Hub>>,
}

impl std::fmt::Debug for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Backend")
            .field("name", &self.state.name)
            .finish()
    }
}

impl Backend {
    /// The link a client uses for `proto`. A client always uses the same link to a backend,
    /// so its commands to that backend run in the order it sent them.
    #[inline]
    pub fn link(&self, proto: Proto, client_id: u64) -> &mpsc::Sender<Request> {
        let links = self.links[proto.index()].get_or_init(|| self.start_links(proto));
        &links[(client_id % links.len() as u64) as usize]
    }

    fn start_links(&self, proto: Proto) -> Box<[mpsc::Sender<Request>]> {
        (0..self.connections)
            .map(|_| {
                let (tx, rx) = mpsc::channel(LINK_QUEUE);
                tokio::spawn(link::run(self.spec.clone(), proto, rx));
                tx
            })
            .collect()
    }

    /// The pub/sub hub of this backend, started on first use.
    pub fn hub(&self) -> &Arc<crate::pubsub::Hub> {
        self.hub
            .get_or_init(|| crate::pubsub::Hub::start(self.spec.clone()))
    }
}

/// A routing table: the ring and the backends it points at. Built once; a reload builds a
/// new one and swaps it whole.
pub struct Pool {
    pub name: String,
    pub ring: Ring,
    pub backends: Vec<Backend>,
    pub timeout: Duration,
}

impl Pool {
    /// Builds the ring and starts `connections_per_backend` RESP2 links per backend on the
    /// current runtime (RESP3 links start when a RESP3 client first needs them). Links stop
    /// when every sender (the pool and all sessions) is gone.
    pub fn start(cfg: &PoolConfig, metrics: Arc<Metrics>) -> Pool {
        Pool::build(cfg, metrics, |backend| {
            let links = backend.start_links(Proto::Resp2);
            let _ = backend.links[Proto::Resp2.index()].set(links);
        })
    }

    /// A pool whose links are not started: every backend gets one queue for both protocols,
    /// and the caller receives what sessions send to it. For benches and tests of the data
    /// path without sockets.
    pub fn detached(cfg: &PoolConfig) -> (Pool, Vec<mpsc::Receiver<Request>>) {
        let metrics = Arc::new(Metrics::new(&[], &[]));
        let mut receivers = Vec::with_capacity(cfg.backends.len());
        let pool = Pool::build(cfg, metrics, |backend| {
            let (tx, rx) = mpsc::channel(LINK_QUEUE);
            receivers.push(rx);
            for links in &backend.links {
                let _ = links.set(Box::new([tx.clone()]));
            }
        });
        (pool, receivers)
    }

    fn build(cfg: &PoolConfig, metrics: Arc<Metrics>, mut links: impl FnMut(&Backend)) -> Pool {
        let backends = cfg
            .backends
            .iter()
            .enumerate()
            .map(|(index, b)| {
                let state = Arc::new(BackendState::new(b.name.clone(), b.address.to_string()));
                let target = Target {
                    host: b.address.host.clone(),
                    port: b.address.port,
                    connect_timeout: cfg.connect_timeout,
                };
                let spec = Arc::new(Spec::new(
                    index,
                    &b.name,
                    &b.address.to_string(),
                    target,
                    cfg.timeout,
                    state.clone(),
                    metrics.clone(),
                ));
                let backend_links = [OnceLock::new(), OnceLock::new()];
                // The exclusive pool's CLIENT UNBLOCK goes out on a RESP2 link; it is wired
                // below, once the links exist.
                let (placeholder, _) = mpsc::channel(1);
                let mut backend = Backend {
                    state,
                    spec: spec.clone(),
                    links: backend_links,
                    connections: cfg.connections_per_backend.get(),
                    exclusive: ExclusivePool::new(spec.clone(), cfg.max_exclusive, placeholder),
                    hub: OnceLock::new(),
                };
                links(&backend);
                let unblock = backend.links[Proto::Resp2.index()]
                    .get()
                    .and_then(|l| l.first().cloned());
                if let Some(unblock) = unblock {
                    backend.exclusive = ExclusivePool::new(spec, cfg.max_exclusive, unblock);
                }
                backend
            })
            .collect();
        Pool {
            name: cfg.name.clone(),
            ring: Ring::new(cfg),
            backends,
            timeout: cfg.timeout,
        }
    }

    /// Shared states of all backends, in configuration order.
    pub fn states(&self) -> Vec<Arc<BackendState>> {
        self.backends.iter().map(|b| b.state.clone()).collect()
    }
}
