//! Opening a backend connection: the TCP connect, TLS when the pool has it, and the handshake
//! that every kind of connection shares (the pipelined links, the exclusive connections and the pub/sub
//! subscriber connections).
//!
//! The handshake is `HELLO <2|3> [AUTH user password] SETNAME shardis`, then `SELECT db` when
//! the pool sets a database other than 0: it sets the protocol the connection speaks,
//! authenticates it with the configured [`Credentials`], names it in the backend's
//! `CLIENT LIST`, and proves the backend answers (a TCP connect alone does not). Its reply gives
//! the connection's id on the backend (for `CLIENT UNBLOCK`) and the backend's Redis version. A
//! Redis older than 6 has no HELLO: RESP2 connections then go on with `AUTH [user] password`
//! and `SELECT db` as needed. A refused password fails the connection with the backend's
//! words (`WRONGPASS ...`), which [`ConnectError::kind`] classifies as `auth`.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use redis_protocol::resp3::decode::complete::decode;
use redis_protocol::resp3::types::OwnedFrame;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout;

pub use crate::config::Credentials;
use crate::metrics::BackendErrorKind;
use crate::net::Stream;
use crate::protocol::out::Proto;
use crate::protocol::parse_version;
use crate::protocol::reply::{ReplyScanner, is_error};
use crate::tls::ClientTls;

/// Largest handshake reply accepted.
const MAX_HANDSHAKE_REPLY: usize = 64 * 1024;
/// The name every shardis connection carries in the backend's `CLIENT LIST`.
pub const CLIENT_NAME: &str = "shardis";

/// Where to connect and how long to try.
#[derive(Debug, Clone)]
pub struct Target {
    pub host: String,
    pub port: u16,
    /// For the TCP connect, the TLS handshake and the handshake's reply, each.
    pub connect_timeout: Duration,
    /// TLS to this backend; `None`: plain TCP.
    pub tls: Option<TargetTls>,
    /// What the connection authenticates as, and its database.
    pub credentials: Credentials,
    /// A cluster replica: the handshake sends `READONLY`, so the replica serves reads of its
    /// primary's slots instead of redirecting them.
    pub readonly: bool,
}

/// TLS to one backend: the pool's connector, and the name its certificate must be valid for.
#[derive(Debug, Clone)]
pub struct TargetTls {
    pub client: Arc<ClientTls>,
    pub name: ServerName<'static>,
}

/// An open, handshaken connection.
#[derive(Debug)]
pub struct Conn {
    pub stream: Stream,
    pub proto: Proto,
    /// The connection's id on the backend (`CLIENT ID`), when HELLO gave it.
    pub id: Option<i64>,
    /// The backend's `redis_version`, when HELLO gave it.
    pub version: Option<[u32; 3]>,
    /// The backend's address epoch when it was opened (see `Spec::moves`).
    pub epoch: u64,
    /// The addresses the backend's name resolved to for this connection (sorted).
    pub resolved: Vec<std::net::SocketAddr>,
}

/// Why a connection could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("connect failed: {0}")]
    Connect(io::Error),
    #[error("connect timed out after {0} ms")]
    Timeout(u128),
    #[error("TLS handshake failed: {0}")]
    Tls(io::Error),
    #[error("handshake refused: {0}")]
    Refused(String),
    #[error("authentication refused: {0} (check the pool's or backend's username and password)")]
    Auth(String),
    #[error("closed during the handshake")]
    Closed,
    #[error("handshake reply is not RESP: {0}")]
    Protocol(String),
}

impl ConnectError {
    /// The metric kind of this failure.
    pub fn kind(&self) -> BackendErrorKind {
        match self {
            ConnectError::Connect(_) => BackendErrorKind::Connect,
            ConnectError::Timeout(_) => BackendErrorKind::Timeout,
            ConnectError::Tls(_) => BackendErrorKind::Tls,
            ConnectError::Refused(_) => BackendErrorKind::Handshake,
            ConnectError::Auth(_) => BackendErrorKind::Auth,
            ConnectError::Closed => BackendErrorKind::Closed,
            ConnectError::Protocol(_) => BackendErrorKind::Protocol,
        }
    }
}

/// A handshake refusal, classified by the error code Redis put first in its reply (the
/// RESP error's kind, not free text): credentials, or anything else.
fn refused(text: String) -> ConnectError {
    let code = text.split(' ').next().unwrap_or_default();
    if matches!(code, "NOAUTH" | "WRONGPASS" | "NOPERM") {
        ConnectError::Auth(text)
    } else {
        ConnectError::Refused(text)
    }
}

/// The environment variable naming a hosts file (`/etc/hosts` format) that is read on every
/// resolution and wins over DNS: for tests, and for setups that rename hosts by file.
pub const HOSTS_FILE_ENV: &str = "SHARDIS_HOSTS_FILE";

/// The addresses `host` resolves to now, in order: an IP literal as it is, else the hosts file
/// named by [`HOSTS_FILE_ENV`] if it lists the name, else the system resolver (DNS).
pub async fn resolve(host: &str, port: u16) -> std::io::Result<Vec<std::net::SocketAddr>> {
    if let Ok(ip) = host.parse::<std::net::IpAddr>() {
        return Ok(vec![std::net::SocketAddr::new(ip, port)]);
    }
    if let Some(file) = std::env::var_os(HOSTS_FILE_ENV)
        // A small file, read on each resolution (connects and refreshes, not requests).
        && let Ok(text) = std::fs::read_to_string(&file)
    {
        let found = hosts_lookup(&text, host, port);
        if !found.is_empty() {
            return Ok(found);
        }
    }
    let mut addrs: Vec<_> = tokio::net::lookup_host((host, port)).await?.collect();
    addrs.dedup();
    Ok(addrs)
}

/// `host`'s addresses in hosts-file text (`IP name [alias...]` per line, `#` comments).
fn hosts_lookup(text: &str, host: &str, port: u16) -> Vec<std::net::SocketAddr> {
    text.lines()
        .map(|l| l.split('#').next().unwrap_or(""))
        .filter_map(|l| {
            let mut words = l.split_whitespace();
            let ip: std::net::IpAddr = words.next()?.parse().ok()?;
            words
                .any(|w| w.eq_ignore_ascii_case(host))
                .then_some(std::net::SocketAddr::new(ip, port))
        })
        .collect()
}

/// Resolves `target` and connects to the first address that accepts.
async fn connect(target: &Target) -> std::io::Result<(TcpStream, Vec<std::net::SocketAddr>)> {
    let addrs = resolve(&target.host, target.port).await?;
    let mut last = None;
    for addr in &addrs {
        match TcpStream::connect(addr).await {
            Ok(s) => {
                let mut sorted = addrs.clone();
                sorted.sort();
                return Ok((s, sorted));
            }
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| {
        std::io::Error::new(
            std::io::ErrorKind::NotFound,
            format!("{} resolves to no address", target.host),
        )
    }))
}

/// Connects to `target` and runs the handshake for `proto`.
pub async fn open(target: &Target, proto: Proto) -> Result<Conn, ConnectError> {
    let limit = target.connect_timeout;
    let ms = limit.as_millis();
    let (tcp, resolved) = match timeout(limit, connect(target)).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => return Err(ConnectError::Connect(e)),
        Err(_) => return Err(ConnectError::Timeout(ms)),
    };
    let _ = tcp.set_nodelay(true);
    let mut stream = match &target.tls {
        None => Stream::Tcp(tcp),
        Some(tls) => {
            let handshake = crate::tls::connect(tcp, &tls.client, tls.name.clone());
            match timeout(limit, handshake).await {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => return Err(ConnectError::Tls(e)),
                Err(_) => return Err(ConnectError::Timeout(ms)),
            }
        }
    };
    let creds = &target.credentials;
    let hello = hello_request(proto, creds);
    let reply = match timeout(limit, exchange(&mut stream, &hello, MAX_HANDSHAKE_REPLY)).await {
        Ok(r) => r?,
        Err(_) => return Err(ConnectError::Timeout(ms)),
    };
    let (id, version) = if is_error(&reply) {
        let text = error_text(&reply);
        // Redis before 6 has no HELLO; a RESP2 connection needs none, and authenticates with
        // AUTH (with a user name only if one is configured: Redis 5 knows none).
        if proto != Proto::Resp2 || !text.to_ascii_lowercase().contains("unknown command") {
            return Err(refused(text));
        }
        if let Some((user, password)) = creds.auth() {
            let auth = match &creds.username {
                Some(_) => request(&[b"AUTH", user, password]),
                None => request(&[b"AUTH", password]),
            };
            expect_ok(&mut stream, &auth, limit).await?;
        }
        (None, None)
    } else {
        hello_fields(&reply)?
    };
    if creds.db != 0 {
        let select = request(&[b"SELECT", creds.db.to_string().as_bytes()]);
        expect_ok(&mut stream, &select, limit).await?;
    }
    if target.readonly {
        expect_ok(&mut stream, READONLY, limit).await?;
    }
    Ok(Conn {
        stream,
        proto,
        id,
        version,
        epoch: 0,
        resolved,
    })
}

/// Sent after HELLO on the connections to a cluster replica.
const READONLY: &[u8] = b"*1\r\n$8\r\nREADONLY\r\n";

/// `HELLO <v> [AUTH user password] SETNAME shardis`.
fn hello_request(proto: Proto, creds: &Credentials) -> Bytes {
    let v = proto.version().to_string();
    match creds.auth() {
        Some((user, password)) => request(&[
            b"HELLO",
            v.as_bytes(),
            b"AUTH",
            user,
            password,
            b"SETNAME",
            CLIENT_NAME.as_bytes(),
        ]),
        None => request(&[b"HELLO", v.as_bytes(), b"SETNAME", CLIENT_NAME.as_bytes()]),
    }
}

/// A RESP request.
fn request(args: &[&[u8]]) -> Bytes {
    let mut out = BytesMut::new();
    crate::protocol::reply::put_array_len(&mut out, args.len());
    for arg in args {
        crate::protocol::reply::put_bulk(&mut out, arg);
    }
    out.freeze()
}

/// Sends a handshake command whose reply must not be an error (AUTH, SELECT).
async fn expect_ok(
    stream: &mut Stream,
    request: &[u8],
    limit: Duration,
) -> Result<(), ConnectError> {
    let reply = match timeout(limit, exchange(stream, request, MAX_HANDSHAKE_REPLY)).await {
        Ok(r) => r?,
        Err(_) => return Err(ConnectError::Timeout(limit.as_millis())),
    };
    if is_error(&reply) {
        return Err(refused(error_text(&reply)));
    }
    Ok(())
}

/// Writes `request` and reads exactly one reply, of at most `max` bytes (the handshake's
/// replies, and one-off requests such as the cluster slot map).
pub async fn exchange(
    stream: &mut (impl AsyncRead + AsyncWrite + Unpin),
    request: &[u8],
    max: usize,
) -> Result<Vec<u8>, ConnectError> {
    stream
        .write_all(request)
        .await
        .map_err(ConnectError::Connect)?;
    let mut buf = Vec::with_capacity(512);
    let mut scanner = ReplyScanner::new();
    let mut chunk = [0u8; 4096];
    loop {
        match scanner.scan(&buf) {
            Ok(Some(len)) => {
                buf.truncate(len);
                return Ok(buf);
            }
            Ok(None) => {}
            Err(e) => return Err(ConnectError::Protocol(e.to_string())),
        }
        if buf.len() > max {
            return Err(ConnectError::Protocol(format!("reply over {max} bytes")));
        }
        match stream.read(&mut chunk).await {
            Ok(0) => return Err(ConnectError::Closed),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) => return Err(ConnectError::Connect(e)),
        }
    }
}

/// The text of an error reply, without its prefix and line end.
fn error_text(reply: &[u8]) -> String {
    let text = match reply.first() {
        // A blob error: `!len\r\ntext\r\n`.
        Some(b'!') => reply
            .iter()
            .position(|&b| b == b'\n')
            .map_or(&reply[..0], |i| &reply[i + 1..]),
        _ => reply.get(1..).unwrap_or_default(),
    };
    String::from_utf8_lossy(text).trim_end().to_string()
}

/// `id` and `version` from a HELLO reply (a RESP3 map, or a RESP2 array of name/value pairs).
fn hello_fields(reply: &[u8]) -> Result<(Option<i64>, Option<[u32; 3]>), ConnectError> {
    if !crate::protocol::reply::decodable(reply) {
        return Err(ConnectError::Protocol("HELLO reply nests too deep".into()));
    }
    let frame = match decode(reply) {
        Ok(Some((frame, _))) => frame,
        Ok(None) => return Err(ConnectError::Protocol("incomplete HELLO reply".into())),
        Err(e) => return Err(ConnectError::Protocol(e.to_string())),
    };
    let pairs: Vec<(OwnedFrame, OwnedFrame)> = match frame {
        OwnedFrame::Map { data, .. } => data.into_iter().collect(),
        OwnedFrame::Array { data, .. } => {
            let mut it = data.into_iter();
            std::iter::from_fn(|| Some((it.next()?, it.next()?))).collect()
        }
        _ => return Err(ConnectError::Protocol("HELLO reply is not a map".into())),
    };
    let mut id = None;
    let mut version = None;
    for (key, value) in pairs {
        match (text_of(&key).as_deref(), value) {
            (Some("id"), OwnedFrame::Number { data, .. }) => id = Some(data),
            (Some("version"), v) => version = text_of(&v).and_then(|t| parse_version(&t)),
            _ => {}
        }
    }
    Ok((id, version))
}

fn text_of(frame: &OwnedFrame) -> Option<String> {
    match frame {
        OwnedFrame::BlobString { data, .. } | OwnedFrame::SimpleString { data, .. } => {
            Some(String::from_utf8_lossy(data).into_owned())
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Secret;

    #[test]
    fn reads_id_and_version_in_both_protocols() {
        let resp3 = b"%3\r\n$6\r\nserver\r\n$5\r\nredis\r\n$7\r\nversion\r\n$6\r\n7.0.15\r\n$2\r\nid\r\n:42\r\n";
        assert_eq!(hello_fields(resp3).unwrap(), (Some(42), Some([7, 0, 15])));
        let resp2 = b"*4\r\n$7\r\nversion\r\n$5\r\n6.2.1\r\n$2\r\nid\r\n:7\r\n";
        assert_eq!(hello_fields(resp2).unwrap(), (Some(7), Some([6, 2, 1])));
        assert!(hello_fields(b"+OK\r\n").is_err());
    }

    #[test]
    fn handshake_requests_carry_the_credentials() {
        let none = Credentials::default();
        assert_eq!(
            &hello_request(Proto::Resp3, &none)[..],
            b"*4\r\n$5\r\nHELLO\r\n$1\r\n3\r\n$7\r\nSETNAME\r\n$7\r\nshardis\r\n"
        );
        let password_only = Credentials {
            password: Some(Secret::new(&b"pw"[..])),
            ..Credentials::default()
        };
        assert_eq!(
            &hello_request(Proto::Resp2, &password_only)[..],
            &b"*7\r\n$5\r\nHELLO\r\n$1\r\n2\r\n$4\r\nAUTH\r\n$7\r\ndefault\r\n$2\r\npw\r\n$7\r\nSETNAME\r\n$7\r\nshardis\r\n"[..]
        );
        let user = Credentials {
            username: Some("proxy".into()),
            password: Some(Secret::new(&b"s3"[..])),
            db: 2,
        };
        assert_eq!(user.auth(), Some((&b"proxy"[..], &b"s3"[..])));
        assert!(!format!("{user:?}").contains("s3"), "{user:?}");
    }

    #[test]
    fn refused_credentials_are_kind_auth() {
        let wrong = refused("WRONGPASS invalid username-password pair or user is disabled.".into());
        assert_eq!(wrong.kind(), BackendErrorKind::Auth);
        assert!(
            wrong.to_string().contains("username and password"),
            "{wrong}"
        );
        assert_eq!(
            refused("NOAUTH HELLO must be called with the client already authenticated".into())
                .kind(),
            BackendErrorKind::Auth
        );
        assert_eq!(
            refused("ERR DB index is out of range".into()).kind(),
            BackendErrorKind::Handshake
        );
    }

    #[test]
    fn error_texts() {
        assert_eq!(
            error_text(b"-NOAUTH Authentication required.\r\n"),
            "NOAUTH Authentication required."
        );
        assert_eq!(error_text(b"!5\r\nERR x\r\n"), "ERR x");
    }

    #[test]
    fn hosts_file_lookup() {
        let text = "# comment\n127.0.0.2 redis-a.test redis-a # trailing\n::1 redis-a.test\nbad line\n10.0.0.9 other\n";
        let found = hosts_lookup(text, "REDIS-A.test", 6379);
        assert_eq!(
            found,
            vec![
                "127.0.0.2:6379".parse().unwrap(),
                "[::1]:6379".parse().unwrap()
            ]
        );
        assert!(hosts_lookup(text, "missing", 1).is_empty());
    }

    #[test]
    fn versions() {
        assert_eq!(parse_version("7.0.15"), Some([7, 0, 15]));
    }
}
