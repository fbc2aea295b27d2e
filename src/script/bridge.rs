//! The [`Call`] implementations the engine uses itself: the channel to the async side, a
//! borrowed one, and one that refuses (library loading).

use std::time::Instant;

use bytes::Bytes;
use tokio::sync::mpsc;

use super::{Call, CallError, Command, Protocol};

/// A request from a script's thread to the async side.
pub(super) struct Request {
    pub(super) command: Command,
    pub(super) reply: std::sync::mpsc::SyncSender<Result<Bytes, CallError>>,
}

/// [`Call`] through the channel to the async side.
pub(super) struct ChannelCall {
    pub(super) tx: mpsc::Sender<Request>,
    pub(super) reply_tx: std::sync::mpsc::SyncSender<Result<Bytes, CallError>>,
    pub(super) reply_rx: std::sync::mpsc::Receiver<Result<Bytes, CallError>>,
}

impl Call for ChannelCall {
    fn call(
        &mut self,
        args: Vec<Vec<u8>>,
        protocol: Protocol,
        deadline: Option<Instant>,
    ) -> Result<Bytes, CallError> {
        let req = Request {
            command: Command { args, protocol },
            reply: self.reply_tx.clone(),
        };
        self.tx
            .blocking_send(req)
            .map_err(|_| CallError::Failed("ERR the proxy stopped serving this script".into()))?;
        match deadline {
            None => self
                .reply_rx
                .recv()
                .map_err(|_| CallError::Failed("ERR the proxy dropped the call".into()))?,
            Some(d) => match self
                .reply_rx
                .recv_timeout(d.saturating_duration_since(Instant::now()))
            {
                Ok(r) => r,
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => Err(CallError::Timeout),
                Err(_) => Err(CallError::Failed("ERR the proxy dropped the call".into())),
            },
        }
    }
}

/// A borrowed [`Call`].
pub(super) struct Borrowed<'a>(pub(super) &'a mut dyn Call);

impl Call for Borrowed<'_> {
    fn call(
        &mut self,
        args: Vec<Vec<u8>>,
        protocol: Protocol,
        deadline: Option<Instant>,
    ) -> Result<Bytes, CallError> {
        self.0.call(args, protocol, deadline)
    }

    fn acl_check(&self, args: &[Vec<u8>]) -> bool {
        self.0.acl_check(args)
    }
}

/// The [`Call`] of a library body at load time, which may not call Redis.
pub(super) struct Refuse;

impl Call for Refuse {
    fn call(
        &mut self,
        _: Vec<Vec<u8>>,
        _: Protocol,
        _: Option<Instant>,
    ) -> Result<Bytes, CallError> {
        Err(CallError::Failed(
            "ERR redis.call is not allowed while loading a library".into(),
        ))
    }
}
