//! The `cjson` library (Lua CJSON 2.1.0 as Redis ships it): `cjson.encode`, `cjson.decode`,
//! `cjson.null` and the configuration functions, with Lua CJSON's texts and limits.

use std::ffi::c_int;

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

unsafe fn number(l: *mut lua_State, cfg: &Config, out: &mut Vec<u8>, idx: c_int) -> Result<(), Fail> {
    unsafe {
        let n = ffi::lua_tonumber(l, idx);
        match cfg.encode_invalid_numbers {
            0 if n.is_nan() || n.is_infinite() => {
                return Err(format!("Cannot serialise {}: must not be NaN or Inf", lua::type_name(l, idx)));
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
        if cfg.sparse_ratio > 0 && max > items * i64::from(cfg.sparse_ratio) && max > i64::from(cfg.sparse_safe) {
            if cfg.sparse_convert == 0 {
                return Err("Cannot serialise table: excessively sparse array".into());
            }
            return Ok(-1);
        }
        Ok(max)
    }
}

unsafe fn encode_value(l: *mut lua_State, cfg: &Config, depth: c_int, out: &mut Vec<u8>) -> Result<(), Fail> {
    unsafe {
        match ffi::lua_type(l, -1) {
            ffi::LUA_TSTRING => escape(out, to_bytes(l, -1).unwrap_or_default()),
            ffi::LUA_TNUMBER => number(l, cfg, out, -1)?,
            ffi::LUA_TBOOLEAN => out.extend_from_slice(if ffi::lua_toboolean(l, -1) != 0 { b"true" } else { b"false" }),
            ffi::LUA_TNIL => out.extend_from_slice(b"null"),
            ffi::LUA_TLIGHTUSERDATA if ffi::lua_touserdata(l, -1).is_null() => out.extend_from_slice(b"null"),
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
            _ => return Err(format!("Cannot serialise {}: type not supported", lua::type_name(l, -1))),
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

#[derive(Debug, Clone, Copy, PartialEq)]
enum Tok {
    ObjBegin,
    ObjEnd,
    ArrBegin,
    ArrEnd,
    Str,
    Num(f64),
    Bool(bool),
    Null,
    Colon,
    Comma,
    End,
    Error(&'static str),
}

impl Tok {
    fn name(self) -> &'static str {
        match self {
            Tok::ObjBegin => "T_OBJ_BEGIN",
            Tok::ObjEnd => "T_OBJ_END",
            Tok::ArrBegin => "T_ARR_BEGIN",
            Tok::ArrEnd => "T_ARR_END",
            Tok::Str => "T_STRING",
            Tok::Num(_) => "T_NUMBER",
            Tok::Bool(_) => "T_BOOLEAN",
            Tok::Null => "T_NULL",
            Tok::Colon => "T_COLON",
            Tok::Comma => "T_COMMA",
            Tok::End => "T_END",
            Tok::Error(s) => s,
        }
    }
}

struct Parser<'a> {
    data: &'a [u8],
    pos: usize,
    depth: c_int,
    cfg: Config,
    /// The last string token's bytes.
    text: Vec<u8>,
}

fn hex4(s: &[u8]) -> Option<u32> {
    let s = s.get(..4)?;
    let mut v = 0;
    for &c in s {
        v = v * 16 + (c as char).to_digit(16)?;
    }
    Some(v)
}

/// C `strtod` on the start of `s`: the length it reads and the value.
fn strtod(s: &[u8]) -> Option<(usize, f64)> {
    let mut i = 0;
    let neg = match s.first() {
        Some(b'-') => {
            i += 1;
            true
        }
        Some(b'+') => {
            i += 1;
            false
        }
        _ => false,
    };
    let rest = &s[i..];
    let lower: Vec<u8> = rest.iter().take(8).map(u8::to_ascii_lowercase).collect();
    let sign = if neg { -1.0 } else { 1.0 };
    if lower.starts_with(b"infinity") {
        return Some((i + 8, sign * f64::INFINITY));
    }
    if lower.starts_with(b"inf") {
        return Some((i + 3, sign * f64::INFINITY));
    }
    if lower.starts_with(b"nan") {
        return Some((i + 3, f64::NAN));
    }
    if lower.starts_with(b"0x") {
        let digits = rest[2..].iter().take_while(|c| c.is_ascii_hexdigit()).count();
        if digits > 0 {
            let v = rest[2..2 + digits].iter().fold(0.0, |a, &c| a * 16.0 + f64::from((c as char).to_digit(16).unwrap_or(0)));
            return Some((i + 2 + digits, sign * v));
        }
    }
    let mut j = 0;
    let digits = rest.iter().take_while(|c| c.is_ascii_digit()).count();
    j += digits;
    let mut frac = 0;
    if rest.get(j) == Some(&b'.') {
        frac = rest[j + 1..].iter().take_while(|c| c.is_ascii_digit()).count();
        if digits + frac > 0 {
            j += 1 + frac;
        }
    }
    if digits + frac == 0 {
        return None;
    }
    if matches!(rest.get(j), Some(b'e' | b'E')) {
        let mut k = j + 1;
        if matches!(rest.get(k), Some(b'+' | b'-')) {
            k += 1;
        }
        let ed = rest[k..].iter().take_while(|c| c.is_ascii_digit()).count();
        if ed > 0 {
            j = k + ed;
        }
    }
    let text = std::str::from_utf8(&s[..i + j]).ok()?;
    let text = text.strip_prefix('+').unwrap_or(text);
    let v: f64 = if text.ends_with('.') || text.starts_with("-.") || text.starts_with('.') {
        format!("{}0", text).replace("-.", "-0.").parse().ok().or_else(|| text.trim_end_matches('.').parse().ok())?
    } else {
        text.parse().ok()?
    };
    Some((i + j, v))
}

impl Parser<'_> {
    fn at(&self, i: usize) -> u8 {
        // The text is a C string: it ends at its first NUL.
        self.data.get(i).copied().unwrap_or(0)
    }

    fn invalid_number(&self) -> bool {
        let mut p = self.pos;
        if self.at(p) == b'+' {
            return true;
        }
        if self.at(p) == b'-' {
            p += 1;
        }
        if self.at(p) == b'0' {
            let c2 = self.at(p + 1);
            return (c2 | 0x20) == b'x' || c2.is_ascii_digit();
        } else if self.at(p) <= b'9' {
            return false;
        }
        let rest: Vec<u8> = (0..3).map(|k| self.at(p + k).to_ascii_lowercase()).collect();
        rest == b"inf" || rest == b"nan"
    }

    fn number(&mut self) -> Tok {
        let end = (self.pos..).take_while(|&i| self.at(i) != 0).count();
        match strtod(&self.data[self.pos..self.pos + end]) {
            Some((n, v)) => {
                self.pos += n;
                Tok::Num(v)
            }
            None => Tok::Error("invalid number"),
        }
    }

    fn string(&mut self) -> Tok {
        self.pos += 1;
        self.text.clear();
        loop {
            let ch = self.at(self.pos);
            if ch == b'"' {
                break;
            }
            if ch == 0 {
                return Tok::Error("unexpected end of string");
            }
            if ch == b'\\' {
                let esc = match self.at(self.pos + 1) {
                    b'"' => b'"',
                    b'\\' => b'\\',
                    b'/' => b'/',
                    b'b' => 8,
                    b't' => b'\t',
                    b'n' => b'\n',
                    b'f' => 12,
                    b'r' => b'\r',
                    b'u' => {
                        if self.unicode_escape() {
                            continue;
                        }
                        return Tok::Error("invalid unicode escape code");
                    }
                    _ => return Tok::Error("invalid escape code"),
                };
                self.text.push(esc);
                self.pos += 2;
                continue;
            }
            self.text.push(ch);
            self.pos += 1;
        }
        self.pos += 1;
        Tok::Str
    }

    fn unicode_escape(&mut self) -> bool {
        let hex = |p: &Parser<'_>, at: usize| hex4(&(0..4).map(|k| p.at(at + k)).collect::<Vec<_>>());
        let Some(mut cp) = hex(self, self.pos + 2) else { return false };
        let mut len = 6;
        if cp & 0xF800 == 0xD800 {
            if cp & 0x400 != 0 {
                return false;
            }
            if self.at(self.pos + 6) != b'\\' || self.at(self.pos + 7) != b'u' {
                return false;
            }
            let Some(low) = hex(self, self.pos + 8) else { return false };
            if low & 0xFC00 != 0xDC00 {
                return false;
            }
            cp = (((cp & 0x3FF) << 10) | (low & 0x3FF)) + 0x10000;
            len = 12;
        }
        let mut buf = [0u8; 4];
        let n = match cp {
            0..=0x7F => {
                buf[0] = cp as u8;
                1
            }
            0x80..=0x7FF => {
                buf[0] = (cp >> 6) as u8 | 0xC0;
                buf[1] = (cp & 0x3F) as u8 | 0x80;
                2
            }
            0x800..=0xFFFF => {
                buf[0] = (cp >> 12) as u8 | 0xE0;
                buf[1] = ((cp >> 6) & 0x3F) as u8 | 0x80;
                buf[2] = (cp & 0x3F) as u8 | 0x80;
                3
            }
            _ => {
                buf[0] = (cp >> 18) as u8 | 0xF0;
                buf[1] = ((cp >> 12) & 0x3F) as u8 | 0x80;
                buf[2] = ((cp >> 6) & 0x3F) as u8 | 0x80;
                buf[3] = (cp & 0x3F) as u8 | 0x80;
                4
            }
        };
        self.text.extend_from_slice(&buf[..n]);
        self.pos += len;
        true
    }

    /// The next token and the index (0-based) where it starts.
    fn next(&mut self) -> (Tok, usize) {
        while matches!(self.at(self.pos), b' ' | b'\t' | b'\n' | b'\r') {
            self.pos += 1;
        }
        let start = self.pos;
        let ch = self.at(self.pos);
        let simple = match ch {
            b'{' => Some(Tok::ObjBegin),
            b'}' => Some(Tok::ObjEnd),
            b'[' => Some(Tok::ArrBegin),
            b']' => Some(Tok::ArrEnd),
            b',' => Some(Tok::Comma),
            b':' => Some(Tok::Colon),
            0 => return (Tok::End, start),
            _ => None,
        };
        if let Some(t) = simple {
            self.pos += 1;
            return (t, start);
        }
        if !matches!(ch, b'f' | b'i' | b'I' | b'n' | b'N' | b't' | b'"' | b'+' | b'-' | b'0'..=b'9') {
            return (Tok::Error("invalid token"), start);
        }
        let tok = if ch == b'"' {
            let t = self.string();
            if let Tok::Error(_) = t {
                return (t, self.pos);
            }
            t
        } else if ch == b'-' || ch.is_ascii_digit() {
            if self.cfg.decode_invalid_numbers == 0 && self.invalid_number() {
                return (Tok::Error("invalid number"), self.pos);
            }
            let t = self.number();
            if let Tok::Error(_) = t {
                return (t, self.pos);
            }
            t
        } else if self.data[self.pos..].starts_with(b"true") {
            self.pos += 4;
            Tok::Bool(true)
        } else if self.data[self.pos..].starts_with(b"false") {
            self.pos += 5;
            Tok::Bool(false)
        } else if self.data[self.pos..].starts_with(b"null") {
            self.pos += 4;
            Tok::Null
        } else if self.cfg.decode_invalid_numbers != 0 && self.invalid_number() {
            let t = self.number();
            if let Tok::Error(_) = t {
                return (t, self.pos);
            }
            t
        } else {
            return (Tok::Error("invalid token"), self.pos);
        };
        (tok, start)
    }
}

fn expected(what: &str, tok: (Tok, usize)) -> String {
    format!("Expected {what} but found {} at character {}", tok.0.name(), tok.1 + 1)
}

unsafe fn descend(l: *mut lua_State, p: &mut Parser<'_>, slots: c_int) -> Result<(), String> {
    p.depth += 1;
    if p.depth <= p.cfg.decode_max_depth && unsafe { ffi::lua_checkstack(l, slots) } != 0 {
        return Ok(());
    }
    Err(format!(
        "Found too many nested data structures ({}) at character {}",
        p.depth, p.pos
    ))
}

unsafe fn value(l: *mut lua_State, p: &mut Parser<'_>, tok: (Tok, usize)) -> Result<(), String> {
    unsafe {
        match tok.0 {
            Tok::Str => push_bytes(l, &p.text),
            Tok::Num(n) => ffi::lua_pushnumber(l, n),
            Tok::Bool(b) => ffi::lua_pushboolean(l, c_int::from(b)),
            Tok::Null => ffi::lua_pushlightuserdata(l, std::ptr::null_mut()),
            Tok::ObjBegin => {
                descend(l, p, 3)?;
                ffi::lua_createtable(l, 0, 0);
                let mut t = p.next();
                if t.0 == Tok::ObjEnd {
                    p.depth -= 1;
                    return Ok(());
                }
                loop {
                    if t.0 != Tok::Str {
                        return Err(expected("object key string", t));
                    }
                    push_bytes(l, &p.text);
                    let colon = p.next();
                    if colon.0 != Tok::Colon {
                        return Err(expected("colon", colon));
                    }
                    let v = p.next();
                    value(l, p, v)?;
                    ffi::lua_rawset(l, -3);
                    let sep = p.next();
                    if sep.0 == Tok::ObjEnd {
                        p.depth -= 1;
                        return Ok(());
                    }
                    if sep.0 != Tok::Comma {
                        return Err(expected("comma or object end", sep));
                    }
                    t = p.next();
                }
            }
            Tok::ArrBegin => {
                descend(l, p, 2)?;
                ffi::lua_createtable(l, 0, 0);
                let mut t = p.next();
                if t.0 == Tok::ArrEnd {
                    p.depth -= 1;
                    return Ok(());
                }
                let mut i = 1;
                loop {
                    value(l, p, t)?;
                    ffi::lua_rawseti_(l, -2, i);
                    i += 1;
                    let sep = p.next();
                    if sep.0 == Tok::ArrEnd {
                        p.depth -= 1;
                        return Ok(());
                    }
                    if sep.0 != Tok::Comma {
                        return Err(expected("comma or array end", sep));
                    }
                    t = p.next();
                }
            }
            _ => Err(expected("value", tok))?,
        }
        Ok(())
    }
}

unsafe extern "C-unwind" fn decode(l: *mut lua_State) -> c_int {
    unsafe {
        let r = (|| {
            if ffi::lua_gettop(l) != 1 {
                return Err(lua::arg_error(1, "decode", "expected 1 argument"));
            }
            let data = lua::check_bytes(l, 1, "decode")?;
            if data.len() >= 2 && (data[0] == 0 || data[1] == 0) {
                return Err("JSON parser does not support UTF-16 or UTF-32".to_string());
            }
            let mut p = Parser { data, pos: 0, depth: 0, cfg: *config(l), text: Vec::new() };
            let t = p.next();
            value(l, &mut p, t)?;
            let end = p.next();
            if end.0 != Tok::End {
                return Err(expected("the end", end));
            }
            Ok(())
        })();
        match r {
            Ok(()) => 1,
            Err(e) => lua::raise_msg(l, e),
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

unsafe fn int_option(l: *mut lua_State, idx: c_int, setting: &mut c_int, min: c_int, max: c_int, fname: &str) -> Result<(), String> {
    unsafe {
        if ffi::lua_type(l, idx) != ffi::LUA_TNIL {
            let v = lua::check_number(l, idx, fname)? as i64;
            if v < i64::from(min) || v > i64::from(max) {
                return Err(lua::arg_error(1, fname, &format!("expected integer between {min} and {max}")));
            }
            *setting = v as c_int;
        }
        ffi::lua_pushnumber(l, f64::from(*setting));
        Ok(())
    }
}

unsafe fn enum_option(l: *mut lua_State, idx: c_int, setting: &mut c_int, options: &[&str], bool_true: c_int, fname: &str) -> Result<(), String> {
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
    enum_option(l, 1, &mut cfg.sparse_convert, &ONOFF, 1, "encode_sparse_array")?;
    int_option(l, 2, &mut cfg.sparse_ratio, 0, c_int::MAX, "encode_sparse_array")?;
    int_option(l, 3, &mut cfg.sparse_safe, 0, c_int::MAX, "encode_sparse_array")?;
    Ok(3)
});
cfg_fn!(cfg_encode_depth, "encode_max_depth", 1, |l, cfg| {
    int_option(l, 1, &mut cfg.encode_max_depth, 1, c_int::MAX, "encode_max_depth")?;
    Ok(1)
});
cfg_fn!(cfg_decode_depth, "decode_max_depth", 1, |l, cfg| {
    int_option(l, 1, &mut cfg.decode_max_depth, 1, c_int::MAX, "decode_max_depth")?;
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
    enum_option(l, 1, &mut cfg.encode_invalid_numbers, &["off", "on", "null"], 1, "encode_invalid_numbers")?;
    Ok(1)
});
cfg_fn!(cfg_decode_invalid, "decode_invalid_numbers", 1, |l, cfg| {
    enum_option(l, 1, &mut cfg.decode_invalid_numbers, &ONOFF, 1, "decode_invalid_numbers")?;
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
            (c"decode", decode),
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
