//! Routing a parsed command: answer it locally, forward it to the backend that owns its keys,
//! split it across backends, or broadcast it.

use std::ops::Range;

use bytes::{Bytes, BytesMut};
use tokio::time::Instant;

use super::Session;
use super::info::info_sections;
use super::pending::{Fanout, Pending};
use super::route::{RouteError, key_span, single_backend};
use crate::backend::{ReplyTo, Request};
use crate::protocol::command::{COMMANDS, Kind, Merge, lookup};
use crate::protocol::reply::{put_array_len, put_bulk, put_error};

/// The request shardis sends to every backend for INFO.
const INFO_REQUEST: &[u8] = b"*1\r\n$4\r\nINFO\r\n";

/// Whether COPY's options name a destination database (`DB n`), which would write outside
/// database 0, the only one shardis serves.
fn names_other_db(frame: &[u8], options: &[Range<usize>]) -> bool {
    options
        .iter()
        .any(|a| frame[a.clone()].eq_ignore_ascii_case(b"db"))
}

impl Session {
    /// Serves one command: its reply, now or later, takes the next place in the queue.
    pub(super) async fn dispatch(&mut self, frame: Bytes, args: &[Range<usize>], now: Instant) {
        let Some(first) = args.first() else {
            return;
        };
        let name = &frame[first.clone()];
        let Some((id, cmd)) = lookup(name) else {
            let shown = String::from_utf8_lossy(&name[..name.len().min(128)]).into_owned();
            self.ctx
                .metrics
                .unknown_command()
                .record(now.elapsed(), false);
            return self.reply_error(&format!("ERR unknown command '{shown}'"));
        };
        if !cmd.arity_ok(args.len()) {
            return self.fail(id, now, &RouteError::WrongArity.message(cmd.name));
        }
        match cmd.kind {
            Kind::Local(local) => self.local(local, id, &frame, args, now),
            Kind::Unsupported => self.fail(
                id,
                now,
                &format!(
                    "ERR unsupported command '{}': shardis does not serve it yet",
                    cmd.name
                ),
            ),
            Kind::Forward => {
                if cmd.name == "copy" && names_other_db(&frame, &args[3..]) {
                    return self.fail(
                        id,
                        now,
                        "ERR shardis serves database 0 only: COPY ... DB is not supported",
                    );
                }
                let span = match key_span(cmd, &frame, args) {
                    Ok(Some(span)) => span,
                    Ok(None) => return self.fail(id, now, &RouteError::NoKeys.message(cmd.name)),
                    Err(e) => return self.fail(id, now, &e.message(cmd.name)),
                };
                match single_backend(&self.ctx.pool.ring, &frame, args, &span) {
                    Ok(backend) => self.forward(id, backend, frame, now).await,
                    Err(e) => self.fail(id, now, &e.message(cmd.name)),
                }
            }
            Kind::Split { merge, pairs } => self.split(id, merge, pairs, frame, args, now).await,
            Kind::Broadcast(merge) => {
                let sections = (merge == Merge::Info)
                    .then(|| info_sections(args[1..].iter().map(|r| &frame[r.clone()])));
                let frame = if merge == Merge::Info {
                    Bytes::from_static(INFO_REQUEST)
                } else {
                    frame
                };
                let n = self.ctx.pool.backends.len();
                let seq = self.next_seq();
                let mut fanout = Box::new(Fanout::new(id, now, merge, n, Vec::new()));
                if let Some(sections) = sections {
                    fanout.info_sections = sections;
                }
                self.push_waiting(Pending::Fanout(fanout));
                for backend in 0..n {
                    self.send(backend, frame.clone(), seq, backend as u32).await;
                }
            }
        }
    }

    /// Queues an error reply for a command that was never sent, and counts it.
    pub(super) fn fail(&mut self, id: usize, start: Instant, msg: &str) {
        self.ctx.metrics.command(id).record(start.elapsed(), false);
        self.reply_error(msg);
    }

    fn reply_error(&mut self, msg: &str) {
        let mut out = BytesMut::with_capacity(msg.len() + 3);
        put_error(&mut out, msg);
        self.push_ready(out.freeze());
    }

    /// Sends the whole command to one backend.
    async fn forward(&mut self, id: usize, backend: usize, frame: Bytes, now: Instant) {
        let seq = self.next_seq();
        self.push_waiting(Pending::Single {
            cmd: id,
            start: now,
            backend,
        });
        self.send(backend, frame, seq, 0).await;
    }

    /// Hands a request to the backend's link; if the link is gone, answers with an error.
    async fn send(&mut self, backend: usize, frame: Bytes, seq: u64, part: u32) {
        let reply = ReplyTo {
            tx: self.tx.clone(),
            seq,
            part,
        };
        let Some(link) = self.ctx.pool.backends.get(backend).map(|b| b.link(self.id)) else {
            return;
        };
        if let Err(err) = link.send(Request { frame, reply }).await {
            err.0
                .reply
                .send(Bytes::from_static(b"-ERR backend link closed\r\n"));
        }
    }

    /// MGET, MSET, DEL and friends: one sub-command per backend holding some of the keys,
    /// merged when all have answered. Keys on a single backend take the plain forward path.
    async fn split(
        &mut self,
        id: usize,
        merge: Merge,
        pairs: bool,
        frame: Bytes,
        args: &[Range<usize>],
        now: Instant,
    ) {
        let cmd = &COMMANDS[id];
        let span = match key_span(cmd, &frame, args) {
            Ok(Some(span)) => span,
            Ok(None) => return self.fail(id, now, &RouteError::NoKeys.message(cmd.name)),
            Err(e) => return self.fail(id, now, &e.message(cmd.name)),
        };
        let ring = &self.ctx.pool.ring;
        let sc = &mut self.split;
        sc.backend_of.clear();
        sc.backend_of.extend(
            span.positions()
                .map(|pos| ring.backend_for(&frame[args[pos].clone()])),
        );
        let first = sc.backend_of[0];
        if sc.backend_of.iter().all(|&b| b == first) {
            return self.forward(id, first, frame, now).await;
        }

        // Parts in order of first appearance; each gets the keys (and values) it owns.
        sc.part_of.clear();
        sc.part_of.resize(self.ctx.pool.backends.len(), u32::MAX);
        sc.counts.clear();
        sc.part_backend.clear();
        let mut order = Vec::with_capacity(if merge == Merge::Mget {
            sc.backend_of.len()
        } else {
            0
        });
        for &backend in &sc.backend_of {
            if sc.part_of[backend] == u32::MAX {
                sc.part_of[backend] = sc.counts.len() as u32;
                sc.counts.push(0);
                sc.part_backend.push(backend);
            }
            let part = sc.part_of[backend];
            if merge == Merge::Mget {
                order.push((part, sc.counts[part as usize]));
            }
            sc.counts[part as usize] += 1;
        }
        // Key positions grouped by part (a counting sort), so each part is written whole.
        sc.starts.clear();
        let mut at = 0;
        for &n in &sc.counts {
            sc.starts.push(at);
            at += n as usize;
        }
        sc.by_part.clear();
        sc.by_part.resize(at, 0);
        for (pos, &backend) in span.positions().zip(&sc.backend_of) {
            let part = sc.part_of[backend] as usize;
            sc.by_part[sc.starts[part]] = pos;
            sc.starts[part] += 1;
        }
        let nparts = sc.counts.len();
        let seq = self.next_seq();
        self.push_waiting(Pending::Fanout(Box::new(Fanout::new(
            id, now, merge, nparts, order,
        ))));
        // All parts go into one buffer and are split off it: one allocation, not one per part,
        // and none at all once the links have dropped the previous command's parts.
        let per_key = if pairs { 2 } else { 1 };
        self.split.arena.reserve(64 * nparts + frame.len());
        let mut first_key = 0;
        for part in 0..nparts {
            let sc = &mut self.split;
            let n = sc.counts[part] as usize;
            put_array_len(&mut sc.arena, 1 + n * per_key);
            put_bulk(&mut sc.arena, &frame[args[0].clone()]);
            for &pos in &sc.by_part[first_key..first_key + n] {
                for arg in &args[pos..pos + per_key] {
                    put_bulk(&mut sc.arena, &frame[arg.clone()]);
                }
            }
            first_key += n;
            let (backend, part_frame) = (sc.part_backend[part], sc.arena.split().freeze());
            self.send(backend, part_frame, seq, part as u32).await;
        }
    }
}
