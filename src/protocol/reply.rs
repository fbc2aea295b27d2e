//! Backend reply framing and client reply encoding.
//!
//! [`ReplyScanner`] finds where each RESP2 or RESP3 reply ends without building it: it keeps a stack of
//! array counts instead of recursing, resumes where it stopped, and allocates nothing once warm,
//! so a large array reply that arrives in many reads is scanned once. The bytes are then passed
//! to the client untouched. Replies that must be taken apart (MGET fan-out) are split with the
//! same scanner, see [`array_elements`]; the few decoded with `redis_protocol` (pub/sub pushes,
//! handshakes) are first checked to nest at most [`MAX_DECODE_DEPTH`] levels.

use std::ops::Range;

use bytes::{BufMut, BytesMut};

use super::ProtocolError;
use super::request::{find_crlf, parse_int, put_int};

/// Incremental reply framer; one per backend connection. Understands RESP2 and RESP3: maps,
/// sets, pushes and attributes are aggregates; nulls, booleans, doubles, big numbers, blob
/// errors and verbatim strings are values. An attribute (`|`) belongs to the value after it.
#[derive(Debug)]
pub struct ReplyScanner {
    pos: usize,
    /// Open aggregates, innermost last.
    stack: Vec<Open>,
    /// Most aggregates open at once before the reply is refused as [`ProtocolError::TooDeep`].
    depth_limit: usize,
}

impl Default for ReplyScanner {
    fn default() -> Self {
        Self::new()
    }
}

/// One open aggregate: elements still expected, and whether it is an attribute (which does
/// not count as an element of its parent: the value that follows it does).
#[derive(Debug, Clone, Copy)]
struct Open {
    left: i64,
    attribute: bool,
}

impl ReplyScanner {
    /// A scanner for replies passed through untouched: any nesting, held on the heap.
    pub fn new() -> Self {
        Self::with_depth_limit(usize::MAX)
    }

    /// A scanner that refuses replies nesting more than `limit` aggregates.
    pub fn with_depth_limit(limit: usize) -> Self {
        Self {
            pos: 0,
            stack: Vec::new(),
            depth_limit: limit,
        }
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
                b'+' | b'-' | b':' | b'_' | b'#' | b',' | b'(' => self.pos = line_end + 2,
                b'$' | b'!' | b'=' => {
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
                b'*' | b'%' | b'~' | b'>' | b'|' => {
                    let count = parse_int(&buf[self.pos + 1..line_end])
                        .ok_or(ProtocolError::InvalidMultibulkLength)?;
                    self.pos = line_end + 2;
                    let per_entry = if matches!(kind, b'%' | b'|') { 2 } else { 1 };
                    let attribute = kind == b'|';
                    if count > 0 {
                        if self.stack.len() >= self.depth_limit {
                            return Err(ProtocolError::TooDeep(self.depth_limit));
                        }
                        let left = count
                            .checked_mul(per_entry)
                            .ok_or(ProtocolError::InvalidMultibulkLength)?;
                        self.stack.push(Open { left, attribute });
                        continue;
                    }
                    if attribute {
                        // An empty attribute: the value it annotates comes next.
                        continue;
                    }
                }
                other => return Err(ProtocolError::UnexpectedReply(other as char)),
            }
            // One element is complete: close every aggregate it completes.
            loop {
                match self.stack.last_mut() {
                    None => {
                        let len = self.pos;
                        self.pos = 0;
                        return Ok(Some(len));
                    }
                    Some(open) => {
                        open.left -= 1;
                        if open.left > 0 {
                            break;
                        }
                        let attribute = open.attribute;
                        self.stack.pop();
                        if attribute {
                            // A complete attribute is not an element: its value follows.
                            break;
                        }
                    }
                }
            }
        }
    }
}

/// Whether a complete reply is a RESP3 push (out-of-band data, not the answer to a request).
#[inline]
pub fn is_push(reply: &[u8]) -> bool {
    reply.first() == Some(&b'>')
}

/// The length of each reply in `frames`, a run of complete replies.
pub fn split_replies(frames: &[u8]) -> impl Iterator<Item = std::ops::Range<usize>> + '_ {
    let mut at = 0;
    let mut scanner = ReplyScanner::new();
    std::iter::from_fn(move || {
        let len = scanner.scan(&frames[at..]).ok()??;
        let range = at..at + len;
        at += len;
        Some(range)
    })
}

/// Whether a complete reply is an error reply (simple or, in RESP3, blob).
#[inline]
pub fn is_error(reply: &[u8]) -> bool {
    matches!(reply.first(), Some(b'-' | b'!'))
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

/// Aggregates a reply that shardis decodes (a pub/sub push, a handshake reply) may nest:
/// `redis_protocol` recurses once per level, so a hostile backend's deeply nested reply must
/// be refused before it is decoded, not overflow a worker's stack.
pub const MAX_DECODE_DEPTH: usize = 32;

/// Whether the complete reply at the start of `reply` nests at most [`MAX_DECODE_DEPTH`]
/// aggregates (checked without recursion).
pub fn decodable(reply: &[u8]) -> bool {
    matches!(
        ReplyScanner::with_depth_limit(MAX_DECODE_DEPTH).scan(reply),
        Ok(Some(_))
    )
}

/// Takes a complete array reply (as MGET returns, `*N` in RESP2 or RESP3) apart into its
/// elements, without recursion: a nested element is measured by the scanner and counts as
/// [`Element::Other`]. Returns `None` if the reply is not a whole array.
pub fn array_elements(reply: &[u8]) -> Option<Vec<Element>> {
    if reply.first() != Some(&b'*') {
        return None;
    }
    let (n, start) = aggregate(reply)?;
    let mut out = Vec::with_capacity(n.min(reply.len() / 3));
    let mut at = start;
    let mut scanner = ReplyScanner::new();
    while out.len() < n {
        let len = scanner.scan(reply.get(at..)?).ok()??;
        let item = &reply[at..at + len];
        let element = match item[0] {
            _ if is_null(item) => Element::Null,
            b'$' => {
                let header = find_crlf(item, 1)?;
                Element::Bulk(at + header + 2..at + len - 2)
            }
            _ => Element::Other,
        };
        out.push(element);
        at += len;
    }
    (at == reply.len()).then_some(out)
}

/// The element count of an aggregate reply (`*N`, `~N`, `>N`; a map's pairs count twice) and
/// where its elements start; `None` for anything else (a null array included).
pub fn aggregate(reply: &[u8]) -> Option<(usize, usize)> {
    let kind = *reply.first()?;
    if !matches!(kind, b'*' | b'~' | b'>' | b'%') {
        return None;
    }
    let end = find_crlf(reply, 1)?;
    let n = usize::try_from(parse_int(&reply[1..end])?).ok()?;
    Some((if kind == b'%' { n * 2 } else { n }, end + 2))
}

/// The elements of an aggregate reply, each as its raw bytes.
pub fn elements(reply: &[u8]) -> Option<Vec<&[u8]>> {
    let (n, start) = aggregate(reply)?;
    let body = &reply[start..];
    let items: Vec<&[u8]> = split_replies(body).map(|r| &body[r]).collect();
    (items.len() == n).then_some(items)
}

/// The payload of a bulk or simple string reply.
pub fn string_value(reply: &[u8]) -> Option<&[u8]> {
    match reply.first()? {
        b'+' => reply.get(1..reply.len().checked_sub(2)?),
        b'$' => {
            let end = find_crlf(reply, 1)?;
            let len = usize::try_from(parse_int(&reply[1..end])?).ok()?;
            reply.get(end + 2..end + 2 + len)
        }
        _ => None,
    }
}

/// Whether a reply is a null (RESP2 `$-1`/`*-1`, RESP3 `_`).
pub fn is_null(reply: &[u8]) -> bool {
    reply == b"$-1\r\n" || reply == b"*-1\r\n" || reply == b"_\r\n"
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
        let (_, expected) = redis_protocol::resp2::decode::decode_range(input)
            .unwrap()
            .unwrap();
        assert_eq!(len, expected);
    }

    #[test]
    fn resp3_frames() {
        let input = b"_\r\n#t\r\n,1.5\r\n(12345678901234567890\r\n!3\r\nERR\r\n=7\r\ntxt:abc\r\n\
                      %2\r\n+a\r\n:1\r\n+b\r\n~1\r\n:2\r\n~0\r\n>3\r\n$7\r\nmessage\r\n$1\r\nc\r\n$1\r\nm\r\n\
                      |1\r\n+ttl\r\n:3\r\n$1\r\nv\r\n*2\r\n|1\r\n+k\r\n+v\r\n:1\r\n:2\r\n|0\r\n+OK\r\n";
        assert_eq!(
            scan_all(input),
            vec![3, 4, 6, 23, 9, 13, 24, 4, 31, 21, 24, 9]
        );
        assert!(is_push(b">0\r\n"));
        assert!(is_error(b"!3\r\nERR\r\n"));
    }

    #[test]
    fn resp3_agrees_with_redis_protocol_byte_by_byte() {
        let input: &[u8] =
            b"%2\r\n$1\r\na\r\n~2\r\n,inf\r\n_\r\n|1\r\n+x\r\n:1\r\n#f\r\n=5\r\ntxt:1\r\n";
        let mut s = ReplyScanner::new();
        for n in 0..input.len() {
            assert_eq!(s.scan(&input[..n]).unwrap(), None, "at {n}");
        }
        let len = s.scan(input).unwrap().unwrap();
        let (_, expected) = redis_protocol::resp3::decode::complete::decode(input)
            .unwrap()
            .unwrap();
        assert_eq!(len, expected);
    }

    #[test]
    fn splits_a_run_of_replies() {
        let run = b"+OK\r\n+QUEUED\r\n*2\r\n:1\r\n$1\r\nx\r\n";
        let parts: Vec<&[u8]> = split_replies(run).map(|r| &run[r]).collect();
        assert_eq!(
            parts,
            vec![&b"+OK\r\n"[..], b"+QUEUED\r\n", b"*2\r\n:1\r\n$1\r\nx\r\n"]
        );
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
        assert_eq!(
            array_elements(b"*2\r\n_\r\n$1\r\nb\r\n").unwrap(),
            vec![Element::Null, Element::Bulk(11..12)]
        );
        // A nested element is measured, not decoded; a short or padded array is refused.
        assert_eq!(
            array_elements(b"*2\r\n*1\r\n:1\r\n$0\r\n\r\n").unwrap(),
            vec![Element::Other, Element::Bulk(16..16)]
        );
        assert!(array_elements(b"*2\r\n$1\r\na\r\n").is_none());
        assert!(array_elements(b"*1\r\n$1\r\na\r\n:1\r\n").is_none());
        assert!(array_elements(b"*-1\r\n").is_none());
    }

    #[test]
    fn deep_nesting_is_scanned_without_recursion_and_refused_for_decoding() {
        let mut deep = b"*1\r\n".repeat(100_000);
        deep.extend_from_slice(b":1\r\n");
        assert_eq!(ReplyScanner::new().scan(&deep), Ok(Some(deep.len())));
        assert_eq!(array_elements(&deep), Some(vec![Element::Other]));
        assert!(!decodable(&deep));
        assert_eq!(
            ReplyScanner::with_depth_limit(3).scan(&deep),
            Err(ProtocolError::TooDeep(3))
        );
        let mut shallow = b"*1\r\n".repeat(MAX_DECODE_DEPTH);
        shallow.extend_from_slice(b":1\r\n");
        assert!(decodable(&shallow));
        assert!(decodable(b">3\r\n$7\r\nmessage\r\n$1\r\nc\r\n$1\r\nm\r\n"));
        assert!(!decodable(b">3\r\n$7\r\nmessage\r\n"));
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
