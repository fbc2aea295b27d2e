//! Keyed commands sent whole when the table asks more than a lookup of them (see
//! [`crate::routing::Table::special`]): a route that removes its prefix, a route that mirrors,
//! or a fault in force. The single-pool path never comes here.

use super::Session;
use super::call::Call;
use super::fault::{FAULT_ERROR, Injected};
use super::pending::Then;
use crate::protocol::keys::key_span;
use crate::routing::Dest;

impl Session {
    /// Sends `call` to `dest` (where routing put every key of it): after its fault if one
    /// applies, without the prefixes its routes remove, and mirrored along its first key's
    /// route.
    pub(super) async fn forward_routed(&mut self, call: Call<'_>, dest: Dest, then: Then) {
        let table = self.table.clone();
        let (id, now) = (call.id, call.start);
        let span = match key_span(call.cmd, &call.frame, call.args) {
            Ok(Some(span)) => span,
            // Routed whole without keys: nothing to remove or mirror.
            _ => return self.forward(id, dest, call.frame, now, then).await,
        };
        let first = &call.frame[call.args[span.dest.unwrap_or(span.first)].clone()];
        let Ok(at) = table.locate(first) else {
            return self.forward(id, dest, call.frame, now, then).await;
        };
        let injected = match table.faults() {
            Some(faults) => self.inject(faults, id, |p| p == at.pool),
            None => None,
        };
        if matches!(injected, Some(Injected::Error)) {
            return self.fail(id, now, FAULT_ERROR);
        }
        let frame = table.unprefixed(call.cmd, call.frame.clone(), call.args);
        self.mirror_whole(&table, &call, &span, &frame, at.route);
        match injected {
            Some(Injected::Delay(via)) => self.forward_via(id, dest, frame, now, then, via).await,
            _ => self.forward(id, dest, frame, now, then).await,
        }
    }
}
