//! shardis: a sharding Redis proxy.
//!
//! The data path, in five steps:
//! 1. [`session`] reads RESP frames from a client ([`protocol::request`]), looks each command up in the
//!    command table ([`protocol::command`]);
//! 2. [`router`] hashes each key to a backend with a portable hash and a ketama, maglev or modula ring;
//! 3. [`backend`] pipelines the request on one of a few shared connections to that backend, writing many
//!    requests in one syscall;
//! 4. replies are matched in FIFO order on each backend link and sent back to the session;
//! 5. the session answers the client in the order the commands arrived, merging fan-out replies.
//!
//! Module map: [`config`] (TOML -> validated config), [`auth`] (users, passwords, ACL rules),
//! [`cluster`] (Redis Cluster upstreams: slot map, refresh, redirections),
//! [`server`] (accept loop, limits, drain),
//! [`state`] (proxy-wide counters and backend health), [`admin`] (HTTP: /metrics, /healthz,
//! /readyz, /status and the /admin API), [`control`] (what the /admin API acts on),
//! [`metrics`] (metric names and handles), [`tls`] (rustls on the client listener and to the
//! backends), [`workers`] (thread-per-core runtimes: a session and the backend links it uses
//! live on one thread).

pub mod admin;
pub mod auth;
pub mod backend;
pub mod cluster;
pub mod config;
pub mod control;
pub mod metrics;
pub mod net;
pub mod protocol;
pub mod pubsub;
pub mod router;
pub mod script;
pub mod server;
pub mod session;
pub mod state;
pub mod tls;
pub mod topology;
pub mod workers;
