//! Talking to Redis Sentinel and checking a primary: the requests and replies the topology's
//! Sentinel watcher needs, on connections of their own (RESP3, with the handshake of
//! [`super::conn`]). No policy here: which sentinel to ask and what to do with the answer is
//! the watcher's.

use std::time::Duration;

use bytes::{Buf, BytesMut};
use redis_protocol::resp3::decode::complete::decode;
use redis_protocol::resp3::types::OwnedFrame;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::timeout;

use super::conn::{self, Target};
use crate::net::Stream;
use crate::protocol::out::Proto;
use crate::protocol::reply::ReplyScanner;

/// Largest reply accepted from a sentinel.
const MAX_REPLY: usize = 4 * 1024 * 1024;

/// The sentinel events the watcher subscribes to.
pub const EVENTS: [&str; 9] = [
    "+switch-master",
    "+sdown",
    "-sdown",
    "+odown",
    "-odown",
    "+try-failover",
    "+failover-state-send-slaveof-noone",
    "+failover-end",
    "-failover-abort-not-elected",
];

/// One sentinel event: its channel and its words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub channel: String,
    pub words: Vec<String>,
}

impl Event {
    /// The master an event is about: `+switch-master NAME ...` names it first; the
    /// instance events (`master NAME IP PORT`, or `slave ... @ NAME IP PORT`) after the
    /// instance type.
    pub fn master(&self) -> Option<&str> {
        if self.channel == "+switch-master" {
            return self.words.first().map(String::as_str);
        }
        match self.words.first().map(String::as_str) {
            Some("master") => self.words.get(1).map(String::as_str),
            _ => {
                let at = self.words.iter().position(|w| w == "@")?;
                self.words.get(at + 1).map(String::as_str)
            }
        }
    }

    /// Whether it is about the master itself (not one of its replicas or sentinels).
    pub fn about_master(&self) -> bool {
        self.channel == "+switch-master" || self.words.first().is_some_and(|w| w == "master")
    }

    /// `+switch-master NAME OLDIP OLDPORT NEWIP NEWPORT`: the new primary.
    pub fn new_primary(&self) -> Option<(String, u16)> {
        if self.channel != "+switch-master" {
            return None;
        }
        let host = self.words.get(3)?.clone();
        let port = self.words.get(4)?.parse().ok()?;
        Some((host, port))
    }
}

/// An open connection to a sentinel.
pub struct Sentinel {
    stream: Stream,
    limit: Duration,
}

impl Sentinel {
    /// Connects to the sentinel at `target` (its handshake authenticates as the pool's
    /// sentinel user).
    pub async fn open(target: &Target, limit: Duration) -> Result<Sentinel, String> {
        let conn = conn::open(target, Proto::Resp3)
            .await
            .map_err(|e| e.to_string())?;
        Ok(Sentinel {
            stream: conn.stream,
            limit,
        })
    }

    /// Sends one command and reads its reply.
    pub async fn call(&mut self, args: &[&str]) -> Result<OwnedFrame, String> {
        let request = encode(args);
        let reply = timeout(
            self.limit,
            conn::exchange(&mut self.stream, &request, MAX_REPLY),
        )
        .await
        .map_err(|_| format!("no reply within {} ms", self.limit.as_millis()))?
        .map_err(|e| e.to_string())?;
        parse(&reply)
    }

    /// `SENTINEL get-master-addr-by-name NAME`: the primary this sentinel names (`None`: it
    /// does not know the master).
    pub async fn master_addr(&mut self, master: &str) -> Result<Option<(String, u16)>, String> {
        let reply = self
            .call(&["SENTINEL", "get-master-addr-by-name", master])
            .await?;
        match reply {
            OwnedFrame::Null => Ok(None),
            OwnedFrame::Array { data, .. } if data.len() == 2 => {
                let host = text(&data[0]).ok_or("the host is not a string")?;
                let port = text(&data[1])
                    .and_then(|p| p.parse().ok())
                    .ok_or("the port is not a number")?;
                Ok(Some((host, port)))
            }
            other => Err(format!("unexpected reply {other:?}")),
        }
    }

    /// `SENTINEL replicas NAME`: the replicas that serve (not flagged down or disconnected,
    /// their link to the primary up).
    pub async fn replicas(&mut self, master: &str) -> Result<Vec<(String, u16)>, String> {
        let reply = self.call(&["SENTINEL", "replicas", master]).await?;
        let OwnedFrame::Array { data, .. } = reply else {
            return Err(format!("unexpected reply {reply:?}"));
        };
        Ok(data.iter().filter_map(serving_replica).collect())
    }

    /// Subscribes to [`EVENTS`]; then [`Sentinel::next_event`] reads them.
    pub async fn subscribe(&mut self) -> Result<(), String> {
        let mut args = vec!["SUBSCRIBE"];
        args.extend(EVENTS);
        let request = encode(&args);
        self.stream
            .write_all(&request)
            .await
            .map_err(|e| e.to_string())
    }

    /// The next event published (subscription confirmations are skipped).
    pub async fn next_event(&mut self, buf: &mut BytesMut) -> Result<Event, String> {
        let mut scanner = ReplyScanner::new();
        loop {
            while let Some(len) = scanner.scan(buf).map_err(|e| e.to_string())? {
                let frame = parse(&buf[..len]);
                buf.advance(len);
                if let Some(event) = frame.ok().as_ref().and_then(event) {
                    return Ok(event);
                }
            }
            if buf.len() > MAX_REPLY {
                return Err("a message over the size limit".into());
            }
            let mut chunk = [0u8; 4096];
            match self.stream.read(&mut chunk).await {
                Ok(0) => return Err("the sentinel closed the connection".into()),
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
                Err(e) => return Err(e.to_string()),
            }
        }
    }
}

/// Whether the server at `target` says it is a primary now (`ROLE`).
pub async fn is_primary(target: &Target, limit: Duration) -> Result<bool, String> {
    let mut conn = conn::open(target, Proto::Resp3)
        .await
        .map_err(|e| e.to_string())?;
    let reply = timeout(
        limit,
        conn::exchange(&mut conn.stream, &encode(&["ROLE"]), MAX_REPLY),
    )
    .await
    .map_err(|_| format!("no reply to ROLE within {} ms", limit.as_millis()))?
    .map_err(|e| e.to_string())?;
    match parse(&reply)? {
        OwnedFrame::Array { data, .. } => {
            Ok(data.first().and_then(text).as_deref() == Some("master"))
        }
        other => Err(format!("unexpected reply to ROLE: {other:?}")),
    }
}

/// A request of `args`.
fn encode(args: &[&str]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        out.extend_from_slice(format!("${}\r\n{a}\r\n", a.len()).as_bytes());
    }
    out
}

/// One reply, decoded; an error reply is an `Err` with its text.
fn parse(reply: &[u8]) -> Result<OwnedFrame, String> {
    match decode(reply) {
        Ok(Some((OwnedFrame::SimpleError { data, .. }, _))) => Err(data),
        Ok(Some((OwnedFrame::BlobError { data, .. }, _))) => {
            Err(String::from_utf8_lossy(&data).into_owned())
        }
        Ok(Some((frame, _))) => Ok(frame),
        Ok(None) => Err("incomplete reply".into()),
        Err(e) => Err(format!("reply is not RESP: {e:?}")),
    }
}

/// A string of a frame.
fn text(frame: &OwnedFrame) -> Option<String> {
    match frame {
        OwnedFrame::BlobString { data, .. } => Some(String::from_utf8_lossy(data).into_owned()),
        OwnedFrame::SimpleString { data, .. } => Some(String::from_utf8_lossy(data).into_owned()),
        OwnedFrame::Number { data, .. } => Some(data.to_string()),
        _ => None,
    }
}

/// The value of `key` in one replica's description (a map, or a flat key/value array).
fn field(entry: &OwnedFrame, key: &str) -> Option<String> {
    match entry {
        OwnedFrame::Map { data, .. } => data
            .iter()
            .find(|(k, _)| text(k).as_deref() == Some(key))
            .and_then(|(_, v)| text(v)),
        OwnedFrame::Array { data, .. } => data
            .chunks(2)
            .find(|kv| text(&kv[0]).as_deref() == Some(key))
            .and_then(|kv| kv.get(1))
            .and_then(text),
        _ => None,
    }
}

/// A replica's address, if it serves: not flagged down or disconnected, its link up.
fn serving_replica(entry: &OwnedFrame) -> Option<(String, u16)> {
    let flags = field(entry, "flags").unwrap_or_default();
    let bad = flags
        .split(',')
        .any(|f| matches!(f, "s_down" | "o_down" | "disconnected"));
    let link = field(entry, "master-link-status");
    if bad || link.as_deref().is_some_and(|l| l != "ok") {
        return None;
    }
    let host = field(entry, "ip")?;
    let port = field(entry, "port")?.parse().ok()?;
    Some((host, port))
}

/// A published message as an event (`>3 message CHANNEL PAYLOAD`).
fn event(frame: &OwnedFrame) -> Option<Event> {
    let data = match frame {
        OwnedFrame::Push { data, .. } | OwnedFrame::Array { data, .. } => data,
        _ => return None,
    };
    if data.len() != 3 || text(&data[0]).as_deref() != Some("message") {
        return None;
    }
    let channel = text(&data[1])?;
    let payload = text(&data[2])?;
    Some(Event {
        channel,
        words: payload.split_whitespace().map(str::to_string).collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(channel: &str, payload: &str) -> Event {
        Event {
            channel: channel.into(),
            words: payload.split_whitespace().map(str::to_string).collect(),
        }
    }

    #[test]
    fn events_name_their_master() {
        let switch = ev("+switch-master", "s1 127.0.0.1 7001 127.0.0.1 7002");
        assert_eq!(switch.master(), Some("s1"));
        assert_eq!(switch.new_primary(), Some(("127.0.0.1".into(), 7002)));
        assert!(switch.about_master());
        let odown = ev("+odown", "master s2 127.0.0.1 7003 #quorum 2/2");
        assert_eq!(odown.master(), Some("s2"));
        assert!(odown.about_master());
        assert_eq!(odown.new_primary(), None);
        let replica = ev(
            "+sdown",
            "slave 127.0.0.1:7004 127.0.0.1 7004 @ s3 127.0.0.1 7005",
        );
        assert_eq!(replica.master(), Some("s3"));
        assert!(!replica.about_master());
    }

    #[test]
    fn replicas_down_or_disconnected_are_left_out() {
        let entry = |flags: &str, link: &str, port: &str| OwnedFrame::Array {
            data: [
                "name",
                "x",
                "ip",
                "127.0.0.1",
                "port",
                port,
                "flags",
                flags,
                "master-link-status",
                link,
            ]
            .iter()
            .map(|s| OwnedFrame::BlobString {
                data: s.as_bytes().to_vec(),
                attributes: None,
            })
            .collect(),
            attributes: None,
        };
        assert_eq!(
            serving_replica(&entry("slave", "ok", "7001")),
            Some(("127.0.0.1".into(), 7001))
        );
        assert_eq!(serving_replica(&entry("s_down,slave", "ok", "7001")), None);
        assert_eq!(
            serving_replica(&entry("slave,disconnected", "ok", "7001")),
            None
        );
        assert_eq!(serving_replica(&entry("slave", "err", "7001")), None);
    }

    #[test]
    fn messages_become_events() {
        let push = OwnedFrame::Push {
            data: ["message", "+odown", "master s1 127.0.0.1 7001 #quorum 2/2"]
                .iter()
                .map(|s| OwnedFrame::BlobString {
                    data: s.as_bytes().to_vec(),
                    attributes: None,
                })
                .collect(),
            attributes: None,
        };
        let e = event(&push).expect("an event");
        assert_eq!(e.channel, "+odown");
        assert_eq!(e.master(), Some("s1"));
    }
}
