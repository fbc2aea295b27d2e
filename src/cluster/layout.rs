//! The slot map of a Redis Cluster, as `CLUSTER SHARDS` (Redis 7) or `CLUSTER SLOTS` (older)
//! describe it: shards, each a primary with its replicas and the slots it owns. Pure: parsing
//! and updating, no I/O.

use std::fmt::Write as _;

use redis_protocol::resp3::decode::complete::decode;
use redis_protocol::resp3::types::OwnedFrame;

/// Hash slots in a Redis Cluster.
pub const SLOTS: usize = 16384;
/// An unassigned slot in [`Layout::owner`].
pub const UNASSIGNED: u16 = u16::MAX;

/// One primary, its replicas, and whether it is known to be failing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Shard {
    /// `host:port` of the primary, as the cluster announces it.
    pub primary: String,
    /// `host:port` of the replicas that serve (failing and loading ones are left out).
    pub replicas: Vec<String>,
}

/// Why a slot map reply could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LayoutError {
    #[error("the reply is not RESP: {0}")]
    Protocol(String),
    #[error("the node answered with an error: {0}")]
    Refused(String),
    #[error("unexpected reply shape: {0}")]
    Shape(&'static str),
    #[error("no shard owns any slot")]
    Empty,
}

/// The slot map: shards in a stable order (by their first slot, slot-less ones last by
/// address) and the owner of every slot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Layout {
    pub shards: Vec<Shard>,
    /// Slot -> index into `shards`, or [`UNASSIGNED`].
    pub owner: Box<[u16]>,
}

impl Layout {
    /// Builds a layout from shards and the slot ranges (inclusive) each owns.
    pub fn new(mut shards: Vec<(Shard, Vec<(u16, u16)>)>) -> Result<Layout, LayoutError> {
        // Order: by lowest slot, so that a failover (same slots, new primary) keeps positions.
        shards.sort_by(|(a, ra), (b, rb)| {
            let first = |r: &[(u16, u16)]| r.iter().map(|&(s, _)| s).min().unwrap_or(u16::MAX);
            first(ra)
                .cmp(&first(rb))
                .then_with(|| a.primary.cmp(&b.primary))
        });
        let mut owner = vec![UNASSIGNED; SLOTS].into_boxed_slice();
        for (i, (_, ranges)) in shards.iter().enumerate() {
            for &(start, end) in ranges {
                let (start, end) = (start as usize, end as usize);
                if start > end || end >= SLOTS {
                    return Err(LayoutError::Shape("slot range out of bounds"));
                }
                owner[start..=end].fill(i as u16);
            }
        }
        if owner.iter().all(|&o| o == UNASSIGNED) {
            return Err(LayoutError::Empty);
        }
        Ok(Layout {
            shards: shards.into_iter().map(|(s, _)| s).collect(),
            owner,
        })
    }

    /// No shard, no slot assigned: before the first map is fetched.
    pub fn empty() -> Layout {
        Layout {
            shards: Vec::new(),
            owner: vec![UNASSIGNED; SLOTS].into_boxed_slice(),
        }
    }

    /// This layout with only the shards `keep` accepts; the slots of the others are
    /// unassigned.
    pub fn retain(&self, keep: impl Fn(&Shard) -> bool) -> Layout {
        let mut index = vec![UNASSIGNED; self.shards.len()];
        let mut shards = Vec::with_capacity(self.shards.len());
        for (i, s) in self.shards.iter().enumerate() {
            if keep(s) {
                index[i] = shards.len() as u16;
                shards.push(s.clone());
            }
        }
        let owner = self
            .owner
            .iter()
            .map(|&o| index.get(o as usize).copied().unwrap_or(UNASSIGNED))
            .collect();
        Layout { shards, owner }
    }

    /// Parses a `CLUSTER SHARDS` reply (RESP2 or RESP3).
    pub fn from_shards(reply: &[u8]) -> Result<Layout, LayoutError> {
        let OwnedFrame::Array { data, .. } = decode_one(reply)? else {
            return Err(LayoutError::Shape("CLUSTER SHARDS is not an array"));
        };
        let mut shards = Vec::with_capacity(data.len());
        for shard in data {
            let mut slots = Vec::new();
            let mut primary = None;
            let mut replicas = Vec::new();
            for (key, value) in pairs(shard)? {
                match (text(&key).as_deref(), value) {
                    (Some("slots"), OwnedFrame::Array { data, .. }) => {
                        let bounds: Vec<u16> = data.iter().filter_map(slot_number).collect();
                        if bounds.len() != data.len() || !bounds.len().is_multiple_of(2) {
                            return Err(LayoutError::Shape("CLUSTER SHARDS slots"));
                        }
                        slots.extend(bounds.chunks(2).map(|c| (c[0], c[1])));
                    }
                    (Some("nodes"), OwnedFrame::Array { data, .. }) => {
                        for node in data {
                            let node = Node::from_fields(pairs(node)?);
                            let Some(addr) = node.address() else { continue };
                            if node.role.as_deref() == Some("master") {
                                primary = Some((addr, node.health));
                            } else if node.health.as_deref().is_none_or(|h| h == "online") {
                                replicas.push(addr);
                            }
                        }
                    }
                    _ => {}
                }
            }
            let Some((primary, health)) = primary else {
                continue;
            };
            // A failed primary without slots (the old primary after a failover) serves
            // nothing; one that still owns slots stays, so its keys fail until a replica
            // takes over instead of going elsewhere.
            if slots.is_empty() && health.as_deref().is_some_and(|h| h != "online") {
                continue;
            }
            replicas.sort();
            shards.push((Shard { primary, replicas }, slots));
        }
        Layout::new(shards)
    }

    /// Parses a `CLUSTER SLOTS` reply (Redis before 7): one entry per slot range, with the
    /// primary first and then the replicas, each `[host, port, id, ...]`.
    pub fn from_slots(reply: &[u8]) -> Result<Layout, LayoutError> {
        let OwnedFrame::Array { data, .. } = decode_one(reply)? else {
            return Err(LayoutError::Shape("CLUSTER SLOTS is not an array"));
        };
        let mut shards: Vec<(Shard, Vec<(u16, u16)>)> = Vec::new();
        for range in data {
            let OwnedFrame::Array { data, .. } = range else {
                return Err(LayoutError::Shape("CLUSTER SLOTS entry"));
            };
            let (Some(start), Some(end)) = (
                data.first().and_then(slot_number),
                data.get(1).and_then(slot_number),
            ) else {
                return Err(LayoutError::Shape("CLUSTER SLOTS range"));
            };
            let mut nodes = data[2..].iter().filter_map(slots_node_address);
            let Some(primary) = nodes.next() else {
                return Err(LayoutError::Shape("CLUSTER SLOTS range without a node"));
            };
            let replicas: Vec<String> = nodes.collect();
            match shards.iter_mut().find(|(s, _)| s.primary == primary) {
                Some((shard, ranges)) => {
                    ranges.push((start, end));
                    for r in replicas {
                        if !shard.replicas.contains(&r) {
                            shard.replicas.push(r);
                        }
                    }
                }
                None => shards.push((Shard { primary, replicas }, vec![(start, end)])),
            }
        }
        for (shard, _) in &mut shards {
            shard.replicas.sort();
        }
        Layout::new(shards)
    }

    /// The index of the shard whose primary is `addr`.
    pub fn primary_index(&self, addr: &str) -> Option<usize> {
        self.shards.iter().position(|s| s.primary == addr)
    }

    /// This layout with slot `slot` owned by the primary at `addr` (a `-MOVED`), or `None`
    /// when `addr` is not a primary here (then only a refresh can tell where it belongs).
    pub fn moved(&self, slot: u16, addr: &str) -> Option<Layout> {
        let i = self.primary_index(addr)?;
        let at = self.owner.get(slot as usize)?;
        if *at == i as u16 {
            return None;
        }
        let mut next = self.clone();
        next.owner[slot as usize] = i as u16;
        Some(next)
    }

    /// The slot ranges (inclusive) of shard `i`, in order.
    pub fn ranges(&self, i: usize) -> Vec<(u16, u16)> {
        let mut out: Vec<(u16, u16)> = Vec::new();
        for (slot, &o) in self.owner.iter().enumerate() {
            if o as usize != i {
                continue;
            }
            let slot = slot as u16;
            match out.last_mut() {
                Some((_, end)) if *end + 1 == slot => *end = slot,
                _ => out.push((slot, slot)),
            }
        }
        out
    }

    /// Slots owned by shard `i`.
    pub fn slot_count(&self, i: usize) -> usize {
        self.owner.iter().filter(|&&o| o as usize == i).count()
    }

    /// `0-5460,6000` for shard `i`; `-` when it owns none.
    pub fn ranges_text(&self, i: usize) -> String {
        let ranges = self.ranges(i);
        if ranges.is_empty() {
            return "-".into();
        }
        let mut out = String::new();
        for (n, (a, b)) in ranges.iter().enumerate() {
            if n > 0 {
                out.push(',');
            }
            // Writing to a String cannot fail.
            let _ = if a == b {
                write!(out, "{a}")
            } else {
                write!(out, "{a}-{b}")
            };
        }
        out
    }

    /// Slots no shard owns.
    pub fn unassigned(&self) -> usize {
        self.owner.iter().filter(|&&o| o == UNASSIGNED).count()
    }
}

/// One node entry of `CLUSTER SHARDS`.
#[derive(Default)]
struct Node {
    endpoint: Option<String>,
    ip: Option<String>,
    port: Option<i64>,
    tls_port: Option<i64>,
    role: Option<String>,
    health: Option<String>,
}

impl Node {
    fn from_fields(fields: Vec<(OwnedFrame, OwnedFrame)>) -> Node {
        let mut node = Node::default();
        for (key, value) in fields {
            match text(&key).as_deref() {
                Some("endpoint") => node.endpoint = text(&value),
                Some("ip") => node.ip = text(&value),
                Some("port") => node.port = number(&value),
                Some("tls-port") => node.tls_port = number(&value),
                Some("role") => node.role = text(&value),
                Some("health") => node.health = text(&value),
                _ => {}
            }
        }
        node
    }

    /// `host:port`: the endpoint the cluster announces (`?` or empty means unknown: then
    /// its IP), and its port (the TLS port if it has only that).
    fn address(&self) -> Option<String> {
        let host = self
            .endpoint
            .as_deref()
            .filter(|e| !e.is_empty() && *e != "?")
            .or(self.ip.as_deref())?;
        let port = self.port.filter(|&p| p > 0).or(self.tls_port)?;
        Some(join_host_port(host, port))
    }
}

/// `host:port`, with brackets around an IPv6 address.
pub fn join_host_port(host: &str, port: i64) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

fn decode_one(reply: &[u8]) -> Result<OwnedFrame, LayoutError> {
    if crate::protocol::reply::is_error(reply) {
        let text = String::from_utf8_lossy(reply.get(1..).unwrap_or_default());
        return Err(LayoutError::Refused(text.trim_end().to_string()));
    }
    if !crate::protocol::reply::decodable(reply) {
        return Err(LayoutError::Protocol("nested too deep".into()));
    }
    match decode(reply) {
        Ok(Some((frame, _))) => Ok(frame),
        Ok(None) => Err(LayoutError::Protocol("incomplete".into())),
        Err(e) => Err(LayoutError::Protocol(e.to_string())),
    }
}

/// The name/value pairs of a RESP3 map or of a RESP2 array of alternating names and values.
fn pairs(frame: OwnedFrame) -> Result<Vec<(OwnedFrame, OwnedFrame)>, LayoutError> {
    match frame {
        OwnedFrame::Map { data, .. } => Ok(data.into_iter().collect()),
        OwnedFrame::Array { data, .. } => {
            let mut it = data.into_iter();
            Ok(std::iter::from_fn(|| Some((it.next()?, it.next()?))).collect())
        }
        _ => Err(LayoutError::Shape("expected a map")),
    }
}

fn text(frame: &OwnedFrame) -> Option<String> {
    match frame {
        OwnedFrame::BlobString { data, .. } | OwnedFrame::SimpleString { data, .. } => {
            Some(String::from_utf8_lossy(data).into_owned())
        }
        _ => None,
    }
}

fn number(frame: &OwnedFrame) -> Option<i64> {
    match frame {
        OwnedFrame::Number { data, .. } => Some(*data),
        other => text(other)?.parse().ok(),
    }
}

fn slot_number(frame: &OwnedFrame) -> Option<u16> {
    number(frame)
        .filter(|&n| (0..SLOTS as i64).contains(&n))
        .map(|n| n as u16)
}

/// `[host, port, id, ...]` of `CLUSTER SLOTS` as `host:port` (an empty host means the node
/// that answered; unknown here, so such a node is skipped).
fn slots_node_address(frame: &OwnedFrame) -> Option<String> {
    let OwnedFrame::Array { data, .. } = frame else {
        return None;
    };
    let host = text(data.first()?)?;
    if host.is_empty() || host == "?" {
        return None;
    }
    let port = number(data.get(1)?)?;
    Some(join_host_port(&host, port))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHARDS_RESP2: &[u8] = include_bytes!("testdata/redis-7.0-cluster-shards-resp2.txt");
    const SHARDS_RESP3: &[u8] = include_bytes!("testdata/redis-7.0-cluster-shards-resp3.txt");
    const SLOTS_RESP2: &[u8] = include_bytes!("testdata/redis-7.0-cluster-slots-resp2.txt");

    fn summary(l: &Layout) -> Vec<(String, Vec<String>, String)> {
        l.shards
            .iter()
            .enumerate()
            .map(|(i, s)| (s.primary.clone(), s.replicas.clone(), l.ranges_text(i)))
            .collect()
    }

    fn expected() -> Vec<(String, Vec<String>, String)> {
        [
            ("127.0.0.1:30001", "127.0.0.1:30006", "0-5460"),
            ("127.0.0.1:30002", "127.0.0.1:30004", "5461-10922"),
            ("127.0.0.1:30003", "127.0.0.1:30005", "10923-16383"),
        ]
        .iter()
        .map(|(p, r, s)| (p.to_string(), vec![r.to_string()], s.to_string()))
        .collect()
    }

    /// The reply with every `loading` node `online`.
    fn online(reply: &[u8]) -> Vec<u8> {
        String::from_utf8_lossy(reply)
            .replace("$7\r\nloading", "$6\r\nonline")
            .replace("+loading", "+online")
            .into_bytes()
    }

    #[test]
    fn reads_cluster_shards_and_slots_of_redis_7() {
        for reply in [SHARDS_RESP2, SHARDS_RESP3] {
            let l = Layout::from_shards(&online(reply)).unwrap();
            assert_eq!(summary(&l), expected());
            assert_eq!(l.unassigned(), 0);
        }
        // The RESP2 capture was taken just after `--cluster create`, while the replicas were
        // still loading: they serve no reads yet (CLUSTER SLOTS does not say so).
        let l = Layout::from_shards(SHARDS_RESP2).unwrap();
        assert!(l.shards.iter().all(|s| s.replicas.is_empty()), "{l:?}");
        let l = Layout::from_slots(SLOTS_RESP2).unwrap();
        assert_eq!(summary(&l), expected());
        assert_eq!(
            Layout::from_shards(&online(SHARDS_RESP2)),
            Layout::from_slots(SLOTS_RESP2)
        );
    }

    #[test]
    fn errors_and_empty_maps() {
        assert_eq!(
            Layout::from_shards(b"-ERR This instance has cluster support disabled\r\n"),
            Err(LayoutError::Refused(
                "ERR This instance has cluster support disabled".into()
            ))
        );
        assert_eq!(Layout::from_shards(b"*0\r\n"), Err(LayoutError::Empty));
        assert!(Layout::from_slots(b":1\r\n").is_err());
        assert!(Layout::from_shards(b"*1\r\n").is_err());
    }

    fn node(fields: &[(&str, &str)]) -> Vec<u8> {
        let mut out = format!("*{}\r\n", fields.len() * 2);
        for (k, v) in fields {
            out += &format!("${}\r\n{k}\r\n", k.len());
            if k.ends_with("port") {
                out += &format!(":{v}\r\n");
            } else {
                out += &format!("${}\r\n{v}\r\n", v.len());
            }
        }
        out.into_bytes()
    }

    fn shard(slots: &[u16], nodes: &[Vec<u8>]) -> Vec<u8> {
        let mut out = b"*4\r\n$5\r\nslots\r\n".to_vec();
        out.extend(format!("*{}\r\n", slots.len()).bytes());
        for s in slots {
            out.extend(format!(":{s}\r\n").bytes());
        }
        out.extend(format!("$5\r\nnodes\r\n*{}\r\n", nodes.len()).bytes());
        for n in nodes {
            out.extend(n);
        }
        out
    }

    #[test]
    fn failed_nodes_and_endpoints() {
        let a = node(&[
            ("ip", "10.0.0.1"),
            ("endpoint", "redis-a.example"),
            ("port", "6379"),
            ("role", "master"),
            ("health", "online"),
        ]);
        let a_replica_failed = node(&[
            ("ip", "10.0.0.2"),
            ("endpoint", "?"),
            ("port", "6379"),
            ("role", "replica"),
            ("health", "fail"),
        ]);
        let a_replica = node(&[
            ("ip", "::1"),
            ("endpoint", ""),
            ("port", "7000"),
            ("role", "replica"),
            ("health", "online"),
        ]);
        // The old primary after a failover: no slots, failed.
        let old = node(&[
            ("ip", "10.0.0.9"),
            ("port", "6379"),
            ("role", "master"),
            ("health", "fail"),
        ]);
        let fresh = node(&[
            ("ip", "10.0.0.8"),
            ("port", "6379"),
            ("role", "master"),
            ("health", "online"),
        ]);
        let mut reply = b"*3\r\n".to_vec();
        reply.extend(shard(
            &[0, 99, 200, 16383],
            &[a, a_replica_failed, a_replica],
        ));
        reply.extend(shard(&[], &[old]));
        reply.extend(shard(&[], &[fresh]));
        let l = Layout::from_shards(&reply).unwrap();
        assert_eq!(l.shards.len(), 2, "{l:?}");
        assert_eq!(l.shards[0].primary, "redis-a.example:6379");
        assert_eq!(l.shards[0].replicas, vec!["[::1]:7000".to_string()]);
        assert_eq!(l.ranges_text(0), "0-99,200-16383");
        assert_eq!(l.shards[1].primary, "10.0.0.8:6379");
        assert_eq!(l.ranges_text(1), "-");
        assert_eq!(l.unassigned(), 100);
        assert_eq!(l.slot_count(0), SLOTS - 100);
    }

    #[test]
    fn a_move_changes_one_slot() {
        let l = Layout::from_shards(SHARDS_RESP2).unwrap();
        let m = l.moved(100, "127.0.0.1:30003").unwrap();
        assert_eq!(m.ranges_text(0), "0-99,101-5460");
        assert_eq!(m.ranges_text(2), "100,10923-16383");
        assert!(m.moved(100, "127.0.0.1:30003").is_none(), "already there");
        assert!(l.moved(100, "127.0.0.1:30006").is_none(), "a replica");
        assert!(l.moved(100, "10.9.9.9:1").is_none(), "unknown");
        let r = m.retain(|s| s.primary != "127.0.0.1:30002");
        assert_eq!(r.shards.len(), 2);
        assert_eq!(r.ranges_text(0), "0-99,101-5460");
        assert_eq!(r.ranges_text(1), "100,10923-16383");
        assert_eq!(r.unassigned(), 10922 - 5461 + 1);
    }
}
