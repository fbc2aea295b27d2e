//! Client request framing: RESP multibulk (`*N\r\n$L\r\n...`) and inline commands (`PING\r\n`).
//!
//! Redis accepts only arrays of bulk strings from clients, so this scanner does not recurse and
//! allocates nothing once its argument vector has grown. It resumes where it stopped, so a huge
//! request that arrives in many reads is scanned once, and a command sent one byte at a time works.

use std::ops::Range;

use bytes::{BufMut, Bytes, BytesMut};

use super::ProtocolError;

/// Default longest header line or inline command, as in Redis (`PROTO_INLINE_MAX_SIZE`);
/// `[server] max_inline_bytes` changes it.
pub const MAX_INLINE_BYTES: usize = 64 * 1024;
/// Default most arguments in one multibulk request; `[server] max_multibulk_length` changes it.
pub const MAX_ARGS: usize = 1024 * 1024;

/// What one request may be: its bytes, its inline line or header line, its argument count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestLimits {
    /// Largest request in bytes (bulk strings and framing).
    pub request_bytes: usize,
    /// Longest inline command line, and longest `*N` or `$N` header line.
    pub inline_bytes: usize,
    /// Most arguments (`*N`).
    pub args: usize,
}

impl RequestLimits {
    /// The default inline and argument bounds with `request_bytes`.
    pub const fn with_request_bytes(request_bytes: usize) -> Self {
        Self {
            request_bytes,
            inline_bytes: MAX_INLINE_BYTES,
            args: MAX_ARGS,
        }
    }
}

/// One complete request found at the start of the buffer.
#[derive(Debug, PartialEq, Eq)]
pub enum Request {
    /// A multibulk request of `len` bytes; arguments are ranges into those bytes.
    Multibulk { len: usize },
    /// An inline command line of `len` bytes, re-encoded as multibulk in `encoded`;
    /// arguments are ranges into `encoded`.
    Inline { len: usize, encoded: Bytes },
    /// An empty line or `*0`: consume `len` bytes, answer nothing (as Redis does).
    Empty { len: usize },
}

#[derive(Debug, Clone, Copy)]
enum State {
    Start,
    Args { expected: usize, pos: usize },
}

/// Incremental request scanner; one per client connection.
#[derive(Debug)]
pub struct RequestParser {
    args: Vec<Range<usize>>,
    state: State,
    max_request_bytes: usize,
    max_inline: usize,
    max_args: usize,
    /// Total bytes the current frame needs, once known (for buffer reservation).
    want: usize,
}

impl RequestParser {
    /// A parser that refuses single requests larger than `max_request_bytes`.
    pub fn new(max_request_bytes: usize) -> Self {
        Self::with_limits(RequestLimits::with_request_bytes(max_request_bytes))
    }

    /// A parser that refuses requests past any of `limits`.
    pub fn with_limits(limits: RequestLimits) -> Self {
        Self {
            args: Vec::with_capacity(16),
            state: State::Start,
            max_request_bytes: limits.request_bytes,
            max_inline: limits.inline_bytes,
            max_args: limits.args,
            want: 0,
        }
    }

    /// Arguments of the request last returned, as ranges into its bytes (the command name first).
    pub fn args(&self) -> &[Range<usize>] {
        &self.args
    }

    /// Bytes the incomplete frame at the start of the buffer needs in total, if known.
    pub fn want(&self) -> usize {
        self.want
    }

    /// Scans the request at the start of `buf`. `Ok(None)` means more bytes are needed; the
    /// parser keeps its place, so the next call must pass the same buffer with bytes appended.
    pub fn parse(&mut self, buf: &[u8]) -> Result<Option<Request>, ProtocolError> {
        let (expected, mut pos) = match self.state {
            State::Args { expected, pos } => (expected, pos),
            State::Start => {
                let Some(&first) = buf.first() else {
                    return Ok(None);
                };
                if first != b'*' {
                    return self.parse_inline(buf);
                }
                let Some(line_end) = find_crlf(buf, 1) else {
                    if buf.len() > self.max_inline {
                        return Err(ProtocolError::TooBigCount);
                    }
                    return Ok(None);
                };
                if line_end > self.max_inline {
                    return Err(ProtocolError::TooBigCount);
                }
                let count =
                    parse_int(&buf[1..line_end]).ok_or(ProtocolError::InvalidMultibulkLength)?;
                if count > self.max_args as i64 {
                    return Err(ProtocolError::InvalidMultibulkLength);
                }
                if count <= 0 {
                    return Ok(Some(Request::Empty { len: line_end + 2 }));
                }
                self.args.clear();
                (count as usize, line_end + 2)
            }
        };
        while self.args.len() < expected {
            let Some(&marker) = buf.get(pos) else {
                return self.incomplete(expected, pos);
            };
            if marker != b'$' {
                self.reset();
                return Err(ProtocolError::ExpectedBulk(marker as char));
            }
            let Some(line_end) = find_crlf(buf, pos + 1) else {
                if buf.len() - pos > self.max_inline {
                    self.reset();
                    return Err(ProtocolError::TooBigBulkCount);
                }
                return self.incomplete(expected, pos);
            };
            if line_end - pos > self.max_inline {
                self.reset();
                return Err(ProtocolError::TooBigBulkCount);
            }
            let len = match parse_int(&buf[pos + 1..line_end]) {
                Some(n) if n >= 0 => n as usize,
                _ => {
                    self.reset();
                    return Err(ProtocolError::InvalidBulkLength);
                }
            };
            let start = line_end + 2;
            let end = start.saturating_add(len);
            if end.saturating_add(2) > self.max_request_bytes {
                self.reset();
                return Err(ProtocolError::TooLarge(self.max_request_bytes));
            }
            if buf.len() < end + 2 {
                self.want = end + 2;
                return self.incomplete(expected, pos);
            }
            if &buf[end..end + 2] != b"\r\n" {
                self.reset();
                return Err(ProtocolError::BadTerminator);
            }
            self.args.push(start..end);
            pos = end + 2;
        }
        self.reset();
        Ok(Some(Request::Multibulk { len: pos }))
    }

    fn incomplete(
        &mut self,
        expected: usize,
        pos: usize,
    ) -> Result<Option<Request>, ProtocolError> {
        self.state = State::Args { expected, pos };
        Ok(None)
    }

    fn reset(&mut self) {
        self.state = State::Start;
        self.want = 0;
    }

    fn parse_inline(&mut self, buf: &[u8]) -> Result<Option<Request>, ProtocolError> {
        let Some(nl) = memchr::memchr(b'\n', buf) else {
            if buf.len() > self.max_inline {
                return Err(ProtocolError::TooBigInline);
            }
            if buf.len() > self.max_request_bytes {
                return Err(ProtocolError::TooLarge(self.max_request_bytes));
            }
            return Ok(None);
        };
        // However it arrived (in one read or many), a line longer than the bound is refused.
        if nl > self.max_inline {
            return Err(ProtocolError::TooBigInline);
        }
        // An inline request is bounded like a multibulk one, newline included.
        if nl + 1 > self.max_request_bytes {
            return Err(ProtocolError::TooLarge(self.max_request_bytes));
        }
        let mut line = &buf[..nl];
        if line.last() == Some(&b'\r') {
            line = &line[..line.len() - 1];
        }
        let words = split_inline(line)?;
        if words.is_empty() {
            return Ok(Some(Request::Empty { len: nl + 1 }));
        }
        let mut out = BytesMut::with_capacity(line.len() + 16 * words.len());
        self.args.clear();
        out.put_u8(b'*');
        put_int(&mut out, words.len() as i64);
        for word in &words {
            out.put_u8(b'$');
            put_int(&mut out, word.len() as i64);
            let start = out.len();
            out.extend_from_slice(word);
            self.args.push(start..out.len());
            out.extend_from_slice(b"\r\n");
        }
        Ok(Some(Request::Inline {
            len: nl + 1,
            encoded: out.freeze(),
        }))
    }
}

/// Splits an inline command line like Redis' `sdssplitargs`: words separated by blanks,
/// "double quotes" with \n \r \t \b \a \\ \" \xHH escapes, and 'single quotes' with \'.
pub fn split_inline(line: &[u8]) -> Result<Vec<Vec<u8>>, ProtocolError> {
    let mut words = Vec::new();
    let mut i = 0;
    while i < line.len() {
        while i < line.len() && line[i].is_ascii_whitespace() {
            i += 1;
        }
        if i >= line.len() {
            break;
        }
        let mut word = Vec::new();
        match line[i] {
            quote @ (b'"' | b'\'') => i = quoted(line, i, quote, &mut word)?,
            _ => {
                while i < line.len() && !line[i].is_ascii_whitespace() {
                    word.push(line[i]);
                    i += 1;
                }
            }
        }
        words.push(word);
    }
    Ok(words)
}

/// Reads the quoted word that starts at `line[at]` (a `quote`) into `word`; returns where the
/// line goes on after it. The closing quote must end the word. In double quotes, `\n \r \t
/// \b \a \xHH` and `\` before any other byte are escapes; in single quotes only `\'`.
fn quoted(line: &[u8], at: usize, quote: u8, word: &mut Vec<u8>) -> Result<usize, ProtocolError> {
    let mut i = at + 1;
    loop {
        let Some(&c) = line.get(i) else {
            return Err(ProtocolError::UnbalancedQuotes);
        };
        let next = line.get(i + 1).copied();
        match c {
            b'\\' if quote == b'"' && next == Some(b'x') && hex_pair(line, i + 2).is_some() => {
                word.extend(hex_pair(line, i + 2));
                i += 4;
            }
            b'\\' if quote == b'"' && next.is_some() => {
                word.push(match next {
                    Some(b'n') => b'\n',
                    Some(b'r') => b'\r',
                    Some(b't') => b'\t',
                    Some(b'b') => 8,
                    Some(b'a') => 7,
                    other => other.unwrap_or_default(),
                });
                i += 2;
            }
            b'\\' if quote == b'\'' && next == Some(b'\'') => {
                word.push(b'\'');
                i += 2;
            }
            _ if c == quote => {
                i += 1;
                break;
            }
            _ => {
                word.push(c);
                i += 1;
            }
        }
    }
    if i < line.len() && !line[i].is_ascii_whitespace() {
        return Err(ProtocolError::UnbalancedQuotes);
    }
    Ok(i)
}

fn hex_pair(line: &[u8], at: usize) -> Option<u8> {
    let hi = (*line.get(at)? as char).to_digit(16)?;
    let lo = (*line.get(at + 1)? as char).to_digit(16)?;
    Some((hi * 16 + lo) as u8)
}

/// Index of the `\r` of the first CRLF at or after `from`.
#[inline]
pub(crate) fn find_crlf(buf: &[u8], from: usize) -> Option<usize> {
    let mut at = from;
    loop {
        let rel = memchr::memchr(b'\r', buf.get(at..)?)?;
        let cr = at + rel;
        match buf.get(cr + 1) {
            Some(b'\n') => return Some(cr),
            Some(_) => at = cr + 1,
            None => return None,
        }
    }
}

/// Parses a signed decimal integer exactly as Redis' `string2ll` does: an optional `-`, then
/// digits with no leading zero (`0` alone is zero; `-0`, `01`, `+1` and blanks are refused),
/// within i64. A request header Redis would refuse is refused here too, so it is never
/// forwarded on a backend connection other clients share.
#[inline]
pub fn parse_int(s: &[u8]) -> Option<i64> {
    let (neg, digits) = match s.split_first()? {
        (b'-', rest) => (true, rest),
        _ => (false, s),
    };
    match digits {
        [] => return None,
        [b'0'] => return (!neg).then_some(0),
        [b'0', ..] => return None,
        _ if digits.len() > 19 => return None,
        _ => {}
    }
    // Accumulated negatively, so i64::MIN parses like in Redis.
    let mut n: i64 = 0;
    for &d in digits {
        if !d.is_ascii_digit() {
            return None;
        }
        n = n.checked_mul(10)?.checked_sub((d - b'0') as i64)?;
    }
    if neg { Some(n) } else { n.checked_neg() }
}

/// Appends `n` and CRLF.
#[inline]
pub(crate) fn put_int(out: &mut BytesMut, n: i64) {
    let mut b = itoa::Buffer::new();
    out.extend_from_slice(b.format(n).as_bytes());
    out.extend_from_slice(b"\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args_of(p: &RequestParser, frame: &[u8]) -> Vec<Vec<u8>> {
        p.args().iter().map(|r| frame[r.clone()].to_vec()).collect()
    }

    #[test]
    fn multibulk_whole() {
        let mut p = RequestParser::new(1 << 20);
        let buf = b"*2\r\n$3\r\nGET\r\n$3\r\nkey\r\n*1\r\n";
        let r = p.parse(buf).unwrap().unwrap();
        assert_eq!(r, Request::Multibulk { len: 22 });
        assert_eq!(args_of(&p, buf), vec![b"GET".to_vec(), b"key".to_vec()]);
    }

    #[test]
    fn one_byte_at_a_time() {
        let full = b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$5\r\nhello\r\n";
        let mut p = RequestParser::new(1 << 20);
        for n in 0..full.len() {
            assert_eq!(p.parse(&full[..n]).unwrap(), None, "at {n}");
        }
        assert_eq!(
            p.parse(full).unwrap(),
            Some(Request::Multibulk { len: full.len() })
        );
        assert_eq!(
            args_of(&p, full),
            vec![b"SET".to_vec(), b"k".to_vec(), b"hello".to_vec()]
        );
    }

    #[test]
    fn binary_safe_arguments() {
        let buf = b"*2\r\n$3\r\nGET\r\n$4\r\n\r\n\x00\xff\r\n";
        let mut p = RequestParser::new(1 << 20);
        assert!(p.parse(buf).unwrap().is_some());
        assert_eq!(args_of(&p, buf)[1], b"\r\n\x00\xff");
    }

    #[test]
    fn wants_the_whole_bulk() {
        let mut p = RequestParser::new(1 << 30);
        assert_eq!(p.parse(b"*2\r\n$3\r\nSET\r\n$8000000\r\nab").unwrap(), None);
        assert_eq!(p.want(), 4 + 9 + 10 + 8_000_000 + 2);
    }

    #[test]
    fn protocol_errors() {
        let cases: &[(&[u8], ProtocolError)] = &[
            (b"*x\r\n", ProtocolError::InvalidMultibulkLength),
            (b"*2000000\r\n", ProtocolError::InvalidMultibulkLength),
            (b"*1\r\n:1\r\n", ProtocolError::ExpectedBulk(':')),
            (b"*1\r\n*1\r\n", ProtocolError::ExpectedBulk('*')),
            (b"*1\r\n$-1\r\n", ProtocolError::InvalidBulkLength),
            (b"*1\r\n$1\r\nab\r\n", ProtocolError::BadTerminator),
            (b"*1\r\n$100\r\n", ProtocolError::TooLarge(64)),
        ];
        for (input, want) in cases {
            let mut p = RequestParser::new(64);
            assert_eq!(
                p.parse(input).unwrap_err(),
                *want,
                "{:?}",
                String::from_utf8_lossy(input)
            );
        }
    }

    #[test]
    fn header_without_crlf_is_bounded() {
        let mut p = RequestParser::new(1 << 30);
        let long = vec![b'1'; MAX_INLINE_BYTES + 2];
        let mut buf = b"*".to_vec();
        buf.extend_from_slice(&long);
        assert_eq!(p.parse(&buf).unwrap_err(), ProtocolError::TooBigCount);
        let mut inline = long.clone();
        inline[0] = b'P';
        assert_eq!(p.parse(&inline).unwrap_err(), ProtocolError::TooBigInline);
    }

    #[test]
    fn inline_commands() {
        let mut p = RequestParser::new(1 << 20);
        let Some(Request::Inline { len, encoded }) = p.parse(b"PING\r\nGET x").unwrap() else {
            panic!("not inline")
        };
        assert_eq!(len, 6);
        assert_eq!(&encoded[..], b"*1\r\n$4\r\nPING\r\n");
        let Some(Request::Inline { encoded, .. }) =
            p.parse(b"set  k \"a b\\x41\\n\" 'c\\'d'\n").unwrap()
        else {
            panic!("not inline")
        };
        assert_eq!(
            args_of(&p, &encoded),
            vec![
                b"set".to_vec(),
                b"k".to_vec(),
                b"a bA\n".to_vec(),
                b"c'd".to_vec()
            ]
        );
        assert_eq!(p.parse(b"\r\n").unwrap(), Some(Request::Empty { len: 2 }));
        assert_eq!(
            p.parse(b"set \"a\n").unwrap_err(),
            ProtocolError::UnbalancedQuotes
        );
    }

    #[test]
    fn empty_multibulk_is_skipped() {
        let mut p = RequestParser::new(1 << 20);
        assert_eq!(p.parse(b"*0\r\n").unwrap(), Some(Request::Empty { len: 4 }));
        assert_eq!(
            p.parse(b"*-1\r\n").unwrap(),
            Some(Request::Empty { len: 5 })
        );
    }

    #[test]
    fn ints() {
        assert_eq!(parse_int(b"0"), Some(0));
        assert_eq!(parse_int(b"-12"), Some(-12));
        assert_eq!(parse_int(b"9223372036854775807"), Some(i64::MAX));
        assert_eq!(parse_int(b"9223372036854775808"), None);
        assert_eq!(parse_int(b""), None);
        assert_eq!(parse_int(b"-"), None);
        assert_eq!(parse_int(b"1 "), None);
        // What Redis' string2ll refuses (a multibulk header like `$04` closes the connection
        // there, so it must never reach a shared backend connection).
        assert_eq!(parse_int(b"04"), None);
        assert_eq!(parse_int(b"00"), None);
        assert_eq!(parse_int(b"-0"), None);
        assert_eq!(parse_int(b"+1"), None);
        assert_eq!(parse_int(b"-9223372036854775808"), Some(i64::MIN));
        assert_eq!(parse_int(b"-9223372036854775809"), None);
    }

    #[test]
    fn lengths_redis_refuses_are_protocol_errors() {
        let mut p = RequestParser::new(1 << 20);
        assert_eq!(
            p.parse(b"*2\r\n$3\r\nGET\r\n$01\r\nk\r\n").unwrap_err(),
            ProtocolError::InvalidBulkLength
        );
        let mut p = RequestParser::new(1 << 20);
        assert_eq!(
            p.parse(b"*01\r\n$4\r\nPING\r\n").unwrap_err(),
            ProtocolError::InvalidMultibulkLength
        );
        let mut p = RequestParser::new(1 << 20);
        assert_eq!(
            p.parse(b"*1\r\n$-0\r\n").unwrap_err(),
            ProtocolError::InvalidBulkLength
        );
    }

    #[test]
    fn inline_requests_are_bounded_by_max_request_bytes() {
        let mut p = RequestParser::new(16);
        assert_eq!(
            p.parse(b"SET key valuevalue\r\n").unwrap_err(),
            ProtocolError::TooLarge(16)
        );
        let mut p = RequestParser::new(16);
        assert_eq!(
            p.parse(b"SET key valuevalu").unwrap_err(),
            ProtocolError::TooLarge(16)
        );
        let mut p = RequestParser::new(16);
        assert!(matches!(
            p.parse(b"SET key value\r\n"),
            Ok(Some(Request::Inline { len: 15, .. }))
        ));
    }
}
