//! Commands shardis answers itself, one function each: PING, ECHO, QUIT, SELECT, TIME,
//! HELLO, RESET, and the ACL subcommands it answers from its configuration (the CLIENT
//! subcommands are in [`super::client`], AUTH in [`super::login`]). Each answers in the
//! client's protocol.

use std::time::{SystemTime, UNIX_EPOCH};

use bytes::{Bytes, BytesMut};
use tokio::time::Instant;

use super::call::Call;
use super::client::{BAD_NAME, name_ok};
use super::login::{AclSub, NOAUTH_HELLO};
use super::refusal::{NOT_INTEGER, Refusal};
use super::{ReplyMode, Session};
use crate::protocol::command::{COMMANDS, Local, acl};
use crate::protocol::out::{Out, Proto};
use crate::protocol::reply::put_error;
use crate::protocol::request::parse_int;

impl Session {
    /// Answers a command shardis serves itself.
    pub(super) fn local(&mut self, local: Local, call: Call<'_>) {
        match local {
            Local::Ping => self.ping(&call),
            Local::Echo => self.answer(&call, |out| out.bulk(call.arg(1).unwrap_or_default())),
            Local::Quit => {
                self.closing = true;
                self.answer(&call, |out| out.simple("OK"))
            }
            Local::Select => self.select(&call),
            Local::Time => self.answer(&call, time),
            Local::Hello => self.hello(&call),
            Local::Auth => self.auth(&call),
            Local::AclWhoami => self.acl(AclSub::Whoami, &call),
            Local::AclUsers => self.acl(AclSub::Users, &call),
            Local::AclList => self.acl(AclSub::List, &call),
            Local::AclDryrun => self.acl(AclSub::Dryrun, &call),
            Local::AclCat => self.acl_cat(&call),
            client => self.client_command(client, &call),
        }
    }

    /// Queues the reply `write` makes in the client's protocol, and counts a success.
    pub(super) fn answer(&mut self, call: &Call<'_>, write: impl FnOnce(&mut Out<'_>)) {
        let mut buf = BytesMut::new();
        write(&mut Out::new(&mut buf, self.out.proto));
        self.ctx
            .metrics
            .command(call.id)
            .record(call.start.elapsed(), true);
        self.push_ready(buf.freeze());
    }

    /// Queues the reply `write` makes, or the refusal it returns, and counts it.
    pub(super) fn answer_or_refuse(
        &mut self,
        call: &Call<'_>,
        write: impl FnOnce(&mut Out<'_>) -> Result<(), Refusal>,
    ) {
        let mut buf = BytesMut::new();
        let result = write(&mut Out::new(&mut buf, self.out.proto));
        if let Err(refusal) = &result {
            buf.clear();
            put_error(&mut buf, &refusal.to_string());
        }
        self.ctx
            .metrics
            .command(call.id)
            .record(call.start.elapsed(), result.is_ok());
        self.push_ready(buf.freeze());
    }

    /// PING [message]. A RESP2 subscriber's PING is answered in the shape of a message.
    fn ping(&mut self, call: &Call<'_>) {
        let subscribed = self.modes.subs.as_ref().is_some_and(|s| s.count() > 0);
        let message = call.arg(1);
        match (
            call.args.len(),
            subscribed && self.out.proto == Proto::Resp2,
        ) {
            (1, false) => self.answer(call, |out| out.simple("PONG")),
            (2, false) => self.answer(call, |out| out.bulk(message.unwrap_or_default())),
            (n, true) if n <= 2 => self.answer(call, |out| {
                out.array(2);
                out.bulk(b"pong");
                out.bulk(message.unwrap_or_default());
            }),
            _ => self.fail(
                call.id,
                call.start,
                &Refusal::WrongArity("ping").to_string(),
            ),
        }
    }

    /// SELECT n: only the database shardis serves.
    fn select(&mut self, call: &Call<'_>) {
        let db = self.table.settings.db;
        let chosen = call.arg(1).map(parse_int);
        let serves = matches!(chosen, Some(Some(n)) if self.serves_db(n));
        self.answer_or_refuse(call, |out| match chosen {
            Some(Some(_)) if serves => {
                out.simple("OK");
                Ok(())
            }
            Some(None) => Err(NOT_INTEGER),
            _ => Err(Refusal::OtherDb(db)),
        })
    }

    /// ACL WHOAMI, USERS, LIST and DRYRUN.
    fn acl(&mut self, sub: AclSub, call: &Call<'_>) {
        let mut buf = BytesMut::new();
        let result = self.acl_local(sub, call, &mut Out::new(&mut buf, self.out.proto));
        self.answer_or_refuse(call, |out| {
            result?;
            out.buf.extend_from_slice(&buf);
            Ok(())
        })
    }

    /// ACL CAT [category].
    fn acl_cat(&mut self, call: &Call<'_>) {
        let category = call.arg(2);
        self.answer_or_refuse(call, |out| {
            let Some(cat) = category else {
                out.array(acl::NAMES.len());
                for name in acl::NAMES {
                    out.bulk(name.as_bytes());
                }
                return Ok(());
            };
            let lower = String::from_utf8_lossy(cat).to_ascii_lowercase();
            let bit = acl::NAMES
                .iter()
                .position(|n| *n == lower)
                .ok_or_else(|| Refusal::UnknownCategory(String::from_utf8_lossy(cat).into()))?;
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
        })
    }

    /// HELLO [protover [AUTH user pass] [SETNAME name]]: switches the protocol and answers
    /// with the server's description, in the new protocol.
    fn hello(&mut self, call: &Call<'_>) {
        let (id, now, args) = (call.id, call.start, call.args);
        let arg = |i: usize| call.arg(i);
        let proto = match arg(1).map(parse_int) {
            None => self.out.proto,
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

    pub(super) fn set_proto(&mut self, proto: Proto) {
        self.out.proto = proto;
        self.client.set_proto(proto.version() as u8);
        if let Some(subs) = &self.modes.subs {
            subs.me.set_proto(proto);
        }
    }

    /// What clients can count on through the proxy: the oldest backend's Redis version, or
    /// the version the command table describes before any backend answered.
    fn redis_version(&self) -> String {
        self.table
            .backends()
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
        self.modes.multi = None;
        self.modes.watch = None;
        self.modes.subs = None;
        self.set_proto(Proto::Resp2);
        self.client.set_name(None);
        self.out.reply_mode = ReplyMode::On;
        self.log_out();
        self.ok(id, now, b"+RESET\r\n");
    }
}

/// TIME: seconds and microseconds.
fn time(out: &mut Out<'_>) {
    let t = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    out.array(2);
    out.bulk(t.as_secs().to_string().as_bytes());
    out.bulk(t.subsec_micros().to_string().as_bytes());
}
