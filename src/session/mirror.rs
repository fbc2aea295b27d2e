//! Request mirroring: a fire-and-forget copy of a command a route serves, sent to each of the
//! route's mirror pools that samples it. The copy is handed to the mirror backend's link only
//! if it fits at once: within the mirror's byte budget ([`crate::routing::Mirror`]) and in the
//! link's queue (never awaited). It is not part of the client's queue; its reply is discarded
//! by the mirror's own task. So a slow, hung or dead mirror costs the client nothing: its
//! copies are dropped and counted, the client's request goes on as if there were no mirror.
//!
//! The copy is the frame as sent to the route's pool (without a removed prefix), hashed on the
//! mirror pool's own placement. A split command (MGET, MSET, DEL...) is mirrored key by key,
//! one small command each; a command with several keys that the mirror pool places on several
//! backends cannot be mirrored, and counts as failed.

use bytes::{Bytes, BytesMut};
use tokio::sync::mpsc::error::TrySendError;

use super::Session;
use super::call::Call;
use super::pending::next_random;
use crate::backend::Request;
use crate::protocol::command::{Command, flag};
use crate::protocol::keys::KeySpan;
use crate::protocol::out::Proto;
use crate::protocol::reply::{put_array_len, put_bulk};
use crate::routing::{MirrorRule, Table};

/// Whether `cmd` writes: what `exclude_reads` mirrors.
fn writes(cmd: &Command) -> bool {
    cmd.flags & flag::WRITE != 0
}

impl Session {
    /// A random number for this command's mirror sampling.
    fn mirror_roll(&mut self) -> u32 {
        (next_random(&mut self.rng) >> 32) as u32
    }

    /// Mirrors `call`, sent whole as `frame`, along the mirrors of `route` (its first key's).
    pub(super) fn mirror_whole(
        &mut self,
        table: &Table,
        call: &Call<'_>,
        span: &KeySpan,
        frame: &Bytes,
        route: u32,
    ) {
        let rules = table.mirrors_of(route);
        if rules.is_empty() {
            return;
        }
        let (write, roll) = (writes(call.cmd), self.mirror_roll());
        for rule in rules.iter().filter(|r| r.takes(write, roll)) {
            let Some(pool) = table.pools.get(rule.pool) else {
                continue;
            };
            let keys = span.positions().map(|pos| sent_key(table, call, pos));
            let backend = if span.count() == 1 {
                keys.map(|k| pool.owner(k)).next()
            } else {
                pool.single(keys).ok()
            };
            match backend {
                Some(b) => self.mirror_send(table, rule, b, frame),
                None => {
                    if let Some(m) = table.mirror(rule.pool) {
                        m.failed();
                    }
                }
            }
        }
    }

    /// Mirrors a split command key by key (`per_key`: arguments per key, 2 for MSET's
    /// key-value pairs), each key along its own route's mirrors; `route_at` gives the route of
    /// the key at each argument position.
    pub(super) fn mirror_keys(
        &mut self,
        table: &Table,
        call: &Call<'_>,
        span: &KeySpan,
        per_key: usize,
        route_at: &[u32],
    ) {
        let (write, roll) = (writes(call.cmd), self.mirror_roll());
        let name = call.arg(0).unwrap_or_default();
        for pos in span.positions() {
            let route = route_at
                .get(pos)
                .copied()
                .unwrap_or(crate::routing::NO_ROUTE);
            let rules = table.mirrors_of(route);
            if !rules.iter().any(|r| r.takes(write, roll)) {
                continue;
            }
            let key = sent_key(table, call, pos);
            let mut frame = BytesMut::with_capacity(32 + key.len());
            put_array_len(&mut frame, 1 + per_key);
            put_bulk(&mut frame, name);
            put_bulk(&mut frame, key);
            for r in call.args.iter().skip(pos + 1).take(per_key - 1) {
                put_bulk(&mut frame, &call.frame[r.clone()]);
            }
            let frame = frame.freeze();
            for rule in rules.iter().filter(|r| r.takes(write, roll)) {
                if let Some(pool) = table.pools.get(rule.pool) {
                    self.mirror_send(table, rule, pool.owner(key), &frame);
                }
            }
        }
    }

    /// Hands a copy of `frame` to backend `backend` of the mirror pool of `rule`, if it fits
    /// at once; counts what became of it.
    fn mirror_send(&self, table: &Table, rule: &MirrorRule, backend: usize, frame: &[u8]) {
        let Some(mirror) = table.mirror(rule.pool) else {
            return;
        };
        let Some(dest) = table.pools.get(rule.pool).and_then(|p| p.dest(backend)) else {
            return mirror.failed();
        };
        if dest.backend.state.is_down() {
            return mirror.failed();
        }
        let Some(reply) = mirror.reserve(frame.len()) else {
            return; // over the budget: counted as dropped
        };
        // A copy: the client's frame is a slice of its read buffer, which a queued copy would
        // keep whole.
        let req = Request::new(Bytes::copy_from_slice(frame), reply);
        match dest.backend.link(Proto::Resp2, self.id).try_send(req) {
            Ok(()) => mirror.sent(),
            Err(TrySendError::Full(_)) => {
                mirror.unreserve(frame.len());
                mirror.dropped();
            }
            Err(TrySendError::Closed(_)) => {
                mirror.unreserve(frame.len());
                mirror.failed();
            }
        }
    }
}

/// The key at argument `pos` of `call` as its route sends it (without a removed prefix).
fn sent_key<'c>(table: &Table, call: &'c Call<'_>, pos: usize) -> &'c [u8] {
    let key = &call.frame[call.args[pos].clone()];
    let strip = table.locate(key).map_or(0, |l| l.strip);
    &key[strip..]
}
