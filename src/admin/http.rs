//! What the admin endpoints share on top of hyper: a plain response value that handlers build
//! and tests inspect without a runtime, reading a request body within a size and time limit,
//! and a socket wrapper that gives up on a client that stops reading.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper::body::Body;
use hyper::header::{self, HeaderValue};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Sleep;

/// Content type of plain text bodies.
pub const TEXT: &str = "text/plain; charset=utf-8";
/// Content type of the Prometheus text exposition format.
pub const PROMETHEUS_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";
/// Content type of JSON bodies.
pub const JSON: &str = "application/json";

/// A complete response, before it is handed to hyper.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// Status code.
    pub status: u16,
    /// `Content-Type` header value.
    pub content_type: &'static str,
    /// Extra headers, such as `("allow", "GET, HEAD")`.
    pub headers: Vec<(&'static str, String)>,
    /// Body bytes.
    pub body: Vec<u8>,
}

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

    /// A JSON response, pretty-printed and ending with a newline like `/status`.
    pub fn json(status: u16, value: &impl serde::Serialize) -> Self {
        match serde_json::to_vec_pretty(value) {
            Ok(mut body) => {
                body.push(b'\n');
                Self::with_type(status, JSON, body)
            }
            Err(e) => Self::text(500, format!("cannot encode JSON: {e}\n")),
        }
    }

    /// Adds a header, such as `("allow", "GET, HEAD")`; `name` must be lowercase.
    pub fn header(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }

    /// The value of header `name`, if it was added.
    pub fn header_value(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The hyper response. hyper adds `content-length` (and leaves the body out for HEAD).
    pub fn into_http(self) -> hyper::Response<Full<Bytes>> {
        let status = hyper::StatusCode::from_u16(self.status)
            .unwrap_or(hyper::StatusCode::INTERNAL_SERVER_ERROR);
        let mut response = hyper::Response::new(Full::new(Bytes::from(self.body)));
        *response.status_mut() = status;
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(self.content_type),
        );
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        for (name, value) in self.headers {
            if let Ok(value) = HeaderValue::try_from(value) {
                headers.append(name, value);
            }
        }
        response
    }
}

/// Reads a whole request body of at most `limit` bytes within `timeout`. The error is the
/// response to send instead: 413 when too large, 408 when too slow, 400 when broken.
pub async fn read_body<B>(body: B, limit: usize, timeout: Duration) -> Result<Bytes, Response>
where
    B: Body,
    B::Error: std::error::Error + Send + Sync + 'static,
{
    match tokio::time::timeout(timeout, Limited::new(body, limit).collect()).await {
        Ok(Ok(collected)) => Ok(collected.to_bytes()),
        Ok(Err(e)) if e.is::<LengthLimitError>() => Err(too_large(limit)),
        Ok(Err(e)) => Err(
            Response::text(400, format!("cannot read the request body: {e}\n"))
                .header("connection", "close"),
        ),
        Err(_) => Err(Response::text(
            408,
            format!("request body not received within {timeout:?}\n"),
        )
        .header("connection", "close")),
    }
}

/// 413 for a body over `limit` bytes; the connection closes, as the rest of the body is unread.
pub fn too_large(limit: usize) -> Response {
    Response::text(
        413,
        format!("request body larger than {limit} bytes; the admin API takes none this large\n"),
    )
    .header("connection", "close")
}

/// The 408 written by hand to a client whose request head did not arrive in time (hyper
/// closes such connections without a word).
pub fn head_timeout(timeout: Duration) -> Vec<u8> {
    let body = format!("request head not received within {timeout:?}\n");
    format!(
        "HTTP/1.1 408 Request Timeout\r\ncontent-type: {TEXT}\r\ncontent-length: {}\r\n\
         connection: close\r\ncache-control: no-store\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// A socket whose writes fail with `TimedOut` once one has made no progress for `timeout`: a
/// client that stops reading its responses cannot hold a connection (and its task) forever.
/// Reads are bounded by hyper's header timeout and [`read_body`].
#[derive(Debug)]
pub struct WriteDeadline<S> {
    inner: S,
    timeout: Duration,
    stalled: Option<Pin<Box<Sleep>>>,
}

impl<S> WriteDeadline<S> {
    /// Wraps `inner`.
    pub fn new(inner: S, timeout: Duration) -> Self {
        Self {
            inner,
            timeout,
            stalled: None,
        }
    }

    /// The wrapped socket.
    pub fn into_inner(self) -> S {
        self.inner
    }

    /// Passes a ready result through (progress: the deadline starts again next time); on
    /// `Pending`, starts the deadline or reports that it passed.
    fn watch<T>(&mut self, cx: &mut Context<'_>, poll: Poll<io::Result<T>>) -> Poll<io::Result<T>> {
        if poll.is_ready() {
            self.stalled = None;
            return poll;
        }
        let timeout = self.timeout;
        let sleep = self
            .stalled
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
        ready!(sleep.as_mut().poll(cx));
        self.stalled = None;
        Poll::Ready(Err(io::Error::new(
            io::ErrorKind::TimedOut,
            format!("the client read nothing for {timeout:?}"),
        )))
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for WriteDeadline<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for WriteDeadline<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let poll = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.watch(cx, poll)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let poll = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.watch(cx, poll)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let poll = Pin::new(&mut self.inner).poll_flush(cx);
        self.watch(cx, poll)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let poll = Pin::new(&mut self.inner).poll_shutdown(cx);
        self.watch(cx, poll)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::StreamBody;
    use hyper::body::Frame;
    use tokio::io::AsyncWriteExt;

    #[test]
    fn builds_the_hyper_response() {
        let r = Response::text(405, "no\n")
            .header("allow", "GET, HEAD")
            .into_http();
        assert_eq!(r.status(), 405);
        let h = r.headers();
        assert_eq!(h["allow"], "GET, HEAD");
        assert_eq!(h["content-type"], TEXT);
        assert_eq!(h["cache-control"], "no-store");
    }

    #[tokio::test]
    async fn reads_bodies_within_the_limit() {
        let ok = read_body(
            Full::new(Bytes::from_static(b"abc")),
            3,
            Duration::from_secs(1),
        );
        assert_eq!(ok.await.unwrap(), "abc");
        let big = read_body(
            Full::new(Bytes::from_static(b"abcd")),
            3,
            Duration::from_secs(1),
        );
        assert_eq!(big.await.unwrap_err().status, 413);
    }

    #[tokio::test(start_paused = true)]
    async fn times_out_slow_bodies() {
        let endless = StreamBody::new(futures_util::stream::pending::<
            Result<Frame<Bytes>, std::convert::Infallible>,
        >());
        let r = read_body(endless, 10, Duration::from_secs(5)).await;
        let r = r.unwrap_err();
        assert_eq!(r.status, 408);
        assert_eq!(r.header_value("connection"), Some("close"));
    }

    #[tokio::test(start_paused = true)]
    async fn gives_up_on_a_peer_that_does_not_read() {
        let (client, _server) = tokio::io::duplex(16);
        let mut w = WriteDeadline::new(client, Duration::from_secs(10));
        let e = w.write_all(&[0u8; 64]).await.unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::TimedOut);
    }

    #[tokio::test(start_paused = true)]
    async fn progress_restarts_the_deadline() {
        let (client, mut server) = tokio::io::duplex(16);
        let mut w = WriteDeadline::new(client, Duration::from_secs(10));
        let reader = tokio::spawn(async move {
            let mut buf = [0u8; 16];
            let mut total = 0;
            // Read a little every 6 s: never 10 s without progress, 30 s in all.
            while total < 64 {
                tokio::time::sleep(Duration::from_secs(6)).await;
                total += tokio::io::AsyncReadExt::read(&mut server, &mut buf)
                    .await
                    .unwrap();
            }
        });
        w.write_all(&[0u8; 64]).await.unwrap();
        reader.await.unwrap();
    }
}
