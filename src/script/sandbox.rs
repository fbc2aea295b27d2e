//! The sandbox's C functions: unknown globals and writes to read-only tables refused with
//! Redis's texts, `rawset` and `setmetatable` that respect the read-only tables, and Redis's
//! `pcall`.

use std::ffi::c_int;

use super::lua::{self, ffi, lua_State, push_bytes, to_bytes};

/// `G.__index`: reading an undeclared global.
pub unsafe extern "C-unwind" fn nonexistent_global(l: *mut lua_State) -> c_int {
    unsafe {
        let name = to_bytes(l, 2).map(|b| String::from_utf8_lossy(b).into_owned());
        let msg = format!(
            "Script attempted to access nonexistent global variable '{}'",
            name.as_deref().unwrap_or("(null)")
        );
        lua::raise_msg(l, msg)
    }
}

/// `__newindex` of a read-only table (raised with the script's position, as the VM does).
pub unsafe extern "C-unwind" fn readonly_newindex(l: *mut lua_State) -> c_int {
    unsafe { lua::raise_msg(l, "Attempt to modify a readonly table".to_string()) }
}

/// The error `lua_rawset` and `lua_setmetatable` raise on a read-only table: no position.
unsafe fn raise_readonly(l: *mut lua_State) -> ! {
    unsafe {
        push_bytes(l, b"Attempt to modify a readonly table");
        lua::raise(l)
    }
}

unsafe fn check_table_arg(l: *mut lua_State, n: c_int, fname: &str) {
    unsafe {
        if ffi::lua_type(l, n) != ffi::LUA_TTABLE {
            let msg = lua::arg_error(
                n,
                fname,
                &format!("table expected, got {}", lua::type_name(l, n)),
            );
            lua::raise_msg(l, msg)
        }
    }
}

pub(super) unsafe extern "C-unwind" fn rawset(l: *mut lua_State) -> c_int {
    unsafe {
        check_table_arg(l, 1, "rawset");
        for n in [2, 3] {
            if ffi::lua_type(l, n) == ffi::LUA_TNONE {
                lua::raise_msg(l, lua::arg_error(n, "rawset", "value expected"));
            }
        }
        if super::state::is_protected(l, 1) {
            raise_readonly(l);
        }
        ffi::lua_settop(l, 3);
        ffi::lua_rawset(l, 1);
    }
    1
}

pub(super) unsafe extern "C-unwind" fn setmetatable(l: *mut lua_State) -> c_int {
    unsafe {
        let t = ffi::lua_type(l, 2);
        check_table_arg(l, 1, "setmetatable");
        if t != ffi::LUA_TNIL && t != ffi::LUA_TTABLE {
            lua::raise_msg(
                l,
                lua::arg_error(2, "setmetatable", "nil or table expected"),
            );
        }
        if super::state::is_protected(l, 1) {
            raise_readonly(l);
        }
        if ffi::luaL_getmetafield(l, 1, c"__metatable".as_ptr()) != 0 {
            lua::raise_msg(l, "cannot change a protected metatable".to_string());
        }
        ffi::lua_settop(l, 2);
        ffi::lua_setmetatable(l, 1);
    }
    1
}

/// Redis's `pcall`: an error that is a table with an `err` string is returned as that string.
pub(super) unsafe extern "C-unwind" fn redis_pcall(l: *mut lua_State) -> c_int {
    unsafe {
        let argc = ffi::lua_gettop(l);
        if argc == 0 {
            lua::raise_msg(l, lua::arg_error(1, "pcall", "value expected"));
        }
        ffi::lua_pushboolean(l, 1);
        ffi::lua_insert(l, 1);
        if ffi::lua_pcall(l, argc - 1, ffi::LUA_MULTRET, 0) != 0 {
            ffi::lua_remove(l, 1);
            if ffi::lua_type(l, -1) == ffi::LUA_TTABLE {
                ffi::lua_getfield_(l, -1, c"err".as_ptr());
                if ffi::lua_isstring(l, -1) != 0 {
                    ffi::lua_replace(l, -2);
                } else {
                    ffi::lua_pop(l, 1);
                }
            }
            ffi::lua_pushboolean(l, 0);
            ffi::lua_insert(l, 1);
        }
        ffi::lua_gettop(l)
    }
}
