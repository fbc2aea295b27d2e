//! A script run in the proxy: its locks, and each `redis.call` routed like a client command
//! by its own keys (multi-key commands split per backend and merged, keyless ones to the
//! first backend or to all) and sent on the client's links ([`Caller`]).
//!
//! Blocking commands run as if their timeout had expired, as in Redis: each is sent inside
//! `MULTI`/`EXEC`, where Redis never blocks.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::sync::oneshot;
use tokio::time::Instant;

use super::leased::has_block_option;
use super::pending::{Fanout, MergeEnv};
use super::script::fetch_script;
use crate::auth::User;
use crate::config::ScriptsConfig;
use crate::protocol::command::{
    Allowed, Command as Cmd, Kind, Local, Merge, SessionCmd, lookup, lookup_sub,
};
use crate::protocol::keys::key_span;
use crate::protocol::out::Proto;
use crate::protocol::reply::{
    elements, is_error, put_array_len, put_bulk, split_replies, string_value,
};
use crate::protocol::request::parse_int;
use crate::routing::{Dest, RouteError, keyed_read};
use crate::script::{CallError, Command, Dispatch, Invocation, Protocol, What, sha1hex};
use crate::scripting::caller::{Caller, Part};
use crate::scripting::{Running, command, lock, shown_keys};
use crate::state::ProxyState;

const MULTI: &[u8] = b"*1\r\n$5\r\nMULTI\r\n";
const EXEC: &[u8] = b"*1\r\n$4\r\nEXEC\r\n";

/// What a proxy-side run takes from its session.
pub(super) struct Env {
    pub caller: Caller,
    pub state: Arc<ProxyState>,
    /// The client's user, when its ACL restricts it: each call is checked.
    pub user: Option<Arc<User>>,
    pub settings: ScriptsConfig,
    pub db: u32,
    pub max_keys: usize,
}

fn error(msg: &str) -> Bytes {
    Bytes::from(format!("-{msg}\r\n"))
}

/// Runs `inv` in the proxy under locks on its declared keys, once `gate` fires; the reply in
/// the client's protocol.
pub(super) async fn run_in_proxy(
    env: Env,
    inv: Invocation,
    gate: Option<oneshot::Receiver<()>>,
) -> Bytes {
    if let Some(gate) = gate {
        let _ = gate.await;
    }
    let (caller, scripting) = (&env.caller, &env.state.scripting);
    let engine = &scripting.engine;
    engine.set_timeout(env.settings.script_timeout);
    let what = match &inv.what {
        What::Eval(body) => sha1hex(body),
        What::EvalSha(sha) => {
            if !engine.script_exists(sha)
                && let Some(body) = fetch_script(caller, sha).await
            {
                engine.load_script(body);
            }
            sha.clone()
        }
        What::Fcall(name) => {
            if !engine.has_function(name) {
                fetch_libraries(caller, engine).await;
            }
            name.clone()
        }
    };
    let groups = match lock::plan(&caller.table, &inv.keys) {
        Ok(groups) => groups,
        Err(e) => return error(&e.to_string()),
    };
    let guard = scripting.begin(Running {
        kind: "script",
        what: what.clone(),
        keys: shown_keys(&inv.keys),
        client: 0,
        started: std::time::Instant::now(),
        running: false,
    });
    let ttl = env.settings.lock_ttl;
    let wait = ttl + env.settings.script_timeout;
    let (held, waited) = match lock::acquire(caller, groups, scripting.token(), ttl, wait).await {
        Ok(x) => x,
        Err(e) => {
            crate::metrics::cross_shard("script", "locked");
            return error(&e.to_string());
        }
    };
    crate::metrics::lock_wait(waited);
    guard.started();
    let body = match &inv.what {
        What::Eval(body) => Some(body.clone()),
        _ => None,
    };
    let dispatch = ProxyDispatch {
        env: &env,
        lost: AtomicBool::new(false),
    };
    let reply = if held.count() == 0 {
        engine.run(inv, &dispatch).await
    } else {
        tokio::select! {
            reply = engine.run(inv, &dispatch) => reply,
            () = keep(&held, caller, &dispatch.lost, ttl) => error("ERR shardis lost a script's locks"),
        }
    };
    held.release(caller).await;
    drop(guard);
    let result = if reply.starts_with(b"-ERR Script timed out") {
        "timeout"
    } else if is_error(&reply) {
        "error"
    } else {
        "ok"
    };
    crate::metrics::cross_shard("script", result);
    if let Some(body) = body
        && engine.script_exists(&what)
        && scripting.first_publish(&what)
    {
        publish(caller, &what, body).await;
    }
    reply
}

/// Renews the locks every third of their ttl while the script runs; marks them lost if one
/// was no longer held (the script's further calls then fail).
async fn keep(held: &lock::Held, caller: &Caller, lost: &AtomicBool, ttl: Duration) {
    loop {
        tokio::time::sleep(ttl / 3).await;
        if !held.renew(caller).await {
            lost.store(true, Ordering::Relaxed);
        }
    }
}

/// Loads a script first run here on every backend and keeps its text for other instances,
/// without waiting.
async fn publish(caller: &Caller, sha: &str, body: Bytes) {
    let load = command(&[b"SCRIPT", b"LOAD", &body]);
    for i in 0..caller.table.backend_count() {
        if let Some(dest) = caller.table.dest_at(i) {
            caller.send_and_forget(&dest, load.clone()).await;
        }
    }
    super::script::store_script(caller, sha, &body).await;
}

/// Loads into the engine the FUNCTION libraries a backend has that it lacks (loaded through
/// another instance, or restored).
async fn fetch_libraries(caller: &Caller, engine: &crate::script::Engine) {
    let Ok(dest) = caller.table.any() else {
        return;
    };
    let reply = caller
        .send(
            dest,
            command(&[b"FUNCTION", b"LIST", b"WITHCODE"]),
            Proto::Resp2,
        )
        .await;
    for lib in elements(&reply).unwrap_or_default() {
        let fields = elements(lib).unwrap_or_default();
        let code = fields
            .chunks(2)
            .find(|kv| string_value(kv[0]) == Some(&b"library_code"[..]))
            .and_then(|kv| kv.get(1).and_then(|v| string_value(v)));
        if let Some(code) = code {
            let _ = engine
                .load_library(Bytes::copy_from_slice(code), false)
                .await;
        }
    }
}

/// Serves the calls of one proxy-side script.
struct ProxyDispatch<'a> {
    env: &'a Env,
    /// A lock was lost: further calls fail.
    lost: AtomicBool,
}

impl Dispatch for ProxyDispatch<'_> {
    async fn call(&self, command: Command) -> Result<Bytes, CallError> {
        if self.lost.load(Ordering::Relaxed) {
            return Err(CallError::Failed(
                "ERR shardis lost the script's locks (they expired): the script is stopped"
                    .to_string(),
            ));
        }
        let proto = match command.protocol {
            Protocol::Resp2 => Proto::Resp2,
            Protocol::Resp3 => Proto::Resp3,
        };
        Ok(serve(self.env, &command.args, proto).await)
    }
}

/// The frame of `args` and where each argument is in it.
fn encode(args: &[Vec<u8>]) -> (Bytes, Vec<std::ops::Range<usize>>) {
    let mut out = BytesMut::with_capacity(16 + args.iter().map(|a| a.len() + 16).sum::<usize>());
    put_array_len(&mut out, args.len());
    let mut ranges = Vec::with_capacity(args.len());
    for a in args {
        put_bulk(&mut out, a);
        let end = out.len() - 2;
        ranges.push(end - a.len()..end);
    }
    (out.freeze(), ranges)
}

/// One call of a script: routed and sent, its reply in `proto`.
async fn serve(env: &Env, argv: &[Vec<u8>], proto: Proto) -> Bytes {
    let Some(name) = argv.first() else {
        return error("ERR wrong number of arguments");
    };
    let Some((mut id, mut cmd)) = lookup(name) else {
        return error("ERR Unknown Redis command called from script");
    };
    if cmd.kind == Kind::Container {
        match argv.get(1).and_then(|sub| lookup_sub(cmd.name, sub)) {
            Some(found) => (id, cmd) = found,
            None => return error(&RouteError::WrongArity(cmd.name).to_string()),
        }
    }
    let (frame, args) = encode(argv);
    if let Some(user) = &env.user
        && user.acl.check(id, cmd, &frame, &args).is_err()
    {
        return error("NOPERM The user executing the script can't run this command or subcommand");
    }
    let table = &env.caller.table;
    match cmd.kind {
        Kind::Forward => keyed(env, cmd, frame, &args, proto, false).await,
        Kind::Blocking { option } => {
            let blocks = !option || has_block_option(&frame, &args);
            keyed(env, cmd, frame, &args, proto, blocks).await
        }
        Kind::Split { merge, pairs } => {
            split(env, id, cmd, &frame, &args, proto, merge, pairs).await
        }
        Kind::Broadcast(merge) => all(env, id, frame, proto, merge).await,
        Kind::First => any(env, frame, proto).await,
        Kind::Local(Local::Ping) => match argv.get(1) {
            Some(m) => bulk(m),
            None => Bytes::from_static(b"+PONG\r\n"),
        },
        Kind::Local(Local::Echo) => bulk(argv.get(1).map_or(&[][..], Vec::as_slice)),
        Kind::Local(Local::Time) => any(env, frame, proto).await,
        Kind::Local(Local::Select) => match argv.get(1).and_then(|a| parse_int(a)) {
            Some(n) if n == i64::from(env.db) => Bytes::from_static(b"+OK\r\n"),
            Some(_) => error("ERR DB index is out of range"),
            None => error("ERR value is not an integer or out of range"),
        },
        Kind::Session(SessionCmd::Publish(_)) => match table.owner_of(&argv[1]) {
            Ok(dest) => env.caller.send(dest, frame, proto).await,
            Err(e) => error(&e.to_string()),
        },
        Kind::Guarded(allowed) if table.settings.allowed[id] => match allowed {
            Allowed::Broadcast(merge) => all(env, id, frame, proto, merge).await,
            Allowed::First => any(env, frame, proto).await,
            Allowed::Debug => all(env, id, frame, proto, Merge::AllOk).await,
        },
        Kind::Guarded(_) => error(&format!(
            "ERR shardis refuses '{}': it would act on every backend at once",
            cmd.name
        )),
        Kind::Refused(reason) => error(&format!(
            "ERR shardis does not serve '{}': {reason}",
            cmd.name
        )),
        _ => error(&format!(
            "ERR shardis cannot run '{}' in a script run by the proxy",
            cmd.name
        )),
    }
}

fn bulk(data: &[u8]) -> Bytes {
    let mut out = BytesMut::with_capacity(data.len() + 16);
    put_bulk(&mut out, data);
    out.freeze()
}

/// To the first backend.
async fn any(env: &Env, frame: Bytes, proto: Proto) -> Bytes {
    match env.caller.table.any() {
        Ok(dest) => env.caller.send(dest, frame, proto).await,
        Err(e) => error(&e.to_string()),
    }
}

/// To the backend of the command's keys (any backend without keys); `blocks`: as if its
/// timeout had expired.
async fn keyed(
    env: &Env,
    cmd: &'static Cmd,
    frame: Bytes,
    args: &[std::ops::Range<usize>],
    proto: Proto,
    blocks: bool,
) -> Bytes {
    let table = &env.caller.table;
    let dest = match table.route(cmd, &frame, args, 0) {
        Ok(Some(dest)) => dest,
        Ok(None) | Err(RouteError::Malformed) => match table.any() {
            Ok(dest) => dest,
            Err(e) => return error(&e.to_string()),
        },
        Err(e) => return error(&e.to_string()),
    };
    if !blocks {
        return env.caller.send(dest, frame, proto).await;
    }
    let mut batch = BytesMut::with_capacity(MULTI.len() + frame.len() + EXEC.len());
    batch.extend_from_slice(MULTI);
    batch.extend_from_slice(&frame);
    batch.extend_from_slice(EXEC);
    let part = Part {
        dest,
        frame: batch.freeze(),
        replies: 3,
    };
    let reply = env
        .caller
        .send_all(vec![part], proto)
        .await
        .pop()
        .unwrap_or_default();
    let replies: Vec<_> = split_replies(&reply).collect();
    match replies.as_slice() {
        [_, queued, _] if is_error(&reply[queued.clone()]) => reply.slice(queued.clone()),
        [_, _, exec] => {
            let exec = reply.slice(exec.clone());
            match elements(&exec).as_deref() {
                Some([one]) => Bytes::copy_from_slice(one),
                _ => exec,
            }
        }
        _ => reply,
    }
}

/// To every backend, merged.
async fn all(env: &Env, id: usize, frame: Bytes, proto: Proto, merge: Merge) -> Bytes {
    let table = &env.caller.table;
    let parts: Vec<Part> = (0..table.backend_count())
        .filter_map(|i| table.dest_at(i))
        .map(|dest| Part::new(dest, frame.clone()))
        .collect();
    let replies = env.caller.send_all(parts, proto).await;
    merged(env, id, proto, merge, replies, Vec::new())
}

fn merged(
    env: &Env,
    id: usize,
    proto: Proto,
    merge: Merge,
    replies: Vec<Bytes>,
    order: Vec<(u32, u32)>,
) -> Bytes {
    let mut fanout = Fanout::new(id, Instant::now(), merge, proto, replies.len(), order);
    for (i, r) in replies.into_iter().enumerate() {
        fanout.fill(i as u32, r);
    }
    fanout.merge(&MergeEnv {
        state: &env.state,
        table: &env.caller.table,
        max_keys: env.max_keys,
        pick: Instant::now().elapsed().as_nanos() as u64 ^ 0x9E37_79B9,
    })
}

/// MGET, MSET, DEL...: one part per group of keys, merged.
#[allow(clippy::too_many_arguments)]
async fn split(
    env: &Env,
    id: usize,
    cmd: &'static Cmd,
    frame: &Bytes,
    args: &[std::ops::Range<usize>],
    proto: Proto,
    merge: Merge,
    pairs: bool,
) -> Bytes {
    let span = match key_span(cmd, frame, args) {
        Ok(Some(span)) => span,
        Ok(None) => return error(&RouteError::NoKeys(cmd.name).to_string()),
        Err(e) => return error(&RouteError::keys(e, cmd.name).to_string()),
    };
    let key = |pos: usize| &frame[args[pos].clone()];
    let table = &env.caller.table;
    let Some(pool) = span.positions().next().and_then(|p| table.pool_of(key(p))) else {
        return error(&RouteError::NoBackend.to_string());
    };
    let mut groups: Vec<(usize, Vec<usize>)> = Vec::new();
    let mut order = Vec::new();
    for pos in span.positions() {
        let g = pool.group_of(key(pos));
        let part = match groups.iter().position(|(group, _)| *group == g) {
            Some(p) => p,
            None => {
                groups.push((g, Vec::new()));
                groups.len() - 1
            }
        };
        order.push((part as u32, groups[part].1.len() as u32));
        groups[part].1.push(pos);
    }
    let per_key = if pairs { 2 } else { 1 };
    let read = keyed_read(cmd);
    let mut parts = Vec::with_capacity(groups.len());
    for (group, positions) in &groups {
        let dest: Dest = match pool.node_for(pool.group_owner(*group), read, 0) {
            Ok(dest) => dest,
            Err(e) => return error(&e.to_string()),
        };
        let mut out = BytesMut::new();
        put_array_len(&mut out, 1 + positions.len() * per_key);
        put_bulk(&mut out, key(0));
        for &pos in positions {
            for arg in &args[pos..pos + per_key] {
                put_bulk(&mut out, &frame[arg.clone()]);
            }
        }
        parts.push(Part::new(dest, out.freeze()));
    }
    let replies = env.caller.send_all(parts, proto).await;
    if merge != Merge::Mget {
        order.clear();
    }
    merged(env, id, proto, merge, replies, order)
}
