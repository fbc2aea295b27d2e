//! Authentication in the session: who the client is, and the [`Guard`] dispatch consults before
//! every command; AUTH and HELLO's AUTH option; failed attempts paced and counted; RESET's
//! logout; what a reload does to a login; and the ACL subcommands shardis answers.
//!
//! A client starts as the default user when that user needs no password (always, when no
//! authentication is configured), and is anonymous otherwise: then only AUTH, HELLO, QUIT and
//! RESET are served (Redis's `no-auth` commands) and everything else gets `-NOAUTH`.
//!
//! Each failed AUTH of a connection delays its reply, and everything the client sent after it,
//! by `auth_failure_delay_ms` doubled per consecutive failure (the session's own wait, not a
//! sleep on a shared thread), and `auth_failure_limit` failures in a row close the connection.
//!
//! After a reload the session looks its user up again by name with its next command: new rules
//! apply from then on; a user that is gone or off ends the session (a reload also closes the
//! idle sessions of such users at once, see [`crate::auth::Auth::revoke`]).

use std::ops::Range;
use std::sync::Arc;

use bytes::Bytes;
use tokio::time::Instant;
use tracing::info;

use super::Session;
use super::call::Call;
use super::pending::Pending;
use super::refusal::Refusal;
use crate::auth::{DEFAULT_USER, User};
use crate::protocol::command::{Command, Kind, SessionCmd, flag, lookup, lookup_sub};
use crate::protocol::out::Out;

/// Redis's reply to credentials it does not accept.
pub(super) const WRONGPASS: &str = "WRONGPASS invalid username-password pair or user is disabled.";
const WRONGPASS_REPLY: &[u8] =
    b"-WRONGPASS invalid username-password pair or user is disabled.\r\n";
/// Redis 7.0's reply to HELLO without AUTH before authentication.
pub(super) const NOAUTH_HELLO: &str = "NOAUTH HELLO must be called with the client already \
    authenticated, otherwise the HELLO AUTH <user> <pass> option can be used to authenticate \
    the client and select the RESP protocol version at the same time";
/// Redis's reply to `AUTH password` when the default user has no password.
const NO_PASSWORD: &str = "ERR AUTH <password> called without any password configured for the \
                           default user. Are you sure your configuration is correct?";

/// What dispatch checks before serving a command.
pub(super) enum Guard {
    /// Nothing: no authentication configured, or a user allowed everything.
    Open,
    /// Not authenticated: only Redis's no-auth commands.
    Anonymous,
    /// A user with restrictions.
    Acl(Arc<User>),
}

/// Who a client is: the [`Guard`] dispatch applies, its login (`None` before it
/// authenticates), and its failed AUTHs in a row.
pub(super) struct Who {
    pub(super) guard: Guard,
    login: Option<crate::auth::Login>,
    failures: u32,
}

impl Default for Who {
    fn default() -> Who {
        Who {
            guard: Guard::Anonymous,
            login: None,
            failures: 0,
        }
    }
}

impl Guard {
    fn of(user: &Arc<User>) -> Guard {
        if user.unrestricted {
            Guard::Open
        } else {
            Guard::Acl(user.clone())
        }
    }
}

impl Session {
    /// Sets who the client is from the table's users: when the session starts, and after a
    /// reload swapped the table.
    pub(super) fn check_login(&mut self) {
        let auth = self.table.settings.auth.clone();
        if let Some(login) = &mut self.who.login {
            match auth.user(login.user.name.as_bytes()) {
                Some(user) if user.enabled => {
                    self.who.guard = Guard::of(user);
                    auth.relogin(login, user.clone(), &self.client);
                }
                _ => {
                    self.who.login = None;
                    self.who.guard = Guard::Anonymous;
                    self.closing = true;
                    self.evicted = Some("its user was removed or disabled by a reload");
                }
            }
            return;
        }
        match auth.open_default() {
            Some(default) => self.log_in(default.clone()),
            None => self.who.guard = Guard::Anonymous,
        }
    }

    fn log_in(&mut self, user: Arc<User>) {
        self.who.guard = Guard::of(&user);
        self.who.failures = 0;
        self.who.login = Some(self.table.settings.auth.login(user, &self.client));
    }

    /// Back to a fresh connection's login (RESET): the default user if it needs no password,
    /// else anonymous.
    pub(super) fn log_out(&mut self) {
        self.who.login = None;
        self.who.failures = 0;
        self.client.set_user(Arc::from(DEFAULT_USER));
        self.check_login();
    }

    /// The name of the user the client is logged in as.
    pub(super) fn user_name(&self) -> Arc<str> {
        self.who
            .login
            .as_ref()
            .map_or_else(|| Arc::from(DEFAULT_USER), |l| l.user.name.clone())
    }

    /// Whether the client may run `cmd`; `Err` is the reply. Only called when the guard is
    /// not [`Guard::Open`].
    #[cold]
    pub(super) fn admit(
        &mut self,
        id: usize,
        cmd: &Command,
        frame: &[u8],
        args: &[Range<usize>],
    ) -> Result<(), Refusal> {
        let refusal = match &self.who.guard {
            Guard::Open => return Ok(()),
            Guard::Anonymous if cmd.flags & flag::NO_AUTH != 0 => return Ok(()),
            Guard::Anonymous => Refusal::NoAuth,
            Guard::Acl(user) => match user.acl.check(id, cmd, frame, args) {
                Ok(()) => return Ok(()),
                Err(denied) => {
                    user.denied(denied.reason());
                    Refusal::Acl(denied, cmd.name)
                }
            },
        };
        if cmd.kind == Kind::Session(SessionCmd::Exec) {
            // As Redis: a refused EXEC discards the transaction.
            self.modes.multi = None;
            self.modes.watch = None;
            return Err(Refusal::ExecAbort(Box::new(refusal)));
        }
        Err(refusal)
    }

    /// AUTH [user] password.
    pub(super) fn auth(&mut self, call: &Call<'_>) {
        let (id, now, frame, args) = (call.id, call.start, &call.frame[..], call.args);
        let arg = |i: usize| &frame[args[i].clone()];
        let auth = self.table.settings.auth.clone();
        let (user, password) = match args.len() {
            2 => {
                if auth.open_default().is_some() {
                    return self.fail(id, now, NO_PASSWORD);
                }
                (DEFAULT_USER.as_bytes(), arg(1))
            }
            3 => (arg(1), arg(2)),
            _ => return self.fail(id, now, "ERR syntax error"),
        };
        match auth.authenticate(user, password) {
            Some(user) => {
                self.log_in(user);
                self.ok(id, now, b"+OK\r\n");
            }
            None => self.auth_failed(id, now),
        }
    }

    /// HELLO's `AUTH user password`: `true` when authenticated; otherwise the reply is queued.
    pub(super) fn hello_auth(
        &mut self,
        id: usize,
        user: &[u8],
        password: &[u8],
        now: Instant,
    ) -> bool {
        match self.table.settings.auth.authenticate(user, password) {
            Some(user) => {
                self.log_in(user);
                true
            }
            None => {
                self.auth_failed(id, now);
                false
            }
        }
    }

    /// Whether HELLO without AUTH must be refused.
    pub(super) fn anonymous(&self) -> bool {
        matches!(self.who.guard, Guard::Anonymous)
    }

    /// Answers a failed AUTH with WRONGPASS: after the connection's pacing delay, during which
    /// nothing else it sent is served; or, at the limit of failures, at once and then closes.
    fn auth_failed(&mut self, id: usize, now: Instant) {
        self.who.failures = self.who.failures.saturating_add(1);
        let failures = self.who.failures;
        let auth = self.table.settings.auth.clone();
        if auth.failure_limit > 0 && failures >= auth.failure_limit {
            info!(
                client = self.id,
                addr = %self.client.addr,
                "closing the connection after {failures} failed authentication attempts"
            );
            self.fail(id, now, WRONGPASS);
            self.closing = true;
            return;
        }
        let delay = auth.failure_delay(failures);
        if delay.is_zero() {
            return self.fail(id, now, WRONGPASS);
        }
        // The reply comes through the inbox like a backend's, and the session sends nothing
        // while it waits, as for a blocking command: so the next guess waits too.
        let seq = self.next_seq();
        self.push_waiting(Pending::Delayed {
            cmd: id,
            start: now,
        });
        self.modes.blocked = Some(seq);
        let reply = self.reply_to(seq, 0);
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            reply.send(Bytes::from_static(WRONGPASS_REPLY));
        });
    }

    /// ACL WHOAMI, USERS, LIST, DRYRUN into `out`, or why not.
    pub(super) fn acl_local(
        &self,
        sub: AclSub,
        call: &Call<'_>,
        out: &mut Out<'_>,
    ) -> Result<(), Refusal> {
        let (frame, args) = (&call.frame[..], call.args);
        let auth = &self.table.settings.auth;
        match sub {
            AclSub::Whoami => out.bulk(self.user_name().as_bytes()),
            AclSub::Users => {
                let names = auth.names();
                out.array(names.len());
                for n in names {
                    out.bulk(n.as_bytes());
                }
            }
            AclSub::List => {
                let names = auth.names();
                out.array(names.len());
                for n in names {
                    let line = auth
                        .user(n.as_bytes())
                        .map(|u| u.acl_list_line())
                        .unwrap_or_default();
                    out.bulk(line.as_bytes());
                }
            }
            AclSub::Dryrun => {
                let text =
                    |r: &Range<usize>| String::from_utf8_lossy(&frame[r.clone()]).into_owned();
                let Some(user) = auth.user(&frame[args[2].clone()]) else {
                    return Err(Refusal::UnknownUser(text(&args[2])));
                };
                let sub_args = &args[3..];
                let not_found = || Refusal::UnknownCommand(text(&sub_args[0]));
                let (mut id, mut cmd) =
                    lookup(&frame[sub_args[0].clone()]).ok_or_else(not_found)?;
                if cmd.kind == Kind::Container {
                    let sub = sub_args.get(1).ok_or_else(not_found)?;
                    (id, cmd) = lookup_sub(cmd.name, &frame[sub.clone()]).ok_or_else(not_found)?;
                }
                if !cmd.arity_ok(sub_args.len()) {
                    return Err(Refusal::WrongArity(cmd.name));
                }
                match user.acl.check(id, cmd, frame, sub_args) {
                    Ok(()) => out.simple("OK"),
                    Err(denied) => match denied.dryrun(cmd.name, frame, sub_args) {
                        Some(text) => out.bulk(text.as_bytes()),
                        None => out.simple("OK"),
                    },
                }
            }
        }
        Ok(())
    }
}

/// The ACL subcommands shardis answers from its configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum AclSub {
    Whoami,
    Users,
    List,
    Dryrun,
}
