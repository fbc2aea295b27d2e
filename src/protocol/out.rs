//! Replies shardis writes itself, in the protocol each client speaks: RESP2 until the client
//! sends `HELLO 3`, RESP3 after. Where RESP3 has its own type (null, map, set, push, double,
//! boolean, verbatim string), RESP2 gets what Redis sends a RESP2 client instead.

use bytes::{BufMut, BytesMut};

use super::reply::{put_array_len, put_bulk, put_error, put_integer, put_simple};
use super::request::put_int;

/// The RESP version a client speaks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Proto {
    #[default]
    Resp2,
    Resp3,
}

impl Proto {
    /// 2 or 3, as HELLO names them.
    pub fn version(self) -> i64 {
        match self {
            Proto::Resp2 => 2,
            Proto::Resp3 => 3,
        }
    }

    /// Index for per-protocol tables (0 for RESP2, 1 for RESP3).
    pub fn index(self) -> usize {
        self as usize
    }
}

/// Writes reply frames into a buffer in one protocol.
pub struct Out<'a> {
    pub buf: &'a mut BytesMut,
    pub proto: Proto,
}

impl<'a> Out<'a> {
    pub fn new(buf: &'a mut BytesMut, proto: Proto) -> Self {
        Out { buf, proto }
    }

    pub fn simple(&mut self, s: &str) {
        put_simple(self.buf, s)
    }

    pub fn error(&mut self, msg: &str) {
        put_error(self.buf, msg)
    }

    pub fn integer(&mut self, n: i64) {
        put_integer(self.buf, n)
    }

    pub fn bulk(&mut self, data: &[u8]) {
        put_bulk(self.buf, data)
    }

    /// A missing value: `$-1` in RESP2, `_` in RESP3.
    pub fn null(&mut self) {
        self.buf.extend_from_slice(match self.proto {
            Proto::Resp2 => b"$-1\r\n",
            Proto::Resp3 => b"_\r\n",
        })
    }

    /// A missing array: `*-1` in RESP2, `_` in RESP3.
    pub fn null_array(&mut self) {
        self.buf.extend_from_slice(match self.proto {
            Proto::Resp2 => b"*-1\r\n",
            Proto::Resp3 => b"_\r\n",
        })
    }

    pub fn array(&mut self, n: usize) {
        put_array_len(self.buf, n)
    }

    /// A map of `n` pairs: `%n` in RESP3, an array of `2n` in RESP2.
    pub fn map(&mut self, n: usize) {
        self.header(b'%', n, 2)
    }

    /// A set: `~n` in RESP3, an array in RESP2.
    pub fn set(&mut self, n: usize) {
        self.header(b'~', n, 1)
    }

    /// Out-of-band data (pub/sub messages): `>n` in RESP3, an array in RESP2.
    pub fn push(&mut self, n: usize) {
        self.header(b'>', n, 1)
    }

    /// A double: `,x` in RESP3, a bulk string in RESP2 (as Redis formats both).
    pub fn double(&mut self, x: f64) {
        let text = format_double(x);
        match self.proto {
            Proto::Resp2 => put_bulk(self.buf, text.as_bytes()),
            Proto::Resp3 => {
                self.buf.put_u8(b',');
                self.buf.extend_from_slice(text.as_bytes());
                self.buf.extend_from_slice(b"\r\n");
            }
        }
    }

    /// A boolean: `#t`/`#f` in RESP3, `:1`/`:0` in RESP2.
    pub fn boolean(&mut self, b: bool) {
        match self.proto {
            Proto::Resp2 => put_integer(self.buf, b as i64),
            Proto::Resp3 => self
                .buf
                .extend_from_slice(if b { b"#t\r\n" } else { b"#f\r\n" }),
        }
    }

    /// Text such as INFO's: a verbatim string of format `txt` in RESP3, a bulk string in RESP2.
    pub fn verbatim(&mut self, text: &[u8]) {
        match self.proto {
            Proto::Resp2 => put_bulk(self.buf, text),
            Proto::Resp3 => {
                self.buf.put_u8(b'=');
                put_int(self.buf, text.len() as i64 + 4);
                self.buf.extend_from_slice(b"txt:");
                self.buf.extend_from_slice(text);
                self.buf.extend_from_slice(b"\r\n");
            }
        }
    }

    fn header(&mut self, resp3: u8, n: usize, resp2_per_entry: usize) {
        match self.proto {
            Proto::Resp2 => put_array_len(self.buf, n * resp2_per_entry),
            Proto::Resp3 => {
                self.buf.put_u8(resp3);
                put_int(self.buf, n as i64);
            }
        }
    }
}

/// A double as Redis writes it: `inf`, `-inf`, `nan`, integers without a fraction, and
/// otherwise the shortest text that reads back as the same number.
pub fn format_double(x: f64) -> String {
    if x.is_nan() {
        "nan".into()
    } else if x.is_infinite() {
        if x > 0.0 { "inf".into() } else { "-inf".into() }
    } else {
        format!("{x}")
    }
}

/// Rewrites a RESP3 push frame as the array a RESP2 client gets (the elements of pub/sub
/// messages are the same in both; only the type byte differs). Other frames are unchanged.
pub fn push_as_array(frame: &mut [u8]) {
    if let Some(first) = frame.first_mut()
        && *first == b'>'
    {
        *first = b'*';
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn both(f: impl Fn(&mut Out)) -> (String, String) {
        let mut a = BytesMut::new();
        f(&mut Out::new(&mut a, Proto::Resp2));
        let mut b = BytesMut::new();
        f(&mut Out::new(&mut b, Proto::Resp3));
        (
            String::from_utf8(a.to_vec()).unwrap(),
            String::from_utf8(b.to_vec()).unwrap(),
        )
    }

    #[test]
    fn each_type_in_both_protocols() {
        assert_eq!(both(|o| o.null()), ("$-1\r\n".into(), "_\r\n".into()));
        assert_eq!(both(|o| o.null_array()), ("*-1\r\n".into(), "_\r\n".into()));
        assert_eq!(both(|o| o.map(2)), ("*4\r\n".into(), "%2\r\n".into()));
        assert_eq!(both(|o| o.set(3)), ("*3\r\n".into(), "~3\r\n".into()));
        assert_eq!(both(|o| o.push(3)), ("*3\r\n".into(), ">3\r\n".into()));
        assert_eq!(
            both(|o| o.boolean(true)),
            (":1\r\n".into(), "#t\r\n".into())
        );
        assert_eq!(
            both(|o| o.double(1.5)),
            ("$3\r\n1.5\r\n".into(), ",1.5\r\n".into())
        );
        assert_eq!(
            both(|o| o.verbatim(b"a:1")),
            ("$3\r\na:1\r\n".into(), "=7\r\ntxt:a:1\r\n".into())
        );
        assert_eq!(format_double(f64::INFINITY), "inf");
        assert_eq!(format_double(3.0), "3");
        let mut frame = b">2\r\n:1\r\n:2\r\n".to_vec();
        push_as_array(&mut frame);
        assert_eq!(frame, b"*2\r\n:1\r\n:2\r\n");
    }
}
