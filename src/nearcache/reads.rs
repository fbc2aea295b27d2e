//! Which reads the near cache may answer, and the forms of their replies.
//!
//! A read is cacheable when its reply depends on its one key alone, deterministically (no
//! time, no randomness: not TTL, not SRANDMEMBER), and is the same in RESP2 and RESP3 but for
//! nulls: integers, bulk and simple strings, nulls, and flat arrays of those. Redis invalidates
//! a key whatever its type and whoever changes it (a write, an expiry, an eviction, a flush),
//! so these replies can be invalidated exactly. A reply of any other shape (a RESP3 map, set
//! or double, an error) is never cached, even for these commands.

use bytes::{Bytes, BytesMut};

use crate::protocol::reply::ReplyScanner;

/// The cacheable reads: name, and the exact argument count when other counts would make them
/// multi-key or change their reply's shape (0: any).
const READS: &[(&str, usize)] = &[
    ("get", 2),
    ("getrange", 4),
    ("substr", 4),
    ("strlen", 2),
    ("getbit", 3),
    ("bitcount", 0),
    ("exists", 2),
    ("type", 2),
    ("hget", 3),
    ("hmget", 0),
    ("hexists", 3),
    ("hlen", 2),
    ("hstrlen", 3),
    ("hkeys", 2),
    ("hvals", 2),
    ("llen", 2),
    ("lindex", 3),
    ("lrange", 4),
    ("scard", 2),
    ("sismember", 3),
    ("smismember", 0),
    ("zcard", 2),
    ("xlen", 2),
];

/// Whether command `name` with `argc` arguments (its name included) may be answered from the
/// near cache.
pub fn cacheable(name: &str, argc: usize) -> bool {
    READS
        .iter()
        .any(|&(n, count)| n == name && (count == 0 || count == argc))
}

/// Per command id of the command table: may it be cached (with the right argument count)?
pub fn table() -> &'static [u8] {
    static TABLE: std::sync::OnceLock<Box<[u8]>> = std::sync::OnceLock::new();
    TABLE.get_or_init(|| {
        crate::protocol::command::COMMANDS
            .iter()
            .map(|c| {
                READS
                    .iter()
                    .find(|(n, _)| *n == c.name)
                    .map_or(0, |&(_, count)| u8::try_from(count).unwrap_or(0) | 0x80)
            })
            .collect()
    })
}

/// Whether command `id` with `argc` arguments may be answered from the near cache.
#[inline]
pub fn cacheable_id(id: usize, argc: usize) -> bool {
    match table().get(id) {
        Some(&v) if v & 0x80 != 0 => {
            let count = usize::from(v & 0x7f);
            count == 0 || count == argc
        }
        _ => false,
    }
}

/// A cacheable reply in the two protocols' forms (the same bytes when it has no null).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Forms {
    pub resp2: Bytes,
    pub resp3: Bytes,
}

/// The forms of `reply` (read on a RESP3 connection), or `None` when it is not of a cacheable
/// shape.
pub fn forms(reply: &[u8]) -> Option<Forms> {
    let mut scanner = ReplyScanner::new();
    if scanner.scan(reply).ok()? != Some(reply.len()) {
        return None;
    }
    let mut resp2 = BytesMut::with_capacity(reply.len() + 8);
    let mut nulls = false;
    let rest = match reply.first()? {
        b'*' => {
            let (n, body) = header(reply)?;
            resp2.extend_from_slice(&reply[..reply.len() - body.len()]);
            let mut body = body;
            for _ in 0..n {
                body = scalar(body, &mut resp2, &mut nulls)?;
            }
            body
        }
        _ => scalar(reply, &mut resp2, &mut nulls)?,
    };
    if !rest.is_empty() {
        return None;
    }
    let resp3 = Bytes::copy_from_slice(reply);
    let resp2 = if nulls { resp2.freeze() } else { resp3.clone() };
    Some(Forms { resp2, resp3 })
}

/// `*N\r\n`: N and what follows.
fn header(buf: &[u8]) -> Option<(usize, &[u8])> {
    let end = buf.iter().position(|&b| b == b'\r')?;
    let n: usize = std::str::from_utf8(buf.get(1..end)?).ok()?.parse().ok()?;
    Some((n, buf.get(end + 2..)?))
}

/// One integer, simple string, bulk string or null at the front of `buf`, copied to `out` in
/// RESP2 form; returns the rest.
fn scalar<'a>(buf: &'a [u8], out: &mut BytesMut, nulls: &mut bool) -> Option<&'a [u8]> {
    let line = buf.iter().position(|&b| b == b'\r')? + 2;
    match buf.first()? {
        b':' | b'+' => {
            out.extend_from_slice(buf.get(..line)?);
            buf.get(line..)
        }
        b'_' => {
            *nulls = true;
            out.extend_from_slice(b"$-1\r\n");
            buf.get(line..)
        }
        b'$' => {
            let len: i64 = std::str::from_utf8(buf.get(1..line - 2)?)
                .ok()?
                .parse()
                .ok()?;
            if len < 0 {
                out.extend_from_slice(buf.get(..line)?);
                return buf.get(line..);
            }
            let end = line + len as usize + 2;
            out.extend_from_slice(buf.get(..end)?);
            buf.get(end..)
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::command::lookup;

    #[test]
    fn cacheable_reads() {
        let id = |n: &str| lookup(n.as_bytes()).unwrap().0;
        assert!(cacheable_id(id("get"), 2));
        assert!(cacheable_id(id("hmget"), 5));
        assert!(!cacheable_id(id("exists"), 3), "two keys");
        assert!(!cacheable_id(id("set"), 3));
        assert!(!cacheable_id(id("ttl"), 2), "depends on time");
        assert!(!cacheable_id(id("hgetall"), 2), "a map in RESP3");
        assert!(!cacheable_id(id("zscore"), 3), "a double in RESP3");
        // Every one reads one key, its first argument: a command of several keys (EXISTS) only
        // with the one argument count that makes it a single key.
        for &(name, count) in READS {
            let (_, cmd) = lookup(name.as_bytes()).unwrap();
            assert!(!cmd.is_write(), "{name}");
            let crate::protocol::command::Keys::Range { first, last, step } = cmd.keys else {
                panic!("{name}: {:?}", cmd.keys);
            };
            assert_eq!((first, step), (1, 1), "{name}");
            assert!(last == 1 || count == 2, "{name}");
        }
    }

    #[test]
    fn reply_forms() {
        let f = forms(b"$3\r\nabc\r\n").unwrap();
        assert_eq!(
            (&f.resp2[..], &f.resp3[..]),
            (&b"$3\r\nabc\r\n"[..], &b"$3\r\nabc\r\n"[..])
        );
        let f = forms(b"_\r\n").unwrap();
        assert_eq!(
            (&f.resp2[..], &f.resp3[..]),
            (&b"$-1\r\n"[..], &b"_\r\n"[..])
        );
        let f = forms(b"*3\r\n$1\r\na\r\n_\r\n:5\r\n").unwrap();
        assert_eq!(&f.resp2[..], b"*3\r\n$1\r\na\r\n$-1\r\n:5\r\n");
        assert_eq!(&f.resp3[..], b"*3\r\n$1\r\na\r\n_\r\n:5\r\n");
        assert_eq!(
            forms(b"+string\r\n").unwrap().resp2,
            Bytes::from_static(b"+string\r\n")
        );
        assert_eq!(
            forms(b"*0\r\n").unwrap().resp2,
            Bytes::from_static(b"*0\r\n")
        );
        // Not cached: errors, RESP3-only types, nested arrays, partial or trailing bytes.
        for bad in [
            &b"-ERR x\r\n"[..],
            b",1.5\r\n",
            b"%1\r\n$1\r\na\r\n$1\r\nb\r\n",
            b"~1\r\n$1\r\na\r\n",
            b"*1\r\n*0\r\n",
            b"$3\r\nab",
            b":1\r\n:2\r\n",
        ] {
            assert_eq!(forms(bad), None, "{:?}", String::from_utf8_lossy(bad));
        }
    }
}
