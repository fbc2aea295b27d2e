//! The connected clients, by id: what CLIENT LIST, CLIENT KILL and CLIENT UNBLOCK see of each
//! one, and who each is logged in as. Touched when a client connects, leaves, names itself,
//! logs in or blocks; never per command.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use bytes::Bytes;
use tokio::sync::Notify;

use crate::backend::Backend;
use crate::net::Stream;

/// The name of the user every client starts as.
pub const DEFAULT_USER: &str = "default";

/// The connected clients, by id: what CLIENT LIST shows, and the handles CLIENT KILL and
/// CLIENT UNBLOCK act through. Touched when a client connects, leaves, names itself or blocks,
/// never per command.
///
/// Also the bytes buffered for all of them (`max_client_memory`): each session publishes its
/// own in coarse steps (`session::budget`), never per command.
#[derive(Debug, Default)]
pub struct Clients {
    map: Mutex<HashMap<u64, Arc<ClientEntry>>>,
    count: AtomicUsize,
    /// The sum of every client's published [`ClientEntry::buffered`].
    buffered: AtomicUsize,
    /// The part of `buffered` held by clients closed for `max_client_memory` whose sessions
    /// have not ended yet: about to be freed, so not a reason to close another client.
    releasing: AtomicUsize,
    /// One session at a time chooses whom to close.
    enforcing: AtomicBool,
}

impl Clients {
    fn lock(&self) -> MutexGuard<'_, HashMap<u64, Arc<ClientEntry>>> {
        self.map.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Adds client `id` connected on `stream`.
    pub fn register(&self, id: u64, stream: &Stream) -> Arc<ClientEntry> {
        let show = |a: std::io::Result<std::net::SocketAddr>| {
            a.map_or_else(|_| "?".into(), |a| a.to_string())
        };
        let entry = Arc::new(ClientEntry::new(
            id,
            show(stream.peer_addr()),
            show(stream.local_addr()),
        ));
        self.insert(entry.clone());
        entry
    }

    /// Adds a client entry made elsewhere (see [`Clients::detached`]).
    pub fn insert(&self, entry: Arc<ClientEntry>) {
        if self.lock().insert(entry.id, entry).is_none() {
            self.count.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// A client that is not connected to a socket (benches and tests of the data path).
    pub fn detached(id: u64) -> Arc<ClientEntry> {
        Arc::new(ClientEntry::new(id, "?".into(), "?".into()))
    }

    /// Connected clients.
    pub fn count(&self) -> usize {
        self.count.load(Ordering::Relaxed)
    }

    pub fn unregister(&self, id: u64) {
        if let Some(entry) = self.lock().remove(&id) {
            self.count.fetch_sub(1, Ordering::Relaxed);
            // The session has ended: what it published is freed.
            self.publish(&entry, 0);
            let marked = entry.releasing.swap(0, Ordering::Relaxed);
            self.releasing.fetch_sub(marked, Ordering::Relaxed);
        }
    }

    /// Bytes buffered for all clients, as their sessions last published them.
    pub fn buffered(&self) -> usize {
        self.buffered.load(Ordering::Relaxed)
    }

    /// Records that `entry`'s session now holds `bytes`; returns the new total.
    pub fn publish(&self, entry: &ClientEntry, bytes: usize) -> usize {
        let old = entry.buffered.swap(bytes, Ordering::Relaxed);
        if bytes >= old {
            self.buffered.fetch_add(bytes - old, Ordering::Relaxed) + (bytes - old)
        } else {
            self.buffered
                .fetch_sub(old - bytes, Ordering::Relaxed)
                .saturating_sub(old - bytes)
        }
    }

    /// While the total is over `max`, closes the client holding the most (then the next),
    /// leaving out what clients already closed for it are about to free. Rare: it takes the
    /// registry's lock, and at most one caller at a time does (the others return).
    pub fn enforce(&self, max: usize) {
        let over = |s: &Self| {
            s.buffered()
                .saturating_sub(s.releasing.load(Ordering::Relaxed))
                .saturating_sub(max)
        };
        if over(self) == 0 || self.enforcing.swap(true, Ordering::Acquire) {
            return;
        }
        let mut holders: Vec<Arc<ClientEntry>> = self
            .lock()
            .values()
            .filter(|c| c.releasing.load(Ordering::Relaxed) == 0 && c.buffered() > 0)
            .cloned()
            .collect();
        holders.sort_unstable_by_key(|c| std::cmp::Reverse(c.buffered()));
        for victim in holders {
            if over(self) == 0 {
                break;
            }
            let bytes = victim.buffered().max(1);
            if victim.releasing.swap(bytes, Ordering::Relaxed) == 0 {
                self.releasing.fetch_add(bytes, Ordering::Relaxed);
                victim.memory_evicted.store(true, Ordering::Relaxed);
                crate::metrics::client_disconnect("max_client_memory");
                victim.kill();
            }
        }
        self.enforcing.store(false, Ordering::Release);
    }

    pub fn get(&self, id: u64) -> Option<Arc<ClientEntry>> {
        self.lock().get(&id).cloned()
    }

    /// Every client, by id.
    pub fn all(&self) -> Vec<Arc<ClientEntry>> {
        let mut all: Vec<_> = self.lock().values().cloned().collect();
        all.sort_by_key(|c| c.id);
        all
    }
}

/// One connected client.
#[derive(Debug)]
pub struct ClientEntry {
    pub id: u64,
    pub addr: String,
    pub laddr: String,
    pub created: Instant,
    name: Mutex<Option<Bytes>>,
    lib: Mutex<(Option<Bytes>, Option<Bytes>)>,
    /// Id of the last command + 1 (0: none yet).
    last_cmd: AtomicUsize,
    proto: AtomicU8,
    /// Where a blocking command of this client waits: the backend, and the exclusive
    /// connection's id there.
    blocked: Mutex<Option<(Arc<Backend>, i64)>>,
    /// The user it is logged in as (CLIENT LIST's `user=`).
    user: Mutex<Arc<str>>,
    killed: AtomicBool,
    kill: Notify,
    /// Bytes its session last published as buffered (see [`Clients::publish`]).
    buffered: AtomicUsize,
    /// Closed because the proxy's clients held more than `max_client_memory`.
    memory_evicted: AtomicBool,
    /// Set when it is closed for that: the bytes it held, counted in
    /// [`Clients::releasing`] until it is unregistered.
    releasing: AtomicUsize,
}

impl ClientEntry {
    fn new(id: u64, addr: String, laddr: String) -> Self {
        ClientEntry {
            id,
            addr,
            laddr,
            created: Instant::now(),
            name: Mutex::new(None),
            lib: Mutex::new((None, None)),
            last_cmd: AtomicUsize::new(0),
            proto: AtomicU8::new(2),
            blocked: Mutex::new(None),
            user: Mutex::new(Arc::from(DEFAULT_USER)),
            killed: AtomicBool::new(false),
            kill: Notify::new(),
            buffered: AtomicUsize::new(0),
            memory_evicted: AtomicBool::new(false),
            releasing: AtomicUsize::new(0),
        }
    }

    pub fn name(&self) -> Option<Bytes> {
        self.name.lock().map(|n| n.clone()).unwrap_or_default()
    }
    pub fn set_name(&self, name: Option<Bytes>) {
        if let Ok(mut n) = self.name.lock() {
            *n = name;
        }
    }
    pub fn lib(&self) -> (Option<Bytes>, Option<Bytes>) {
        self.lib.lock().map(|l| l.clone()).unwrap_or_default()
    }
    pub fn set_lib_name(&self, v: Bytes) {
        if let Ok(mut l) = self.lib.lock() {
            l.0 = Some(v);
        }
    }
    pub fn set_lib_ver(&self, v: Bytes) {
        if let Ok(mut l) = self.lib.lock() {
            l.1 = Some(v);
        }
    }
    pub fn last_cmd(&self) -> Option<usize> {
        self.last_cmd.load(Ordering::Relaxed).checked_sub(1)
    }
    #[inline]
    pub fn set_last_cmd(&self, id: usize) {
        self.last_cmd.store(id + 1, Ordering::Relaxed);
    }
    pub fn proto(&self) -> u8 {
        self.proto.load(Ordering::Relaxed)
    }
    pub fn set_proto(&self, v: u8) {
        self.proto.store(v, Ordering::Relaxed);
    }
    pub fn blocked(&self) -> Option<(Arc<Backend>, i64)> {
        self.blocked.lock().ok().and_then(|b| b.clone())
    }
    pub fn is_blocked(&self) -> bool {
        self.blocked.lock().is_ok_and(|b| b.is_some())
    }
    pub fn set_blocked(&self, at: Option<(Arc<Backend>, i64)>) {
        if let Ok(mut b) = self.blocked.lock() {
            *b = at;
        }
    }

    pub fn user(&self) -> Arc<str> {
        self.user
            .lock()
            .map(|u| u.clone())
            .unwrap_or_else(|_| Arc::from(DEFAULT_USER))
    }
    pub fn set_user(&self, user: Arc<str>) {
        if let Ok(mut u) = self.user.lock() {
            *u = user;
        }
    }

    /// Bytes its session last published as buffered.
    pub fn buffered(&self) -> usize {
        self.buffered.load(Ordering::Relaxed)
    }

    /// Why the proxy closed it through [`ClientEntry::kill`], if it was for memory.
    pub fn evicted_for(&self) -> Option<&'static str> {
        self.memory_evicted
            .load(Ordering::Relaxed)
            .then_some("the clients' buffers passed max_client_memory and it held the most")
    }

    /// Asks the client's session to close the connection (CLIENT KILL).
    pub fn kill(&self) {
        self.killed.store(true, Ordering::Relaxed);
        self.kill.notify_one();
    }

    /// Whether [`ClientEntry::kill`] was called.
    pub fn is_killed(&self) -> bool {
        self.killed.load(Ordering::Relaxed)
    }

    /// Resolves once [`ClientEntry::kill`] was called.
    pub async fn killed(&self) {
        if !self.killed.load(Ordering::Relaxed) {
            self.kill.notified().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: usize = 1 << 20;

    #[test]
    fn over_max_client_memory_the_client_holding_the_most_is_closed_first() {
        let clients = Clients::default();
        let entries: Vec<_> = (1..=3).map(Clients::detached).collect();
        for e in &entries {
            clients.insert(e.clone());
        }
        let (a, b, c) = (&entries[0], &entries[1], &entries[2]);
        clients.publish(b, 10 * MIB);
        clients.publish(c, MIB);
        assert_eq!(clients.publish(a, 3 * MIB), 14 * MIB);
        clients.enforce(8 * MIB);
        assert!(b.is_killed() && b.evicted_for().is_some());
        assert!(!a.is_killed() && !c.is_killed());
        // b has not gone yet, but what it holds is about to be freed: nobody else is closed.
        clients.enforce(8 * MIB);
        assert!(!a.is_killed());
        clients.unregister(b.id);
        assert_eq!(clients.buffered(), 4 * MIB);
        assert_eq!(clients.releasing.load(Ordering::Relaxed), 0);
        // Then the next greediest.
        clients.publish(c, 6 * MIB);
        clients.enforce(8 * MIB);
        assert!(c.is_killed() && !a.is_killed());
        // A client closed for something else is not counted as closed for memory.
        a.kill();
        assert_eq!(a.evicted_for(), None);
    }
}
