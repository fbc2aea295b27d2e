//! Validation of the TLS keys: `[server.tls]` and a pool's `tls` / `tls_*` keys. The files are
//! read here (and so again on every reload); a problem names the key and the file, never the
//! file's contents.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use super::raw::{RawPool, RawServerTls};
use super::validate::Problems;
use super::{BackendConfig, PoolTlsConfig, ServerTlsConfig, limits};
use crate::tls::{ClientAuth, ClientTls, ClientTlsFiles, ServerTls, ServerTlsFiles};

/// A path setting: `None` (reported as required when `required`) when absent or empty.
fn path(p: &mut Problems, key: &str, value: Option<String>, required: bool) -> Option<PathBuf> {
    match value {
        Some(v) if !v.is_empty() => Some(PathBuf::from(v)),
        _ => {
            if required {
                p.add(key, "is required (a PEM file)");
            }
            None
        }
    }
}

/// `[server.tls]`, its files read and checked; `None` after any problem.
pub(super) fn server_tls(p: &mut Problems, raw: RawServerTls) -> Option<ServerTlsConfig> {
    let cert = path(p, "server.tls.cert", raw.cert, true);
    let key = path(p, "server.tls.key", raw.key, true);
    let client_ca = path(p, "server.tls.client_ca", raw.client_ca, false);
    let client_auth = match (raw.client_auth.as_deref(), client_ca.is_some()) {
        (None, false) => ClientAuth::None,
        (None | Some("required"), true) => ClientAuth::Required,
        (Some("optional"), true) => ClientAuth::Optional,
        (Some("required" | "optional"), false) => {
            p.add(
                "server.tls.client_auth",
                "needs server.tls.client_ca: the CA that signs the client certificates",
            );
            ClientAuth::None
        }
        (Some(other), _) => {
            p.add(
                "server.tls.client_auth",
                format_args!("unknown value {other:?}; valid: required, optional"),
            );
            ClientAuth::None
        }
    };
    let timeout = p.int(
        "server.tls.handshake_timeout_ms",
        raw.handshake_timeout_ms,
        limits::TLS_HANDSHAKE_TIMEOUT_MS,
        1,
        i64::MAX,
    );
    let files = ServerTlsFiles {
        cert: cert?,
        key: key?,
        client_ca,
        client_auth,
        handshake_timeout: Duration::from_millis(timeout as u64),
    };
    match ServerTls::load(&files) {
        Ok(loaded) => Some(ServerTlsConfig {
            files,
            loaded: Arc::new(loaded),
        }),
        Err(problems) => {
            for problem in problems {
                p.add(format_args!("server.tls.{}", problem.key), problem.message);
            }
            None
        }
    }
}

/// A pool's `tls` and `tls_*` keys, the files read and checked; `None` when off or after any
/// problem.
pub(super) fn pool_tls(p: &mut Problems, key: &str, raw: &mut RawPool) -> Option<PoolTlsConfig> {
    let on = raw.tls.unwrap_or(false);
    let ca = path(p, &format!("{key}.tls_ca"), raw.tls_ca.take(), false);
    let cert = path(p, &format!("{key}.tls_cert"), raw.tls_cert.take(), false);
    let tls_key = path(p, &format!("{key}.tls_key"), raw.tls_key.take(), false);
    let server_name = raw.tls_server_name.take();
    let insecure = raw.tls_insecure_skip_verify;
    if !on {
        let set = [
            ("tls_ca", ca.is_some()),
            ("tls_cert", cert.is_some()),
            ("tls_key", tls_key.is_some()),
            ("tls_server_name", server_name.is_some()),
            ("tls_insecure_skip_verify", insecure.is_some()),
        ];
        for (name, _) in set.iter().filter(|(_, set)| *set) {
            p.add(
                format_args!("{key}.{name}"),
                "has no effect without tls = true",
            );
        }
        return None;
    }
    let files = ClientTlsFiles {
        ca,
        cert,
        key: tls_key,
        server_name,
        insecure_skip_verify: insecure.unwrap_or(false),
    };
    match ClientTls::load(&files) {
        Ok(loaded) => Some(PoolTlsConfig {
            files,
            loaded: Arc::new(loaded),
        }),
        Err(problems) => {
            for problem in problems {
                p.add(format_args!("{key}.{}", problem.key), problem.message);
            }
            None
        }
    }
}

/// Without `tls_server_name`, each backend's certificate is checked against the host in its
/// address: it must be a DNS name or an IP address.
pub(super) fn check_backend_names(
    p: &mut Problems,
    key: &str,
    tls: &PoolTlsConfig,
    backends: &[BackendConfig],
) {
    if tls.files.server_name.is_some() {
        return;
    }
    for (i, b) in backends.iter().enumerate() {
        if !b.address.host.is_empty() && tls.loaded.name_for(&b.address.host).is_none() {
            p.add(
                format_args!("{key}.backends[{i}].address"),
                format_args!(
                    "host {:?} is not a name a certificate can be checked against; set {key}.tls_server_name",
                    b.address.host
                ),
            );
        }
    }
}

/// `[server.tls]` for [`Config::describe`](super::Config::describe): paths and settings, never
/// the files' contents.
pub(super) fn describe_server(out: &mut String, tls: Option<&ServerTlsConfig>) {
    match tls {
        None => {
            let _ = writeln!(out, "  tls                      off");
        }
        Some(tls) => {
            let f = &tls.files;
            let _ = writeln!(out, "  tls                      on");
            let _ = writeln!(out, "    cert                   {}", f.cert.display());
            let _ = writeln!(out, "    key                    {}", f.key.display());
            let ca = f
                .client_ca
                .as_ref()
                .map_or("none".to_string(), |p| p.display().to_string());
            let _ = writeln!(out, "    client_ca              {ca}");
            let _ = writeln!(out, "    client_auth            {}", f.client_auth.name());
            let _ = writeln!(
                out,
                "    handshake_timeout      {} ms",
                f.handshake_timeout.as_millis()
            );
        }
    }
}

/// A pool's TLS keys for [`Config::describe`](super::Config::describe).
pub(super) fn describe_pool(out: &mut String, tls: Option<&PoolTlsConfig>) {
    match tls {
        None => {
            let _ = writeln!(out, "  tls                      off");
        }
        Some(tls) => {
            let f = &tls.files;
            let path = |p: &Option<PathBuf>| {
                p.as_ref()
                    .map_or("none".to_string(), |p| p.display().to_string())
            };
            let _ = writeln!(out, "  tls                      on");
            let _ = writeln!(out, "    tls_ca                 {}", path(&f.ca));
            let _ = writeln!(out, "    tls_cert               {}", path(&f.cert));
            let _ = writeln!(out, "    tls_key                {}", path(&f.key));
            let name = f.server_name.as_deref().unwrap_or("(each backend's host)");
            let _ = writeln!(out, "    tls_server_name        {name}");
            let _ = writeln!(
                out,
                "    tls_insecure_skip_verify {}",
                f.insecure_skip_verify
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};

    use crate::config::{Config, ConfigError};

    /// A directory with a CA, a server certificate and key (for 127.0.0.1) and files that
    /// are not what their names say; removed on drop.
    struct Files(PathBuf);

    impl Files {
        fn new(name: &str) -> Files {
            let dir = std::env::temp_dir()
                .join(format!("shardis-config-tls-{name}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).unwrap();
            let ca_key = rcgen::KeyPair::generate().unwrap();
            let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
            ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
            let ca_cert = ca.self_signed(&ca_key).unwrap();
            let issuer = rcgen::Issuer::new(ca, ca_key);
            let key = rcgen::KeyPair::generate().unwrap();
            let leaf = rcgen::CertificateParams::new(vec!["127.0.0.1".to_string()])
                .unwrap()
                .signed_by(&key, &issuer)
                .unwrap();
            let write = |n: &str, text: &str| std::fs::write(dir.join(n), text).unwrap();
            write("ca.pem", &ca_cert.pem());
            write("server.pem", &leaf.pem());
            write("server.key", &key.serialize_pem());
            write(
                "other.key",
                &rcgen::KeyPair::generate().unwrap().serialize_pem(),
            );
            write("garbage.pem", "not a certificate\n");
            Files(dir)
        }

        fn path(&self, name: &str) -> String {
            self.0.join(name).display().to_string()
        }

        fn dir(&self) -> &Path {
            &self.0
        }
    }

    impl Drop for Files {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn problems(text: &str) -> Vec<String> {
        match Config::parse(text) {
            Err(ConfigError::Invalid(p)) => p,
            other => panic!("expected validation problems, got {other:?}"),
        }
    }

    fn pool(lines: &str) -> String {
        format!(
            "[server]\nlisten = \"127.0.0.1:6380\"\n[[pools]]\n{lines}\n\
             backends = [{{ name = \"s1\", address = \"127.0.0.1:7001\" }}]\n"
        )
    }

    #[test]
    fn valid_tls_on_both_sides_loads() {
        let f = Files::new("valid");
        let text = format!(
            "[server]\nlisten = \"127.0.0.1:6380\"\nplain_listen = \"127.0.0.1:6381\"\n\
             [server.tls]\ncert = {:?}\nkey = {:?}\nclient_ca = {:?}\nclient_auth = \"optional\"\n\
             [[pools]]\nhash_tag = \"{{}}\"\ntls = true\ntls_ca = {:?}\ntls_cert = {:?}\ntls_key = {:?}\n\
             backends = [{{ name = \"s1\", address = \"127.0.0.1:7001\" }}]\n",
            f.path("server.pem"),
            f.path("server.key"),
            f.path("ca.pem"),
            f.path("ca.pem"),
            f.path("server.pem"),
            f.path("server.key"),
        );
        let c = Config::parse(&text).unwrap();
        let tls = c.server.tls.as_ref().unwrap();
        assert_eq!(tls.files.client_auth, crate::tls::ClientAuth::Optional);
        assert_eq!(c.server.plain_listen.unwrap().port(), 6381);
        assert!(c.pools[0].tls.is_some());
        // The description names the files and never shows what is in them.
        let described = c.describe();
        let json = c.to_json().to_string();
        let key = std::fs::read_to_string(f.dir().join("server.key")).unwrap();
        let secret = key.lines().nth(1).unwrap();
        for shown in [&described, &json] {
            assert!(shown.contains(&f.path("server.key")), "{shown}");
            assert!(!shown.contains("PRIVATE KEY"), "{shown}");
            assert!(!shown.contains(secret), "{shown}");
        }
        // The JSON reads back as the same configuration.
        let mut file = c.to_json();
        file.as_object_mut().unwrap().remove("digest");
        assert_eq!(Config::parse(&toml::to_string(&file).unwrap()).unwrap(), c);
    }

    #[test]
    fn every_tls_problem_is_listed_at_once() {
        let f = Files::new("problems");
        let text = format!(
            "[server]\nlisten = \"127.0.0.1:6380\"\n\
             [server.tls]\ncert = {:?}\nkey = {:?}\nclient_ca = {:?}\n\
             [[pools]]\ntls = true\ntls_cert = {:?}\n\
             backends = [{{ name = \"s1\", address = \"127.0.0.1:7001\" }}]\n\
             [[pools]]\nname = \"b\"\ntls_ca = {:?}\n\
             backends = [{{ name = \"s2\", address = \"127.0.0.1:7002\" }}]\n\
             [routing]\ncatch_all = \"b\"\n[[routes]]\nprefix = \"a:\"\npool = \"main\"\n",
            f.path("missing.pem"),
            f.path("garbage.pem"),
            f.path("garbage.pem"),
            f.path("server.pem"),
            f.path("ca.pem"),
        );
        let p = problems(&text);
        let expected = [
            "server.tls.cert: cannot read ",
            "server.tls.key: ",
            "server.tls.client_ca: ",
            "pools[0].tls_ca: is required with tls = true",
            "pools[0].tls_key: is required with tls_cert",
            "pools[1].tls_ca: has no effect without tls = true",
        ];
        for e in expected {
            assert!(
                p.iter().any(|line| line.starts_with(e)),
                "missing {e:?} in {p:#?}"
            );
        }
        assert_eq!(p.len(), expected.len(), "{p:#?}");
        assert!(p[0].contains("missing.pem"), "{p:#?}");
        assert!(
            p.iter().any(|l| l.contains("garbage.pem holds no")),
            "{p:#?}"
        );
    }

    #[test]
    fn server_tls_needs_cert_and_key_and_a_known_client_auth() {
        let f = Files::new("server");
        let p = problems(
            "[server]\nlisten = \"127.0.0.1:6380\"\nplain_listen = \"127.0.0.1:6381\"\n\
             [server.tls]\nclient_auth = \"sometimes\"\n\
             [[pools]]\nbackends = [{ address = \"127.0.0.1:7001\" }]\n",
        );
        for e in [
            "server.tls.cert: is required",
            "server.tls.key: is required",
            "server.tls.client_auth: unknown value \"sometimes\"",
        ] {
            assert!(
                p.iter().any(|l| l.starts_with(e)),
                "missing {e:?} in {p:#?}"
            );
        }
        // plain_listen beside no TLS listener, client_auth without client_ca.
        let p = problems(
            "[server]\nlisten = \"127.0.0.1:6380\"\nplain_listen = \"127.0.0.1:6381\"\n\
             [[pools]]\nbackends = [{ address = \"127.0.0.1:7001\" }]\n",
        );
        assert!(p[0].starts_with("server.plain_listen: "), "{p:#?}");
        let p = problems(&format!(
            "[server]\nlisten = \"127.0.0.1:6380\"\n\
             [server.tls]\ncert = {:?}\nkey = {:?}\nclient_auth = \"required\"\n\
             [[pools]]\nbackends = [{{ address = \"127.0.0.1:7001\" }}]\n",
            f.path("server.pem"),
            f.path("server.key")
        ));
        assert_eq!(p.len(), 1, "{p:#?}");
        assert!(p[0].contains("needs server.tls.client_ca"), "{p:#?}");
        // A key that is not the certificate's.
        let p = problems(&format!(
            "[server]\nlisten = \"127.0.0.1:6380\"\n\
             [server.tls]\ncert = {:?}\nkey = {:?}\n\
             [[pools]]\nbackends = [{{ address = \"127.0.0.1:7001\" }}]\n",
            f.path("server.pem"),
            f.path("other.key")
        ));
        assert_eq!(p.len(), 1, "{p:#?}");
        assert!(p[0].starts_with("server.tls.key: "), "{p:#?}");
        assert!(p[0].contains("does not go with the certificate"), "{p:#?}");
    }

    #[test]
    fn pool_tls_settings() {
        let f = Files::new("pool");
        // insecure_skip_verify needs no CA; a bad server name is refused.
        let c = Config::parse(&pool("tls = true\ntls_insecure_skip_verify = true")).unwrap();
        assert!(c.pools[0].tls.as_ref().unwrap().loaded.insecure);
        let p = problems(&pool(&format!(
            "tls = true\ntls_ca = {:?}\ntls_server_name = \"not a name!\"",
            f.path("ca.pem")
        )));
        assert_eq!(p.len(), 1, "{p:#?}");
        assert!(p[0].starts_with("pools[0].tls_server_name: "), "{p:#?}");
        // A CA file with no certificate in it.
        let p = problems(&pool(&format!(
            "tls = true\ntls_ca = {:?}",
            f.path("garbage.pem")
        )));
        assert_eq!(p.len(), 1, "{p:#?}");
        assert!(p[0].starts_with("pools[0].tls_ca: "), "{p:#?}");
    }
}
