//! A session's commands in flight, in the order the client sent them, and how replies that
//! are not passed through as they are get made: fanned-out replies merged, transaction batches
//! reduced to EXEC's reply, SCAN cursors and PUBLISH counts rewritten.

use bytes::{Bytes, BytesMut};
use tokio::time::Instant;

use super::scan;
use crate::backend::Lease;
use crate::protocol::command::{Channels, Merge};
use crate::protocol::out::{Out, Proto};
use crate::protocol::reply::{
    Element, array_elements, elements, integer_value, is_error, is_null, put_bulk, put_error,
    put_integer, put_simple, split_replies,
};
use crate::routing::{Sent, Table};
use crate::state::ProxyState;

/// One command awaiting its reply.
pub enum Pending {
    /// The reply is complete and waits for the commands before it.
    Ready(Bytes),
    /// A pub/sub message: written like a ready reply, and counted against the subscriber's
    /// output limit until it is.
    Push(Bytes),
    /// Sent whole to one backend.
    Single {
        cmd: usize,
        start: Instant,
        /// Where it went, and its frame, until the reply is in.
        sent: Sent,
        then: Then,
        /// The exclusive connection it runs on, released with the reply.
        lease: Option<Box<Lease>>,
    },
    /// Sent in parts to several backends.
    Fanout(Box<Fanout>),
    /// Answered by shardis, later: a failed AUTH's reply, paced (it comes through the inbox
    /// like a backend's, and nothing else is sent until it is in).
    Delayed { cmd: usize, start: Instant },
    /// Subscription confirmations, ready once `left` hubs have confirmed.
    Subscribe { reply: Bytes, left: u32 },
}

/// What becomes of a single backend's reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Then {
    /// Passed through as it is.
    Pass,
    /// A transaction sent as one batch (MULTI ... EXEC): the client gets EXEC's reply.
    Last,
    /// SCAN of backend `index`: the cursor is re-encoded to name the backend.
    Scan { index: u32, backends: u32 },
    /// PUBLISH: the receiver count, corrected to count sessions instead of the hub.
    Publish { hub: i64, sessions: i64 },
    /// A blocking command: the session may send again once it is answered.
    Unblock,
}

impl Then {
    /// The client's reply made from the backend's.
    pub fn apply(self, frame: Bytes) -> Bytes {
        match self {
            Then::Pass | Then::Unblock => frame,
            Then::Last => match split_replies(&frame).last() {
                Some(range) => frame.slice(range),
                None => frame,
            },
            Then::Scan { index, backends } => scan::rewrite(&frame, index, backends),
            Then::Publish { hub, sessions } => match integer_value(&frame) {
                Some(n) => {
                    let mut out = BytesMut::with_capacity(16);
                    put_integer(&mut out, (n - hub + sessions).max(0));
                    out.freeze()
                }
                None => frame,
            },
        }
    }
}

/// A command sent to several backends.
pub struct Fanout {
    pub cmd: usize,
    pub start: Instant,
    pub merge: Merge,
    pub proto: Proto,
    pub parts: Vec<Option<Bytes>>,
    /// Each part as it was sent (in part order; none for parts on exclusive connections).
    pub sent: Vec<Option<Sent>>,
    pub left: usize,
    /// MGET: for each key in request order, (part, index within that part's reply).
    pub order: Vec<(u32, u32)>,
    /// INFO: the sections asked for.
    pub info_sections: super::info::InfoSections,
    /// PUBSUB NUMSUB: the channels asked about.
    pub channels: Vec<Bytes>,
    /// WAIT: the exclusive connections it runs on, released with the merged reply.
    pub leases: Vec<Lease>,
}

/// What merging needs from outside the fan-out.
pub struct MergeEnv<'a> {
    pub state: &'a ProxyState,
    pub table: &'a Table,
    pub max_keys: usize,
    /// A random number, for RANDOMKEY.
    pub pick: u64,
}

impl Fanout {
    /// Command `cmd`, started at `start`, waiting for `parts` replies; `order` as for MGET
    /// (empty otherwise).
    pub fn new(
        cmd: usize,
        start: Instant,
        merge: Merge,
        proto: Proto,
        parts: usize,
        order: Vec<(u32, u32)>,
    ) -> Fanout {
        Fanout {
            cmd,
            start,
            merge,
            proto,
            parts: vec![None; parts],
            sent: Vec::with_capacity(parts),
            left: parts,
            order,
            info_sections: super::info::INFO_ALL,
            channels: Vec::new(),
            leases: Vec::new(),
        }
    }

    /// Records part `part`'s reply; returns true when every part has answered.
    pub fn fill(&mut self, part: u32, frame: Bytes) -> bool {
        if let Some(slot) = self.parts.get_mut(part as usize)
            && slot.is_none()
        {
            *slot = Some(frame);
            self.left -= 1;
        }
        self.left == 0
    }

    /// The merged reply, once every part is in.
    pub fn merge(&self, env: &MergeEnv<'_>) -> Bytes {
        let mut buf = BytesMut::new();
        let mut out = Out::new(&mut buf, self.proto);
        if !matches!(self.merge, Merge::Mget | Merge::Info | Merge::AnyOk)
            && let Some(err) = self.first_error()
        {
            return err.clone();
        }
        let parts = || self.parts.iter().flatten();
        match self.merge {
            Merge::Mget => self.merge_mget(&mut out),
            Merge::AllOk => put_simple(out.buf, "OK"),
            Merge::Sum | Merge::Numpat => {
                match parts().map(|p| integer_value(p)).sum::<Option<i64>>() {
                    Some(sum) => {
                        let sum = if self.merge == Merge::Numpat {
                            numpat_correction(env.table, sum)
                        } else {
                            sum
                        };
                        put_integer(out.buf, sum)
                    }
                    None => unexpected(&mut out),
                }
            }
            Merge::Min => match parts().map(|p| integer_value(p)).min().flatten() {
                Some(n) => put_integer(out.buf, n),
                None => unexpected(&mut out),
            },
            Merge::Info => {
                let texts: Vec<Option<&[u8]>> = self
                    .parts
                    .iter()
                    .map(|p| p.as_deref().and_then(info_text))
                    .collect();
                let backends = super::info::info_backends(env.table, &texts);
                let text = super::info::render_info(
                    env.state,
                    &backends,
                    self.info_sections,
                    env.table.settings.db,
                );
                out.verbatim(text.as_bytes());
            }
            Merge::Same => match parts().next() {
                Some(first) => return first.clone(),
                None => unexpected(&mut out),
            },
            Merge::AnyOk => {
                if parts().any(|p| &p[..] == b"+OK\r\n") {
                    put_simple(out.buf, "OK");
                } else if let Some(err) = self.first_error() {
                    return err.clone();
                } else {
                    unexpected(&mut out);
                }
            }
            Merge::AllTrue => self.merge_all_true(&mut out),
            Merge::Concat => self.merge_concat(&mut out, env.max_keys, false),
            Merge::Union => self.merge_concat(&mut out, usize::MAX, true),
            Merge::Random => {
                let found: Vec<&Bytes> = parts().filter(|p| !is_null(p)).collect();
                return match found.len() {
                    0 => parts().next().cloned().unwrap_or_default(),
                    n => found[(env.pick % n as u64) as usize].clone(),
                };
            }
            Merge::Numsub => self.merge_numsub(&mut out, env.table),
        }
        buf.freeze()
    }

    fn first_error(&self) -> Option<&Bytes> {
        self.parts.iter().flatten().find(|p| is_error(p))
    }

    /// Re-assembles MGET replies in key order. A part that failed puts its error in the
    /// place of each of its keys, so one slow shard does not fail the whole MGET.
    fn merge_mget(&self, out: &mut Out<'_>) {
        let decoded: Vec<Option<Vec<Element>>> = self
            .parts
            .iter()
            .map(|p| p.as_deref().and_then(array_elements))
            .collect();
        // The merged reply is about as long as the parts together: one allocation, not a
        // doubling series for a large MGET.
        out.buf
            .reserve(16 + self.parts.iter().flatten().map(Bytes::len).sum::<usize>());
        out.array(self.order.len());
        for &(part, index) in &self.order {
            let raw = self.parts[part as usize].as_deref().unwrap_or_default();
            match decoded[part as usize]
                .as_ref()
                .and_then(|els| els.get(index as usize))
            {
                Some(Element::Bulk(range)) => put_bulk(out.buf, &raw[range.clone()]),
                Some(Element::Null) => out.null(),
                _ if is_error(raw) => out.buf.extend_from_slice(raw),
                _ => put_error(out.buf, "ERR unexpected reply from a backend"),
            }
        }
    }

    /// SCRIPT EXISTS: 1 where every backend has the script.
    fn merge_all_true(&self, out: &mut Out<'_>) {
        let lists: Option<Vec<Vec<i64>>> = self
            .parts
            .iter()
            .flatten()
            .map(|p| elements(p)?.into_iter().map(integer_value).collect())
            .collect();
        let Some(lists) = lists else {
            return unexpected(out);
        };
        let n = lists.first().map_or(0, Vec::len);
        if lists.iter().any(|l| l.len() != n) {
            return unexpected(out);
        }
        out.array(n);
        for i in 0..n {
            put_integer(out.buf, lists.iter().map(|l| l[i]).min().unwrap_or(0));
        }
    }

    /// KEYS (capped) and PUBSUB CHANNELS (deduplicated): the elements of every part.
    fn merge_concat(&self, out: &mut Out<'_>, max: usize, dedup: bool) {
        let mut items: Vec<&[u8]> = Vec::new();
        let mut seen = std::collections::HashSet::new();
        for part in self.parts.iter().flatten() {
            let Some(els) = elements(part) else {
                return unexpected(out);
            };
            for el in els {
                if !dedup || seen.insert(el) {
                    items.push(el);
                }
            }
            if items.len() > max {
                return put_error(
                    out.buf,
                    &format!(
                        "ERR the reply would hold more than {max} keys (max_keys_reply): use SCAN"
                    ),
                );
            }
        }
        out.array(items.len());
        for el in items {
            out.buf.extend_from_slice(el);
        }
    }

    /// PUBSUB NUMSUB: each channel's count summed over the backends, counting the sessions
    /// subscribed through shardis instead of its subscriber connection.
    fn merge_numsub(&self, out: &mut Out<'_>, table: &Table) {
        let mut counts = vec![0i64; self.channels.len()];
        for part in self.parts.iter().flatten() {
            let Some(els) = elements(part) else {
                return unexpected(out);
            };
            for (i, pair) in els.chunks(2).enumerate() {
                if let (Some(slot), Some(n)) = (
                    counts.get_mut(i),
                    pair.get(1).and_then(|v| integer_value(v)),
                ) {
                    *slot += n;
                }
            }
        }
        let kind = if self.merge == Merge::Numsub && self.cmd_is_shard() {
            Channels::Shard
        } else {
            Channels::Plain
        };
        out.array(self.channels.len() * 2);
        for (channel, count) in self.channels.iter().zip(counts) {
            let r = table
                .owner_of(channel)
                .ok()
                .and_then(|d| d.backend.hub.get().map(|h| h.numsub(kind, channel)))
                .unwrap_or_default();
            put_bulk(out.buf, channel);
            put_integer(out.buf, r.correct(count));
        }
    }

    fn cmd_is_shard(&self) -> bool {
        crate::protocol::command::COMMANDS
            .get(self.cmd)
            .is_some_and(|c| c.name == "pubsub|shardnumsub")
    }
}

/// PUBSUB NUMPAT: every hub subscribes each pattern on its backend; the sessions' patterns
/// count once.
fn numpat_correction(table: &Table, sum: i64) -> i64 {
    let mut subscribed = 0;
    let mut distinct = 0;
    for b in table.backends() {
        if let Some(h) = b.hub.get() {
            let r = h.numpat();
            subscribed += r.hub;
            distinct = distinct.max(r.sessions);
        }
    }
    (sum - subscribed + distinct).max(0)
}

fn unexpected(out: &mut Out<'_>) {
    put_error(out.buf, "ERR unexpected reply from a backend");
}

/// The text of an INFO reply: a bulk string (RESP2) or a verbatim string (RESP3).
fn info_text(reply: &[u8]) -> Option<&[u8]> {
    let rest = reply
        .strip_prefix(b"$")
        .or_else(|| reply.strip_prefix(b"="))?;
    let line_end = rest.iter().position(|&b| b == b'\r')?;
    let len = crate::protocol::request::parse_int(&rest[..line_end])?;
    let start = line_end + 2;
    let text = rest.get(start..start + usize::try_from(len).ok()?)?;
    Some(if reply[0] == b'=' {
        text.get(4..).unwrap_or_default()
    } else {
        text
    })
}

/// xorshift64*: a cheap, good-enough random number for RANDOMKEY's pick.
pub(super) fn next_random(state: &mut u64) -> u64 {
    *state ^= *state >> 12;
    *state ^= *state << 25;
    *state ^= *state >> 27;
    state.wrapping_mul(0x2545_F491_4F6C_DD1D)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env_and<R>(f: impl FnOnce(&MergeEnv<'_>) -> R) -> R {
        let state = ProxyState::new(String::new(), vec![]);
        let cfg = crate::config::Config::from_backends(&["127.0.0.1:1".to_string()]).unwrap();
        let (table, _rx) = Table::detached(&cfg.pools[0]);
        f(&MergeEnv {
            state: &state,
            table: &table,
            max_keys: 3,
            pick: 1,
        })
    }

    fn fanout(merge: Merge, proto: Proto, parts: &[&'static [u8]]) -> Fanout {
        let mut f = Fanout::new(0, Instant::now(), merge, proto, parts.len(), vec![]);
        for (i, p) in parts.iter().enumerate() {
            f.fill(i as u32, Bytes::from_static(p));
        }
        f
    }

    fn merged(merge: Merge, proto: Proto, parts: &[&'static [u8]]) -> Bytes {
        env_and(|env| fanout(merge, proto, parts).merge(env))
    }

    #[test]
    fn mget_keeps_key_order_and_inlines_part_errors() {
        let mut f = Fanout::new(
            0,
            Instant::now(),
            Merge::Mget,
            Proto::Resp2,
            3,
            vec![(1, 0), (0, 0), (1, 1), (2, 0)],
        );
        assert!(!f.fill(0, Bytes::from_static(b"*1\r\n$1\r\nb\r\n")));
        assert!(!f.fill(1, Bytes::from_static(b"*2\r\n$1\r\na\r\n$-1\r\n")));
        assert!(
            !f.fill(1, Bytes::from_static(b"*0\r\n")),
            "a duplicate part is ignored"
        );
        assert!(f.fill(2, Bytes::from_static(b"-ERR backend s3 down\r\n")));
        assert_eq!(
            &env_and(|env| f.merge(env))[..],
            b"*4\r\n$1\r\na\r\n$1\r\nb\r\n$-1\r\n-ERR backend s3 down\r\n"
        );
        // RESP3 nulls stay RESP3 nulls.
        let mut f = Fanout::new(
            0,
            Instant::now(),
            Merge::Mget,
            Proto::Resp3,
            2,
            vec![(0, 0), (1, 0)],
        );
        f.fill(0, Bytes::from_static(b"*1\r\n_\r\n"));
        f.fill(1, Bytes::from_static(b"*1\r\n$1\r\nx\r\n"));
        assert_eq!(&env_and(|env| f.merge(env))[..], b"*2\r\n_\r\n$1\r\nx\r\n");
    }

    #[test]
    fn sums_all_ok_same_and_any_ok() {
        assert_eq!(
            &merged(Merge::Sum, Proto::Resp2, &[b":2\r\n", b":3\r\n"])[..],
            b":5\r\n"
        );
        assert_eq!(
            &merged(Merge::AllOk, Proto::Resp2, &[b"+OK\r\n", b"-ERR x\r\n"])[..],
            b"-ERR x\r\n"
        );
        assert_eq!(
            &merged(Merge::Sum, Proto::Resp2, &[b"-ERR y\r\n"])[..],
            b"-ERR y\r\n"
        );
        assert_eq!(
            &merged(
                Merge::Same,
                Proto::Resp2,
                &[b"$2\r\nab\r\n", b"$2\r\nab\r\n"]
            )[..],
            b"$2\r\nab\r\n"
        );
        assert_eq!(
            &merged(Merge::AnyOk, Proto::Resp2, &[b"-NOTBUSY x\r\n", b"+OK\r\n"])[..],
            b"+OK\r\n"
        );
        assert_eq!(
            &merged(
                Merge::AnyOk,
                Proto::Resp2,
                &[b"-NOTBUSY x\r\n", b"-NOTBUSY x\r\n"]
            )[..],
            b"-NOTBUSY x\r\n"
        );
        assert_eq!(
            &merged(Merge::Min, Proto::Resp2, &[b":2\r\n", b":0\r\n"])[..],
            b":0\r\n"
        );
    }

    #[test]
    fn script_exists_keys_union_and_random() {
        assert_eq!(
            &merged(
                Merge::AllTrue,
                Proto::Resp2,
                &[b"*2\r\n:1\r\n:1\r\n", b"*2\r\n:0\r\n:1\r\n"]
            )[..],
            b"*2\r\n:0\r\n:1\r\n"
        );
        assert_eq!(
            &merged(
                Merge::Concat,
                Proto::Resp2,
                &[b"*1\r\n$1\r\na\r\n", b"*2\r\n$1\r\nb\r\n$1\r\nc\r\n"]
            )[..],
            b"*3\r\n$1\r\na\r\n$1\r\nb\r\n$1\r\nc\r\n"
        );
        let over = merged(
            Merge::Concat,
            Proto::Resp2,
            &[
                b"*2\r\n$1\r\na\r\n$1\r\nd\r\n",
                b"*2\r\n$1\r\nb\r\n$1\r\nc\r\n",
            ],
        );
        assert!(
            over.starts_with(b"-ERR the reply would hold more than 3 keys"),
            "{over:?}"
        );
        assert_eq!(
            &merged(
                Merge::Union,
                Proto::Resp2,
                &[b"*1\r\n$1\r\na\r\n", b"*2\r\n$1\r\na\r\n$1\r\nc\r\n"]
            )[..],
            b"*2\r\n$1\r\na\r\n$1\r\nc\r\n"
        );
        assert_eq!(
            &merged(Merge::Random, Proto::Resp3, &[b"_\r\n", b"$1\r\nk\r\n"])[..],
            b"$1\r\nk\r\n"
        );
        assert_eq!(
            &merged(Merge::Random, Proto::Resp3, &[b"_\r\n", b"_\r\n"])[..],
            b"_\r\n"
        );
    }

    #[test]
    fn info_is_verbatim_in_resp3() {
        let r = merged(Merge::Info, Proto::Resp3, &[b"$0\r\n\r\n"]);
        assert!(r.starts_with(b"="), "{r:?}");
        assert_eq!(info_text(b"=9\r\ntxt:a:1\r\n\r\n"), Some(&b"a:1\r\n"[..]));
        assert_eq!(info_text(b"$3\r\nabc\r\n"), Some(&b"abc"[..]));
        assert_eq!(info_text(b"-ERR\r\n"), None);
    }

    #[test]
    fn then_rewrites() {
        let batch = Bytes::from_static(b"+OK\r\n+QUEUED\r\n*1\r\n+OK\r\n");
        assert_eq!(&Then::Last.apply(batch)[..], b"*1\r\n+OK\r\n");
        assert_eq!(
            &Then::Publish {
                hub: 1,
                sessions: 3
            }
            .apply(Bytes::from_static(b":1\r\n"))[..],
            b":3\r\n"
        );
    }
}
