//! Commands shardis answers itself: PING, ECHO, QUIT, SELECT, COMMAND, CLIENT, HELLO, AUTH, TIME.

use std::ops::Range;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::{Bytes, BytesMut};
use tokio::time::Instant;

use super::Session;
use crate::protocol::command::{COMMANDS, Command, Keys, Local, lookup};
use crate::protocol::reply::{put_array_len, put_bulk, put_integer, put_null, put_simple};

/// Redis' reply to credentials it does not accept.
const WRONGPASS: &str = "WRONGPASS invalid username-password pair or user is disabled.";
/// Redis' reply to `AUTH password` when the default user has no password.
const NO_PASSWORD: &str = "ERR AUTH <password> called without any password configured for the \
                           default user. Are you sure your configuration is correct?";

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
        let mut out = BytesMut::new();
        let result: Result<(), String> = match local {
            Local::Ping => match arg(1) {
                None => {
                    put_simple(&mut out, "PONG");
                    Ok(())
                }
                Some(message) if args.len() == 2 => {
                    put_bulk(&mut out, message);
                    Ok(())
                }
                Some(_) => Err("ERR wrong number of arguments for 'ping' command".into()),
            },
            Local::Echo => {
                put_bulk(&mut out, arg(1).unwrap_or_default());
                Ok(())
            }
            Local::Quit => {
                self.closing = true;
                put_simple(&mut out, "OK");
                Ok(())
            }
            Local::Select => match arg(1) {
                Some(b"0") => {
                    put_simple(&mut out, "OK");
                    Ok(())
                }
                _ => Err("ERR shardis serves database 0 only".into()),
            },
            Local::Time => {
                let t = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .unwrap_or_default();
                put_array_len(&mut out, 2);
                put_bulk(&mut out, t.as_secs().to_string().as_bytes());
                put_bulk(&mut out, t.subsec_micros().to_string().as_bytes());
                Ok(())
            }
            Local::Auth => match args.len() {
                2 => Err(NO_PASSWORD.into()),
                3 if arg(1) == Some(b"default") => {
                    put_simple(&mut out, "OK");
                    Ok(())
                }
                3 => Err(WRONGPASS.into()),
                _ => Err("ERR syntax error".into()),
            },
            Local::Hello => self.hello(&mut out, frame, args),
            Local::Client => self.client(&mut out, upper(1).as_deref(), arg(2), args.len()),
            Local::Command => command(&mut out, upper(1).as_deref(), frame, args),
        };
        let ok = result.is_ok();
        if let Err(msg) = result {
            out.clear();
            crate::protocol::reply::put_error(&mut out, &msg);
        }
        self.ctx.metrics.command(id).record(now.elapsed(), ok);
        self.push_ready(out.freeze());
    }

    /// HELLO [2 [AUTH user pass] [SETNAME name]]: RESP2 only for now.
    fn hello(
        &mut self,
        out: &mut BytesMut,
        frame: &[u8],
        args: &[Range<usize>],
    ) -> Result<(), String> {
        let arg = |i: usize| args.get(i).map(|r| &frame[r.clone()]);
        if let Some(version) = arg(1)
            && version != b"2"
        {
            return Err("NOPROTO unsupported protocol version: shardis speaks RESP2".into());
        }
        let mut i = 2;
        let mut name = None;
        while i < args.len() {
            match arg(i).map(|a| a.to_ascii_uppercase()).as_deref() {
                // Like Redis without a password: only the default user, with any password.
                Some(b"AUTH") if i + 2 < args.len() => {
                    if arg(i + 1) != Some(b"default") {
                        return Err(WRONGPASS.into());
                    }
                    i += 3;
                }
                Some(b"SETNAME") if i + 1 < args.len() => {
                    name = arg(i + 1);
                    i += 2;
                }
                _ => return Err("ERR syntax error in HELLO option".into()),
            }
        }
        // Only a HELLO that succeeds names the connection.
        if let Some(name) = name {
            self.name = Some(Bytes::copy_from_slice(name));
        }
        put_array_len(out, 14);
        put_bulk(out, b"server");
        put_bulk(out, b"shardis");
        put_bulk(out, b"version");
        put_bulk(out, env!("CARGO_PKG_VERSION").as_bytes());
        put_bulk(out, b"proto");
        put_integer(out, 2);
        put_bulk(out, b"id");
        put_integer(out, self.id as i64);
        put_bulk(out, b"mode");
        put_bulk(out, b"standalone");
        put_bulk(out, b"role");
        put_bulk(out, b"master");
        put_bulk(out, b"modules");
        put_array_len(out, 0);
        Ok(())
    }

    /// CLIENT SETNAME / GETNAME / SETINFO / ID.
    fn client(
        &mut self,
        out: &mut BytesMut,
        sub: Option<&[u8]>,
        value: Option<&[u8]>,
        argc: usize,
    ) -> Result<(), String> {
        match (sub, argc) {
            (Some(b"SETNAME"), 3) => {
                let name = value.unwrap_or_default();
                if name.iter().any(|&b| b <= b' ' || b > b'~') {
                    return Err(
                        "ERR Client names cannot contain spaces, newlines or special characters."
                            .into(),
                    );
                }
                self.name = (!name.is_empty()).then(|| Bytes::copy_from_slice(name));
                put_simple(out, "OK");
            }
            (Some(b"GETNAME"), 2) => match &self.name {
                Some(name) => put_bulk(out, name),
                None => put_null(out),
            },
            (Some(b"SETINFO"), 4) => {
                // Redis 7.2 knows these two attributes; shardis only acknowledges them.
                let attr = value.unwrap_or_default();
                if !attr.eq_ignore_ascii_case(b"lib-name") && !attr.eq_ignore_ascii_case(b"lib-ver")
                {
                    return Err(format!(
                        "ERR Unrecognized option '{}'",
                        String::from_utf8_lossy(attr)
                    ));
                }
                put_simple(out, "OK");
            }
            (Some(b"ID"), 2) => put_integer(out, self.id as i64),
            (Some(sub @ (b"SETNAME" | b"GETNAME" | b"SETINFO" | b"ID")), _) => {
                return Err(format!(
                    "ERR wrong number of arguments for 'client|{}' command",
                    String::from_utf8_lossy(sub).to_lowercase()
                ));
            }
            (sub, _) => {
                return Err(format!(
                    "ERR unsupported CLIENT subcommand '{}'",
                    String::from_utf8_lossy(sub.unwrap_or_default())
                ));
            }
        }
        Ok(())
    }
}

/// COMMAND, COMMAND COUNT, COMMAND INFO name..., COMMAND LIST, COMMAND DOCS (empty: enough for
/// redis-cli, which only uses it for hints).
fn command(
    out: &mut BytesMut,
    sub: Option<&[u8]>,
    frame: &[u8],
    args: &[Range<usize>],
) -> Result<(), String> {
    match sub {
        None => {
            put_array_len(out, COMMANDS.len());
            COMMANDS.iter().for_each(|c| put_info(out, c));
        }
        Some(b"COUNT") => put_integer(out, COMMANDS.len() as i64),
        Some(b"LIST") => {
            put_array_len(out, COMMANDS.len());
            COMMANDS
                .iter()
                .for_each(|c| put_bulk(out, c.name.as_bytes()));
        }
        Some(b"INFO") => {
            put_array_len(out, args.len() - 2);
            for r in &args[2..] {
                match lookup(&frame[r.clone()]) {
                    Some((_, c)) => put_info(out, c),
                    None => put_null(out),
                }
            }
        }
        Some(b"DOCS") => put_array_len(out, 0),
        Some(other) => {
            return Err(format!(
                "ERR unsupported COMMAND subcommand '{}'",
                String::from_utf8_lossy(other)
            ));
        }
    }
    Ok(())
}

/// One COMMAND entry: name, arity, flags, first key, last key, step.
fn put_info(out: &mut BytesMut, c: &Command) {
    put_array_len(out, 6);
    put_bulk(out, c.name.as_bytes());
    put_integer(out, c.arity as i64);
    put_array_len(out, 1);
    put_simple(out, if c.write { "write" } else { "readonly" });
    let (first, last, step) = match c.keys {
        Keys::None => (0, 0, 0),
        Keys::Range { first, last, step } => (first as i64, last as i64, step as i64),
        Keys::Counted { .. } => (0, 0, 0),
        Keys::Store { key, .. } => (key as i64, key as i64, 1),
    };
    put_integer(out, first);
    put_integer(out, last);
    put_integer(out, step);
}
