//! The `bit` library (LuaBitOp 1.0.2 as Redis ships it): 32-bit operations on Lua numbers.

use std::ffi::c_int;

use super::super::lua::{self, ffi, lua_State};

/// A number's low 32 bits as LuaBitOp takes them: rounded to the nearest integer (ties to
/// even) through the 2^52+2^51 trick, then wrapped.
unsafe fn barg(l: *mut lua_State, idx: c_int, fname: &str) -> Result<u32, String> {
    unsafe {
        let n = ffi::lua_tonumber(l, idx);
        let b = (n + 6_755_399_441_055_744.0).to_bits() as u32;
        if b == 0 && ffi::lua_isnumber(l, idx) == 0 {
            return Err(lua::arg_error(
                idx,
                fname,
                &format!("number expected, got {}", lua::type_name(l, idx)),
            ));
        }
        Ok(b)
    }
}

unsafe fn ret(l: *mut lua_State, r: Result<u32, String>) -> c_int {
    unsafe {
        match r {
            Ok(b) => {
                ffi::lua_pushnumber(l, f64::from(b as i32));
                1
            }
            Err(e) => lua::raise_msg(l, e),
        }
    }
}

macro_rules! unary {
    ($name:ident, $lua:literal, $f:expr) => {
        unsafe extern "C-unwind" fn $name(l: *mut lua_State) -> c_int {
            unsafe {
                let f: fn(u32) -> u32 = $f;
                ret(l, barg(l, 1, $lua).map(f))
            }
        }
    };
}

macro_rules! fold {
    ($name:ident, $lua:literal, $op:expr) => {
        unsafe extern "C-unwind" fn $name(l: *mut lua_State) -> c_int {
            unsafe {
                let op: fn(u32, u32) -> u32 = $op;
                let r = (|| {
                    let mut b = barg(l, 1, $lua)?;
                    let mut i = ffi::lua_gettop(l);
                    while i > 1 {
                        b = op(b, barg(l, i, $lua)?);
                        i -= 1;
                    }
                    Ok(b)
                })();
                ret(l, r)
            }
        }
    };
}

macro_rules! shift {
    ($name:ident, $lua:literal, $op:expr) => {
        unsafe extern "C-unwind" fn $name(l: *mut lua_State) -> c_int {
            unsafe {
                let op: fn(u32, u32) -> u32 = $op;
                let r = barg(l, 1, $lua).and_then(|b| barg(l, 2, $lua).map(|n| op(b, n & 31)));
                ret(l, r)
            }
        }
    };
}

unary!(tobit, "tobit", |b| b);
unary!(bnot, "bnot", |b| !b);
unary!(bswap, "bswap", u32::swap_bytes);
fold!(band, "band", |a, b| a & b);
fold!(bor, "bor", |a, b| a | b);
fold!(bxor, "bxor", |a, b| a ^ b);
shift!(lshift, "lshift", |b, n| b << n);
shift!(rshift, "rshift", |b, n| b >> n);
shift!(arshift, "arshift", |b, n| ((b as i32) >> n) as u32);
shift!(rol, "rol", |b, n| b.rotate_left(n));
shift!(ror, "ror", |b, n| b.rotate_right(n));

unsafe extern "C-unwind" fn tohex(l: *mut lua_State) -> c_int {
    unsafe {
        let r = barg(l, 1, "tohex").and_then(|b| {
            let n = if ffi::lua_type(l, 2) == ffi::LUA_TNONE {
                8
            } else {
                barg(l, 2, "tohex")? as i32
            };
            Ok((b, n))
        });
        match r {
            Ok((mut b, n)) => {
                let n = if n == i32::MIN { i32::MIN + 1 } else { n };
                let digits: &[u8; 16] = if n < 0 {
                    b"0123456789ABCDEF"
                } else {
                    b"0123456789abcdef"
                };
                let n = n.unsigned_abs().min(8) as usize;
                let mut buf = [0u8; 8];
                for i in (0..n).rev() {
                    buf[i] = digits[(b & 15) as usize];
                    b >>= 4;
                }
                lua::push_bytes(l, &buf[..n]);
                1
            }
            Err(e) => lua::raise_msg(l, e),
        }
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
                (c"tobit", tobit as lua::CFn),
                (c"bnot", bnot),
                (c"band", band),
                (c"bor", bor),
                (c"bxor", bxor),
                (c"lshift", lshift),
                (c"rshift", rshift),
                (c"arshift", arshift),
                (c"rol", rol),
                (c"ror", ror),
                (c"bswap", bswap),
                (c"tohex", tohex),
            ],
        );
    }
}
