//! RESP framing (client requests, backend replies, reply encoding in RESP2 or RESP3) and the
//! command table.

pub mod command;
pub mod glob;
pub mod keys;
pub mod out;
pub mod redis_commands;
pub mod reply;
pub mod request;
pub mod table;

/// "7.0.15" as [7, 0, 15]; missing parts are 0.
pub fn parse_version(text: &str) -> Option<[u32; 3]> {
    let mut parts = text.trim().split('.');
    let mut version = [0u32; 3];
    for (i, slot) in version.iter_mut().enumerate() {
        match parts.next() {
            Some(p) => *slot = p.parse().ok()?,
            None if i > 0 => break,
            None => return None,
        }
    }
    Some(version)
}

/// A client or backend broke the RESP protocol. Client-side errors are answered with
/// `-ERR Protocol error: ...` and the connection is closed, as Redis does.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProtocolError {
    #[error("invalid multibulk length")]
    InvalidMultibulkLength,
    #[error("invalid bulk length")]
    InvalidBulkLength,
    #[error("expected '$', got '{0}'")]
    ExpectedBulk(char),
    #[error("too big mbulk count string")]
    TooBigCount,
    #[error("too big bulk count string")]
    TooBigBulkCount,
    #[error("too big inline request")]
    TooBigInline,
    #[error("unbalanced quotes in request")]
    UnbalancedQuotes,
    #[error("bulk string not terminated by CRLF")]
    BadTerminator,
    #[error("invalid bulk length (a request may be at most max_request_bytes, {0})")]
    TooLarge(usize),
    #[error("unexpected reply type '{0}'")]
    UnexpectedReply(char),
    #[error("reply nests more than {0} aggregates")]
    TooDeep(usize),
}
