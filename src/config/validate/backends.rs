//! A pool's `backends`: each one's name (its placement identity), address, weight and
//! credentials.

use std::collections::HashMap;
use std::num::NonZeroU32;

use super::super::raw::RawBackend;
use super::super::secret::{self, Sources};
use super::super::{Address, BackendConfig, limits};
use super::Problems;
use crate::router::{DistributionKind, ketama};

/// A backend username: sent as a RESP argument, so any bytes would do, but a name with spaces
/// or control characters is a mistake in the file.
pub(in crate::config) fn username(
    p: &mut Problems,
    key: &str,
    raw: Option<String>,
) -> Option<String> {
    let name = raw?;
    if name.is_empty() || name.chars().any(|c| c.is_whitespace() || c.is_control()) {
        p.add(key, "must be a non-empty name without spaces");
        return None;
    }
    Some(name)
}

/// A pool's `backends`: names and addresses unique, weights in range, credentials, and for
/// ketama names short enough for twemproxy's point keys.
pub(super) fn backends(
    p: &mut Problems,
    pool_key: &str,
    raw: Option<Vec<RawBackend>>,
    distribution: DistributionKind,
) -> Vec<BackendConfig> {
    let raw = raw.unwrap_or_default();
    if raw.is_empty() {
        p.add(
            format_args!("{pool_key}.backends"),
            "at least one backend is required",
        );
    }
    if raw.len() > limits::MAX_BACKENDS {
        p.add(
            format_args!("{pool_key}.backends"),
            format_args!(
                "{} backends; at most {} are supported",
                raw.len(),
                limits::MAX_BACKENDS
            ),
        );
    }
    let mut names: HashMap<String, String> = HashMap::new();
    let mut addresses: HashMap<(String, u16), String> = HashMap::new();
    let mut out = Vec::with_capacity(raw.len());
    let mut masters: HashMap<String, String> = HashMap::new();
    for (i, b) in raw.into_iter().enumerate() {
        let key = format!("{pool_key}.backends[{i}]");
        if let Some(master) = &b.sentinel_master {
            if b.address.is_some() {
                p.add(
                    format_args!("{key}.address"),
                    "a backend with sentinel_master has no fixed address: the sentinels name its primary",
                );
            }
            super::super::sentinel::master_name(p, &key, master);
            if let Some(first) = masters.insert(master.clone(), key.clone()) {
                p.add(
                    format_args!("{key}.sentinel_master"),
                    format_args!("{master:?} is already the master of {first}"),
                );
            }
        }
        let sentinel_master = b.sentinel_master;
        let address_text = match &sentinel_master {
            // Its name defaults to the master's; its address comes from the sentinels.
            Some(master) => {
                let name = b.name.unwrap_or_else(|| master.clone());
                check_name(p, &key, &name, &mut names);
                let weight = p.int(&format!("{key}.weight"), b.weight, 1, 1, limits::MAX_WEIGHT);
                out.push(BackendConfig {
                    name,
                    address: Address {
                        host: String::new(),
                        port: 0,
                    },
                    weight: NonZeroU32::new(weight as u32).unwrap_or(NonZeroU32::MIN),
                    username: username(p, &format!("{key}.username"), b.username),
                    password: secret::backend_password(
                        p,
                        &format!("{key}.password"),
                        Sources {
                            inline: b.password,
                            env: b.password_env,
                            file: b.password_file,
                            ..Sources::default()
                        },
                    ),
                    sentinel_master,
                });
                continue;
            }
            None => b.address.unwrap_or_default(),
        };
        let address = match address_text.parse::<Address>() {
            Ok(a) => a,
            Err(_) if address_text.is_empty() => {
                p.add(
                    format_args!("{key}.address"),
                    "is required (like \"10.0.0.1:6379\")",
                );
                Address {
                    host: String::new(),
                    port: 0,
                }
            }
            Err(e) => {
                p.add(
                    format_args!("{key}.address"),
                    format_args!("{address_text:?}: {e}"),
                );
                Address {
                    host: String::new(),
                    port: 0,
                }
            }
        };
        if address.port != 0
            && let Some(first) = addresses.insert(address.normalized(), key.clone())
        {
            p.add(
                format_args!("{key}.address"),
                format_args!("{address} is already used by {first}"),
            );
        }
        // twemproxy's default name is the address as written, and so is ours.
        let name = b.name.unwrap_or_else(|| address_text.clone());
        check_name(p, &key, &name, &mut names);
        let weight = p.int(&format!("{key}.weight"), b.weight, 1, 1, limits::MAX_WEIGHT);
        let username = username(p, &format!("{key}.username"), b.username);
        let password = secret::backend_password(
            p,
            &format!("{key}.password"),
            Sources {
                inline: b.password,
                env: b.password_env,
                file: b.password_file,
                ..Sources::default()
            },
        );
        out.push(BackendConfig {
            name,
            address,
            weight: NonZeroU32::new(weight as u32).unwrap_or(NonZeroU32::MIN),
            username,
            password,
            sentinel_master: None,
        });
    }
    if distribution == DistributionKind::Ketama {
        check_ketama_point_keys(p, pool_key, &out);
    }
    out
}

/// A backend's name: its placement identity, so unique, short enough for twemproxy's ketama
/// and free of spaces. `names`: those seen so far, with the key that named each.
fn check_name(p: &mut Problems, key: &str, name: &str, names: &mut HashMap<String, String>) {
    if name.is_empty() {
        p.add(format_args!("{key}.name"), "must not be empty");
    } else if name.len() > limits::MAX_BACKEND_NAME {
        p.add(
            format_args!("{key}.name"),
            format_args!(
                "is {} bytes; at most {} are allowed (twemproxy truncates longer ketama names)",
                name.len(),
                limits::MAX_BACKEND_NAME
            ),
        );
    } else if name.chars().any(|c| c.is_whitespace() || c.is_control()) {
        p.add(
            format_args!("{key}.name"),
            format_args!("{name:?} must not contain whitespace or control characters"),
        );
    } else if let Some(first) = names.insert(name.to_string(), key.to_string()) {
        p.add(
            format_args!("{key}.name"),
            format_args!("{name:?} is already used by {first}"),
        );
    }
}

/// twemproxy formats each ketama point as `"{name}-{j}"` into an 86-byte buffer; a longer
/// string would be truncated there and hashed differently from ours.
fn check_ketama_point_keys(p: &mut Problems, pool_key: &str, backends: &[BackendConfig]) {
    let total = backends
        .iter()
        .fold(0u32, |acc, b| acc.saturating_add(b.weight.get()));
    for (i, b) in backends.iter().enumerate() {
        if b.name.len() > limits::MAX_BACKEND_NAME {
            continue; // already reported
        }
        let points = ketama::points_for(b.weight.get(), total, backends.len());
        let Some(last) = (points / 4).checked_sub(1) else {
            continue;
        };
        let longest = b.name.len() + 1 + last.to_string().len();
        if longest > ketama::MAX_POINT_KEY_LEN {
            p.add(
                format_args!("{pool_key}.backends[{i}].name"),
                format_args!(
                    "is too long for its share of ketama points: \"{}-{last}\" exceeds {} bytes",
                    b.name,
                    ketama::MAX_POINT_KEY_LEN
                ),
            );
        }
    }
}
