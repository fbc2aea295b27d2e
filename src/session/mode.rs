//! The modes a session can be in, and which commands each accepts.
//!
//! - **Normal**: everything in the command table.
//! - **Transaction** (after MULTI): commands are checked and queued, answered `+QUEUED`, and
//!   run as one batch at EXEC; see [`super::transaction`].
//! - **Subscribed** (with at least one subscription): a RESP2 client may only (un)subscribe,
//!   PING, QUIT and RESET, as in Redis; a RESP3 client may send anything and gets its messages
//!   as push frames between its replies.
//! - **Blocked** (a blocking command waits on an exclusive connection): nothing more is sent
//!   until it is answered, as Redis runs nothing else for a blocked client; input waits.

use crate::protocol::command::{Command, Kind, SessionCmd};
use crate::protocol::out::Proto;

use super::Session;
use super::refusal::Refusal;

/// What the session is doing, as far as admitting a command goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Normal,
    Transaction,
    Subscribed,
    Blocked,
}

/// Whether a client in subscribed mode may send `cmd`; `Err` is Redis's refusal.
pub(super) fn subscribed_admits(proto: Proto, cmd: &Command) -> Result<(), Refusal> {
    if proto == Proto::Resp3 {
        return Ok(());
    }
    let allowed = matches!(
        cmd.kind,
        Kind::Session(SessionCmd::Subscribe(_) | SessionCmd::Unsubscribe(_) | SessionCmd::Reset)
    ) || matches!(cmd.name, "ping" | "quit");
    if allowed {
        Ok(())
    } else {
        Err(Refusal::Subscribed(cmd.name))
    }
}

impl Session {
    /// What the session is doing, for admitting commands.
    pub(super) fn mode(&self) -> Mode {
        if self.modes.blocked.is_some() {
            Mode::Blocked
        } else if self.modes.multi.is_some() {
            Mode::Transaction
        } else if self.modes.subs.as_ref().is_some_and(|s| s.count() > 0) {
            Mode::Subscribed
        } else {
            Mode::Normal
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::command::lookup;

    #[test]
    fn resp2_subscribers_are_limited_like_in_redis() {
        let cmd = |n: &str| lookup(n.as_bytes()).unwrap().1;
        for ok in [
            "subscribe",
            "punsubscribe",
            "ssubscribe",
            "ping",
            "quit",
            "reset",
        ] {
            assert!(subscribed_admits(Proto::Resp2, cmd(ok)).is_ok(), "{ok}");
        }
        let err = subscribed_admits(Proto::Resp2, cmd("get")).unwrap_err();
        assert_eq!(
            err.to_string(),
            "ERR Can't execute 'get': only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / QUIT / RESET are allowed in this context"
        );
        assert!(subscribed_admits(Proto::Resp3, cmd("get")).is_ok());
    }
}
