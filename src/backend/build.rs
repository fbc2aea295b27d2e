//! Backends made from the configuration: the connection target of a configured backend or a
//! cluster node, the fingerprint that decides whether a reload keeps it, and starting it with
//! its pool's health and connection settings. One place for hashed pools and cluster nodes.

use std::sync::Arc;

use tokio::sync::mpsc;
use tracing::warn;

use super::conn::{Target, TargetTls};
use super::hold::HoldSettings;
use super::{Backend, HealthEvent, Spec};
use crate::config::{BackendConfig, PasswordDigest, PoolConfig};

/// Where backend `b` of `pool` is reached, and how. `listed_host`: with discovery = "dns", the
/// name listed in the file (its certificate is checked against that, not against the address
/// found). `readonly`: a cluster replica, whose connections send `READONLY`.
pub fn target(
    b: &BackendConfig,
    pool: &PoolConfig,
    listed_host: Option<&str>,
    readonly: bool,
) -> Target {
    Target {
        host: b.address.host.clone(),
        port: b.address.port,
        connect_timeout: pool.connect_timeout,
        tls: tls_for(b, pool, listed_host),
        credentials: pool.credentials(b),
        readonly,
    }
}

/// TLS to backend `b`: its certificate must be valid for `tls_server_name`, else for the host
/// in its address (with discovery = "dns", `listed_host`, not the address found).
fn tls_for(b: &BackendConfig, pool: &PoolConfig, listed_host: Option<&str>) -> Option<TargetTls> {
    let tls = pool.tls.as_ref()?;
    let host = listed_host.unwrap_or(&b.address.host);
    let name = match tls.loaded.name_for(host) {
        Some(name) => name,
        None => {
            // Validation refuses such hosts; a name found by discovery is an IP address.
            warn!(backend = %b.name, "{host:?} is not a name a certificate can be checked against; set tls_server_name");
            rustls::pki_types::ServerName::try_from(b.address.host.clone()).ok()?
        }
    };
    Some(TargetTls {
        client: tls.loaded.clone(),
        name,
    })
}

/// Everything that shapes a backend's connections: a backend is kept across a reload only
/// when this is unchanged.
pub fn fingerprint(b: &BackendConfig, pool: &PoolConfig) -> String {
    let tls = pool
        .tls
        .as_ref()
        .map_or("off", |t| t.loaded.digest.as_str());
    let creds = pool.credentials(b);
    // The password as a digest: this string is compared, never shown, but need not hold it.
    let password = creds
        .password
        .as_ref()
        .map(|p| PasswordDigest::of(p.expose()));
    // A Sentinel-managed shard is its master name: its address changes at run time.
    let place = match &b.sentinel_master {
        Some(master) => format!("sentinel:{master}"),
        None => b.address.to_string(),
    };
    let read_from = pool.sentinel.as_ref().map(|s| s.read_from.name());
    format!(
        "{place} timeout={:?} connect={:?} links={} exclusive={} health={:?} limit={} retry={:?} \
         user={:?} password={} db={} tls={tls} hold={:?} read_from={read_from:?}",
        pool.timeout,
        pool.connect_timeout,
        pool.connections_per_backend,
        pool.max_exclusive,
        pool.health_interval,
        pool.failure_limit,
        pool.retry_timeout,
        creds.username,
        password.map_or(String::new(), |d| d.fingerprint()),
        creds.db,
        pool.hold,
    )
}

/// How a backend of `pool` holds requests while it is away: a shard that fails over (a
/// Sentinel-managed one, a cluster primary) for `failover_hold_ms`, a plain backend for
/// `restart_hold_ms`.
pub fn hold(pool: &PoolConfig, fails_over: bool) -> HoldSettings {
    HoldSettings {
        window: if fails_over {
            pool.hold.failover
        } else {
            pool.hold.restart
        },
        max: pool.hold.requests,
    }
}

/// Starts a backend from `spec` with `pool`'s health, retry and connection settings (hashed
/// backends and cluster nodes alike); its health changes are reported on `events`.
pub fn start(
    mut spec: Spec,
    pool: &PoolConfig,
    fingerprint: String,
    events: &mpsc::UnboundedSender<HealthEvent>,
) -> Arc<Backend> {
    spec.health_interval = pool.health_interval;
    spec.retry_timeout = pool.retry_timeout;
    spec.events = Some(events.clone());
    spec.state.set_failure_limit(pool.failure_limit);
    Backend::start(
        Arc::new(spec),
        pool.connections_per_backend.get(),
        pool.max_exclusive,
        fingerprint,
    )
}
