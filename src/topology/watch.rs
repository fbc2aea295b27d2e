//! What the topology watches besides reloads: backend health (with `auto_eject`, a change
//! rebuilds the ring) and DNS (names that resolve to other addresses, and with discovery =
//! "dns" the set of backends a name stands for).

use std::net::SocketAddr;
use std::sync::Weak;
use std::time::Duration;

use tokio::sync::mpsc;
use tracing::{info, warn};

use super::Topology;
use crate::backend::{Change, HealthEvent};
use crate::config::{Discovery, PoolConfig};

/// With discovery = "dns": the addresses the pool's host name resolves to now (sorted).
pub(super) async fn discover(pool: &PoolConfig) -> Option<Vec<SocketAddr>> {
    if pool.discovery != Discovery::Dns {
        return None;
    }
    let b = pool.backends.first()?;
    match crate::backend::conn::resolve(&b.address.host, b.address.port).await {
        Ok(mut addrs) => {
            addrs.sort();
            addrs.dedup();
            Some(addrs)
        }
        Err(e) => {
            warn!(pool = %pool.name, "discovery: cannot resolve {}: {e}", b.address);
            None
        }
    }
}

/// Every `dns_refresh_ms` (the shortest of the pools'): backends whose name resolves to other
/// addresses move to them, and with discovery = "dns" the backends follow the name's
/// addresses.
pub(super) async fn refresh_dns(topology: Weak<Topology>) {
    loop {
        let Some(t) = topology.upgrade() else { return };
        let config = t.config();
        let backends = t.backends();
        drop(t);
        let Some(every) = config.pools.iter().filter_map(|p| p.dns_refresh).min() else {
            tokio::time::sleep(Duration::from_secs(1)).await;
            continue;
        };
        tokio::time::sleep(every).await;
        let mut rediscovered = false;
        for pool in &config.pools {
            let Some(found) = discover(pool).await else {
                continue;
            };
            let Some(t) = topology.upgrade() else { return };
            rediscovered |= t.discovered(&pool.name, found);
        }
        if rediscovered {
            if let Some(t) = topology.upgrade() {
                t.rebuild();
            }
            continue;
        }
        for b in backends {
            let target = &b.spec.target_now();
            if target.host.parse::<std::net::IpAddr>().is_ok() {
                continue;
            }
            let Ok(mut now) = crate::backend::conn::resolve(&target.host, target.port).await else {
                continue;
            };
            now.sort();
            let moved = {
                let mut last = b.spec.resolved.lock().unwrap_or_else(|e| e.into_inner());
                let moved = !last.is_empty() && *last != now;
                *last = now;
                moved
            };
            if moved {
                info!(backend = %b.spec.name, "{} resolves to other addresses: moving its connections", target.host);
                b.spec.moved();
            }
        }
    }
}

/// Acts on health changes: a cluster node down may be failing over (its pool's slot map is
/// fetched again soon), and with `auto_eject` a change of a backend in a ring rebuilds it.
pub(super) async fn watch_health(
    topology: Weak<Topology>,
    mut events: mpsc::UnboundedReceiver<HealthEvent>,
) {
    while let Some(event) = events.recv().await {
        let Some(t) = topology.upgrade() else { return };
        if event.change == Change::Down {
            t.request_cluster_refresh();
        }
        if t.ejects(&event.backend) {
            match event.change {
                Change::Down => {
                    warn!(backend = %event.backend, "ejected from the ring: its keys go to the other backends until it is up")
                }
                Change::Up => info!(backend = %event.backend, "back in the ring"),
            }
            t.rebuild();
        }
    }
}
