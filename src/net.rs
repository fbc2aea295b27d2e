//! Socket reads and writes shared by client sessions and backend links: one syscall per call,
//! and a short transfer clears the socket's readiness so the next wait costs no extra syscall.
//! Also the drain before closing that the admin server and client refusals share, and
//! [`Stream`]: the socket a session or a backend connection runs on.
//!
//! tokio's `try_read`/`try_write` clear readiness only when the kernel says `EWOULDBLOCK`, so a
//! loop of `readable()` + `try_read` pays one wasted `recvfrom` per wake-up. A read that filled
//! less than the buffer drained the socket (for a stream socket), so readiness can be cleared
//! at once. tokio compares readiness ticks, so data that arrives after the read is never lost:
//! its edge sets readiness again.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, Interest, ReadBuf};
use tokio::net::{TcpStream, UnixStream};

/// The socket a client session or a backend connection runs on: a TCP connection, or one end
/// of a socket pair whose other end a task relays to a TLS connection ([`crate::tls::relay`]).
/// Either way the readiness-driven reads and writes below work the same, so a plain
/// connection pays one branch for TLS existing, and nothing else.
#[derive(Debug)]
pub enum Stream {
    Tcp(TcpStream),
    /// The relayed end of a TLS connection. Boxed so that a plain connection's `Stream` is no
    /// bigger than its `TcpStream` plus the tag.
    Relayed(Box<Relayed>),
}

/// The relayed end of a TLS connection, with the addresses of the TCP connection under it.
#[derive(Debug)]
pub struct Relayed {
    pub sock: UnixStream,
    pub peer: SocketAddr,
    pub local: SocketAddr,
}

/// What [`read_once`] and [`write_front`] need from a socket: both kinds have it.
trait Readiness {
    fn try_io<R>(&self, interest: Interest, f: impl FnOnce() -> io::Result<R>) -> io::Result<R>;
    fn try_read_buf(&self, buf: &mut BytesMut) -> io::Result<usize>;
    fn try_write(&self, data: &[u8]) -> io::Result<usize>;
}

macro_rules! readiness {
    ($t:ty) => {
        impl Readiness for $t {
            #[inline]
            fn try_io<R>(
                &self,
                interest: Interest,
                f: impl FnOnce() -> io::Result<R>,
            ) -> io::Result<R> {
                <$t>::try_io(self, interest, f)
            }
            #[inline]
            fn try_read_buf(&self, buf: &mut BytesMut) -> io::Result<usize> {
                <$t>::try_read_buf(self, buf)
            }
            #[inline]
            fn try_write(&self, data: &[u8]) -> io::Result<usize> {
                <$t>::try_write(self, data)
            }
        }
    };
}
readiness!(TcpStream);
readiness!(UnixStream);

impl Stream {
    /// Waits until the socket may be readable.
    #[inline]
    pub async fn readable(&self) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => s.readable().await,
            Stream::Relayed(r) => r.sock.readable().await,
        }
    }

    /// Waits until the socket may be writable.
    #[inline]
    pub async fn writable(&self) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => s.writable().await,
            Stream::Relayed(r) => r.sock.writable().await,
        }
    }

    /// One non-blocking read into `buf`.
    pub fn try_read(&self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.try_read(buf),
            Stream::Relayed(r) => r.sock.try_read(buf),
        }
    }

    /// The remote address of the connection (for a relayed one, of the TCP connection).
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        match self {
            Stream::Tcp(s) => s.peer_addr(),
            Stream::Relayed(r) => Ok(r.peer),
        }
    }

    /// The local address of the connection (for a relayed one, of the TCP connection).
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        match self {
            Stream::Tcp(s) => s.local_addr(),
            Stream::Relayed(r) => Ok(r.local),
        }
    }

    /// Sets TCP_NODELAY; a relayed stream's relay set it on its TCP connection.
    pub fn set_nodelay(&self, on: bool) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => s.set_nodelay(on),
            Stream::Relayed(_) => Ok(()),
        }
    }

    /// True for the relayed end of a TLS connection.
    pub fn is_tls(&self) -> bool {
        matches!(self, Stream::Relayed(_))
    }
}

// For the handshakes, which read and write with the ordinary async traits.
impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Relayed(r) => Pin::new(&mut r.sock).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Relayed(r) => Pin::new(&mut r.sock).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_flush(cx),
            Stream::Relayed(r) => Pin::new(&mut r.sock).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Relayed(r) => Pin::new(&mut r.sock).poll_shutdown(cx),
        }
    }
}

/// Reads what is there, at most the buffer's spare capacity, with one `recv`.
///
/// `Ok(0)` is end of stream; `WouldBlock` means nothing was there.
#[inline]
pub fn read_once(sock: &Stream, buf: &mut BytesMut) -> io::Result<usize> {
    match sock {
        Stream::Tcp(s) => read_once_on(s, buf),
        Stream::Relayed(r) => read_once_on(&r.sock, buf),
    }
}

fn read_once_on(sock: &impl Readiness, buf: &mut BytesMut) -> io::Result<usize> {
    let spare = buf.capacity() - buf.len();
    let mut read = 0;
    let result = sock.try_io(Interest::READABLE, || {
        read = sock.try_read_buf(buf)?;
        if read > 0 && read < spare {
            // Drained: tell the reactor, so that the next `readable()` really waits.
            Err(io::ErrorKind::WouldBlock.into())
        } else {
            Ok(read)
        }
    });
    match result {
        Err(e) if e.kind() == io::ErrorKind::WouldBlock && read > 0 => Ok(read),
        other => other,
    }
}

/// Writes the front of `buf` with one `send` and removes what was written; returns how many
/// bytes that was, 0 when the socket takes nothing now. After a short write the socket's
/// readiness is cleared, so waiting on `writable()` for the rest costs no extra syscall.
#[inline]
pub fn write_front(sock: &Stream, buf: &mut BytesMut) -> io::Result<usize> {
    let wrote = match sock {
        Stream::Tcp(s) => write_once(s, buf),
        Stream::Relayed(r) => write_once(&r.sock, buf),
    };
    match wrote {
        Ok(n) => {
            buf.advance(n);
            Ok(n)
        }
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(0),
        Err(e) => Err(e),
    }
}

/// Writes as much of `data` as the socket takes with one `send`.
///
/// Returns the bytes written; `WouldBlock` when the socket took nothing.
fn write_once(sock: &impl Readiness, data: &[u8]) -> io::Result<usize> {
    let mut written = 0;
    let result = sock.try_io(Interest::WRITABLE, || {
        written = sock.try_write(data)?;
        if written < data.len() {
            // The send buffer is full: the next `writable()` waits for room.
            Err(io::ErrorKind::WouldBlock.into())
        } else {
            Ok(written)
        }
    });
    match result {
        Err(e) if e.kind() == io::ErrorKind::WouldBlock && written > 0 => Ok(written),
        other => other,
    }
}

/// Reads and drops what the peer still sends, until it closes, `limit` bytes, or `deadline`.
///
/// Closing a socket with unread input makes the kernel send a reset, which can destroy the
/// last thing written (an error, a refusal) before the peer reads it; call this after writing
/// it and half-closing, just before dropping the socket.
pub async fn drain_before_close(stream: &mut TcpStream, limit: usize, deadline: Duration) {
    let _ = tokio::time::timeout(deadline, async {
        let mut buf = [0u8; 4096];
        let mut drained = 0;
        while drained < limit {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => drained += n,
            }
        }
    })
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_plain_stream_costs_no_more_than_its_socket_and_a_tag() {
        assert!(
            std::mem::size_of::<Stream>()
                <= std::mem::size_of::<TcpStream>() + std::mem::size_of::<usize>(),
            "Stream is {} bytes, TcpStream {}",
            std::mem::size_of::<Stream>(),
            std::mem::size_of::<TcpStream>()
        );
    }
}
