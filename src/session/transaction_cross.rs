//! MULTI/EXEC whose commands span backends (no WATCH, `cross_shard = "run"`): EXEC takes the
//! locks of every key of the transaction ([`crate::scripting::lock`], the same locks as
//! scripts across backends), sends one `MULTI ... EXEC` batch per backend at once, and merges
//! the backends' EXEC replies into one, in the order the commands were queued. Each backend's
//! part is atomic on that backend; the locks keep other cross-backend scripts and transactions
//! on the same keys out while it runs. A backend that fails (or refuses its part with
//! EXECABORT) gives an error in the place of each of its commands; the other backends' parts
//! have run.

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use tokio::sync::oneshot;
use tokio::time::Instant;

use super::Session;
use super::transaction::{EXECABORT, Transaction};
use crate::config::ScriptsConfig;
use crate::protocol::command::{Kind, lookup, lookup_sub};
use crate::protocol::keys::key_span;
use crate::protocol::reply::{elements, is_error, put_array_len, put_error, split_replies};
use crate::protocol::request::{Request, RequestParser};
use crate::routing::Dest;
use crate::scripting::caller::{Caller, Part};
use crate::scripting::{Running, lock, shown_keys};
use crate::state::ProxyState;

const MULTI: &[u8] = b"*1\r\n$5\r\nMULTI\r\n";
const EXEC: &[u8] = b"*1\r\n$4\r\nEXEC\r\n";

/// One backend's part of a transaction.
struct Batch {
    dest: Dest,
    frame: BytesMut,
    count: u32,
}

/// Where each command's reply is: its batch, and its index there.
type Placement = Vec<(usize, usize)>;

impl Session {
    /// EXEC of a transaction whose commands span backends.
    pub(super) fn exec_across(&mut self, id: usize, now: Instant, tx: Transaction) {
        let Transaction {
            dest,
            frames,
            parts,
            ..
        } = tx;
        let frames = frames.freeze();
        let default = match dest.map_or_else(|| self.table.any(), Ok) {
            Ok(d) => d,
            Err(e) => return self.fail(id, now, &e.to_string()),
        };
        let mut batches: Vec<Batch> = Vec::new();
        let mut placement: Placement = Vec::with_capacity(parts.len());
        let mut keys = Vec::new();
        for (dest, range) in parts {
            let dest = dest.unwrap_or_else(|| default.clone());
            let at = match batches
                .iter()
                .position(|b| Arc::ptr_eq(&b.dest.backend, &dest.backend))
            {
                Some(at) => at,
                None => {
                    let mut frame = BytesMut::with_capacity(64 + frames.len());
                    frame.extend_from_slice(MULTI);
                    batches.push(Batch {
                        dest,
                        frame,
                        count: 0,
                    });
                    batches.len() - 1
                }
            };
            let b = &mut batches[at];
            b.frame.extend_from_slice(&frames[range.clone()]);
            placement.push((at, b.count as usize));
            b.count += 1;
            keys_of(&frames.slice(range), &mut keys);
        }
        let parts: Vec<Part> = batches
            .into_iter()
            .map(|mut b| {
                b.frame.extend_from_slice(EXEC);
                Part {
                    dest: b.dest,
                    frame: b.frame.freeze(),
                    replies: b.count + 2,
                }
            })
            .collect();
        let run = Across {
            caller: self.caller(),
            state: self.ctx.state.clone(),
            settings: self.table.settings.scripts,
            keys,
        };
        self.run_task(id, now, move |gate| run.exec(parts, placement, gate));
    }
}

/// Appends the keys of the command `frame` (one request) to `keys`.
fn keys_of(frame: &Bytes, keys: &mut Vec<Bytes>) {
    let mut parser = RequestParser::new(frame.len() + 1);
    let Ok(Some(Request::Multibulk { .. })) = parser.parse(frame) else {
        return;
    };
    let args = parser.args();
    let Some((_, mut cmd)) = args.first().and_then(|r| lookup(&frame[r.clone()])) else {
        return;
    };
    if cmd.kind == Kind::Container {
        match args
            .get(1)
            .and_then(|r| lookup_sub(cmd.name, &frame[r.clone()]))
        {
            Some((_, sub)) => cmd = sub,
            None => return,
        }
    }
    if let Ok(Some(span)) = key_span(cmd, frame, args) {
        keys.extend(span.positions().map(|p| frame.slice(args[p].clone())));
    }
}

/// A transaction across backends on its way.
struct Across {
    caller: Caller,
    state: Arc<ProxyState>,
    settings: ScriptsConfig,
    keys: Vec<Bytes>,
}

impl Across {
    async fn exec(
        self,
        parts: Vec<Part>,
        placement: Placement,
        gate: Option<oneshot::Receiver<()>>,
    ) -> Bytes {
        if let Some(gate) = gate {
            let _ = gate.await;
        }
        let caller = &self.caller;
        let groups = match lock::plan(&caller.table, &self.keys) {
            Ok(groups) => groups,
            Err(e) => return Bytes::from(format!("-{e}\r\n")),
        };
        let scripting = &self.state.scripting;
        let guard = scripting.begin(Running {
            kind: "transaction",
            what: format!("{} commands", placement.len()),
            keys: shown_keys(&self.keys),
            client: 0,
            started: std::time::Instant::now(),
            running: false,
        });
        let ttl = self.settings.lock_ttl;
        let wait = ttl + self.settings.script_timeout;
        let (held, waited) = match lock::acquire(caller, groups, scripting.token(), ttl, wait).await
        {
            Ok(x) => x,
            Err(e) => {
                crate::metrics::cross_shard("transaction", "locked");
                return Bytes::from(format!("-{e}\r\n"));
            }
        };
        crate::metrics::lock_wait(waited);
        guard.started();
        let counts: Vec<u32> = parts.iter().map(|p| p.replies - 2).collect();
        let replies = caller.send_all(parts, caller.proto).await;
        held.release(caller).await;
        let merged = merge(&replies, &counts, &placement);
        let failed = replies.iter().zip(&counts).any(|(r, &n)| {
            let all: Vec<_> = split_replies(r).collect();
            all.len() != n as usize + 2 || is_error(&r[all[n as usize + 1].clone()])
        });
        crate::metrics::cross_shard("transaction", if failed { "error" } else { "ok" });
        merged
    }
}

/// Each command's reply from its backend's batch reply (`MULTI`'s, one `QUEUED` per command,
/// EXEC's array), in queued order, as one EXEC reply.
fn merge(replies: &[Bytes], counts: &[u32], placement: &Placement) -> Bytes {
    let per_batch: Vec<Vec<Bytes>> = replies
        .iter()
        .zip(counts)
        .map(|(reply, &n)| results(reply, n as usize))
        .collect();
    let mut out = BytesMut::with_capacity(16 + replies.iter().map(Bytes::len).sum::<usize>());
    put_array_len(&mut out, placement.len());
    for &(batch, i) in placement {
        match per_batch.get(batch).and_then(|r| r.get(i)) {
            Some(r) => out.extend_from_slice(r),
            None => put_error(&mut out, "ERR no reply from the backend"),
        }
    }
    out.freeze()
}

/// The `n` results of one backend's batch; errors in their places when its EXEC failed.
fn results(reply: &Bytes, n: usize) -> Vec<Bytes> {
    let all: Vec<_> = split_replies(reply).collect();
    if all.len() != n + 2 {
        // The link failed or the backend answered one error for the batch.
        let err = all
            .first()
            .map(|r| reply.slice(r.clone()))
            .filter(|r| is_error(r))
            .unwrap_or_else(|| Bytes::from_static(b"-ERR unexpected reply from a backend\r\n"));
        return vec![err; n];
    }
    let exec = reply.slice(all[n + 1].clone());
    if let Some(items) = elements(&exec)
        && items.len() == n
    {
        return items.into_iter().map(Bytes::copy_from_slice).collect();
    }
    // EXECABORT (a command refused while queueing on the backend), or a failure: each
    // command gets its own queueing error, or the batch's.
    let batch_error = if is_error(&exec) {
        exec.clone()
    } else {
        Bytes::from(format!("-{EXECABORT}\r\n"))
    };
    (0..n)
        .map(|i| {
            let queued = reply.slice(all[i + 1].clone());
            if is_error(&queued) {
                queued
            } else {
                batch_error.clone()
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merges_in_queued_order_and_places_failures() {
        let a = Bytes::from_static(b"+OK\r\n+QUEUED\r\n+QUEUED\r\n*2\r\n:1\r\n:2\r\n");
        let b = Bytes::from_static(b"+OK\r\n+QUEUED\r\n*1\r\n$1\r\nx\r\n");
        let placement = vec![(0, 0), (1, 0), (0, 1)];
        assert_eq!(
            &merge(&[a.clone(), b], &[2, 1], &placement)[..],
            b"*3\r\n:1\r\n$1\r\nx\r\n:2\r\n"
        );
        let down = Bytes::from_static(b"-ERR backend s2 is down\r\n");
        assert_eq!(
            &merge(&[a, down], &[2, 1], &placement)[..],
            b"*3\r\n:1\r\n-ERR backend s2 is down\r\n:2\r\n"
        );
        let aborted = Bytes::from_static(
            b"+OK\r\n-OOM no\r\n+QUEUED\r\n-EXECABORT Transaction discarded because of previous errors.\r\n",
        );
        let r = results(&aborted, 2);
        assert_eq!(&r[0][..], b"-OOM no\r\n");
        assert!(r[1].starts_with(b"-EXECABORT"));
    }

    #[test]
    fn keys_of_commands() {
        let mut keys = Vec::new();
        keys_of(
            &Bytes::from_static(b"*3\r\n$3\r\nSET\r\n$1\r\na\r\n$1\r\n1\r\n"),
            &mut keys,
        );
        keys_of(
            &Bytes::from_static(b"*3\r\n$4\r\nMGET\r\n$1\r\nb\r\n$1\r\nc\r\n"),
            &mut keys,
        );
        keys_of(&Bytes::from_static(b"*1\r\n$4\r\nPING\r\n"), &mut keys);
        assert_eq!(keys, vec!["a", "b", "c"]);
    }
}
