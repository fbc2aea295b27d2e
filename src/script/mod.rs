//! Lua scripts run inside the proxy, as Redis 7.0 runs them: the engine that EVAL, EVALSHA and
//! FCALL whose keys span backends will run on. It depends on nothing in the crate but
//! [`crate::protocol`]; the proxy plugs in through [`Dispatch`] (or [`Call`]).
//!
//! DESIGN (filled in below).

mod api;
mod convert;
mod engine;
pub mod function;
mod lib;
mod lua;
mod run;
mod state;

use std::future::Future;
use std::time::Instant;

use bytes::Bytes;

pub use api::{REDIS_VERSION, REDIS_VERSION_NUM};
pub use engine::{Engine, EngineConfig, Invocation, What};

/// A RESP protocol version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    Resp2,
    Resp3,
}

/// One command a script sends with `redis.call` or `redis.pcall`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Command {
    /// The command name and its arguments, as the script gave them (numbers as `%.17g`).
    pub args: Vec<Vec<u8>>,
    /// The protocol the reply must be in (the script's `redis.setresp`, RESP2 by default).
    pub protocol: Protocol,
}

impl Command {
    /// The command as a RESP array of bulk strings.
    pub fn to_resp(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(16 + self.args.iter().map(|a| a.len() + 16).sum::<usize>());
        out.push(b'*');
        out.extend_from_slice(itoa::Buffer::new().format(self.args.len()).as_bytes());
        out.extend_from_slice(b"\r\n");
        for a in &self.args {
            out.push(b'$');
            out.extend_from_slice(itoa::Buffer::new().format(a.len()).as_bytes());
            out.extend_from_slice(b"\r\n");
            out.extend_from_slice(a);
            out.extend_from_slice(b"\r\n");
        }
        out
    }
}

/// Why a command got no reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallError {
    /// The script's deadline passed while it waited.
    Timeout,
    /// The command could not be served: the text becomes the script's error (`ERR ...`, or
    /// `-CODE ...` for another code).
    Failed(String),
}

/// What the proxy implements: serve one command of a running script and answer with its
/// reply frame (one RESP reply, in `command.protocol`). Called from the async side; the
/// script waits meanwhile.
pub trait Dispatch: Sync {
    fn call(&self, command: Command) -> impl Future<Output = Result<Bytes, CallError>> + Send;
}

/// The same, called on the script's own thread (blocking until the reply).
pub trait Call {
    fn call(&mut self, args: Vec<Vec<u8>>, protocol: Protocol, deadline: Option<Instant>) -> Result<Bytes, CallError>;

    /// `redis.acl_check_cmd`: whether the calling user may run `args`.
    fn acl_check(&self, _args: &[Vec<u8>]) -> bool {
        true
    }
}

/// The sha1 of `data` in lowercase hex, as EVALSHA and `redis.sha1hex` compute it.
pub fn sha1hex(data: &[u8]) -> String {
    sha1_smol::Sha1::from(data).digest().to_string()
}
