//! Redis Cluster as an upstream (`[[pools]] kind = "cluster"`).
//!
//! The slot map comes from the cluster ([`layout`]: `CLUSTER SHARDS`, or `CLUSTER SLOTS` on
//! older servers) and is fetched again by one task ([`refresh`]) every `refresh_interval_ms`,
//! when a node goes down, and after a `-MOVED`, coalesced so that one fetch runs at a time.
//! Each node is a [`Backend`] like those of a hashed pool, made at run time and kept across
//! maps while its address and role stay, with its own links, health and metrics; the routing
//! table's pool ([`crate::routing::Pool`]) lists the primaries as its backends and places keys
//! by a [`Route`]: the owner of every slot and the replicas of every primary. Keys are placed with
//! `redis_protocol::redis_keyslot` (CRC16 and `{...}` hash tags, exactly as Redis Cluster).
//!
//! Sessions keep the frame of every request they send until its reply is in; a cluster
//! node's redirection ([`redirect`]) is then retried where it points and never reaches the
//! client (see [`crate::routing::followup`]).

pub mod layout;
pub mod redirect;
pub mod refresh;
pub mod status;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::{Notify, mpsc};

use crate::backend::build;
use crate::backend::{Backend, HealthEvent, Spec};
use crate::config::{Address, BackendConfig, ClusterConfig, PoolConfig, ReadFrom};
use crate::metrics::BackendMetrics;
pub use layout::{Layout, SLOTS, UNASSIGNED};
pub use status::Stats;

/// `-MOVED`s remembered for the refresh task between two of its turns; more are dropped
/// (the refresh that they asked for corrects the map anyway).
const MAX_PENDING_MOVES: usize = 1024;

/// A node's role; the `role` label of its backend metrics.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Primary,
    Replica,
}

impl Role {
    pub fn label(self) -> &'static str {
        match self {
            Role::Primary => "primary",
            Role::Replica => "replica",
        }
    }
}

/// What the sessions, the refresh task and the admin endpoints share about one cluster pool,
/// across slot maps and reloads: the refresh trigger, the `-MOVED`s not yet applied, and the
/// counters.
pub struct Shared {
    wake: Notify,
    wanted: AtomicBool,
    moves: Mutex<Vec<(u16, String)>>,
    pub stats: Stats,
}

impl Shared {
    pub fn new() -> Arc<Shared> {
        Arc::new(Shared {
            wake: Notify::new(),
            wanted: AtomicBool::new(false),
            moves: Mutex::new(Vec::new()),
            stats: Stats::new(),
        })
    }

    /// Asks for the slot map to be fetched again. Coalesced: however many ask while a fetch
    /// runs, one more follows it.
    pub fn request_refresh(&self) {
        self.wanted.store(true, Ordering::Release);
        self.wake.notify_one();
    }

    /// A node answered `-MOVED slot addr`: the map is corrected at once, and fetched again.
    pub fn moved(&self, slot: u16, addr: &str) {
        if let Ok(mut moves) = self.moves.lock()
            && moves.len() < MAX_PENDING_MOVES
        {
            moves.push((slot, addr.to_string()));
        }
        self.request_refresh();
    }

    /// Resolves when a refresh is asked for (see [`Shared::request_refresh`]).
    pub async fn woken(&self) {
        self.wake.notified().await;
    }

    /// The `-MOVED`s not applied yet.
    pub fn take_moves(&self) -> Vec<(u16, String)> {
        self.moves
            .lock()
            .map(|mut m| std::mem::take(&mut *m))
            .unwrap_or_default()
    }

    /// Whether a refresh was asked for since the last call.
    pub fn take_wanted(&self) -> bool {
        self.wanted.swap(false, Ordering::AcqRel)
    }
}

/// The cluster part of a routing table: who owns each slot, the replicas of each primary,
/// and every node by address. Immutable, like the table.
pub struct Route {
    /// The slot map the table was built from (empty until one was fetched).
    pub layout: Arc<Layout>,
    /// Per primary (index into the table's backends): its replicas.
    replicas: Vec<Vec<Arc<Backend>>>,
    /// Every node, primaries first, with its role.
    nodes: Vec<(Arc<Backend>, Role)>,
    pub read_from: ReadFrom,
    pub shared: Arc<Shared>,
}

impl Route {
    /// The primary (index into the table's backends) that owns `slot`; the first one for an
    /// unassigned slot, which then answers with a redirection or `-CLUSTERDOWN` itself.
    #[inline]
    pub fn owner(&self, slot: u16) -> usize {
        match self.layout.owner.get(slot as usize) {
            Some(&o) if o != UNASSIGNED => o as usize,
            _ => 0,
        }
    }

    /// The hash slot of `key`, as Redis Cluster computes it.
    #[inline]
    pub fn slot(key: &[u8]) -> u16 {
        redis_protocol::redis_keyslot(key)
    }

    /// The primary that owns `key`.
    #[inline]
    pub fn owner_of(&self, key: &[u8]) -> usize {
        self.owner(Self::slot(key))
    }

    /// The node at `addr` (`host:port` as the cluster names it), whatever its role.
    pub fn node(&self, addr: &str) -> Option<&Arc<Backend>> {
        self.nodes
            .iter()
            .map(|(b, _)| b)
            .find(|b| b.spec.address == addr)
    }

    /// A replica of primary `primary` that is not down, the same one for a client as long as
    /// the replicas stay.
    pub fn replica(&self, primary: usize, client: u64) -> Option<&Arc<Backend>> {
        let all = self.replicas.get(primary)?;
        let up: Vec<&Arc<Backend>> = all.iter().filter(|b| !b.state.is_down()).collect();
        if up.is_empty() {
            return None;
        }
        Some(up[(client % up.len() as u64) as usize])
    }

    /// Every node with its role, primaries first.
    pub fn nodes(&self) -> &[(Arc<Backend>, Role)] {
        &self.nodes
    }

    /// The replicas, after the primaries (for the list of backend states).
    pub fn replica_nodes(&self) -> impl Iterator<Item = &Arc<Backend>> {
        self.replicas.iter().flatten()
    }

    /// The error reply for a command that found no node to go to (no slot map yet).
    pub fn no_node_reply(&self) -> bytes::Bytes {
        self.shared.request_refresh();
        bytes::Bytes::from_static(
            b"-CLUSTERDOWN shardis has no slot map yet: no seed or node answered CLUSTER SHARDS\r\n",
        )
    }
}

/// The primaries and the [`Route`] of a table for cluster pool `pool`, from `layout` (none
/// yet: no node). Nodes in `existing` (by name, which is the address) whose fingerprint is
/// unchanged are kept; the others are started. `existing` ends up holding the nodes in use.
pub(crate) fn assemble(
    pool: &PoolConfig,
    cluster: &ClusterConfig,
    layout: Option<&Arc<Layout>>,
    existing: &mut HashMap<String, Arc<Backend>>,
    events: &mpsc::UnboundedSender<HealthEvent>,
    shared: &Arc<Shared>,
) -> (Vec<Arc<Backend>>, Route) {
    let mut layout = layout.cloned().unwrap_or_else(|| Arc::new(Layout::empty()));
    if layout
        .shards
        .iter()
        .any(|s| s.primary.parse::<Address>().is_err())
    {
        // A primary shardis cannot connect to keeps its slots unassigned rather than taking
        // a place in the table that would shift the others.
        tracing::warn!(
            "some cluster primaries have addresses shardis cannot use: their slots are not served"
        );
        layout = Arc::new(layout.retain(|s| s.primary.parse::<Address>().is_ok()));
    }
    let mut keep = std::mem::take(existing);
    let mut node = |addr: &str, role: Role| -> Option<Arc<Backend>> {
        let address: Address = match addr.parse() {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!("cluster node {addr:?} has an address shardis cannot use: {e}");
                return None;
            }
        };
        let config = BackendConfig {
            name: addr.to_string(),
            address,
            weight: std::num::NonZeroU32::MIN,
            username: None,
            password: None,
            sentinel_master: None,
        };
        let fp = format!(
            "{} role={}",
            build::fingerprint(&config, pool),
            role.label()
        );
        let backend = match keep.remove(addr) {
            Some(b) if b.fingerprint == fp => b,
            _ => start_node(&config, role, pool, fp, events),
        };
        existing.insert(addr.to_string(), backend.clone());
        Some(backend)
    };
    let mut primaries = Vec::with_capacity(layout.shards.len());
    let mut replicas = Vec::with_capacity(layout.shards.len());
    for shard in &layout.shards {
        primaries.extend(node(&shard.primary, Role::Primary));
        replicas.push(
            shard
                .replicas
                .iter()
                .filter_map(|r| node(r, Role::Replica))
                .collect::<Vec<_>>(),
        );
    }
    let mut nodes: Vec<(Arc<Backend>, Role)> = primaries
        .iter()
        .map(|b| (b.clone(), Role::Primary))
        .collect();
    nodes.extend(
        replicas
            .iter()
            .flatten()
            .map(|b| (b.clone(), Role::Replica)),
    );
    let route = Route {
        layout,
        replicas,
        nodes,
        read_from: cluster.read_from,
        shared: shared.clone(),
    };
    (primaries, route)
}

/// Starts one node: a backend named by its address, whose connections send `READONLY` in
/// their handshake when it is a replica, and whose metrics carry its role.
fn start_node(
    b: &BackendConfig,
    role: Role,
    pool: &PoolConfig,
    fingerprint: String,
    events: &mpsc::UnboundedSender<HealthEvent>,
) -> Arc<Backend> {
    let target = build::target(b, pool, None, role == Role::Replica);
    let metrics = BackendMetrics::with_role(&b.name, role.label());
    let mut spec = Spec::with_metrics(&b.name, &b.name, target, pool.timeout, metrics);
    // A primary's requests wait for its successor; a replica's fail at once, as before.
    spec.hold = build::hold(pool, role == Role::Primary);
    if role == Role::Primary {
        *spec.state.shard.lock().unwrap_or_else(|e| e.into_inner()) =
            Some(crate::backend::shard::ShardStatus {
                primary: spec.address.clone(),
                ..Default::default()
            });
    }
    build::start(spec, pool, fingerprint, events)
}
