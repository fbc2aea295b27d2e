//! Lua scripts run inside the proxy, as Redis 7.0 runs them: the engine that EVAL, EVALSHA and
//! FCALL whose keys span backends will run on. It depends on nothing in the crate but
//! [`crate::protocol`]; the proxy plugs in through [`Dispatch`] (or [`Call`]).
//!
//! # Interface
//! The proxy hands the engine an [`Invocation`] (EVAL, EVALSHA, FCALL and their `_RO`, parsed
//! by [`Invocation::parse`] with Redis's argument errors) and a [`Dispatch`]: for each
//! `redis.call` the engine asks `Dispatch::call` for one [`Command`] (its arguments as bytes
//! and the protocol, RESP2 or RESP3, that the script chose with `redis.setresp`) and gets back
//! one reply frame as RESP bytes, or a [`CallError`]. The engine knows nothing of routing.
//! [`Engine::run`] returns the script's reply as one RESP frame in the client's protocol
//! (errors are error frames). [`Engine::run_blocking`] does the same on the calling thread
//! with a [`Call`]. SCRIPT LOAD/EXISTS/FLUSH, FUNCTION LOAD/DELETE/FLUSH and SCRIPT/FUNCTION
//! KILL have their counterparts on [`Engine`].
//!
//! # Crate: `mlua-sys` (vendored Lua 5.1.5), not `mlua`'s high-level API
//! Redis embeds PUC Lua 5.1, so its number formatting, error texts, `string` patterns and
//! integer conversions are Lua 5.1's: LuaJIT and later Luas differ, and a Rust Lua would be
//! further off. `mlua-sys` is mlua's FFI layer and builds Lua 5.1.5 from source (`vendored`),
//! so nothing is needed on the machine. We do not use `mlua`'s safe callbacks because Redis's
//! API must behave like Redis's C functions, and mlua's cannot:
//! - an error raised by a callback reaches Lua as a userdata (mlua's wrapped error), whereas
//!   Redis raises `{err = "..."}` tables that `pcall` returns and `redis.pcall` reifies;
//! - a Lua wrapper that raises the right value adds a Lua frame, so error positions move and
//!   `return redis.call(...)` (a tail call) loses the script's frame, which changes every
//!   `script: <sha>, on @user_script:<line>.` suffix.
//!
//! So `redis.*`, Redis's `pcall`, the protection metamethods, the timeout hook and the four
//! libraries are C functions on the raw API (src/script/api.rs, src/script/lib). The one
//! rule that keeps this sound: a function computes into Rust values, drops them, and only then
//! calls `lua_error` (a `longjmp`), so no Rust frame with a destructor is ever skipped.
//!
//! # Threads and states
//! Lua 5.1 cannot yield across `pcall` or a C function, so a coroutine-based asynchronous
//! `redis.call` would break `pcall(redis.call, ...)`, which real scripts use. Instead each
//! script runs on a blocking thread (`tokio::task::spawn_blocking`, at most
//! [`EngineConfig::max_running`] at once through a semaphore) with a Lua state taken from a
//! pool (at most [`EngineConfig::max_idle_states`] idle ones are kept). `redis.call` sends its
//! command through a bounded channel to the task that called [`Engine::run`], which awaits
//! `Dispatch::call` and sends the reply back; the script's thread blocks on it (with the
//! script's deadline). The proxy's worker keeps serving meanwhile. Measured with
//! `cargo bench --bench script` (an in-memory call implementation; this 2-core machine was
//! shared and loaded, so take the figures as orders of magnitude):
//! - creating a state (libraries, `redis` table, protections) costs about 70 µs (a 2-call
//!   script on a fresh state: 73 µs, on a pooled one: 3.1 µs), so states are pooled; one that
//!   hit its memory limit is dropped;
//! - a script with no call costs about 3 µs on the calling thread and about 38 µs through
//!   [`Engine::run`] (the `spawn_blocking` hand-off and its wake-ups);
//! - each `redis.call` costs about 0.2 µs on the calling thread and about 10 µs through the
//!   channel hand-off to the async side and back (two thread wake-ups): a 2-call script takes
//!   76 µs through [`Engine::run`], a 100-call one 1.0 ms. Both are small against a backend
//!   round trip; a dedicated thread pool that spins briefly before parking could cut them.
//!
//! A pooled state is reused only after the run's traces are scrubbed (see below).
//!
//! # Redis's behaviour reproduced
//! KEYS/ARGV; `redis.call`/`pcall` with Redis's checks and texts (unknown command, arity,
//! `noscript` commands, writes and `may-replicate` commands from read-only scripts);
//! `error_reply`, `status_reply`, `sha1hex`, `log` (to `tracing`, target `shardis::script`),
//! the `LOG_*` and `REPL_*` constants, `setresp`, `set_repl` and `replicate_commands` (no-ops
//! as in Redis 7), `breakpoint` (false) and `debug` (nothing) as outside the debugger,
//! `acl_check_cmd` (through [`Call::acl_check`]), `REDIS_VERSION` (7.0.15); every conversion
//! rule both ways in RESP2 and RESP3; Redis's `pcall`; the error handler and its
//! `script: <sha>, on @user_script:<line>.` suffixes; `#!lua flags=...` shebangs; the sandbox
//! (no os, io, require, loadfile, dofile, print, setfenv, getfenv, newproxy or debug; unknown
//! globals and global writes refused with Redis's texts); `math.random` with Redis's
//! `lrand48` sequence; cjson, cmsgpack, bit and struct reimplemented in Rust with their
//! formats and error texts; FUNCTION libraries (`#!lua name=...`, `redis.register_function` in
//! both forms, flags, the load-time API, `@user_function` positions, Redis's load errors).
//! tests/script_engine.rs proves each against a real redis-server.
//!
//! # Where it differs from Redis 7.0
//! - Redis 7.0 makes every table reachable from the globals read-only inside its Lua VM. Stock
//!   Lua has no read-only tables, so scripts see read-only proxies of the globals and of each
//!   library table: writes through `t.x = v`, `rawset` and `setmetatable` are refused with
//!   Redis's texts, but `table.insert(string, v)` and other raw array writes into a library
//!   table are not refused (they are wiped after the run, so nothing leaks into the next
//!   script), nor are changes to the string metatable (restored after the run);
//!   `getmetatable` of a protected table answers `false` (Redis: its metatable or nil), and
//!   `pairs`/`next` over `_G` or a library table see nothing.
//! - Past `script_timeout_ms` a script is stopped with `ERR Script timed out after N ms
//!   (script_timeout_ms) and was stopped`; Redis never stops a script on time (it answers
//!   BUSY to others until SCRIPT KILL). SCRIPT KILL stops every running script of its kind
//!   that has not written (Redis runs one script at a time).
//! - A Lua state's memory is bounded ([`EngineConfig::memory_limit`]); past it the script
//!   fails with `ERR Lua memory limit of N bytes exceeded by script <sha>`, even if a `pcall`
//!   caught the allocation failure. Redis has no such limit.
//! - `gcinfo()`/`collectgarbage("count")` report the engine state's memory; `math.random`
//!   continues one sequence per engine, Redis one per process (the same from a fresh start);
//!   cjson's configuration functions act per pooled state, Redis's per process.
//! - Checks Redis makes against its own state (deny-oom before the first write, stale
//!   replica, cluster slots, ACL key permissions) are left to the backend, whose error the
//!   script then gets. Blocking commands are sent as they are: Redis runs them as if their
//!   timeout had expired, so the proxy must do the same when it dispatches them.
//! - `pcall()` with no argument raises "bad argument #1 to 'pcall' (value expected)".
//! - Function flags other than `no-writes` (`allow-oom`, `allow-stale`, `no-cluster`,
//!   `allow-cross-slot-keys`) are read and kept but change nothing here.
//! - A reply from [`Dispatch`] that is not one well-formed RESP frame, or nests deeper than
//!   1,000 levels, becomes the script error `ERR Invalid reply from the backend`.
//!
//! # Limits and duties of the caller
//! - The stop is checked every 100,000 Lua instructions (as Redis's hook), so a spinning
//!   script stops within about a millisecond past its deadline; one long call into a C
//!   library function (a huge `string.rep`) is not interrupted until it returns.
//! - `Dispatch::call` futures must be cancel-safe: when a script is stopped while it waits,
//!   the future of its last call is dropped.
//! - A memory error raised by the Lua API while a Rust value is alive in a C function skips
//!   that value's destructor (a bounded leak); the state that hit its limit is then dropped.
//! - Each state keeps the scripts it compiled (as Redis does); [`Engine::flush_scripts`]
//!   forgets the bodies and drops the idle states with them.

mod api;
mod bridge;
mod call;
mod convert;
mod engine;
pub mod function;
mod invocation;
mod lib;
mod lua;
mod random;
mod run;
mod sandbox;
mod state;

use std::future::Future;
use std::time::Instant;

use bytes::Bytes;

pub use api::{REDIS_VERSION, REDIS_VERSION_NUM};
pub use engine::{Engine, EngineConfig};
pub use invocation::{Invocation, What};

/// A RESP protocol version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    Resp2,
    Resp3,
}

/// One command a script sends with `redis.call` or `redis.pcall`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Command {
    /// The command name and its arguments, as the script gave them (numbers as `%.17g`).
    pub args: Vec<Vec<u8>>,
    /// The protocol the reply must be in (the script's `redis.setresp`, RESP2 by default).
    pub protocol: Protocol,
}

impl Command {
    /// The command as a RESP array of bulk strings.
    pub fn to_resp(&self) -> Vec<u8> {
        let mut out =
            Vec::with_capacity(16 + self.args.iter().map(|a| a.len() + 16).sum::<usize>());
        out.push(b'*');
        out.extend_from_slice(itoa::Buffer::new().format(self.args.len()).as_bytes());
        out.extend_from_slice(b"\r\n");
        for a in &self.args {
            out.push(b'$');
            out.extend_from_slice(itoa::Buffer::new().format(a.len()).as_bytes());
            out.extend_from_slice(b"\r\n");
            out.extend_from_slice(a);
            out.extend_from_slice(b"\r\n");
        }
        out
    }
}

/// Why a command got no reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallError {
    /// The script's deadline passed while it waited.
    Timeout,
    /// The command could not be served: the text becomes the script's error (`ERR ...`, or
    /// `-CODE ...` for another code).
    Failed(String),
}

/// What the proxy implements: serve one command of a running script and answer with its
/// reply frame (one RESP reply, in `command.protocol`). Called from the async side; the
/// script waits meanwhile.
pub trait Dispatch: Sync {
    fn call(&self, command: Command) -> impl Future<Output = Result<Bytes, CallError>> + Send;
}

/// The same, called on the script's own thread (blocking until the reply).
pub trait Call {
    fn call(
        &mut self,
        args: Vec<Vec<u8>>,
        protocol: Protocol,
        deadline: Option<Instant>,
    ) -> Result<Bytes, CallError>;

    /// `redis.acl_check_cmd`: whether the calling user may run `args`.
    fn acl_check(&self, _args: &[Vec<u8>]) -> bool {
        true
    }
}

/// The sha1 of `data` in lowercase hex, as EVALSHA and `redis.sha1hex` compute it.
pub fn sha1hex(data: &[u8]) -> String {
    sha1_smol::Sha1::from(data).digest().to_string()
}
