//! EVAL, EVALSHA, FCALL (and `_RO`) and the SCRIPT and FUNCTION commands that manage them.
//!
//! A script whose declared keys are all on one backend is forwarded to it unchanged: it runs
//! there, atomic, as fast as any forward. One whose keys span backends, or that declares none,
//! runs in the proxy's Lua engine ([`crate::script`]) under locks on its declared keys
//! ([`crate::scripting::lock`]); each `redis.call` is routed by its own keys and sent on this
//! client's links ([`super::script_call`]). With `[server] cross_shard = "refuse"` the former
//! get `-CROSSSLOT` and the latter go to the first backend, as before.
//!
//! A proxy-side run is a task of its own whose reply comes back through the session's inbox
//! like a backend's: the session sends nothing more for the client until it is answered (as
//! Redis runs nothing else for a client whose script runs), and the run starts only once the
//! client's earlier commands are answered.

use std::future::Future;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use tokio::sync::oneshot;
use tokio::time::Instant;

use super::Session;
use super::call::Call;
use super::pending::{Fanout, Pending, Then};
use super::script_call::{Env, run_in_proxy};
use crate::backend::{ReplyTo, Request};
use crate::config::CrossShard;
use crate::protocol::command::Merge;
use crate::protocol::out::Proto;
use crate::protocol::reply::{integer_value, is_error, put_array_len, put_integer};
use crate::routing::RouteError;
use crate::script::{Invocation, Protocol};
use crate::scripting::caller::{Caller, Part};
use crate::scripting::{SCRIPTS_KEY, command};

/// The engine's name for a protocol.
pub(super) fn protocol(proto: Proto) -> Protocol {
    match proto {
        Proto::Resp2 => Protocol::Resp2,
        Proto::Resp3 => Protocol::Resp3,
    }
}

impl Session {
    /// EVAL, EVALSHA, FCALL and their `_RO`: forwarded when their keys are on one backend,
    /// else run in the proxy (or refused, or sent to the first backend, under `refuse`).
    pub(super) async fn script(&mut self, call: Call<'_>) {
        let refuse = self.table.settings.scripts.cross_shard == CrossShard::Refuse;
        match self.route(&call) {
            Ok(Some(dest)) => {
                self.learn_script(&call);
                self.forward(call.id, dest, call.frame, call.start, Then::Pass)
                    .await
            }
            Ok(None) | Err(RouteError::Malformed) if refuse => self.forward_any(call).await,
            Err(e @ (RouteError::CrossSlot | RouteError::CrossClusterSlot)) if refuse => {
                self.fail(call.id, call.start, &e.to_string())
            }
            Ok(None)
            | Err(RouteError::Malformed | RouteError::CrossSlot | RouteError::CrossClusterSlot) => {
                self.run_script(call)
            }
            Err(e) => self.fail(call.id, call.start, &e.to_string()),
        }
    }

    /// A forwarded EVAL's script, seen for the first time: cached by the proxy and loaded on
    /// every backend, so that EVALSHA works whatever backend its keys are on, through any
    /// instance.
    fn learn_script(&self, call: &Call<'_>) {
        if !call.cmd.name.starts_with("eval") || call.cmd.name.starts_with("evalsha") {
            return;
        }
        let Some(body) = call.args.get(1).map(|r| call.frame.slice(r.clone())) else {
            return;
        };
        let scripting = &self.ctx.state.scripting;
        if !scripting.first_sight(&body) {
            return;
        }
        let caller = self.caller();
        let state = self.ctx.state.clone();
        tokio::spawn(async move {
            let reply = load_everywhere(&caller, &body).await;
            if !is_error(&reply) {
                let sha = state.scripting.engine.load_script(body.clone());
                store_script(&caller, &sha, &body).await;
            }
        });
    }

    /// The client's user when its ACL restricts it.
    fn acl_user(&self) -> Option<Arc<crate::auth::User>> {
        match &self.who.guard {
            super::login::Guard::Acl(user) => Some(user.clone()),
            _ => None,
        }
    }

    /// A caller on this client's links, routing by the table in force.
    pub(super) fn caller(&self) -> Caller {
        Caller::new(
            self.ctx.routing.clone(),
            self.table.clone(),
            self.out.proto,
            self.id,
        )
    }

    /// Runs the script of `call` in the proxy.
    fn run_script(&mut self, call: Call<'_>) {
        let argv: Vec<Bytes> = call
            .args
            .iter()
            .map(|r| call.frame.slice(r.clone()))
            .collect();
        let inv = match Invocation::parse(&argv, protocol(self.out.proto)) {
            Ok(inv) => inv,
            Err(reply) => return self.answer_now(call.id, call.start, reply),
        };
        let env = self.script_env();
        self.run_task(call.id, call.start, move |gate| {
            run_in_proxy(env, inv, gate)
        });
    }

    /// What a proxy-side run needs of the session.
    pub(super) fn script_env(&self) -> Env {
        Env {
            caller: self.caller(),
            state: self.ctx.state.clone(),
            user: self.acl_user(),
            settings: self.table.settings.scripts,
            db: self.table.settings.db,
            max_keys: self.table.settings.max_keys_reply,
        }
    }

    /// Queues a complete reply, counted as the command's result.
    pub(super) fn answer_now(&mut self, id: usize, start: Instant, reply: Bytes) {
        self.ctx
            .metrics
            .command(id)
            .record(start.elapsed(), !is_error(&reply));
        self.push_ready(reply);
    }

    /// Runs `make`'s future as a task whose result is the command's reply. Nothing more is
    /// sent for the client until it is in; the future gets a receiver that fires once the
    /// commands before it are answered (`None`: nothing was in flight).
    pub(super) fn run_task<F>(
        &mut self,
        id: usize,
        start: Instant,
        make: impl FnOnce(Option<oneshot::Receiver<()>>) -> F,
    ) where
        F: Future<Output = Bytes> + Send + 'static,
    {
        let gate = (self.queue.awaiting > 0).then(|| {
            let (tx, rx) = oneshot::channel();
            self.modes.gate = Some(tx);
            rx
        });
        let seq = self.next_seq();
        let reply: ReplyTo = self.reply_to(seq, 0);
        let fanout = Box::new(Fanout::new(
            id,
            start,
            Merge::Same,
            self.out.proto,
            1,
            Vec::new(),
        ));
        self.push_waiting(Pending::Fanout(fanout));
        self.modes.blocked = Some(seq);
        let future = make(gate);
        tokio::spawn(async move { reply.send(future.await) });
    }

    /// SCRIPT and FUNCTION subcommands that the proxy's engine must know of too. Returns the
    /// call when the usual broadcast is what remains to do.
    pub(super) fn script_admin<'c>(&mut self, call: Call<'c>) -> Option<Call<'c>> {
        let engine = &self.ctx.state.scripting.engine;
        match call.cmd.name {
            "script|load" => {
                // args: SCRIPT, LOAD, body (the arity, 3, is checked before).
                let body = call.frame.slice(call.args[2].clone());
                let caller = self.caller();
                let state = self.ctx.state.clone();
                self.run_task(call.id, call.start, move |_| async move {
                    let reply = load_everywhere(&caller, &body).await;
                    if !is_error(&reply) {
                        state.scripting.first_sight(&body);
                        let sha = state.scripting.engine.load_script(body.clone());
                        store_script(&caller, &sha, &body).await;
                    }
                    reply
                });
                None
            }
            "script|exists" => {
                let shas: Vec<Bytes> = call.args[2..]
                    .iter()
                    .map(|r| call.frame.slice(r.clone()))
                    .collect();
                let caller = self.caller();
                let state = self.ctx.state.clone();
                self.run_task(call.id, call.start, move |_| {
                    script_exists(caller, state, shas)
                });
                None
            }
            "script|flush" => {
                self.ctx.state.scripting.flush();
                if let Ok(dest) = self.table.owner_of(SCRIPTS_KEY) {
                    let req = Request::new(command(&[b"DEL", SCRIPTS_KEY]), ReplyTo::nowhere());
                    self.send_detached(&dest, req);
                }
                Some(call)
            }
            "script|kill" | "function|kill" => {
                let local = engine.kill(call.cmd.name == "script|kill");
                if local.starts_with(b"-NOTBUSY") {
                    return Some(call);
                }
                self.answer_now(call.id, call.start, Bytes::from_static(local));
                None
            }
            "function|load" => {
                let (payload, replace) = match call.args.len() {
                    3 => (call.frame.slice(call.args[2].clone()), false),
                    _ => (
                        call.frame.slice(call.args[call.args.len() - 1].clone()),
                        call.arg(2)
                            .is_some_and(|a| a.eq_ignore_ascii_case(b"replace")),
                    ),
                };
                let frame = call.frame.clone();
                let caller = self.caller();
                let state = self.ctx.state.clone();
                self.run_task(call.id, call.start, move |_| async move {
                    let reply = broadcast(&caller, frame).await;
                    if !is_error(&reply) {
                        let _ = state.scripting.engine.load_library(payload, replace).await;
                    }
                    reply
                });
                None
            }
            "function|delete" => {
                engine.delete_library(&call.text(2));
                Some(call)
            }
            "function|flush" => {
                engine.flush_libraries();
                Some(call)
            }
            _ => Some(call),
        }
    }

    /// Puts a request on this client's link to `dest` without waiting for its reply.
    fn send_detached(&self, dest: &crate::routing::Dest, req: Request) {
        if let Err(e) = dest.backend.link(self.out.proto, self.id).try_send(req) {
            tracing::debug!("request for shardis's own use not sent: {e}");
        }
    }
}

/// Sends `frame` to every backend: the first error, else the first reply.
pub(super) async fn broadcast(caller: &Caller, frame: Bytes) -> Bytes {
    let parts: Vec<Part> = (0..caller.table.backend_count())
        .filter_map(|i| caller.table.dest_at(i))
        .map(|dest| Part::new(dest, frame.clone()))
        .collect();
    if parts.is_empty() {
        return Bytes::from_static(b"-ERR shardis has no backend to serve this\r\n");
    }
    let replies = caller.send_all(parts, caller.proto).await;
    replies
        .iter()
        .find(|r| is_error(r))
        .or(replies.first())
        .cloned()
        .unwrap_or_default()
}

/// SCRIPT LOAD `body` on every backend.
pub(super) async fn load_everywhere(caller: &Caller, body: &Bytes) -> Bytes {
    broadcast(caller, command(&[b"SCRIPT", b"LOAD", body])).await
}

/// Keeps the text of script `sha` on the backends, for every shardis instance.
pub(super) async fn store_script(caller: &Caller, sha: &str, body: &[u8]) {
    if let Ok(dest) = caller.table.owner_of(SCRIPTS_KEY) {
        let frame = command(&[b"HSET", SCRIPTS_KEY, sha.as_bytes(), body]);
        caller.send_and_forget(&dest, frame).await;
    }
}

/// The text of script `sha` as kept on the backends, if it is.
pub(super) async fn fetch_script(caller: &Caller, sha: &str) -> Option<Bytes> {
    let dest = caller.table.owner_of(SCRIPTS_KEY).ok()?;
    let reply = caller
        .send(
            dest,
            command(&[b"HGET", SCRIPTS_KEY, sha.as_bytes()]),
            caller.proto,
        )
        .await;
    crate::protocol::reply::string_value(&reply)
        .filter(|_| reply.first() == Some(&b'$'))
        .map(Bytes::copy_from_slice)
}

/// SCRIPT EXISTS: from the proxy's cache, and for the shas it lacks, from the texts kept on
/// the backends (a script loaded through another instance).
async fn script_exists(
    caller: Caller,
    state: Arc<crate::state::ProxyState>,
    shas: Vec<Bytes>,
) -> Bytes {
    let engine = &state.scripting.engine;
    let mut found: Vec<bool> = shas
        .iter()
        .map(|s| engine.script_exists(&String::from_utf8_lossy(s)))
        .collect();
    let missing: Vec<usize> = (0..shas.len()).filter(|&i| !found[i]).collect();
    if !missing.is_empty()
        && let Ok(dest) = caller.table.owner_of(SCRIPTS_KEY)
    {
        let parts = missing
            .iter()
            .map(|&i| {
                let sha = shas[i].to_ascii_lowercase();
                Part::new(dest.clone(), command(&[b"HEXISTS", SCRIPTS_KEY, &sha]))
            })
            .collect();
        let replies = caller.send_all(parts, caller.proto).await;
        for (&i, r) in missing.iter().zip(&replies) {
            found[i] = integer_value(r) == Some(1);
        }
    }
    let mut out = BytesMut::with_capacity(8 + 4 * found.len());
    put_array_len(&mut out, found.len());
    for f in found {
        put_integer(&mut out, i64::from(f));
    }
    out.freeze()
}
