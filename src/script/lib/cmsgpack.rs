//! The `cmsgpack` library (lua-cmsgpack 0.4.0 as Redis ships it): MessagePack `pack`,
//! `unpack`, `unpack_one` and `unpack_limit`.

use std::ffi::c_int;

use super::super::lua::{self, ffi, lua_State, push_bytes};

/// Tables nested deeper than this are packed as nil.
const MAX_NESTING: c_int = 16;

fn int64_equivalent(n: f64) -> bool {
    !n.is_infinite()
        && !n.is_nan()
        && (-9_223_372_036_854_775_808.0..9_223_372_036_854_775_808.0).contains(&n)
        && (n as i64) as f64 == n
}

fn encode_len(out: &mut Vec<u8>, n: usize, fix: u8, fix_max: usize, b16: u8, b32: u8) {
    if n <= fix_max {
        out.push(fix | n as u8);
    } else if n <= 0xffff {
        out.push(b16);
        out.extend_from_slice(&(n as u16).to_be_bytes());
    } else {
        out.push(b32);
        out.extend_from_slice(&(n as u32).to_be_bytes());
    }
}

fn encode_bytes(out: &mut Vec<u8>, s: &[u8]) {
    let n = s.len();
    if n < 32 {
        out.push(0xa0 | n as u8);
    } else if n <= 0xff {
        out.extend_from_slice(&[0xd9, n as u8]);
    } else if n <= 0xffff {
        out.push(0xda);
        out.extend_from_slice(&(n as u16).to_be_bytes());
    } else {
        out.push(0xdb);
        out.extend_from_slice(&(n as u32).to_be_bytes());
    }
    out.extend_from_slice(s);
}

fn encode_int(out: &mut Vec<u8>, n: i64) {
    if n >= 0 {
        if n <= 127 {
            out.push(n as u8);
        } else if n <= 0xff {
            out.extend_from_slice(&[0xcc, n as u8]);
        } else if n <= 0xffff {
            out.push(0xcd);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        } else if n <= 0xffff_ffff {
            out.push(0xce);
            out.extend_from_slice(&(n as u32).to_be_bytes());
        } else {
            out.push(0xcf);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    } else if n >= -32 {
        out.push(n as i8 as u8);
    } else if n >= -128 {
        out.extend_from_slice(&[0xd0, n as i8 as u8]);
    } else if n >= -32768 {
        out.push(0xd1);
        out.extend_from_slice(&(n as i16).to_be_bytes());
    } else if n >= -2_147_483_648 {
        out.push(0xd2);
        out.extend_from_slice(&(n as i32).to_be_bytes());
    } else {
        out.push(0xd3);
        out.extend_from_slice(&n.to_be_bytes());
    }
}

fn encode_number(out: &mut Vec<u8>, n: f64) {
    if int64_equivalent(n) {
        encode_int(out, n as i64);
    } else if f64::from(n as f32) == n {
        out.push(0xca);
        out.extend_from_slice(&(n as f32).to_be_bytes());
    } else {
        out.push(0xcb);
        out.extend_from_slice(&n.to_be_bytes());
    }
}

/// Whether the table on top has only positive integer keys 1..n.
unsafe fn is_array(l: *mut lua_State) -> bool {
    unsafe {
        let (mut count, mut max) = (0i64, 0i64);
        ffi::lua_pushnil(l);
        while ffi::lua_next(l, -2) != 0 {
            ffi::lua_pop(l, 1);
            let n = ffi::lua_tonumber(l, -1);
            if ffi::lua_type(l, -1) != ffi::LUA_TNUMBER
                || n <= 0.0
                || n.is_infinite()
                || (n as c_int) as f64 != n
            {
                ffi::lua_pop(l, 1);
                return false;
            }
            max = max.max(n as i64);
            count += 1;
        }
        max == count
    }
}

/// Encodes the value on top and pops it.
unsafe fn encode(l: *mut lua_State, out: &mut Vec<u8>, level: c_int) -> Result<(), String> {
    unsafe {
        let mut t = ffi::lua_type(l, -1);
        if t == ffi::LUA_TTABLE && level == MAX_NESTING {
            t = ffi::LUA_TNIL;
        }
        match t {
            ffi::LUA_TSTRING => encode_bytes(out, lua::to_bytes(l, -1).unwrap_or_default()),
            ffi::LUA_TBOOLEAN => out.push(if ffi::lua_toboolean(l, -1) != 0 {
                0xc3
            } else {
                0xc2
            }),
            ffi::LUA_TNUMBER => encode_number(out, ffi::lua_tonumber(l, -1)),
            ffi::LUA_TTABLE => {
                if ffi::lua_checkstack(l, 3) == 0 {
                    return Err("stack overflow (in function mp_encode_lua_table_as_map)".into());
                }
                if is_array(l) {
                    let len = ffi::lua_objlen(l, -1);
                    encode_len(out, len, 0x90, 15, 0xdc, 0xdd);
                    for j in 1..=len {
                        ffi::lua_pushnumber(l, j as f64);
                        ffi::lua_gettable_(l, -2);
                        encode(l, out, level + 1)?;
                    }
                } else {
                    let mut len = 0;
                    ffi::lua_pushnil(l);
                    while ffi::lua_next(l, -2) != 0 {
                        ffi::lua_pop(l, 1);
                        len += 1;
                    }
                    encode_len(out, len, 0x80, 15, 0xde, 0xdf);
                    ffi::lua_pushnil(l);
                    while ffi::lua_next(l, -2) != 0 {
                        ffi::lua_pushvalue(l, -2);
                        encode(l, out, level + 1)?;
                        encode(l, out, level + 1)?;
                    }
                }
            }
            _ => out.push(0xc0),
        }
        ffi::lua_pop(l, 1);
        Ok(())
    }
}

unsafe extern "C-unwind" fn pack(l: *mut lua_State) -> c_int {
    unsafe {
        let nargs = ffi::lua_gettop(l);
        if nargs == 0 {
            lua::raise_msg(
                l,
                lua::arg_error(0, "pack", "MessagePack pack needs input."),
            );
        }
        if ffi::lua_checkstack(l, nargs + 4) == 0 {
            lua::raise_msg(
                l,
                lua::arg_error(0, "pack", "Too many arguments for MessagePack pack."),
            );
        }
        let mut out = Vec::new();
        for i in 1..=nargs {
            ffi::lua_pushvalue(l, i);
            if let Err(e) = encode(l, &mut out, 0) {
                drop(out);
                lua::raise_msg(l, e);
            }
        }
        push_bytes(l, &out);
        drop(out);
        1
    }
}

enum Bad {
    Eof,
    Format,
    Stack,
}

struct Cur<'a> {
    s: &'a [u8],
}

impl Cur<'_> {
    fn need(&self, n: usize) -> Result<(), Bad> {
        if self.s.len() < n {
            Err(Bad::Eof)
        } else {
            Ok(())
        }
    }

    fn take(&mut self, n: usize) -> Result<&[u8], Bad> {
        self.need(n)?;
        let (a, b) = self.s.split_at(n);
        self.s = b;
        Ok(a)
    }

    fn be(&mut self, n: usize) -> Result<u64, Bad> {
        Ok(self
            .take(n)?
            .iter()
            .fold(0u64, |a, &b| (a << 8) | u64::from(b)))
    }
}

unsafe fn decode(l: *mut lua_State, c: &mut Cur<'_>) -> Result<(), Bad> {
    unsafe {
        if ffi::lua_checkstack(l, 1) == 0 {
            return Err(Bad::Stack);
        }
        let tag = *c.s.first().ok_or(Bad::Eof)?;
        c.s = &c.s[1..];
        let num = |l, v: f64| ffi::lua_pushnumber(l, v);
        match tag {
            0xcc => num(l, c.be(1)? as f64),
            0xd0 => num(l, f64::from(c.be(1)? as u8 as i8)),
            0xcd => num(l, c.be(2)? as f64),
            0xd1 => num(l, f64::from(c.be(2)? as u16 as i16)),
            0xce => num(l, c.be(4)? as f64),
            0xd2 => num(l, f64::from(c.be(4)? as u32 as i32)),
            0xcf => num(l, c.be(8)? as f64),
            0xd3 => num(l, c.be(8)? as i64 as f64),
            0xc0 => ffi::lua_pushnil(l),
            0xc3 => ffi::lua_pushboolean(l, 1),
            0xc2 => ffi::lua_pushboolean(l, 0),
            0xca => num(l, f64::from(f32::from_bits(c.be(4)? as u32))),
            0xcb => num(l, f64::from_bits(c.be(8)?)),
            0xd9..=0xdb => {
                let n = c.be(match tag {
                    0xd9 => 1,
                    0xda => 2,
                    _ => 4,
                })? as usize;
                let s = c.take(n)?;
                push_bytes(l, s);
            }
            0xdc | 0xdd => {
                let n = c.be(if tag == 0xdc { 2 } else { 4 })? as usize;
                array(l, c, n)?;
            }
            0xde | 0xdf => {
                let n = c.be(if tag == 0xde { 2 } else { 4 })? as usize;
                map(l, c, n)?;
            }
            t if t & 0x80 == 0 => num(l, f64::from(t)),
            t if t & 0xe0 == 0xe0 => num(l, f64::from(t as i8)),
            t if t & 0xe0 == 0xa0 => {
                let s = c.take(usize::from(t & 0x1f))?;
                push_bytes(l, s);
            }
            t if t & 0xf0 == 0x90 => array(l, c, usize::from(t & 0xf))?,
            t if t & 0xf0 == 0x80 => map(l, c, usize::from(t & 0xf))?,
            _ => return Err(Bad::Format),
        }
        Ok(())
    }
}

unsafe fn array(l: *mut lua_State, c: &mut Cur<'_>, n: usize) -> Result<(), Bad> {
    unsafe {
        ffi::lua_createtable(l, 0, 0);
        if ffi::lua_checkstack(l, 2) == 0 {
            return Err(Bad::Stack);
        }
        for i in 1..=n {
            ffi::lua_pushnumber(l, i as f64);
            decode(l, c)?;
            ffi::lua_settable(l, -3);
        }
        Ok(())
    }
}

unsafe fn map(l: *mut lua_State, c: &mut Cur<'_>, n: usize) -> Result<(), Bad> {
    unsafe {
        ffi::lua_createtable(l, 0, 0);
        for _ in 0..n {
            decode(l, c)?;
            decode(l, c)?;
            ffi::lua_settable(l, -3);
        }
        Ok(())
    }
}

unsafe fn unpack_full(
    l: *mut lua_State,
    limit: i64,
    offset: i64,
    fname: &str,
) -> Result<c_int, String> {
    unsafe {
        let s = lua::check_bytes(l, 1, fname)?;
        let len = s.len() as i64;
        let decode_all = limit == 0 && offset == 0;
        if offset < 0 || limit < 0 {
            return Err(format!(
                "Invalid request to unpack with offset of {} and limit of {}.",
                offset as c_int, len as c_int
            ));
        } else if offset > len {
            return Err(format!(
                "Start offset {} greater than input length {}.",
                offset as c_int, len as c_int
            ));
        }
        let limit = if decode_all {
            i64::from(c_int::MAX)
        } else {
            limit
        };
        let mut c = Cur {
            s: &s[offset as usize..],
        };
        let mut cnt: c_int = 0;
        while !c.s.is_empty() && i64::from(cnt) < limit {
            match decode(l, &mut c) {
                Ok(()) => {}
                Err(Bad::Eof) => return Err("Missing bytes in input.".into()),
                Err(Bad::Format) => return Err("Bad data format in input.".into()),
                Err(Bad::Stack) => {
                    return Err("stack overflow (too many return values at once; use unpack_one or unpack_limit instead.)".into());
                }
            }
            cnt += 1;
        }
        if !decode_all {
            let left = c.s.len() as i64;
            if ffi::lua_checkstack(l, 1) == 0 {
                return Err("stack overflow (in function mp_unpack_full)".into());
            }
            ffi::lua_pushnumber(l, if left == 0 { -1.0 } else { (len - left) as f64 });
            ffi::lua_insert(l, 2);
            cnt += 1;
        }
        Ok(cnt)
    }
}

unsafe fn opt_int(l: *mut lua_State, idx: c_int, default: i64, fname: &str) -> Result<i64, String> {
    unsafe {
        if ffi::lua_type(l, idx) <= ffi::LUA_TNIL {
            Ok(default)
        } else {
            Ok(lua::check_number(l, idx, fname)? as i64)
        }
    }
}

unsafe fn done(l: *mut lua_State, r: Result<c_int, String>) -> c_int {
    unsafe {
        match r {
            Ok(n) => n,
            Err(e) => lua::raise_msg(l, e),
        }
    }
}

unsafe extern "C-unwind" fn unpack(l: *mut lua_State) -> c_int {
    unsafe { done(l, unpack_full(l, 0, 0, "unpack")) }
}

unsafe extern "C-unwind" fn unpack_one(l: *mut lua_State) -> c_int {
    unsafe {
        let r = opt_int(l, 2, 0, "unpack_one").and_then(|offset| {
            ffi::lua_settop(l, 1);
            unpack_full(l, 1, offset, "unpack_one")
        });
        done(l, r)
    }
}

unsafe extern "C-unwind" fn unpack_limit(l: *mut lua_State) -> c_int {
    unsafe {
        let r = lua::check_number(l, 2, "unpack_limit").and_then(|limit| {
            let offset = opt_int(l, 3, 0, "unpack_limit")?;
            ffi::lua_settop(l, 1);
            unpack_full(l, limit as i64, offset, "unpack_limit")
        });
        done(l, r)
    }
}

/// Fills the table on top.
///
/// # Safety
/// During state setup.
pub unsafe fn open(l: *mut lua_State) {
    unsafe {
        lua::register(
            l,
            &[
                (c"pack", pack as lua::CFn),
                (c"unpack", unpack),
                (c"unpack_one", unpack_one),
                (c"unpack_limit", unpack_limit),
            ],
        );
        for (k, v) in [
            (c"_NAME", "cmsgpack"),
            (c"_VERSION", "lua-cmsgpack 0.4.0"),
            (c"_COPYRIGHT", "Copyright (C) 2012, Salvatore Sanfilippo"),
            (c"_DESCRIPTION", "MessagePack C implementation for Lua"),
        ] {
            push_bytes(l, v.as_bytes());
            ffi::lua_setfield(l, -2, k.as_ptr());
        }
    }
}
