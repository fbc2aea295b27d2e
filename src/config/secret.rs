//! Secrets in the configuration: passwords given inline, from an environment variable, from a
//! file (a Kubernetes secret mounted as a file), or for clients as a SHA-256 digest. They are
//! read when the configuration is loaded, so a reload (SIGHUP) picks up a rotated secret.
//!
//! What shardis keeps: of a client password only its SHA-256 digest; of a backend password the
//! password itself (it has to be sent), in a [`Secret`] that no `Debug`, log line, `shardis
//! check` or `/admin/config` shows. [`SecretSource`] says where a secret came from, which is
//! what those show instead.

use std::fmt;
use std::io::Read;
use std::path::PathBuf;

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::validate::Problems;

/// Largest secret file read.
pub const MAX_SECRET_FILE: u64 = 64 * 1024;

/// A password in clear, for a backend. `Debug` shows `***`; there is no `Display`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Box<[u8]>);

impl Secret {
    pub fn new(bytes: impl Into<Box<[u8]>>) -> Secret {
        Secret(bytes.into())
    }

    /// The password, to send it.
    pub fn expose(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(super::MASK)
    }
}

/// The SHA-256 digest of a client password: all shardis keeps of it. `Debug` shows `***`.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct PasswordDigest([u8; 32]);

impl PasswordDigest {
    /// The digest of `password`.
    pub fn of(password: &[u8]) -> PasswordDigest {
        PasswordDigest(Sha256::digest(password).into())
    }

    /// From 64 hex digits (Redis's `#<hash>` form), either case.
    pub fn from_hex(hex: &str) -> Option<PasswordDigest> {
        let bytes = hex.as_bytes();
        if bytes.len() != 64 {
            return None;
        }
        let mut out = [0u8; 32];
        for (i, pair) in bytes.chunks(2).enumerate() {
            let digit = |c: u8| (c as char).to_digit(16);
            out[i] = (digit(pair[0])? * 16 + digit(pair[1])?) as u8;
        }
        Some(PasswordDigest(out))
    }

    /// A hex rendering, for comparing configurations in memory (never shown).
    pub fn fingerprint(&self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// Whether the two are equal, in time that does not depend on where they differ.
    #[inline]
    pub fn matches(&self, other: &PasswordDigest) -> bool {
        self.0.ct_eq(&other.0).into()
    }
}

impl fmt::Debug for PasswordDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(super::MASK)
    }
}

/// Where a secret came from: what `shardis check` shows in its place.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SecretSource {
    /// In the file itself (`password = "..."`).
    Inline,
    /// As a digest (`password_sha256`).
    Sha256,
    /// From an environment variable (`password_env`).
    Env(String),
    /// From a file (`password_file`).
    File(PathBuf),
}

impl fmt::Display for SecretSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SecretSource::Inline => f.write_str("inline"),
            SecretSource::Sha256 => f.write_str("sha256"),
            SecretSource::Env(name) => write!(f, "env {name}"),
            SecretSource::File(path) => write!(f, "file {}", path.display()),
        }
    }
}

/// A client password (the default user's or a user's): its digest and where it came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientPassword {
    pub digest: PasswordDigest,
    pub source: SecretSource,
}

/// A backend password and where it came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BackendPassword {
    pub secret: Secret,
    pub source: SecretSource,
}

/// The ways a secret may be given in one table of the file; at most one may be.
#[derive(Default)]
pub(super) struct Sources {
    pub inline: Option<String>,
    pub sha256: Option<String>,
    pub env: Option<String>,
    pub file: Option<String>,
}

impl Sources {
    fn count(&self) -> usize {
        [&self.inline, &self.sha256, &self.env, &self.file]
            .iter()
            .filter(|s| s.is_some())
            .count()
    }
}

/// Reads the secret `sources` give, reporting problems under `key` (`users[0].password`).
/// `Ok(None)` when none is given.
fn read(
    p: &mut Problems,
    key: &str,
    sources: Sources,
) -> Result<Option<(Vec<u8>, SecretSource)>, ()> {
    if sources.count() > 1 {
        p.add(
            key,
            "give at most one of password, password_sha256, password_env, password_file",
        );
        return Err(());
    }
    if let Some(text) = sources.inline {
        return nonempty(p, key, text.into_bytes(), SecretSource::Inline);
    }
    if let Some(name) = sources.env {
        return match std::env::var_os(&name) {
            Some(value) => {
                use std::os::unix::ffi::OsStringExt;
                nonempty(
                    p,
                    &format!("{key}_env"),
                    value.into_vec(),
                    SecretSource::Env(name),
                )
            }
            None => {
                p.add(
                    format_args!("{key}_env"),
                    format_args!("environment variable {name:?} is not set"),
                );
                Err(())
            }
        };
    }
    if let Some(path) = sources.file {
        let path = PathBuf::from(path);
        return match read_file(&path) {
            Ok(mut bytes) => {
                // A secret written with `echo` or an editor ends with a newline that is not
                // part of it.
                if bytes.ends_with(b"\n") {
                    bytes.pop();
                    if bytes.ends_with(b"\r") {
                        bytes.pop();
                    }
                }
                nonempty(p, &format!("{key}_file"), bytes, SecretSource::File(path))
            }
            Err(e) => {
                p.add(
                    format_args!("{key}_file"),
                    format_args!("cannot read {}: {e}", path.display()),
                );
                Err(())
            }
        };
    }
    Ok(None)
}

fn nonempty(
    p: &mut Problems,
    key: &str,
    bytes: Vec<u8>,
    source: SecretSource,
) -> Result<Option<(Vec<u8>, SecretSource)>, ()> {
    if bytes.is_empty() {
        p.add(key, "is empty");
        return Err(());
    }
    Ok(Some((bytes, source)))
}

/// A regular file of at most [`MAX_SECRET_FILE`] bytes (not a device or a pipe, which could
/// block or never end).
fn read_file(path: &std::path::Path) -> std::io::Result<Vec<u8>> {
    let file = std::fs::File::open(path)?;
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(std::io::Error::other("not a regular file"));
    }
    if meta.len() > MAX_SECRET_FILE {
        return Err(std::io::Error::other(format!(
            "larger than {MAX_SECRET_FILE} bytes"
        )));
    }
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    file.take(MAX_SECRET_FILE).read_to_end(&mut bytes)?;
    Ok(bytes)
}

/// A client password from `sources`, kept as its digest.
pub(super) fn client_password(
    p: &mut Problems,
    key: &str,
    mut sources: Sources,
) -> Option<ClientPassword> {
    if let Some(hex) = sources.sha256.take() {
        if sources.count() > 0 {
            p.add(
                key,
                "give at most one of password, password_sha256, password_env, password_file",
            );
            return None;
        }
        return match PasswordDigest::from_hex(hex.trim()) {
            Some(digest) => Some(ClientPassword {
                digest,
                source: SecretSource::Sha256,
            }),
            None => {
                p.add(
                    format_args!("{key}_sha256"),
                    "must be 64 hex digits (the SHA-256 of the password, as `echo -n PASSWORD | sha256sum` prints it)",
                );
                None
            }
        };
    }
    let (bytes, source) = read(p, key, sources).ok()??;
    Some(ClientPassword {
        digest: PasswordDigest::of(&bytes),
        source,
    })
}

/// A backend password from `sources` (a digest cannot be sent, so none is accepted).
pub(super) fn backend_password(
    p: &mut Problems,
    key: &str,
    sources: Sources,
) -> Option<BackendPassword> {
    let (bytes, source) = read(p, key, sources).ok()??;
    Some(BackendPassword {
        secret: Secret::new(bytes),
        source,
    })
}

/// What a backend connection authenticates as, and the database it selects. `Debug` does not
/// show the password.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Credentials {
    /// The ACL user; `default` when only a password is set (Redis's `requirepass`).
    pub username: Option<String>,
    pub password: Option<Secret>,
    /// Selected after the handshake when not 0.
    pub db: u32,
}

impl Credentials {
    /// The user and password to authenticate with, if any.
    pub fn auth(&self) -> Option<(&[u8], &[u8])> {
        match (&self.username, &self.password) {
            (None, None) => None,
            (user, password) => Some((
                user.as_deref().unwrap_or("default").as_bytes(),
                password.as_ref().map_or(&b""[..], |p| p.expose()),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests_compare_and_hide() {
        let d = PasswordDigest::of(b"secret");
        let hex = "2bb80d537b1da3e38bd30361aa855686bde0eacd7162fef6a25fe97bf527a25b";
        assert_eq!(PasswordDigest::from_hex(hex), Some(d));
        assert_eq!(PasswordDigest::from_hex(&hex.to_uppercase()), Some(d));
        assert!(d.matches(&PasswordDigest::of(b"secret")));
        assert!(!d.matches(&PasswordDigest::of(b"secreT")));
        assert_eq!(PasswordDigest::from_hex("abc"), None);
        assert_eq!(PasswordDigest::from_hex(&"g".repeat(64)), None);
        assert_eq!(format!("{d:?}"), "***");
        assert_eq!(format!("{:?}", Secret::new(&b"hunter2"[..])), "***");
    }

    #[test]
    fn sources() {
        let mut p = Problems::default();
        let dir = std::env::temp_dir().join(format!("shardis-secret-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("pw");
        std::fs::write(&file, "from-file\r\n").unwrap();
        let got = backend_password(
            &mut p,
            "pools[0].password",
            Sources {
                file: Some(file.display().to_string()),
                ..Sources::default()
            },
        )
        .unwrap();
        assert_eq!(got.secret.expose(), b"from-file");
        assert_eq!(got.source, SecretSource::File(file.clone()));
        assert!(p.0.is_empty(), "{:?}", p.0);

        let both = Sources {
            inline: Some("a".into()),
            env: Some("B".into()),
            ..Sources::default()
        };
        assert!(client_password(&mut p, "server.password", both).is_none());
        let missing = Sources {
            env: Some("SHARDIS_TEST_NO_SUCH_VARIABLE".into()),
            ..Sources::default()
        };
        assert!(client_password(&mut p, "users[1].password", missing).is_none());
        let device = Sources {
            file: Some("/dev/zero".into()),
            ..Sources::default()
        };
        assert!(backend_password(&mut p, "pools[0].password", device).is_none());
        std::fs::write(&file, "\n").unwrap();
        let empty = Sources {
            file: Some(file.display().to_string()),
            ..Sources::default()
        };
        assert!(backend_password(&mut p, "pools[0].password", empty).is_none());
        assert_eq!(
            p.0,
            [
                "server.password: give at most one of password, password_sha256, password_env, password_file",
                "users[1].password_env: environment variable \"SHARDIS_TEST_NO_SUCH_VARIABLE\" is not set",
                "pools[0].password_file: cannot read /dev/zero: not a regular file",
                "pools[0].password_file: is empty",
            ]
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
