//! `[[users]]` -> [`UserConfig`]: names, passwords and ACL rules, each rule compiled here so
//! that a typo is reported by its key (`users[1].commands[2]: unknown category "@raed"`)
//! instead of failing at runtime.

use std::collections::HashMap;

use super::raw::RawUser;
use super::secret::{self, Sources};
use super::validate::Problems;
use super::{UserConfig, limits};
use crate::acl::Acl;

/// Validates every `[[users]]` entry. `server_password`: `[server] password` is set, which
/// configures the default user too, so a `default` entry would say it twice.
pub(super) fn users(p: &mut Problems, raw: Vec<RawUser>, server_password: bool) -> Vec<UserConfig> {
    let mut seen: HashMap<String, usize> = HashMap::new();
    let mut out = Vec::with_capacity(raw.len());
    for (i, u) in raw.into_iter().enumerate() {
        let key = format!("users[{i}]");
        let name = u.name.unwrap_or_default();
        if name.is_empty() {
            p.add(format_args!("{key}.name"), "is required");
        } else if name.len() > limits::MAX_USER_NAME
            || name.chars().any(|c| c.is_whitespace() || c.is_control())
        {
            p.add(
                format_args!("{key}.name"),
                format_args!(
                    "{name:?} must be at most {} bytes, without spaces or control characters",
                    limits::MAX_USER_NAME
                ),
            );
        } else if let Some(first) = seen.insert(name.clone(), i) {
            p.add(
                format_args!("{key}.name"),
                format_args!("{name:?} is already defined by users[{first}]"),
            );
        }
        if name == "default" && server_password {
            p.add(
                format_args!("{key}.name"),
                "the default user is configured by [server] password already: set its \
                 password in one place",
            );
        }
        let enabled = u.enabled.unwrap_or(true);
        let nopass = u.nopass.unwrap_or(false);
        let password = secret::client_password(
            p,
            &format!("{key}.password"),
            Sources {
                inline: u.password,
                sha256: u.password_sha256,
                env: u.password_env,
                file: u.password_file,
            },
        );
        if nopass && password.is_some() {
            p.add(
                format_args!("{key}.nopass"),
                "a user with nopass = true accepts any password: remove its password",
            );
        }
        let user = UserConfig {
            name,
            enabled,
            nopass,
            password,
            commands: u.commands.unwrap_or_default(),
            keys: u.keys.unwrap_or_default(),
            read_keys: u.read_keys.unwrap_or_default(),
            write_keys: u.write_keys.unwrap_or_default(),
            channels: u.channels.unwrap_or_default(),
        };
        let has_password_source = user.password.is_some()
            || p.0.iter().any(|l| {
                // A password given but unreadable is already reported.
                l.starts_with(&format!("{key}.password"))
            });
        if enabled && !nopass && !has_password_source {
            p.add(
                key.as_str(),
                "needs a password (password, password_sha256, password_env or password_file), \
                 or nopass = true",
            );
        }
        if let Err(errors) = Acl::compile(user.rules()) {
            for e in errors {
                p.add(format_args!("{key}.{}[{}]", e.field, e.index), e.message);
            }
        }
        out.push(user);
    }
    out
}
