//! The session's side of key watching ([`crate::hotkeys`], [`crate::nearcache`]): a keyed
//! command counted in its pool's hot-key sketch, a read answered from the near cache, a write
//! holding the near cache's copies of its keys until it is answered, and requests and replies
//! over the big-key thresholds recorded.

use std::sync::Arc;

use bytes::Bytes;
use tracing::warn;

use super::Session;
use super::call::Call;
use super::pending::Pending;
use crate::backend::Backend;
use crate::hotkeys::bigkeys::Seen;
use crate::hotkeys::{BigKind, key_hash, observe};
use crate::nearcache::{self, reads};
use crate::protocol::command::{COMMANDS, Command, Keys, acl, flag};
use crate::protocol::keys::key_span;
use crate::protocol::request::RequestParser;
use crate::routing::{Dest, Pool};

/// The position of a command's first key, if it has one.
#[inline]
fn first_key(call: &Call<'_>) -> Option<usize> {
    match call.cmd.keys {
        Keys::Range { first, .. } if usize::from(first) < call.args.len() => Some(first.into()),
        Keys::None => None,
        _ => key_span(call.cmd, &call.frame, call.args)
            .ok()
            .flatten()
            .map(|s| s.dest.unwrap_or(s.first)),
    }
}

/// The index of `backend` among `pool`'s (a cluster replica: its primary, by the key).
fn backend_index(pool: &Pool, backend: &Arc<Backend>, key: &[u8]) -> u16 {
    let i = pool
        .backends
        .iter()
        .position(|b| Arc::ptr_eq(b, backend))
        .unwrap_or_else(|| pool.owner(key));
    u16::try_from(i).unwrap_or(u16::MAX)
}

/// Whether `cmd` may change keys, as far as the near cache is concerned: a write, a script,
/// or EXEC.
#[inline]
pub(super) fn writes(cmd: &Command) -> bool {
    cmd.flags & flag::WRITE != 0 || scripted(cmd)
}

/// A command whose writes are not known from its keys: a script, a function, EXEC.
fn scripted(cmd: &Command) -> bool {
    cmd.acl & acl::SCRIPTING != 0 || cmd.name == "exec"
}

impl Session {
    /// A command about to go whole to `dest`: its key is counted, and a read the near cache
    /// can answer gets its reply here.
    #[inline]
    pub(super) fn watch_key(&mut self, call: &Call<'_>, dest: &Dest) -> Option<Bytes> {
        let pos = first_key(call)?;
        let key = &call.frame[call.args[pos].clone()];
        let pool = self.table.pool_of(key)?;
        let watch = pool.watch.as_ref()?;
        observe(watch, key, || backend_index(pool, &dest.backend, key));
        if !(watch.settings.near_cache && reads::cacheable_id(call.id, call.args.len())) {
            return None;
        }
        let hash = key_hash(key);
        let read = nearcache::Read {
            id: call.id,
            frame: &call.frame,
            args: call.args,
            proto: self.out.proto,
        };
        nearcache::read(watch, hash, key, &read, &dest.backend)
    }

    /// A write on a worker whose near cache holds keys: the keys it writes are held (every key
    /// of the worker for a transaction, a script or a write of unknown keys) until its reply
    /// has left the queue.
    pub(super) fn hold_near(&mut self, call: &Call<'_>, queued: bool) {
        if queued && call.cmd.name != "exec" {
            // A command inside MULTI runs at EXEC, which holds.
            return;
        }
        let seq = self.next_seq();
        let span = key_span(call.cmd, &call.frame, call.args).ok().flatten();
        let Some(span) = span.filter(|_| !scripted(call.cmd)) else {
            self.holds.push(seq, nearcache::hold_all());
            return;
        };
        for pos in span.positions() {
            let Some(key) = call.arg(pos) else {
                continue;
            };
            let watch = self.table.pool_of(key).and_then(|p| p.watch.as_ref());
            if let Some(watch) = watch.filter(|w| w.settings.near_cache)
                && let Some(hold) = nearcache::hold_key(watch, key_hash(key), key)
            {
                self.holds.push(seq, hold);
            }
        }
    }

    /// A request over the smallest `bigkey_request_bytes`: recorded if over its pool's.
    #[cold]
    pub(super) fn big_request(&self, call: &Call<'_>) {
        let key = first_key(call)
            .and_then(|pos| call.arg(pos))
            .unwrap_or_default();
        let Some(pool) = self.table.pool_of(key) else {
            return;
        };
        let backend = pool
            .backends
            .get(pool.owner(key))
            .map_or("", |b| b.state.name.as_str());
        record_big(
            pool,
            call.cmd.name,
            key,
            BigKind::Request,
            backend,
            call.frame.len(),
        );
    }

    /// The reply `frame` to part `part` of the command at `index` in the queue is over the
    /// smallest `bigkey_reply_bytes`: recorded if over its pool's.
    #[cold]
    pub(super) fn big_reply(&self, index: usize, part: u32, bytes: usize) {
        let (cmd, sent) = match self.queue.pending.get(index) {
            Some(Pending::Single { cmd, sent, .. }) => (*cmd, sent),
            Some(Pending::Fanout(f)) => match f.sent.get(part as usize) {
                Some(Some(sent)) => (f.cmd, sent),
                _ => return,
            },
            _ => return,
        };
        let command = COMMANDS.get(cmd).map_or("unknown", |c| c.name);
        let key = request_key(&sent.frame);
        let key = key.as_deref().unwrap_or_default();
        let pool = self
            .table
            .pool_of(key)
            .filter(|p| key.is_empty() || p.backends.iter().any(|b| Arc::ptr_eq(b, &sent.backend)));
        let pool = pool.or_else(|| {
            self.table
                .pools
                .iter()
                .find(|p| p.backends.iter().any(|b| Arc::ptr_eq(b, &sent.backend)))
        });
        if let Some(pool) = pool {
            let backend = sent.backend.state.name.as_str();
            record_big(pool, command, key, BigKind::Reply, backend, bytes);
        }
    }
}

/// The first key of the first command in a request frame, if any.
fn request_key(frame: &[u8]) -> Option<Vec<u8>> {
    let mut parser = RequestParser::new(frame.len().max(1));
    parser.parse(frame).ok()??;
    let args = parser.args();
    let (_, cmd) = crate::protocol::command::lookup(&frame[args.first()?.clone()])?;
    let span = key_span(cmd, frame, args).ok()??;
    let pos = span.dest.unwrap_or(span.first);
    Some(frame[args.get(pos)?.clone()].to_vec())
}

/// Records a big `kind` of `bytes` in `pool`'s list when over its threshold, counts it, and
/// logs it (rate-limited).
fn record_big(
    pool: &Pool,
    command: &'static str,
    key: &[u8],
    kind: BigKind,
    backend: &str,
    bytes: usize,
) {
    let Some(watch) = &pool.watch else {
        return;
    };
    let threshold = match kind {
        BigKind::Reply => watch.settings.bigkey_reply_bytes,
        BigKind::Request => watch.settings.bigkey_request_bytes,
    };
    if threshold == 0 || bytes <= threshold {
        return;
    }
    crate::metrics::big_key(kind == BigKind::Reply, &pool.name, backend);
    let seen = Seen {
        key,
        command,
        kind,
        backend,
        bytes,
    };
    if let Some(quiet) = watch.shared.bigkeys.record(&seen) {
        let key = crate::hotkeys::report::display_key(&key[..key.len().min(128)]);
        warn!(
            pool = %pool.name,
            backend,
            command,
            key = %key,
            bytes,
            not_logged = quiet,
            "big {}: {bytes} bytes (over {threshold}); see /admin/bigkeys",
            kind.name()
        );
    }
}
