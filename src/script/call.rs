//! `redis.call` and `redis.pcall`: the arguments as Redis reads them, the checks Redis's
//! `scriptCall` makes, the hand-off to [`super::Call`], and the reply as a Lua value.

use std::ffi::c_int;
use std::sync::atomic::Ordering;

use super::CallError;
use super::api::{RunCtx, Stop, arm_stop_hook, ctx, raise_error, timeout_text};
use super::convert;
use super::lua::{self, ffi, lua_State, push_error_table, set_field, to_bytes};
use crate::protocol::command::{self, Kind, flag};

pub(super) unsafe extern "C-unwind" fn call(l: *mut lua_State) -> c_int {
    unsafe { generic_call(l, true) }
}

pub(super) unsafe extern "C-unwind" fn pcall(l: *mut lua_State) -> c_int {
    unsafe { generic_call(l, false) }
}

/// The arguments of a `redis.*` call as Redis reads them: numbers as `%.17g`, strings as
/// they are; anything else is refused.
pub(super) unsafe fn args(l: *mut lua_State) -> Result<Vec<Vec<u8>>, &'static str> {
    unsafe {
        let argc = ffi::lua_gettop(l);
        if argc == 0 {
            return Err("Please specify at least one argument for this redis lib call");
        }
        let mut out = Vec::with_capacity(argc as usize);
        for j in 1..=argc {
            if ffi::lua_type(l, j) == ffi::LUA_TNUMBER {
                out.push(lua::fmt_g(ffi::lua_tonumber(l, j), 17).into_bytes());
            } else {
                match to_bytes(l, j) {
                    Some(s) => out.push(s.to_vec()),
                    None => break,
                }
            }
        }
        let complete = out.len() == argc as usize;
        ffi::lua_pop(l, argc);
        if complete {
            Ok(out)
        } else {
            Err("Lua redis lib command arguments must be strings or integers")
        }
    }
}

/// Redis 7.0's `may-replicate` commands: a read-only script may not call them. The command
/// table does not carry that flag, so they are named here.
const MAY_REPLICATE: [&str; 6] = ["eval", "evalsha", "fcall", "pfcount", "publish", "spublish"];

/// What `redis.call` does before sending: the checks Redis's `scriptCall` makes.
fn check(run: &RunCtx<'_>, argv: &[Vec<u8>]) -> Result<bool, &'static str> {
    let cmd = command::lookup(&argv[0]).and_then(|(_, c)| match c.kind {
        Kind::Container if argv.len() >= 2 => {
            command::lookup_sub(c.name, &argv[1].to_ascii_lowercase()).map(|(_, s)| s)
        }
        _ => Some(c),
    });
    let Some(cmd) = cmd else {
        return Err("Unknown Redis command called from script");
    };
    if !cmd.arity_ok(argv.len()) {
        return Err("Wrong number of args calling Redis command from script");
    }
    if cmd.flags & flag::NOSCRIPT != 0 {
        return Err("This Redis command is not allowed from script");
    }
    let may_replicate = cmd.flags & flag::MAY_REPLICATE != 0 || MAY_REPLICATE.contains(&cmd.name);
    if run.read_only && (cmd.flags & flag::WRITE != 0 || may_replicate) {
        return Err("Write commands are not allowed from read-only scripts.");
    }
    Ok(cmd.flags & flag::WRITE != 0)
}

/// `redis.call` (`raise`) and `redis.pcall`.
unsafe fn generic_call(l: *mut lua_State, raise: bool) -> c_int {
    unsafe {
        let Some(run) = ctx() else {
            raise_error(
                l,
                "redis.call/pcall can only be called inside a script invocation",
            );
        };
        let outcome = match args(l) {
            Err(e) => Err(e.to_string()),
            Ok(argv) => match check(run, &argv) {
                Err(e) => Err(e.to_string()),
                Ok(write) => {
                    if write {
                        run.wrote.store(true, Ordering::Relaxed);
                    }
                    let proto = run.resp;
                    match run.call.call(argv, proto, run.deadline) {
                        Ok(reply) => Ok(reply),
                        Err(CallError::Timeout) => {
                            run.stopped = Some(Stop::TimedOut);
                            arm_stop_hook(l);
                            Err(timeout_text(run.timeout_ms))
                        }
                        Err(CallError::Failed(msg)) => Err(msg),
                    }
                }
            },
        };
        match outcome {
            Err(msg) => {
                push_error_table(l, msg.as_bytes());
                drop(msg);
                ffi::lua_pushboolean(l, 1);
                set_field(l, -2, c"ignore_error_stats_update");
                if raise {
                    lua::raise(l);
                }
                1
            }
            Ok(reply) => {
                let parsed = convert::push_reply(l, &reply);
                drop(reply);
                match parsed {
                    Ok(true) if raise => lua::raise(l),
                    Ok(_) => 1,
                    Err(convert::BadReply) => {
                        push_error_table(l, b"Invalid reply from the backend");
                        if raise {
                            lua::raise(l);
                        }
                        1
                    }
                }
            }
        }
    }
}
