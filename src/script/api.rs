//! The `redis` table a script sees (`redis.call`, `redis.pcall`, `redis.error_reply`, ...),
//! Redis's `pcall`, the protection metamethods and the timeout hook.
//!
//! These are C functions on the raw Lua API, not `mlua` callbacks: they raise Lua values
//! (Redis's `{err=...}` tables) and add no Lua frame, so `pcall`, error positions and
//! `return redis.call(...)` tail calls behave exactly as in Redis.

use std::cell::Cell;
use std::ffi::{c_int, c_void};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Instant;

use super::call::{args, call, pcall};
use super::lua::{self, ffi, lua_State, push_bytes, push_error_table, set_field, to_bytes};
use super::random::{math_random, math_randomseed};
use super::sandbox::{rawset, redis_pcall, setmetatable};
use super::{Call, Protocol};
use crate::protocol::command;

/// Redis's `REDIS_VERSION` and `REDIS_VERSION_NUM` as scripts see them (the version whose
/// scripting this engine reproduces).
pub const REDIS_VERSION: &str = "7.0.15";
pub const REDIS_VERSION_NUM: u32 = 0x0007_000f;

/// Why a script was stopped from outside.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stop {
    Killed,
    TimedOut,
}

/// What the C functions need while one script runs; lives on the running thread's stack and
/// is reached through a thread-local pointer.
pub struct RunCtx<'a> {
    /// The protocol of `redis.call` replies (`redis.setresp`).
    pub resp: Protocol,
    /// EVAL_RO, FCALL_RO, or a script that declared `no-writes`.
    pub read_only: bool,
    pub deadline: Option<Instant>,
    pub timeout_ms: u64,
    pub kill: &'a AtomicBool,
    /// Set once the script wrote (SCRIPT KILL then answers UNKILLABLE).
    pub wrote: &'a AtomicBool,
    pub stopped: Option<Stop>,
    pub call: &'a mut dyn Call,
    pub rand: &'a AtomicU64,
    /// While FUNCTION LOAD runs the library body: where `redis.register_function` records.
    pub loading: Option<&'a mut super::function::Registrations>,
}

thread_local! {
    static CTX: Cell<*mut c_void> = const { Cell::new(std::ptr::null_mut()) };
}

/// Makes `ctx` the running script's context until the guard drops.
pub struct CtxGuard(());

impl CtxGuard {
    pub fn set(ctx: &mut RunCtx<'_>) -> CtxGuard {
        CTX.with(|c| c.set(ctx as *mut RunCtx<'_> as *mut c_void));
        CtxGuard(())
    }
}

impl Drop for CtxGuard {
    fn drop(&mut self) {
        CTX.with(|c| c.set(std::ptr::null_mut()));
    }
}

/// The registrations of the library being loaded, if FUNCTION LOAD runs on this thread.
pub fn loading<'a>() -> Option<&'a mut super::function::Registrations> {
    ctx().and_then(|c| c.loading.as_deref_mut())
}

/// The protocol the running script chose (`redis.setresp`).
pub fn current_resp() -> Option<Protocol> {
    ctx().map(|c| c.resp)
}

/// The running script's context, if a script runs on this thread.
pub(super) fn ctx<'a>() -> Option<&'a mut RunCtx<'a>> {
    let p = CTX.with(|c| c.get());
    // SAFETY: set by `CtxGuard` from a live `&mut RunCtx` for exactly the duration of the
    // run, on this thread; the C functions run nested inside that borrow.
    unsafe { (p as *mut RunCtx<'a>).as_mut() }
}

/// Raises Redis's error table for `text` (see [`push_error_table`]).
pub(super) unsafe fn raise_error(l: *mut lua_State, text: &str) -> ! {
    unsafe {
        push_error_table(l, text.as_bytes());
        lua::raise(l)
    }
}

/// Installs the `redis` table, Redis's `pcall`, `rawset`/`setmetatable` that respect the
/// read-only tables, and Redis's `math.random`.
///
/// # Safety
/// During state setup, protected.
pub unsafe fn register(l: *mut lua_State) {
    unsafe {
        ffi::lua_pushcclosure(l, redis_pcall, 0);
        ffi::lua_setfield(l, ffi::LUA_GLOBALSINDEX, c"pcall".as_ptr());
        ffi::lua_pushcclosure(l, rawset, 0);
        ffi::lua_setfield(l, ffi::LUA_GLOBALSINDEX, c"rawset".as_ptr());
        ffi::lua_pushcclosure(l, setmetatable, 0);
        ffi::lua_setfield(l, ffi::LUA_GLOBALSINDEX, c"setmetatable".as_ptr());

        ffi::lua_createtable(l, 0, 32);
        lua::register(
            l,
            &[
                (c"call", call as lua::CFn),
                (c"pcall", pcall),
                (c"log", log),
                (c"setresp", setresp),
                (c"sha1hex", sha1hex),
                (c"error_reply", error_reply),
                (c"status_reply", status_reply),
                (c"set_repl", set_repl),
                (c"acl_check_cmd", acl_check_cmd),
                (c"breakpoint", breakpoint),
                (c"debug", debug),
                (c"replicate_commands", replicate_commands),
                (c"register_function", super::function::register_function),
            ],
        );
        for (name, v) in [
            (c"LOG_DEBUG", 0.0),
            (c"LOG_VERBOSE", 1.0),
            (c"LOG_NOTICE", 2.0),
            (c"LOG_WARNING", 3.0),
            (c"REPL_NONE", 0.0),
            (c"REPL_AOF", 1.0),
            (c"REPL_SLAVE", 2.0),
            (c"REPL_REPLICA", 2.0),
            (c"REPL_ALL", 3.0),
            (c"REDIS_VERSION_NUM", f64::from(REDIS_VERSION_NUM)),
        ] {
            ffi::lua_pushnumber(l, v);
            set_field(l, -2, name);
        }
        push_bytes(l, REDIS_VERSION.as_bytes());
        set_field(l, -2, c"REDIS_VERSION");
        ffi::lua_setfield(l, ffi::LUA_GLOBALSINDEX, c"redis".as_ptr());

        ffi::lua_getfield_(l, ffi::LUA_GLOBALSINDEX, c"math".as_ptr());
        ffi::lua_pushcclosure(l, math_random, 0);
        set_field(l, -2, c"random");
        ffi::lua_pushcclosure(l, math_randomseed, 0);
        set_field(l, -2, c"randomseed");
        ffi::lua_pop(l, 1);
    }
}

/// The error a script stopped by `script_timeout_ms` gets.
pub fn timeout_text(ms: u64) -> String {
    format!("Script timed out after {ms} ms (script_timeout_ms) and was stopped")
}

const KILLED_TEXT: &str = "Script killed by user with SCRIPT KILL...";

/// Instructions between two checks of the deadline and the kill flag (Redis: 100,000).
pub const HOOK_EVERY: c_int = 100_000;

/// The count hook: stops the script when it is killed or past its deadline. Once stopped,
/// it fires on every line so that a `pcall` cannot swallow the stop.
pub unsafe extern "C-unwind" fn hook(l: *mut lua_State, _ar: *mut ffi::lua_Debug) {
    let Some(run) = ctx() else { return };
    if run.stopped.is_some() {
        // Not inside Redis's error handler: the error it is building must come out whole.
        // SAFETY: `ar` is the hook's activation record.
        let in_handler = unsafe {
            ffi::lua_getinfo(l, c"S".as_ptr(), _ar) != 0
                && std::ffi::CStr::from_ptr((*_ar).source).to_bytes() == b"@err_handler_def"
        };
        if in_handler {
            return;
        }
    }
    if run.stopped.is_none() {
        if run.kill.load(Ordering::Relaxed) {
            run.stopped = Some(Stop::Killed);
        } else if run.deadline.is_some_and(|d| Instant::now() >= d) {
            run.stopped = Some(Stop::TimedOut);
        }
    }
    let text = match run.stopped {
        None => return,
        Some(Stop::Killed) => KILLED_TEXT.to_string(),
        Some(Stop::TimedOut) => timeout_text(run.timeout_ms),
    };
    if run.stopped == Some(Stop::Killed) {
        tracing::warn!("Lua script killed by user with SCRIPT KILL.");
    }
    unsafe {
        arm_stop_hook(l);
        push_error_table(l, text.as_bytes());
        drop(text);
        lua::raise(l)
    }
}

pub(super) unsafe fn arm_stop_hook(l: *mut lua_State) {
    unsafe {
        ffi::lua_sethook(l, Some(hook), ffi::LUA_MASKLINE | ffi::LUA_MASKCOUNT, 1);
    }
}

unsafe extern "C-unwind" fn sha1hex(l: *mut lua_State) -> c_int {
    unsafe {
        if ffi::lua_gettop(l) != 1 {
            raise_error(l, "wrong number of arguments");
        }
        let hex = super::sha1hex(to_bytes(l, 1).unwrap_or_default());
        push_bytes(l, hex.as_bytes());
    }
    1
}

unsafe extern "C-unwind" fn error_reply(l: *mut lua_State) -> c_int {
    unsafe {
        if ffi::lua_gettop(l) != 1 || ffi::lua_type(l, -1) != ffi::LUA_TSTRING {
            push_error_table(l, b"wrong number or type of arguments");
            return 1;
        }
        let s = to_bytes(l, -1).unwrap_or_default();
        // lua_tostring: the text ends at its first NUL.
        let s = &s[..s.iter().position(|&b| b == 0).unwrap_or(s.len())];
        if s.first() == Some(&b'-') {
            push_error_table(l, s);
        } else {
            let mut buf = Vec::with_capacity(s.len() + 1);
            buf.push(b'-');
            buf.extend_from_slice(s);
            push_error_table(l, &buf);
        }
    }
    1
}

unsafe extern "C-unwind" fn status_reply(l: *mut lua_State) -> c_int {
    unsafe {
        if ffi::lua_gettop(l) != 1 || ffi::lua_type(l, -1) != ffi::LUA_TSTRING {
            push_error_table(l, b"wrong number or type of arguments");
            return 1;
        }
        ffi::lua_createtable(l, 0, 1);
        ffi::lua_pushvalue(l, -2);
        set_field(l, -2, c"ok");
    }
    1
}

unsafe extern "C-unwind" fn set_repl(l: *mut lua_State) -> c_int {
    unsafe {
        if ctx().is_none() {
            raise_error(
                l,
                "redis.set_repl can only be called inside a script invocation",
            );
        }
        if ffi::lua_gettop(l) != 1 {
            raise_error(l, "redis.set_repl() requires two arguments.");
        }
        let flags = ffi::lua_tonumber(l, -1) as c_int;
        if flags & !3 != 0 {
            raise_error(
                l,
                "Invalid replication flags. Use REPL_AOF, REPL_REPLICA, REPL_ALL or REPL_NONE.",
            );
        }
    }
    0
}

unsafe extern "C-unwind" fn acl_check_cmd(l: *mut lua_State) -> c_int {
    unsafe {
        let Some(run) = ctx() else {
            raise_error(
                l,
                "redis.acl_check_cmd can only be called inside a script invocation",
            );
        };
        let allowed = match args(l) {
            Err(e) => Err(e),
            Ok(argv) => match command::lookup(&argv[0]) {
                None => Err("Invalid command passed to redis.acl_check_cmd()"),
                Some(_) => Ok(run.call.acl_check(&argv)),
            },
        };
        match allowed {
            Err(e) => raise_error(l, e),
            Ok(b) => ffi::lua_pushboolean(l, c_int::from(b)),
        }
    }
    1
}

unsafe extern "C-unwind" fn log(l: *mut lua_State) -> c_int {
    unsafe {
        let argc = ffi::lua_gettop(l);
        if argc < 2 {
            raise_error(l, "redis.log() requires two arguments or more.");
        }
        if ffi::lua_isnumber(l, 1) == 0 {
            raise_error(l, "First argument must be a number (log level).");
        }
        let level = ffi::lua_tonumber(l, 1) as c_int;
        if !(0..=3).contains(&level) {
            raise_error(l, "Invalid debug level.");
        }
        let mut text = Vec::new();
        for j in 2..=argc {
            if let Some(s) = to_bytes(l, j) {
                if j != 2 {
                    text.push(b' ');
                }
                text.extend_from_slice(s);
            }
        }
        let text = String::from_utf8_lossy(&text);
        match level {
            0 => tracing::debug!(target: "shardis::script", "{text}"),
            1 => tracing::debug!(target: "shardis::script", "{text}"),
            2 => tracing::info!(target: "shardis::script", "{text}"),
            _ => tracing::warn!(target: "shardis::script", "{text}"),
        }
    }
    0
}

unsafe extern "C-unwind" fn setresp(l: *mut lua_State) -> c_int {
    unsafe {
        let Some(run) = ctx() else {
            raise_error(
                l,
                "redis.setresp can only be called inside a script invocation",
            );
        };
        if ffi::lua_gettop(l) != 1 {
            raise_error(l, "redis.setresp() requires one argument.");
        }
        run.resp = match ffi::lua_tonumber(l, 1) as c_int {
            2 => Protocol::Resp2,
            3 => Protocol::Resp3,
            _ => raise_error(l, "RESP version must be 2 or 3."),
        };
    }
    0
}

unsafe extern "C-unwind" fn breakpoint(l: *mut lua_State) -> c_int {
    // Outside the debugger (which the engine does not offer), as Redis answers.
    unsafe { ffi::lua_pushboolean(l, 0) };
    1
}

unsafe extern "C-unwind" fn debug(_l: *mut lua_State) -> c_int {
    0
}

unsafe extern "C-unwind" fn replicate_commands(l: *mut lua_State) -> c_int {
    unsafe { ffi::lua_pushboolean(l, 1) };
    1
}
