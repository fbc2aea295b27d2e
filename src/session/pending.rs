//! A session's commands in flight, in the order the client sent them, and how fanned-out
//! replies are merged back into one.

use bytes::{Bytes, BytesMut};
use tokio::time::Instant;

use crate::protocol::command::Merge;
use crate::protocol::reply::{
    Element, array_elements, integer_value, is_error, put_array_len, put_bulk, put_error,
    put_integer, put_null, put_simple,
};
use crate::state::ProxyState;

/// One command awaiting its reply.
pub enum Pending {
    /// The reply is complete and waits for the commands before it.
    Ready(Bytes),
    /// Sent whole to one backend; its reply is passed through.
    Single {
        cmd: usize,
        start: Instant,
        backend: usize,
    },
    /// Sent in parts to several backends.
    Fanout(Box<Fanout>),
}

/// A command split across backends.
pub struct Fanout {
    pub cmd: usize,
    pub start: Instant,
    pub merge: Merge,
    pub parts: Vec<Option<Bytes>>,
    pub left: usize,
    /// MGET: for each key in request order, (part, index within that part's reply).
    pub order: Vec<(u32, u32)>,
    /// INFO: the sections asked for.
    pub info_sections: super::info::InfoSections,
}

impl Fanout {
    /// Command `cmd`, started at `start`, waiting for `parts` replies; `order` as for MGET
    /// (empty otherwise).
    pub fn new(
        cmd: usize,
        start: Instant,
        merge: Merge,
        parts: usize,
        order: Vec<(u32, u32)>,
    ) -> Fanout {
        Fanout {
            cmd,
            start,
            merge,
            parts: vec![None; parts],
            left: parts,
            order,
            info_sections: super::info::INFO_ALL,
        }
    }

    /// Records part `part`'s reply; returns true when every part has answered.
    pub fn fill(&mut self, part: u32, frame: Bytes) -> bool {
        if let Some(slot) = self.parts.get_mut(part as usize)
            && slot.is_none()
        {
            *slot = Some(frame);
            self.left -= 1;
        }
        self.left == 0
    }

    /// The merged reply, once every part is in.
    pub fn merge(&self, state: &ProxyState) -> Bytes {
        let mut out = BytesMut::new();
        match self.merge {
            Merge::Mget => self.merge_mget(&mut out),
            Merge::AllOk => match self.first_error() {
                Some(err) => return err.clone(),
                None => put_simple(&mut out, "OK"),
            },
            Merge::Sum => {
                if let Some(err) = self.first_error() {
                    return err.clone();
                }
                let mut sum = 0i64;
                for part in self.parts.iter().flatten() {
                    match integer_value(part) {
                        Some(n) => sum = sum.saturating_add(n),
                        None => {
                            put_error(&mut out, "ERR unexpected reply from a backend");
                            return out.freeze();
                        }
                    }
                }
                put_integer(&mut out, sum);
            }
            Merge::Info => {
                let texts: Vec<Option<&[u8]>> = self
                    .parts
                    .iter()
                    .map(|p| p.as_deref().and_then(bulk_content))
                    .collect();
                put_bulk(
                    &mut out,
                    super::info::render_info(state, &texts, self.info_sections).as_bytes(),
                );
            }
        }
        out.freeze()
    }

    fn first_error(&self) -> Option<&Bytes> {
        self.parts.iter().flatten().find(|p| is_error(p))
    }

    /// Re-assembles MGET replies in key order. A part that failed puts its error in the
    /// place of each of its keys, so one slow shard does not fail the whole MGET.
    fn merge_mget(&self, out: &mut BytesMut) {
        let decoded: Vec<Option<Vec<Element>>> = self
            .parts
            .iter()
            .map(|p| p.as_deref().and_then(array_elements))
            .collect();
        // The merged reply is about as long as the parts together: one allocation, not a
        // doubling series for a large MGET.
        out.reserve(16 + self.parts.iter().flatten().map(Bytes::len).sum::<usize>());
        put_array_len(out, self.order.len());
        for &(part, index) in &self.order {
            let raw = self.parts[part as usize].as_deref().unwrap_or_default();
            match decoded[part as usize]
                .as_ref()
                .and_then(|els| els.get(index as usize))
            {
                Some(Element::Bulk(range)) => put_bulk(out, &raw[range.clone()]),
                Some(Element::Null) => put_null(out),
                _ if is_error(raw) => out.extend_from_slice(raw),
                _ => put_error(out, "ERR unexpected reply from a backend"),
            }
        }
    }
}

/// The payload of a bulk string reply.
fn bulk_content(reply: &[u8]) -> Option<&[u8]> {
    let rest = reply.strip_prefix(b"$")?;
    let line_end = rest.iter().position(|&b| b == b'\r')?;
    let len = crate::protocol::request::parse_int(&rest[..line_end])?;
    let start = line_end + 2;
    rest.get(start..start + usize::try_from(len).ok()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state() -> ProxyState {
        ProxyState::new(String::new(), vec![])
    }

    fn fanout(merge: Merge, parts: usize, order: Vec<(u32, u32)>) -> Fanout {
        Fanout::new(0, Instant::now(), merge, parts, order)
    }

    #[test]
    fn mget_keeps_key_order_and_inlines_part_errors() {
        let mut f = fanout(Merge::Mget, 3, vec![(1, 0), (0, 0), (1, 1), (2, 0)]);
        assert!(!f.fill(0, Bytes::from_static(b"*1\r\n$1\r\nb\r\n")));
        assert!(!f.fill(1, Bytes::from_static(b"*2\r\n$1\r\na\r\n$-1\r\n")));
        assert!(
            !f.fill(1, Bytes::from_static(b"*0\r\n")),
            "a duplicate part is ignored"
        );
        assert!(f.fill(2, Bytes::from_static(b"-ERR backend s3 down\r\n")));
        assert_eq!(
            &f.merge(&state())[..],
            b"*4\r\n$1\r\na\r\n$1\r\nb\r\n$-1\r\n-ERR backend s3 down\r\n"
        );
    }

    #[test]
    fn sums_and_all_ok() {
        let mut f = fanout(Merge::Sum, 2, vec![]);
        f.fill(0, Bytes::from_static(b":2\r\n"));
        f.fill(1, Bytes::from_static(b":3\r\n"));
        assert_eq!(&f.merge(&state())[..], b":5\r\n");
        let mut f = fanout(Merge::AllOk, 2, vec![]);
        f.fill(0, Bytes::from_static(b"+OK\r\n"));
        f.fill(1, Bytes::from_static(b"-ERR x\r\n"));
        assert_eq!(&f.merge(&state())[..], b"-ERR x\r\n");
        let mut f = fanout(Merge::Sum, 1, vec![]);
        f.fill(0, Bytes::from_static(b"-ERR y\r\n"));
        assert_eq!(&f.merge(&state())[..], b"-ERR y\r\n");
    }

    #[test]
    fn bulk_payload() {
        assert_eq!(bulk_content(b"$3\r\nabc\r\n"), Some(&b"abc"[..]));
        assert_eq!(bulk_content(b"-ERR\r\n"), None);
        assert_eq!(bulk_content(b"$9\r\nabc\r\n"), None);
    }
}
