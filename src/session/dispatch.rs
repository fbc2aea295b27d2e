//! Routing a parsed command: answer it locally, forward it to the backend that owns its keys,
//! split it across backends ([`super::split`]), broadcast it, or hand it to the session's own
//! state (transactions, subscriptions, blocking commands, SCAN).

use std::ops::Range;

use bytes::{Bytes, BytesMut};
use tokio::time::Instant;

use super::Session;
use super::call::Call;
use super::leased::has_block_option;
use super::login::Guard;
use super::mode::{Mode, subscribed_admits};
use super::pending::{Fanout, Pending, Then};
use crate::backend::Request;
use crate::protocol::command::{Allowed, Kind, Merge, SessionCmd, acl, lookup, lookup_sub};
use crate::protocol::reply::put_error;
use crate::routing::{Dest, RouteError, names_other_db};

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
                return self.fail(id, now, &RouteError::WrongArity(cmd.name).to_string());
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
            return self.fail(id, now, &RouteError::WrongArity(cmd.name).to_string());
        }
        // Authentication and ACLs, as Redis checks them: after the command is known and its
        // arity right, before anything else. Without them this is one predictable branch.
        if !matches!(self.who.guard, Guard::Open)
            && let Err(refusal) = self.admit(id, cmd, &frame, args)
        {
            self.abort_transaction();
            return self.fail(id, now, &refusal.to_string());
        }
        let call = Call {
            id,
            cmd,
            frame,
            args,
            start: now,
        };
        // Key watching: one comparison, and one thread-local read, unless it has work to do.
        if call.frame.len() > self.table.bigkey_request {
            self.big_request(&call);
        }
        if crate::nearcache::busy() && super::keywatch::writes(cmd) {
            self.hold_near(&call, matches!(self.mode(), Mode::Transaction));
        }
        match self.mode() {
            Mode::Transaction => return Box::pin(self.queue(call)).await,
            Mode::Subscribed => {
                if let Err(e) = subscribed_admits(self.out.proto, cmd) {
                    return self.fail(id, now, &e.to_string());
                }
            }
            // A blocked session dispatches nothing until its command is answered.
            Mode::Normal | Mode::Blocked => {}
        }
        self.serve(call).await
    }

    /// Serves a command outside a transaction.
    async fn serve(&mut self, call: Call<'_>) {
        match call.cmd.kind {
            Kind::Forward => self.forward_by_keys(call, Then::Pass).await,
            Kind::Split { merge, pairs } => self.split(call, merge, pairs).await,
            // The paths below the hot ones are boxed: their state machines would otherwise
            // make every session's task as large as the largest of them (an idle client's
            // task was 6 KiB). A box costs an allocation only when such a command runs.
            Kind::Broadcast(merge) => Box::pin(self.broadcast(call, merge)).await,
            Kind::First => self.forward_any(call).await,
            Kind::Local(local) => self.local(local, call),
            Kind::Blocking { option } => {
                if option && !has_block_option(&call.frame, call.args) {
                    self.forward_by_keys(call, Then::Pass).await
                } else {
                    Box::pin(self.blocking(call)).await
                }
            }
            Kind::Session(sc) => Box::pin(self.session_command(sc, call)).await,
            Kind::Guarded(allowed) if self.table.settings.allowed[call.id] => {
                Box::pin(self.guarded(allowed, call)).await
            }
            Kind::Guarded(_) => {
                let name = call.cmd.name;
                let parent = name.split('|').next().unwrap_or(name);
                self.fail(
                    call.id,
                    call.start,
                    &format!(
                        "ERR shardis refuses '{name}': it would act on every backend at once. \
                         Enable it with [server] allow_commands = [\"{parent}\"]"
                    ),
                )
            }
            Kind::Refused(reason) => self.fail(
                call.id,
                call.start,
                &format!("ERR shardis does not serve '{}': {reason}", call.cmd.name),
            ),
            Kind::Container => {}
        }
    }

    /// A command that `[server] allow_commands` enabled.
    async fn guarded(&mut self, allowed: Allowed, call: Call<'_>) {
        match allowed {
            Allowed::Broadcast(merge) => self.broadcast(call, merge).await,
            Allowed::First => self.forward_any(call).await,
            Allowed::Debug => {
                let on_key = call.args.len() >= 3
                    && call
                        .arg(1)
                        .is_some_and(|a| a.eq_ignore_ascii_case(b"object"));
                if !on_key {
                    return self.broadcast(call, Merge::AllOk).await;
                }
                let key = call.arg(2).unwrap_or_default();
                match self.table.owner_of_key(key) {
                    Ok((dest, _)) => {
                        let frame = self.table.unprefixed(call.cmd, call.frame, call.args);
                        self.forward(call.id, dest, frame, call.start, Then::Pass)
                            .await
                    }
                    Err(e) => self.fail(call.id, call.start, &e.to_string()),
                }
            }
        }
    }

    async fn session_command(&mut self, sc: SessionCmd, call: Call<'_>) {
        let (id, now) = (call.id, call.start);
        match sc {
            SessionCmd::Multi => self.multi(id, now),
            SessionCmd::Exec => self.fail(id, now, "ERR EXEC without MULTI"),
            SessionCmd::Discard => self.fail(id, now, "ERR DISCARD without MULTI"),
            SessionCmd::Watch => self.watch(call).await,
            SessionCmd::Unwatch => self.unwatch(call),
            SessionCmd::Subscribe(kind) => self.subscribe(kind, call),
            SessionCmd::Unsubscribe(kind) => self.unsubscribe(kind, call),
            SessionCmd::Publish(kind) => self.publish(kind, call).await,
            SessionCmd::Numsub(_) => {
                let channels = call.args[2..]
                    .iter()
                    .map(|r| call.frame.slice(r.clone()))
                    .collect();
                self.broadcast_with(id, Merge::Numsub, call.frame, now, |f| {
                    f.channels = channels
                })
                .await
            }
            SessionCmd::Numpat => self.broadcast(call, Merge::Numpat).await,
            SessionCmd::Scan => self.scan(call).await,
            SessionCmd::Reset => self.reset(id, now),
            SessionCmd::Wait => self.wait(call).await,
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

    /// The backend that owns every key of the call (`Ok(None)`: it has none, EVAL ... 0).
    pub(super) fn route(&self, call: &Call<'_>) -> Result<Option<Dest>, RouteError> {
        self.table.route(call.cmd, &call.frame, call.args, self.id)
    }

    /// Sends the whole command to the backend that owns its keys.
    async fn forward_by_keys(&mut self, call: Call<'_>, then: Then) {
        if call.cmd.acl & acl::SCRIPTING != 0 {
            // EVAL, EVALSHA, FCALL: forwarded, or run in the proxy (session/script.rs).
            return Box::pin(self.script(call)).await;
        }
        if call.cmd.name == "copy" {
            let db = self.table.settings.db;
            match names_other_db(&call.frame, &call.args[3..], db) {
                Ok(false) => {}
                Ok(true) => {
                    let msg = format!(
                        "ERR shardis serves database {db} only: COPY ... DB is not supported"
                    );
                    return self.fail(call.id, call.start, &msg);
                }
                Err(e) => return self.fail(call.id, call.start, e),
            }
        }
        match self.route(&call) {
            // A prefix to remove, a mirror or a fault: see `routed.rs`.
            Ok(Some(dest)) if self.table.special() => self.forward_routed(call, dest, then).await,
            Ok(Some(dest)) => {
                if then == Then::Pass
                    && let Some(reply) = self.watch_key(&call, &dest)
                {
                    // Answered by the near cache.
                    self.push_ready(reply);
                    return self.finish(call.id, call.start, true, None);
                }
                self.forward(call.id, dest, call.frame, call.start, then)
                    .await
            }
            // No key (EVAL ... 0), or a malformed key count that a backend answers with
            // Redis's own error.
            Ok(None) | Err(RouteError::Malformed) => self.forward_any(call).await,
            Err(e) => self.fail(call.id, call.start, &e.to_string()),
        }
    }

    /// Sends the command to the backend that answers commands about no key.
    pub(super) async fn forward_any(&mut self, call: Call<'_>) {
        match self.table.any() {
            Ok(dest) => {
                self.forward(call.id, dest, call.frame, call.start, Then::Pass)
                    .await
            }
            Err(e) => self.fail(call.id, call.start, &e.to_string()),
        }
    }

    /// Sends the command unchanged to every backend, merging the replies with `merge`.
    async fn broadcast(&mut self, mut call: Call<'_>, merge: Merge) {
        if call.cmd.acl & acl::SCRIPTING != 0 {
            // SCRIPT and FUNCTION: the proxy's engine is told too (session/script.rs).
            match self.script_admin(call) {
                Some(rest) => call = rest,
                None => return,
            }
        } else if call.cmd.name == "config|resetstat" {
            self.ctx.state.errors.reset();
        }
        let (id, now) = (call.id, call.start);
        if merge == Merge::AnyOk {
            self.broadcast_exclusive(id, merge, call.frame, now, false)
                .await;
            return;
        }
        if merge == Merge::Info {
            let sections =
                super::info::info_sections(call.args[1..].iter().map(|r| &call.frame[r.clone()]));
            return self
                .broadcast_with(id, merge, Bytes::from_static(INFO_REQUEST), now, |f| {
                    f.info_sections = sections
                })
                .await;
        }
        self.broadcast_with(id, merge, call.frame, now, |_| {})
            .await
    }

    pub(super) async fn broadcast_with(
        &mut self,
        id: usize,
        merge: Merge,
        frame: Bytes,
        now: Instant,
        setup: impl FnOnce(&mut Fanout),
    ) {
        let table = self.table.clone();
        // KEYS, DBSIZE and RANDOMKEY count keys: pools that only mirror hold copies.
        let keyspace = table.has_mirror_only_pools() && super::scan::counts_keys(id);
        let n = if keyspace {
            table.keyspace_count()
        } else {
            table.backend_count()
        };
        let seq = self.next_seq();
        let mut fanout = Box::new(Fanout::new(id, now, merge, self.out.proto, n, Vec::new()));
        setup(&mut fanout);
        for part in 0..n {
            let req = Request::new(frame.clone(), self.reply_to(seq, part as u32));
            let dest = if keyspace {
                table.keyspace_dest_at(part).map(|(_, d)| d)
            } else {
                table.dest_at(part)
            };
            match dest {
                Some(dest) => fanout.sent.push(Some(self.send_part(dest, req).await)),
                None => {
                    fanout.sent.push(None);
                    req.reply
                        .send(Bytes::from_static(b"-ERR no such backend\r\n"));
                }
            }
        }
        self.push_waiting(Pending::Fanout(fanout));
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
