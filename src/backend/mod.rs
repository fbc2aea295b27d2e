//! Backend links: a few long-lived, pipelined connections per backend, shared by every session
//! on every thread. Sessions send [`Request`]s; each link writes them in batches and answers
//! each with exactly one [`Reply`], in order: the backend's reply, or an error reply if the
//! backend is down, too slow, or the link broke.

mod link;
mod state;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::mpsc;

pub use state::BackendState;

use crate::config::PoolConfig;
use crate::metrics::Metrics;
use crate::router::Ring;

/// Requests a link accepts before senders wait: the bound on a backend's queue.
pub const LINK_QUEUE: usize = 4096;

/// Where a reply goes: the session's inbox, the command's sequence number, and the part of a
/// fanned-out command it answers.
#[derive(Debug, Clone)]
pub struct ReplyTo {
    pub tx: mpsc::UnboundedSender<Reply>,
    pub seq: u64,
    pub part: u32,
}

impl ReplyTo {
    /// Delivers a reply; a session that has gone away is not an error.
    #[inline]
    pub fn send(self, frame: Bytes) {
        let _ = self.tx.send(Reply {
            seq: self.seq,
            part: self.part,
            frame,
        });
    }
}

/// One reply frame for a session.
#[derive(Debug)]
pub struct Reply {
    pub seq: u64,
    pub part: u32,
    pub frame: Bytes,
}

/// One command for a backend: its complete RESP frame, and where its reply goes.
#[derive(Debug)]
pub struct Request {
    pub frame: Bytes,
    pub reply: ReplyTo,
}

/// One backend: its shared state and the senders of its links.
#[derive(Debug)]
pub struct Backend {
    pub state: Arc<BackendState>,
    links: Box<[mpsc::Sender<Request>]>,
}

impl Backend {
    /// The link a client uses. A client always uses the same link to a backend, so its
    /// commands to that backend run in the order it sent them.
    #[inline]
    pub fn link(&self, client_id: u64) -> &mpsc::Sender<Request> {
        &self.links[(client_id % self.links.len() as u64) as usize]
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
    /// Builds the ring and spawns `connections_per_backend` link tasks per backend on the
    /// current runtime. Links stop when every sender (the pool and all sessions) is gone.
    pub fn start(cfg: &PoolConfig, metrics: Arc<Metrics>) -> Pool {
        let backends = cfg
            .backends
            .iter()
            .enumerate()
            .map(|(index, b)| {
                let state = Arc::new(BackendState::new(b.name.clone(), b.address.to_string()));
                let links = (0..cfg.connections_per_backend.get())
                    .map(|_| {
                        let (tx, rx) = mpsc::channel(LINK_QUEUE);
                        let link = link::Link::new(index, b, cfg, state.clone(), metrics.clone());
                        tokio::spawn(link.run(rx));
                        tx
                    })
                    .collect();
                Backend { state, links }
            })
            .collect();
        Pool {
            name: cfg.name.clone(),
            ring: Ring::new(cfg),
            backends,
            timeout: cfg.timeout,
        }
    }

    /// A pool whose links are not started: every backend gets one queue, and the caller
    /// receives what sessions send to it. For benches and tests of the data path without
    /// sockets.
    pub fn detached(cfg: &PoolConfig) -> (Pool, Vec<mpsc::Receiver<Request>>) {
        let mut receivers = Vec::with_capacity(cfg.backends.len());
        let backends = cfg
            .backends
            .iter()
            .map(|b| {
                let (tx, rx) = mpsc::channel(LINK_QUEUE);
                receivers.push(rx);
                Backend {
                    state: Arc::new(BackendState::new(b.name.clone(), b.address.to_string())),
                    links: Box::new([tx]),
                }
            })
            .collect();
        let pool = Pool {
            name: cfg.name.clone(),
            ring: Ring::new(cfg),
            backends,
            timeout: cfg.timeout,
        };
        (pool, receivers)
    }

    /// Shared states of all backends, in configuration order.
    pub fn states(&self) -> Vec<Arc<BackendState>> {
        self.backends.iter().map(|b| b.state.clone()).collect()
    }
}
