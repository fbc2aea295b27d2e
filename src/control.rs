//! The admin API's [`Control`] of the running proxy. [`LiveControl`] reloads by re-reading the
//! configuration file and swapping it in through the [`Topology`], and shows the live
//! configuration and backends; [`FixedControl`] serves a configuration that cannot change
//! (in-process tests of the admin server).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use serde_json::Value;

use crate::admin::{Control, Status};
use crate::config::Config;
use crate::state::ProxyState;
use crate::topology::Topology;

/// Serves the admin API from the live topology.
pub struct LiveControl {
    topology: Arc<Topology>,
    state: Arc<ProxyState>,
}

impl LiveControl {
    /// The controls of the proxy routed by `topology`, whose health is in `state`.
    pub fn new(topology: Arc<Topology>, state: Arc<ProxyState>) -> Self {
        Self { topology, state }
    }
}

impl Control for LiveControl {
    fn reload(&self) -> Pin<Box<dyn Future<Output = Result<Value, Vec<String>>> + Send + '_>> {
        Box::pin(async { self.topology.reload() })
    }

    fn config(&self) -> Value {
        self.topology.config().to_json()
    }

    fn backends(&self) -> Value {
        serde_json::to_value(Status::snapshot(&self.state).backends).unwrap_or(Value::Null)
    }
}

/// Serves the admin API from the configuration the proxy started with.
pub struct FixedControl {
    config: Value,
    state: Arc<ProxyState>,
}

impl FixedControl {
    /// The controls for a proxy running `config`, whose health is in `state`.
    pub fn new(config: &Config, state: Arc<ProxyState>) -> Self {
        Self {
            config: config.to_json(),
            state,
        }
    }
}

impl Control for FixedControl {
    fn reload(&self) -> Pin<Box<dyn Future<Output = Result<Value, Vec<String>>> + Send + '_>> {
        Box::pin(async {
            Err(vec![
                "reload is not available: shardis was started without a configuration file".into(),
            ])
        })
    }

    fn config(&self) -> Value {
        self.config.clone()
    }

    fn backends(&self) -> Value {
        serde_json::to_value(Status::snapshot(&self.state).backends).unwrap_or(Value::Null)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::BackendState;

    #[tokio::test]
    async fn serves_the_start_configuration_and_refuses_reload() {
        let config = Config::from_backends(&["127.0.0.1:7001".into()]).unwrap();
        let backend = Arc::new(BackendState::new("127.0.0.1:7001", "127.0.0.1:7001"));
        backend.connection_opened();
        let state = Arc::new(ProxyState::new(config.digest.clone(), vec![backend]));
        let control = FixedControl::new(&config, state.clone());
        assert_eq!(control.config(), config.to_json());
        let backends = control.backends();
        assert_eq!(backends[0]["name"], "127.0.0.1:7001");
        assert_eq!(backends[0]["state"], "up");
        let status = serde_json::to_value(Status::snapshot(&state)).unwrap();
        assert_eq!(backends, status["backends"]);
        let errors = control.reload().await.unwrap_err();
        assert_eq!(errors.len(), 1);
        assert!(
            errors[0].starts_with("reload is not available"),
            "{errors:?}"
        );
    }
}
