//! Routing a parsed command: answer it locally, forward it to the backend that owns its keys,
//! split it across backends, broadcast it, or hand it to the session's own state (transactions,
//! subscriptions, blocking commands, SCAN).

use std::ops::Range;

use bytes::{Bytes, BytesMut};
use tokio::time::Instant;

use super::Session;
use super::cluster::{group_backend, split_groups};
use super::leased::has_block_option;
use super::login::Guard;
use super::mode::{Mode, subscribed_admits};
use super::pending::{Fanout, Pending, Then};
use super::route::{RouteError, key_span, names_other_db, single_backend};
use crate::backend::{ReplyTo, Request};
use crate::protocol::command::{
    Allowed, COMMANDS, Command, Kind, Merge, SessionCmd, lookup, lookup_sub,
};
use crate::protocol::reply::{put_array_len, put_bulk, put_error};

/// The request shardis sends to every backend for INFO.
const INFO_REQUEST: &[u8] = b"*1\r\n$4\r\nINFO\r\n";

/// Redis's reply to a command it does not know: the name and the first arguments, quoted.
fn unknown_command(frame: &[u8], args: &[Range<usize>]) -> String {
    let text = |r: &Range<usize>, max: usize| {
        let b = &frame[r.clone()];
        String::from_utf8_lossy(&b[..b.len().min(max)]).into_owned()
    };
    let mut shown = String::new();
    for r in &args[1..] {
        if shown.len() >= 128 {
            break;
        }
        shown.push('\'');
        shown.push_str(&text(r, 128 - shown.len()));
        shown.push_str("' ");
    }
    format!(
        "ERR unknown command '{}', with args beginning with: {shown}",
        text(&args[0], 128)
    )
}

impl Session {
    /// Serves one command: its reply, now or later, takes the next place in the queue.
    pub(super) async fn dispatch(&mut self, frame: Bytes, args: &[Range<usize>], now: Instant) {
        let Some(first) = args.first() else {
            return;
        };
        let Some((mut id, mut cmd)) = lookup(&frame[first.clone()]) else {
            self.ctx
                .metrics
                .unknown_command()
                .record(now.elapsed(), false);
            self.abort_transaction();
            return self.reply_error(&unknown_command(&frame, args));
        };
        if cmd.kind == Kind::Container {
            let Some(sub) = args.get(1) else {
                self.abort_transaction();
                return self.fail(id, now, &RouteError::WrongArity.message(cmd.name));
            };
            match lookup_sub(cmd.name, &frame[sub.clone()]) {
                Some(found) => (id, cmd) = found,
                None => {
                    self.abort_transaction();
                    let shown = String::from_utf8_lossy(&frame[sub.clone()]).into_owned();
                    return self.fail(
                        id,
                        now,
                        &format!(
                            "ERR unknown subcommand '{}'. Try {} HELP.",
                            shown.chars().take(128).collect::<String>(),
                            cmd.name.to_ascii_uppercase()
                        ),
                    );
                }
            }
        }
        self.client.set_last_cmd(id);
        if !cmd.arity_ok(args.len()) {
            self.abort_transaction();
            return self.fail(id, now, &RouteError::WrongArity.message(cmd.name));
        }
        // Authentication and ACLs, as Redis checks them: after the command is known and its
        // arity right, before anything else. Without them this is one predictable branch.
        if !matches!(self.who.guard, Guard::Open)
            && let Err(refusal) = self.admit(id, cmd, &frame, args)
        {
            self.abort_transaction();
            return self.fail(id, now, &refusal);
        }
        match self.mode() {
            Mode::Transaction => return Box::pin(self.queue(id, cmd, frame, args, now)).await,
            Mode::Subscribed => {
                if let Err(e) = subscribed_admits(self.proto, cmd) {
                    return self.fail(id, now, &e);
                }
            }
            // A blocked session dispatches nothing until its command is answered.
            Mode::Normal | Mode::Blocked => {}
        }
        self.serve(id, cmd, frame, args, now).await
    }

    /// Serves a command outside a transaction.
    async fn serve(
        &mut self,
        id: usize,
        cmd: &'static Command,
        frame: Bytes,
        args: &[Range<usize>],
        now: Instant,
    ) {
        match cmd.kind {
            Kind::Forward => {
                self.forward_by_keys(id, cmd, frame, args, now, Then::Pass)
                    .await
            }
            Kind::Split { merge, pairs } => self.split(id, merge, pairs, frame, args, now).await,
            // The paths below the hot ones are boxed: their state machines would otherwise
            // make every session's task as large as the largest of them (an idle client's
            // task was 6 KiB). A box costs an allocation only when such a command runs.
            Kind::Broadcast(merge) => Box::pin(self.broadcast(id, merge, frame, args, now)).await,
            Kind::First => self.forward(id, 0, frame, now, Then::Pass).await,
            Kind::Local(local) => self.local(local, id, &frame, args, now),
            Kind::Blocking { option } => {
                if option && !has_block_option(&frame, args) {
                    self.forward_by_keys(id, cmd, frame, args, now, Then::Pass)
                        .await
                } else {
                    Box::pin(self.blocking(id, cmd, frame, args, now)).await
                }
            }
            Kind::Session(sc) => {
                Box::pin(self.session_command(sc, id, cmd, frame, args, now)).await
            }
            Kind::Guarded(allowed) if self.table.settings.allowed[id] => match allowed {
                Allowed::Broadcast(merge) => {
                    Box::pin(self.broadcast(id, merge, frame, args, now)).await
                }
                Allowed::First => self.forward(id, 0, frame, now, Then::Pass).await,
                Allowed::Debug => {
                    let on_key =
                        args.len() >= 3 && frame[args[1].clone()].eq_ignore_ascii_case(b"object");
                    if on_key {
                        let backend = self.table.backend_for(&frame[args[2].clone()]);
                        self.forward(id, backend, frame, now, Then::Pass).await
                    } else {
                        Box::pin(self.broadcast(id, Merge::AllOk, frame, args, now)).await
                    }
                }
            },
            Kind::Guarded(_) => {
                let parent = cmd.name.split('|').next().unwrap_or(cmd.name);
                self.fail(
                    id,
                    now,
                    &format!(
                        "ERR shardis refuses '{}': it would act on every backend at once. \
                         Enable it with [server] allow_commands = [\"{parent}\"]",
                        cmd.name
                    ),
                )
            }
            Kind::Refused(reason) => self.fail(
                id,
                now,
                &format!("ERR shardis does not serve '{}': {reason}", cmd.name),
            ),
            Kind::Container => {}
        }
    }

    async fn session_command(
        &mut self,
        sc: SessionCmd,
        id: usize,
        cmd: &'static Command,
        frame: Bytes,
        args: &[Range<usize>],
        now: Instant,
    ) {
        match sc {
            SessionCmd::Multi => self.multi(id, now),
            SessionCmd::Exec => self.fail(id, now, "ERR EXEC without MULTI"),
            SessionCmd::Discard => self.fail(id, now, "ERR DISCARD without MULTI"),
            SessionCmd::Watch => self.watch(id, cmd, frame, args, now).await,
            SessionCmd::Unwatch => self.unwatch(id, frame, now),
            SessionCmd::Subscribe(kind) => self.subscribe(kind, id, &frame, args, now),
            SessionCmd::Unsubscribe(kind) => self.unsubscribe(kind, id, &frame, args, now),
            SessionCmd::Publish(kind) => self.publish(kind, id, frame, args, now).await,
            SessionCmd::Numsub(_) => {
                let channels = args[2..].iter().map(|r| frame.slice(r.clone())).collect();
                self.broadcast_with(id, Merge::Numsub, frame, now, |f| f.channels = channels)
                    .await
            }
            SessionCmd::Numpat => self.broadcast(id, Merge::Numpat, frame, args, now).await,
            SessionCmd::Scan => self.scan(id, frame, args, now).await,
            SessionCmd::Reset => self.reset(id, now),
            SessionCmd::Wait => self.wait(id, frame, now).await,
        }
    }

    /// Queues an error reply for a command that was never sent, and counts it.
    pub(super) fn fail(&mut self, id: usize, start: Instant, msg: &str) {
        self.ctx.metrics.command(id).record(start.elapsed(), false);
        self.reply_error(msg);
    }

    pub(super) fn reply_error(&mut self, msg: &str) {
        let mut out = BytesMut::with_capacity(msg.len() + 3);
        put_error(&mut out, msg);
        self.push_ready(out.freeze());
    }

    /// The backend that owns every key of `cmd`: `Ok(None)` for a command that may run without
    /// keys (EVAL ... 0); `Err` with the reply for one that cannot be routed.
    pub(super) fn route(
        &self,
        cmd: &Command,
        frame: &[u8],
        args: &[Range<usize>],
    ) -> Result<Option<usize>, RouteError> {
        match key_span(cmd, frame, args)? {
            None => Ok(None),
            Some(span) => single_backend(&self.table, frame, args, &span).map(Some),
        }
    }

    /// Sends the whole command to the backend that owns its keys.
    async fn forward_by_keys(
        &mut self,
        id: usize,
        cmd: &'static Command,
        frame: Bytes,
        args: &[Range<usize>],
        now: Instant,
        then: Then,
    ) {
        if cmd.name == "copy" {
            match names_other_db(&frame, &args[3..], self.table.settings.db) {
                Ok(false) => {}
                Ok(true) => {
                    let msg = format!(
                        "ERR shardis serves database {} only: COPY ... DB is not supported",
                        self.table.settings.db
                    );
                    return self.fail(id, now, &msg);
                }
                Err(e) => return self.fail(id, now, e),
            }
        }
        match self.route(cmd, &frame, args) {
            Ok(backend) => {
                self.forward(id, backend.unwrap_or(0), frame, now, then)
                    .await
            }
            // A malformed key count: the first backend answers with Redis's own error.
            Err(RouteError::Malformed) => self.forward(id, 0, frame, now, then).await,
            Err(e) => self.fail(id, now, &e.message(cmd.name)),
        }
    }

    /// Sends the whole command to one backend.
    pub(super) async fn forward(
        &mut self,
        id: usize,
        backend: usize,
        frame: Bytes,
        now: Instant,
        then: Then,
    ) {
        let seq = self.next_seq();
        self.push_waiting(Pending::Single {
            cmd: id,
            start: now,
            backend,
            then,
            lease: None,
        });
        let req = Request::new(frame, self.reply_to(seq, 0));
        if self.table.cluster.is_some() {
            return self.send_cluster(backend, req, Some(id)).await;
        }
        self.send_to_link(backend, req).await;
    }

    pub(super) fn reply_to(&self, seq: u64, part: u32) -> ReplyTo {
        ReplyTo {
            tx: self.tx.clone(),
            seq,
            part,
        }
    }

    /// Hands a request to the backend's link for this client's protocol; if the link is gone,
    /// answers with an error. (On a cluster pool, [`Session::send`] comes first.)
    pub(super) async fn send_to_link(&mut self, backend: usize, req: Request) {
        let Some(b) = self.table.backends.get(backend) else {
            return req
                .reply
                .send(Bytes::from_static(b"-ERR no such backend\r\n"));
        };
        if b.state.is_down() {
            // Marked down: fail at once instead of waiting out the timeout.
            return req.reply.send(b.spec.error_reply("is down"));
        }
        if let Err(err) = b.link(self.proto, self.id).send(req).await {
            err.0
                .reply
                .send(Bytes::from_static(b"-ERR backend link closed\r\n"));
        }
    }

    /// Sends the command unchanged to every backend, merging the replies with `merge`.
    async fn broadcast(
        &mut self,
        id: usize,
        merge: Merge,
        frame: Bytes,
        args: &[Range<usize>],
        now: Instant,
    ) {
        if merge == Merge::AnyOk {
            self.broadcast_exclusive(id, merge, frame, now, false).await;
            return;
        }
        if merge == Merge::Info {
            let sections = super::info::info_sections(args[1..].iter().map(|r| &frame[r.clone()]));
            return self
                .broadcast_with(id, merge, Bytes::from_static(INFO_REQUEST), now, |f| {
                    f.info_sections = sections
                })
                .await;
        }
        self.broadcast_with(id, merge, frame, now, |_| {}).await
    }

    async fn broadcast_with(
        &mut self,
        id: usize,
        merge: Merge,
        frame: Bytes,
        now: Instant,
        setup: impl FnOnce(&mut Fanout),
    ) {
        let n = self.table.backends.len();
        let seq = self.next_seq();
        let mut fanout = Box::new(Fanout::new(id, now, merge, self.proto, n, Vec::new()));
        setup(&mut fanout);
        self.push_waiting(Pending::Fanout(fanout));
        for backend in 0..n {
            let req = Request::new(frame.clone(), self.reply_to(seq, backend as u32));
            self.send(backend, req).await;
        }
    }

    /// MGET, MSET, DEL and friends: one sub-command per backend holding some of the keys,
    /// merged when all have answered. Keys on a single backend take the plain forward path.
    /// On a cluster pool, one sub-command per hash slot (a node refuses keys of several slots
    /// in one command), each sent to the slot's owner.
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
        let table = &self.table;
        let sc = &mut self.split;
        // Keys are grouped by backend, or on a cluster pool by slot.
        let groups = split_groups(table, &frame, args, span, &mut sc.backend_of);
        let first = sc.backend_of[0];
        if sc.backend_of.iter().all(|&b| b == first) {
            let backend = group_backend(table, first);
            return self.forward(id, backend, frame, now, Then::Pass).await;
        }

        // Parts in order of first appearance; each gets the keys (and values) it owns.
        // `part_of` is all u32::MAX between splits: only the groups used are reset after.
        if sc.part_of.len() != groups {
            sc.part_of.clear();
            sc.part_of.resize(groups, u32::MAX);
        }
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
        for &group in &sc.part_backend {
            sc.part_of[group] = u32::MAX;
        }
        let seq = self.next_seq();
        self.push_waiting(Pending::Fanout(Box::new(Fanout::new(
            id, now, merge, self.proto, nparts, order,
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
            let (group, part_frame) = (sc.part_backend[part], sc.arena.split().freeze());
            let req = Request::new(part_frame, self.reply_to(seq, part as u32));
            self.send_part(group, req, id).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ranges(parts: &[&str]) -> (Vec<u8>, Vec<Range<usize>>) {
        let mut frame = Vec::new();
        let mut args = Vec::new();
        for p in parts {
            let start = frame.len();
            frame.extend_from_slice(p.as_bytes());
            args.push(start..frame.len());
        }
        (frame, args)
    }

    #[test]
    fn unknown_command_text_is_redis_s() {
        let (frame, args) = ranges(&["foo", "a", "b"]);
        assert_eq!(
            unknown_command(&frame, &args),
            "ERR unknown command 'foo', with args beginning with: 'a' 'b' "
        );
        let (frame, args) = ranges(&["foo"]);
        assert_eq!(
            unknown_command(&frame, &args),
            "ERR unknown command 'foo', with args beginning with: "
        );
    }

    #[test]
    fn block_option() {
        let (f, a) = ranges(&["XREAD", "COUNT", "1", "BLOCK", "0", "STREAMS", "s", "$"]);
        assert!(has_block_option(&f, &a));
        let (f, a) = ranges(&["XREAD", "STREAMS", "block", "0"]);
        assert!(!has_block_option(&f, &a));
    }
}
