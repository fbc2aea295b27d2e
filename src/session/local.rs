//! Commands shardis answers itself: PING, ECHO, QUIT, SELECT, HELLO, AUTH, TIME, RESET, the
//! CLIENT subcommands and ACL WHOAMI / CAT, each in the client's protocol.

use std::fmt::Write as _;
use std::ops::Range;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::{Bytes, BytesMut};
use tokio::time::Instant;

use super::login::{AclSub, NOAUTH_HELLO};
use super::{ReplyMode, Session};
use crate::clients::ClientEntry;
use crate::protocol::command::{COMMANDS, Local, acl};
use crate::protocol::out::{Out, Proto};
use crate::protocol::request::parse_int;

const BAD_NAME: &str = "ERR Client names cannot contain spaces, newlines or special characters.";

/// Whether a client or library name is acceptable: printable ASCII without spaces.
fn name_ok(name: &[u8]) -> bool {
    name.iter().all(|&b| b > b' ' && b <= b'~')
}

impl Session {
    pub(super) fn local(
        &mut self,
        local: Local,
        id: usize,
        frame: &[u8],
        args: &[Range<usize>],
        now: Instant,
    ) {
        let arg = |i: usize| args.get(i).map(|r| &frame[r.clone()]);
        let upper = |i: usize| arg(i).map(|a| a.to_ascii_uppercase());
        match local {
            Local::Hello => return self.hello(id, frame, args, now),
            Local::Auth => return self.auth(id, frame, args, now),
            Local::ClientReply => return self.client_reply(id, upper(2).unwrap_or_default(), now),
            Local::ClientUnblock => return self.client_unblock(id, frame, args, now),
            Local::ClientKill => return self.client_kill(id, frame, args, now),
            _ => {}
        }
        let mut buf = BytesMut::new();
        let proto = self.proto;
        let mut out = Out::new(&mut buf, proto);
        let result: Result<(), String> = match local {
            Local::Ping => {
                let subscribed = self.subs.as_ref().is_some_and(|s| s.count() > 0);
                match (args.len(), subscribed && proto == Proto::Resp2) {
                    (1, false) => out.simple("PONG"),
                    (2, false) => out.bulk(arg(1).unwrap_or_default()),
                    // A RESP2 subscriber's PING is answered in the shape of a message.
                    (n, true) if n <= 2 => {
                        out.array(2);
                        out.bulk(b"pong");
                        out.bulk(arg(1).unwrap_or_default());
                    }
                    _ => {
                        return self.fail(
                            id,
                            now,
                            "ERR wrong number of arguments for 'ping' command",
                        );
                    }
                }
                Ok(())
            }
            Local::Echo => {
                out.bulk(arg(1).unwrap_or_default());
                Ok(())
            }
            Local::Quit => {
                self.closing = true;
                out.simple("OK");
                Ok(())
            }
            Local::Select => match arg(1).map(parse_int) {
                Some(Some(n)) if self.serves_db(n) => {
                    out.simple("OK");
                    Ok(())
                }
                Some(None) => Err("ERR value is not an integer or out of range".into()),
                _ => Err(self.one_db_error()),
            },
            Local::Time => {
                let t = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .unwrap_or_default();
                out.array(2);
                out.bulk(t.as_secs().to_string().as_bytes());
                out.bulk(t.subsec_micros().to_string().as_bytes());
                Ok(())
            }
            Local::ClientSetname => match arg(2) {
                Some(name) if name_ok(name) => {
                    self.client
                        .set_name((!name.is_empty()).then(|| Bytes::copy_from_slice(name)));
                    out.simple("OK");
                    Ok(())
                }
                _ => Err(BAD_NAME.into()),
            },
            Local::ClientGetname => {
                match self.client.name() {
                    Some(name) => out.bulk(&name),
                    None => out.null(),
                }
                Ok(())
            }
            Local::ClientSetinfo => {
                let (attr, value) = (upper(2).unwrap_or_default(), arg(3).unwrap_or_default());
                match attr.as_slice() {
                    b"LIB-NAME" | b"LIB-VER" if !name_ok(value) => Err(format!(
                        "ERR {} cannot contain spaces, newlines or special characters.",
                        String::from_utf8_lossy(&attr).to_lowercase()
                    )),
                    b"LIB-NAME" => {
                        self.client.set_lib_name(Bytes::copy_from_slice(value));
                        out.simple("OK");
                        Ok(())
                    }
                    b"LIB-VER" => {
                        self.client.set_lib_ver(Bytes::copy_from_slice(value));
                        out.simple("OK");
                        Ok(())
                    }
                    _ => Err(format!(
                        "ERR Unrecognized option '{}'",
                        String::from_utf8_lossy(arg(2).unwrap_or_default())
                    )),
                }
            }
            Local::ClientId => {
                out.integer(self.id as i64);
                Ok(())
            }
            Local::ClientInfo => {
                let line = self.describe_client(&self.client);
                out.verbatim(line.as_bytes());
                Ok(())
            }
            Local::ClientList => {
                let mut text = String::new();
                for c in self.ctx.state.clients.all() {
                    text.push_str(&self.describe_client(&c));
                }
                out.verbatim(text.as_bytes());
                Ok(())
            }
            Local::Hello
            | Local::Auth
            | Local::ClientReply
            | Local::ClientUnblock
            | Local::ClientKill => Ok(()),
            Local::ClientNoEvict | Local::ClientNoTouch => match upper(2).as_deref() {
                Some(b"ON" | b"OFF") => {
                    out.simple("OK");
                    Ok(())
                }
                _ => Err("ERR syntax error".into()),
            },
            Local::ClientGetredir => {
                out.integer(-1);
                Ok(())
            }
            Local::ClientTrackinginfo => {
                out.map(3);
                out.bulk(b"flags");
                out.set(1);
                out.bulk(b"off");
                out.bulk(b"redirect");
                out.integer(-1);
                out.bulk(b"prefixes");
                out.array(0);
                Ok(())
            }
            Local::ClientHelp => {
                let lines = [
                    "CLIENT <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
                    "GETNAME, SETNAME <name>, SETINFO <LIB-NAME|LIB-VER> <value>, ID, INFO,",
                    "LIST, REPLY (ON|OFF|SKIP), UNBLOCK <id> [TIMEOUT|ERROR],",
                    "KILL <ip:port> | KILL ID <id> | KILL ADDR <ip:port> [SKIPME yes|no],",
                    "NO-EVICT (ON|OFF), NO-TOUCH (ON|OFF), GETREDIR, TRACKINGINFO, HELP.",
                    "(answered by shardis for the connection to shardis)",
                ];
                out.array(lines.len());
                for l in lines {
                    out.simple(l);
                }
                Ok(())
            }
            Local::AclWhoami => self.acl_local(AclSub::Whoami, frame, args, &mut out),
            Local::AclUsers => self.acl_local(AclSub::Users, frame, args, &mut out),
            Local::AclList => self.acl_local(AclSub::List, frame, args, &mut out),
            Local::AclDryrun => self.acl_local(AclSub::Dryrun, frame, args, &mut out),
            Local::AclCat => match arg(2) {
                None => {
                    out.array(acl::NAMES.len());
                    for name in acl::NAMES {
                        out.bulk(name.as_bytes());
                    }
                    Ok(())
                }
                Some(cat) => {
                    let lower = String::from_utf8_lossy(cat).to_ascii_lowercase();
                    match acl::NAMES.iter().position(|n| *n == lower) {
                        Some(bit) => {
                            let names: Vec<&str> = COMMANDS
                                .iter()
                                .filter(|c| c.acl & (1 << bit) != 0)
                                .map(|c| c.name)
                                .collect();
                            out.array(names.len());
                            for n in names {
                                out.bulk(n.as_bytes());
                            }
                            Ok(())
                        }
                        None => Err(format!(
                            "ERR Unknown category '{}'",
                            String::from_utf8_lossy(cat)
                        )),
                    }
                }
            },
        };
        let ok = result.is_ok();
        if let Err(msg) = result {
            buf.clear();
            crate::protocol::reply::put_error(&mut buf, &msg);
        }
        self.ctx.metrics.command(id).record(now.elapsed(), ok);
        self.push_ready(buf.freeze());
    }

    /// HELLO [protover [AUTH user pass] [SETNAME name]]: switches the protocol and answers
    /// with the server's description, in the new protocol.
    fn hello(&mut self, id: usize, frame: &[u8], args: &[Range<usize>], now: Instant) {
        let arg = |i: usize| args.get(i).map(|r| &frame[r.clone()]);
        let proto = match arg(1).map(parse_int) {
            None => self.proto,
            Some(Some(2)) => Proto::Resp2,
            Some(Some(3)) => Proto::Resp3,
            Some(Some(_)) => return self.fail(id, now, "NOPROTO unsupported protocol version"),
            Some(None) => {
                return self.fail(
                    id,
                    now,
                    "ERR Protocol version is not an integer or out of range",
                );
            }
        };
        let mut i = 2;
        let mut name = None;
        let mut credentials = None;
        while i < args.len() {
            match arg(i).map(|a| a.to_ascii_uppercase()).as_deref() {
                Some(b"AUTH") if i + 2 < args.len() => {
                    credentials = arg(i + 1).zip(arg(i + 2));
                    i += 3;
                }
                Some(b"SETNAME") if i + 1 < args.len() => {
                    name = arg(i + 1);
                    i += 2;
                }
                _ => {
                    let opt = String::from_utf8_lossy(arg(i).unwrap_or_default()).into_owned();
                    return self.fail(
                        id,
                        now,
                        &format!("ERR Syntax error in HELLO option '{opt}'"),
                    );
                }
            }
        }
        if name.is_some_and(|n| !name_ok(n)) {
            return self.fail(id, now, BAD_NAME);
        }
        match credentials {
            // A failure is answered (after its delay) by hello_auth.
            Some((user, password)) if !self.hello_auth(id, user, password, now) => return,
            None if self.anonymous() => return self.fail(id, now, NOAUTH_HELLO),
            _ => {}
        }
        if let Some(name) = name {
            self.client.set_name(Some(Bytes::copy_from_slice(name)));
        }
        self.set_proto(proto);
        let version = self.redis_version();
        let mut buf = BytesMut::new();
        let mut out = Out::new(&mut buf, proto);
        out.map(7);
        out.bulk(b"server");
        out.bulk(b"redis");
        out.bulk(b"version");
        out.bulk(version.as_bytes());
        out.bulk(b"proto");
        out.integer(proto.version());
        out.bulk(b"id");
        out.integer(self.id as i64);
        out.bulk(b"mode");
        out.bulk(b"standalone");
        out.bulk(b"role");
        out.bulk(b"master");
        out.bulk(b"modules");
        out.array(0);
        self.ctx.metrics.command(id).record(now.elapsed(), true);
        self.push_ready(buf.freeze());
    }

    /// Whether `SELECT n` selects the database shardis serves: 0, or the pool's `db` (the
    /// connections' database, which clients may also name).
    pub(super) fn serves_db(&self, n: i64) -> bool {
        n == 0 || n == i64::from(self.table.settings.db)
    }

    /// The refusal of another database.
    pub(super) fn one_db_error(&self) -> String {
        match self.table.settings.db {
            0 => "ERR shardis serves database 0 only".to_string(),
            db => format!(
                "ERR shardis serves one database, db {db} on its backends: SELECT 0 or SELECT {db}"
            ),
        }
    }

    pub(super) fn set_proto(&mut self, proto: Proto) {
        self.proto = proto;
        self.client.set_proto(proto.version() as u8);
        if let Some(subs) = &self.subs {
            subs.me.set_proto(proto);
        }
    }

    /// What clients can count on through the proxy: the oldest backend's Redis version, or
    /// the version the command table describes before any backend answered.
    fn redis_version(&self) -> String {
        self.table
            .backends
            .iter()
            .filter_map(|b| b.state.version())
            .min()
            .map_or_else(
                || crate::protocol::redis_commands::REDIS_VERSION.to_string(),
                |[a, b, c]| format!("{a}.{b}.{c}"),
            )
    }

    /// RESET: back to a fresh connection: no transaction, watch or subscription, RESP2, no
    /// name, replies on.
    pub(super) fn reset(&mut self, id: usize, now: Instant) {
        self.multi = None;
        self.watch = None;
        self.subs = None;
        self.set_proto(Proto::Resp2);
        self.client.set_name(None);
        self.reply_mode = ReplyMode::On;
        self.log_out();
        self.ok(id, now, b"+RESET\r\n");
    }

    /// CLIENT REPLY ON|OFF|SKIP. OFF and SKIP are not answered.
    fn client_reply(&mut self, id: usize, mode: Vec<u8>, now: Instant) {
        match mode.as_slice() {
            b"ON" => {
                self.reply_mode = ReplyMode::On;
                self.ok(id, now, b"+OK\r\n");
            }
            b"OFF" | b"SKIP" => {
                self.reply_mode = ReplyMode::Off;
                self.ok(id, now, b"+OK\r\n");
                if mode == b"SKIP" {
                    self.reply_mode = ReplyMode::Skip;
                }
            }
            _ => self.fail(id, now, "ERR syntax error"),
        }
    }

    /// CLIENT UNBLOCK id [TIMEOUT|ERROR]: unblocks another client's blocking command on the
    /// backend where it waits.
    fn client_unblock(&mut self, id: usize, frame: &[u8], args: &[Range<usize>], now: Instant) {
        let how = args.get(3).map(|r| frame[r.clone()].to_ascii_uppercase());
        if !matches!(how.as_deref(), None | Some(b"TIMEOUT" | b"ERROR")) {
            return self.fail(
                id,
                now,
                "ERR CLIENT UNBLOCK reason should be TIMEOUT or ERROR",
            );
        }
        let Some(target) = parse_int(&frame[args[2].clone()]) else {
            return self.fail(id, now, "ERR value is not an integer or out of range");
        };
        let at = u64::try_from(target)
            .ok()
            .and_then(|t| self.ctx.state.clients.get(t))
            .and_then(|c| c.blocked());
        let Some((backend, conn_id)) = at else {
            return self.ok(id, now, b":0\r\n");
        };
        let mut request = BytesMut::new();
        let n = 3 + how.is_some() as usize;
        crate::protocol::reply::put_array_len(&mut request, n);
        crate::protocol::reply::put_bulk(&mut request, b"CLIENT");
        crate::protocol::reply::put_bulk(&mut request, b"UNBLOCK");
        crate::protocol::reply::put_bulk(&mut request, conn_id.to_string().as_bytes());
        if let Some(how) = how {
            crate::protocol::reply::put_bulk(&mut request, &how);
        }
        let seq = self.next_seq();
        self.push_waiting(super::pending::Pending::Single {
            cmd: id,
            start: now,
            backend,
            then: super::pending::Then::Pass,
            lease: None,
        });
        let req = crate::backend::Request::new(request.freeze(), self.reply_to(seq, 0));
        // Not awaited on the link queue: this is a control command, and the session's own
        // commands to that backend are not ordered with it.
        if let Some(b) = self.table.backends.get(backend)
            && let Err(e) = b.link(self.proto, self.id).try_send(req)
        {
            let req = match e {
                tokio::sync::mpsc::error::TrySendError::Full(r)
                | tokio::sync::mpsc::error::TrySendError::Closed(r) => r,
            };
            req.reply
                .send(Bytes::from_static(b"-ERR backend link busy\r\n"));
        }
    }

    /// CLIENT KILL ip:port | CLIENT KILL [ID id] [ADDR ip:port] [LADDR ip:port] [SKIPME yes|no].
    fn client_kill(&mut self, id: usize, frame: &[u8], args: &[Range<usize>], now: Instant) {
        let arg = |i: usize| String::from_utf8_lossy(&frame[args[i].clone()]).into_owned();
        let all = self.ctx.state.clients.all();
        if args.len() == 3 {
            // The old form: one address, +OK or an error.
            let addr = arg(2);
            return match all.iter().find(|c| c.addr == addr) {
                Some(c) => {
                    c.kill();
                    self.ok(id, now, b"+OK\r\n")
                }
                None => self.fail(id, now, "ERR No such client"),
            };
        }
        let mut ids = None;
        let mut addr = None;
        let mut laddr = None;
        let mut user = None;
        let mut skipme = true;
        let mut i = 2;
        while i + 1 < args.len() {
            let value = arg(i + 1);
            match arg(i).to_ascii_uppercase().as_str() {
                "ID" => match value.parse::<u64>() {
                    Ok(v) => ids = Some(v),
                    Err(_) => {
                        return self.fail(id, now, "ERR client-id should be greater than 0");
                    }
                },
                "ADDR" => addr = Some(value),
                "LADDR" => laddr = Some(value),
                "SKIPME" => match value.to_ascii_lowercase().as_str() {
                    "yes" => skipme = true,
                    "no" => skipme = false,
                    _ => return self.fail(id, now, "ERR syntax error"),
                },
                "USER" => {
                    if self.table.settings.auth.user(value.as_bytes()).is_none() {
                        return self.fail(id, now, &format!("ERR No such user '{value}'"));
                    }
                    user = Some(value);
                }
                "TYPE" | "MAXAGE" => {}
                _ => return self.fail(id, now, "ERR syntax error"),
            }
            i += 2;
        }
        if i != args.len() {
            return self.fail(id, now, "ERR syntax error");
        }
        let mut killed = 0;
        for c in all {
            let matched = ids.is_none_or(|v| v == c.id)
                && addr.as_ref().is_none_or(|a| *a == c.addr)
                && laddr.as_ref().is_none_or(|a| *a == c.laddr)
                && user.as_ref().is_none_or(|u| **u == *c.user());
            if matched && !(skipme && c.id == self.id) {
                c.kill();
                killed += 1;
            }
        }
        let mut buf = BytesMut::new();
        crate::protocol::reply::put_integer(&mut buf, killed);
        self.ctx.metrics.command(id).record(now.elapsed(), true);
        self.push_ready(buf.freeze());
    }

    /// One CLIENT LIST line, in Redis's format (fields shardis has no notion of are zero).
    fn describe_client(&self, c: &ClientEntry) -> String {
        let name = c.name().map(|n| String::from_utf8_lossy(&n).into_owned());
        let (lib_name, lib_ver) = c.lib();
        let text = |b: Option<Bytes>| b.map(|b| String::from_utf8_lossy(&b).into_owned());
        let cmd = c
            .last_cmd()
            .and_then(|id| COMMANDS.get(id))
            .map_or("NULL", |cmd| cmd.name);
        let age = c.created.elapsed().as_secs();
        let (sub, psub, ssub, multi) = if c.id == self.id {
            (
                self.subs.as_ref().map_or(0, |s| s.count()),
                0,
                0,
                self.multi.as_ref().map_or(-1, |_| 0),
            )
        } else {
            (0, 0, 0, -1)
        };
        let flags = if c.blocked().is_some() { "b" } else { "N" };
        let mut line = String::new();
        let _ = writeln!(
            line,
            "id={} addr={} laddr={} fd=0 name={} age={age} idle=0 flags={flags} db=0 sub={sub} \
             psub={psub} ssub={ssub} multi={multi} qbuf=0 qbuf-free=0 argv-mem=0 multi-mem=0 \
             rbs=0 rbp=0 obl=0 oll=0 omem=0 tot-mem=0 events=r cmd={cmd} user={} \
             redir=-1 resp={} lib-name={} lib-ver={}",
            c.id,
            c.addr,
            c.laddr,
            name.unwrap_or_default(),
            c.user(),
            c.proto(),
            text(lib_name).unwrap_or_default(),
            text(lib_ver).unwrap_or_default(),
        );
        line
    }
}
