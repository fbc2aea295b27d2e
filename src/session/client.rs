//! The CLIENT subcommands, answered by shardis for the client's own connection to it (the
//! backends' connections are shardis's): names, library info, REPLY, LIST and INFO from the
//! client registry, KILL, and UNBLOCK, which reaches the backend where a blocked client waits.

use std::fmt::Write as _;

use bytes::{Bytes, BytesMut};

use super::call::Call;
use super::refusal::{Refusal, SYNTAX};
use super::{ReplyMode, Session};
use crate::clients::ClientEntry;
use crate::protocol::command::{COMMANDS, Local};
use crate::protocol::request::parse_int;

pub(super) const BAD_NAME: &str =
    "ERR Client names cannot contain spaces, newlines or special characters.";

/// Whether a client or library name is acceptable: printable ASCII without spaces.
pub(super) fn name_ok(name: &[u8]) -> bool {
    name.iter().all(|&b| b > b' ' && b <= b'~')
}

const HELP: [&str; 6] = [
    "CLIENT <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
    "GETNAME, SETNAME <name>, SETINFO <LIB-NAME|LIB-VER> <value>, ID, INFO,",
    "LIST, REPLY (ON|OFF|SKIP), UNBLOCK <id> [TIMEOUT|ERROR],",
    "KILL <ip:port> | KILL ID <id> | KILL ADDR <ip:port> [SKIPME yes|no],",
    "NO-EVICT (ON|OFF), NO-TOUCH (ON|OFF), GETREDIR, TRACKINGINFO, HELP.",
    "(answered by shardis for the connection to shardis)",
];

impl Session {
    /// One CLIENT subcommand (`local` is one of [`Local`]'s `Client*`).
    pub(super) fn client_command(&mut self, local: Local, call: &Call<'_>) {
        match local {
            Local::ClientSetname => self.client_setname(call),
            Local::ClientGetname => {
                let name = self.client.name();
                self.answer(call, |out| match name {
                    Some(name) => out.bulk(&name[..]),
                    None => out.null(),
                })
            }
            Local::ClientSetinfo => self.client_setinfo(call),
            Local::ClientId => {
                let id = self.id as i64;
                self.answer(call, |out| out.integer(id))
            }
            Local::ClientInfo => {
                let line = self.describe_client(&self.client);
                self.answer(call, |out| out.verbatim(line.as_bytes()))
            }
            Local::ClientList => {
                let mut text = String::new();
                for c in self.ctx.state.clients.all() {
                    text.push_str(&self.describe_client(&c));
                }
                self.answer(call, |out| out.verbatim(text.as_bytes()))
            }
            Local::ClientNoEvict | Local::ClientNoTouch => {
                let on_off = matches!(call.upper(2).as_deref(), Some(b"ON" | b"OFF"));
                self.answer_or_refuse(call, |out| {
                    if !on_off {
                        return Err(SYNTAX);
                    }
                    out.simple("OK");
                    Ok(())
                })
            }
            Local::ClientGetredir => self.answer(call, |out| out.integer(-1)),
            Local::ClientTrackinginfo => self.answer(call, |out| {
                out.map(3);
                out.bulk(b"flags");
                out.set(1);
                out.bulk(b"off");
                out.bulk(b"redirect");
                out.integer(-1);
                out.bulk(b"prefixes");
                out.array(0);
            }),
            Local::ClientHelp => self.answer(call, |out| {
                out.array(HELP.len());
                for l in HELP {
                    out.simple(l);
                }
            }),
            Local::ClientReply => self.client_reply(call),
            Local::ClientUnblock => self.client_unblock(call),
            Local::ClientKill => self.client_kill(call),
            _ => self.fail(call.id, call.start, "ERR unknown subcommand"),
        }
    }

    /// CLIENT SETNAME name.
    fn client_setname(&mut self, call: &Call<'_>) {
        match call.arg(2) {
            Some(name) if name_ok(name) => {
                self.client
                    .set_name((!name.is_empty()).then(|| Bytes::copy_from_slice(name)));
                self.answer(call, |out| out.simple("OK"))
            }
            _ => self.fail(call.id, call.start, BAD_NAME),
        }
    }

    /// CLIENT SETINFO LIB-NAME|LIB-VER value.
    fn client_setinfo(&mut self, call: &Call<'_>) {
        let (attr, value) = (
            call.upper(2).unwrap_or_default(),
            call.arg(3).unwrap_or_default(),
        );
        let client = self.client.clone();
        self.answer_or_refuse(call, |out| {
            match attr.as_slice() {
                b"LIB-NAME" | b"LIB-VER" if !name_ok(value) => {
                    return Err(Refusal::BadLibField(
                        String::from_utf8_lossy(&attr).to_lowercase(),
                    ));
                }
                b"LIB-NAME" => client.set_lib_name(Bytes::copy_from_slice(value)),
                b"LIB-VER" => client.set_lib_ver(Bytes::copy_from_slice(value)),
                _ => return Err(Refusal::UnknownOption(call.text(2))),
            }
            out.simple("OK");
            Ok(())
        })
    }

    /// CLIENT REPLY ON|OFF|SKIP. OFF and SKIP are not answered.
    fn client_reply(&mut self, call: &Call<'_>) {
        let (id, now) = (call.id, call.start);
        let mode = call.upper(2).unwrap_or_default();
        match mode.as_slice() {
            b"ON" => {
                self.out.reply_mode = ReplyMode::On;
                self.ok(id, now, b"+OK\r\n");
            }
            b"OFF" | b"SKIP" => {
                self.out.reply_mode = ReplyMode::Off;
                self.ok(id, now, b"+OK\r\n");
                if mode == b"SKIP" {
                    self.out.reply_mode = ReplyMode::Skip;
                }
            }
            _ => self.fail(id, now, "ERR syntax error"),
        }
    }

    /// CLIENT UNBLOCK id [TIMEOUT|ERROR]: unblocks another client's blocking command on the
    /// backend where it waits.
    fn client_unblock(&mut self, call: &Call<'_>) {
        let (id, now, frame, args) = (call.id, call.start, &call.frame[..], call.args);
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
        let req = crate::backend::Request::new(request.freeze(), self.reply_to(seq, 0));
        self.push_waiting(super::pending::Pending::Single {
            cmd: id,
            start: now,
            sent: crate::routing::Sent::plain(backend.clone(), &req),
            then: super::pending::Then::Pass,
            lease: None,
        });
        // Not awaited on the link queue: this is a control command, and the session's own
        // commands to that backend are not ordered with it.
        if let Err(e) = backend.link(self.out.proto, self.id).try_send(req) {
            let req = match e {
                tokio::sync::mpsc::error::TrySendError::Full(r)
                | tokio::sync::mpsc::error::TrySendError::Closed(r) => r,
            };
            req.reply
                .send(Bytes::from_static(b"-ERR backend link busy\r\n"));
        }
    }

    /// CLIENT KILL ip:port | CLIENT KILL [ID id] [ADDR ip:port] [LADDR ip:port] [SKIPME yes|no].
    fn client_kill(&mut self, call: &Call<'_>) {
        let (id, now, frame, args) = (call.id, call.start, &call.frame[..], call.args);
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
                self.modes.subs.as_ref().map_or(0, |s| s.count()),
                0,
                0,
                self.modes.multi.as_ref().map_or(-1, |_| 0),
            )
        } else {
            (0, 0, 0, -1)
        };
        let flags = if c.is_blocked() { "b" } else { "N" };
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
