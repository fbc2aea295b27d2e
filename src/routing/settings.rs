//! The session settings in force: the limits and permissions that a reload may change, read
//! by every session from the routing table it holds (they apply to commands and clients from
//! the next command on).

use std::sync::Arc;
use std::time::Duration;

use crate::auth::Auth;
use crate::config::{Config, limits};
use crate::protocol::command::COMMANDS;
use crate::protocol::request::RequestLimits;

/// What sessions read from the live configuration besides the pools.
#[derive(Debug, Clone)]
pub struct Settings {
    pub max_pipeline: usize,
    pub slowlog: Option<Duration>,
    /// By command id: enabled by `[server] allow_commands`.
    pub allowed: Vec<bool>,
    pub max_subscriber_output: usize,
    pub max_keys_reply: usize,
    /// Bounds of one request.
    pub request: RequestLimits,
    /// `[server] client_idle_timeout_ms`, if on.
    pub idle_timeout: Option<Duration>,
    /// `[server] client_output_limit_bytes`, if on.
    pub output_limit: Option<usize>,
    /// Who clients may authenticate as, and what each may do.
    pub auth: Arc<Auth>,
    /// The database the catch-all pool's connections select: the one clients see.
    pub db: u32,
    /// Scripts and transactions across backends.
    pub scripts: crate::config::ScriptsConfig,
}

impl Default for Settings {
    fn default() -> Settings {
        Settings {
            max_pipeline: limits::MAX_PIPELINE as usize,
            slowlog: None,
            allowed: vec![false; COMMANDS.len()],
            max_subscriber_output: limits::MAX_SUBSCRIBER_OUTPUT_BYTES as usize,
            max_keys_reply: limits::MAX_KEYS_REPLY as usize,
            request: RequestLimits::with_request_bytes(limits::MAX_REQUEST_BYTES as usize),
            idle_timeout: None,
            output_limit: None,
            auth: Arc::default(),
            db: 0,
            scripts: crate::config::ScriptsConfig::default(),
        }
    }
}

impl Settings {
    /// Enables the commands named (by parent name) in `allow_commands`.
    pub fn allow(&mut self, names: &[String]) {
        for (id, cmd) in COMMANDS.iter().enumerate() {
            let parent = cmd.name.split('|').next().unwrap_or(cmd.name);
            self.allowed[id] = names.iter().any(|n| n == parent);
        }
    }

    /// The settings of `config`, with its users `auth`.
    pub fn of(config: &Config, auth: Arc<Auth>, db: u32) -> Settings {
        let server = &config.server;
        let mut settings = Settings {
            max_pipeline: server.max_pipeline,
            slowlog: server.slowlog,
            max_subscriber_output: server.max_subscriber_output_bytes,
            max_keys_reply: server.max_keys_reply,
            request: RequestLimits {
                request_bytes: server.max_request_bytes,
                inline_bytes: server.max_inline_bytes,
                args: server.max_multibulk_length,
            },
            idle_timeout: server.client_idle_timeout,
            output_limit: server.client_output_limit_bytes,
            auth,
            db,
            scripts: server.scripts,
            ..Settings::default()
        };
        settings.allow(&server.allow_commands);
        settings
    }
}
