//! Compiling a user's configured rules into an [`Acl`]: command rules applied in order, key
//! and channel patterns checked, every rule that does not compile reported.

use super::{Acl, KeyPattern, Matcher, RuleError, Rules};
use crate::protocol::command::{COMMANDS, Kind, access, acl, lookup};

impl Acl {
    /// Compiles `rules`, or returns every rule that does not compile.
    pub fn compile(rules: Rules<'_>) -> Result<Acl, Vec<RuleError>> {
        let mut acl = Acl::none();
        let mut errors = Vec::new();
        for (index, rule) in rules.commands.iter().enumerate() {
            if let Err(message) = acl.apply(rule) {
                errors.push(RuleError {
                    field: "commands",
                    index,
                    message,
                });
            }
        }
        for (field, list, allows) in [
            ("keys", rules.keys, access::READ | access::WRITE),
            ("read_keys", rules.read_keys, access::READ),
            ("write_keys", rules.write_keys, access::WRITE),
        ] {
            for (index, pattern) in list.iter().enumerate() {
                if let Err(message) = check_pattern(pattern, '~') {
                    errors.push(RuleError {
                        field,
                        index,
                        message,
                    });
                    continue;
                }
                if field == "keys" && pattern == "*" {
                    acl.all_keys = true;
                }
                acl.keys.push(KeyPattern {
                    matcher: Matcher::new(pattern.as_bytes()),
                    allows,
                });
            }
        }
        acl.full_read = acl.all_keys
            || acl
                .keys
                .iter()
                .any(|k| k.allows & access::READ != 0 && k.matcher.matches(b"*"));
        for (index, pattern) in rules.channels.iter().enumerate() {
            if let Err(message) = check_pattern(pattern, '&') {
                errors.push(RuleError {
                    field: "channels",
                    index,
                    message,
                });
                continue;
            }
            if pattern == "*" {
                acl.channels.all = true;
            }
            acl.channels.patterns.push(pattern.as_bytes().into());
        }
        acl.all_commands = (0..COMMANDS.len()).all(|id| acl.may_run(id));
        if errors.is_empty() {
            Ok(acl)
        } else {
            Err(errors)
        }
    }

    /// Applies one command rule.
    fn apply(&mut self, rule: &str) -> Result<(), String> {
        let lower = rule.to_ascii_lowercase();
        match lower.as_str() {
            "allcommands" | "+@all" => {
                self.set_all(true);
                return Ok(());
            }
            "nocommands" | "-@all" => {
                self.set_all(false);
                return Ok(());
            }
            _ => {}
        }
        let (allow, what) = match lower.split_at_checked(1) {
            Some(("+", what)) => (true, what),
            Some(("-", what)) => (false, what),
            _ => {
                return Err(format!(
                    "{rule:?} must start with + or - (like \"+@read\", \"-flushall\", \"+config|get\")"
                ));
            }
        };
        if let Some(category) = what.strip_prefix('@') {
            let Some(bit) = acl::NAMES.iter().position(|n| *n == category) else {
                return Err(format!(
                    "unknown category {category:?}; known: {}",
                    acl::NAMES.join(", ")
                ));
            };
            for (id, cmd) in COMMANDS.iter().enumerate() {
                if cmd.acl & (1 << bit) != 0 {
                    self.set(id, allow);
                }
            }
            return Ok(());
        }
        match lookup(what.as_bytes()) {
            Some((id, cmd)) => {
                self.set(id, allow);
                if cmd.kind == Kind::Container {
                    // The parent stands for all its subcommands, as in Redis.
                    let prefix = format!("{}|", cmd.name);
                    for (sub, c) in COMMANDS.iter().enumerate() {
                        if c.name.starts_with(&prefix) {
                            self.set(sub, allow);
                        }
                    }
                }
                Ok(())
            }
            None => match what.split_once('|') {
                Some((parent, _))
                    if lookup(parent.as_bytes())
                        .is_some_and(|(_, c)| c.kind != Kind::Container) =>
                {
                    Err(format!(
                        "{rule:?}: rules on a command's first argument are not supported; \
                         allow or deny the whole command"
                    ))
                }
                _ => Err(format!("unknown command {what:?}")),
            },
        }
    }

    pub(super) fn set_all(&mut self, allow: bool) {
        for id in 0..COMMANDS.len() {
            self.set(id, allow);
        }
    }

    pub(super) fn set(&mut self, id: usize, allow: bool) {
        let (word, bit) = (id / 64, id % 64);
        if allow {
            self.commands[word] |= 1 << bit;
        } else {
            self.commands[word] &= !(1 << bit);
        }
    }
}

/// A key or channel pattern as configured: not empty, and not in Redis's rule syntax (the
/// `~`, `%R~` or `&` prefix is the list it is in here).
fn check_pattern(pattern: &str, prefix: char) -> Result<(), String> {
    if pattern.is_empty() {
        return Err("an empty pattern matches nothing".to_string());
    }
    let redis_syntax = pattern.starts_with(prefix)
        || (prefix == '~' && (pattern.starts_with("%R~") || pattern.starts_with("%W~")));
    if redis_syntax {
        return Err(format!(
            "{pattern:?}: write the pattern without Redis's {prefix:?} prefix (the list it is \
             in says what it allows; escape a leading {prefix:?} as \"\\\\{prefix}\")"
        ));
    }
    Ok(())
}

/// Renders rules in Redis's ACL LIST form, without passwords: `~app1:* %R~r:* &news.* -@all
/// +@read`.
pub fn describe(rules: Rules<'_>) -> String {
    let mut out = Vec::new();
    for k in rules.keys {
        out.push(format!("~{k}"));
    }
    for k in rules.read_keys {
        out.push(format!("%R~{k}"));
    }
    for k in rules.write_keys {
        out.push(format!("%W~{k}"));
    }
    out.push("resetchannels".to_string());
    for c in rules.channels {
        out.push(format!("&{c}"));
    }
    out.push("-@all".to_string());
    out.extend(rules.commands.iter().cloned());
    out.join(" ")
}
