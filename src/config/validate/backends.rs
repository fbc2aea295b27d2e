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
    let mut seen = Seen::default();
    let out: Vec<BackendConfig> = raw
        .into_iter()
        .enumerate()
        .map(|(i, b)| backend(p, &format!("{pool_key}.backends[{i}]"), b, &mut seen))
        .collect();
    if distribution == DistributionKind::Ketama {
        check_ketama_point_keys(p, pool_key, &out);
    }
    out
}

/// What the backends of one pool so far have taken: names, addresses and sentinel masters, each
/// with the key that took it.
#[derive(Default)]
struct Seen {
    names: HashMap<String, String>,
    addresses: HashMap<(String, u16), String>,
    masters: HashMap<String, String>,
}

/// One backend at `key`: by its sentinel master or by its address.
fn backend(p: &mut Problems, key: &str, b: RawBackend, seen: &mut Seen) -> BackendConfig {
    let weight = p.int(&format!("{key}.weight"), b.weight, 1, 1, limits::MAX_WEIGHT);
    let weight = NonZeroU32::new(weight as u32).unwrap_or(NonZeroU32::MIN);
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
    let unset = || Address {
        host: String::new(),
        port: 0,
    };
    if let Some(master) = b.sentinel_master {
        if b.address.is_some() {
            p.add(
                format_args!("{key}.address"),
                "a backend with sentinel_master has no fixed address: the sentinels name its primary",
            );
        }
        super::super::sentinel::master_name(p, key, &master);
        if let Some(first) = seen.masters.insert(master.clone(), key.to_string()) {
            p.add(
                format_args!("{key}.sentinel_master"),
                format_args!("{master:?} is already the master of {first}"),
            );
        }
        // Its name defaults to the master's; its address comes from the sentinels.
        let name = b.name.unwrap_or_else(|| master.clone());
        check_name(p, key, &name, &mut seen.names);
        return BackendConfig {
            name,
            address: unset(),
            weight,
            username,
            password,
            sentinel_master: Some(master),
        };
    }
    let address_text = b.address.unwrap_or_default();
    let address = match address_text.parse::<Address>() {
        Ok(a) => a,
        Err(_) if address_text.is_empty() => {
            p.add(
                format_args!("{key}.address"),
                "is required (like \"10.0.0.1:6379\")",
            );
            unset()
        }
        Err(e) => {
            p.add(
                format_args!("{key}.address"),
                format_args!("{address_text:?}: {e}"),
            );
            unset()
        }
    };
    if address.port != 0
        && let Some(first) = seen.addresses.insert(address.normalized(), key.to_string())
    {
        p.add(
            format_args!("{key}.address"),
            format_args!("{address} is already used by {first}"),
        );
    }
    // twemproxy's default name is the address as written, and so is ours.
    let name = b.name.unwrap_or(address_text);
    check_name(p, key, &name, &mut seen.names);
    BackendConfig {
        name,
        address,
        weight,
        username,
        password,
        sentinel_master: None,
    }
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
