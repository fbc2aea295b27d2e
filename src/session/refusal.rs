//! Why shardis answers a command with an error itself, before or instead of any backend. The
//! client gets the `Display` of the refusal as a RESP error, in Redis's words where Redis has
//! words for it.

use crate::acl::Denied;
use crate::routing::RouteError;

use super::leased::LeaseError;

/// Redis's reply to a command before authentication.
const NOAUTH: &str = "NOAUTH Authentication required.";

/// A command refused by the session.
#[derive(Debug, thiserror::Error)]
pub(super) enum Refusal {
    #[error("{0}")]
    Route(#[from] RouteError),
    #[error("{0}")]
    Lease(#[from] LeaseError),
    #[error("{NOAUTH}")]
    NoAuth,
    /// The client's ACL user may not run the command (its name).
    #[error("{}", .0.message(.1))]
    Acl(Denied, &'static str),
    /// A refused EXEC discards the transaction, as in Redis.
    #[error("EXECABORT Transaction discarded because of: {0}")]
    ExecAbort(Box<Refusal>),
    #[error(
        "ERR Can't execute '{0}': only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / QUIT / RESET \
         are allowed in this context"
    )]
    Subscribed(&'static str),
    #[error("ERR wrong number of arguments for '{0}' command")]
    WrongArity(&'static str),
    #[error("ERR User '{0}' not found")]
    UnknownUser(String),
    #[error("ERR Command '{0}' not found")]
    UnknownCommand(String),
    #[error("ERR Unknown category '{0}'")]
    UnknownCategory(String),
    #[error("ERR Unrecognized option '{0}'")]
    UnknownOption(String),
    /// CLIENT SETINFO LIB-NAME / LIB-VER with spaces or special characters (the field, in
    /// lower case).
    #[error("ERR {0} cannot contain spaces, newlines or special characters.")]
    BadLibField(String),
    /// SELECT of a database shardis does not serve; `0`: the backends use database 0.
    #[error("{}", one_db(*.0))]
    OtherDb(u32),
    /// A fixed text, in Redis's words (`ERR syntax error`, ...).
    #[error("{0}")]
    Said(&'static str),
}

/// The refusal of another database than `db`.
fn one_db(db: u32) -> String {
    match db {
        0 => "ERR shardis serves database 0 only".to_string(),
        db => format!(
            "ERR shardis serves one database, db {db} on its backends: SELECT 0 or SELECT {db}"
        ),
    }
}

/// Redis's reply to a value that is not an integer.
pub(super) const NOT_INTEGER: Refusal =
    Refusal::Said("ERR value is not an integer or out of range");
/// Redis's reply to a malformed option list.
pub(super) const SYNTAX: Refusal = Refusal::Said("ERR syntax error");
