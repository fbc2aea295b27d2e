//! Client authentication and ACLs: the users clients may authenticate as (from `[server]
//! password` and `[[users]]`), their compiled permissions ([`crate::acl`]), password checks in
//! constant time, and the registry of who is logged in as whom, so that a reload can close
//! the sessions of a user it removed or disabled.
//!
//! An [`Auth`] is built from each configuration and travels in the routing table
//! ([`crate::routing::Settings`]), so sessions see a reload with their next command, lock-free.
//! The session side (AUTH, HELLO AUTH, the per-command check) is in `session/login.rs`.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use metrics::Counter;
use tracing::info;

use crate::acl::{self, Acl, Reason};
use crate::clients::ClientEntry;
pub use crate::clients::DEFAULT_USER;
use crate::config::{Config, MAX_AUTH_DELAY, PasswordDigest, UserConfig};

/// The `user` label of failed AUTHs that named no configured user.
pub const UNKNOWN_USER: &str = "unknown";

/// One user clients may authenticate as.
pub struct User {
    pub name: Arc<str>,
    /// An off user cannot authenticate.
    pub enabled: bool,
    /// Any password is accepted.
    pub nopass: bool,
    password: Option<PasswordDigest>,
    pub acl: Acl,
    /// Nothing is ever refused to it: sessions skip the check.
    pub unrestricted: bool,
    /// Its rules in Redis's `ACL LIST` form, without passwords.
    pub described: String,
    failures: Counter,
    denied: [Counter; 3],
}

impl fmt::Debug for User {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("User")
            .field("name", &self.name)
            .field("enabled", &self.enabled)
            .finish_non_exhaustive()
    }
}

impl User {
    fn new(
        name: &str,
        enabled: bool,
        nopass: bool,
        password: Option<PasswordDigest>,
        acl: Acl,
        described: String,
    ) -> User {
        let label = name.to_owned();
        User {
            name: name.into(),
            enabled,
            nopass,
            password,
            unrestricted: acl.unrestricted(),
            acl,
            described,
            failures: metrics::counter!(crate::metrics::AUTH_FAILURES_TOTAL, "user" => label.clone()),
            denied: Reason::ALL.map(|r| {
                metrics::counter!(crate::metrics::ACL_DENIED_TOTAL, "user" => label.clone(), "reason" => r.label())
            }),
        }
    }

    fn from_config(u: &UserConfig) -> User {
        // Rules that do not compile were refused when the configuration was validated; if one
        // got here anyway, the user may do nothing rather than everything.
        let acl = Acl::compile(u.rules()).unwrap_or_else(|_| Acl::none());
        User::new(
            &u.name,
            u.enabled,
            u.nopass,
            u.password.as_ref().map(|p| p.digest),
            acl,
            acl::describe(u.rules()),
        )
    }

    /// Counts a command refused to this user.
    pub fn denied(&self, reason: Reason) {
        self.denied[reason as usize].increment(1);
    }

    /// Its `ACL LIST` line.
    pub fn acl_list_line(&self) -> String {
        let state = if self.enabled { "on" } else { "off" };
        let nopass = if self.nopass { " nopass" } else { "" };
        format!("user {} {state}{nopass} {}", self.name, self.described)
    }
}

/// User name -> client id -> client.
type ByUser = HashMap<Arc<str>, HashMap<u64, Weak<ClientEntry>>>;

/// Who is logged in as whom. A reload closes the sessions of the users it removes or disables
/// through it.
#[derive(Default)]
pub struct Logins {
    map: Mutex<ByUser>,
}

impl Logins {
    fn lock(&self) -> MutexGuard<'_, ByUser> {
        self.map.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn remove(&self, user: &str, client: u64) {
        let mut map = self.lock();
        if let Some(clients) = map.get_mut(user) {
            clients.remove(&client);
            if clients.is_empty() {
                map.remove(user);
            }
        }
    }

    /// Closes every session logged in as `user`; returns how many.
    fn kill(&self, user: &str) -> usize {
        let clients: Vec<Arc<ClientEntry>> = self
            .lock()
            .get(user)
            .map(|c| c.values().filter_map(Weak::upgrade).collect())
            .unwrap_or_default();
        for c in &clients {
            c.kill();
        }
        clients.len()
    }

    /// Sessions logged in as `user` (for tests and the admin API).
    pub fn count(&self, user: &str) -> usize {
        self.lock().get(user).map_or(0, |c| c.len())
    }
}

/// A session's login: the user, and its entry in [`Logins`] (removed on drop).
pub struct Login {
    pub user: Arc<User>,
    logins: Arc<Logins>,
    client: u64,
}

impl Drop for Login {
    fn drop(&mut self) {
        self.logins.remove(&self.user.name, self.client);
    }
}

/// The users of one configuration.
pub struct Auth {
    users: HashMap<Box<[u8]>, Arc<User>>,
    /// Clients must authenticate before anything else.
    required: bool,
    /// Any user or password is configured (else AUTH answers as Redis without a password).
    configured: bool,
    failure_delay: Duration,
    /// Consecutive failures that close a connection; 0: never.
    pub failure_limit: u32,
    logins: Arc<Logins>,
    unknown_failures: Counter,
    /// Compared against when the user is unknown, so that both cases take as long.
    dummy: PasswordDigest,
}

impl fmt::Debug for Auth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Auth")
            .field("users", &self.names())
            .field("required", &self.required)
            .finish_non_exhaustive()
    }
}

impl Default for Auth {
    fn default() -> Auth {
        Auth::open()
    }
}

impl Auth {
    /// No authentication: everyone is the default user, allowed everything.
    pub fn open() -> Auth {
        Auth::build(None, Arc::default(), Duration::ZERO, 0)
    }

    /// The users of `config`. `previous`: the users in force until now, whose registry of
    /// logins carries over (see [`Auth::revoke`]).
    pub fn new(config: &Config, previous: Option<&Auth>) -> Auth {
        let logins = previous.map_or_else(Arc::default, |a| a.logins.clone());
        Auth::build(
            Some(config),
            logins,
            config.server.auth_failure_delay,
            config.server.auth_failure_limit,
        )
    }

    fn build(
        config: Option<&Config>,
        logins: Arc<Logins>,
        failure_delay: Duration,
        failure_limit: u32,
    ) -> Auth {
        let mut users: HashMap<Box<[u8]>, Arc<User>> = HashMap::new();
        let configured = config.is_some_and(|c| c.auth_configured());
        if let Some(config) = config {
            for u in &config.users {
                users.insert(u.name.as_bytes().into(), Arc::new(User::from_config(u)));
            }
        }
        if !users.contains_key(DEFAULT_USER.as_bytes()) {
            // Redis's default user: every permission, and `[server] password` as its
            // password (requirepass); off when only [[users]] are configured.
            let password = config.and_then(|c| c.server.password.as_ref().map(|p| p.digest));
            let enabled = !config.is_some_and(|c| c.default_user_off());
            let default = User::new(
                DEFAULT_USER,
                enabled,
                password.is_none(),
                password,
                Acl::everything(),
                "~* &* +@all".to_string(),
            );
            users.insert(DEFAULT_USER.as_bytes().into(), Arc::new(default));
        }
        let required = users
            .get(DEFAULT_USER.as_bytes())
            .is_none_or(|d| !(d.enabled && d.nopass));
        Auth {
            users,
            required,
            configured,
            failure_delay,
            failure_limit,
            logins,
            unknown_failures: metrics::counter!(crate::metrics::AUTH_FAILURES_TOTAL, "user" => UNKNOWN_USER),
            dummy: PasswordDigest::of(b""),
        }
    }

    /// Whether a new client must authenticate before anything else.
    pub fn required(&self) -> bool {
        self.required
    }

    /// Whether any password or user is configured.
    pub fn configured(&self) -> bool {
        self.configured
    }

    /// The user named `name`.
    pub fn user(&self, name: &[u8]) -> Option<&Arc<User>> {
        self.users.get(name)
    }

    /// The default user when a client is it without authenticating (on and nopass).
    pub fn open_default(&self) -> Option<&Arc<User>> {
        self.user(DEFAULT_USER.as_bytes())
            .filter(|d| d.enabled && d.nopass)
    }

    /// The user names, sorted (ACL USERS).
    pub fn names(&self) -> Vec<Arc<str>> {
        let mut names: Vec<Arc<str>> = self.users.values().map(|u| u.name.clone()).collect();
        names.sort();
        names
    }

    /// The user `name` if `password` is its password (compared as SHA-256 digests in constant
    /// time) and it is on. A failure is counted under the user's name, or under
    /// [`UNKNOWN_USER`] for a name no user has, so clients cannot create label values.
    pub fn authenticate(&self, name: &[u8], password: &[u8]) -> Option<Arc<User>> {
        let digest = PasswordDigest::of(password);
        match self.users.get(name) {
            Some(user) => {
                let matches = user.password.as_ref().is_some_and(|p| p.matches(&digest));
                if user.enabled && (user.nopass || matches) {
                    return Some(user.clone());
                }
                user.failures.increment(1);
                None
            }
            None => {
                let _ = self.dummy.matches(&digest);
                self.unknown_failures.increment(1);
                None
            }
        }
    }

    /// How long the reply to the `n`th consecutive failed AUTH of a connection waits: the
    /// configured delay, doubled per failure after the first, at most [`MAX_AUTH_DELAY`].
    pub fn failure_delay(&self, n: u32) -> Duration {
        let doublings = n.saturating_sub(1).min(16);
        self.failure_delay
            .saturating_mul(1 << doublings)
            .min(MAX_AUTH_DELAY)
    }

    /// Records that `client` is logged in as `user`.
    pub fn login(&self, user: Arc<User>, client: &Arc<ClientEntry>) -> Login {
        self.logins
            .lock()
            .entry(user.name.clone())
            .or_default()
            .insert(client.id, Arc::downgrade(client));
        client.set_user(user.name.clone());
        Login {
            user,
            logins: self.logins.clone(),
            client: client.id,
        }
    }

    /// Moves `login` to `user` of this configuration (the same name, after a reload).
    pub fn relogin(&self, login: &mut Login, user: Arc<User>, client: &Arc<ClientEntry>) {
        if Arc::ptr_eq(&login.logins, &self.logins) {
            login.user = user;
        } else {
            *login = self.login(user, client);
        }
    }

    /// Before `next` replaces these users: closes the sessions of every user that `next`
    /// removes or disables, or whose channels it changes (a subscriber could keep receiving
    /// what it may no longer subscribe to). Sessions of other users take `next`'s rules with
    /// their next command; a changed password does not close them, as in Redis.
    pub fn revoke(&self, next: &Auth) {
        for (name, old) in &self.users {
            let why = match next.users.get(name) {
                None => "removed",
                Some(new) if !new.enabled => "disabled",
                Some(new) if new.acl.channels() != old.acl.channels() => "given other channels",
                Some(_) => continue,
            };
            let closed = self.logins.kill(&old.name);
            if closed > 0 {
                info!(
                    user = %old.name,
                    "user {why} by the new configuration: {closed} session(s) logged in as it closed"
                );
            }
        }
    }

    /// Sessions logged in as `user`.
    pub fn sessions(&self, user: &str) -> usize {
        self.logins.count(user)
    }
}

#[cfg(test)]
mod tests;
