//! Locks on the backends, for scripts and transactions whose keys span backends.
//!
//! Each declared key `k` is locked by the key `__shardis:lock:k` on `k`'s own backend (on a
//! cluster pool, `__shardis:lock:{tag}k`, `tag` being what `k`'s slot is computed from, so the
//! lock lives in `k`'s slot), whose value is the holder's token and which expires after
//! `lock_ttl_ms` unless renewed. The locks of one backend (one slot on a cluster) form a group
//! taken all or nothing: `SET lock token NX PX ttl` for one key, a Lua script (EVAL on the
//! backend) for several. Groups are taken in one global order, by backend name and then by
//! key, the same on every shardis instance with the same configuration, and a holder waits
//! only for a group ordered after every group it holds: two lock holders never wait for each
//! other. Release and renewal compare the token (Lua, EVAL on the backend), so nobody frees or
//! extends a lock it does not hold.

use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use tokio::time::Instant;

use super::caller::{Caller, Part};
use crate::protocol::reply::{integer_value, is_error, put_array_len, put_bulk};
use crate::routing::{Dest, RouteError, Table};

/// The reserved key prefix shardis keeps its own data under on the backends.
pub const PREFIX: &str = "__shardis:";
const LOCK_PREFIX: &[u8] = b"__shardis:lock:";

/// Takes every lock of a group, or none: the index (from 1) of the first held, or 0.
const ACQUIRE: &[u8] =
    b"for i=1,#KEYS do if redis.call('exists',KEYS[i])==1 then return i end end \
for i=1,#KEYS do redis.call('set',KEYS[i],ARGV[1],'px',ARGV[2]) end return 0";
/// Deletes the locks that hold `ARGV[1]`; the count deleted.
const RELEASE: &[u8] = b"local n=0 for i=1,#KEYS do if redis.call('get',KEYS[i])==ARGV[1] then \
n=n+redis.call('del',KEYS[i]) end end return n";
/// Extends the locks that hold `ARGV[1]` to `ARGV[2]` ms; the count extended.
const RENEW: &[u8] = b"local n=0 for i=1,#KEYS do if redis.call('get',KEYS[i])==ARGV[1] then \
n=n+redis.call('pexpire',KEYS[i],ARGV[2]) end end return n";

/// The first wait after a failed attempt, and the longest.
const FIRST_BACKOFF: Duration = Duration::from_micros(500);
const MAX_BACKOFF: Duration = Duration::from_millis(20);

/// The locks of one backend (one slot of a cluster pool).
pub struct Group {
    pub dest: Dest,
    /// The backend's name, the first half of the global order.
    name: String,
    group: usize,
    /// Lock keys, sorted.
    locks: Vec<Bytes>,
    /// The first user key of the group, for error messages.
    first_key: Bytes,
}

/// Why the locks could not be taken.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error(
        "ERR shardis could not lock key '{key}' within {ms} ms: another script or transaction across backends holds it"
    )]
    Timeout { key: String, ms: u128 },
    #[error("ERR shardis could not lock key '{key}': {reply}")]
    Backend { key: String, reply: String },
    #[error("{0}")]
    Route(RouteError),
}

/// The lock key of user key `key`.
pub fn lock_key(key: &[u8], cluster: bool) -> Bytes {
    let mut out = BytesMut::with_capacity(LOCK_PREFIX.len() + key.len() * 2 + 2);
    out.put_slice(LOCK_PREFIX);
    if cluster {
        out.put_u8(b'{');
        out.put_slice(cluster_tag(key));
        out.put_u8(b'}');
    }
    out.put_slice(key);
    out.freeze()
}

/// What Redis Cluster computes a key's slot from: the part between the first `{` and the
/// next `}` if not empty, else the whole key.
fn cluster_tag(key: &[u8]) -> &[u8] {
    if let Some(open) = key.iter().position(|&b| b == b'{')
        && let Some(len) = key[open + 1..].iter().position(|&b| b == b'}')
        && len > 0
    {
        return &key[open + 1..open + 1 + len];
    }
    key
}

/// The lock groups of `keys` (duplicates once), in the global order.
pub fn plan(table: &Table, keys: &[Bytes]) -> Result<Vec<Group>, RouteError> {
    let mut groups: Vec<Group> = Vec::new();
    for key in keys {
        let pool = table.pool_of(key).ok_or(RouteError::NoBackend)?;
        let group = pool.group_of(key);
        let dest = pool
            .dest(pool.group_owner(group))
            .ok_or_else(|| pool.no_node())?;
        let lock = lock_key(key, pool.cluster_route().is_some());
        match groups
            .iter_mut()
            .find(|g| g.group == group && std::sync::Arc::ptr_eq(&g.dest.backend, &dest.backend))
        {
            Some(g) => {
                if !g.locks.contains(&lock) {
                    g.locks.push(lock);
                }
            }
            None => groups.push(Group {
                name: dest.backend.state.name.clone(),
                dest,
                group,
                locks: vec![lock],
                first_key: key.clone(),
            }),
        }
    }
    for g in &mut groups {
        g.locks.sort();
    }
    groups.sort_by(|a, b| (&a.name, a.group).cmp(&(&b.name, b.group)));
    Ok(groups)
}

fn eval(script: &[u8], keys: &[Bytes], args: &[&[u8]]) -> Bytes {
    let mut out = BytesMut::with_capacity(64 + script.len() + keys.len() * 48);
    put_array_len(&mut out, 3 + keys.len() + args.len());
    put_bulk(&mut out, b"EVAL");
    put_bulk(&mut out, script);
    put_bulk(&mut out, itoa::Buffer::new().format(keys.len()).as_bytes());
    for k in keys {
        put_bulk(&mut out, k);
    }
    for a in args {
        put_bulk(&mut out, a);
    }
    out.freeze()
}

impl Group {
    fn acquire_frame(&self, token: &[u8], ttl_ms: &[u8]) -> Bytes {
        if let [one] = &self.locks[..] {
            let mut out = BytesMut::with_capacity(64 + one.len() + token.len());
            put_array_len(&mut out, 6);
            for a in [&b"SET"[..], one, token, b"NX", b"PX", ttl_ms] {
                put_bulk(&mut out, a);
            }
            return out.freeze();
        }
        eval(ACQUIRE, &self.locks, &[token, ttl_ms])
    }

    /// Whether the reply to [`Group::acquire_frame`] says the group is now held.
    fn taken(&self, reply: &[u8]) -> Result<bool, LockError> {
        if is_error(reply) {
            return Err(LockError::Backend {
                key: String::from_utf8_lossy(&self.first_key).into_owned(),
                reply: String::from_utf8_lossy(reply.get(1..).unwrap_or_default())
                    .trim_end()
                    .to_string(),
            });
        }
        Ok(reply == b"+OK\r\n" || integer_value(reply) == Some(0))
    }
}

/// Locks held by one script or transaction.
pub struct Held {
    groups: Vec<Group>,
    token: Bytes,
    ttl_ms: Bytes,
}

/// Takes every lock of `groups` with `token`, waiting at most `wait` for locks others hold.
/// Returns the locks and how long it waited.
pub async fn acquire(
    caller: &Caller,
    groups: Vec<Group>,
    token: Bytes,
    ttl: Duration,
    wait: Duration,
) -> Result<(Held, Duration), LockError> {
    let start = Instant::now();
    let ttl_ms = Bytes::from(ttl.as_millis().to_string());
    let held = Held {
        groups,
        token,
        ttl_ms,
    };
    let mut have = 0;
    let mut backoff = FIRST_BACKOFF;
    let mut spin = held
        .token
        .iter()
        .fold(7u32, |h, &b| h.wrapping_mul(31) ^ u32::from(b));
    while have < held.groups.len() {
        // Every group not held yet at once: in the common case (no contention) one round
        // trip takes them all. Groups taken after the first one refused are given back, so
        // that nothing ordered after a lock we wait for is held while we wait.
        let parts = held.groups[have..]
            .iter()
            .map(|g| Part::new(g.dest.clone(), g.acquire_frame(&held.token, &held.ttl_ms)))
            .collect();
        let replies = caller.send_all(parts, caller.proto).await;
        let mut refused = None;
        let mut failure = None;
        for (i, reply) in replies.iter().enumerate() {
            let at = have + i;
            match held.groups[at].taken(reply) {
                Ok(true) if refused.is_some() => held.release_group(caller, at).await,
                Ok(true) => {}
                Ok(false) => {
                    refused.get_or_insert(at);
                }
                Err(e) => {
                    refused.get_or_insert(at);
                    failure.get_or_insert(e);
                }
            }
        }
        let Some(first) = refused else {
            break;
        };
        have = first;
        // On failure, everything is given back: releasing a group not held is harmless (the
        // token does not match), and one whose reply was an error may be held anyway.
        if let Some(e) = failure {
            held.release(caller).await;
            return Err(e);
        }
        if start.elapsed() >= wait {
            let key = String::from_utf8_lossy(&held.groups[first].first_key).into_owned();
            held.release(caller).await;
            return Err(LockError::Timeout {
                key,
                ms: wait.as_millis(),
            });
        }
        // Jitter keeps two waiters from retrying in lockstep.
        spin ^= spin << 13;
        spin ^= spin >> 17;
        spin ^= spin << 5;
        let jitter = Duration::from_micros(u64::from(spin % 500));
        tokio::time::sleep(backoff + jitter).await;
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
    Ok((held, start.elapsed()))
}

impl Held {
    /// Gives back group `i` without waiting (what is sent after it on the link runs after).
    async fn release_group(&self, caller: &Caller, i: usize) {
        let g = &self.groups[i];
        caller
            .send_and_forget(&g.dest, eval(RELEASE, &g.locks, &[&self.token]))
            .await;
    }

    /// Gives back every lock without waiting for the backends' replies: the next request of
    /// the same client to those backends runs after the release.
    pub async fn release(self, caller: &Caller) {
        for i in 0..self.groups.len() {
            self.release_group(caller, i).await;
        }
    }

    /// Extends every lock by the ttl; false if one of them is no longer ours (it expired and
    /// someone else may have taken it).
    pub async fn renew(&self, caller: &Caller) -> bool {
        let parts = self
            .groups
            .iter()
            .map(|g| {
                Part::new(
                    g.dest.clone(),
                    eval(RENEW, &g.locks, &[&self.token, &self.ttl_ms]),
                )
            })
            .collect();
        let replies = caller.send_all(parts, caller.proto).await;
        replies
            .iter()
            .zip(&self.groups)
            .all(|(r, g)| integer_value(r) == Some(g.locks.len() as i64))
    }

    /// How many keys are locked.
    pub fn count(&self) -> usize {
        self.groups.iter().map(|g| g.locks.len()).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lock_keys_and_cluster_tags() {
        assert_eq!(&lock_key(b"acct:1", false)[..], b"__shardis:lock:acct:1");
        assert_eq!(
            &lock_key(b"acct:1", true)[..],
            b"__shardis:lock:{acct:1}acct:1"
        );
        assert_eq!(&lock_key(b"{u1}.a", true)[..], b"__shardis:lock:{u1}{u1}.a");
        assert_eq!(cluster_tag(b"a{}b"), b"a{}b");
        assert_eq!(cluster_tag(b"a{b}c{d}"), b"b");
    }

    #[test]
    fn plan_orders_groups_by_backend_name_and_dedups() {
        let backends: Vec<String> = (1..=3).map(|i| format!("127.0.0.1:{i}")).collect();
        let cfg = crate::config::Config::from_backends(&backends).unwrap();
        let (table, _rx) = Table::detached(&cfg.pools[0]);
        let keys: Vec<Bytes> = (0..20)
            .map(|i| Bytes::from(format!("k{i}")))
            .chain([Bytes::from_static(b"k3")])
            .collect();
        let groups = plan(&table, &keys).unwrap();
        assert!(groups.len() > 1);
        let names: Vec<&String> = groups.iter().map(|g| &g.name).collect();
        let mut sorted = names.clone();
        sorted.sort();
        assert_eq!(names, sorted);
        assert_eq!(groups.iter().map(|g| g.locks.len()).sum::<usize>(), 20);
        for g in &groups {
            assert!(g.locks.windows(2).all(|w| w[0] < w[1]));
        }
        // One key: SET NX PX; several: the all-or-nothing script.
        let one = Group {
            locks: vec![Bytes::from_static(b"__shardis:lock:a")],
            ..groups.into_iter().next().unwrap()
        };
        let f = one.acquire_frame(b"t", b"100");
        assert!(f.starts_with(b"*6\r\n$3\r\nSET\r\n"));
        assert!(one.taken(b"+OK\r\n").unwrap());
        assert!(!one.taken(b"$-1\r\n").unwrap());
        assert!(!one.taken(b"_\r\n").unwrap());
        assert!(one.taken(b"-ERR x\r\n").is_err());
    }
}
