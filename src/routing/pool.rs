//! One pool of a routing table: its backends, and the [`Placement`] that maps keys to them.
//! Every "which backend owns this key, and how are its replies followed up" question is one
//! `match` on the placement, here.

use std::sync::Arc;

use bytes::Bytes;

use super::followup::Retry;
use super::route::{Dest, RouteError};
use crate::backend::{Backend, BackendState};
use crate::cluster::Route;
use crate::config::ReadFrom;
use crate::router::Ring;

/// How a pool places keys.
pub enum Placement {
    /// A hashed pool: the ring places each key on one of the backends it was built over
    /// (`slots`: ring index -> index into the pool's backends; with `auto_eject`, the ring
    /// leaves out the backends that are down).
    Ring { ring: Ring, slots: Vec<usize> },
    /// A Redis Cluster: each of the 16,384 hash slots is owned by a primary, which may
    /// redirect a request elsewhere (`-MOVED`, `-ASK`).
    Cluster(Box<Route>),
}

/// One pool of a table.
pub struct Pool {
    pub name: String,
    /// The backends keys are placed on, in configuration order (a cluster: its primaries).
    pub backends: Vec<Arc<Backend>>,
    pub placement: Placement,
    /// The database the pool's connections select: the one its clients see.
    pub db: u32,
    /// A route or the catch-all sends keys here; false for a pool that is only a mirror,
    /// which SCAN, KEYS, DBSIZE and RANDOMKEY leave out (it holds copies).
    pub serves: bool,
    /// Hot keys, big keys and the near cache of the pool (`None`: not watched).
    pub watch: Option<Arc<crate::hotkeys::Watch>>,
}

impl Pool {
    /// A hashed pool: `ring` is built over the backends at `slots`.
    pub fn ring(
        name: String,
        backends: Vec<Arc<Backend>>,
        ring: Ring,
        slots: Vec<usize>,
        db: u32,
    ) -> Pool {
        Pool {
            name,
            backends,
            placement: Placement::Ring { ring, slots },
            db,
            serves: true,
            watch: None,
        }
    }

    /// A cluster pool over its primaries.
    pub fn cluster(name: String, primaries: Vec<Arc<Backend>>, route: Route) -> Pool {
        Pool {
            name,
            backends: primaries,
            placement: Placement::Cluster(Box::new(route)),
            db: 0,
            serves: true,
            watch: None,
        }
    }

    /// The cluster route, for a cluster pool.
    pub fn cluster_route(&self) -> Option<&Route> {
        match &self.placement {
            Placement::Cluster(route) => Some(route),
            Placement::Ring { .. } => None,
        }
    }

    /// How the replies of requests to this pool are followed up.
    #[inline]
    pub fn retry(&self) -> Retry {
        match &self.placement {
            Placement::Ring { .. } => Retry::Never,
            Placement::Cluster(route) => Retry::cluster(&route.shared),
        }
    }

    /// The backend (index into `backends`) that owns `key`.
    #[inline]
    pub fn owner(&self, key: &[u8]) -> usize {
        match &self.placement {
            Placement::Ring { ring, slots } => {
                slots.get(ring.backend_for(key)).copied().unwrap_or(0)
            }
            Placement::Cluster(route) => route.owner_of(key),
        }
    }

    /// The group of `key` when a multi-key command is split: its backend, or on a cluster its
    /// hash slot (a node refuses keys of several slots in one command). See [`Pool::groups`].
    #[inline]
    pub fn group_of(&self, key: &[u8]) -> usize {
        match &self.placement {
            Placement::Ring { .. } => self.owner(key),
            Placement::Cluster(_) => Route::slot(key) as usize,
        }
    }

    /// How many groups [`Pool::group_of`] can give.
    pub fn groups(&self) -> usize {
        match self.placement {
            Placement::Ring { .. } => self.backends.len(),
            Placement::Cluster(_) => crate::cluster::SLOTS,
        }
    }

    /// The backend (index into `backends`) of a group made by [`Pool::group_of`].
    #[inline]
    pub fn group_owner(&self, group: usize) -> usize {
        match &self.placement {
            Placement::Ring { .. } => group,
            Placement::Cluster(route) => route.owner(group as u16),
        }
    }

    /// The one backend (index into `backends`) that owns every key of `keys`, or why there is
    /// none: keys of several backends, or on a cluster of several hash slots, as Redis
    /// Cluster requires.
    pub fn single<'k>(
        &self,
        mut keys: impl Iterator<Item = &'k [u8]>,
    ) -> Result<usize, RouteError> {
        let first = keys.next().ok_or(RouteError::NoKeys(""))?;
        match &self.placement {
            Placement::Ring { .. } => {
                let backend = self.owner(first);
                if keys.any(|k| self.owner(k) != backend) {
                    return Err(RouteError::CrossSlot);
                }
                Ok(backend)
            }
            Placement::Cluster(route) => {
                let slot = Route::slot(first);
                if keys.any(|k| Route::slot(k) != slot) {
                    return Err(RouteError::CrossClusterSlot);
                }
                Ok(route.owner(slot))
            }
        }
    }

    /// Backend `backend` (index into `backends`) as a destination.
    #[inline]
    pub fn dest(&self, backend: usize) -> Option<Dest> {
        Some(Dest {
            backend: self.backends.get(backend)?.clone(),
            retry: self.retry(),
        })
    }

    /// Where a request for backend `backend` goes: the backend, or on a cluster with
    /// `read_from` set, one of its replicas when the request is a keyed read (`read`). The
    /// same replica for a client as long as the replicas stay.
    #[inline]
    pub fn node_for(&self, backend: usize, read: bool, client: u64) -> Result<Dest, RouteError> {
        let Some(primary) = self.backends.get(backend) else {
            return Err(self.no_node());
        };
        let Placement::Cluster(route) = &self.placement else {
            // A hashed pool's shard may have replicas (Sentinel-managed) that serve reads.
            let backend = match primary.read_from {
                ReadFrom::Primary => primary.clone(),
                _ if !read => primary.clone(),
                from => match primary.replica(client) {
                    Some(replica) => replica,
                    None if from == ReadFrom::PreferReplica => primary.clone(),
                    None => return Err(RouteError::NoReplica(primary.spec.name.clone())),
                },
            };
            return Ok(Dest {
                backend,
                retry: Retry::Never,
            });
        };
        let node = match route.read_from {
            ReadFrom::Primary => primary,
            _ if !read => primary,
            from => match route.replica(backend, client) {
                Some(replica) => replica,
                None if from == ReadFrom::PreferReplica => primary,
                None => return Err(RouteError::NoReplica(primary.spec.address.clone())),
            },
        };
        Ok(Dest {
            backend: node.clone(),
            retry: Retry::cluster(&route.shared),
        })
    }

    /// The share of a uniform keyspace each backend (index into `backends`) should get: the
    /// ring's shares over its backends (a backend out of the ring gets none), or a cluster's
    /// slots per primary.
    pub fn expected_shares(&self) -> Vec<f64> {
        let mut shares = vec![0.0; self.backends.len()];
        match &self.placement {
            Placement::Ring { ring, slots } => {
                for (i, share) in ring.shares().into_iter().enumerate() {
                    if let Some(s) = slots.get(i).and_then(|&b| shares.get_mut(b)) {
                        *s += share;
                    }
                }
            }
            Placement::Cluster(route) => {
                for slot in 0..crate::cluster::SLOTS {
                    if let Some(s) = shares.get_mut(route.owner(slot as u16)) {
                        *s += 1.0 / crate::cluster::SLOTS as f64;
                    }
                }
            }
        }
        shares
    }

    /// Why a request found no backend: a pool without backends, or a cluster without a slot
    /// map yet.
    pub fn no_node(&self) -> RouteError {
        match &self.placement {
            Placement::Cluster(route) => {
                route.shared.request_refresh();
                RouteError::NoSlotMap
            }
            Placement::Ring { .. } => RouteError::NoBackend,
        }
    }

    /// The error reply for [`Pool::no_node`].
    pub fn no_node_reply(&self) -> Bytes {
        Bytes::from(format!("-{}\r\n", self.no_node()))
    }

    /// Shared states of the pool's backends, in configuration order (for a cluster: the
    /// primaries, then the replicas).
    pub fn states(&self) -> impl Iterator<Item = Arc<BackendState>> + '_ {
        let replicas = self
            .cluster_route()
            .into_iter()
            .flat_map(Route::replica_nodes);
        self.backends
            .iter()
            .chain(replicas)
            .map(|b| b.state.clone())
    }
}
