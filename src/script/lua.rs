//! Thin helpers over the Lua 5.1 C API (`mlua-sys`), shared by the Redis API and the libraries.
//!
//! Every C function here follows one rule: it computes into Rust values, drops them, and only
//! then calls `lua_error` (a `longjmp`), so no Rust frame with a destructor is ever skipped.

use std::ffi::{CStr, c_char, c_int};

pub use mlua_sys as ffi;
pub use mlua_sys::lua_State;

/// A C function as Lua calls it.
pub type CFn = unsafe extern "C-unwind" fn(*mut lua_State) -> c_int;

/// The bytes of the string (or number, converted in place as Lua does) at `idx`, if it is one.
///
/// # Safety
/// `l` is a live state and `idx` a valid index; the slice lives as long as the value stays on
/// the stack.
pub unsafe fn to_bytes<'a>(l: *mut lua_State, idx: c_int) -> Option<&'a [u8]> {
    unsafe {
        let mut len = 0usize;
        let p = ffi::lua_tolstring(l, idx, &mut len);
        if p.is_null() {
            None
        } else {
            Some(std::slice::from_raw_parts(p as *const u8, len))
        }
    }
}

/// Pushes a byte string.
///
/// # Safety
/// `l` is a live state with room on its stack.
pub unsafe fn push_bytes(l: *mut lua_State, s: &[u8]) {
    unsafe {
        ffi::lua_pushlstring_(l, s.as_ptr() as *const c_char, s.len());
    }
}

/// Sets `t[key] = value on top` (popped) for the table at `t` (a negative index counted before
/// the value was pushed, or absolute).
///
/// # Safety
/// As for the C API.
pub unsafe fn set_field(l: *mut lua_State, t: c_int, key: &CStr) {
    unsafe {
        ffi::lua_setfield(l, t, key.as_ptr());
    }
}

/// Pushes Redis's error table `{err = "CODE message"}` from an error text as Redis's
/// `luaPushError` shapes it: a leading `-` means the text starts with its own code; without
/// it, `ERR` is prepended. A trailing CRLF is trimmed.
///
/// # Safety
/// `l` is a live state with room for 3 values.
pub unsafe fn push_error_table(l: *mut lua_State, text: &[u8]) {
    let mut buf = Vec::with_capacity(text.len() + 4);
    if let Some(rest) = text.strip_prefix(b"-") {
        match rest.iter().position(|&b| b == b' ') {
            Some(sp) => {
                buf.extend_from_slice(&rest[..sp]);
                buf.push(b' ');
                buf.extend_from_slice(trim_crlf(&rest[sp + 1..]));
            }
            None => {
                buf.extend_from_slice(b"ERR ");
                buf.extend_from_slice(trim_crlf(rest));
            }
        }
    } else {
        buf.extend_from_slice(b"ERR ");
        buf.extend_from_slice(trim_crlf(text));
    }
    // Redis pushes it with lua_pushstring: the text ends at its first NUL.
    if let Some(nul) = buf.iter().position(|&b| b == 0) {
        buf.truncate(nul);
    }
    unsafe {
        ffi::lua_checkstack(l, 4);
        ffi::lua_createtable(l, 0, 2);
        push_bytes(l, &buf);
        drop(buf);
        set_field(l, -2, c"err");
    }
}

/// `sdstrim(s, "\r\n")`: strips CR and LF from both ends.
fn trim_crlf(s: &[u8]) -> &[u8] {
    let start = s
        .iter()
        .position(|&b| b != b'\r' && b != b'\n')
        .unwrap_or(s.len());
    let end = s
        .iter()
        .rposition(|&b| b != b'\r' && b != b'\n')
        .map_or(start, |e| e + 1);
    &s[start..end.max(start)]
}

/// Raises the value on top of the stack as a Lua error.
///
/// # Safety
/// No Rust value with a destructor may be alive in the calling frames up to the `pcall`.
pub unsafe fn raise(l: *mut lua_State) -> ! {
    unsafe { ffi::lua_error(l) }
}

/// Raises `msg` prefixed with the caller's position, as `luaL_error` does.
///
/// # Safety
/// As for [`raise`]: `msg` is copied into Lua and dropped first.
pub unsafe fn raise_msg(l: *mut lua_State, msg: String) -> ! {
    if let Some(rest) = msg.strip_prefix('\0')
        && let Some((n, extra)) = rest.split_once('\0')
    {
        let n: c_int = n.parse().unwrap_or(0);
        // SAFETY: the text is copied into Lua (and stays on the stack) before the Rust
        // string is dropped; luaL_argerror then raises.
        unsafe {
            ffi::lua_checkstack(l, 4);
            push_bytes(l, extra.as_bytes());
            drop(msg);
            let p = ffi::lua_tolstring(l, -1, std::ptr::null_mut());
            ffi::luaL_argerror(l, n, p);
            raise(l)
        }
    }
    unsafe {
        ffi::lua_checkstack(l, 3);
        ffi::luaL_where(l, 1);
        push_bytes(l, msg.as_bytes());
        drop(msg);
        ffi::lua_concat(l, 2);
        ffi::lua_error(l)
    }
}

/// An argument error, raised by [`raise_msg`] through `luaL_argerror` so that the message
/// names the function as Lua sees it ("bad argument #N to 'NAME' (EXTRA)", `'?'` when it was
/// called through `pcall`). Encoded in the message: NUL, N, NUL, EXTRA.
pub fn arg_error(n: c_int, _name: &str, extra: &str) -> String {
    format!("\0{n}\0{extra}")
}

/// The name of the type of the value at `idx`.
///
/// # Safety
/// As for the C API.
pub unsafe fn type_name(l: *mut lua_State, idx: c_int) -> &'static str {
    unsafe {
        match ffi::lua_type(l, idx) {
            ffi::LUA_TNONE => "no value",
            ffi::LUA_TNIL => "nil",
            ffi::LUA_TBOOLEAN => "boolean",
            ffi::LUA_TLIGHTUSERDATA | ffi::LUA_TUSERDATA => "userdata",
            ffi::LUA_TNUMBER => "number",
            ffi::LUA_TSTRING => "string",
            ffi::LUA_TTABLE => "table",
            ffi::LUA_TFUNCTION => "function",
            ffi::LUA_TTHREAD => "thread",
            _ => "?",
        }
    }
}

/// `luaL_checknumber`.
///
/// # Safety
/// As for the C API.
pub unsafe fn check_number(l: *mut lua_State, n: c_int, fname: &str) -> Result<f64, String> {
    unsafe {
        let v = ffi::lua_tonumber(l, n);
        if v == 0.0 && ffi::lua_isnumber(l, n) == 0 {
            Err(arg_error(
                n,
                fname,
                &format!("number expected, got {}", type_name(l, n)),
            ))
        } else {
            Ok(v)
        }
    }
}

/// `luaL_checklstring`.
///
/// # Safety
/// As for [`to_bytes`].
pub unsafe fn check_bytes<'a>(
    l: *mut lua_State,
    n: c_int,
    fname: &str,
) -> Result<&'a [u8], String> {
    unsafe {
        to_bytes(l, n).ok_or_else(|| {
            arg_error(
                n,
                fname,
                &format!("string expected, got {}", type_name(l, n)),
            )
        })
    }
}

/// Registers `funcs` in the table on top of the stack.
///
/// # Safety
/// As for the C API.
pub unsafe fn register(l: *mut lua_State, funcs: &[(&CStr, CFn)]) {
    for (name, f) in funcs {
        unsafe {
            ffi::lua_pushcclosure(l, *f, 0);
            ffi::lua_setfield(l, -2, name.as_ptr());
        }
    }
}

/// C's `%.{prec}g`.
pub fn fmt_g(n: f64, prec: usize) -> String {
    if n.is_nan() {
        return if n.is_sign_negative() {
            "-nan".into()
        } else {
            "nan".into()
        };
    }
    if n.is_infinite() {
        return if n < 0.0 { "-inf".into() } else { "inf".into() };
    }
    if n == 0.0 {
        return if n.is_sign_negative() {
            "-0".into()
        } else {
            "0".into()
        };
    }
    let prec = prec.max(1);
    // The exponent after rounding to `prec` significant digits decides the style.
    let sci = format!("{:.*e}", prec - 1, n);
    let (mant, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    if exp < -4 || exp >= prec as i32 {
        let mant = strip_zeros(mant);
        let sign = if exp < 0 { '-' } else { '+' };
        format!("{mant}e{sign}{:02}", exp.abs())
    } else {
        let decimals = (prec as i32 - 1 - exp).max(0) as usize;
        strip_zeros(&format!("{n:.decimals$}")).to_string()
    }
}

fn strip_zeros(s: &str) -> &str {
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.')
    } else {
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn g_formats_as_c() {
        assert_eq!(fmt_g(1.0, 17), "1");
        assert_eq!(fmt_g(0.1, 17), "0.10000000000000001");
        assert_eq!(fmt_g(1e308, 14), "1e+308");
        assert_eq!(fmt_g(123456789012345.0, 14), "1.2345678901234e+14");
        assert_eq!(fmt_g(0.0001, 14), "0.0001");
        assert_eq!(fmt_g(0.00001, 14), "1e-05");
        assert_eq!(fmt_g(-0.0, 14), "-0");
        assert_eq!(fmt_g(2.5, 14), "2.5");
        assert_eq!(fmt_g(100.0, 14), "100");
    }

    #[test]
    fn error_tables_are_shaped_as_redis() {
        assert_eq!(trim_crlf(b"\r\nabc\r\n"), b"abc");
        assert_eq!(trim_crlf(b"\r\n"), b"");
    }
}
