//! Socket reads and writes shared by client sessions and backend links: one syscall per call,
//! and a short transfer clears the socket's readiness so the next wait costs no extra syscall.
//! Also the drain before closing that the admin server and client refusals share.
//!
//! tokio's `try_read`/`try_write` clear readiness only when the kernel says `EWOULDBLOCK`, so a
//! loop of `readable()` + `try_read` pays one wasted `recvfrom` per wake-up. A read that filled
//! less than the buffer drained the socket (for a stream socket), so readiness can be cleared
//! at once. tokio compares readiness ticks, so data that arrives after the read is never lost:
//! its edge sets readiness again.

use std::io;

use std::time::Duration;

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncReadExt, Interest};
use tokio::net::TcpStream;

/// Reads what is there, at most the buffer's spare capacity, with one `recv`.
///
/// `Ok(0)` is end of stream; `WouldBlock` means nothing was there.
pub fn read_once(sock: &TcpStream, buf: &mut BytesMut) -> io::Result<usize> {
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
pub fn write_front(sock: &TcpStream, buf: &mut BytesMut) -> io::Result<usize> {
    match write_once(sock, buf) {
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
fn write_once(sock: &TcpStream, data: &[u8]) -> io::Result<usize> {
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
