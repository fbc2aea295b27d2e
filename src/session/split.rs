//! MGET, MSET, DEL and friends: one sub-command per backend holding some of the keys (on a
//! cluster pool, per hash slot: a node refuses keys of several slots in one command), merged
//! when all have answered. Keys on a single backend take the plain forward path.

use bytes::BytesMut;

use super::Session;
use super::call::Call;
use super::pending::{Fanout, Pending, Then};
use crate::backend::Request;
use crate::protocol::command::Merge;
use crate::protocol::keys::key_span;
use crate::protocol::reply::{put_array_len, put_bulk};
use crate::routing::{RouteError, keyed_read};

/// Working space for splitting a multi-key command, kept between commands so a split
/// allocates nothing once the session has seen one of its size.
#[derive(Default)]
pub(super) struct SplitScratch {
    /// Group of each key, in request order (its backend; on a cluster pool, its slot).
    group_of: Vec<usize>,
    /// Part number of each group (`u32::MAX`: none).
    part_of: Vec<u32>,
    /// Keys per part, and each part's group.
    counts: Vec<u32>,
    part_group: Vec<usize>,
    /// Key argument positions grouped by part, and where each part's group starts.
    by_part: Vec<usize>,
    starts: Vec<usize>,
    /// The parts' frames are written here and split off.
    arena: BytesMut,
}

impl Session {
    /// Splits `call` by group of its keys (`pairs`: each key is followed by its value, as in
    /// MSET) and merges the parts' replies with `merge`.
    pub(super) async fn split(&mut self, call: Call<'_>, merge: Merge, pairs: bool) {
        let (id, now, cmd) = (call.id, call.start, call.cmd);
        let span = match key_span(cmd, &call.frame, call.args) {
            Ok(Some(span)) => span,
            Ok(None) => return self.fail(id, now, &RouteError::NoKeys(cmd.name).to_string()),
            Err(e) => return self.fail(id, now, &RouteError::keys(e, cmd.name).to_string()),
        };
        let key = |pos: usize| &call.frame[call.args[pos].clone()];
        let Some(pool) = span
            .positions()
            .next()
            .and_then(|p| self.table.pool_of(key(p)))
        else {
            return self.fail(id, now, &RouteError::NoBackend.to_string());
        };
        let (read, client) = (keyed_read(cmd), self.id);
        let sc = &mut self.split;
        sc.group_of.clear();
        sc.group_of
            .extend(span.positions().map(|pos| pool.group_of(key(pos))));
        let first_group = sc.group_of[0];
        if sc.group_of.iter().all(|&g| g == first_group) {
            return match pool.node_for(pool.group_owner(first_group), read, client) {
                Ok(dest) => self.forward(id, dest, call.frame, now, Then::Pass).await,
                Err(e) => self.fail(id, now, &e.to_string()),
            };
        }
        let groups = pool.groups();
        let order = sc.plan(groups, span.positions(), merge == Merge::Mget);
        let nparts = sc.counts.len();
        let seq = self.next_seq();
        let mut fanout = Box::new(Fanout::new(id, now, merge, self.out.proto, nparts, order));
        // All parts go into one buffer and are split off it: one allocation, not one per part,
        // and none at all once the links have dropped the previous command's parts.
        let per_key = if pairs { 2 } else { 1 };
        self.split.arena.reserve(64 * nparts + call.frame.len());
        let mut first_key = 0;
        for part in 0..nparts {
            let sc = &mut self.split;
            let n = sc.counts[part] as usize;
            put_array_len(&mut sc.arena, 1 + n * per_key);
            put_bulk(&mut sc.arena, key(0));
            for &pos in &sc.by_part[first_key..first_key + n] {
                for arg in &call.args[pos..pos + per_key] {
                    put_bulk(&mut sc.arena, &call.frame[arg.clone()]);
                }
            }
            first_key += n;
            let (group, part_frame) = (sc.part_group[part], sc.arena.split().freeze());
            let req = Request::new(part_frame, self.reply_to(seq, part as u32));
            match pool.node_for(pool.group_owner(group), read, client) {
                Ok(dest) => fanout.sent.push(Some(self.send_part(dest, req).await)),
                Err(e) => {
                    fanout.sent.push(None);
                    req.reply.send(bytes::Bytes::from(format!("-{e}\r\n")));
                }
            }
        }
        self.push_waiting(Pending::Fanout(fanout));
    }
}

impl SplitScratch {
    /// Groups the keys (at `positions`, whose groups are in `group_of`) into parts, in order
    /// of first appearance, among `groups` possible groups; returns MGET's order (for each key
    /// in request order, its part and its index there) when `mget`.
    fn plan(
        &mut self,
        groups: usize,
        positions: impl Iterator<Item = usize>,
        mget: bool,
    ) -> Vec<(u32, u32)> {
        // `part_of` is all u32::MAX between splits: only the groups used are reset after.
        if self.part_of.len() != groups {
            self.part_of.clear();
            self.part_of.resize(groups, u32::MAX);
        }
        self.counts.clear();
        self.part_group.clear();
        let mut order = Vec::with_capacity(if mget { self.group_of.len() } else { 0 });
        for &group in &self.group_of {
            if self.part_of[group] == u32::MAX {
                self.part_of[group] = self.counts.len() as u32;
                self.counts.push(0);
                self.part_group.push(group);
            }
            let part = self.part_of[group];
            if mget {
                order.push((part, self.counts[part as usize]));
            }
            self.counts[part as usize] += 1;
        }
        // Key positions grouped by part (a counting sort), so each part is written whole.
        self.starts.clear();
        let mut at = 0;
        for &n in &self.counts {
            self.starts.push(at);
            at += n as usize;
        }
        self.by_part.clear();
        self.by_part.resize(at, 0);
        for (pos, &group) in positions.zip(&self.group_of) {
            let part = self.part_of[group] as usize;
            self.by_part[self.starts[part]] = pos;
            self.starts[part] += 1;
        }
        for &group in &self.part_group {
            self.part_of[group] = u32::MAX;
        }
        order
    }
}
