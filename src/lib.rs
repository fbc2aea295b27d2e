//! shardis: a sharding Redis proxy.
//!
//! The data path, in five steps:
//! 1. [`session`] reads RESP frames from a client ([`protocol::request`]), looks each command up in the
//!    command table ([`protocol::command`]);
//! 2. [`routing`] finds the pool and backend that own its keys: key positions from the command
//!    table ([`protocol::keys`]), a portable hash and a ketama, maglev or modula ring ([`router`])
//!    or a Redis Cluster slot map ([`cluster`]);
//! 3. [`backend`] pipelines the request on one of a few shared connections to that backend, writing many
//!    requests in one syscall;
//! 4. replies are matched in FIFO order on each backend link and sent back to the session, which
//!    asks [`routing::followup`] whether a reply must send the request elsewhere first;
//! 5. the session answers the client in the order the commands arrived, merging fan-out replies.
//!
//! Module map (docs/architecture.md has the whole of it): [`config`] (TOML -> validated config),
//! [`topology`] (routing tables built from the configuration and kept current: reloads, health,
//! DNS, cluster slot maps), [`auth`] (users, passwords, logins) and [`acl`] (ACL rules),
//! [`clients`] (the client registry), [`server`] (accept loop, limits, drain), [`state`]
//! (proxy-wide counters and backend health), [`admin`] (HTTP: /metrics, /healthz, /readyz,
//! /status and the /admin API), [`control`] (what the /admin API acts on), [`metrics`] (metric
//! names and handles), [`tls`] (rustls on the client listener and to the backends), [`workers`]
//! (thread-per-core runtimes: a session and the backend links it uses live on one thread),
//! [`script`] (an embedded Lua 5.1 that runs scripts as Redis does, for scripts whose keys span
//! backends).

pub mod acl;
pub mod admin;
pub mod auth;
pub mod backend;
pub mod clients;
pub mod cluster;
pub mod config;
pub mod control;
pub mod errorstats;
pub mod hotkeys;
pub mod metrics;
pub mod nearcache;
pub mod net;
pub mod protocol;
pub mod router;
pub mod routing;
pub mod script;
pub mod scripting;
pub mod server;
pub mod session;
pub mod state;
pub mod tls;
pub mod topology;
pub mod workers;
