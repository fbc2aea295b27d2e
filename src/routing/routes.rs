//! Prefix routes: the pool that serves a key (the longest matching `[[routes]]` prefix, else
//! the catch-all), how many of its leading bytes are removed before it is sent, and which
//! pools get a mirrored copy. Built once per table from the configuration; a lookup walks
//! two tries (exact and case-insensitive prefixes), never the list. Pure: no I/O.
//!
//! Which key is hashed: the key as sent to the pool, that is without a removed prefix, so a
//! pool holds and places exactly what a client reaching it directly would (Envoy's
//! redis_proxy does the same: `PrefixRoutes::upstreamPool` erases the prefix from the
//! request's key, and the connection pool hashes that key).

use std::ops::Range;

use bytes::{Bytes, BytesMut};

use super::prefix::Prefixes;
use super::route::RouteError;
use super::{Pool, Table};
use crate::config::{MirrorConfig, RoutingConfig};
use crate::protocol::command::{Command, Kind, SessionCmd};
use crate::protocol::keys::{KeySpan, key_span};
use crate::protocol::reply::{put_array_len, put_bulk};

/// [`Located::route`] when the table has no routes.
pub const NO_ROUTE: u32 = u32::MAX;

/// Where a key goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Located {
    /// Its pool (index into the table's pools).
    pub pool: usize,
    /// Leading bytes removed before it is sent (its route's prefix, with `remove_prefix`).
    pub strip: usize,
    /// The route it took (index into [`Routes`]'s targets; the catch-all is the last), or
    /// [`NO_ROUTE`].
    pub route: u32,
}

/// A mirror of a route, ready for the data path.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MirrorRule {
    /// The mirror pool (index into the table's pools).
    pub pool: usize,
    /// A request is mirrored when a random `u32` is below this (2^32: always).
    pub threshold: u64,
    /// Only commands that write are mirrored.
    pub writes_only: bool,
}

impl MirrorRule {
    fn new(m: &MirrorConfig) -> MirrorRule {
        MirrorRule {
            pool: m.pool,
            threshold: (m.fraction.clamp(0.0, 1.0) * (1u64 << 32) as f64) as u64,
            writes_only: m.exclude_reads,
        }
    }

    /// Whether a command (`write`: it writes) with the random number `roll` is mirrored.
    #[inline]
    pub fn takes(&self, write: bool, roll: u32) -> bool {
        (write || !self.writes_only) && u64::from(roll) < self.threshold
    }
}

/// What one route (or the catch-all) does with the keys it matches.
#[derive(Debug)]
pub struct Target {
    pub pool: usize,
    /// Bytes removed from the front of the key (0 without `remove_prefix`).
    pub strip: usize,
    /// The route's prefix as configured (empty for the catch-all), for messages.
    pub prefix: Box<str>,
    pub mirrors: Box<[MirrorRule]>,
}

/// The prefix routes of a table.
#[derive(Debug)]
pub struct Routes {
    exact: Prefixes,
    folded: Prefixes,
    /// One per `[[routes]]` entry, in file order, then the catch-all's when there is one.
    targets: Vec<Target>,
    catch_all: Option<u32>,
    strips: bool,
    mirrors: bool,
}

impl Routes {
    /// The routes of `config`; `None` when it has none (and no catch-all mirror): every key
    /// then goes to the catch-all as it is.
    pub fn new(config: &RoutingConfig) -> Option<Routes> {
        if config.routes.is_empty() && config.catch_all_mirror.is_empty() {
            return None;
        }
        let mut targets: Vec<Target> = config
            .routes
            .iter()
            .map(|r| Target {
                pool: r.pool,
                strip: if r.remove_prefix { r.prefix.len() } else { 0 },
                prefix: r.prefix.clone().into_boxed_str(),
                mirrors: r.mirror.iter().map(MirrorRule::new).collect(),
            })
            .collect();
        let entries = |ci: bool| {
            config
                .routes
                .iter()
                .enumerate()
                .filter(move |(_, r)| r.case_insensitive == ci)
                .map(|(i, r)| (r.prefix.as_bytes(), i as u32))
        };
        let exact = Prefixes::new(entries(false), false);
        let folded = Prefixes::new(entries(true), true);
        let catch_all = config.catch_all.map(|pool| {
            targets.push(Target {
                pool,
                strip: 0,
                prefix: Box::from(""),
                mirrors: config
                    .catch_all_mirror
                    .iter()
                    .map(MirrorRule::new)
                    .collect(),
            });
            (targets.len() - 1) as u32
        });
        let strips = targets.iter().any(|t| t.strip > 0);
        let mirrors = targets.iter().any(|t| !t.mirrors.is_empty());
        Some(Routes {
            exact,
            folded,
            targets,
            catch_all,
            strips,
            mirrors,
        })
    }

    /// The route `key` takes: the longest matching prefix (an exact one over a
    /// case-insensitive one of the same length), else the catch-all.
    #[inline]
    pub fn locate(&self, key: &[u8]) -> Result<Located, RouteError> {
        let exact = self.exact.longest(key);
        let folded = self.folded.longest(key);
        let route = match (exact, folded) {
            (Some((e, el)), Some((f, fl))) => Some(if fl > el { f } else { e }),
            (Some((e, _)), None) => Some(e),
            (None, Some((f, _))) => Some(f),
            (None, None) => self.catch_all,
        };
        let Some(route) = route else {
            return Err(RouteError::NoRoute(shown(key)));
        };
        let target = &self.targets[route as usize];
        if target.strip > 0 && key.len() == target.strip {
            return Err(RouteError::EmptyKey(shown(key)));
        }
        Ok(Located {
            pool: target.pool,
            strip: target.strip,
            route,
        })
    }

    /// Route `route` of [`Located::route`].
    pub fn target(&self, route: u32) -> Option<&Target> {
        self.targets.get(route as usize)
    }

    /// Whether some route removes its prefix.
    pub fn strips(&self) -> bool {
        self.strips
    }

    /// Whether some route mirrors.
    pub fn mirrors(&self) -> bool {
        self.mirrors
    }
}

/// A key as error messages show it: lossy UTF-8, at most 128 bytes.
fn shown(key: &[u8]) -> String {
    String::from_utf8_lossy(&key[..key.len().min(128)]).into_owned()
}

/// Whether `cmd`'s "keys" are channel names, which follow routes but are never rewritten.
fn names_channels(cmd: &Command) -> bool {
    matches!(cmd.kind, Kind::Session(SessionCmd::Publish(_)))
}

impl Table {
    /// The pool `key` goes to, and how it is sent: with no routes, the catch-all's, as it is.
    #[inline]
    pub fn locate(&self, key: &[u8]) -> Result<Located, RouteError> {
        match &self.routes {
            None => Ok(Located {
                pool: self.catch_all,
                strip: 0,
                route: NO_ROUTE,
            }),
            Some(routes) => routes.locate(key),
        }
    }

    /// The prefix routes, if the table has any.
    pub fn routes(&self) -> Option<&Routes> {
        self.routes.as_deref()
    }

    /// The mirrors of route `route` (of [`Located::route`]).
    pub fn mirrors_of(&self, route: u32) -> &[MirrorRule] {
        self.routes
            .as_deref()
            .and_then(|r| r.target(route))
            .map_or(&[], |t| &t.mirrors)
    }

    /// [`Table::route_span`] when the table has routes: every key must go to one pool (and,
    /// as always, one backend), and each is hashed as it is sent.
    pub(super) fn route_routed(
        &self,
        cmd: &'static Command,
        frame: &[u8],
        args: &[Range<usize>],
        span: &KeySpan,
        client: u64,
    ) -> Result<super::Dest, RouteError> {
        let raw = names_channels(cmd);
        let sent = |pos: usize| -> Result<(usize, &[u8]), RouteError> {
            let key = &frame[args[pos].clone()];
            let at = self.locate(key)?;
            Ok((at.pool, if raw { key } else { &key[at.strip..] }))
        };
        let (pool_index, first) = sent(span.dest.unwrap_or(span.first))?;
        let pool: &Pool = self.pools.get(pool_index).ok_or(RouteError::NoBackend)?;
        let backend = if span.dest.is_none() && span.first == span.last {
            pool.owner(first)
        } else {
            for pos in span.positions() {
                if sent(pos)?.0 != pool_index {
                    return Err(RouteError::CrossPool);
                }
            }
            pool.single(
                span.positions()
                    .filter_map(|pos| sent(pos).ok().map(|s| s.1)),
            )
            .map_err(|e| e.named(cmd.name))?
        };
        pool.node_for(backend, super::keyed_read(cmd), client)
    }

    /// The frame to send for `cmd` routed whole: `frame` itself, or, when a route removes a
    /// prefix from one of its keys, a copy without those prefixes.
    pub fn unprefixed(&self, cmd: &Command, frame: Bytes, args: &[Range<usize>]) -> Bytes {
        if !self.routes.as_ref().is_some_and(|r| r.strips) || names_channels(cmd) {
            return frame;
        }
        let span = match key_span(cmd, &frame, args) {
            Ok(Some(span)) => span,
            // DEBUG OBJECT key: the one keyless command that names a key.
            _ if cmd.name == "debug"
                && args.len() == 3
                && frame[args[1].clone()].eq_ignore_ascii_case(b"object") =>
            {
                KeySpan {
                    dest: None,
                    first: 2,
                    last: 2,
                    step: 1,
                }
            }
            _ => return frame,
        };
        let strip = |pos: usize| {
            self.locate(&frame[args[pos].clone()])
                .map_or(0, |l| l.strip)
        };
        if span.positions().all(|pos| strip(pos) == 0) {
            return frame;
        }
        let mut out = BytesMut::with_capacity(frame.len() + 16);
        put_array_len(&mut out, args.len());
        // Key positions come in increasing order (a destination key before the others).
        let mut keys = span.positions().peekable();
        for (i, r) in args.iter().enumerate() {
            let cut = if keys.peek() == Some(&i) {
                keys.next();
                strip(i)
            } else {
                0
            };
            put_bulk(&mut out, &frame[r.start + cut..r.end]);
        }
        out.freeze()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn config(routes: &str) -> Config {
        let text = format!(
            "[server]\nlisten = \"127.0.0.1:1\"\n\
             [[pools]]\nname = \"a\"\nbackends = [{{ address = \"127.0.0.1:2\" }}]\n\
             [[pools]]\nname = \"b\"\nbackends = [{{ address = \"127.0.0.1:3\" }}]\n\
             [[pools]]\nname = \"c\"\nbackends = [{{ address = \"127.0.0.1:4\" }}]\n{routes}"
        );
        Config::parse(&text).unwrap()
    }

    const THREE: &str = "[routing]\ncatch_all = \"c\"\n\
        [[routes]]\nprefix = \"user:\"\npool = \"a\"\n\
        [[routes]]\nprefix = \"session:\"\npool = \"b\"\nremove_prefix = true\n\
        [[routes]]\nprefix = \"u\"\npool = \"b\"\n\
        [[routes]]\nprefix = \"CI:\"\npool = \"a\"\ncase_insensitive = true\n\
        mirror = [{ pool = \"c\", fraction = 0.5, exclude_reads = true }]\n";

    #[test]
    fn keys_take_the_longest_prefix_or_the_catch_all() {
        let r = Routes::new(&config(THREE).routing).unwrap();
        let at = |k: &str| r.locate(k.as_bytes()).map(|l| (l.pool, l.strip));
        assert_eq!(at("user:1"), Ok((0, 0)));
        assert_eq!(at("us"), Ok((1, 0)));
        assert_eq!(at("session:x"), Ok((1, 8)));
        assert_eq!(at("other"), Ok((2, 0)));
        assert_eq!(at("ci:z"), Ok((0, 0)));
        assert_eq!(at("Ci:z"), Ok((0, 0)));
        assert_eq!(
            at("session:"),
            Err(RouteError::EmptyKey("session:".to_string()))
        );
        assert!(r.strips() && r.mirrors());
        let ci = r.locate(b"CI:k").unwrap().route;
        assert_eq!(r.target(ci).unwrap().mirrors[0].threshold, 1 << 31);
        let catch_all = r.locate(b"zzz").unwrap().route;
        assert!(r.target(catch_all).unwrap().mirrors.is_empty());
    }

    #[test]
    fn without_a_catch_all_a_miss_is_an_error_naming_the_key() {
        let c = config(
            "[[routes]]\nprefix = \"a:\"\npool = \"a\"\n[[routes]]\nprefix = \"b:\"\npool = \"b\"\n\
             [[routes]]\nprefix = \"c:\"\npool = \"c\"\n",
        );
        let r = Routes::new(&c.routing).unwrap();
        let e = r.locate(b"zz:1").unwrap_err();
        assert_eq!(
            e.to_string(),
            "ERR no route for key 'zz:1': no [[routes]] prefix matches it and there is no [routing] catch_all"
        );
    }

    #[test]
    fn mirror_rules_sample_and_skip_reads() {
        let always = MirrorRule {
            pool: 1,
            threshold: 1 << 32,
            writes_only: true,
        };
        assert!(always.takes(true, u32::MAX));
        assert!(!always.takes(false, 0));
        let never = MirrorRule {
            threshold: 0,
            writes_only: false,
            ..always
        };
        assert!(!never.takes(true, 0));
    }

    #[test]
    fn prefixes_are_removed_from_keys_only() {
        let c = config(THREE);
        let table = Table::for_tests(&c);
        let parse = |parts: &[&str]| {
            let mut input = format!("*{}\r\n", parts.len());
            for p in parts {
                input += &format!("${}\r\n{p}\r\n", p.len());
            }
            let mut p = crate::protocol::request::RequestParser::new(1 << 20);
            p.parse(input.as_bytes()).unwrap().unwrap();
            (Bytes::from(input), p.args().to_vec())
        };
        let cmd = |name: &str| crate::protocol::command::lookup(name.as_bytes()).unwrap().1;
        let (f, a) = parse(&["SET", "session:abc", "session:value"]);
        assert_eq!(
            &table.unprefixed(cmd("set"), f, &a)[..],
            b"*3\r\n$3\r\nSET\r\n$3\r\nabc\r\n$13\r\nsession:value\r\n"
        );
        // Nothing to remove: the same frame, not a copy.
        let (f, a) = parse(&["SET", "user:1", "v"]);
        let same = table.unprefixed(cmd("set"), f.clone(), &a);
        assert_eq!(same.as_ptr(), f.as_ptr());
        // A channel is a name, not a key.
        let (f, a) = parse(&["PUBLISH", "session:c", "m"]);
        assert_eq!(table.unprefixed(cmd("publish"), f.clone(), &a), f);
    }
}
