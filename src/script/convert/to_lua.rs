//! RESP replies to Lua values (`redisProtocolToLuaType`).

use std::ffi::c_int;

use super::super::lua::{ffi, lua_State, push_bytes, push_error_table, set_field};

/// Why a reply could not be read.
#[derive(Debug, PartialEq, Eq)]
pub struct BadReply;

/// Pushes the Lua value for the one RESP reply in `reply` (`redisProtocolToLuaType`).
/// Attributes are skipped. Returns whether the reply was an error (its table is then on top).
///
/// # Safety
/// `l` is a live state; the Lua stack is grown as needed. Must run under a Lua `pcall`
/// (pushing may raise a memory error).
pub unsafe fn push_reply(l: *mut lua_State, reply: &[u8]) -> Result<bool, BadReply> {
    let mut pos = 0;
    let is_err = reply.first() == Some(&b'-');
    unsafe { parse(l, reply, &mut pos, true, 0)? };
    Ok(is_err)
}

const MAX_DEPTH: usize = 1000;

fn line<'a>(buf: &'a [u8], pos: &mut usize) -> Result<&'a [u8], BadReply> {
    let rest = buf.get(*pos..).ok_or(BadReply)?;
    let end = memchr::memchr(b'\r', rest).ok_or(BadReply)?;
    if rest.get(end + 1) != Some(&b'\n') {
        return Err(BadReply);
    }
    *pos += end + 2;
    Ok(&rest[..end])
}

fn int(s: &[u8]) -> Result<i64, BadReply> {
    std::str::from_utf8(s)
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or(BadReply)
}

fn bulk<'a>(buf: &'a [u8], pos: &mut usize, len: i64) -> Result<&'a [u8], BadReply> {
    let len = usize::try_from(len).map_err(|_| BadReply)?;
    let data = buf.get(*pos..*pos + len).ok_or(BadReply)?;
    if buf.get(*pos + len..*pos + len + 2) != Some(b"\r\n") {
        return Err(BadReply);
    }
    *pos += len + 2;
    Ok(data)
}

/// One reply from `buf[*pos..]`; pushes it when `push` (attributes are parsed and dropped).
unsafe fn parse(
    l: *mut lua_State,
    buf: &[u8],
    pos: &mut usize,
    push: bool,
    depth: usize,
) -> Result<(), BadReply> {
    if depth > MAX_DEPTH {
        return Err(BadReply);
    }
    let kind = *buf.get(*pos).ok_or(BadReply)?;
    *pos += 1;
    let head = line(buf, pos)?;
    unsafe {
        if push && ffi::lua_checkstack(l, 5) == 0 {
            return Err(BadReply);
        }
        match kind {
            b'$' | b'=' | b'!' => bulk_value(l, buf, pos, kind, head, push),
            b'*' | b'~' | b'%' | b'|' | b'>' => {
                let n = int(head)?;
                if n < 0 {
                    if push {
                        ffi::lua_pushboolean(l, 0);
                    }
                    return Ok(());
                }
                aggregate(l, buf, pos, kind, n as usize, push, depth)
            }
            _ => line_value(l, kind, head, push),
        }
    }
}

/// A bulk string, blob error or verbatim string whose header line was `head`.
unsafe fn bulk_value(
    l: *mut lua_State,
    buf: &[u8],
    pos: &mut usize,
    kind: u8,
    head: &[u8],
    push: bool,
) -> Result<(), BadReply> {
    let n = int(head)?;
    unsafe {
        if n < 0 {
            if push {
                ffi::lua_pushboolean(l, 0);
            }
            return Ok(());
        }
        let data = bulk(buf, pos, n)?;
        if !push {
            return Ok(());
        }
        match kind {
            b'$' => push_bytes(l, data),
            b'=' => {
                // "txt:..." : the format is the first three bytes.
                let (format, text) = if data.len() >= 4 {
                    (&data[..3], &data[4..])
                } else {
                    (&data[..0], data)
                };
                ffi::lua_createtable(l, 0, 1);
                ffi::lua_createtable(l, 0, 2);
                push_bytes(l, text);
                set_field(l, -2, c"string");
                push_bytes(l, format);
                set_field(l, -2, c"format");
                set_field(l, -2, c"verbatim_string");
            }
            _ => push_error(l, data),
        }
    }
    Ok(())
}

/// A reply held in its header line: integer, status, error, null, boolean, double, big number.
unsafe fn line_value(l: *mut lua_State, kind: u8, head: &[u8], push: bool) -> Result<(), BadReply> {
    let n = if kind == b':' { int(head)? } else { 0 };
    if !push {
        return if b":+-_#,(".contains(&kind) {
            Ok(())
        } else {
            Err(BadReply)
        };
    }
    unsafe {
        match kind {
            b':' => ffi::lua_pushnumber(l, n as f64),
            b'+' => {
                ffi::lua_createtable(l, 0, 1);
                push_bytes(l, head);
                set_field(l, -2, c"ok");
            }
            b'-' => push_error(l, head),
            b'_' => ffi::lua_pushnil(l),
            b'#' => ffi::lua_pushboolean(l, c_int::from(head == b"t")),
            b',' => {
                let d = parse_double(head);
                ffi::lua_createtable(l, 0, 1);
                ffi::lua_pushnumber(l, d);
                set_field(l, -2, c"double");
            }
            b'(' => {
                ffi::lua_createtable(l, 0, 1);
                push_bytes(l, head);
                set_field(l, -2, c"big_number");
            }
            _ => return Err(BadReply),
        }
    }
    Ok(())
}

/// `strtod` on a RESP3 double's text.
fn parse_double(s: &[u8]) -> f64 {
    std::str::from_utf8(s)
        .ok()
        .and_then(|s| s.parse::<f64>().ok())
        .unwrap_or(0.0)
}

unsafe fn push_error(l: *mut lua_State, text: &[u8]) {
    let mut with_dash = Vec::with_capacity(text.len() + 1);
    with_dash.push(b'-');
    with_dash.extend_from_slice(text);
    unsafe {
        push_error_table(l, &with_dash);
        drop(with_dash);
        ffi::lua_pushboolean(l, 1);
        set_field(l, -2, c"ignore_error_stats_update");
    }
}

unsafe fn aggregate(
    l: *mut lua_State,
    buf: &[u8],
    pos: &mut usize,
    kind: u8,
    n: usize,
    push: bool,
    depth: usize,
) -> Result<(), BadReply> {
    unsafe {
        match kind {
            b'|' => {
                for _ in 0..n {
                    parse(l, buf, pos, false, depth + 1)?;
                    parse(l, buf, pos, false, depth + 1)?;
                }
                parse(l, buf, pos, push, depth + 1)
            }
            b'%' => {
                if push {
                    ffi::lua_createtable(l, 0, 1);
                    ffi::lua_createtable(l, 0, n.min(1 << 16) as c_int);
                }
                for _ in 0..n {
                    parse(l, buf, pos, push, depth + 1)?;
                    parse(l, buf, pos, push, depth + 1)?;
                    if push {
                        ffi::lua_settable(l, -3);
                    }
                }
                if push {
                    set_field(l, -2, c"map");
                }
                Ok(())
            }
            b'~' => {
                if push {
                    ffi::lua_createtable(l, 0, 1);
                    ffi::lua_createtable(l, 0, n.min(1 << 16) as c_int);
                }
                for _ in 0..n {
                    parse(l, buf, pos, push, depth + 1)?;
                    if push {
                        ffi::lua_pushboolean(l, 1);
                        ffi::lua_settable(l, -3);
                    }
                }
                if push {
                    set_field(l, -2, c"set");
                }
                Ok(())
            }
            _ => {
                if push {
                    ffi::lua_createtable(l, n.min(1 << 16) as c_int, 0);
                }
                for j in 0..n {
                    if push {
                        ffi::lua_pushnumber(l, (j + 1) as f64);
                    }
                    parse(l, buf, pos, push, depth + 1)?;
                    if push {
                        ffi::lua_settable(l, -3);
                    }
                }
                Ok(())
            }
        }
    }
}
