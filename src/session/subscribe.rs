//! A session's side of pub/sub: the channels and patterns it subscribed, its SUBSCRIBE and
//! UNSUBSCRIBE replies (counting its own subscriptions, as Redis does), and PUBLISH, whose
//! receiver count is corrected to count sessions rather than shardis's subscriber connection.
//! The messages themselves come from the hubs ([`crate::backend::pubsub`]) as push entries.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};

use super::Session;
use super::call::Call;
use super::pending::{Pending, Then};
use crate::backend::Backend;
use crate::backend::pubsub::{Hub, Subscriber};
use crate::protocol::command::Channels;
use crate::protocol::out::Out;
use crate::routing::{Placement, Table};

/// Each subscription and the hubs that carry it (kept, so that leaving reaches the same hubs
/// even after a reload changed the backends).
type Topics = HashMap<Bytes, Vec<Arc<Hub>>>;

/// What a session is subscribed to.
pub struct Subscriptions {
    pub me: Arc<Subscriber>,
    plain: Topics,
    patterns: Topics,
    shards: Topics,
}

impl Subscriptions {
    /// Subscriptions of every kind.
    pub fn count(&self) -> usize {
        self.plain.len() + self.patterns.len() + self.shards.len()
    }

    fn set(&mut self, kind: Channels) -> &mut Topics {
        match kind {
            Channels::Plain => &mut self.plain,
            Channels::Pattern => &mut self.patterns,
            Channels::Shard => &mut self.shards,
        }
    }

    /// The count Redis puts in a (un)subscribe reply: channels and patterns together, shard
    /// channels on their own.
    fn reply_count(&self, kind: Channels) -> i64 {
        match kind {
            Channels::Shard => self.shards.len() as i64,
            _ => (self.plain.len() + self.patterns.len()) as i64,
        }
    }

    fn leave(&self, kind: Channels, name: &[u8], hubs: &[Arc<Hub>]) {
        for hub in hubs {
            hub.unsubscribe(kind, name, self.me.id);
        }
    }
}

/// The backends whose hubs carry `name`: the one it hashes to, or for a pattern every
/// backend of a hashed pool and one node of a cluster pool (a cluster forwards every PUBLISH
/// to every node).
fn backends(table: &Table, kind: Channels, name: &[u8]) -> Vec<Arc<Backend>> {
    match kind {
        Channels::Pattern => table
            .pools
            .iter()
            .flat_map(|p| match &p.placement {
                Placement::Cluster(_) => &p.backends[..p.backends.len().min(1)],
                Placement::Ring { .. } => &p.backends[..],
            })
            .cloned()
            .collect(),
        _ => table
            .owner_of(name)
            .map(|d| vec![d.backend])
            .unwrap_or_default(),
    }
}

impl Drop for Subscriptions {
    fn drop(&mut self) {
        for kind in [Channels::Plain, Channels::Pattern, Channels::Shard] {
            let topics: Vec<(Bytes, Vec<Arc<Hub>>)> = self.set(kind).drain().collect();
            for (name, hubs) in topics {
                self.leave(kind, &name, &hubs);
            }
        }
    }
}

fn verbs(kind: Channels) -> (&'static [u8], &'static [u8]) {
    match kind {
        Channels::Plain => (b"subscribe", b"unsubscribe"),
        Channels::Pattern => (b"psubscribe", b"punsubscribe"),
        Channels::Shard => (b"ssubscribe", b"sunsubscribe"),
    }
}

impl Session {
    fn subscriptions(&mut self) -> &mut Subscriptions {
        let (id, tx, proto, limit) = (
            self.id,
            self.tx.clone(),
            self.out.proto,
            self.table.settings.max_subscriber_output,
        );
        self.modes.subs.get_or_insert_with(|| {
            Box::new(Subscriptions {
                me: Arc::new(Subscriber::new(id, tx, proto, limit)),
                plain: Topics::new(),
                patterns: Topics::new(),
                shards: Topics::new(),
            })
        })
    }

    /// SUBSCRIBE, PSUBSCRIBE, SSUBSCRIBE: confirmed once every hub concerned has subscribed.
    pub(super) fn subscribe(&mut self, kind: Channels, call: Call<'_>) {
        let (id, now, frame, args) = (call.id, call.start, &call.frame[..], call.args);
        let seq = self.next_seq();
        let proto = self.out.proto;
        let table = self.table.clone();
        let (verb, _) = verbs(kind);
        let mut reply = BytesMut::new();
        let mut left = 0u32;
        let subs = self.subscriptions();
        for r in &args[1..] {
            let name = Bytes::copy_from_slice(&frame[r.clone()]);
            if !subs.set(kind).contains_key(&name) {
                let mut hubs = Vec::new();
                for backend in backends(&table, kind, &name) {
                    let hub = backend.hub().clone();
                    if !hub.subscribe(kind, &name, &subs.me, seq) {
                        left += 1;
                    }
                    hubs.push(hub);
                }
                subs.set(kind).insert(name.clone(), hubs);
            }
            let mut out = Out::new(&mut reply, proto);
            out.push(3);
            out.bulk(verb);
            out.bulk(&name);
            out.integer(subs.reply_count(kind));
        }
        self.ctx.metrics.command(id).record(now.elapsed(), true);
        let reply = reply.freeze();
        // Like Redis, CLIENT REPLY OFF does not silence pub/sub confirmations (nor messages).
        self.queue.pending.push_back(if left == 0 {
            self.queue.held += reply.len();
            Pending::Ready(reply)
        } else {
            Pending::Subscribe { reply, left }
        });
    }

    /// A hub confirmed a subscription asked for by command `seq`.
    pub(super) fn on_subscribed(&mut self, seq: u64) {
        let Some(index) = seq.checked_sub(self.queue.base_seq) else {
            return;
        };
        if let Some(entry) = self.queue.pending.get_mut(index as usize)
            && let Pending::Subscribe { reply, left } = entry
        {
            *left = left.saturating_sub(1);
            if *left == 0 {
                self.queue.held += reply.len();
                *entry = Pending::Ready(reply.clone());
            }
        }
    }

    /// UNSUBSCRIBE, PUNSUBSCRIBE, SUNSUBSCRIBE: from the channels named, or from all.
    pub(super) fn unsubscribe(&mut self, kind: Channels, call: Call<'_>) {
        let (id, now, frame, args) = (call.id, call.start, &call.frame[..], call.args);
        let proto = self.out.proto;
        let (_, verb) = verbs(kind);
        let mut reply = BytesMut::new();
        let subs = self.subscriptions();
        let names: Vec<Bytes> = if args.len() > 1 {
            args[1..]
                .iter()
                .map(|r| Bytes::copy_from_slice(&frame[r.clone()]))
                .collect()
        } else {
            subs.set(kind).keys().cloned().collect()
        };
        if names.is_empty() {
            let mut out = Out::new(&mut reply, proto);
            out.push(3);
            out.bulk(verb);
            out.null();
            out.integer(subs.reply_count(kind));
        }
        for name in names {
            if let Some(hubs) = subs.set(kind).remove(&name) {
                subs.leave(kind, &name, &hubs);
            }
            let mut out = Out::new(&mut reply, proto);
            out.push(3);
            out.bulk(verb);
            out.bulk(&name);
            out.integer(subs.reply_count(kind));
        }
        self.ctx.metrics.command(id).record(now.elapsed(), true);
        // Not `push_ready`: CLIENT REPLY OFF does not silence pub/sub confirmations.
        let reply = reply.freeze();
        self.queue.held += reply.len();
        self.queue.pending.push_back(Pending::Ready(reply));
    }

    /// PUBLISH and SPUBLISH: to the backend the channel hashes to.
    pub(super) async fn publish(&mut self, kind: Channels, call: Call<'_>) {
        let channel = call.arg(1).unwrap_or_default();
        let dest = match self.table.owner_of(channel) {
            Ok(dest) => dest,
            Err(e) => return self.fail(call.id, call.start, &e.to_string()),
        };
        let then = match dest.backend.hub.get() {
            Some(hub) => {
                let r = hub.receivers(kind, channel);
                Then::Publish {
                    hub: r.hub,
                    sessions: r.sessions,
                }
            }
            None => Then::Pass,
        };
        self.forward(call.id, dest, call.frame, call.start, then)
            .await;
    }
}
