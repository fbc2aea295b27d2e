//! A TLS connection served by its own task, beside the code that uses it: the session, the
//! handshake and the pipelined backend loop run unchanged on one end of a socket pair
//! ([`Stream::Relayed`]), and [`relay`] copies between the other end and the TLS stream. The
//! plain path never pays for TLS, and TLS needs no second implementation of the readiness-driven
//! loops.
//!
//! Ends as a TCP connection would: when the peer closes, the inner end sees end of stream and
//! may still write its last replies; when the inner end closes, what it wrote is sent, then
//! `close_notify`, and the connection is closed.

use std::io;
use std::time::Duration;

use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpStream, UnixStream};

use super::{ClientTls, ServerTls};
use crate::net::{Relayed, Stream};

/// Bytes copied per read in each direction: one whole TLS record's worth of plaintext.
const RELAY_BUFFER: usize = 16 * 1024;

/// Why a client's TLS handshake did not complete.
#[derive(Debug, thiserror::Error)]
pub enum HandshakeError {
    #[error("TLS handshake not done within {} ms", .0.as_millis())]
    Timeout(Duration),
    #[error("TLS handshake failed: {0}")]
    Tls(io::Error),
    #[error("socket: {0}")]
    Socket(io::Error),
}

/// Runs the server side of the TLS handshake on an accepted connection, within the handshake
/// timeout, and starts its relay.
pub async fn accept(tcp: TcpStream, tls: &ServerTls) -> Result<Stream, HandshakeError> {
    let _ = tcp.set_nodelay(true);
    let peer = tcp.peer_addr().map_err(HandshakeError::Socket)?;
    let local = tcp.local_addr().map_err(HandshakeError::Socket)?;
    let conn = match tokio::time::timeout(tls.handshake_timeout, tls.acceptor.accept(tcp)).await {
        Ok(Ok(conn)) => conn,
        Ok(Err(e)) => return Err(HandshakeError::Tls(e)),
        Err(_) => return Err(HandshakeError::Timeout(tls.handshake_timeout)),
    };
    let (inner, outer) = UnixStream::pair().map_err(HandshakeError::Socket)?;
    tokio::spawn(relay(conn, outer));
    Ok(Stream::Relayed(Box::new(Relayed {
        sock: inner,
        peer,
        local,
    })))
}

/// Runs the client side of the TLS handshake to a backend (the caller bounds its time) and
/// starts its relay.
pub async fn connect(
    tcp: TcpStream,
    tls: &ClientTls,
    name: ServerName<'static>,
) -> io::Result<Stream> {
    let _ = tcp.set_nodelay(true);
    let peer = tcp.peer_addr()?;
    let local = tcp.local_addr()?;
    let conn = tls.connector.connect(name, tcp).await?;
    let (inner, outer) = UnixStream::pair()?;
    tokio::spawn(relay(conn, outer));
    Ok(Stream::Relayed(Box::new(Relayed {
        sock: inner,
        peer,
        local,
    })))
}

/// Copies between a TLS stream and the outer end of a socket pair until the inner end is
/// closed (or the connection fails both ways).
pub async fn relay<T>(tls: T, outer: UnixStream)
where
    T: AsyncRead + AsyncWrite + Send + Unpin,
{
    let (mut tls_rx, mut tls_tx) = tokio::io::split(tls);
    let (mut rx, mut tx) = outer.into_split();
    let up = async {
        let mut buf = vec![0u8; RELAY_BUFFER];
        let result = pump(&mut tls_rx, &mut tx, &mut buf).await;
        // The peer is done sending (or gone): the inner end reads end of stream, and may
        // still write.
        let _ = tx.shutdown().await;
        result
    };
    let down = async {
        let mut buf = vec![0u8; RELAY_BUFFER];
        let result = pump(&mut rx, &mut tls_tx, &mut buf).await;
        // close_notify, then the TCP connection closes as the task ends.
        let _ = tls_tx.shutdown().await;
        result
    };
    tokio::pin!(up, down);
    tokio::select! {
        _ = &mut down => {}
        _ = &mut up => {
            let _ = down.await;
        }
    }
}

/// Copies `from` to `to` until end of stream, flushing after each read.
async fn pump<R, W>(from: &mut R, to: &mut W, buf: &mut [u8]) -> io::Result<()>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    loop {
        let n = from.read(buf).await?;
        if n == 0 {
            return Ok(());
        }
        to.write_all(&buf[..n]).await?;
        to.flush().await?;
    }
}
