//! Maps a command's arguments to the backend that owns its keys. Pure: no I/O.

use std::ops::Range;

use crate::backend::Table;
use crate::protocol::command::Command;
pub use crate::protocol::keys::KeySpan;
use crate::protocol::keys::KeysError;
use crate::protocol::request::parse_int;

/// Why a command cannot be routed; each becomes a RESP error for the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouteError {
    WrongArity,
    /// The key count or the keys' layout is invalid (a bad numkeys, XREAD without STREAMS):
    /// Redis rejects it, and the session lets a backend say so in Redis's own words.
    Malformed,
    NoKeys,
    CrossSlot,
    /// Keys of several hash slots, on a cluster pool.
    CrossClusterSlot,
}

impl From<KeysError> for RouteError {
    fn from(e: KeysError) -> RouteError {
        match e {
            KeysError::WrongArity => RouteError::WrongArity,
            KeysError::Malformed => RouteError::Malformed,
        }
    }
}

/// Where `cmd`'s keys are in this invocation; `None` for commands without keys.
pub fn key_span(
    cmd: &Command,
    frame: &[u8],
    args: &[Range<usize>],
) -> Result<Option<KeySpan>, RouteError> {
    Ok(crate::protocol::keys::key_span(cmd, frame, args)?)
}

impl RouteError {
    /// The RESP error line (without `-` and CRLF) for command `name`.
    pub fn message(&self, name: &str) -> String {
        match self {
            RouteError::WrongArity => format!("ERR wrong number of arguments for '{name}' command"),
            RouteError::Malformed => "ERR syntax error".to_string(),
            RouteError::NoKeys => format!("ERR shardis needs at least one key to route '{name}'"),
            RouteError::CrossSlot => {
                "CROSSSLOT Keys in request don't hash to the same backend".to_string()
            }
            RouteError::CrossClusterSlot => {
                "CROSSSLOT Keys in request don't hash to the same slot".to_string()
            }
        }
    }
}

/// COPY's `DB n` option: `Err` with Redis's error for a non-integer, `Ok(true)` when it names
/// another database than `db`, the backends' (the option goes to them as it is).
pub fn names_other_db(
    frame: &[u8],
    options: &[Range<usize>],
    db: u32,
) -> Result<bool, &'static str> {
    let mut other = false;
    for (i, a) in options.iter().enumerate() {
        if frame[a.clone()].eq_ignore_ascii_case(b"db") {
            match options.get(i + 1).map(|r| parse_int(&frame[r.clone()])) {
                Some(Some(n)) if n == i64::from(db) => {}
                Some(Some(_)) => other = true,
                Some(None) => return Err("ERR value is not an integer or out of range"),
                None => return Err("ERR syntax error"),
            }
        }
    }
    Ok(other)
}

/// The one backend that owns every key in `span`, or `CrossSlot`. On a cluster pool, the
/// keys must share a hash slot, as Redis Cluster requires.
pub fn single_backend(
    table: &Table,
    frame: &[u8],
    args: &[Range<usize>],
    span: &KeySpan,
) -> Result<usize, RouteError> {
    let mut positions = span.positions();
    let first = positions.next().ok_or(RouteError::NoKeys)?;
    if let Some(route) = &table.cluster {
        let slot = crate::cluster::Route::slot(&frame[args[first].clone()]);
        if positions.any(|pos| crate::cluster::Route::slot(&frame[args[pos].clone()]) != slot) {
            return Err(RouteError::CrossClusterSlot);
        }
        return Ok(route.owner(slot));
    }
    let backend = table.backend_for(&frame[args[first].clone()]);
    for pos in positions {
        if table.backend_for(&frame[args[pos].clone()]) != backend {
            return Err(RouteError::CrossSlot);
        }
    }
    Ok(backend)
}
