//! The validated configuration as JSON, for the admin API: the keys and units of the TOML file
//! (`timeout_ms`, `hash_tag`), defaults spelled out, secrets masked.

use serde_json::{Map, Value, json};

use super::{Config, PoolConfig};

/// What a masked secret reads as.
pub const MASK: &str = "***";

impl Config {
    /// The resolved settings as JSON, shaped like the TOML file (one object per table, the
    /// same key names and units), plus `digest`. Values whose key names a secret are masked
    /// (see [`mask_secrets`]).
    pub fn to_json(&self) -> Value {
        let s = &self.server;
        let pools: Vec<Value> = self.pools.iter().map(pool_json).collect();
        let (routing, routes) = super::routes::to_json(&self.routing, &self.pools);
        let users: Vec<Value> = self
            .users
            .iter()
            .map(|u| {
                let mut user = json!({
                    "name": u.name,
                    "enabled": u.enabled,
                    "nopass": u.nopass,
                    "commands": u.commands,
                    "keys": u.keys,
                    "read_keys": u.read_keys,
                    "write_keys": u.write_keys,
                    "channels": u.channels,
                });
                credentials(&mut user, None, u.password.is_some());
                user
            })
            .collect();
        let mut out = json!({
            "server": {
                "listen": s.listen.to_string(),
                "max_clients": s.max_clients,
                "max_pipeline": s.max_pipeline,
                "max_request_bytes": s.max_request_bytes,
                "shutdown_grace_ms": ms(s.shutdown_grace),
                "slowlog_ms": s.slowlog.map_or(0, ms),
                "threads": s.threads.map_or(0, |t| t.get()),
                "allow_commands": s.allow_commands,
                "max_subscriber_output_bytes": s.max_subscriber_output_bytes,
                "max_keys_reply": s.max_keys_reply,
                "max_inline_bytes": s.max_inline_bytes,
                "max_multibulk_length": s.max_multibulk_length,
                "client_idle_timeout_ms": s.client_idle_timeout.map_or(0, ms),
                "client_output_limit_bytes": s.client_output_limit_bytes.unwrap_or(0),
                "client_read_ahead_bytes": s.client_read_ahead_bytes,
                "client_memory_limit_bytes": s.client_memory_limit_bytes.unwrap_or(0),
                "max_client_memory": s.max_client_memory.unwrap_or(0),
                "auth_failure_delay_ms": ms(s.auth_failure_delay),
                "auth_failure_limit": s.auth_failure_limit,
                "cross_shard": match s.scripts.cross_shard {
                    super::CrossShard::Run => "run",
                    super::CrossShard::Refuse => "refuse",
                },
                "script_timeout_ms": ms(s.scripts.script_timeout),
                "lock_ttl_ms": ms(s.scripts.lock_ttl),
            },
            "admin": {
                "listen": self.admin.listen.to_string(),
                "allow_mutations": self.admin.allow_mutations,
            },
            "pools": pools,
            "routing": routing,
            "routes": routes,
            "faults": super::faults::to_json(&self.faults, &self.pools),
            "users": users,
            "digest": self.digest,
        });
        if let Some(server) = out["server"].as_object_mut() {
            if let Some(plain) = s.plain_listen {
                server.insert("plain_listen".into(), plain.to_string().into());
            }
            if let Some(tls) = server_tls_json(s) {
                server.insert("tls".into(), tls);
            }
        }
        credentials(&mut out["server"], None, s.password.is_some());
        mask_secrets(&mut out);
        out
    }
}

/// A duration in whole milliseconds, as the file gives it.
fn ms(d: std::time::Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

fn path(p: &std::path::Path) -> Value {
    Value::String(p.display().to_string())
}

/// `[server.tls]`: paths only, the files' contents (the private key above all) are never
/// shown. Keys that are not set are left out (as in the file), so the JSON reads back as TOML.
fn server_tls_json(s: &super::ServerConfig) -> Option<Value> {
    let f = &s.tls.as_ref()?.files;
    let mut tls = Map::new();
    tls.insert("cert".into(), path(&f.cert));
    tls.insert("key".into(), path(&f.key));
    if let Some(ca) = &f.client_ca {
        tls.insert("client_ca".into(), path(ca));
        tls.insert("client_auth".into(), f.client_auth.name().into());
    }
    tls.insert(
        "handshake_timeout_ms".into(),
        ms(f.handshake_timeout).into(),
    );
    Some(Value::Object(tls))
}

/// One `[[pools]]` table.
fn pool_json(p: &PoolConfig) -> Value {
    if let Some(c) = &p.cluster {
        // A cluster pool has no ring: the keys a file of its kind has.
        let seeds: Vec<String> = c.seeds.iter().map(ToString::to_string).collect();
        let mut pool = json!({
            "name": p.name,
            "kind": "cluster",
            "seeds": seeds,
            "read_from": c.read_from.name(),
            "refresh_interval_ms": ms(c.refresh_interval),
            "timeout_ms": ms(p.timeout),
            "connect_timeout_ms": ms(p.connect_timeout),
            "connections_per_backend": p.connections_per_backend.get(),
            "max_exclusive_per_backend": p.max_exclusive,
        });
        credentials(&mut pool, p.username.as_deref(), p.password.is_some());
        super::keys::to_json(&mut pool, &p.keys);
        if let Some(map) = pool.as_object_mut() {
            super::sentinel::to_json(map, None, &p.hold);
        }
        return pool;
    }
    let backends: Vec<Value> = p
        .backends
        .iter()
        .map(|b| {
            let mut backend = match &b.sentinel_master {
                Some(master) => json!({
                    "name": b.name,
                    "sentinel_master": master,
                    "weight": b.weight.get(),
                }),
                None => json!({
                    "name": b.name,
                    "address": b.address.to_string(),
                    "weight": b.weight.get(),
                }),
            };
            credentials(&mut backend, b.username.as_deref(), b.password.is_some());
            backend
        })
        .collect();
    let mut pool = json!({
        "name": p.name,
        "distribution": p.distribution.to_string(),
        "hash": p.hash.to_string(),
        "hash_tag": p.hash_tag.map(|t| t.to_string()),
        "timeout_ms": ms(p.timeout),
        "connect_timeout_ms": ms(p.connect_timeout),
        "connections_per_backend": p.connections_per_backend.get(),
        "max_exclusive_per_backend": p.max_exclusive,
        "tls": p.tls.is_some(),
        "db": p.db,
        "backends": backends,
    });
    if let (Some(t), Some(pool)) = (&p.tls, pool.as_object_mut()) {
        let f = &t.files;
        for (key, file) in [
            ("tls_ca", &f.ca),
            ("tls_cert", &f.cert),
            ("tls_key", &f.key),
        ] {
            if let Some(file) = file {
                pool.insert(key.into(), path(file));
            }
        }
        if let Some(name) = &f.server_name {
            pool.insert("tls_server_name".into(), name.clone().into());
        }
        if f.insecure_skip_verify {
            pool.insert("tls_insecure_skip_verify".into(), true.into());
        }
    }
    credentials(&mut pool, p.username.as_deref(), p.password.is_some());
    super::keys::to_json(&mut pool, &p.keys);
    if let Some(map) = pool.as_object_mut() {
        super::sentinel::to_json(map, p.sentinel.as_ref(), &p.hold);
    }
    pool
}

/// Adds `username` and `password` to `table` when set (the password as [`MASK`] by
/// [`mask_secrets`]; where it comes from is not shown either). Unset ones are left out, so the
/// document reads back as TOML, which has no null.
fn credentials(table: &mut Value, username: Option<&str>, password: bool) {
    if let Some(map) = table.as_object_mut() {
        if let Some(user) = username {
            map.insert("username".into(), Value::String(user.to_owned()));
        }
        if password {
            map.insert("password".into(), Value::String(MASK.to_owned()));
        }
    }
}

/// Replaces, at any depth, the value of every object key whose name contains `password` or
/// `secret` (any case) with [`MASK`]. A `null` stays `null`: that no secret is set is not a
/// secret. Applied to every configuration the admin API shows, so a secret setting added later
/// is masked without anyone remembering to.
pub fn mask_secrets(value: &mut Value) {
    match value {
        Value::Object(map) => mask_object(map),
        Value::Array(items) => items.iter_mut().for_each(mask_secrets),
        _ => {}
    }
}

fn mask_object(map: &mut Map<String, Value>) {
    for (key, value) in map.iter_mut() {
        let key = key.to_ascii_lowercase();
        if (key.contains("password") || key.contains("secret")) && !value.is_null() {
            *value = Value::String(MASK.to_owned());
        } else {
            mask_secrets(value);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_secret_keys_at_any_depth() {
        let mut v = json!({
            "password": "hunter2",
            "pools": [{ "backends": [{ "name": "s1", "AUTH_PASSWORD": 7, "tls": { "client_secret_file": ["x"] } }] }],
            "secret": null,
            "secretary": { "nested": "also masked: the key names a secret" },
            "name": "password",
        });
        mask_secrets(&mut v);
        assert_eq!(
            v,
            json!({
                "password": MASK,
                "pools": [{ "backends": [{ "name": "s1", "AUTH_PASSWORD": MASK, "tls": { "client_secret_file": MASK } }] }],
                "secret": null,
                "secretary": MASK,
                "name": "password",
            })
        );
    }
}
