//! TEMPORARY stub, replaced by the router branch.
#![allow(missing_docs, dead_code)]
use crate::router::{DistributionKind, HashKind, HashTag};
use std::net::SocketAddr;
use std::num::{NonZeroU32, NonZeroUsize};
use std::path::Path;
use std::time::Duration;
#[derive(Debug, Clone)]
pub struct Config {
    pub server: ServerConfig,
    pub admin: AdminConfig,
    pub pools: Vec<PoolConfig>,
    pub digest: String,
}
#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    pub max_clients: usize,
    pub max_pipeline: usize,
    pub max_request_bytes: usize,
    pub shutdown_grace: Duration,
    pub slowlog: Option<Duration>,
    pub threads: Option<NonZeroUsize>,
}
#[derive(Debug, Clone)]
pub struct AdminConfig {
    pub listen: SocketAddr,
}
#[derive(Debug, Clone)]
pub struct PoolConfig {
    pub name: String,
    pub distribution: DistributionKind,
    pub hash: HashKind,
    pub hash_tag: Option<HashTag>,
    pub timeout: Duration,
    pub connect_timeout: Duration,
    pub connections_per_backend: NonZeroUsize,
    pub backends: Vec<BackendConfig>,
}
#[derive(Debug, Clone)]
pub struct BackendConfig {
    pub name: String,
    pub address: Address,
    pub weight: NonZeroU32,
}
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Address {
    pub host: String,
    pub port: u16,
}
impl std::fmt::Display for Address {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.host, self.port)
    }
}
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("invalid: {0:?}")]
    Invalid(Vec<String>),
}
impl Config {
    pub fn load(_p: &Path) -> Result<Config, ConfigError> {
        Err(ConfigError::Invalid(vec![]))
    }
    pub fn from_backends(addrs: &[String]) -> Result<Config, ConfigError> {
        let backends = addrs
            .iter()
            .map(|a| {
                let (h, p) = a.rsplit_once(':').unwrap_or((a, "6379"));
                BackendConfig {
                    name: a.clone(),
                    address: Address {
                        host: h.into(),
                        port: p.parse().unwrap_or(6379),
                    },
                    weight: NonZeroU32::MIN,
                }
            })
            .collect();
        Ok(Config {
            server: ServerConfig {
                listen: "127.0.0.1:6380"
                    .parse()
                    .map_err(|_| ConfigError::Invalid(vec![]))?,
                max_clients: 10000,
                max_pipeline: 1024,
                max_request_bytes: 512 << 20,
                shutdown_grace: Duration::from_secs(5),
                slowlog: None,
                threads: None,
            },
            admin: AdminConfig {
                listen: "127.0.0.1:9121"
                    .parse()
                    .map_err(|_| ConfigError::Invalid(vec![]))?,
            },
            pools: vec![PoolConfig {
                name: "main".into(),
                distribution: DistributionKind::Ketama,
                hash: HashKind::Fnv1a64,
                hash_tag: None,
                timeout: Duration::from_secs(1),
                connect_timeout: Duration::from_secs(1),
                connections_per_backend: NonZeroUsize::MIN.saturating_add(1),
                backends,
            }],
            digest: String::new(),
        })
    }
    pub fn describe(&self) -> String {
        format!("{self:?}")
    }
}
