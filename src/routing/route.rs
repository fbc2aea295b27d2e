//! Routing one command: the pool and backend that own its keys, or why it cannot go to one.
//! Pure: no I/O.

use std::ops::Range;
use std::sync::Arc;

use super::Table;
use super::followup::Retry;
use crate::backend::Backend;
use crate::protocol::command::{Command, Keys, flag};
use crate::protocol::keys::{KeySpan, KeysError, key_span};
use crate::protocol::request::parse_int;

/// Why a command cannot be routed. Each is answered to the client as a RESP error whose text
/// is the `Display` of the error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RouteError {
    #[error("ERR wrong number of arguments for '{0}' command")]
    WrongArity(&'static str),
    /// The key count or the keys' layout is invalid (a bad numkeys, XREAD without STREAMS):
    /// Redis rejects it, and the session lets a backend say so in Redis's own words.
    #[error("ERR syntax error")]
    Malformed,
    #[error("ERR shardis needs at least one key to route '{0}'")]
    NoKeys(&'static str),
    #[error("CROSSSLOT Keys in request don't hash to the same backend")]
    CrossSlot,
    /// Keys of several hash slots, on a cluster pool.
    #[error("CROSSSLOT Keys in request don't hash to the same slot")]
    CrossClusterSlot,
    /// A keyed read with `read_from = "replica"` and no replica of its primary up.
    #[error("ERR no replica of {0} is up to serve this read (read_from = \"replica\")")]
    NoReplica(String),
    /// A cluster pool that has no slot map yet.
    #[error("CLUSTERDOWN shardis has no slot map yet: no seed or node answered CLUSTER SHARDS")]
    NoSlotMap,
    /// A pool (or a configuration) without backends.
    #[error("ERR shardis has no backend to serve this")]
    NoBackend,
    /// Keys of several pools in a command that cannot be split.
    #[error("CROSSSLOT Keys in request don't route to the same pool")]
    CrossPool,
    /// A key that matches no route, with no catch-all.
    #[error(
        "ERR no route for key '{0}': no [[routes]] prefix matches it and there is no [routing] catch_all"
    )]
    NoRoute(String),
    /// A key that is nothing but its route's prefix, which the route removes.
    #[error("ERR key '{0}' is empty once its route removes its prefix (remove_prefix)")]
    EmptyKey(String),
}

impl RouteError {
    /// The error for command `name` whose keys could not be found.
    pub fn keys(e: KeysError, name: &'static str) -> RouteError {
        match e {
            KeysError::WrongArity => RouteError::WrongArity(name),
            KeysError::Malformed => RouteError::Malformed,
        }
    }

    /// Fills in the command name of an error made without one.
    pub(super) fn named(self, name: &'static str) -> RouteError {
        match self {
            RouteError::NoKeys(_) => RouteError::NoKeys(name),
            other => other,
        }
    }
}

/// A backend chosen for a request, and how its replies are followed up (its pool's
/// [`Retry`]).
#[derive(Clone)]
pub struct Dest {
    pub backend: Arc<Backend>,
    pub retry: Retry,
}

impl Table {
    /// The backend that owns every key of `cmd` (for a keyed read on a cluster pool with
    /// `read_from` set, a replica of it): `Ok(None)` for a command that may run without keys
    /// (EVAL ... 0); `Err` for one that cannot be routed. `client` picks the same replica for
    /// a client as long as the replicas stay.
    pub fn route(
        &self,
        cmd: &'static Command,
        frame: &[u8],
        args: &[Range<usize>],
        client: u64,
    ) -> Result<Option<Dest>, RouteError> {
        let Some(span) = key_span(cmd, frame, args).map_err(|e| RouteError::keys(e, cmd.name))?
        else {
            return Ok(None);
        };
        self.route_span(cmd, frame, args, &span, client).map(Some)
    }

    /// [`Table::route`] for keys already found.
    pub fn route_span(
        &self,
        cmd: &'static Command,
        frame: &[u8],
        args: &[Range<usize>],
        span: &KeySpan,
        client: u64,
    ) -> Result<Dest, RouteError> {
        if self.routes.is_some() {
            return self.route_routed(cmd, frame, args, span, client);
        }
        let key = |pos: usize| &frame[args[pos].clone()];
        let first = key(span.dest.unwrap_or(span.first));
        let pool = self
            .pools
            .get(self.catch_all)
            .ok_or(RouteError::NoBackend)?;
        let backend = if span.dest.is_none() && span.first == span.last {
            // One key, most commands: no other key to agree with.
            pool.owner(first)
        } else {
            pool.single(span.positions().map(key))
                .map_err(|e| e.named(cmd.name))?
        };
        pool.node_for(backend, keyed_read(cmd), client)
    }

    /// The owner of channel `name`, on its pool's primary: channels follow routes like keys,
    /// but no prefix is removed from them.
    pub fn owner_of(&self, name: &[u8]) -> Result<Dest, RouteError> {
        let at = self.locate(name)?;
        let pool = self.pools.get(at.pool).ok_or(RouteError::NoBackend)?;
        pool.dest(pool.owner(name)).ok_or_else(|| pool.no_node())
    }

    /// The owner of key `key` (DEBUG OBJECT's), on its pool's primary, and the key as sent.
    pub fn owner_of_key<'k>(&self, key: &'k [u8]) -> Result<(Dest, &'k [u8]), RouteError> {
        let at = self.locate(key)?;
        let pool = self.pools.get(at.pool).ok_or(RouteError::NoBackend)?;
        let sent = &key[at.strip..];
        let dest = pool.dest(pool.owner(sent)).ok_or_else(|| pool.no_node())?;
        Ok((dest, sent))
    }

    /// The backend that answers a command about no key that any backend can answer.
    pub fn any(&self) -> Result<Dest, RouteError> {
        let pool = self.default_pool().ok_or(RouteError::NoBackend)?;
        pool.dest(0).ok_or_else(|| pool.no_node())
    }
}

/// Whether `cmd` reads keys and writes nothing: what a cluster pool may send to a replica.
#[inline]
pub fn keyed_read(cmd: &Command) -> bool {
    cmd.flags & flag::READONLY != 0 && cmd.keys != Keys::None && cmd.flags & flag::WRITE == 0
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::command::lookup;
    use crate::protocol::request::RequestParser;

    fn table(n: usize) -> Table {
        let backends: Vec<String> = (1..=n).map(|i| format!("127.0.0.1:{i}")).collect();
        let cfg = crate::config::Config::from_backends(&backends).unwrap();
        Table::detached(&cfg.pools[0]).0
    }

    fn route(table: &Table, parts: &[&str]) -> Result<Option<String>, RouteError> {
        let mut input = format!("*{}\r\n", parts.len());
        for p in parts {
            input += &format!("${}\r\n{p}\r\n", p.len());
        }
        let mut p = RequestParser::new(1 << 20);
        p.parse(input.as_bytes()).unwrap().unwrap();
        let (_, cmd) = lookup(parts[0].as_bytes()).unwrap();
        Ok(table
            .route(cmd, input.as_bytes(), p.args(), 0)?
            .map(|d| d.backend.state.name.clone()))
    }

    #[test]
    fn keys_of_one_backend_route_to_it_and_others_are_refused() {
        let t = table(3);
        let owner = route(&t, &["GET", "{u}a"]).unwrap().unwrap();
        assert_eq!(
            route(&t, &["MSETNX", "{u}a", "1", "{u}b", "2"]).unwrap(),
            Some(owner)
        );
        assert_eq!(route(&t, &["EVAL", "return 1", "0"]).unwrap(), None);
        let spread: Vec<String> = (0..50).map(|i| format!("k{i}")).collect();
        let mut cmd = vec!["SINTER"];
        cmd.extend(spread.iter().map(String::as_str));
        assert_eq!(route(&t, &cmd), Err(RouteError::CrossSlot));
        assert_eq!(
            route(&t, &["EVAL", "s", "2", "a"]),
            Err(RouteError::Malformed)
        );
        assert_eq!(
            RouteError::NoKeys("mget").to_string(),
            "ERR shardis needs at least one key to route 'mget'"
        );
    }

    #[test]
    fn copy_db_option() {
        let (frame, args) = {
            let parts = ["db", "3"];
            let mut frame = Vec::new();
            let mut args = Vec::new();
            for p in parts {
                let start = frame.len();
                frame.extend_from_slice(p.as_bytes());
                args.push(start..frame.len());
            }
            (frame, args)
        };
        assert_eq!(names_other_db(&frame, &args, 3), Ok(false));
        assert_eq!(names_other_db(&frame, &args, 0), Ok(true));
        assert_eq!(
            names_other_db(&frame, &args[..1], 0),
            Err("ERR syntax error")
        );
    }
}
