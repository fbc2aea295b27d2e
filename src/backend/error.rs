//! Why a backend connection failed: one type for every kind of connection, each error
//! knowing its kind (the `kind` label of `shardis_backend_errors_total` and `/status`'s
//! `last_error_kind`) and keeping its cause.

use std::io;

use super::conn::ConnectError;
use crate::metrics::BackendErrorKind;
use crate::protocol::ProtocolError;

/// A failure of a backend connection, or of a request on it.
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    /// Opening the connection failed (TCP, TLS, the handshake).
    #[error(transparent)]
    Connect(#[from] ConnectError),
    /// The socket failed.
    #[error("{0}")]
    Io(#[from] io::Error),
    #[error("closed by backend")]
    Closed,
    /// The backend sent something that is not RESP.
    #[error("{0}")]
    Protocol(#[from] ProtocolError),
    /// A reply came with no request waiting for it.
    #[error("reply without a request")]
    Unexpected,
    /// One request was not answered within the pool's timeout (in ms).
    #[error("no reply within {0} ms")]
    Timeout(u128),
    /// Nothing at all was read for the hard timeout (in ms) while requests waited.
    #[error("nothing read for {0} ms")]
    Stalled(u128),
    /// A health check's PING got another answer than PONG.
    #[error("health check failed: {0}")]
    Health(String),
}

impl BackendError {
    /// The metric kind of this failure.
    pub fn kind(&self) -> BackendErrorKind {
        match self {
            BackendError::Connect(e) => e.kind(),
            BackendError::Io(_) | BackendError::Closed => BackendErrorKind::Closed,
            BackendError::Protocol(_) | BackendError::Unexpected => BackendErrorKind::Protocol,
            BackendError::Timeout(_) | BackendError::Stalled(_) => BackendErrorKind::Timeout,
            BackendError::Health(_) => BackendErrorKind::Health,
        }
    }
}
