//! The replies by which a cluster node says "not here" or "not now": `-MOVED`, `-ASK`,
//! `-TRYAGAIN` and `-CLUSTERDOWN`. Pure: reading them, no I/O.

use crate::protocol::reply::{is_error, split_replies};

/// What kind of redirection; the `kind` label of `shardis_cluster_redirections_total`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Moved,
    Ask,
    TryAgain,
    ClusterDown,
}

impl Kind {
    /// Every kind, in the order of their index into per-kind tables.
    pub const ALL: [Kind; 4] = [Kind::Moved, Kind::Ask, Kind::TryAgain, Kind::ClusterDown];

    /// The metric label and the name in `/status` and INFO.
    pub fn label(self) -> &'static str {
        match self {
            Kind::Moved => "moved",
            Kind::Ask => "ask",
            Kind::TryAgain => "tryagain",
            Kind::ClusterDown => "clusterdown",
        }
    }

    pub(crate) fn index(self) -> usize {
        self as usize
    }
}

/// A redirection read from a reply.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Redirect {
    /// `-MOVED slot host:port`: the slot lives there now.
    Moved { slot: u16, addr: String },
    /// `-ASK slot host:port`: this one request goes there, after `ASKING`.
    Ask { slot: u16, addr: String },
    /// `-TRYAGAIN`: a multi-key request during a slot's migration; retry in a moment.
    TryAgain,
    /// `-CLUSTERDOWN`: the cluster cannot serve (a failover in progress); retry in a moment.
    ClusterDown,
}

impl Redirect {
    pub fn kind(&self) -> Kind {
        match self {
            Redirect::Moved { .. } => Kind::Moved,
            Redirect::Ask { .. } => Kind::Ask,
            Redirect::TryAgain => Kind::TryAgain,
            Redirect::ClusterDown => Kind::ClusterDown,
        }
    }
}

/// The redirection in one error reply, if it is one.
pub fn parse(reply: &[u8]) -> Option<Redirect> {
    // Simple errors only: Redis sends these as `-` lines in both protocols.
    let line = reply.strip_prefix(b"-")?;
    let end = line.iter().position(|&b| b == b'\r').unwrap_or(line.len());
    let line = &line[..end];
    let mut words = line.split(|&b| b == b' ');
    let kind = words.next()?;
    match kind {
        b"MOVED" | b"ASK" => {
            let slot = std::str::from_utf8(words.next()?)
                .ok()?
                .parse::<u16>()
                .ok()?;
            let addr = std::str::from_utf8(words.next()?).ok()?;
            if words.next().is_some() || addr.is_empty() || slot as usize >= super::SLOTS {
                return None;
            }
            let addr = addr.to_string();
            Some(if kind == b"MOVED" {
                Redirect::Moved { slot, addr }
            } else {
                Redirect::Ask { slot, addr }
            })
        }
        b"TRYAGAIN" => Some(Redirect::TryAgain),
        b"CLUSTERDOWN" => Some(Redirect::ClusterDown),
        _ => None,
    }
}

/// The redirection in the reply to a request that brings `replies` replies: for one, the
/// reply itself; for a transaction batch (`MULTI`, commands, `EXEC`), a redirection of a
/// queued command or of `EXEC` itself, which made the node discard the transaction (so it can
/// be sent again as a whole).
pub fn find(frame: &[u8], replies: u32) -> Option<Redirect> {
    if replies <= 1 {
        return if is_error(frame) { parse(frame) } else { None };
    }
    let ranges: Vec<_> = split_replies(frame).collect();
    let last = ranges.last()?;
    if let Some(r) = parse(&frame[last.clone()]) {
        return Some(r);
    }
    // EXEC answered -EXECABORT because a command was redirected while queueing.
    if !frame[last.clone()].starts_with(b"-EXECABORT") {
        return None;
    }
    ranges[..ranges.len() - 1]
        .iter()
        .find_map(|r| parse(&frame[r.clone()]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_redirections() {
        assert_eq!(
            parse(b"-MOVED 3999 127.0.0.1:6381\r\n"),
            Some(Redirect::Moved {
                slot: 3999,
                addr: "127.0.0.1:6381".into()
            })
        );
        assert_eq!(
            parse(b"-ASK 1 [::1]:7000\r\n"),
            Some(Redirect::Ask {
                slot: 1,
                addr: "[::1]:7000".into()
            })
        );
        assert_eq!(
            parse(b"-TRYAGAIN Multiple keys request during rehashing of slot\r\n"),
            Some(Redirect::TryAgain)
        );
        assert_eq!(
            parse(b"-CLUSTERDOWN The cluster is down\r\n"),
            Some(Redirect::ClusterDown)
        );
        for no in [
            &b"-ERR MOVED 1 a:1\r\n"[..],
            b"-MOVED x a:1\r\n",
            b"-MOVED 16384 a:1\r\n",
            b"-MOVED 1\r\n",
            b"-MOVED 1 a:1 extra\r\n",
            b"+MOVED 1 a:1\r\n",
            b"-MOVEDX 1 a:1\r\n",
        ] {
            assert_eq!(parse(no), None, "{:?}", String::from_utf8_lossy(no));
        }
    }

    #[test]
    fn finds_redirections_in_transactions() {
        let batch = b"+OK\r\n-MOVED 5 h:1\r\n+QUEUED\r\n-EXECABORT Transaction discarded because of previous errors.\r\n";
        assert_eq!(
            find(batch, 4),
            Some(Redirect::Moved {
                slot: 5,
                addr: "h:1".into()
            })
        );
        let ok = b"+OK\r\n+QUEUED\r\n*1\r\n-MOVED 5 h:1\r\n";
        assert_eq!(find(ok, 3), None, "a result inside EXEC is the client's");
        let down = b"+OK\r\n+QUEUED\r\n-CLUSTERDOWN The cluster is down\r\n";
        assert_eq!(find(down, 3), Some(Redirect::ClusterDown));
        assert_eq!(
            find(b"-ASK 1 h:2\r\n", 1).map(|r| r.kind()),
            Some(Kind::Ask)
        );
        assert_eq!(find(b"$5\r\nMOVED\r\n", 1), None);
    }
}
