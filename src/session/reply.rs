//! What arrives in a session's inbox: replies (followed up when [`crate::routing::followup`]
//! says so, then completing their command: passed through, merged, or rewritten), pub/sub
//! messages, subscription confirmations and evictions.

use std::time::Duration;

use bytes::Bytes;
use tokio::time::Instant;
use tracing::info;

use super::Session;
use super::pending::{MergeEnv, Pending, Then, next_random};
use crate::backend::{Backend, Inbound, Reply};
use crate::metrics::Metrics;
use crate::protocol::reply::is_error;
use crate::routing::{Next, Retry, followup};

impl Session {
    /// Takes one message from the inbox.
    pub fn on_inbound(&mut self, msg: Inbound) {
        match msg {
            Inbound::Reply(reply) => self.on_reply(reply),
            Inbound::Push(frame) => self.queue.pending.push_back(Pending::Push(frame)),
            Inbound::Subscribed { seq } => self.on_subscribed(seq),
            Inbound::Evicted(why) => self.evicted = Some(why),
            Inbound::Closed => {}
        }
    }

    /// Takes one reply from a backend connection.
    pub fn on_reply(&mut self, reply: Reply) {
        let Some(index) = reply.seq.checked_sub(self.queue.base_seq) else {
            return;
        };
        let (seq, part) = (reply.seq, reply.part);
        let Some(entry) = self.queue.pending.get_mut(index as usize) else {
            return;
        };
        // A request whose pool follows up its replies (a cluster's redirections) may go out
        // again instead of completing; a hashed pool's reply is delivered as it is.
        let sent = match entry {
            Pending::Single { sent, .. } => Some(sent),
            Pending::Fanout(fanout) => fanout.sent.get_mut(part as usize).and_then(Option::as_mut),
            _ => None,
        };
        let frame = match sent {
            Some(sent) if !matches!(sent.retry, Retry::Never) => {
                match followup::next(sent, reply.frame, &self.ctx.routing.load()) {
                    Next::Deliver(frame) => frame,
                    Next::Resend {
                        goal,
                        frame,
                        replies,
                        delay,
                        reply: last,
                    } => {
                        let req = crate::backend::Request {
                            frame,
                            reply: self.reply_to(seq, part),
                            replies,
                            blocking: false,
                        };
                        return self.resend(goal, delay, req, &last);
                    }
                }
            }
            _ => reply.frame,
        };
        self.complete(index as usize, seq, part, frame);
    }

    /// Completes part `part` of the command at `index` (sequence number `seq`) with `frame`:
    /// the client's reply, once every part is in.
    fn complete(&mut self, index: usize, seq: u64, part: u32, frame: Bytes) {
        if frame.len() > self.table.bigkey_reply {
            self.big_reply(index, part, frame.len());
        }
        self.queue.reply_estimate = frame
            .len()
            .max(self.queue.reply_estimate - self.queue.reply_estimate / 16);
        let Some(entry) = self.queue.pending.get_mut(index) else {
            return;
        };
        let finish = Finish {
            metrics: &self.ctx.metrics,
            slowlog: self.table.settings.slowlog,
        };
        let done = match entry {
            Pending::Single {
                cmd,
                start,
                sent,
                then,
                ..
            } => {
                let frame = then.apply(frame);
                finish.record(*cmd, *start, !is_error(&frame), Some(&sent.backend));
                if *then == Then::Unblock && self.modes.blocked == Some(seq) {
                    self.modes.blocked = None;
                    self.client.set_blocked(None);
                }
                frame
            }
            Pending::Fanout(fanout) => {
                if !fanout.fill(part, frame) {
                    return;
                }
                let env = MergeEnv {
                    state: &self.ctx.state,
                    table: &self.table,
                    max_keys: self.table.settings.max_keys_reply,
                    pick: next_random(&mut self.rng),
                };
                let merged = fanout.merge(&env);
                finish.record(fanout.cmd, fanout.start, !is_error(&merged), None);
                if self.modes.blocked == Some(seq) {
                    // WAIT is answered: the session may send again.
                    self.modes.blocked = None;
                }
                merged
            }
            Pending::Delayed { cmd, start } => {
                finish.record(*cmd, *start, false, None);
                if self.modes.blocked == Some(seq) {
                    self.modes.blocked = None;
                }
                frame
            }
            Pending::Ready(_) | Pending::Push(_) | Pending::Subscribe { .. } => return,
        };
        // Replacing the entry drops its lease, if it held one: the exclusive connection goes
        // back to its pool.
        self.queue.held += done.len();
        *entry = Pending::Ready(done);
        self.queue.awaiting -= 1;
        if self.queue.awaiting <= 1
            && let Some(gate) = self.modes.gate.take()
        {
            // Only the proxy-side run is still awaited: what came before it is answered.
            let _ = gate.send(());
        }
        if let Some(limit) = self.table.settings.output_limit
            && self.queue.held + self.out.wbuf.len() > limit
        {
            self.evict("output buffer limit reached", "output_limit");
        }
    }

    /// Records a command's latency and result, and logs it if slow.
    pub(super) fn finish(&self, cmd: usize, start: Instant, ok: bool, backend: Option<&Backend>) {
        Finish {
            metrics: &self.ctx.metrics,
            slowlog: self.table.settings.slowlog,
        }
        .record(cmd, start, ok, backend);
    }
}

/// What completing a command records: its latency and result, and a slow log line.
struct Finish<'a> {
    metrics: &'a Metrics,
    slowlog: Option<Duration>,
}

impl Finish<'_> {
    fn record(&self, cmd: usize, start: Instant, ok: bool, backend: Option<&Backend>) {
        let elapsed = start.elapsed();
        self.metrics.command(cmd).record(elapsed, ok);
        if let Some(limit) = self.slowlog
            && elapsed >= limit
        {
            let name = crate::protocol::command::COMMANDS
                .get(cmd)
                .map_or("unknown", |c| c.name);
            let backend = backend.map_or("(several)", |b| b.state.name.as_str());
            info!(target: "shardis::slowlog", command = name, backend, duration_us = elapsed.as_micros() as u64, "slow command");
        }
    }
}
