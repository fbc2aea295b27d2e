//! One backend's subscriber connection and the subscriptions it carries.
//!
//! Sessions register and unregister under a lock ([`Hub::subscribe`], [`Hub::unsubscribe`]);
//! the hub's task owns the connection: it writes (P|S)(UN)SUBSCRIBE for the topics that gain
//! their first or lose their last session, and reads the backend's pushes, fanning messages
//! out to the sessions of their topic. When the connection breaks, it reconnects with backoff
//! and subscribes every topic again.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use redis_protocol::resp3::decode::complete::decode_range;
use redis_protocol::resp3::types::RangeFrame;
use tokio::sync::mpsc;
use tracing::{debug, warn};

use super::{Receivers, Subscriber};
use crate::backend::Spec;
use crate::backend::conn;
use crate::net::{Stream, read_once, write_front};
use crate::protocol::command::Channels;
use crate::protocol::glob;
use crate::protocol::out::{Proto, push_as_array};
use crate::protocol::reply::{ReplyScanner, decodable, put_array_len, put_bulk};

const MIN_BACKOFF: Duration = Duration::from_millis(50);
const MAX_BACKOFF: Duration = Duration::from_secs(2);

/// Sessions of one channel, pattern or shard channel.
#[derive(Default)]
struct Topic {
    sessions: HashMap<u64, Arc<Subscriber>>,
    /// The backend confirmed the subscription (and counts the hub as a receiver).
    active: bool,
    /// Sessions waiting for that confirmation, with the sequence number of their command.
    waiting: Vec<(Arc<Subscriber>, u64)>,
    /// The last session left and the hub unsubscribed; kept until the backend confirms, since
    /// until then the backend may still count the hub as a receiver.
    leaving: bool,
}

#[derive(Default)]
struct Topics {
    plain: HashMap<Bytes, Topic>,
    pattern: HashMap<Bytes, Topic>,
    shard: HashMap<Bytes, Topic>,
}

impl Topics {
    fn of(&mut self, kind: Channels) -> &mut HashMap<Bytes, Topic> {
        match kind {
            Channels::Plain => &mut self.plain,
            Channels::Pattern => &mut self.pattern,
            Channels::Shard => &mut self.shard,
        }
    }
}

/// One backend's pub/sub connection.
pub struct Hub {
    spec: Arc<Spec>,
    topics: Mutex<Topics>,
    /// Frames for the task to write: (P|S)(UN)SUBSCRIBE.
    commands: mpsc::UnboundedSender<Bytes>,
}

impl Hub {
    /// Starts the hub of one backend (its connection opens at once).
    pub fn start(spec: Arc<Spec>) -> Arc<Hub> {
        let (tx, rx) = mpsc::unbounded_channel();
        let hub = Arc::new(Hub {
            spec,
            topics: Mutex::new(Topics::default()),
            commands: tx,
        });
        tokio::spawn(run(Arc::downgrade(&hub), rx));
        hub
    }

    fn lock(&self) -> MutexGuard<'_, Topics> {
        self.topics.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Adds `sub` to topic `name`. True when the topic is already active on the backend;
    /// otherwise `sub` gets [`crate::backend::Inbound::Subscribed`] with `seq` once it is.
    pub fn subscribe(&self, kind: Channels, name: &Bytes, sub: &Arc<Subscriber>, seq: u64) -> bool {
        let mut topics = self.lock();
        let map = topics.of(kind);
        let new = !map.contains_key(name);
        let topic = map.entry(name.clone()).or_default();
        topic.sessions.insert(sub.id, sub.clone());
        if topic.leaving {
            // Its UNSUBSCRIBE is on the way: subscribe again after it.
            topic.leaving = false;
            topic.active = false;
        } else if topic.active {
            return true;
        } else if !new {
            // Its SUBSCRIBE is on the way.
            topic.waiting.push((sub.clone(), seq));
            return false;
        }
        topic.waiting.push((sub.clone(), seq));
        let _ = self.commands.send(command(subscribe_verb(kind), name));
        false
    }

    /// Removes session `id` from topic `name`; the last one out unsubscribes the backend.
    pub fn unsubscribe(&self, kind: Channels, name: &[u8], id: u64) {
        let mut topics = self.lock();
        let map = topics.of(kind);
        let Some(topic) = map.get_mut(name) else {
            return;
        };
        topic.sessions.remove(&id);
        topic.waiting.retain(|(s, _)| s.id != id);
        if topic.sessions.is_empty() && !topic.leaving {
            topic.leaving = true;
            let _ = self.commands.send(command(unsubscribe_verb(kind), name));
        }
    }

    /// Who receives a message published on `channel` through this hub's backend.
    pub fn receivers(&self, kind: Channels, channel: &[u8]) -> Receivers {
        let mut topics = self.lock();
        let mut r = Receivers::default();
        let own = match kind {
            Channels::Shard => Channels::Shard,
            _ => Channels::Plain,
        };
        if let Some(t) = topics.of(own).get(channel) {
            r.hub += t.active as i64;
            r.sessions += t.sessions.len() as i64;
        }
        if kind == Channels::Plain {
            for (pattern, t) in &topics.pattern {
                if glob::matches(pattern, channel) {
                    r.hub += t.active as i64;
                    r.sessions += t.sessions.len() as i64;
                }
            }
        }
        r
    }

    /// For PUBSUB NUMSUB: whether the backend counts the hub for `channel`, and the sessions
    /// subscribed to it through this hub.
    pub fn numsub(&self, kind: Channels, channel: &[u8]) -> Receivers {
        let mut topics = self.lock();
        topics
            .of(kind)
            .get(channel)
            .map_or_else(Receivers::default, |t| Receivers {
                hub: t.active as i64,
                sessions: t.sessions.len() as i64,
            })
    }

    /// For PUBSUB NUMPAT: the patterns the backend counts for this hub, and the distinct
    /// patterns sessions subscribed to through it.
    pub fn numpat(&self) -> Receivers {
        let mut topics = self.lock();
        let map = topics.of(Channels::Pattern);
        Receivers {
            hub: map.values().filter(|t| t.active).count() as i64,
            sessions: map.values().filter(|t| !t.sessions.is_empty()).count() as i64,
        }
    }

    /// Delivers one message to the sessions of its topic(s).
    fn fan_out(&self, kind: Channels, topic: &[u8], frame: &Bytes) {
        let mut as_array: Option<Bytes> = None;
        let mut topics = self.lock();
        let Some(t) = topics.of(kind).get_mut(topic) else {
            return;
        };
        t.sessions.retain(|_, sub| {
            let frame = match sub.proto() {
                Proto::Resp3 => frame,
                Proto::Resp2 => as_array.get_or_insert_with(|| {
                    let mut v = frame.to_vec();
                    push_as_array(&mut v);
                    Bytes::from(v)
                }),
            };
            sub.deliver(frame)
        });
    }

    /// The backend confirmed an unsubscription: a topic nobody came back to is gone.
    fn left(&self, kind: Channels, topic: &[u8]) {
        let mut topics = self.lock();
        let map = topics.of(kind);
        if map
            .get(topic)
            .is_some_and(|t| t.leaving && t.sessions.is_empty())
        {
            map.remove(topic);
        }
    }

    /// The backend confirmed a subscription: the topic is active and its waiters are told.
    fn confirmed(&self, kind: Channels, topic: &[u8]) {
        let mut topics = self.lock();
        if let Some(t) = topics.of(kind).get_mut(topic) {
            t.active = true;
            for (sub, seq) in t.waiting.drain(..) {
                sub.subscribed(seq);
            }
        }
    }

    /// A new connection: every topic waits for its confirmation again; returns the commands
    /// that subscribe them all.
    fn resubscribe(&self) -> Vec<Bytes> {
        let mut topics = self.lock();
        let mut again = Vec::new();
        for kind in [Channels::Plain, Channels::Pattern, Channels::Shard] {
            let map = topics.of(kind);
            map.retain(|_, t| !t.leaving);
            for (name, t) in map.iter_mut() {
                t.active = false;
                again.push(command(subscribe_verb(kind), name));
            }
        }
        again
    }

    /// The connection is gone or cannot be opened: sessions waiting for a confirmation are
    /// released (their subscription activates when the backend is back), so that no client
    /// waits on an outage.
    fn disconnected(&self) {
        let mut topics = self.lock();
        for kind in [Channels::Plain, Channels::Pattern, Channels::Shard] {
            let map = topics.of(kind);
            map.retain(|_, t| !t.leaving);
            for t in map.values_mut() {
                t.active = false;
                for (sub, seq) in t.waiting.drain(..) {
                    sub.subscribed(seq);
                }
            }
        }
    }
}

fn subscribe_verb(kind: Channels) -> &'static [u8] {
    match kind {
        Channels::Plain => b"SUBSCRIBE",
        Channels::Pattern => b"PSUBSCRIBE",
        Channels::Shard => b"SSUBSCRIBE",
    }
}

fn unsubscribe_verb(kind: Channels) -> &'static [u8] {
    match kind {
        Channels::Plain => b"UNSUBSCRIBE",
        Channels::Pattern => b"PUNSUBSCRIBE",
        Channels::Shard => b"SUNSUBSCRIBE",
    }
}

fn command(verb: &[u8], name: &[u8]) -> Bytes {
    let mut out = BytesMut::with_capacity(32 + name.len());
    put_array_len(&mut out, 2);
    put_bulk(&mut out, verb);
    put_bulk(&mut out, name);
    out.freeze()
}

/// The hub's task: runs while the hub exists.
async fn run(hub: std::sync::Weak<Hub>, mut commands: mpsc::UnboundedReceiver<Bytes>) {
    let mut backoff = MIN_BACKOFF;
    loop {
        let Some(h) = hub.upgrade() else { return };
        let spec = h.spec.clone();
        drop(h);
        match conn::open(&spec.target_now(), Proto::Resp3).await {
            Ok(c) => {
                backoff = MIN_BACKOFF;
                let Some(h) = hub.upgrade() else { return };
                // Everything is subscribed again on the new connection; the commands queued
                // meanwhile are superseded by that.
                while commands.try_recv().is_ok() {}
                let mut wbuf = BytesMut::new();
                for frame in h.resubscribe() {
                    wbuf.extend_from_slice(&frame);
                }
                drop(h);
                let mut moves = spec.moves.subscribe();
                moves.borrow_and_update();
                match serve(&hub, &c.stream, &mut commands, wbuf, &mut moves).await {
                    Ok(()) => return,
                    Err(e) => warn!(backend = %spec.name, "pub/sub connection ended: {e}"),
                }
            }
            Err(e) => debug!(backend = %spec.name, "pub/sub connection failed: {e}"),
        }
        if let Some(h) = hub.upgrade() {
            h.disconnected();
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

/// Serves one connection; `Ok` when the hub is gone, `Err` when the connection failed.
async fn serve(
    hub: &std::sync::Weak<Hub>,
    sock: &Stream,
    commands: &mut mpsc::UnboundedReceiver<Bytes>,
    mut wbuf: BytesMut,
    moves: &mut tokio::sync::watch::Receiver<u64>,
) -> Result<(), String> {
    let mut rbuf = BytesMut::with_capacity(16 * 1024);
    let mut scanner = ReplyScanner::new();
    loop {
        if !wbuf.is_empty() {
            write_front(sock, &mut wbuf).map_err(|e| e.to_string())?;
        }
        tokio::select! {
            ready = sock.readable() => {
                ready.map_err(|e| e.to_string())?;
                if rbuf.capacity() - rbuf.len() < 4096 {
                    rbuf.reserve(16 * 1024.max(rbuf.len()));
                }
                match read_once(sock, &mut rbuf) {
                    Ok(0) => return Err("closed by backend".into()),
                    Ok(_) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
                    Err(e) => return Err(e.to_string()),
                }
                let Some(h) = hub.upgrade() else { return Ok(()) };
                while let Some(len) = scanner.scan(&rbuf).map_err(|e| e.to_string())? {
                    let frame = rbuf.split_to(len).freeze();
                    handle(&h, frame);
                }
            }
            ready = sock.writable(), if !wbuf.is_empty() => {
                ready.map_err(|e| e.to_string())?;
            }
            cmd = commands.recv() => match cmd {
                Some(frame) => wbuf.extend_from_slice(&frame),
                None => return Ok(()),
            },
            Ok(()) = moves.changed() => return Err("the backend's address changed".into()),
        }
    }
}

/// One frame from the backend: a message to fan out, a confirmation, or anything else
/// (logged and dropped).
fn handle(hub: &Hub, frame: Bytes) {
    let decoded = if decodable(&frame) {
        decode_range(&frame)
    } else {
        Ok(None)
    };
    let Ok(Some((RangeFrame::Push { data, .. }, _))) = decoded else {
        debug!(backend = %hub.spec.name, "pub/sub: unexpected frame {:?}", String::from_utf8_lossy(&frame[..frame.len().min(80)]));
        return;
    };
    let text = |i: usize| -> Option<&[u8]> {
        match data.get(i)? {
            RangeFrame::BlobString { data, .. } | RangeFrame::SimpleString { data, .. } => {
                frame.get(data.0..data.1)
            }
            _ => None,
        }
    };
    let (Some(kind), Some(topic)) = (text(0), text(1)) else {
        return;
    };
    match kind {
        b"message" => hub.fan_out(Channels::Plain, topic, &frame),
        b"pmessage" => hub.fan_out(Channels::Pattern, topic, &frame),
        b"smessage" => hub.fan_out(Channels::Shard, topic, &frame),
        b"subscribe" => hub.confirmed(Channels::Plain, topic),
        b"psubscribe" => hub.confirmed(Channels::Pattern, topic),
        b"ssubscribe" => hub.confirmed(Channels::Shard, topic),
        b"unsubscribe" => hub.left(Channels::Plain, topic),
        b"punsubscribe" => hub.left(Channels::Pattern, topic),
        b"sunsubscribe" => hub.left(Channels::Shard, topic),
        _ => {}
    }
}
