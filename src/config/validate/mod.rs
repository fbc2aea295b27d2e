//! Raw configuration -> typed [`Config`]: every problem is collected, each naming its key.
//! One file per section: [`server`] (`[server]` and `[admin]`), [`pool`] (`[[pools]]`) and
//! [`backends`] (a pool's `backends`); `[[users]]` is in `super::users`.

mod backends;
mod pool;
mod scripts;
mod server;

pub(in crate::config) use backends::username;

use std::fmt::Display;
use std::net::SocketAddr;

use super::raw::RawConfig;
use super::{Config, ConfigError, PoolConfig};

/// Accumulates problems as `key: message` lines.
#[derive(Default)]
pub(super) struct Problems(pub(super) Vec<String>);

impl Problems {
    pub(super) fn add(&mut self, key: impl Display, message: impl Display) {
        self.0.push(format!("{key}: {message}"));
    }

    /// An integer setting: `default` when absent; reported and replaced by `default` when
    /// outside `min..=max`.
    pub(super) fn int(
        &mut self,
        key: &str,
        value: Option<i64>,
        default: i64,
        min: i64,
        max: i64,
    ) -> i64 {
        match value {
            None => default,
            Some(v) if (min..=max).contains(&v) => v,
            Some(_) if max == i64::MAX => {
                self.add(key, format_args!("must be at least {min}"));
                default
            }
            Some(v) => {
                self.add(key, format_args!("must be from {min} to {max} (got {v})"));
                default
            }
        }
    }

    pub(super) fn socket_addr(
        &mut self,
        key: &str,
        value: Option<&str>,
        default: &str,
    ) -> SocketAddr {
        let text = value.unwrap_or(default);
        match text.parse() {
            Ok(addr) => addr,
            Err(_) => {
                self.add(
                    key,
                    format_args!(
                        "{text:?} is not an IP:PORT socket address (like \"127.0.0.1:6380\")"
                    ),
                );
                SocketAddr::from(([127, 0, 0, 1], 0))
            }
        }
    }
}

/// Converts and checks a raw configuration, reporting every problem found: first the
/// `unknown` keys (paths like `pools[0].hashtag`), then every invalid value.
pub(super) fn validate(raw: RawConfig, unknown: Vec<String>) -> Result<Config, ConfigError> {
    let mut p = Problems::default();
    for key in unknown {
        p.add(key, "unknown key (config/shardis.toml lists every key)");
    }
    let server = server::server(&mut p, raw.server);
    let admin = server::admin(&mut p, raw.admin);
    if server.listen == admin.listen && server.listen.port() != 0 {
        p.add("admin.listen", "must differ from server.listen");
    }
    if let Some(plain) = server.plain_listen
        && plain.port() != 0
    {
        if plain == server.listen {
            p.add("server.plain_listen", "must differ from server.listen");
        }
        if plain == admin.listen {
            p.add("admin.listen", "must differ from server.plain_listen");
        }
    }
    let pools: Vec<PoolConfig> = raw
        .pools
        .into_iter()
        .enumerate()
        .map(|(i, pool)| pool::pool(&mut p, &format!("pools[{i}]"), pool))
        .collect();
    match pools.len() {
        0 => p.add("pools", "at least one [[pools]] section is required"),
        1 => {}
        n => p.add(
            "pools",
            format_args!("{n} pools are defined, but this version of shardis supports exactly one"),
        ),
    }
    let users = super::users::users(&mut p, raw.users, server.password.is_some());
    if !p.0.is_empty() {
        return Err(ConfigError::Invalid(p.0));
    }
    let mut config = Config {
        server,
        admin,
        pools,
        users,
        digest: String::new(),
    };
    config.digest = config.compute_digest();
    Ok(config)
}

/// A validated, non-negative integer setting as a size.
fn to_usize(v: i64) -> usize {
    usize::try_from(v).unwrap_or(usize::MAX)
}
