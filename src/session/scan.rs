//! SCAN over every backend: the cursor a client sees holds the backend's index in its low
//! [`INDEX_BITS`] bits and that backend's own cursor above them. A scan walks backend 0 to the
//! end, then backend 1, and so on; a full iteration therefore returns every key that existed
//! throughout, as Redis's own SCAN guarantees on one server. With several pools, the backends
//! are those of every pool that serves keys, in configuration order (a pool that is only a
//! mirror holds copies, and is left out, as it is by KEYS, DBSIZE and RANDOMKEY).

use bytes::{Bytes, BytesMut};

use crate::protocol::reply::{put_array_len, put_bulk, string_value};

/// Bits of the client's cursor that name the backend (up to 1024 backends).
pub const INDEX_BITS: u32 = 10;

/// The backend and its cursor named by the client's cursor.
pub fn decode(cursor: &[u8], backends: usize) -> Option<(usize, u64)> {
    let text = std::str::from_utf8(cursor).ok()?;
    let c: u64 = text.parse().ok()?;
    let index = (c & ((1 << INDEX_BITS) - 1)) as usize;
    (index < backends).then_some((index, c >> INDEX_BITS))
}

/// The cursor the client sees for `backend`'s cursor `inner`; 0 once the last backend is done.
pub fn encode(index: u32, inner: u64, backends: u32) -> u64 {
    if inner != 0 {
        return inner << INDEX_BITS | index as u64;
    }
    if index + 1 < backends {
        (index + 1) as u64
    } else {
        0
    }
}

/// A backend's SCAN reply with its cursor replaced by the client's.
pub fn rewrite(frame: &Bytes, index: u32, backends: u32) -> Bytes {
    // `*2\r\n$N\r\n<cursor>\r\n<array of keys>`
    let Some(rest) = frame.strip_prefix(b"*2\r\n") else {
        return frame.clone();
    };
    let Some(cursor_bytes) = string_value(rest) else {
        return frame.clone();
    };
    let Some(inner) = std::str::from_utf8(cursor_bytes)
        .ok()
        .and_then(|t| t.parse::<u64>().ok())
    else {
        return frame.clone();
    };
    let header = 1 + cursor_bytes.len().to_string().len() + 2 + cursor_bytes.len() + 2;
    let keys = &rest[header.min(rest.len())..];
    let mut out = BytesMut::with_capacity(frame.len() + 8);
    put_array_len(&mut out, 2);
    put_bulk(
        &mut out,
        encode(index, inner, backends).to_string().as_bytes(),
    );
    out.extend_from_slice(keys);
    out.freeze()
}

impl super::Session {
    /// SCAN: the client's cursor names the backend (in the table's numbering of every pool's
    /// backends) and its cursor there.
    pub(super) async fn scan(&mut self, call: super::call::Call<'_>) {
        let (id, now) = (call.id, call.start);
        let n = self.table.keyspace_count();
        let Some((index, inner)) = call.arg(1).and_then(|c| decode(c, n)) else {
            return self.fail(id, now, "ERR invalid cursor");
        };
        let Some((_, dest)) = self.table.keyspace_dest_at(index) else {
            return self.fail(id, now, "ERR invalid cursor");
        };
        let mut request = BytesMut::with_capacity(call.frame.len() + 8);
        put_array_len(&mut request, call.args.len());
        for (i, r) in call.args.iter().enumerate() {
            if i == 1 {
                put_bulk(&mut request, inner.to_string().as_bytes());
            } else {
                put_bulk(&mut request, &call.frame[r.clone()]);
            }
        }
        let then = super::pending::Then::Scan {
            index: index as u32,
            backends: n as u32,
        };
        self.forward(id, dest, request.freeze(), now, then).await;
    }
}

/// Whether command `id` counts or lists keys (KEYS, DBSIZE, RANDOMKEY): what leaves out the
/// pools that only mirror.
pub(super) fn counts_keys(id: usize) -> bool {
    crate::protocol::command::COMMANDS
        .get(id)
        .is_some_and(|c| matches!(c.name, "keys" | "dbsize" | "randomkey"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_walk_the_backends_in_order() {
        assert_eq!(decode(b"0", 3), Some((0, 0)));
        assert_eq!(decode(b"1", 3), Some((1, 0)));
        assert_eq!(decode(b"5", 3), None);
        assert_eq!(decode(b"x", 3), None);
        let c = encode(2, 17, 3);
        assert_eq!(decode(c.to_string().as_bytes(), 3), Some((2, 17)));
        assert_eq!(encode(0, 0, 3), 1);
        assert_eq!(encode(2, 0, 3), 0);
    }

    #[test]
    fn rewrites_the_cursor_and_keeps_the_keys() {
        let reply = Bytes::from_static(b"*2\r\n$2\r\n12\r\n*1\r\n$1\r\nk\r\n");
        let out = rewrite(&reply, 1, 4);
        assert_eq!(
            &out[..],
            format!(
                "*2\r\n${}\r\n{}\r\n*1\r\n$1\r\nk\r\n",
                (12u64 << 10 | 1).to_string().len(),
                12u64 << 10 | 1
            )
            .as_bytes()
        );
        let done = Bytes::from_static(b"*2\r\n$1\r\n0\r\n*0\r\n");
        assert_eq!(&rewrite(&done, 3, 4)[..], b"*2\r\n$1\r\n0\r\n*0\r\n");
        assert_eq!(&rewrite(&done, 1, 4)[..], b"*2\r\n$1\r\n2\r\n*0\r\n");
    }
}
