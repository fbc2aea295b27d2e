//! The canonical text of a configuration: what `shardis check` prints, and what its digest is
//! computed from (so equal settings have equal digests, whatever the file's comments or order).

use std::fmt::Write as _;

use md5::{Digest, Md5};

use super::{Config, PoolConfig, SecretSource, UserConfig, cluster, tls};

impl Config {
    /// Human-readable resolved settings, defaults included, ending with the digest line.
    pub fn describe(&self) -> String {
        let mut out = self.canonical();
        let _ = writeln!(out, "digest: {}", self.digest);
        out
    }

    fn canonical(&self) -> String {
        let mut out = String::new();
        self.describe_server(&mut out);
        // Writing to a String cannot fail.
        let _ = writeln!(out, "[admin]");
        let _ = writeln!(out, "  listen                   {}", self.admin.listen);
        let _ = writeln!(
            out,
            "  allow_mutations          {}",
            self.admin.allow_mutations
        );
        for p in &self.pools {
            describe_pool(&mut out, p);
        }
        super::routes::describe(&mut out, &self.routing, &self.pools);
        super::faults::describe(&mut out, &self.faults, &self.pools);
        for u in &self.users {
            describe_user(&mut out, u);
        }
        out
    }

    /// The `[server]` part of [`Config::describe`].
    fn describe_server(&self, out: &mut String) {
        let s = &self.server;
        let _ = writeln!(out, "[server]");
        let _ = writeln!(out, "  listen                   {}", s.listen);
        let plain = s.plain_listen.map_or("none".to_string(), |a| a.to_string());
        let _ = writeln!(out, "  plain_listen             {plain}");
        tls::describe_server(out, s.tls.as_ref());
        let _ = writeln!(out, "  max_clients              {}", s.max_clients);
        let _ = writeln!(out, "  max_pipeline             {}", s.max_pipeline);
        let _ = writeln!(out, "  max_request_bytes        {}", s.max_request_bytes);
        let _ = writeln!(
            out,
            "  shutdown_grace           {} ms",
            s.shutdown_grace.as_millis()
        );
        let slowlog = s
            .slowlog
            .map_or("off".to_string(), |d| format!("{} ms", d.as_millis()));
        let _ = writeln!(out, "  slowlog                  {slowlog}");
        let threads = s
            .threads
            .map_or("one per two cores".to_string(), |t| t.to_string());
        let _ = writeln!(out, "  threads                  {threads}");
        let allowed = if s.allow_commands.is_empty() {
            "none".to_string()
        } else {
            s.allow_commands.join(" ")
        };
        let _ = writeln!(out, "  allow_commands           {allowed}");
        let _ = writeln!(
            out,
            "  max_subscriber_output    {}",
            s.max_subscriber_output_bytes
        );
        let _ = writeln!(out, "  max_keys_reply           {}", s.max_keys_reply);
        let _ = writeln!(out, "  max_inline_bytes         {}", s.max_inline_bytes);
        let _ = writeln!(out, "  max_multibulk_length     {}", s.max_multibulk_length);
        let idle = s
            .client_idle_timeout
            .map_or("off".to_string(), |d| format!("{} ms", d.as_millis()));
        let _ = writeln!(out, "  client_idle_timeout      {idle}");
        let output = s
            .client_output_limit_bytes
            .map_or("off".to_string(), |n| n.to_string());
        let _ = writeln!(out, "  client_output_limit      {output}");
        super::memory::describe(out, s);
        let password = shown(s.password.as_ref().map(|p| &p.source));
        let _ = writeln!(out, "  password                 {password}");
        if self.default_user_off() {
            let _ = writeln!(
                out,
                "  default user             off: clients must AUTH as one of [[users]]"
            );
        }
        let _ = writeln!(
            out,
            "  auth_failure_delay       {} ms",
            s.auth_failure_delay.as_millis()
        );
        let _ = writeln!(out, "  auth_failure_limit       {}", s.auth_failure_limit);
        let cross = match s.scripts.cross_shard {
            super::CrossShard::Run => "run",
            super::CrossShard::Refuse => "refuse",
        };
        let _ = writeln!(out, "  cross_shard              {cross}");
        let _ = writeln!(
            out,
            "  script_timeout           {} ms",
            s.scripts.script_timeout.as_millis()
        );
        let _ = writeln!(
            out,
            "  lock_ttl                 {} ms",
            s.scripts.lock_ttl.as_millis()
        );
    }

    pub(super) fn compute_digest(&self) -> String {
        let digest: [u8; 16] = Md5::digest(self.canonical().as_bytes()).into();
        digest.iter().fold(String::with_capacity(32), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
    }
}

/// One pool's part of [`Config::describe`].
fn describe_pool(out: &mut String, p: &PoolConfig) {
    let _ = writeln!(out, "[pool {}]", p.name);
    if let Some(c) = &p.cluster {
        cluster::describe(out, c);
    } else {
        let _ = writeln!(out, "  distribution             {}", p.distribution);
        let _ = writeln!(out, "  hash                     {}", p.hash);
        let tag = p
            .hash_tag
            .map_or("none".to_string(), |t| format!("\"{t}\""));
        let _ = writeln!(out, "  hash_tag                 {tag}");
    }
    let _ = writeln!(
        out,
        "  timeout                  {} ms",
        p.timeout.as_millis()
    );
    let _ = writeln!(
        out,
        "  connect_timeout          {} ms",
        p.connect_timeout.as_millis()
    );
    let _ = writeln!(
        out,
        "  connections_per_backend  {}",
        p.connections_per_backend
    );
    let _ = writeln!(out, "  max_exclusive_per_backend {}", p.max_exclusive);
    tls::describe_pool(out, p.tls.as_ref());
    let _ = writeln!(
        out,
        "  username                 {}",
        p.username.as_deref().unwrap_or("none")
    );
    let password = shown(p.password.as_ref().map(|p| &p.source));
    let _ = writeln!(out, "  password                 {password}");
    let _ = writeln!(out, "  db                       {}", p.db);
    super::keys::describe(out, &p.keys);
    super::sentinel::describe(out, p.sentinel.as_ref(), &p.hold);
    if p.cluster.is_some() {
        return;
    }
    let _ = writeln!(out, "  backends                 {}", p.backends.len());
    for b in &p.backends {
        let place = match &b.sentinel_master {
            Some(master) => format!("sentinel:{master}"),
            None => b.address.to_string(),
        };
        let _ = write!(out, "    {:<20} {:<24} weight {}", b.name, place, b.weight);
        if let Some(user) = &b.username {
            let _ = write!(out, " username {user}");
        }
        if let Some(password) = &b.password {
            let _ = write!(out, " password {}", shown(Some(&password.source)));
        }
        out.push('\n');
    }
}

/// One user's part of [`Config::describe`].
fn describe_user(out: &mut String, u: &UserConfig) {
    let _ = writeln!(out, "[user {}]", u.name);
    let _ = writeln!(out, "  enabled                  {}", u.enabled);
    let password = if u.nopass {
        "nopass (any password)".to_string()
    } else {
        shown(u.password.as_ref().map(|p| &p.source))
    };
    let _ = writeln!(out, "  password                 {password}");
    for (name, list) in [
        ("commands", &u.commands),
        ("keys", &u.keys),
        ("read_keys", &u.read_keys),
        ("write_keys", &u.write_keys),
        ("channels", &u.channels),
    ] {
        let text = if list.is_empty() {
            "none".to_string()
        } else {
            list.join(" ")
        };
        let _ = writeln!(out, "  {name:<24} {text}");
    }
}

/// How a secret is shown: where it comes from, never what it is.
pub(super) fn shown(source: Option<&SecretSource>) -> String {
    source.map_or("none".to_string(), |s| format!("set ({s})"))
}
