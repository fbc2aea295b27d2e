//! The libraries Redis adds to its Lua: cjson, cmsgpack, bit and struct, reimplemented in Rust
//! on the raw C API with Redis's behaviour.

mod bit;
mod cjson;
mod cmsgpack;
mod lstruct;

use super::lua::{ffi, lua_State};

/// Opens the four libraries as globals.
///
/// # Safety
/// During state setup, protected.
pub unsafe fn open_all(l: *mut lua_State) {
    unsafe {
        for (name, open) in [
            (c"cjson", cjson::open as unsafe fn(*mut lua_State)),
            (c"struct", lstruct::open),
            (c"cmsgpack", cmsgpack::open),
            (c"bit", bit::open),
        ] {
            ffi::lua_createtable(l, 0, 16);
            open(l);
            ffi::lua_setfield(l, ffi::LUA_GLOBALSINDEX, name.as_ptr());
        }
    }
}
