//! The smallest HTTP/1.1 the admin endpoints need: read one bounded request head, parse its
//! request line, and encode a `Connection: close` response.

use std::io;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt};

/// A parsed request line; headers are read but not kept, the body is ignored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// Method token as sent, e.g. `GET`.
    pub method: String,
    /// Path part of the request target, always starting with `/`.
    pub path: String,
    /// Query string without the `?`, empty if absent.
    pub query: String,
}

impl Request {
    /// True if the query has `name`, `name=1` or `name=true`.
    pub fn flag(&self, name: &str) -> bool {
        self.query.split('&').any(|pair| {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            key == name && matches!(value, "" | "1" | "true")
        })
    }
}

/// Why no request could be read from a connection.
#[derive(Debug, thiserror::Error)]
pub enum HeadError {
    /// The peer closed the connection before sending anything.
    #[error("connection closed before a request")]
    Closed,
    /// The head did not end within the size limit.
    #[error("request head larger than {0} bytes")]
    TooLarge(usize),
    /// The head did not arrive within the read timeout.
    #[error("request head not received within {0:?}")]
    Timeout(Duration),
    /// The request line is not `METHOD /target HTTP/1.x`, or the head ended early.
    #[error("malformed request: {0}")]
    Malformed(&'static str),
    /// Reading from the socket failed.
    #[error("reading the request failed: {0}")]
    Io(#[from] io::Error),
}

impl HeadError {
    /// The response to send for this error, if the connection is still worth answering.
    pub fn response(&self) -> Option<Response> {
        match self {
            HeadError::Closed | HeadError::Io(_) => None,
            HeadError::TooLarge(_) => Some(Response::text(431, format!("{self}\n"))),
            HeadError::Timeout(_) => Some(Response::text(408, format!("{self}\n"))),
            HeadError::Malformed(_) => Some(Response::text(400, format!("{self}\n"))),
        }
    }
}

/// Reads a request head (up to the blank line) of at most `limit` bytes within `timeout`.
pub async fn read_request<R: AsyncRead + Unpin>(
    reader: &mut R,
    limit: usize,
    timeout: Duration,
) -> Result<Request, HeadError> {
    match tokio::time::timeout(timeout, read_head(reader, limit)).await {
        Ok(head) => parse_head(&head?),
        Err(_) => Err(HeadError::Timeout(timeout)),
    }
}

async fn read_head<R: AsyncRead + Unpin>(
    reader: &mut R,
    limit: usize,
) -> Result<Vec<u8>, HeadError> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    loop {
        let n = reader.read(&mut chunk).await?;
        if n == 0 {
            return Err(if buf.is_empty() {
                HeadError::Closed
            } else {
                HeadError::Malformed("connection closed inside the request head")
            });
        }
        // Only the new bytes (and the three before them) can complete the terminator.
        let from = buf.len().saturating_sub(3);
        buf.extend_from_slice(&chunk[..n]);
        if let Some(end) = head_end(&buf[from..]) {
            let end = from + end;
            if end > limit {
                return Err(HeadError::TooLarge(limit));
            }
            buf.truncate(end);
            return Ok(buf);
        }
        if buf.len() > limit {
            return Err(HeadError::TooLarge(limit));
        }
    }
}

/// Length of the head including its terminating blank line (CRLF CRLF, or bare LF LF).
fn head_end(buf: &[u8]) -> Option<usize> {
    let crlf = buf.windows(4).position(|w| w == b"\r\n\r\n").map(|i| i + 4);
    let lf = buf.windows(2).position(|w| w == b"\n\n").map(|i| i + 2);
    match (crlf, lf) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// Parses the request line of a complete head; header lines are only checked to be text.
pub fn parse_head(head: &[u8]) -> Result<Request, HeadError> {
    let text = std::str::from_utf8(head).map_err(|_| HeadError::Malformed("head is not UTF-8"))?;
    let line = text
        .split('\n')
        .next()
        .map(|l| l.trim_end_matches('\r'))
        .unwrap_or_default();
    let mut parts = line.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(HeadError::Malformed(
            "request line is not `METHOD TARGET VERSION`",
        ));
    };
    if method.is_empty() || !method.bytes().all(|b| b.is_ascii_uppercase()) {
        return Err(HeadError::Malformed("bad method"));
    }
    if !target.starts_with('/') || target.bytes().any(|b| b.is_ascii_control()) {
        return Err(HeadError::Malformed(
            "request target must be an absolute path",
        ));
    }
    if !version.starts_with("HTTP/1.") {
        return Err(HeadError::Malformed("only HTTP/1.x is served"));
    }
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    Ok(Request {
        method: method.to_owned(),
        path: path.to_owned(),
        query: query.to_owned(),
    })
}

/// A complete response; always sent with `Connection: close`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// Status code.
    pub status: u16,
    /// `Content-Type` header value.
    pub content_type: &'static str,
    /// Extra header lines, each without CRLF.
    pub headers: Vec<String>,
    /// Body bytes.
    pub body: Vec<u8>,
}

/// Content type of plain text bodies.
pub const TEXT: &str = "text/plain; charset=utf-8";
/// Content type of the Prometheus text exposition format.
pub const PROMETHEUS_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";
/// Content type of JSON bodies.
pub const JSON: &str = "application/json";

impl Response {
    /// A plain-text response.
    pub fn text(status: u16, body: impl Into<String>) -> Self {
        Self::with_type(status, TEXT, body.into().into_bytes())
    }

    /// A response with the given content type.
    pub fn with_type(status: u16, content_type: &'static str, body: Vec<u8>) -> Self {
        Self {
            status,
            content_type,
            headers: Vec::new(),
            body,
        }
    }

    /// Adds a header line such as `Allow: GET`.
    pub fn header(mut self, line: impl Into<String>) -> Self {
        self.headers.push(line.into());
        self
    }

    /// The bytes to put on the wire.
    pub fn encode(&self) -> Vec<u8> {
        let mut head = format!(
            "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\nCache-Control: no-store\r\n",
            self.status,
            reason(self.status),
            self.content_type,
            self.body.len()
        );
        for line in &self.headers {
            head.push_str(line);
            head.push_str("\r\n");
        }
        head.push_str("\r\n");
        let mut out = head.into_bytes();
        out.extend_from_slice(&self.body);
        out
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "Unknown",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn read(input: &[u8], limit: usize) -> Result<Request, HeadError> {
        let mut reader = input;
        read_request(&mut reader, limit, Duration::from_secs(1)).await
    }

    #[tokio::test]
    async fn parses_a_get_with_query_and_headers() {
        let req = read(
            b"GET /readyz?strict=1&x=y HTTP/1.1\r\nHost: a\r\n\r\nbody",
            8192,
        )
        .await
        .unwrap();
        assert_eq!(req.method, "GET");
        assert_eq!(req.path, "/readyz");
        assert_eq!(req.query, "strict=1&x=y");
        assert!(req.flag("strict"));
        assert!(!req.flag("x"));
        assert!(!req.flag("missing"));
    }

    #[tokio::test]
    async fn accepts_bare_lf_heads() {
        let req = read(b"GET /healthz HTTP/1.0\n\n", 8192).await.unwrap();
        assert_eq!(req.path, "/healthz");
    }

    #[tokio::test]
    async fn rejects_bad_input_without_panicking() {
        for input in [
            &b"GET\r\n\r\n"[..],
            b"GET /x\r\n\r\n",
            b"GET /x HTTP/1.1 extra\r\n\r\n",
            b"get /x HTTP/1.1\r\n\r\n",
            b"GET http://h/x HTTP/1.1\r\n\r\n",
            b"GET /x HTTP/2\r\n\r\n",
            b"GET /\xff HTTP/1.1\r\n\r\n",
            b"\r\n\r\n",
            b"GET /x HTTP/1.1\r\nHost: a\r\n",
        ] {
            let err = read(input, 8192).await.unwrap_err();
            assert_eq!(err.response().map(|r| r.status), Some(400), "{input:?}");
        }
    }

    #[tokio::test]
    async fn bounds_the_head_size() {
        let mut big = b"GET /".to_vec();
        big.extend(std::iter::repeat_n(b'a', 10_000));
        big.extend_from_slice(b" HTTP/1.1\r\n\r\n");
        let err = read(&big, 8192).await.unwrap_err();
        assert!(matches!(err, HeadError::TooLarge(8192)));
        assert_eq!(err.response().map(|r| r.status), Some(431));
    }

    #[tokio::test]
    async fn empty_connection_gets_no_answer() {
        let err = read(b"", 8192).await.unwrap_err();
        assert!(matches!(err, HeadError::Closed));
        assert!(err.response().is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn times_out_slow_heads() {
        let (mut client, mut server) = tokio::io::duplex(64);
        let read = read_request(&mut server, 8192, Duration::from_secs(5));
        let write = async {
            use tokio::io::AsyncWriteExt;
            client.write_all(b"GET / HTTP/1.1\r\n").await.unwrap();
            std::future::pending::<()>().await;
        };
        let err = tokio::select! {
            r = read => r.unwrap_err(),
            _ = write => unreachable!(),
        };
        assert!(matches!(err, HeadError::Timeout(_)));
        assert_eq!(err.response().map(|r| r.status), Some(408));
    }

    #[test]
    fn encodes_a_close_response() {
        let bytes = Response::text(405, "no\n").header("Allow: GET").encode();
        let text = String::from_utf8(bytes).unwrap();
        assert!(text.starts_with("HTTP/1.1 405 Method Not Allowed\r\n"));
        assert!(text.contains("Content-Length: 3\r\n"));
        assert!(text.contains("Connection: close\r\n"));
        assert!(text.ends_with("Allow: GET\r\n\r\nno\n"));
    }
}
