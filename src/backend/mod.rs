//! Backend links: a few long-lived, pipelined connections per backend, shared by all sessions.

mod state;
pub use state::BackendState;
