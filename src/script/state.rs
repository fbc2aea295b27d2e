//! One sandboxed Lua 5.1 state set up as Redis 7.0 sets up its own: the libraries it loads,
//! the `redis` table, the error handler, the protected globals, and a bounded allocator.

use std::alloc::Layout;
use std::ffi::{CStr, c_int, c_void};

use super::lua::{self, CFn, ffi, lua_State, push_bytes};
use super::{api, lib};

/// Bytes a state may allocate when no limit is configured.
pub const DEFAULT_MEMORY_LIMIT: usize = 64 << 20;

/// The allocator's books: what the state holds and the most it may.
pub struct Alloc {
    pub used: usize,
    pub limit: usize,
    /// An allocation was refused since the last reset.
    pub exceeded: bool,
}

const ALIGN: usize = 16;

unsafe extern "C" fn allocate(
    ud: *mut c_void,
    ptr: *mut c_void,
    osize: usize,
    nsize: usize,
) -> *mut c_void {
    // SAFETY: `ud` is the state's `Alloc`, alive as long as the state; Lua 5.1 passes the
    // block's true old size with every non-null pointer.
    unsafe {
        let books = &mut *(ud as *mut Alloc);
        if nsize == 0 {
            if !ptr.is_null() && osize != 0 {
                std::alloc::dealloc(
                    ptr as *mut u8,
                    Layout::from_size_align_unchecked(osize, ALIGN),
                );
                books.used = books.used.saturating_sub(osize);
            }
            return std::ptr::null_mut();
        }
        let old = if ptr.is_null() { 0 } else { osize };
        if nsize > old && books.used + (nsize - old) > books.limit {
            books.exceeded = true;
            return std::ptr::null_mut();
        }
        let new = if ptr.is_null() || osize == 0 {
            std::alloc::alloc(Layout::from_size_align_unchecked(nsize, ALIGN))
        } else {
            std::alloc::realloc(
                ptr as *mut u8,
                Layout::from_size_align_unchecked(osize, ALIGN),
                nsize,
            )
        };
        if new.is_null() {
            return std::ptr::null_mut();
        }
        books.used = books.used - old + nsize;
        new as *mut c_void
    }
}

/// A Lua state and its allocator books. Owned by one thread at a time.
pub struct State {
    pub l: *mut lua_State,
    pub alloc: Box<Alloc>,
    /// Scripts run since the last incremental GC step.
    pub runs: u32,
}

// SAFETY: a state is only ever used by the thread that holds it; it moves between threads
// whole (pool -> blocking thread -> pool), never shared.
unsafe impl Send for State {}

impl Drop for State {
    fn drop(&mut self) {
        // SAFETY: the state was created by `new` and is closed once.
        unsafe { ffi::lua_close(self.l) }
    }
}

/// Registry keys.
pub const PROTECTED: &CStr = c"shardis.protected";
pub const GLOBALS: &CStr = c"shardis.globals";
pub const PROXIES: &CStr = c"shardis.proxies";
pub const LOAD_API: &CStr = c"shardis.load_api";

/// Library tables that scripts see read-only, as Redis 7.0 makes every table reachable from
/// the globals read-only.
const LIBS: [&CStr; 9] = [
    c"string",
    c"table",
    c"math",
    c"coroutine",
    c"redis",
    c"cjson",
    c"bit",
    c"struct",
    c"cmsgpack",
];

/// The error handler Redis installs (`__redis__err__handler`): it turns an error into a table
/// `{err=..., source=..., line=...}`, naming the Lua function that raised it or, when a C
/// function raised it, that function's caller.
const ERR_HANDLER: &str = "local dbg = debug\n\
debug = nil\n\
function __redis__err__handler(err)\n\
  local where = dbg.getinfo(2, 'nSl')\n\
  if where and where.what == 'C' then\n\
    where = dbg.getinfo(3, 'nSl')\n\
  end\n\
  if type(err) ~= 'table' then\n\
    err = {err = 'ERR ' .. tostring(err)}\n\
  end\n\
  if where then\n\
    err['source'] = where.source\n\
    err['line'] = where.currentline\n\
  end\n\
  return err\n\
end\n";

impl State {
    /// A new state, set up as Redis sets up its scripting state, with at most `limit` bytes.
    pub fn new(limit: usize) -> Option<State> {
        let mut alloc = Box::new(Alloc {
            used: 0,
            limit: usize::MAX,
            exceeded: false,
        });
        // SAFETY: the books outlive the state (both owned by `State`, the state closed first
        // in `drop`).
        let l = unsafe { ffi::lua_newstate(allocate, &mut *alloc as *mut Alloc as *mut c_void) };
        if l.is_null() {
            return None;
        }
        let mut state = State { l, alloc, runs: 0 };
        // SAFETY: a fresh state; `setup` runs protected.
        let ok = unsafe { ffi::lua_cpcall(l, setup, std::ptr::null_mut()) == 0 };
        if !ok {
            return None;
        }
        state.alloc.limit = limit.max(state.alloc.used + (1 << 20));
        Some(state)
    }
}

unsafe fn open(l: *mut lua_State, f: CFn, name: &CStr) {
    unsafe {
        ffi::lua_pushcclosure(l, f, 0);
        ffi::lua_pushstring_(l, name.as_ptr());
        ffi::lua_call(l, 1, 0);
    }
}

unsafe extern "C-unwind" fn setup(l: *mut lua_State) -> c_int {
    unsafe {
        open(l, ffi::luaopen_base, c"");
        open(l, ffi::luaopen_table, c"table");
        open(l, ffi::luaopen_string, c"string");
        open(l, ffi::luaopen_math, c"math");
        open(l, ffi::luaopen_debug, c"debug");
        lib::open_all(l);
        // What Redis keeps out of the globals: its deny list and deprecated builtins.
        for name in [
            c"dofile",
            c"loadfile",
            c"print",
            c"getfenv",
            c"setfenv",
            c"newproxy",
        ] {
            ffi::lua_pushnil(l);
            ffi::lua_setfield(l, ffi::LUA_GLOBALSINDEX, name.as_ptr());
        }
        api::register(l);
        let handler = ERR_HANDLER.as_bytes();
        if ffi::luaL_loadbuffer(
            l,
            handler.as_ptr() as *const _,
            handler.len(),
            c"@err_handler_def".as_ptr(),
        ) != 0
        {
            lua::raise(l);
        }
        ffi::lua_call(l, 0, 0);
        protect(l);
        load_api(l);
    }
    0
}

/// The globals a FUNCTION LOAD body sees: only `redis` with `register_function`, `log`, the
/// log levels and the version; any other name is an unknown global.
unsafe fn load_api(l: *mut lua_State) {
    unsafe {
        ffi::lua_createtable(l, 0, 1);
        ffi::lua_createtable(l, 0, 8);
        ffi::lua_getfield_(l, ffi::LUA_GLOBALSINDEX, c"redis".as_ptr());
        for name in [
            c"register_function",
            c"log",
            c"LOG_DEBUG",
            c"LOG_VERBOSE",
            c"LOG_NOTICE",
            c"LOG_WARNING",
            c"REDIS_VERSION",
            c"REDIS_VERSION_NUM",
        ] {
            ffi::lua_getfield_(l, -1, name.as_ptr());
            ffi::lua_setfield(l, -3, name.as_ptr());
        }
        ffi::lua_pop(l, 1);
        error_metatable(l);
        push_proxy(l, -1);
        ffi::lua_remove(l, -2);
        ffi::lua_setfield(l, -2, c"redis".as_ptr());
        error_metatable(l);
        push_proxy(l, -1);
        ffi::lua_remove(l, -2);
        ffi::lua_setfield(l, ffi::LUA_REGISTRYINDEX, LOAD_API.as_ptr());
    }
}

/// Gives the table on top a metatable whose `__index` refuses unknown names.
unsafe fn error_metatable(l: *mut lua_State) {
    unsafe {
        ffi::lua_createtable(l, 0, 1);
        ffi::lua_pushcclosure(l, super::sandbox::nonexistent_global, 0);
        ffi::lua_setfield(l, -2, c"__index".as_ptr());
        ffi::lua_setmetatable(l, -2);
    }
}

/// Points the scripts' globals proxy at `registry[view]` (the real globals, or the
/// load-time API).
///
/// # Safety
/// As for the C API.
pub unsafe fn set_globals_view(l: *mut lua_State, view: &CStr) {
    unsafe {
        if ffi::lua_getmetatable(l, ffi::LUA_GLOBALSINDEX) != 0 {
            ffi::lua_getfield_(l, ffi::LUA_REGISTRYINDEX, view.as_ptr());
            ffi::lua_setfield(l, -2, c"__index".as_ptr());
            ffi::lua_pop(l, 1);
        }
    }
}

/// Makes the globals and the library tables read-only for scripts: the real globals table G
/// gets an `__index` that refuses unknown names; scripts see a proxy P (`_G`, and the
/// environment of every chunk) whose writes are refused, and each library table is replaced
/// by a read-only proxy.
unsafe fn protect(l: *mut lua_State) {
    unsafe {
        // registry[PROTECTED] = set of proxies; registry[PROXIES] = list of them.
        ffi::lua_createtable(l, 0, 16);
        ffi::lua_setfield(l, ffi::LUA_REGISTRYINDEX, PROTECTED.as_ptr());
        ffi::lua_createtable(l, 16, 0);
        ffi::lua_setfield(l, ffi::LUA_REGISTRYINDEX, PROXIES.as_ptr());

        ffi::lua_pushvalue(l, ffi::LUA_GLOBALSINDEX);
        ffi::lua_setfield(l, ffi::LUA_REGISTRYINDEX, GLOBALS.as_ptr());

        for name in LIBS {
            ffi::lua_getfield_(l, ffi::LUA_GLOBALSINDEX, name.as_ptr());
            if ffi::lua_type(l, -1) != ffi::LUA_TTABLE {
                ffi::lua_pop(l, 1);
                continue;
            }
            push_proxy(l, -1);
            ffi::lua_remove(l, -2);
            ffi::lua_setfield(l, ffi::LUA_GLOBALSINDEX, name.as_ptr());
        }
        // Strings index the read-only string table.
        push_bytes(l, b"");
        if ffi::lua_getmetatable(l, -1) != 0 {
            ffi::lua_getfield_(l, ffi::LUA_GLOBALSINDEX, c"string".as_ptr());
            ffi::lua_setfield(l, -2, c"__index".as_ptr());
            ffi::lua_pop(l, 1);
        }
        ffi::lua_pop(l, 1);

        // G's own metatable: unknown names are an error.
        ffi::lua_pushvalue(l, ffi::LUA_GLOBALSINDEX);
        error_metatable(l);
        ffi::lua_pop(l, 1);

        // P, seen by scripts as their globals.
        push_proxy(l, ffi::LUA_GLOBALSINDEX);
        ffi::lua_pushvalue(l, -1);
        ffi::lua_setfield(l, ffi::LUA_GLOBALSINDEX, c"_G".as_ptr());
        ffi::lua_replace(l, ffi::LUA_GLOBALSINDEX);
    }
}

/// Pushes a read-only proxy of the table at `idx`, and records it as protected.
unsafe fn push_proxy(l: *mut lua_State, idx: c_int) {
    unsafe {
        let idx = if idx < 0 && idx > ffi::LUA_REGISTRYINDEX {
            ffi::lua_gettop(l) + idx + 1
        } else {
            idx
        };
        ffi::lua_createtable(l, 0, 0);
        ffi::lua_createtable(l, 0, 3);
        ffi::lua_pushvalue(l, idx);
        ffi::lua_setfield(l, -2, c"__index".as_ptr());
        ffi::lua_pushcclosure(l, super::sandbox::readonly_newindex, 0);
        ffi::lua_setfield(l, -2, c"__newindex".as_ptr());
        ffi::lua_pushboolean(l, 0);
        ffi::lua_setfield(l, -2, c"__metatable".as_ptr());
        ffi::lua_setmetatable(l, -2);

        ffi::lua_getfield_(l, ffi::LUA_REGISTRYINDEX, PROTECTED.as_ptr());
        ffi::lua_pushvalue(l, -2);
        ffi::lua_pushboolean(l, 1);
        ffi::lua_rawset(l, -3);
        ffi::lua_pop(l, 1);

        ffi::lua_getfield_(l, ffi::LUA_REGISTRYINDEX, PROXIES.as_ptr());
        let n = ffi::lua_objlen(l, -1);
        ffi::lua_pushvalue(l, -2);
        ffi::lua_rawseti_(l, -2, (n + 1) as c_int);
        ffi::lua_pop(l, 1);
    }
}

/// Whether the value at `idx` is a protected table.
///
/// # Safety
/// As for the C API; needs 2 free stack slots.
pub unsafe fn is_protected(l: *mut lua_State, idx: c_int) -> bool {
    unsafe {
        if ffi::lua_type(l, idx) != ffi::LUA_TTABLE {
            return false;
        }
        let idx = if idx < 0 && idx > ffi::LUA_REGISTRYINDEX {
            ffi::lua_gettop(l) + idx + 1
        } else {
            idx
        };
        ffi::lua_getfield_(l, ffi::LUA_REGISTRYINDEX, PROTECTED.as_ptr());
        ffi::lua_pushvalue(l, idx);
        ffi::lua_rawget_(l, -2);
        let yes = ffi::lua_toboolean(l, -1) != 0;
        ffi::lua_pop(l, 2);
        yes
    }
}

/// Undoes what a script could leave behind despite the protection: raw writes into a proxy
/// (`table.insert(string, ...)` bypasses `__newindex`), a changed string metatable, KEYS and
/// ARGV.
///
/// # Safety
/// Runs protected (`lua_cpcall`).
pub unsafe extern "C-unwind" fn scrub(l: *mut lua_State) -> c_int {
    unsafe {
        ffi::lua_getfield_(l, ffi::LUA_REGISTRYINDEX, PROXIES.as_ptr());
        let n = ffi::lua_objlen(l, -1);
        for i in 1..=n {
            ffi::lua_rawgeti_(l, -1, i as c_int);
            loop {
                ffi::lua_pushnil(l);
                if ffi::lua_next(l, -2) == 0 {
                    break;
                }
                ffi::lua_pop(l, 1);
                ffi::lua_pushnil(l);
                ffi::lua_rawset(l, -3);
            }
            ffi::lua_pop(l, 1);
        }
        ffi::lua_pop(l, 1);
        // The string metatable holds exactly {__index = string proxy}.
        push_bytes(l, b"");
        if ffi::lua_getmetatable(l, -1) != 0 {
            loop {
                ffi::lua_pushnil(l);
                if ffi::lua_next(l, -2) == 0 {
                    break;
                }
                ffi::lua_pop(l, 1);
                ffi::lua_pushnil(l);
                ffi::lua_rawset(l, -3);
            }
            ffi::lua_getfield_(l, ffi::LUA_REGISTRYINDEX, GLOBALS.as_ptr());
            ffi::lua_getfield_(l, -1, c"string".as_ptr());
            ffi::lua_setfield(l, -3, c"__index".as_ptr());
            ffi::lua_pop(l, 2);
        }
        ffi::lua_pop(l, 1);
    }
    0
}
