//! FUNCTION support: a library's `#!lua name=...` header, `redis.register_function` (both
//! forms, with flags) while the library body runs, and the functions it registered.

use std::ffi::c_int;

use super::lua::{self, ffi, lua_State, push_error_table, to_bytes};

/// A function's flags, as `redis.register_function` names them.
pub mod flags {
    pub const NO_WRITES: u32 = 1 << 0;
    pub const ALLOW_OOM: u32 = 1 << 1;
    pub const ALLOW_STALE: u32 = 1 << 2;
    pub const NO_CLUSTER: u32 = 1 << 3;
    pub const ALLOW_CROSS_SLOT_KEYS: u32 = 1 << 4;
    /// Names and bits, as Redis spells them.
    pub const NAMES: [(&str, u32); 5] = [
        ("no-writes", NO_WRITES),
        ("allow-oom", ALLOW_OOM),
        ("allow-stale", ALLOW_STALE),
        ("no-cluster", NO_CLUSTER),
        ("allow-cross-slot-keys", ALLOW_CROSS_SLOT_KEYS),
    ];
}

/// A library's header: `#!<engine> name=<name>`, and the code after it (from the newline on,
/// so line numbers are kept).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LibraryMeta {
    pub engine: String,
    pub name: String,
    pub code_start: usize,
}

/// Parses a FUNCTION LOAD payload's header as Redis does; errors are Redis's texts.
pub fn parse_library(payload: &[u8]) -> Result<LibraryMeta, String> {
    if !payload.starts_with(b"#!") {
        return Err("Missing library metadata".into());
    }
    let Some(end) = payload.iter().position(|&b| b == b'\n') else {
        return Err("Invalid library metadata".into());
    };
    let header = String::from_utf8_lossy(&payload[..end]);
    let mut parts = header.split_ascii_whitespace();
    let Some(first) = parts.next() else {
        return Err("Invalid library metadata".into());
    };
    let engine = first[2..].to_string();
    let mut name = None;
    for part in parts {
        if part.len() >= 5 && part[..5].eq_ignore_ascii_case("name=") {
            if name.is_some() {
                return Err(
                    "Invalid metadata value, name argument was given multiple times".into(),
                );
            }
            name = Some(part[5..].to_string());
            continue;
        }
        return Err(format!("Invalid metadata value given: {part}"));
    }
    let Some(name) = name else {
        return Err("Library name was not given".into());
    };
    if !valid_name(&name) {
        return Err("Library names can only contain letters, numbers, or underscores(_) and must be at least one character long".into());
    }
    if !engine.eq_ignore_ascii_case("lua") {
        return Err(format!("Engine '{engine}' not found"));
    }
    Ok(LibraryMeta {
        engine,
        name,
        code_start: end,
    })
}

/// Letters, digits and underscores, at least one.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// A function registered by a library: its callback is kept in the Lua registry.
#[derive(Debug, Clone)]
pub struct Registered {
    pub name: String,
    pub description: Option<String>,
    pub flags: u32,
    pub func_ref: c_int,
}

/// What a library body registered while it ran.
#[derive(Debug, Default)]
pub struct Registrations {
    pub functions: Vec<Registered>,
}

/// `redis.register_function(name, callback)` or
/// `redis.register_function{function_name=..., callback=..., flags={...}, description=...}`.
///
/// # Safety
/// Called by Lua only.
pub unsafe extern "C-unwind" fn register_function(l: *mut lua_State) -> c_int {
    unsafe {
        let outcome = read_args(l).and_then(|r| {
            let Some(ctx) = super::api::loading() else {
                ffi::luaL_unref(l, ffi::LUA_REGISTRYINDEX, r.func_ref);
                return Err("redis.register_function can only be called on FUNCTION LOAD command");
            };
            if !valid_name(&r.name) {
                ffi::luaL_unref(l, ffi::LUA_REGISTRYINDEX, r.func_ref);
                return Err("Library names can only contain letters, numbers, or underscores(_) and must be at least one character long");
            }
            if ctx.functions.iter().any(|f| f.name == r.name) {
                ffi::luaL_unref(l, ffi::LUA_REGISTRYINDEX, r.func_ref);
                return Err("Function already exists in the library");
            }
            ctx.functions.push(r);
            Ok(())
        });
        if let Err(e) = outcome {
            push_error_table(l, e.as_bytes());
            lua::raise(l);
        }
    }
    0
}

unsafe fn read_args(l: *mut lua_State) -> Result<Registered, &'static str> {
    unsafe {
        if super::api::loading().is_none() {
            return Err("redis.register_function can only be called on FUNCTION LOAD command");
        }
        match ffi::lua_gettop(l) {
            1 => read_named(l),
            2 => {
                let Some(name) = string_at(l, 1) else {
                    return Err("first argument to redis.register_function must be a string");
                };
                if ffi::lua_type(l, 2) != ffi::LUA_TFUNCTION {
                    return Err("second argument to redis.register_function must be a function");
                }
                let func_ref = ffi::luaL_ref(l, ffi::LUA_REGISTRYINDEX);
                Ok(Registered {
                    name,
                    description: None,
                    flags: 0,
                    func_ref,
                })
            }
            _ => Err("wrong number of arguments to redis.register_function"),
        }
    }
}

unsafe fn string_at(l: *mut lua_State, idx: c_int) -> Option<String> {
    unsafe {
        if ffi::lua_isstring(l, idx) == 0 {
            return None;
        }
        to_bytes(l, idx).map(|b| String::from_utf8_lossy(b).into_owned())
    }
}

unsafe fn read_named(l: *mut lua_State) -> Result<Registered, &'static str> {
    unsafe {
        if ffi::lua_type(l, 1) != ffi::LUA_TTABLE {
            return Err(
                "calling redis.register_function with a single argument is only applicable to Lua table (representing named arguments).",
            );
        }
        let mut name = None;
        let mut description = None;
        let mut fl = 0;
        let mut func_ref = None;
        let mut err = None;
        ffi::lua_pushnil(l);
        while ffi::lua_next(l, 1) != 0 {
            let key = if ffi::lua_type(l, -2) == ffi::LUA_TSTRING {
                to_bytes(l, -2).map(|b| b.to_ascii_lowercase())
            } else {
                None
            };
            let step: Result<(), &'static str> = match key.as_deref() {
                None => Err("named argument key given to redis.register_function is not a string"),
                Some(b"function_name") => string_at(l, -1).map(|s| name = Some(s)).ok_or(
                    "function_name argument given to redis.register_function must be a string",
                ),
                Some(b"description") => string_at(l, -1).map(|s| description = Some(s)).ok_or(
                    "description argument given to redis.register_function must be a string",
                ),
                Some(b"callback") => {
                    if ffi::lua_type(l, -1) != ffi::LUA_TFUNCTION {
                        Err("callback argument given to redis.register_function must be a function")
                    } else {
                        ffi::lua_pushvalue(l, -1);
                        func_ref = Some(ffi::luaL_ref(l, ffi::LUA_REGISTRYINDEX));
                        Ok(())
                    }
                }
                Some(b"flags") => {
                    if ffi::lua_type(l, -1) != ffi::LUA_TTABLE {
                        Err(
                            "flags argument to redis.register_function must be a table representing function flags",
                        )
                    } else {
                        read_flags(l).map(|f| fl = f).ok_or("unknown flag given")
                    }
                }
                Some(_) => Err("unknown argument given to redis.register_function"),
            };
            ffi::lua_pop(l, 1);
            if let Err(e) = step {
                ffi::lua_pop(l, 1);
                err = Some(e);
                break;
            }
        }
        let fail = |e| {
            if let Some(r) = func_ref {
                ffi::luaL_unref(l, ffi::LUA_REGISTRYINDEX, r);
            }
            Err(e)
        };
        if let Some(e) = err {
            return fail(e);
        }
        let Some(name) = name else {
            return fail("redis.register_function must get a function name argument");
        };
        let Some(func_ref) = func_ref else {
            return Err("redis.register_function must get a callback argument");
        };
        Ok(Registered {
            name,
            description,
            flags: fl,
            func_ref,
        })
    }
}

/// The flags table on top (an array of flag names).
unsafe fn read_flags(l: *mut lua_State) -> Option<u32> {
    unsafe {
        let mut bits = 0;
        let mut j = 1;
        loop {
            ffi::lua_rawgeti_(l, -1, j);
            if ffi::lua_type(l, -1) == ffi::LUA_TNIL {
                ffi::lua_pop(l, 1);
                return Some(bits);
            }
            let found = if ffi::lua_type(l, -1) == ffi::LUA_TSTRING {
                let s = to_bytes(l, -1).unwrap_or_default();
                flags::NAMES
                    .iter()
                    .find(|(n, _)| n.as_bytes() == s)
                    .map(|(_, b)| *b)
            } else {
                None
            };
            ffi::lua_pop(l, 1);
            bits |= found?;
            j += 1;
        }
    }
}

/// The flags of an EVAL script's shebang line (`#!lua flags=no-writes,allow-oom`), or `None`
/// without one (Redis's compatibility mode); and the length of the line.
pub fn shebang(body: &[u8]) -> Result<(Option<u32>, usize), String> {
    if !body.starts_with(b"#!") {
        return Ok((None, 0));
    }
    let Some(end) = body.iter().position(|&b| b == b'\n') else {
        return Err("Invalid script shebang".into());
    };
    let line = String::from_utf8_lossy(&body[..end]);
    let mut parts = line.split_ascii_whitespace();
    let Some(engine) = parts.next() else {
        return Err("Invalid engine in script shebang".into());
    };
    if engine != "#!lua" {
        return Err(format!("Unexpected engine in script shebang: {engine}"));
    }
    let mut bits = 0;
    for part in parts {
        let Some(list) = part.strip_prefix("flags=") else {
            return Err(format!("Unknown lua shebang option: {part}"));
        };
        for f in list.split(',') {
            match flags::NAMES.iter().find(|(n, _)| *n == f) {
                Some((_, b)) => bits |= b,
                None => return Err(format!("Unexpected flag in script shebang: {f}")),
            }
        }
    }
    Ok((Some(bits), end))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn library_headers_parse_as_redis() {
        let m = parse_library(b"#!lua name=mylib\nredis.register_function('f', function() end)")
            .unwrap();
        assert_eq!(m.name, "mylib");
        assert_eq!(m.code_start, 16);
        assert_eq!(
            parse_library(b"return 1").unwrap_err(),
            "Missing library metadata"
        );
        assert_eq!(
            parse_library(b"#!lua name=x").unwrap_err(),
            "Invalid library metadata"
        );
        assert_eq!(
            parse_library(b"#!lua\n").unwrap_err(),
            "Library name was not given"
        );
        assert_eq!(
            parse_library(b"#!lua name=a name=b\n").unwrap_err(),
            "Invalid metadata value, name argument was given multiple times"
        );
        assert_eq!(
            parse_library(b"#!lua foo=bar\n").unwrap_err(),
            "Invalid metadata value given: foo=bar"
        );
        assert_eq!(
            parse_library(b"#!js name=x\n").unwrap_err(),
            "Engine 'js' not found"
        );
    }

    #[test]
    fn shebang_flags_parse_as_redis() {
        assert_eq!(shebang(b"return 1").unwrap(), (None, 0));
        assert_eq!(shebang(b"#!lua\nreturn 1").unwrap(), (Some(0), 5));
        assert_eq!(
            shebang(b"#!lua flags=no-writes,allow-oom\n").unwrap().0,
            Some(flags::NO_WRITES | flags::ALLOW_OOM)
        );
        assert_eq!(
            shebang(b"#!lua flags=bogus\n").unwrap_err(),
            "Unexpected flag in script shebang: bogus"
        );
        assert_eq!(shebang(b"#!lua").unwrap_err(), "Invalid script shebang");
    }
}
