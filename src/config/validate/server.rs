//! `[server]` and `[admin]`: listeners, client limits, the default user's password, and the
//! commands refused by default that the operator enabled.

use std::num::NonZeroUsize;
use std::time::Duration;

use super::super::raw::{RawAdmin, RawServer};
use super::super::secret::{self, Sources};
use super::super::tls::server_tls;
use super::super::{AdminConfig, DEFAULT_ADMIN_LISTEN, ServerConfig, limits};
use super::{Problems, to_usize};
use crate::protocol::command::{ALLOWABLE, allowable};

/// `[server]`.
pub(super) fn server(p: &mut Problems, raw: Option<RawServer>) -> ServerConfig {
    let Some(mut raw) = raw else {
        p.add("server", "the [server] section with `listen` is required");
        return server(&mut Problems::default(), Some(RawServer::default()));
    };
    if raw.listen.is_none() {
        p.add("server.listen", "is required (like \"127.0.0.1:6380\")");
    }
    let listen = p.socket_addr("server.listen", raw.listen.as_deref(), "127.0.0.1:0");
    let plain_listen = raw
        .plain_listen
        .as_deref()
        .map(|text| p.socket_addr("server.plain_listen", Some(text), "127.0.0.1:0"));
    if plain_listen.is_some() && raw.tls.is_none() {
        p.add(
            "server.plain_listen",
            "is a plain listener beside a TLS one: set [server.tls] too, or use server.listen alone",
        );
    }
    let tls = raw.tls.take().and_then(|t| server_tls(p, t));
    // Problems are reported in the order of the keys in config/shardis.toml.
    let mut config = server_limits(p, &raw);
    client_limits(p, &raw, &mut config);
    let password = secret::client_password(
        p,
        "server.password",
        Sources {
            inline: raw.password.take(),
            sha256: raw.password_sha256.take(),
            env: raw.password_env.take(),
            file: raw.password_file.take(),
        },
    );
    let allow_commands = allow_commands(p, raw.allow_commands.take().unwrap_or_default());
    let scripts = super::scripts::scripts(p, &raw);
    ServerConfig {
        scripts,
        listen,
        plain_listen,
        tls,
        password,
        allow_commands,
        ..config
    }
}

/// The proxy's own limits: clients, pipelines, requests, threads, shutdown, slow log.
fn server_limits(p: &mut Problems, raw: &RawServer) -> ServerConfig {
    let max = i64::MAX;
    let mut int = |name: &str, value: Option<i64>, default: i64, min: i64, max: i64| {
        p.int(&format!("server.{name}"), value, default, min, max)
    };
    let max_clients = int("max_clients", raw.max_clients, limits::MAX_CLIENTS, 1, max);
    let max_pipeline = int(
        "max_pipeline",
        raw.max_pipeline,
        limits::MAX_PIPELINE,
        1,
        max,
    );
    let max_request = int(
        "max_request_bytes",
        raw.max_request_bytes,
        limits::MAX_REQUEST_BYTES,
        1,
        max,
    );
    let grace = int(
        "shutdown_grace_ms",
        raw.shutdown_grace_ms,
        limits::SHUTDOWN_GRACE_MS,
        0,
        max,
    );
    let slowlog = int("slowlog_ms", raw.slowlog_ms, 0, 0, max);
    let threads = int("threads", raw.threads, 0, 0, limits::MAX_THREADS);
    let max_subscriber_output = int(
        "max_subscriber_output_bytes",
        raw.max_subscriber_output_bytes,
        limits::MAX_SUBSCRIBER_OUTPUT_BYTES,
        1024,
        max,
    );
    let max_keys_reply = int(
        "max_keys_reply",
        raw.max_keys_reply,
        limits::MAX_KEYS_REPLY,
        1,
        max,
    );
    let max_inline = int(
        "max_inline_bytes",
        raw.max_inline_bytes,
        limits::MAX_INLINE_BYTES,
        64,
        max,
    );
    let max_multibulk = int(
        "max_multibulk_length",
        raw.max_multibulk_length,
        limits::MAX_MULTIBULK_LENGTH,
        1,
        i64::from(i32::MAX),
    );
    ServerConfig {
        listen: std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
        plain_listen: None,
        tls: None,
        max_clients: to_usize(max_clients),
        max_pipeline: to_usize(max_pipeline),
        max_request_bytes: to_usize(max_request),
        shutdown_grace: Duration::from_millis(grace as u64),
        slowlog: (slowlog > 0).then(|| Duration::from_millis(slowlog as u64)),
        threads: NonZeroUsize::new(to_usize(threads)),
        allow_commands: Vec::new(),
        max_subscriber_output_bytes: to_usize(max_subscriber_output),
        max_keys_reply: to_usize(max_keys_reply),
        max_inline_bytes: to_usize(max_inline),
        max_multibulk_length: to_usize(max_multibulk),
        client_idle_timeout: None,
        client_output_limit_bytes: None,
        password: None,
        auth_failure_delay: Duration::ZERO,
        auth_failure_limit: 0,
        scripts: crate::config::ScriptsConfig::default(),
    }
}

/// What one client may do before shardis closes it: idle time, unread output, failed AUTHs.
fn client_limits(p: &mut Problems, raw: &RawServer, config: &mut ServerConfig) {
    let max = i64::MAX;
    let idle = p.int(
        "server.client_idle_timeout_ms",
        raw.client_idle_timeout_ms,
        0,
        0,
        max,
    );
    let output_limit = p.int(
        "server.client_output_limit_bytes",
        raw.client_output_limit_bytes,
        0,
        0,
        max,
    );
    if output_limit > 0 && output_limit < 1024 {
        p.add(
            "server.client_output_limit_bytes",
            "must be 0 (off) or at least 1024",
        );
    }
    let auth_failure_delay = p.int(
        "server.auth_failure_delay_ms",
        raw.auth_failure_delay_ms,
        limits::AUTH_FAILURE_DELAY_MS,
        0,
        limits::MAX_AUTH_FAILURE_DELAY_MS,
    );
    let auth_failure_limit = p.int(
        "server.auth_failure_limit",
        raw.auth_failure_limit,
        limits::AUTH_FAILURE_LIMIT,
        0,
        1_000_000,
    );
    config.client_idle_timeout = (idle > 0).then(|| Duration::from_millis(idle as u64));
    config.client_output_limit_bytes = (output_limit > 0).then(|| to_usize(output_limit));
    config.auth_failure_delay = Duration::from_millis(auth_failure_delay as u64);
    config.auth_failure_limit = auth_failure_limit as u32;
}

/// `allow_commands`: lowercase names of commands that may be enabled, each once.
fn allow_commands(p: &mut Problems, names: Vec<String>) -> Vec<String> {
    let mut allowed = Vec::new();
    for (i, name) in names.into_iter().enumerate() {
        let lower = name.to_ascii_lowercase();
        if !allowable(&lower) {
            p.add(
                format_args!("server.allow_commands[{i}]"),
                format_args!(
                    "{name:?} cannot be enabled; these can: {}",
                    ALLOWABLE.join(", ")
                ),
            );
        } else if !allowed.contains(&lower) {
            allowed.push(lower);
        }
    }
    allowed
}

/// `[admin]`.
pub(super) fn admin(p: &mut Problems, raw: Option<RawAdmin>) -> AdminConfig {
    let raw = raw.unwrap_or_default();
    AdminConfig {
        listen: p.socket_addr("admin.listen", raw.listen.as_deref(), DEFAULT_ADMIN_LISTEN),
        allow_mutations: raw.allow_mutations.unwrap_or(false),
    }
}
