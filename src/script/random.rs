//! Redis's `math.random` and `math.randomseed`: `lrand48` as Redis implements it, one
//! sequence per engine.

use std::ffi::c_int;
use std::sync::atomic::{AtomicU64, Ordering};

use super::api::ctx;
use super::lua::{self, ffi, lua_State};

/// Redis's `redisLrand48`: the 48-bit linear congruential generator of `lrand48`, one
/// sequence per engine as Redis keeps one per process, never reseeded between scripts.
pub fn lrand48(state: &AtomicU64) -> i32 {
    const A: u64 = 0x5_DEEC_E66D;
    const MASK: u64 = (1 << 48) - 1;
    let mut cur = state.load(Ordering::Relaxed);
    loop {
        let next = (cur.wrapping_mul(A).wrapping_add(0xB)) & MASK;
        match state.compare_exchange_weak(cur, next, Ordering::Relaxed, Ordering::Relaxed) {
            Ok(_) => return (next >> 17) as i32,
            Err(now) => cur = now,
        }
    }
}

/// The generator's state at start and after `srand48(seed)`.
pub const RAND_INIT: u64 = 0x1234_ABCD_330E;

pub fn srand48(state: &AtomicU64, seed: i32) {
    state.store(((seed as u32 as u64) << 16) | 0x330E, Ordering::Relaxed);
}

/// `luaL_checkint`.
pub(super) unsafe fn check_int(l: *mut lua_State, n: c_int, fname: &str) -> Result<c_int, String> {
    unsafe { lua::check_number(l, n, fname).map(|v| v as i64 as c_int) }
}

pub(super) unsafe extern "C-unwind" fn math_random(l: *mut lua_State) -> c_int {
    unsafe {
        let Some(run) = ctx() else {
            lua::raise_msg(
                l,
                "math.random can only be called inside a script invocation".into(),
            );
        };
        const MAX: f64 = i32::MAX as f64;
        let r = f64::from(lrand48(run.rand) % i32::MAX) / MAX;
        let result = match ffi::lua_gettop(l) {
            0 => Ok(r),
            1 => check_int(l, 1, "random").and_then(|u| {
                if 1 <= u {
                    Ok((r * f64::from(u)).floor() + 1.0)
                } else {
                    Err(lua::arg_error(1, "random", "interval is empty"))
                }
            }),
            2 => check_int(l, 1, "random").and_then(|lo| {
                check_int(l, 2, "random").and_then(|u| {
                    if lo <= u {
                        Ok((r * (f64::from(u) - f64::from(lo) + 1.0)).floor() + f64::from(lo))
                    } else {
                        Err(lua::arg_error(2, "random", "interval is empty"))
                    }
                })
            }),
            _ => Err("wrong number of arguments".to_string()),
        };
        match result {
            Ok(v) => {
                ffi::lua_pushnumber(l, v);
                1
            }
            Err(e) => lua::raise_msg(l, e),
        }
    }
}

pub(super) unsafe extern "C-unwind" fn math_randomseed(l: *mut lua_State) -> c_int {
    unsafe {
        let Some(run) = ctx() else {
            lua::raise_msg(
                l,
                "math.randomseed can only be called inside a script invocation".into(),
            );
        };
        match check_int(l, 1, "randomseed") {
            Ok(seed) => srand48(run.rand, seed),
            Err(e) => lua::raise_msg(l, e),
        }
    }
    0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lrand48_matches_redis_first_draw() {
        // A fresh redis-server answers EVAL "return math.random(100)" 0 with 40.
        let s = AtomicU64::new(RAND_INIT);
        let r = f64::from(lrand48(&s) % i32::MAX) / f64::from(i32::MAX);
        assert_eq!((r * 100.0).floor() + 1.0, 40.0);
    }
}
