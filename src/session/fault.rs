//! Fault injection, acted on (`[[faults]]`; the decision is [`crate::routing::Faults`]'s): an
//! error fault answers `-ERR Fault injected` and sends nothing; a delay fault sends the command
//! at once and holds its reply back. The reply is held outside the session, by a small task
//! that its backend replies go through, so the session keeps serving: other clients are never
//! delayed, the client's earlier commands are answered as usual, and the replies stay in order
//! (the ones after the delayed command wait for it, as they would for a slow command).

use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::{Instant, sleep_until};

use super::Session;
use super::pending::next_random;
use crate::backend::Inbound;
use crate::config::FaultKind;
use crate::routing::Faults;

/// Envoy's text for an injected error.
pub(super) const FAULT_ERROR: &str = "ERR Fault injected";

/// What a fault does to one command.
pub(super) enum Injected {
    /// Answer with [`FAULT_ERROR`] and send nothing.
    Error,
    /// Send it; its replies go through this sender, which holds them back.
    Delay(mpsc::UnboundedSender<Inbound>),
}

impl Session {
    /// The fault to inject into command `id`, whose keys go to the pools `in_pool` accepts,
    /// if one applies (counted).
    pub(super) fn inject(
        &mut self,
        faults: &Faults,
        id: usize,
        in_pool: impl Fn(usize) -> bool,
    ) -> Option<Injected> {
        let rng = &mut self.rng;
        let fault = faults.pick(id, in_pool, || (next_random(rng) >> 32) as u32)?;
        fault.count();
        Some(match fault.kind {
            FaultKind::Error => Injected::Error,
            FaultKind::Delay => Injected::Delay(self.relay(fault.delay)),
        })
    }

    /// A sender for replies that reach this session `delay` after the first of them arrives
    /// (a split command's later parts are not delayed again): a task that lives as long as the
    /// command's requests.
    fn relay(&self, delay: Duration) -> mpsc::UnboundedSender<Inbound> {
        let (tx, mut rx) = mpsc::unbounded_channel::<Inbound>();
        let session = self.tx.clone();
        tokio::spawn(async move {
            let mut until = None;
            while let Some(msg) = rx.recv().await {
                let at = *until.get_or_insert_with(|| Instant::now() + delay);
                sleep_until(at).await;
                if session.send(msg).is_err() {
                    return;
                }
            }
        });
        tx
    }
}
