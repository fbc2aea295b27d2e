//! The `cjson` library (Lua CJSON 2.1.0 as Redis ships it): `cjson.encode`, `cjson.decode`,
//! `cjson.null` and the configuration functions, with Lua CJSON's texts and limits.

use std::ffi::c_int;

mod decode;

use super::super::lua::{self, ffi, fmt_g, lua_State, push_bytes, to_bytes};

/// Per-state configuration, kept in a userdata that every function has as upvalue 1.
#[repr(C)]
#[derive(Clone, Copy)]
struct Config {
    sparse_convert: c_int,
    sparse_ratio: c_int,
    sparse_safe: c_int,
    encode_max_depth: c_int,
    decode_max_depth: c_int,
    encode_invalid_numbers: c_int,
    decode_invalid_numbers: c_int,
    keep_buffer: c_int,
    precision: c_int,
}

const DEFAULT: Config = Config {
    sparse_convert: 0,
    sparse_ratio: 2,
    sparse_safe: 10,
    encode_max_depth: 1000,
    decode_max_depth: 1000,
    encode_invalid_numbers: 0,
    decode_invalid_numbers: 1,
    keep_buffer: 1,
    precision: 14,
};

unsafe fn config<'a>(l: *mut lua_State) -> &'a mut Config {
    // SAFETY: upvalue 1 is the Config userdata made in `open`.
    unsafe { &mut *(ffi::lua_touserdata(l, ffi::lua_upvalueindex(1)) as *mut Config) }
}

/// Why encoding stopped: the message (without position).
type Fail = String;

fn escape(out: &mut Vec<u8>, s: &[u8]) {
    out.push(b'"');
    for &b in s {
        match b {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'/' => out.extend_from_slice(b"\\/"),
            b'\x08' => out.extend_from_slice(b"\\b"),
            b'\t' => out.extend_from_slice(b"\\t"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\x0c' => out.extend_from_slice(b"\\f"),
            b'\r' => out.extend_from_slice(b"\\r"),
            0..=0x1f | 0x7f => out.extend_from_slice(format!("\\u{:04x}", b).as_bytes()),
            _ => out.push(b),
        }
    }
    out.push(b'"');
}

unsafe fn number(
    l: *mut lua_State,
    cfg: &Config,
    out: &mut Vec<u8>,
    idx: c_int,
) -> Result<(), Fail> {
    unsafe {
        let n = ffi::lua_tonumber(l, idx);
        match cfg.encode_invalid_numbers {
            0 if n.is_nan() || n.is_infinite() => {
                return Err(format!(
                    "Cannot serialise {}: must not be NaN or Inf",
                    lua::type_name(l, idx)
                ));
            }
            1 if n.is_nan() => {
                out.extend_from_slice(b"nan");
                return Ok(());
            }
            2 if n.is_nan() || n.is_infinite() => {
                out.extend_from_slice(b"null");
                return Ok(());
            }
            _ => {}
        }
        out.extend_from_slice(fmt_g(n, cfg.precision.clamp(1, 14) as usize).as_bytes());
        Ok(())
    }
}

/// The array length of the table on top, or -1 for an object (Lua CJSON's rules).
unsafe fn array_length(l: *mut lua_State, cfg: &Config) -> Result<i64, Fail> {
    unsafe {
        let mut max = 0.0f64;
        let mut items = 0i64;
        ffi::lua_pushnil(l);
        while ffi::lua_next(l, -2) != 0 {
            if ffi::lua_type(l, -2) == ffi::LUA_TNUMBER {
                let k = ffi::lua_tonumber(l, -2);
                if k != 0.0 && k.floor() == k && k >= 1.0 {
                    if k > max {
                        max = k;
                    }
                    items += 1;
                    ffi::lua_pop(l, 1);
                    continue;
                }
            }
            ffi::lua_pop(l, 2);
            return Ok(-1);
        }
        let max = max as c_int as i64;
        if cfg.sparse_ratio > 0
            && max > items * i64::from(cfg.sparse_ratio)
            && max > i64::from(cfg.sparse_safe)
        {
            if cfg.sparse_convert == 0 {
                return Err("Cannot serialise table: excessively sparse array".into());
            }
            return Ok(-1);
        }
        Ok(max)
    }
}

unsafe fn encode_value(
    l: *mut lua_State,
    cfg: &Config,
    depth: c_int,
    out: &mut Vec<u8>,
) -> Result<(), Fail> {
    unsafe {
        match ffi::lua_type(l, -1) {
            ffi::LUA_TSTRING => escape(out, to_bytes(l, -1).unwrap_or_default()),
            ffi::LUA_TNUMBER => number(l, cfg, out, -1)?,
            ffi::LUA_TBOOLEAN => out.extend_from_slice(if ffi::lua_toboolean(l, -1) != 0 {
                b"true"
            } else {
                b"false"
            }),
            ffi::LUA_TNIL => out.extend_from_slice(b"null"),
            ffi::LUA_TLIGHTUSERDATA if ffi::lua_touserdata(l, -1).is_null() => {
                out.extend_from_slice(b"null")
            }
            ffi::LUA_TTABLE => {
                let depth = depth + 1;
                if depth > cfg.encode_max_depth || ffi::lua_checkstack(l, 3) == 0 {
                    return Err(format!("Cannot serialise, excessive nesting ({depth})"));
                }
                let len = array_length(l, cfg)?;
                if len > 0 {
                    out.push(b'[');
                    for i in 1..=len {
                        if i > 1 {
                            out.push(b',');
                        }
                        ffi::lua_rawgeti_(l, -1, i as c_int);
                        let r = encode_value(l, cfg, depth, out);
                        ffi::lua_pop(l, 1);
                        r?;
                    }
                    out.push(b']');
                } else {
                    out.push(b'{');
                    let mut comma = false;
                    ffi::lua_pushnil(l);
                    while ffi::lua_next(l, -2) != 0 {
                        if comma {
                            out.push(b',');
                        }
                        comma = true;
                        match ffi::lua_type(l, -2) {
                            ffi::LUA_TNUMBER => {
                                out.push(b'"');
                                let r = number(l, cfg, out, -2);
                                if r.is_err() {
                                    ffi::lua_pop(l, 2);
                                    return r;
                                }
                                out.extend_from_slice(b"\":");
                            }
                            ffi::LUA_TSTRING => {
                                escape(out, to_bytes(l, -2).unwrap_or_default());
                                out.push(b':');
                            }
                            _ => {
                                let e = format!(
                                    "Cannot serialise {}: table key must be a number or string",
                                    lua::type_name(l, -2)
                                );
                                ffi::lua_pop(l, 2);
                                return Err(e);
                            }
                        }
                        let r = encode_value(l, cfg, depth, out);
                        ffi::lua_pop(l, 1);
                        if r.is_err() {
                            ffi::lua_pop(l, 1);
                            return r;
                        }
                    }
                    out.push(b'}');
                }
            }
            _ => {
                return Err(format!(
                    "Cannot serialise {}: type not supported",
                    lua::type_name(l, -1)
                ));
            }
        }
        Ok(())
    }
}

unsafe extern "C-unwind" fn encode(l: *mut lua_State) -> c_int {
    unsafe {
        if ffi::lua_gettop(l) != 1 {
            lua::raise_msg(l, lua::arg_error(1, "encode", "expected 1 argument"));
        }
        let cfg = *config(l);
        let mut out = Vec::new();
        match encode_value(l, &cfg, 0, &mut out) {
            Ok(()) => {
                push_bytes(l, &out);
                drop(out);
                1
            }
            Err(e) => {
                drop(out);
                lua::raise_msg(l, e)
            }
        }
    }
}

unsafe fn arg_init(l: *mut lua_State, args: c_int, fname: &str) -> Result<(), String> {
    unsafe {
        if ffi::lua_gettop(l) > args {
            return Err(lua::arg_error(args + 1, fname, "found too many arguments"));
        }
        while ffi::lua_gettop(l) < args {
            ffi::lua_pushnil(l);
        }
        Ok(())
    }
}

unsafe fn int_option(
    l: *mut lua_State,
    idx: c_int,
    setting: &mut c_int,
    min: c_int,
    max: c_int,
    fname: &str,
) -> Result<(), String> {
    unsafe {
        if ffi::lua_type(l, idx) != ffi::LUA_TNIL {
            let v = lua::check_number(l, idx, fname)? as i64;
            if v < i64::from(min) || v > i64::from(max) {
                return Err(lua::arg_error(
                    1,
                    fname,
                    &format!("expected integer between {min} and {max}"),
                ));
            }
            *setting = v as c_int;
        }
        ffi::lua_pushnumber(l, f64::from(*setting));
        Ok(())
    }
}

unsafe fn enum_option(
    l: *mut lua_State,
    idx: c_int,
    setting: &mut c_int,
    options: &[&str],
    bool_true: c_int,
    fname: &str,
) -> Result<(), String> {
    unsafe {
        if ffi::lua_type(l, idx) != ffi::LUA_TNIL {
            if bool_true != 0 && ffi::lua_type(l, idx) == ffi::LUA_TBOOLEAN {
                *setting = ffi::lua_toboolean(l, idx) * bool_true;
            } else {
                let s = lua::check_bytes(l, idx, fname)?;
                match options.iter().position(|o| o.as_bytes() == s) {
                    Some(i) => *setting = i as c_int,
                    None => {
                        return Err(lua::arg_error(
                            idx,
                            fname,
                            &format!("invalid option '{}'", String::from_utf8_lossy(s)),
                        ));
                    }
                }
            }
        }
        if bool_true != 0 && (*setting == 0 || *setting == bool_true) {
            ffi::lua_pushboolean(l, *setting);
        } else {
            let name = options.get(*setting as usize).copied().unwrap_or("");
            push_bytes(l, name.as_bytes());
        }
        Ok(())
    }
}

const ONOFF: [&str; 2] = ["off", "on"];

macro_rules! cfg_fn {
    ($name:ident, $lua:literal, $n:expr, |$l:ident, $cfg:ident| $body:block) => {
        unsafe extern "C-unwind" fn $name($l: *mut lua_State) -> c_int {
            unsafe {
                let r = (|| {
                    arg_init($l, $n, $lua)?;
                    let $cfg = config($l);
                    $body
                })();
                match r {
                    Ok(n) => n,
                    Err(e) => lua::raise_msg($l, e),
                }
            }
        }
    };
}

cfg_fn!(cfg_sparse, "encode_sparse_array", 3, |l, cfg| {
    enum_option(
        l,
        1,
        &mut cfg.sparse_convert,
        &ONOFF,
        1,
        "encode_sparse_array",
    )?;
    int_option(
        l,
        2,
        &mut cfg.sparse_ratio,
        0,
        c_int::MAX,
        "encode_sparse_array",
    )?;
    int_option(
        l,
        3,
        &mut cfg.sparse_safe,
        0,
        c_int::MAX,
        "encode_sparse_array",
    )?;
    Ok(3)
});
cfg_fn!(cfg_encode_depth, "encode_max_depth", 1, |l, cfg| {
    int_option(
        l,
        1,
        &mut cfg.encode_max_depth,
        1,
        c_int::MAX,
        "encode_max_depth",
    )?;
    Ok(1)
});
cfg_fn!(cfg_decode_depth, "decode_max_depth", 1, |l, cfg| {
    int_option(
        l,
        1,
        &mut cfg.decode_max_depth,
        1,
        c_int::MAX,
        "decode_max_depth",
    )?;
    Ok(1)
});
cfg_fn!(cfg_precision, "encode_number_precision", 1, |l, cfg| {
    int_option(l, 1, &mut cfg.precision, 1, 14, "encode_number_precision")?;
    Ok(1)
});
cfg_fn!(cfg_keep_buffer, "encode_keep_buffer", 1, |l, cfg| {
    enum_option(l, 1, &mut cfg.keep_buffer, &ONOFF, 1, "encode_keep_buffer")?;
    Ok(1)
});
cfg_fn!(cfg_encode_invalid, "encode_invalid_numbers", 1, |l, cfg| {
    enum_option(
        l,
        1,
        &mut cfg.encode_invalid_numbers,
        &["off", "on", "null"],
        1,
        "encode_invalid_numbers",
    )?;
    Ok(1)
});
cfg_fn!(cfg_decode_invalid, "decode_invalid_numbers", 1, |l, cfg| {
    enum_option(
        l,
        1,
        &mut cfg.decode_invalid_numbers,
        &ONOFF,
        1,
        "decode_invalid_numbers",
    )?;
    Ok(1)
});

/// `cjson.new()`: a fresh module table with its own configuration.
unsafe extern "C-unwind" fn new(l: *mut lua_State) -> c_int {
    unsafe {
        ffi::lua_createtable(l, 0, 16);
        open(l);
    }
    1
}

/// Fills the table on top.
///
/// # Safety
/// Protected; the table is on top.
pub unsafe fn open(l: *mut lua_State) {
    unsafe {
        let funcs: [(&std::ffi::CStr, lua::CFn); 10] = [
            (c"encode", encode),
            (c"decode", decode::decode),
            (c"encode_sparse_array", cfg_sparse),
            (c"encode_max_depth", cfg_encode_depth),
            (c"decode_max_depth", cfg_decode_depth),
            (c"encode_number_precision", cfg_precision),
            (c"encode_keep_buffer", cfg_keep_buffer),
            (c"encode_invalid_numbers", cfg_encode_invalid),
            (c"decode_invalid_numbers", cfg_decode_invalid),
            (c"new", new),
        ];
        let ud = ffi::lua_newuserdata(l, std::mem::size_of::<Config>()) as *mut Config;
        ud.write(DEFAULT);
        for (name, f) in funcs {
            ffi::lua_pushvalue(l, -1);
            ffi::lua_pushcclosure(l, f, 1);
            ffi::lua_setfield(l, -3, name.as_ptr());
        }
        ffi::lua_pop(l, 1);
        ffi::lua_pushlightuserdata(l, std::ptr::null_mut());
        ffi::lua_setfield(l, -2, c"null".as_ptr());
        push_bytes(l, b"cjson");
        ffi::lua_setfield(l, -2, c"_NAME".as_ptr());
        push_bytes(l, b"2.1.0");
        ffi::lua_setfield(l, -2, c"_VERSION".as_ptr());
    }
}
