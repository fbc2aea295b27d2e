//! The `struct` library (Roberto Ierusalimschy's struct 0.2 as Redis ships it): binary
//! packing with `struct.pack`, `struct.unpack` and `struct.size`.

use std::ffi::c_int;

use super::super::lua::{self, ffi, lua_State};

const MAXINTSIZE: usize = 32;
/// Largest alignment `!` takes without a number: max(padding of a double, sizeof(int)).
const MAXALIGN: usize = 8;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Endian {
    Big,
    Little,
}

struct Header {
    endian: Endian,
    align: usize,
}

impl Header {
    fn new() -> Header {
        Header {
            endian: Endian::Little,
            align: 1,
        }
    }
}

/// The format as a cursor.
struct Fmt<'a> {
    s: &'a [u8],
    pos: usize,
}

impl Fmt<'_> {
    fn next(&mut self) -> Option<u8> {
        // The format ends at its first NUL, as a C string does.
        let c = *self.s.get(self.pos)?;
        if c == 0 {
            return None;
        }
        self.pos += 1;
        Some(c)
    }

    fn num(&mut self, default: usize) -> Result<usize, String> {
        if !self.s.get(self.pos).is_some_and(u8::is_ascii_digit) {
            return Ok(default);
        }
        let mut a: usize = 0;
        while let Some(d) = self.s.get(self.pos).filter(|c| c.is_ascii_digit()) {
            let d = usize::from(d - b'0');
            if a > (i32::MAX as usize) / 10 || a * 10 > (i32::MAX as usize) - d {
                return Err("integral size overflow".into());
            }
            a = a * 10 + d;
            self.pos += 1;
        }
        Ok(a)
    }
}

fn optsize(opt: u8, fmt: &mut Fmt<'_>) -> Result<usize, String> {
    Ok(match opt {
        b'B' | b'b' => 1,
        b'H' | b'h' => 2,
        b'L' | b'l' | b'T' => 8,
        b'f' => 4,
        b'd' => 8,
        b'x' => 1,
        b'c' => fmt.num(1)?,
        b'i' | b'I' => {
            let sz = fmt.num(4)?;
            if sz > MAXINTSIZE {
                return Err(format!(
                    "integral size {sz} is larger than limit of {MAXINTSIZE}"
                ));
            }
            sz
        }
        _ => 0,
    })
}

fn toalign(len: usize, h: &Header, opt: u8, size: usize) -> usize {
    if size == 0 || opt == b'c' {
        return 0;
    }
    let size = size.min(h.align);
    (size - (len & (size - 1))) & (size - 1)
}

fn control(opt: u8, fmt: &mut Fmt<'_>, h: &mut Header, fname: &str) -> Result<(), String> {
    match opt {
        b' ' => Ok(()),
        b'>' => {
            h.endian = Endian::Big;
            Ok(())
        }
        b'<' => {
            h.endian = Endian::Little;
            Ok(())
        }
        b'!' => {
            let a = fmt.num(MAXALIGN)?;
            if a == 0 || a & (a - 1) != 0 {
                return Err(format!("alignment {a} is not a power of 2"));
            }
            h.align = a;
            Ok(())
        }
        _ => Err(lua::arg_error(
            1,
            fname,
            &format!("invalid format option '{}'", opt as char),
        )),
    }
}

fn put_int(out: &mut Vec<u8>, n: f64, endian: Endian, size: usize) {
    let mut value: u64 = if n < 0.0 { n as i64 as u64 } else { n as u64 };
    let mut buf = [0u8; MAXINTSIZE];
    match endian {
        Endian::Little => {
            for b in buf.iter_mut().take(size) {
                *b = value as u8;
                value = value.checked_shr(8).unwrap_or(0);
            }
        }
        Endian::Big => {
            for b in buf[..size].iter_mut().rev() {
                *b = value as u8;
                value = value.checked_shr(8).unwrap_or(0);
            }
        }
    }
    out.extend_from_slice(&buf[..size]);
}

fn get_int(data: &[u8], endian: Endian, signed: bool, size: usize) -> f64 {
    let mut v: u64 = 0;
    let mut add = |b: u8| v = (v << 8) | u64::from(b);
    match endian {
        Endian::Big => data[..size].iter().for_each(|&b| add(b)),
        Endian::Little => data[..size].iter().rev().for_each(|&b| add(b)),
    }
    if !signed {
        return v as f64;
    }
    let mask = u64::MAX.wrapping_shl((size * 8).wrapping_sub(1) as u32);
    if v & mask != 0 {
        v |= mask;
    }
    v as i64 as f64
}

unsafe fn pack(l: *mut lua_State) -> Result<Vec<u8>, String> {
    unsafe {
        let f = lua::check_bytes(l, 1, "pack")?;
        // struct 0.2 pushes a nil to mark the end of the arguments: a missing one reads
        // as nil.
        ffi::lua_pushnil(l);
        let mut fmt = Fmt { s: f, pos: 0 };
        let mut h = Header::new();
        let mut arg = 2;
        let mut out = Vec::new();
        while let Some(opt) = fmt.next() {
            let mut size = optsize(opt, &mut fmt)?;
            let pad = toalign(out.len(), &h, opt, size);
            out.resize(out.len() + pad, 0);
            match opt {
                b'b' | b'B' | b'h' | b'H' | b'l' | b'L' | b'T' | b'i' | b'I' => {
                    let n = lua::check_number(l, arg, "pack")?;
                    arg += 1;
                    put_int(&mut out, n, h.endian, size);
                }
                b'x' => out.push(0),
                b'f' => {
                    let v = lua::check_number(l, arg, "pack")? as f32;
                    arg += 1;
                    out.extend_from_slice(&match h.endian {
                        Endian::Big => v.to_be_bytes(),
                        Endian::Little => v.to_le_bytes(),
                    });
                }
                b'd' => {
                    let v = lua::check_number(l, arg, "pack")?;
                    arg += 1;
                    out.extend_from_slice(&match h.endian {
                        Endian::Big => v.to_be_bytes(),
                        Endian::Little => v.to_le_bytes(),
                    });
                }
                b'c' | b's' => {
                    let s = lua::check_bytes(l, arg, "pack")?;
                    arg += 1;
                    if size == 0 {
                        size = s.len();
                    }
                    if s.len() < size {
                        return Err(lua::arg_error(arg, "pack", "string too short"));
                    }
                    out.extend_from_slice(&s[..size]);
                    if opt == b's' {
                        out.push(0);
                    }
                }
                _ => control(opt, &mut fmt, &mut h, "pack")?,
            }
        }
        Ok(out)
    }
}

unsafe extern "C-unwind" fn b_pack(l: *mut lua_State) -> c_int {
    unsafe {
        match pack(l) {
            Ok(out) => {
                lua::push_bytes(l, &out);
                drop(out);
                1
            }
            Err(e) => lua::raise_msg(l, e),
        }
    }
}

unsafe fn unpack(l: *mut lua_State) -> Result<c_int, String> {
    unsafe {
        let f = lua::check_bytes(l, 1, "unpack")?;
        let data = lua::check_bytes(l, 2, "unpack")?;
        let start = if ffi::lua_type(l, 3) <= ffi::LUA_TNIL {
            1
        } else {
            lua::check_number(l, 3, "unpack")? as i64
        };
        if start <= 0 {
            return Err(lua::arg_error(3, "unpack", "offset must be 1 or greater"));
        }
        let mut pos = (start - 1) as usize;
        let ld = data.len();
        let mut fmt = Fmt { s: f, pos: 0 };
        let mut h = Header::new();
        let mut n: c_int = 0;
        let too_short = || lua::arg_error(2, "unpack", "data string too short");
        while let Some(opt) = fmt.next() {
            let mut size = optsize(opt, &mut fmt)?;
            pos += toalign(pos, &h, opt, size);
            if !(size <= ld && pos <= ld - size) {
                return Err(too_short());
            }
            if ffi::lua_checkstack(l, 2) == 0 {
                return Err("stack overflow (too many results)".into());
            }
            match opt {
                b'b' | b'B' | b'h' | b'H' | b'l' | b'L' | b'T' | b'i' | b'I' => {
                    let v = get_int(&data[pos..], h.endian, opt.is_ascii_lowercase(), size);
                    ffi::lua_pushnumber(l, v);
                    n += 1;
                }
                b'x' => {}
                b'f' => {
                    let mut b = [0u8; 4];
                    b.copy_from_slice(&data[pos..pos + 4]);
                    let v = match h.endian {
                        Endian::Big => f32::from_be_bytes(b),
                        Endian::Little => f32::from_le_bytes(b),
                    };
                    ffi::lua_pushnumber(l, f64::from(v));
                    n += 1;
                }
                b'd' => {
                    let mut b = [0u8; 8];
                    b.copy_from_slice(&data[pos..pos + 8]);
                    let v = match h.endian {
                        Endian::Big => f64::from_be_bytes(b),
                        Endian::Little => f64::from_le_bytes(b),
                    };
                    ffi::lua_pushnumber(l, v);
                    n += 1;
                }
                b'c' => {
                    if size == 0 {
                        if n == 0 || ffi::lua_isnumber(l, -1) == 0 {
                            return Err("format 'c0' needs a previous size".into());
                        }
                        size = ffi::lua_tonumber(l, -1) as usize;
                        ffi::lua_pop(l, 1);
                        n -= 1;
                        if !(size <= ld && pos <= ld - size) {
                            return Err(too_short());
                        }
                    }
                    lua::push_bytes(l, &data[pos..pos + size]);
                    n += 1;
                }
                b's' => {
                    let Some(e) = data[pos..].iter().position(|&b| b == 0) else {
                        return Err("unfinished string in data".into());
                    };
                    size = e + 1;
                    lua::push_bytes(l, &data[pos..pos + e]);
                    n += 1;
                }
                _ => control(opt, &mut fmt, &mut h, "unpack")?,
            }
            pos += size;
        }
        ffi::lua_pushnumber(l, (pos + 1) as f64);
        Ok(n + 1)
    }
}

unsafe extern "C-unwind" fn b_unpack(l: *mut lua_State) -> c_int {
    unsafe {
        match unpack(l) {
            Ok(n) => n,
            Err(e) => lua::raise_msg(l, e),
        }
    }
}

unsafe fn size(l: *mut lua_State) -> Result<usize, String> {
    unsafe {
        let f = lua::check_bytes(l, 1, "size")?;
        let mut fmt = Fmt { s: f, pos: 0 };
        let mut h = Header::new();
        let mut pos = 0;
        while let Some(opt) = fmt.next() {
            let size = optsize(opt, &mut fmt)?;
            pos += toalign(pos, &h, opt, size);
            if opt == b's' {
                return Err(lua::arg_error(1, "size", "option 's' has no fixed size"));
            } else if opt == b'c' && size == 0 {
                return Err(lua::arg_error(1, "size", "option 'c0' has no fixed size"));
            }
            if !opt.is_ascii_alphanumeric() {
                control(opt, &mut fmt, &mut h, "size")?;
            }
            pos += size;
        }
        Ok(pos)
    }
}

unsafe extern "C-unwind" fn b_size(l: *mut lua_State) -> c_int {
    unsafe {
        match size(l) {
            Ok(n) => {
                ffi::lua_pushnumber(l, n as f64);
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
                (c"pack", b_pack as lua::CFn),
                (c"unpack", b_unpack),
                (c"size", b_size),
            ],
        );
    }
}
