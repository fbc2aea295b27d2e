//! Backend reply framing and client reply encoding.
//!
//! [`ReplyScanner`] finds where each RESP2 reply ends without building it: it keeps a stack of
//! array counts instead of recursing, resumes where it stopped, and allocates nothing once warm,
//! so a large array reply that arrives in many reads is scanned once. The bytes are then passed
//! to the client untouched. Replies that must be taken apart (MGET fan-out) are decoded with
//! `redis_protocol`, see [`array_elements`].

use std::ops::Range;

use bytes::{BufMut, BytesMut};
use redis_protocol::resp2::{decode::decode_range, types::RangeFrame};

use super::ProtocolError;
use super::request::{find_crlf, parse_int, put_int};

/// Incremental reply framer; one per backend connection.
#[derive(Debug, Default)]
pub struct ReplyScanner {
    pos: usize,
    /// Elements still expected by each open array, innermost last.
    stack: Vec<i64>,
}

impl ReplyScanner {
    pub fn new() -> Self {
        Self::default()
    }

    /// Length of the complete reply at the start of `buf`, or `None` if more bytes are needed.
    /// Between calls that return `None`, `buf` must only grow; after `Some`, the caller removes
    /// that many bytes from the front and the scanner starts afresh.
    pub fn scan(&mut self, buf: &[u8]) -> Result<Option<usize>, ProtocolError> {
        loop {
            let Some(&kind) = buf.get(self.pos) else {
                return Ok(None);
            };
            let Some(line_end) = find_crlf(buf, self.pos + 1) else {
                return Ok(None);
            };
            match kind {
                b'+' | b'-' | b':' => self.pos = line_end + 2,
                b'$' => {
                    let len = parse_int(&buf[self.pos + 1..line_end])
                        .ok_or(ProtocolError::InvalidBulkLength)?;
                    if len < 0 {
                        self.pos = line_end + 2;
                    } else {
                        let end = line_end + 2 + len as usize + 2;
                        if buf.len() < end {
                            return Ok(None);
                        }
                        self.pos = end;
                    }
                }
                b'*' => {
                    let count = parse_int(&buf[self.pos + 1..line_end])
                        .ok_or(ProtocolError::InvalidMultibulkLength)?;
                    self.pos = line_end + 2;
                    if count > 0 {
                        self.stack.push(count);
                        continue;
                    }
                }
                other => return Err(ProtocolError::UnexpectedReply(other as char)),
            }
            // One element is complete: close every array it completes.
            loop {
                match self.stack.last_mut() {
                    None => {
                        let len = self.pos;
                        self.pos = 0;
                        return Ok(Some(len));
                    }
                    Some(left) => {
                        *left -= 1;
                        if *left > 0 {
                            break;
                        }
                        self.stack.pop();
                    }
                }
            }
        }
    }
}

/// Whether a complete reply is an error reply.
#[inline]
pub fn is_error(reply: &[u8]) -> bool {
    reply.first() == Some(&b'-')
}

/// The value of an integer reply (`:N\r\n`).
pub fn integer_value(reply: &[u8]) -> Option<i64> {
    let rest = reply.strip_prefix(b":")?;
    parse_int(rest.strip_suffix(b"\r\n")?)
}

/// One element of an array reply, as raw bytes or decoded.
#[derive(Debug, PartialEq, Eq)]
pub enum Element {
    Bulk(Range<usize>),
    Null,
    /// Any other element kind, re-encoded as an error because MGET never returns one.
    Other,
}

/// Decodes a complete array reply (as MGET returns) into its elements, with `redis_protocol`.
/// Returns `None` if the reply is not an array.
pub fn array_elements(reply: &[u8]) -> Option<Vec<Element>> {
    match decode_range(reply) {
        Ok(Some((RangeFrame::Array(items), _))) => Some(
            items
                .into_iter()
                .map(|item| match item {
                    RangeFrame::BulkString((start, end)) => Element::Bulk(start..end),
                    RangeFrame::Null => Element::Null,
                    _ => Element::Other,
                })
                .collect(),
        ),
        _ => None,
    }
}

/// Appends `+s\r\n`.
pub fn put_simple(out: &mut BytesMut, s: &str) {
    out.put_u8(b'+');
    out.extend_from_slice(s.as_bytes());
    out.extend_from_slice(b"\r\n");
}

/// Appends `-msg\r\n`; CR and LF in `msg` become spaces so the frame stays valid.
pub fn put_error(out: &mut BytesMut, msg: &str) {
    out.put_u8(b'-');
    out.extend(
        msg.bytes()
            .map(|b| if b == b'\r' || b == b'\n' { b' ' } else { b }),
    );
    out.extend_from_slice(b"\r\n");
}

/// Appends `:n\r\n`.
pub fn put_integer(out: &mut BytesMut, n: i64) {
    out.put_u8(b':');
    put_int(out, n);
}

/// Appends a bulk string.
pub fn put_bulk(out: &mut BytesMut, data: &[u8]) {
    out.put_u8(b'$');
    put_int(out, data.len() as i64);
    out.extend_from_slice(data);
    out.extend_from_slice(b"\r\n");
}

/// Appends a null bulk string.
pub fn put_null(out: &mut BytesMut) {
    out.extend_from_slice(b"$-1\r\n");
}

/// Appends an array header for `n` elements.
pub fn put_array_len(out: &mut BytesMut, n: usize) {
    out.put_u8(b'*');
    put_int(out, n as i64);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scan_all(input: &[u8]) -> Vec<usize> {
        let mut s = ReplyScanner::new();
        let mut buf = input.to_vec();
        let mut out = vec![];
        while let Some(n) = s.scan(&buf).unwrap() {
            out.push(n);
            buf.drain(..n);
        }
        assert!(buf.is_empty(), "left over {buf:?}");
        out
    }

    #[test]
    fn frames_of_every_kind() {
        let input = b"+OK\r\n-ERR x\r\n:12\r\n$3\r\nabc\r\n$-1\r\n*-1\r\n*0\r\n*2\r\n$1\r\na\r\n*2\r\n:1\r\n$0\r\n\r\n";
        assert_eq!(scan_all(input), vec![5, 8, 5, 9, 5, 5, 4, 25]);
    }

    #[test]
    fn resumes_byte_by_byte_and_agrees_with_redis_protocol() {
        let input: &[u8] = b"*4\r\n$3\r\nfoo\r\n*1\r\n$-1\r\n:7\r\n$4\r\n\r\n\r\n\r\n";
        let mut s = ReplyScanner::new();
        for n in 0..input.len() {
            assert_eq!(s.scan(&input[..n]).unwrap(), None, "at {n}");
        }
        let len = s.scan(input).unwrap().unwrap();
        let (_, expected) = decode_range(input).unwrap().unwrap();
        assert_eq!(len, expected);
    }

    #[test]
    fn rejects_garbage() {
        assert!(ReplyScanner::new().scan(b"?x\r\n").is_err());
        assert!(ReplyScanner::new().scan(b"$x\r\n").is_err());
    }

    #[test]
    fn mget_elements() {
        let reply = b"*3\r\n$1\r\na\r\n$-1\r\n:3\r\n";
        let els = array_elements(reply).unwrap();
        assert_eq!(
            els,
            vec![Element::Bulk(8..9), Element::Null, Element::Other]
        );
        assert!(array_elements(b"-ERR no\r\n").is_none());
    }

    #[test]
    fn integers_and_errors() {
        assert_eq!(integer_value(b":42\r\n"), Some(42));
        assert_eq!(integer_value(b"+OK\r\n"), None);
        assert!(is_error(b"-ERR\r\n"));
        let mut out = BytesMut::new();
        put_error(&mut out, "bad\r\nthing");
        assert_eq!(&out[..], b"-bad  thing\r\n");
    }
}
