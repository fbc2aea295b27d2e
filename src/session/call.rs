//! One command as the session serves it: everything the paths of [`super::dispatch`] pass
//! along, in one value.

use std::ops::Range;

use bytes::Bytes;
use tokio::time::Instant;

use crate::protocol::command::Command;

/// A parsed command on its way through the session.
pub(super) struct Call<'a> {
    /// Its index in the command table (the metrics' and ACLs' key).
    pub id: usize,
    pub cmd: &'static Command,
    /// The whole RESP frame, refcounted: forwarding it copies nothing.
    pub frame: Bytes,
    /// Where each argument is in `frame` (the command's name first).
    pub args: &'a [Range<usize>],
    /// When the command was read: its latency is measured from here.
    pub start: Instant,
}

impl Call<'_> {
    /// Argument `i` (0: the command's name).
    #[inline]
    pub fn arg(&self, i: usize) -> Option<&[u8]> {
        self.args.get(i).map(|r| &self.frame[r.clone()])
    }

    /// Argument `i` in upper case.
    pub fn upper(&self, i: usize) -> Option<Vec<u8>> {
        self.arg(i).map(<[u8]>::to_ascii_uppercase)
    }

    /// Argument `i` as text, for error messages.
    pub fn text(&self, i: usize) -> String {
        String::from_utf8_lossy(self.arg(i).unwrap_or_default()).into_owned()
    }
}
