//! Running one script or function on a Lua state: compile (cached per state by sha), set
//! KEYS/ARGV, call under Redis's error handler with the timeout hook, render the reply.

use std::ffi::{c_int, c_void};
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::time::Instant;

use super::api::{self, CtxGuard, RunCtx, Stop};
use super::convert::{self, Render};
use super::function::{self, Registrations, flags};
use super::lua::{ffi, lua_State, push_bytes, to_bytes};
use super::state::{self, State};
use super::{Call, Protocol};

/// What to run.
pub enum Target<'a> {
    /// An EVAL script: its body and sha.
    Script { body: &'a [u8], sha: &'a str },
    /// A function of a library loaded in this state: its registry reference and flags.
    Function {
        name: &'a str,
        func_ref: c_int,
        flags: u32,
    },
}

/// How one run goes.
pub struct Params<'a> {
    pub keys: &'a [bytes::Bytes],
    pub args: &'a [bytes::Bytes],
    /// EVAL_RO, EVALSHA_RO, FCALL_RO.
    pub ro: bool,
    pub client: Protocol,
    pub deadline: Option<Instant>,
    pub timeout_ms: u64,
    pub kill: &'a AtomicBool,
    pub wrote: &'a AtomicBool,
    pub rand: &'a AtomicU64,
}

struct Protected<'a> {
    target: &'a Target<'a>,
    params: &'a Params<'a>,
    resp: &'a mut Protocol,
    out: Vec<u8>,
}

fn error_reply(msg: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(msg.len() + 8);
    convert::put_error(&mut out, msg.as_bytes());
    out
}

/// Compiles an EVAL body into `registry["f_<sha>"]` unless it is there; returns the flags
/// (`None`: no shebang) or the error reply.
fn compile(st: &mut State, body: &[u8], sha: &str) -> Result<Option<u32>, Vec<u8>> {
    let (script_flags, skip) =
        function::shebang(body).map_err(|e| error_reply(&format!("ERR {e}")))?;
    let l = st.l;
    let name =
        std::ffi::CString::new(format!("f_{sha}")).map_err(|_| error_reply("ERR bad sha"))?;
    // SAFETY: plain stack work on a state this thread owns.
    unsafe {
        ffi::lua_getfield_(l, ffi::LUA_REGISTRYINDEX, name.as_ptr());
        let present = ffi::lua_type(l, -1) == ffi::LUA_TFUNCTION;
        ffi::lua_pop(l, 1);
        if present {
            return Ok(script_flags);
        }
        let code = &body[skip..];
        if ffi::luaL_loadbuffer(
            l,
            code.as_ptr() as *const _,
            code.len(),
            c"@user_script".as_ptr(),
        ) != 0
        {
            let msg = to_bytes(l, -1)
                .map(|b| String::from_utf8_lossy(b).into_owned())
                .unwrap_or_default();
            ffi::lua_pop(l, 1);
            return Err(error_reply(&format!(
                "ERR Error compiling script (new function): {msg}"
            )));
        }
        ffi::lua_setfield(l, ffi::LUA_REGISTRYINDEX, name.as_ptr());
    }
    Ok(script_flags)
}

/// Runs `target` on `st`; returns the reply in the client's protocol.
pub fn run(st: &mut State, target: &Target<'_>, p: &Params<'_>, call: &mut dyn Call) -> Vec<u8> {
    let (script_flags, funcname) = match target {
        Target::Script { body, sha } => match compile(st, body, sha) {
            Ok(f) => (f, *sha),
            Err(reply) => return reply,
        },
        Target::Function { name, flags, .. } => (Some(*flags), *name),
    };
    let declared_ro = script_flags.is_some_and(|f| f & flags::NO_WRITES != 0);
    if p.ro && script_flags.is_some() && !declared_ro {
        return error_reply("ERR Can not execute a script with write flag using *_ro command.");
    }
    let mut resp = Protocol::Resp2;
    st.alloc.exceeded = false;
    let mut run_ctx = RunCtx {
        resp: Protocol::Resp2,
        read_only: p.ro || declared_ro,
        deadline: p.deadline,
        timeout_ms: p.timeout_ms,
        kill: p.kill,
        wrote: p.wrote,
        stopped: None,
        call,
        rand: p.rand,
        loading: None,
    };
    let mut prot = Protected {
        target,
        params: p,
        resp: &mut resp,
        out: Vec::new(),
    };
    let status;
    {
        let _guard = CtxGuard::set(&mut run_ctx);
        // SAFETY: `prot` outlives the protected call; the hook reads the context set above.
        unsafe {
            ffi::lua_sethook(st.l, Some(api::hook), ffi::LUA_MASKCOUNT, api::HOOK_EVERY);
            status = ffi::lua_cpcall(
                st.l,
                protected_run,
                &mut prot as *mut Protected<'_> as *mut c_void,
            );
            ffi::lua_sethook(st.l, None, 0, 0);
        }
        // Memory errors leave the message on the stack.
        if status != 0 {
            // SAFETY: pops what lua_cpcall left.
            unsafe { ffi::lua_settop(st.l, 0) };
        }
    }
    let _ = resp;
    st.runs += 1;
    // SAFETY: protected housekeeping on an idle state.
    unsafe {
        ffi::lua_cpcall(st.l, state::scrub, std::ptr::null_mut());
        ffi::lua_settop(st.l, 0);
        if st.runs.is_multiple_of(50) {
            ffi::lua_gc(st.l, ffi::LUA_GCSTEP, 50);
        }
    }
    if st.alloc.exceeded || status != 0 {
        return error_reply(&format!(
            "ERR Lua memory limit of {} bytes exceeded by script {funcname}",
            st.alloc.limit
        ));
    }
    let _ = run_ctx.stopped == Some(Stop::Killed);
    prot.out
}

unsafe extern "C-unwind" fn protected_run(l: *mut lua_State) -> c_int {
    // SAFETY: the light userdata is the `Protected` that `run` passed.
    unsafe {
        let prot = &mut *(ffi::lua_touserdata(l, 1) as *mut Protected<'_>);
        ffi::lua_settop(l, 0);
        ffi::lua_getfield_(l, ffi::LUA_REGISTRYINDEX, state::GLOBALS.as_ptr());
        ffi::lua_getfield_(l, -1, c"__redis__err__handler".as_ptr());
        ffi::lua_remove(l, -2);
        let nargs = match prot.target {
            Target::Script { sha, .. } => {
                let name = format!("f_{sha}");
                push_bytes(l, name.as_bytes());
                drop(name);
                ffi::lua_rawget_(l, ffi::LUA_REGISTRYINDEX);
                ffi::lua_getfield_(l, ffi::LUA_REGISTRYINDEX, state::GLOBALS.as_ptr());
                push_array(l, prot.params.keys);
                ffi::lua_setfield(l, -2, c"KEYS".as_ptr());
                push_array(l, prot.params.args);
                ffi::lua_setfield(l, -2, c"ARGV".as_ptr());
                ffi::lua_pop(l, 1);
                0
            }
            Target::Function { func_ref, .. } => {
                ffi::lua_rawgeti_(l, ffi::LUA_REGISTRYINDEX, *func_ref);
                push_array(l, prot.params.keys);
                push_array(l, prot.params.args);
                2
            }
        };
        let err = ffi::lua_pcall(l, nargs, 1, 1);
        let funcname = match prot.target {
            Target::Script { sha, .. } => *sha,
            Target::Function { name, .. } => *name,
        };
        let resp = api_resp();
        *prot.resp = resp;
        let render = Render {
            client: prot.params.client,
            script: resp,
        };
        if err != 0 {
            if ffi::lua_type(l, -1) != ffi::LUA_TTABLE {
                let msg = to_bytes(l, -1)
                    .map(|b| String::from_utf8_lossy(&b[..b.len().min(100)]).into_owned());
                let text = format!(
                    "ERR Error running script {funcname}, {}\n",
                    msg.as_deref().unwrap_or("execution failure")
                );
                convert::put_error(&mut prot.out, text.as_bytes());
            } else {
                let mut msg = convert::error_message(l);
                convert::error_position(l, funcname, &mut msg);
                convert::put_error(&mut prot.out, &msg);
            }
            ffi::lua_pop(l, 1);
        } else {
            convert::render(l, render, &mut prot.out);
        }
    }
    0
}

/// The protocol the running script chose last.
fn api_resp() -> Protocol {
    api::current_resp().unwrap_or(Protocol::Resp2)
}

unsafe fn push_array(l: *mut lua_State, items: &[bytes::Bytes]) {
    unsafe {
        ffi::lua_createtable(l, items.len().min(1 << 20) as c_int, 0);
        for (j, item) in items.iter().enumerate() {
            push_bytes(l, item);
            ffi::lua_rawseti_(l, -2, (j + 1) as c_int);
        }
    }
}

/// Runs a FUNCTION LOAD body in `st` with only the load-time API visible (`redis` with
/// `register_function`, `log`, the log levels and the version), as Redis does; returns what
/// it registered or Redis's error text.
pub fn load_library(
    st: &mut State,
    code: &[u8],
    call: &mut dyn Call,
    deadline: Instant,
) -> Result<Registrations, String> {
    let kill = AtomicBool::new(false);
    let wrote = AtomicBool::new(false);
    let rand = AtomicU64::new(super::random::RAND_INIT);
    let mut regs = Registrations::default();
    let outcome;
    {
        let mut run_ctx = RunCtx {
            resp: Protocol::Resp2,
            read_only: true,
            deadline: Some(deadline),
            timeout_ms: 500,
            kill: &kill,
            wrote: &wrote,
            stopped: None,
            call,
            rand: &rand,
            loading: Some(&mut regs),
        };
        let _guard = CtxGuard::set(&mut run_ctx);
        let mut job = LoadJob { code, error: None };
        // SAFETY: `job` outlives the protected call.
        unsafe {
            ffi::lua_sethook(st.l, Some(api::hook), ffi::LUA_MASKCOUNT, api::HOOK_EVERY);
            let status = ffi::lua_cpcall(
                st.l,
                protected_load,
                &mut job as *mut LoadJob<'_> as *mut c_void,
            );
            ffi::lua_sethook(st.l, None, 0, 0);
            ffi::lua_settop(st.l, 0);
            if status != 0 {
                job.error = Some("Error registering functions: not enough memory".into());
            }
            ffi::lua_cpcall(st.l, state::scrub, std::ptr::null_mut());
        }
        outcome = job.error;
    }
    match outcome {
        Some(e) => {
            // SAFETY: releases the references the failed load took.
            unsafe {
                for f in &regs.functions {
                    ffi::luaL_unref(st.l, ffi::LUA_REGISTRYINDEX, f.func_ref);
                }
            }
            Err(e)
        }
        None if regs.functions.is_empty() => Err("No functions registered".into()),
        None => Ok(regs),
    }
}

struct LoadJob<'a> {
    code: &'a [u8],
    error: Option<String>,
}

unsafe extern "C-unwind" fn protected_load(l: *mut lua_State) -> c_int {
    // SAFETY: the light userdata is the `LoadJob` that `load_library` passed.
    unsafe {
        let job = &mut *(ffi::lua_touserdata(l, 1) as *mut LoadJob<'_>);
        ffi::lua_settop(l, 0);
        if ffi::luaL_loadbuffer(
            l,
            job.code.as_ptr() as *const _,
            job.code.len(),
            c"@user_function".as_ptr(),
        ) != 0
        {
            let msg = to_bytes(l, -1)
                .map(|b| String::from_utf8_lossy(b).into_owned())
                .unwrap_or_default();
            job.error = Some(format!("Error compiling function: {msg}"));
            return 0;
        }
        // The globals proxy's __index points at the load-time API while the body runs.
        state::set_globals_view(l, state::LOAD_API);
        let err = ffi::lua_pcall(l, 0, 0, 0);
        state::set_globals_view(l, state::GLOBALS);
        if err != 0 {
            let msg = if ffi::lua_type(l, -1) == ffi::LUA_TTABLE {
                convert::error_message(l)
            } else {
                let mut m = b"ERR ".to_vec();
                m.extend_from_slice(to_bytes(l, -1).unwrap_or_default());
                m
            };
            job.error = Some(format!(
                "Error registering functions: {}",
                String::from_utf8_lossy(&msg)
            ));
        }
    }
    0
}
