//! MGET, MSET, DEL and friends: one sub-command per backend holding some of the keys (on a
//! cluster pool, per hash slot: a node refuses keys of several slots in one command), merged
//! when all have answered. With prefix routes, keys are grouped by pool and backend together,
//! so one MGET may read three pools, and each part carries its keys as their routes send them.
//! Keys on a single backend take the plain forward path.

use bytes::BytesMut;

use super::Session;
use super::call::Call;
use super::fault::{FAULT_ERROR, Injected};
use super::pending::{Fanout, Pending, Then};
use crate::backend::{ReplyTo, Request};
use crate::protocol::command::Merge;
use crate::protocol::keys::key_span;
use crate::protocol::reply::{put_array_len, put_bulk};
use crate::routing::{RouteError, Table, keyed_read};

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
    /// With routes, by argument position of each key: the bytes its route removes, and its
    /// route (for mirrors).
    strip_at: Vec<u32>,
    route_at: Vec<u32>,
}

impl Session {
    /// Splits `call` by group of its keys (`pairs`: each key is followed by its value, as in
    /// MSET) and merges the parts' replies with `merge`. With routes, keys are grouped by pool
    /// and group together, so one command may span pools.
    pub(super) async fn split(&mut self, call: Call<'_>, merge: Merge, pairs: bool) {
        let (id, now, cmd) = (call.id, call.start, call.cmd);
        let span = match key_span(cmd, &call.frame, call.args) {
            Ok(Some(span)) => span,
            Ok(None) => return self.fail(id, now, &RouteError::NoKeys(cmd.name).to_string()),
            Err(e) => return self.fail(id, now, &RouteError::keys(e, cmd.name).to_string()),
        };
        let key = |pos: usize| &call.frame[call.args[pos].clone()];
        let table = &self.table;
        let sc = &mut self.split;
        sc.group_of.clear();
        let routed = table.routes().is_some();
        if routed {
            if let Err(e) = sc.locate(table, span.positions().map(|pos| (pos, key(pos)))) {
                return self.fail(id, now, &e.to_string());
            }
        } else {
            let Some(pool) = table.default_pool() else {
                return self.fail(id, now, &RouteError::NoBackend.to_string());
            };
            let base = table.group_base(table.default_index());
            sc.group_of
                .extend(span.positions().map(|pos| base + pool.group_of(key(pos))));
        }
        let special = table.special();
        let first_group = sc.group_of[0];
        let single = sc.group_of.iter().all(|&g| g == first_group);
        let groups = table.groups();
        if !special && single {
            let Some((pool, group)) = self.table.group_at(first_group) else {
                return self.fail(id, now, &RouteError::NoBackend.to_string());
            };
            let pool = &self.table.pools[pool];
            return match pool.node_for(pool.group_owner(group), keyed_read(cmd), self.id) {
                Ok(dest) => self.forward(id, dest, call.frame, now, Then::Pass).await,
                Err(e) => self.fail(id, now, &e.to_string()),
            };
        }
        let table = self.table.clone();
        let via = match self.split_fault(&table, id) {
            Some(Injected::Error) => return self.fail(id, now, FAULT_ERROR),
            Some(Injected::Delay(tx)) => Some(tx),
            None => None,
        };
        let order = self
            .split
            .plan(groups, span.positions(), merge == Merge::Mget);
        let nparts = self.split.counts.len();
        let seq = self.next_seq();
        let tx = via.unwrap_or_else(|| self.tx.clone());
        let mut fanout = Box::new(Fanout::new(id, now, merge, self.out.proto, nparts, order));
        // All parts go into one buffer and are split off it: one allocation, not one per part,
        // and none at all once the links have dropped the previous command's parts.
        let per_key = if pairs { 2 } else { 1 };
        self.split.arena.reserve(64 * nparts + call.frame.len());
        let (read, client) = (keyed_read(cmd), self.id);
        let mut first_key = 0;
        for part in 0..nparts {
            let sc = &mut self.split;
            let n = sc.counts[part] as usize;
            put_array_len(&mut sc.arena, 1 + n * per_key);
            put_bulk(&mut sc.arena, key(0));
            for &pos in &sc.by_part[first_key..first_key + n] {
                let cut = if routed { sc.strip_at[pos] as usize } else { 0 };
                let r = &call.args[pos];
                put_bulk(&mut sc.arena, &call.frame[r.start + cut..r.end]);
                for arg in &call.args[pos + 1..pos + per_key] {
                    put_bulk(&mut sc.arena, &call.frame[arg.clone()]);
                }
            }
            first_key += n;
            let (group, part_frame) = (sc.part_group[part], sc.arena.split().freeze());
            let reply = ReplyTo {
                tx: tx.clone(),
                seq,
                part: part as u32,
            };
            let req = Request::new(part_frame, reply);
            let dest = table
                .group_at(group)
                .ok_or(RouteError::NoBackend)
                .and_then(|(p, g)| {
                    let pool = &table.pools[p];
                    pool.node_for(pool.group_owner(g), read, client)
                });
            match dest {
                Ok(dest) => fanout.sent.push(Some(self.send_part(dest, req).await)),
                Err(e) => {
                    fanout.sent.push(None);
                    req.reply.send(bytes::Bytes::from(format!("-{e}\r\n")));
                }
            }
        }
        self.push_waiting(Pending::Fanout(fanout));
        if special && table.routes().is_some_and(|r| r.mirrors()) {
            let route_at = std::mem::take(&mut self.split.route_at);
            self.mirror_keys(&table, &call, &span, per_key, &route_at);
            self.split.route_at = route_at;
        }
    }

    /// The fault to inject into split command `id`, whose keys' groups are in
    /// `self.split.group_of`, if the table has faults and one applies.
    fn split_fault(&mut self, table: &Table, id: usize) -> Option<Injected> {
        let faults = table.faults()?;
        let groups = std::mem::take(&mut self.split.group_of);
        let in_pool = |p: usize| {
            groups
                .iter()
                .any(|&g| table.group_at(g).map(|x| x.0) == Some(p))
        };
        let injected = self.inject(faults, id, in_pool);
        self.split.group_of = groups;
        injected
    }
}

impl SplitScratch {
    /// Groups keys (argument position, key) by pool and group, in the table's numbering of
    /// split groups, noting each key's removed prefix and route.
    fn locate<'k>(
        &mut self,
        table: &Table,
        keys: impl Iterator<Item = (usize, &'k [u8])>,
    ) -> Result<(), RouteError> {
        for (pos, key) in keys {
            let at = table.locate(key)?;
            let pool = table.pools.get(at.pool).ok_or(RouteError::NoBackend)?;
            self.group_of
                .push(table.group_base(at.pool) + pool.group_of(&key[at.strip..]));
            if self.strip_at.len() <= pos {
                self.strip_at.resize(pos + 1, 0);
                self.route_at.resize(pos + 1, crate::routing::NO_ROUTE);
            }
            self.strip_at[pos] = at.strip as u32;
            self.route_at[pos] = at.route;
        }
        Ok(())
    }

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
