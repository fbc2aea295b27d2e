//! Lua values to RESP replies (`luaReplyToRedisReply`).

use std::ffi::c_int;

use super::super::Protocol;
use super::super::lua::{ffi, fmt_g, lua_State};

/// How a script's return value is rendered (`luaReplyToRedisReply`): `client` is the calling
/// client's protocol, `script` the one the script chose with `redis.setresp`.
#[derive(Clone, Copy)]
pub struct Render {
    pub client: Protocol,
    pub script: Protocol,
}

/// `(long long)` of a double as x86-64 computes it: out of range and NaN give i64::MIN.
pub fn c_ll(n: f64) -> i64 {
    if n > -9_223_372_036_854_775_809.0 && n < 9_223_372_036_854_775_808.0 {
        n as i64
    } else {
        i64::MIN
    }
}

fn put_len(out: &mut Vec<u8>, kind: u8, n: usize) {
    out.push(kind);
    out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
    out.extend_from_slice(b"\r\n");
}

fn put_bulk(out: &mut Vec<u8>, s: &[u8]) {
    put_len(out, b'$', s.len());
    out.extend_from_slice(s);
    out.extend_from_slice(b"\r\n");
}

/// Appends `s` with CR and LF turned into spaces (Redis's `...Safe` reply helpers).
fn put_safe(out: &mut Vec<u8>, s: &[u8]) {
    out.extend(
        s.iter()
            .map(|&b| if b == b'\r' || b == b'\n' { b' ' } else { b }),
    );
}

fn put_null(out: &mut Vec<u8>, p: Protocol) {
    out.extend_from_slice(match p {
        Protocol::Resp2 => b"$-1\r\n",
        Protocol::Resp3 => b"_\r\n",
    });
}

/// Appends an error reply `-<msg>` (newlines made spaces).
pub fn put_error(out: &mut Vec<u8>, msg: &[u8]) {
    out.push(b'-');
    put_safe(out, msg);
    out.extend_from_slice(b"\r\n");
}

/// Renders the value on top of the stack and pops it.
///
/// # Safety
/// Must run under a Lua `pcall`: it pushes values.
pub unsafe fn render(l: *mut lua_State, r: Render, out: &mut Vec<u8>) {
    unsafe {
        if ffi::lua_checkstack(l, 4) == 0 {
            put_error(out, b"ERR reached lua stack limit");
            ffi::lua_pop(l, 1);
            return;
        }
        match ffi::lua_type(l, -1) {
            ffi::LUA_TSTRING => {
                let s = super::super::lua::to_bytes(l, -1).unwrap_or_default();
                put_bulk(out, s);
            }
            ffi::LUA_TBOOLEAN => {
                let b = ffi::lua_toboolean(l, -1) != 0;
                match (r.script, r.client) {
                    (Protocol::Resp2, _) if b => out.extend_from_slice(b":1\r\n"),
                    (Protocol::Resp2, c) => put_null(out, c),
                    (Protocol::Resp3, Protocol::Resp2) => {
                        out.extend_from_slice(if b { b":1\r\n" } else { b":0\r\n" })
                    }
                    (Protocol::Resp3, Protocol::Resp3) => {
                        out.extend_from_slice(if b { b"#t\r\n" } else { b"#f\r\n" })
                    }
                }
            }
            ffi::LUA_TNUMBER => {
                out.push(b':');
                let n = c_ll(ffi::lua_tonumber(l, -1));
                out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
                out.extend_from_slice(b"\r\n");
            }
            ffi::LUA_TTABLE => {
                render_table(l, r, out);
                return;
            }
            _ => put_null(out, r.client),
        }
        ffi::lua_pop(l, 1);
    }
}

/// Pushes `t[name]` (raw) for the table on top and returns its type.
unsafe fn raw_field(l: *mut lua_State, idx: c_int, name: &std::ffi::CStr) -> c_int {
    unsafe {
        ffi::lua_pushstring_(l, name.as_ptr());
        ffi::lua_rawget_(l, if idx < 0 { idx - 1 } else { idx });
        ffi::lua_type(l, -1)
    }
}

/// Renders the table on top and pops it.
unsafe fn render_table(l: *mut lua_State, r: Render, out: &mut Vec<u8>) {
    unsafe {
        if !render_tagged(l, r, out) {
            render_aggregate(l, r, out);
        }
    }
}

/// Renders the table on top and pops it if it is an error, a status, a double, a big number
/// or a verbatim string; otherwise leaves it and returns false.
unsafe fn render_tagged(l: *mut lua_State, r: Render, out: &mut Vec<u8>) -> bool {
    unsafe {
        if raw_field(l, -1, c"err") == ffi::LUA_TSTRING {
            ffi::lua_pop(l, 1);
            let msg = error_message(l);
            put_error(out, &msg);
            ffi::lua_pop(l, 1);
            return true;
        }
        ffi::lua_pop(l, 1);
        if raw_field(l, -1, c"ok") == ffi::LUA_TSTRING {
            out.push(b'+');
            put_safe(out, super::super::lua::to_bytes(l, -1).unwrap_or_default());
            out.extend_from_slice(b"\r\n");
            ffi::lua_pop(l, 2);
            return true;
        }
        ffi::lua_pop(l, 1);
        if raw_field(l, -1, c"double") == ffi::LUA_TNUMBER {
            put_double(out, ffi::lua_tonumber(l, -1), r.client);
            ffi::lua_pop(l, 2);
            return true;
        }
        ffi::lua_pop(l, 1);
        if raw_field(l, -1, c"big_number") == ffi::LUA_TSTRING {
            let mut num = Vec::new();
            put_safe(
                &mut num,
                super::super::lua::to_bytes(l, -1).unwrap_or_default(),
            );
            match r.client {
                Protocol::Resp2 => put_bulk(out, &num),
                Protocol::Resp3 => {
                    out.push(b'(');
                    out.extend_from_slice(&num);
                    out.extend_from_slice(b"\r\n");
                }
            }
            ffi::lua_pop(l, 2);
            return true;
        }
        ffi::lua_pop(l, 1);
        if raw_field(l, -1, c"verbatim_string") == ffi::LUA_TTABLE {
            if raw_field(l, -1, c"format") == ffi::LUA_TSTRING {
                if raw_field(l, -2, c"string") == ffi::LUA_TSTRING {
                    let text = super::super::lua::to_bytes(l, -1).unwrap_or_default();
                    let format = super::super::lua::to_bytes(l, -2).unwrap_or_default();
                    put_verbatim(out, text, format, r.client);
                    ffi::lua_pop(l, 4);
                    return true;
                }
                ffi::lua_pop(l, 1);
            }
            ffi::lua_pop(l, 1);
        }
        ffi::lua_pop(l, 1);
        false
    }
}

/// Renders the table on top as a map, a set or an array, and pops it.
unsafe fn render_aggregate(l: *mut lua_State, r: Render, out: &mut Vec<u8>) {
    unsafe {
        if raw_field(l, -1, c"map") == ffi::LUA_TTABLE {
            let n = count_pairs(l);
            put_len(
                out,
                if r.client == Protocol::Resp3 {
                    b'%'
                } else {
                    b'*'
                },
                n * if r.client == Protocol::Resp3 { 1 } else { 2 },
            );
            ffi::lua_pushnil(l);
            while ffi::lua_next(l, -2) != 0 {
                ffi::lua_pushvalue(l, -2);
                render(l, r, out);
                render(l, r, out);
            }
            ffi::lua_pop(l, 2);
            return;
        }
        ffi::lua_pop(l, 1);
        if raw_field(l, -1, c"set") == ffi::LUA_TTABLE {
            let n = count_pairs(l);
            put_len(
                out,
                if r.client == Protocol::Resp3 {
                    b'~'
                } else {
                    b'*'
                },
                n,
            );
            ffi::lua_pushnil(l);
            while ffi::lua_next(l, -2) != 0 {
                ffi::lua_pop(l, 1);
                ffi::lua_pushvalue(l, -1);
                render(l, r, out);
            }
            ffi::lua_pop(l, 2);
            return;
        }
        ffi::lua_pop(l, 1);
        let mut n = 0usize;
        loop {
            ffi::lua_rawgeti_(l, -1, (n + 1) as c_int);
            let nil = ffi::lua_type(l, -1) == ffi::LUA_TNIL;
            ffi::lua_pop(l, 1);
            if nil {
                break;
            }
            n += 1;
        }
        put_len(out, b'*', n);
        for j in 1..=n {
            ffi::lua_rawgeti_(l, -1, j as c_int);
            render(l, r, out);
        }
        ffi::lua_pop(l, 1);
    }
}

/// Number of pairs of the table on top.
unsafe fn count_pairs(l: *mut lua_State) -> usize {
    let mut n = 0;
    unsafe {
        ffi::lua_pushnil(l);
        while ffi::lua_next(l, -2) != 0 {
            ffi::lua_pop(l, 1);
            n += 1;
        }
    }
    n
}

fn put_double(out: &mut Vec<u8>, d: f64, client: Protocol) {
    let text = if d.is_infinite() {
        if d > 0.0 {
            "inf".to_string()
        } else {
            "-inf".to_string()
        }
    } else {
        fmt_g(d, 17)
    };
    match client {
        Protocol::Resp2 => put_bulk(out, text.as_bytes()),
        Protocol::Resp3 => {
            out.push(b',');
            out.extend_from_slice(text.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
    }
}

fn put_verbatim(out: &mut Vec<u8>, text: &[u8], format: &[u8], client: Protocol) {
    match client {
        Protocol::Resp2 => put_bulk(out, text),
        Protocol::Resp3 => {
            put_len(out, b'=', text.len() + 4);
            let mut f = [b' '; 3];
            for (d, s) in f.iter_mut().zip(format) {
                *d = *s;
            }
            out.extend_from_slice(&f);
            out.push(b':');
            out.extend_from_slice(text);
            out.extend_from_slice(b"\r\n");
        }
    }
}

/// The message of an error table on top of the stack (`luaExtractErrorInformation`): its
/// `err` field; for a script error also ` script: NAME, on SOURCE:LINE.` when `funcname` is
/// given and the table has both.
///
/// # Safety
/// As for the C API.
pub unsafe fn error_message(l: *mut lua_State) -> Vec<u8> {
    unsafe {
        let mut msg = Vec::new();
        ffi::lua_getfield_(l, -1, c"err".as_ptr());
        if ffi::lua_isstring(l, -1) != 0 {
            msg.extend_from_slice(super::super::lua::to_bytes(l, -1).unwrap_or_default());
        }
        ffi::lua_pop(l, 1);
        msg
    }
}

/// Appends ` script: NAME, on SOURCE:LINE.` from the error table on top, if it has both.
///
/// # Safety
/// As for the C API.
pub unsafe fn error_position(l: *mut lua_State, funcname: &str, msg: &mut Vec<u8>) {
    unsafe {
        ffi::lua_getfield_(l, -1, c"source".as_ptr());
        ffi::lua_getfield_(l, -2, c"line".as_ptr());
        if ffi::lua_isstring(l, -2) != 0 && ffi::lua_isstring(l, -1) != 0 {
            msg.extend_from_slice(b" script: ");
            msg.extend_from_slice(funcname.as_bytes());
            msg.extend_from_slice(b", on ");
            msg.extend_from_slice(super::super::lua::to_bytes(l, -2).unwrap_or_default());
            msg.push(b':');
            msg.extend_from_slice(super::super::lua::to_bytes(l, -1).unwrap_or_default());
            msg.push(b'.');
        }
        ffi::lua_pop(l, 2);
    }
}
