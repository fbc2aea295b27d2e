//! A tiny blocking RESP client for tests: send commands, read replies (RESP2, and RESP3 after
//! HELLO 3), nothing clever.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

/// How long a read may block before the test fails.
pub const READ_TIMEOUT: Duration = Duration::from_secs(10);

/// One RESP2 reply.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Frame {
    /// `+OK`
    Simple(String),
    /// `-ERR ...`
    Error(String),
    /// `:42`
    Integer(i64),
    /// `$3\r\nfoo`
    Bulk(Vec<u8>),
    /// `$-1` or `*-1`
    Null,
    /// `*2 ...`
    Array(Vec<Frame>),
    /// RESP3 `%2 ...`: key, value pairs in order.
    Map(Vec<(Frame, Frame)>),
    /// RESP3 `~2 ...`.
    Set(Vec<Frame>),
    /// RESP3 `>3 ...`: out-of-band data (pub/sub messages).
    Push(Vec<Frame>),
    /// RESP3 `,1.5`, as written.
    Double(String),
    /// RESP3 `#t`.
    Boolean(bool),
    /// RESP3 `=15\r\ntxt:...`: the format and the text.
    Verbatim(String, Vec<u8>),
    /// RESP3 `(123...`, as written.
    BigNumber(String),
}

impl Frame {
    /// The payload of a simple string or bulk string as UTF-8 (lossy); panics otherwise.
    pub fn as_text(&self) -> String {
        match self {
            Frame::Simple(s) => s.clone(),
            Frame::Bulk(b) | Frame::Verbatim(_, b) => String::from_utf8_lossy(b).into_owned(),
            other => panic!("expected a string reply, got {other:?}"),
        }
    }
}

/// A blocking connection speaking RESP, with a 10 s read timeout.
pub struct Client {
    reader: BufReader<Box<dyn Read + Send>>,
    writer: Box<dyn Write + Send>,
}

impl Client {
    /// Connects to `addr` ("host:port"); panics on failure.
    pub fn connect(addr: &str) -> Client {
        let stream = TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect to {addr}: {e}"));
        Client::from_stream(stream)
    }

    /// Wraps an already connected stream.
    pub fn from_stream(stream: TcpStream) -> Client {
        stream
            .set_read_timeout(Some(READ_TIMEOUT))
            .expect("set_read_timeout");
        stream.set_nodelay(true).expect("set_nodelay");
        let writer = stream.try_clone().expect("clone stream");
        Client {
            reader: BufReader::new(Box::new(stream)),
            writer: Box::new(writer),
        }
    }

    /// Connects to `addr` over TLS with `config`, checking the server's certificate against
    /// 127.0.0.1; panics if the handshake fails.
    pub fn connect_tls(addr: &str, config: std::sync::Arc<rustls::ClientConfig>) -> Client {
        let stream = super::tls::tls_connect(addr, config, "127.0.0.1")
            .unwrap_or_else(|e| panic!("TLS connect to {addr}: {e}"));
        Client::from_tls(stream)
    }

    /// Wraps a TLS stream whose handshake is done.
    pub fn from_tls(
        stream: rustls::StreamOwned<rustls::ClientConnection, std::net::TcpStream>,
    ) -> Client {
        let shared = super::tls::Shared(std::sync::Arc::new(std::sync::Mutex::new(stream)));
        Client {
            reader: BufReader::new(Box::new(shared.clone())),
            writer: Box::new(shared),
        }
    }

    /// Reads replies from any stream (a Unix socket pair holding canned bytes).
    pub fn from_unix(stream: std::os::unix::net::UnixStream) -> Client {
        let writer = stream.try_clone().expect("clone stream");
        Client {
            reader: BufReader::new(Box::new(stream)),
            writer: Box::new(writer),
        }
    }

    /// The RESP encoding of one command (an array of bulk strings), for pipelining with
    /// [`Client::send_raw`].
    pub fn encode(args: &[&[u8]]) -> Vec<u8> {
        let mut out = format!("*{}\r\n", args.len()).into_bytes();
        for a in args {
            out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
            out.extend_from_slice(a);
            out.extend_from_slice(b"\r\n");
        }
        out
    }

    /// Sends one command and reads one reply.
    pub fn cmd(&mut self, args: &[&[u8]]) -> Frame {
        self.send_raw(&Client::encode(args));
        self.read_reply()
    }

    /// [`Client::cmd`] with string arguments.
    pub fn cmd_str(&mut self, args: &[&str]) -> Frame {
        let args: Vec<&[u8]> = args.iter().map(|a| a.as_bytes()).collect();
        self.cmd(&args)
    }

    /// Writes bytes as they are (pipelines, inline commands, malformed input).
    pub fn send_raw(&mut self, bytes: &[u8]) {
        self.writer.write_all(bytes).expect("write to server");
        // A TLS stream may hold the last record until flushed; TCP flushes nothing.
        self.writer.flush().expect("flush to server");
    }

    /// Reads one reply; panics on timeout, EOF or a protocol error.
    pub fn read_reply(&mut self) -> Frame {
        let line = self.read_line();
        let (kind, rest) = line.split_at(1);
        let items = |c: &mut Client, n: i64| (0..n).map(|_| c.read_reply()).collect::<Vec<_>>();
        match kind {
            "_" => Frame::Null,
            "#" => Frame::Boolean(rest == "t"),
            "," => Frame::Double(rest.to_string()),
            "(" => Frame::BigNumber(rest.to_string()),
            "%" => {
                let n = parse_int(rest);
                Frame::Map(
                    (0..n)
                        .map(|_| (self.read_reply(), self.read_reply()))
                        .collect(),
                )
            }
            "~" => {
                let n = parse_int(rest);
                Frame::Set(items(self, n))
            }
            ">" => {
                let n = parse_int(rest);
                Frame::Push(items(self, n))
            }
            "|" => {
                // An attribute: skip it, the value follows.
                let n = parse_int(rest);
                for _ in 0..n * 2 {
                    self.read_reply();
                }
                self.read_reply()
            }
            "!" | "=" => {
                let len = parse_int(rest);
                let mut buf = vec![0; len as usize + 2];
                self.reader.read_exact(&mut buf).expect("read blob");
                buf.truncate(len as usize);
                if kind == "!" {
                    Frame::Error(String::from_utf8_lossy(&buf).into_owned())
                } else {
                    let text = buf.split_off(4.min(buf.len()));
                    Frame::Verbatim(
                        String::from_utf8_lossy(&buf[..3.min(buf.len())]).into_owned(),
                        text,
                    )
                }
            }
            "+" => Frame::Simple(rest.to_string()),
            "-" => Frame::Error(rest.to_string()),
            ":" => Frame::Integer(parse_int(rest)),
            "$" => {
                let len = parse_int(rest);
                if len < 0 {
                    return Frame::Null;
                }
                let mut buf = vec![0; len as usize + 2];
                self.reader.read_exact(&mut buf).expect("read bulk string");
                assert_eq!(
                    &buf[len as usize..],
                    b"\r\n",
                    "bulk string not CRLF-terminated"
                );
                buf.truncate(len as usize);
                Frame::Bulk(buf)
            }
            "*" => {
                let len = parse_int(rest);
                if len < 0 {
                    return Frame::Null;
                }
                Frame::Array((0..len).map(|_| self.read_reply()).collect())
            }
            _ => panic!("not a RESP reply: {line:?}"),
        }
    }

    fn read_line(&mut self) -> String {
        let mut line = Vec::new();
        let n = self
            .reader
            .read_until(b'\n', &mut line)
            .expect("read reply (timed out?)");
        assert!(n > 0, "connection closed while waiting for a reply");
        assert!(
            line.ends_with(b"\r\n") && line.len() >= 3,
            "bad reply line {line:?}"
        );
        line.truncate(line.len() - 2);
        String::from_utf8(line).expect("reply line is UTF-8")
    }
}

fn parse_int(s: &str) -> i64 {
    s.parse()
        .unwrap_or_else(|_| panic!("bad integer {s:?} in reply"))
}
