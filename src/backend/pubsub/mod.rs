//! Pub/sub, multiplexed: one subscriber connection per backend ([`Hub`]) carries every
//! subscription of every session, and shardis fans each message out to the sessions that asked
//! for it. However many clients subscribe, each backend sees one subscriber connection.
//!
//! A channel lives on the backend its name hashes to (as a key does), so PUBLISH reaches the
//! hub that subscribed it; a pattern is subscribed on every backend. A session's subscription
//! is confirmed to it once its hub's subscription is active on the backend, so a message
//! published after the confirmation reaches it. A subscriber that does not read its messages
//! gets at most `max_subscriber_output_bytes` queued, then it is disconnected and counted, as
//! Redis does with `client-output-buffer-limit pubsub`.

mod hub;

use std::sync::atomic::{AtomicBool, AtomicU8, AtomicUsize, Ordering};

use tokio::sync::mpsc;

pub use hub::Hub;

use crate::backend::Inbound;
use crate::protocol::out::Proto;

/// One session as the hubs see it: where its messages go and how many bytes of them wait.
#[derive(Debug)]
pub struct Subscriber {
    pub id: u64,
    tx: mpsc::UnboundedSender<Inbound>,
    proto: AtomicU8,
    /// Bytes of messages sent to the session and not yet written to its socket.
    queued: AtomicUsize,
    limit: usize,
    evicted: AtomicBool,
}

impl Subscriber {
    pub fn new(id: u64, tx: mpsc::UnboundedSender<Inbound>, proto: Proto, limit: usize) -> Self {
        Subscriber {
            id,
            tx,
            proto: AtomicU8::new(proto as u8),
            queued: AtomicUsize::new(0),
            limit,
            evicted: AtomicBool::new(false),
        }
    }

    pub fn proto(&self) -> Proto {
        match self.proto.load(Ordering::Relaxed) {
            0 => Proto::Resp2,
            _ => Proto::Resp3,
        }
    }

    /// The session switched protocol (HELLO).
    pub fn set_proto(&self, proto: Proto) {
        self.proto.store(proto as u8, Ordering::Relaxed);
    }

    /// Bytes of messages sent to the session and not yet moved to its output buffer: they
    /// count in `max_client_memory` with the session's other buffers.
    pub fn queued(&self) -> usize {
        self.queued.load(Ordering::Relaxed)
    }

    /// The session wrote `n` bytes of messages to its client.
    pub fn written(&self, n: usize) {
        self.queued.fetch_sub(
            n.min(self.queued.load(Ordering::Relaxed)),
            Ordering::Relaxed,
        );
    }

    /// Queues one message frame; past the limit the session is evicted instead (once).
    /// Returns false once the session is evicted.
    fn deliver(&self, frame: &bytes::Bytes) -> bool {
        if self.evicted.load(Ordering::Relaxed) {
            return false;
        }
        let queued = self.queued.fetch_add(frame.len(), Ordering::Relaxed) + frame.len();
        if queued > self.limit {
            self.evicted.store(true, Ordering::Relaxed);
            crate::metrics::slow_subscriber();
            let _ = self.tx.send(Inbound::Evicted(
                "output buffer of a slow subscriber over max_subscriber_output_bytes",
            ));
            return false;
        }
        self.tx.send(Inbound::Push(frame.clone())).is_ok()
    }

    fn subscribed(&self, seq: u64) {
        let _ = self.tx.send(Inbound::Subscribed { seq });
    }
}

/// What a PUBLISH reaching one hub's backend counts, and what it should count: the backend
/// counts the hub's subscriber connection (once per channel and per matching pattern); the
/// client should see the sessions behind it.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Receivers {
    /// Receivers the backend counts for this hub.
    pub hub: i64,
    /// Sessions that receive the message through this hub.
    pub sessions: i64,
}

impl Receivers {
    /// The backend's count corrected to count sessions instead of the hub.
    pub fn correct(&self, backend_count: i64) -> i64 {
        (backend_count - self.hub + self.sessions).max(0)
    }
}
