//! Fault injection, decided: which `[[faults]]` entry, if any, applies to one command. The
//! session acts on the answer (an error reply instead of sending, or a reply held back). Pure
//! apart from the counter of injected faults.

use std::time::Duration;

use metrics::Counter;

use crate::config::{FaultConfig, FaultKind};
use crate::protocol::command::COMMANDS;

/// One fault, ready for the data path.
#[derive(Debug)]
pub struct Fault {
    pub kind: FaultKind,
    /// For a delay: how long the reply is held.
    pub delay: Duration,
    /// Applied when a random `u32` is below this (2^32: always).
    threshold: u64,
    /// By command id: whether it applies; `None`: every command.
    commands: Option<Box<[bool]>>,
    /// Only commands with a key in this pool; `None`: any.
    pool: Option<usize>,
    injected: Counter,
}

impl Fault {
    /// Counts one injection (`shardis_faults_injected_total{kind}`).
    pub fn count(&self) {
        self.injected.increment(1);
    }
}

/// The faults of a table, in configuration order.
#[derive(Debug)]
pub struct Faults {
    list: Vec<Fault>,
}

impl Faults {
    /// The faults of `config`; `None` when there are none.
    pub fn new(config: &[FaultConfig]) -> Option<Faults> {
        if config.is_empty() {
            return None;
        }
        let list = config
            .iter()
            .map(|f| {
                let commands = (!f.commands.is_empty()).then(|| {
                    COMMANDS
                        .iter()
                        .map(|c| {
                            let parent = c.name.split('|').next().unwrap_or(c.name);
                            f.commands.iter().any(|n| n == parent)
                        })
                        .collect()
                });
                Fault {
                    kind: f.kind,
                    delay: f.delay,
                    threshold: (f.fraction.clamp(0.0, 1.0) * (1u64 << 32) as f64) as u64,
                    commands,
                    pool: f.pool,
                    injected: metrics::counter!(
                        crate::metrics::FAULTS_INJECTED_TOTAL,
                        "kind" => f.kind.name()
                    ),
                }
            })
            .collect();
        Some(Faults { list })
    }

    /// The first fault that applies to command `id` whose keys go to pools `in_pool` says
    /// yes to, each fault drawing its own random number from `roll`.
    pub fn pick(
        &self,
        id: usize,
        in_pool: impl Fn(usize) -> bool,
        mut roll: impl FnMut() -> u32,
    ) -> Option<&Fault> {
        self.list.iter().find(|f| {
            f.commands
                .as_ref()
                .is_none_or(|c| c.get(id).copied().unwrap_or(false))
                && f.pool.is_none_or(&in_pool)
                && u64::from(roll()) < f.threshold
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::command::lookup;

    fn faults(text: &str) -> Faults {
        let c = crate::config::Config::parse(&format!(
            "[server]\nlisten = \"127.0.0.1:1\"\n[[pools]]\nname = \"a\"\n\
             backends = [{{ address = \"127.0.0.1:2\" }}]\n{text}"
        ))
        .unwrap();
        Faults::new(&c.faults).unwrap()
    }

    #[test]
    fn faults_match_commands_pools_and_fractions() {
        let f = faults(
            "[[faults]]\nkind = \"error\"\nfraction = 0.5\ncommands = [\"GET\", \"config\"]\npool = \"a\"\n\
             [[faults]]\nkind = \"delay\"\ndelay_ms = 200\n",
        );
        let get = lookup(b"get").unwrap().0;
        let set = lookup(b"set").unwrap().0;
        let config_get = crate::protocol::command::lookup_sub("config", b"get")
            .unwrap()
            .0;
        let kind = |id, pool: usize, roll: u32| f.pick(id, |p| p == pool, || roll).map(|f| f.kind);
        assert_eq!(kind(get, 0, 0), Some(FaultKind::Error));
        assert_eq!(kind(config_get, 0, 0), Some(FaultKind::Error));
        // Past the fraction, or another pool: the next fault, which takes everything.
        assert_eq!(kind(get, 0, u32::MAX), Some(FaultKind::Delay));
        assert_eq!(kind(get, 1, 0), Some(FaultKind::Delay));
        assert_eq!(kind(set, 0, 0), Some(FaultKind::Delay));
        let delay = f.pick(set, |_| true, || 0).unwrap();
        assert_eq!(delay.delay, Duration::from_millis(200));
        assert!(Faults::new(&[]).is_none());
    }
}
