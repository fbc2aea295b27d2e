//! `cjson.decode`: Lua CJSON's tokenizer and parser, with its error texts.

use std::ffi::c_int;

use super::super::super::lua::{self, ffi, lua_State, push_bytes};
use super::{Config, config};

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
        let digits = rest[2..]
            .iter()
            .take_while(|c| c.is_ascii_hexdigit())
            .count();
        if digits > 0 {
            let v = rest[2..2 + digits].iter().fold(0.0, |a, &c| {
                a * 16.0 + f64::from((c as char).to_digit(16).unwrap_or(0))
            });
            return Some((i + 2 + digits, sign * v));
        }
    }
    let mut j = 0;
    let digits = rest.iter().take_while(|c| c.is_ascii_digit()).count();
    j += digits;
    let mut frac = 0;
    if rest.get(j) == Some(&b'.') {
        frac = rest[j + 1..]
            .iter()
            .take_while(|c| c.is_ascii_digit())
            .count();
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
        format!("{}0", text)
            .replace("-.", "-0.")
            .parse()
            .ok()
            .or_else(|| text.trim_end_matches('.').parse().ok())?
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
        let rest: Vec<u8> = (0..3)
            .map(|k| self.at(p + k).to_ascii_lowercase())
            .collect();
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
        let hex =
            |p: &Parser<'_>, at: usize| hex4(&(0..4).map(|k| p.at(at + k)).collect::<Vec<_>>());
        let Some(mut cp) = hex(self, self.pos + 2) else {
            return false;
        };
        let mut len = 6;
        if cp & 0xF800 == 0xD800 {
            if cp & 0x400 != 0 {
                return false;
            }
            if self.at(self.pos + 6) != b'\\' || self.at(self.pos + 7) != b'u' {
                return false;
            }
            let Some(low) = hex(self, self.pos + 8) else {
                return false;
            };
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
        if !matches!(
            ch,
            b'f' | b'i' | b'I' | b'n' | b'N' | b't' | b'"' | b'+' | b'-' | b'0'..=b'9'
        ) {
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
    format!(
        "Expected {what} but found {} at character {}",
        tok.0.name(),
        tok.1 + 1
    )
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

pub(super) unsafe extern "C-unwind" fn decode(l: *mut lua_State) -> c_int {
    unsafe {
        let r = (|| {
            if ffi::lua_gettop(l) != 1 {
                return Err(lua::arg_error(1, "decode", "expected 1 argument"));
            }
            let data = lua::check_bytes(l, 1, "decode")?;
            if data.len() >= 2 && (data[0] == 0 || data[1] == 0) {
                return Err("JSON parser does not support UTF-16 or UTF-32".to_string());
            }
            let mut p = Parser {
                data,
                pos: 0,
                depth: 0,
                cfg: *config(l),
                text: Vec::new(),
            };
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
