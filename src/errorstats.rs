//! Error replies counted as Redis counts them for `INFO errorstats`: by their first word (the
//! error code), at most [`MAX_CODES`] codes; `total_error_replies` counts them all. Counted as
//! replies are written to clients, so an error that a script or a transaction returns counts
//! once, with its own code.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

/// Distinct error codes kept, as Redis keeps (`ERRORSTATS_LIMIT`); others count in the total.
pub const MAX_CODES: usize = 128;

/// Error replies by code.
#[derive(Default)]
pub struct ErrorStats {
    total: AtomicU64,
    codes: Mutex<HashMap<String, u64>>,
}

impl ErrorStats {
    /// Counts the error reply `reply` (`-CODE message\r\n`, or a RESP3 blob error).
    pub fn count(&self, reply: &[u8]) {
        self.total.fetch_add(1, Ordering::Relaxed);
        let text = match reply.first() {
            Some(b'-') => &reply[1..],
            Some(b'!') => {
                // !<len>\r\n<text>\r\n
                let start = reply
                    .iter()
                    .position(|&b| b == b'\n')
                    .map_or(reply.len(), |p| p + 1);
                &reply[start..]
            }
            _ => return,
        };
        let end = text
            .iter()
            .position(|&b| b == b' ' || b == b'\r' || b == b'\n')
            .unwrap_or(text.len());
        let code = String::from_utf8_lossy(&text[..end.min(64)]).into_owned();
        if let Ok(mut m) = self.codes.lock() {
            let full = m.len() >= MAX_CODES;
            match m.get_mut(&code) {
                Some(n) => *n += 1,
                None if !full => {
                    m.insert(code, 1);
                }
                None => {}
            }
        }
    }

    /// Every error reply counted.
    pub fn total(&self) -> u64 {
        self.total.load(Ordering::Relaxed)
    }

    /// CONFIG RESETSTAT.
    pub fn reset(&self) {
        self.total.store(0, Ordering::Relaxed);
        if let Ok(mut m) = self.codes.lock() {
            m.clear();
        }
    }

    /// The lines of `# Errorstats` (`errorstat_CODE:count=N`), sorted by code.
    pub fn render(&self, out: &mut String) {
        let mut codes: Vec<(String, u64)> = self
            .codes
            .lock()
            .map(|m| m.iter().map(|(k, v)| (k.clone(), *v)).collect())
            .unwrap_or_default();
        codes.sort();
        for (code, n) in codes {
            let _ = write!(out, "errorstat_{code}:count={n}\r\n");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_by_code() {
        let s = ErrorStats::default();
        s.count(b"-ERR bad\r\n");
        s.count(b"-ERR other\r\n");
        s.count(b"-WRONGTYPE Operation\r\n");
        s.count(b"!9\r\nOOM wrong\r\n");
        s.count(b"-MY_ERR_CODE\r\n");
        let mut out = String::new();
        s.render(&mut out);
        assert_eq!(
            out,
            "errorstat_ERR:count=2\r\nerrorstat_MY_ERR_CODE:count=1\r\nerrorstat_OOM:count=1\r\nerrorstat_WRONGTYPE:count=1\r\n"
        );
        assert_eq!(s.total(), 5);
        s.reset();
        assert_eq!(s.total(), 0);
        let mut out = String::new();
        s.render(&mut out);
        assert!(out.is_empty());
    }
}
