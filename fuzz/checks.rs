// The checking functions of the fuzz targets, shared word for word by the fuzz crate
// (fuzz/fuzz_targets/*.rs) and by the regression test of the main crate
// (tests/fuzz_regressions.rs), which both `include!` this file. A check panics (or, for an
// oversized allocation, aborts) when an invariant breaks; libFuzzer saves the input as a
// crash and the regression test reports the file.
//
// Kept to plain items, no inner attributes, so that `include!` works in both places.

/// Checking functions, one per fuzz target; each takes the raw fuzz input.
#[allow(dead_code)]
pub mod checks {
    use shardis::protocol::ProtocolError;
    use shardis::protocol::reply::{
        Element, ReplyScanner, aggregate, array_elements, elements, integer_value, is_error,
        is_null, is_push, split_replies, string_value,
    };
    use shardis::protocol::request::{Request, RequestParser};

    /// Which invariants to check, as a bit set (`BUG_*`). Each bit guards an invariant that
    /// a bug once broke, so that a future open bug can be looked past while fuzzing for others;
    /// today every bug is fixed and everything is checked (`ALL`).
    pub type Strict = u32;
    /// Every invariant.
    pub const ALL: Strict = !0;
    /// Fixed bug 1 (fuzz/README.md): inline requests were not bounded by max_request_bytes.
    pub const BUG_INLINE_MAX: Strict = 1;
    /// Fixed bug 2 (fuzz/README.md): multibulk numbers Redis refuses were accepted.
    pub const BUG_LENGTHS: Strict = 2;

    /// The invariants the fuzzer checks: all of them, unless `SHARDIS_FUZZ_STRICT=<bits>`
    /// narrows them (to look past a newly found bug while fuzzing for others).
    pub fn strict() -> Strict {
        static STRICT: std::sync::OnceLock<Strict> = std::sync::OnceLock::new();
        *STRICT.get_or_init(|| {
            std::env::var("SHARDIS_FUZZ_STRICT")
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(ALL)
        })
    }

    /// `max_request_bytes` values for the request target, picked by the input's second byte.
    /// Small ones make the limit reachable with small inputs; the last is the default.
    pub const MAX_REQUEST_BYTES: [usize; 8] = [1, 16, 64, 256, 1024, 4096, 1 << 20, 512 << 20];

    /// How the input is fed: the session and the backend links read a socket, so a frame can
    /// arrive in any number of pieces. The first input byte picks the plan.
    #[derive(Debug, Clone, Copy)]
    pub enum Chunks {
        /// Everything at once.
        Whole,
        /// One byte per read.
        Bytes,
        /// Reads of this fixed size.
        Fixed(usize),
        /// Reads of pseudo-random sizes 1..=64 from this seed.
        Random(u32),
    }

    impl Chunks {
        pub fn from_seed(seed: u8) -> Chunks {
            match seed % 4 {
                0 => Chunks::Whole,
                1 => Chunks::Bytes,
                2 => Chunks::Fixed(usize::from(seed >> 2) + 2),
                _ => Chunks::Random(u32::from(seed).wrapping_mul(2_654_435_761) | 1),
            }
        }

        /// Sizes of the reads that deliver `total` bytes.
        pub fn sizes(self, total: usize) -> Vec<usize> {
            let mut out = Vec::new();
            let mut left = total;
            let mut state = match self {
                Chunks::Random(s) => s,
                _ => 1,
            };
            while left > 0 {
                let n = match self {
                    Chunks::Whole => left,
                    Chunks::Bytes => 1,
                    Chunks::Fixed(n) => n,
                    Chunks::Random(_) => {
                        // xorshift32
                        state ^= state << 13;
                        state ^= state >> 17;
                        state ^= state << 5;
                        (state % 64) as usize + 1
                    }
                };
                let n = n.min(left);
                out.push(n);
                left -= n;
            }
            out
        }
    }

    // ---------------------------------------------------------------- requests

    /// What a run of the request parser produced: each request (its kind, its frame and its
    /// arguments' bytes), then how it stopped.
    #[derive(Debug, PartialEq, Eq)]
    pub struct RequestRun {
        pub requests: Vec<(char, Vec<u8>, Vec<Vec<u8>>)>,
        /// `Some(error)` if the parser refused the input, `None` if it wants more bytes.
        pub end: Option<ProtocolError>,
    }

    /// Refusals that depend on how much was buffered when the parser looked, not on the bytes:
    /// a header or inline line with no CRLF yet is refused past `MAX_INLINE_BYTES`.
    pub fn depends_on_chunking(e: &Option<ProtocolError>) -> bool {
        matches!(
            e,
            Some(
                ProtocolError::TooBigCount
                    | ProtocolError::TooBigBulkCount
                    | ProtocolError::TooBigInline
            )
        )
    }

    /// Target `request`: byte 0 picks the read sizes, byte 1 `max_request_bytes`, the rest is
    /// what the client sends. `strict` picks the invariants of open bugs to check too (see
    /// fuzz/README.md); the fuzzer runs without them so that it can look for anything else.
    pub fn request(data: &[u8], strict: Strict) {
        let [seed, max_pick, input @ ..] = data else {
            return;
        };
        let max = MAX_REQUEST_BYTES[usize::from(*max_pick) % MAX_REQUEST_BYTES.len()];
        let chunks = Chunks::from_seed(*seed);
        let chunked = run_requests(input, max, chunks, strict);
        let whole = run_requests(input, max, Chunks::Whole, strict);
        if !depends_on_chunking(&chunked.end) && !depends_on_chunking(&whole.end) {
            assert_eq!(
                chunked, whole,
                "reading in pieces ({chunks:?}) and at once disagree"
            );
        }
    }

    /// Drives a `RequestParser` as the session does, feeding `input` in `chunks`, and checks
    /// every request it returns.
    pub fn run_requests(input: &[u8], max: usize, chunks: Chunks, strict: Strict) -> RequestRun {
        let mut parser = RequestParser::new(max);
        let mut buf: Vec<u8> = Vec::new();
        let mut fed = 0;
        let mut requests = Vec::new();
        for size in chunks.sizes(input.len()) {
            buf.extend_from_slice(&input[fed..fed + size]);
            fed += size;
            loop {
                match parser.parse(&buf) {
                    Ok(Some(req)) => {
                        let len = check_request(&parser, &req, &buf, max, strict);
                        requests.push(summarize(&parser, &req, &buf[..len]));
                        buf.drain(..len);
                    }
                    Ok(None) => {
                        // The session reserves and reads up to want(): never past the limit.
                        // (It may be left over from a bulk string already complete, so it can
                        // be below what is buffered; the session saturates that to nothing.)
                        let want = parser.want();
                        assert!(want <= max, "want() = {want} with max {max}");
                        break;
                    }
                    Err(e) => {
                        return RequestRun {
                            requests,
                            end: Some(e),
                        };
                    }
                }
            }
        }
        RequestRun {
            requests,
            end: None,
        }
    }

    /// Checks one request against the buffer it was found in; returns its length.
    fn check_request(
        parser: &RequestParser,
        req: &Request,
        buf: &[u8],
        max: usize,
        strict: Strict,
    ) -> usize {
        let len = match req {
            Request::Multibulk { len } | Request::Inline { len, .. } | Request::Empty { len } => {
                *len
            }
        };
        assert!(len > 0, "{req:?}: an empty frame would loop forever");
        assert!(
            len <= buf.len(),
            "{req:?} is longer than the {} bytes buffered",
            buf.len()
        );
        let frame = &buf[..len];
        match req {
            Request::Multibulk { .. } => {
                assert!(len <= max, "{req:?} accepted with max_request_bytes {max}");
                assert_eq!(frame[0], b'*');
                check_multibulk_args(parser, frame, strict);
            }
            Request::Inline { encoded, .. } => {
                assert!(
                    frame.ends_with(b"\n"),
                    "inline {frame:?} does not end a line"
                );
                assert!(
                    !frame[..len - 1].contains(&b'\n'),
                    "inline {frame:?} spans two lines"
                );
                assert_ne!(frame[0], b'*', "inline {frame:?} starts like a multibulk");
                if strict & BUG_INLINE_MAX != 0 {
                    // Bug 1 (fuzz/README.md, fixed): inline requests ignored max_request_bytes.
                    assert!(
                        len <= max,
                        "inline request of {len} bytes accepted with max_request_bytes {max}"
                    );
                }
                assert!(!parser.args().is_empty(), "inline request without words");
                for r in parser.args() {
                    assert!(
                        r.start <= r.end && r.end <= encoded.len(),
                        "argument {r:?} outside the {} encoded bytes",
                        encoded.len()
                    );
                }
                // The re-encoding must be a well-formed multibulk with the same arguments.
                let mut again = RequestParser::new(usize::MAX);
                assert_eq!(
                    again.parse(encoded),
                    Ok(Some(Request::Multibulk { len: encoded.len() })),
                    "inline {frame:?} re-encoded as {encoded:?}"
                );
                assert_eq!(again.args(), parser.args(), "re-encoded arguments moved");
                check_multibulk_args(parser, encoded, ALL);
            }
            Request::Empty { .. } => {
                if frame[0] == b'*' {
                    assert!(frame.ends_with(b"\r\n"), "empty multibulk {frame:?}");
                    let n = std::str::from_utf8(&frame[1..len - 2])
                        .ok()
                        .and_then(|s| s.parse::<i64>().ok());
                    assert!(matches!(n, Some(n) if n <= 0), "{frame:?} skipped as empty");
                } else {
                    assert!(frame.ends_with(b"\n"), "empty line {frame:?}");
                    assert!(
                        frame[..len - 1].iter().all(u8::is_ascii_whitespace),
                        "{frame:?} skipped as an empty line"
                    );
                }
            }
        }
        len
    }

    /// The arguments of a multibulk `frame`: in order, inside it, each introduced by its
    /// `$len` header and followed by CRLF, covering the frame to its end. With `strict`, the
    /// count and lengths must also be numbers Redis reads (the frame is forwarded as it is):
    /// open bug 2.
    fn check_multibulk_args(parser: &RequestParser, frame: &[u8], strict: Strict) {
        let args = parser.args();
        assert!(!args.is_empty(), "multibulk request without arguments");
        let header_end = find(frame, b"\r\n", 0).expect("no CRLF after the count");
        let count = header_number(&frame[1..header_end], strict);
        assert_eq!(args.len(), count, "argument count");
        let mut at = header_end + 2;
        for r in args {
            assert!(
                r.start <= r.end && r.end + 2 <= frame.len(),
                "argument {r:?} outside the {}-byte frame",
                frame.len()
            );
            assert_eq!(frame[at], b'$', "argument does not start with '$'");
            let line_end = find(frame, b"\r\n", at).expect("no CRLF after a bulk length");
            let n = header_number(&frame[at + 1..line_end], strict);
            assert_eq!(r.start, line_end + 2, "argument does not follow its header");
            assert_eq!(r.end - r.start, n, "argument length");
            assert_eq!(
                &frame[r.end..r.end + 2],
                b"\r\n",
                "argument not followed by CRLF"
            );
            at = r.end + 2;
        }
        assert_eq!(at, frame.len(), "bytes after the last argument");
    }

    /// A count or length from an accepted header. Any decimal form is tolerated unless
    /// `strict` has `BUG_LENGTHS`, which wants the form Redis' `string2ll` accepts (open bug 2 in fuzz/README.md).
    fn header_number(digits: &[u8], strict: Strict) -> usize {
        assert!(digits.len() <= 20, "header number {digits:?} too long");
        let text = std::str::from_utf8(digits).expect("non-ASCII header number accepted");
        let n: i64 = text.parse().expect("bad header number accepted");
        assert!(
            n >= 0 && !text.starts_with('+'),
            "header number {text:?} accepted"
        );
        if strict & BUG_LENGTHS != 0 {
            assert_eq!(
                redis_string2ll(digits),
                Some(n),
                "header number {text:?} accepted, which Redis refuses as a protocol error"
            );
        }
        n as usize
    }

    /// Redis' `string2ll` (util.c): optional '-', no leading zeros, no "-0", no '+', no blanks,
    /// within i64.
    pub fn redis_string2ll(s: &[u8]) -> Option<i64> {
        if s == b"0" {
            return Some(0);
        }
        let (neg, digits) = match s {
            [b'-', rest @ ..] => (true, rest),
            _ => (false, s),
        };
        match digits.first() {
            Some(b'1'..=b'9') => {}
            _ => return None,
        }
        let mut n: u64 = 0;
        for &d in digits {
            if !d.is_ascii_digit() {
                return None;
            }
            n = n.checked_mul(10)?.checked_add(u64::from(d - b'0'))?;
        }
        if neg {
            0i64.checked_sub_unsigned(n)
        } else {
            i64::try_from(n).ok()
        }
    }

    fn summarize(
        parser: &RequestParser,
        req: &Request,
        frame: &[u8],
    ) -> (char, Vec<u8>, Vec<Vec<u8>>) {
        let (kind, bytes): (char, &[u8]) = match req {
            Request::Multibulk { .. } => ('m', frame),
            Request::Inline { encoded, .. } => ('i', encoded),
            Request::Empty { .. } => return ('e', frame.to_vec(), Vec::new()),
        };
        let args = parser
            .args()
            .iter()
            .map(|r| bytes[r.clone()].to_vec())
            .collect();
        (kind, frame.to_vec(), args)
    }

    fn find(hay: &[u8], needle: &[u8], from: usize) -> Option<usize> {
        hay.get(from..)?
            .windows(needle.len())
            .position(|w| w == needle)
            .map(|p| p + from)
    }

    // ----------------------------------------------------------------- replies

    /// Lengths of the replies a `ReplyScanner` finds in `input` read in `chunks`, and whether
    /// it stopped on an error (else it wants more bytes).
    pub fn run_scanner(input: &[u8], chunks: Chunks) -> (Vec<usize>, Option<ProtocolError>) {
        let mut scanner = ReplyScanner::new();
        let mut buf: Vec<u8> = Vec::new();
        let mut fed = 0;
        let mut frames = Vec::new();
        for size in chunks.sizes(input.len()) {
            buf.extend_from_slice(&input[fed..fed + size]);
            fed += size;
            loop {
                match scanner.scan(&buf) {
                    Ok(Some(n)) => {
                        assert!(n >= 3, "reply of {n} bytes");
                        assert!(
                            n <= buf.len(),
                            "reply of {n} bytes in {} buffered",
                            buf.len()
                        );
                        frames.push(n);
                        buf.drain(..n);
                    }
                    Ok(None) => break,
                    Err(e) => return (frames, Some(e)),
                }
            }
        }
        (frames, None)
    }

    /// Target `reply`: byte 0 picks the read sizes, the rest is what a backend sends.
    ///
    /// The scanner must find the same replies however the bytes arrive, `split_replies` must
    /// agree with it, and where `redis_protocol` decodes the same bytes as one complete frame
    /// the lengths must agree (the known, legitimate differences are in fuzz/README.md).
    pub fn reply(data: &[u8], _strict: Strict) {
        let [seed, input @ ..] = data else {
            return;
        };
        let chunks = Chunks::from_seed(*seed);
        let chunked = run_scanner(input, chunks);
        let whole = run_scanner(input, Chunks::Whole);
        assert_eq!(
            chunked, whole,
            "reading in pieces ({chunks:?}) and at once disagree"
        );

        let split: Vec<usize> = split_replies(input).map(|r| r.len()).collect();
        assert_eq!(split, whole.0, "split_replies and the scanner disagree");

        let first = ReplyScanner::new().scan(input);
        let theirs = redis_protocol::resp3::decode::complete::decode(input);
        let scope = match &first {
            Ok(Some(n)) => &input[..*n],
            _ => input,
        };
        if let Some(why) = known_difference(scope) {
            // Documented in fuzz/README.md ("Where the scanner and redis_protocol differ").
            let _ = why;
            return;
        }
        match (&first, &theirs) {
            (Ok(Some(ours)), Ok(Some((frame, n)))) => {
                assert_eq!(
                    ours, n,
                    "frame lengths differ; redis_protocol decoded {frame:?}"
                );
            }
            (Ok(None), Ok(Some((frame, n)))) => {
                panic!("scanner wants more bytes, redis_protocol decoded {frame:?} in {n}")
            }
            (Ok(Some(ours)), Ok(None)) => {
                panic!("scanner found {ours} bytes, redis_protocol wants more")
            }
            _ => {}
        }
        let resp2 = redis_protocol::resp2::decode::decode(input);
        if let (Ok(Some(ours)), Ok(Some((frame, n)))) = (&first, &resp2) {
            assert_eq!(ours, n, "frame lengths differ; RESP2 decoded {frame:?}");
        }
    }

    /// Inputs on which the scanner and `redis_protocol` legitimately disagree, each explained
    /// in fuzz/README.md: a reason if `bytes` has such a header anywhere (coarse: a payload
    /// that looks like one also skips the comparison, which only makes it check less).
    pub fn known_difference(bytes: &[u8]) -> Option<&'static str> {
        let headers = |kind: u8| {
            bytes
                .windows(2)
                .enumerate()
                .filter(move |(_, w)| w[0] == kind)
                .map(move |(i, _)| {
                    let rest = &bytes[i + 1..];
                    let end = rest
                        .windows(2)
                        .position(|w| w == b"\r\n")
                        .unwrap_or(rest.len());
                    &rest[..end]
                })
        };
        // 1. A verbatim string shorter than its 4-byte "fmt:" prefix: invalid RESP3. The
        //    scanner frames it by its length; redis_protocol reads the prefix first and waits
        //    for bytes that belong to the next reply.
        if headers(b'=').any(|h| {
            std::str::from_utf8(h)
                .ok()
                .and_then(|s| s.parse::<i64>().ok())
                .is_some_and(|n| (0..4).contains(&n))
        }) {
            return Some("verbatim string shorter than its format prefix");
        }
        None
    }

    // ----------------------------------------------------------------- helpers

    /// Whether `part` lies inside `whole` (is a sub-slice of it, by address).
    pub fn is_within(part: &[u8], whole: &[u8]) -> bool {
        let (p, w) = (part.as_ptr() as usize, whole.as_ptr() as usize);
        p >= w && p + part.len() <= w + whole.len()
    }

    /// Target `reply_helpers`: the RESP3-aware helpers on arbitrary bytes, then on each
    /// complete reply the scanner finds in them (as the session calls them).
    pub fn reply_helpers(data: &[u8], _strict: Strict) {
        helpers_on(data);
        let mut at = 0;
        for r in split_replies(data) {
            assert_eq!(r.start, at, "split_replies skipped bytes");
            assert!(r.start < r.end && r.end <= data.len(), "range {r:?}");
            at = r.end;
            complete_reply(&data[r]);
        }
    }

    fn helpers_on(data: &[u8]) {
        let _ = (
            is_push(data),
            is_error(data),
            is_null(data),
            integer_value(data),
        );
        if let Some(v) = string_value(data) {
            assert!(is_within(v, data), "string_value outside the reply");
        }
        if let Some((_, start)) = aggregate(data) {
            assert!(start <= data.len(), "aggregate body starts past the end");
        }
        if let Some(items) = elements(data) {
            for item in &items {
                assert!(is_within(item, data), "element outside the reply");
            }
        }
        if let Some(els) = array_elements(data) {
            for el in &els {
                if let Element::Bulk(r) = el {
                    assert!(
                        r.start <= r.end && r.end <= data.len(),
                        "element {r:?} outside"
                    );
                }
            }
        }
    }

    /// On one complete reply, the helpers must agree with the scanner that framed it.
    fn complete_reply(reply: &[u8]) {
        helpers_on(reply);
        if let Some((n, start)) = aggregate(reply) {
            let items = elements(reply).unwrap_or_else(|| {
                panic!("a complete aggregate of {n} whose elements were not found")
            });
            assert_eq!(items.len(), n, "element count");
            let mut at = start;
            for item in &items {
                let offset = item.as_ptr() as usize - reply.as_ptr() as usize;
                assert_eq!(offset, at, "elements are not contiguous");
                at += item.len();
            }
            assert_eq!(
                at,
                reply.len(),
                "elements do not reach the end of the reply"
            );
            if reply[0] == b'*'
                && let Some(els) = array_elements(reply)
            {
                assert_eq!(els.len(), n, "array_elements and elements disagree");
                for (el, item) in els.iter().zip(&items) {
                    let Element::Bulk(r) = el else { continue };
                    if let Some(v) = string_value(item) {
                        assert_eq!(&reply[r.clone()], v, "bulk element bytes");
                    }
                }
            }
        }
    }

    // ------------------------------------------------------------------ config

    /// Target `config`: any UTF-8 text as a configuration file; must never panic.
    pub fn config(data: &[u8], _strict: Strict) {
        let Ok(text) = std::str::from_utf8(data) else {
            return;
        };
        match shardis::config::Config::parse(text) {
            Ok(config) => {
                let _ = config.describe();
            }
            Err(e) => {
                let _ = (e.kind(), e.to_string());
            }
        }
    }

    // -------------------------------------------------------------- allocation

    /// The largest single allocation a check may make; inputs are at most a few MiB (the
    /// fuzzer's own are 64 KiB at most), so anything near this is a size taken from the input.
    pub const MAX_ALLOCATION: usize = 64 << 20;

    /// The global allocator of the fuzz targets and of the regression test: the system's,
    /// aborting on any single allocation above `MAX_ALLOCATION` (libFuzzer's -malloc_limit_mb
    /// needs a sanitizer's malloc hooks, which stable Rust has not got).
    pub struct LimitedAlloc;

    impl LimitedAlloc {
        fn check(size: usize) {
            if size > MAX_ALLOCATION {
                use std::io::Write;
                // Unbuffered, and allocates nothing.
                let _ = std::io::stderr()
                    .write_all(b"\n==fuzz== allocation above MAX_ALLOCATION (64 MiB)\n");
                std::process::abort();
            }
        }
    }

    // SAFETY: forwards to the system allocator unchanged.
    unsafe impl std::alloc::GlobalAlloc for LimitedAlloc {
        unsafe fn alloc(&self, layout: std::alloc::Layout) -> *mut u8 {
            Self::check(layout.size());
            // SAFETY: same contract as ours.
            unsafe { std::alloc::System.alloc(layout) }
        }

        unsafe fn alloc_zeroed(&self, layout: std::alloc::Layout) -> *mut u8 {
            Self::check(layout.size());
            // SAFETY: same contract as ours.
            unsafe { std::alloc::System.alloc_zeroed(layout) }
        }

        unsafe fn dealloc(&self, ptr: *mut u8, layout: std::alloc::Layout) {
            // SAFETY: same contract as ours.
            unsafe { std::alloc::System.dealloc(ptr, layout) }
        }

        unsafe fn realloc(
            &self,
            ptr: *mut u8,
            layout: std::alloc::Layout,
            new_size: usize,
        ) -> *mut u8 {
            Self::check(new_size);
            // SAFETY: same contract as ours.
            unsafe { std::alloc::System.realloc(ptr, layout, new_size) }
        }
    }
}
