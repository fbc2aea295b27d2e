//! TLS with rustls (ring), on both sides: the client listener's certificate and client
//! verification ([`ServerTls`]), and the backends' verification and client certificate
//! ([`ClientTls`]), each built from PEM files; and the relay that runs a TLS connection beside
//! the session or backend connection that uses it ([`relay`]).
//!
//! Files are read when the configuration is validated, so a reload re-reads them: a rotated
//! certificate is used by connections opened after the reload. Each loaded set carries a digest
//! of the files' contents and settings, so a pool whose files changed rebuilds its backends.

mod relay;
mod verify;

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use md5::{Digest, Md5};
use rustls::RootCertStore;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::server::WebPkiClientVerifier;

pub use relay::{HandshakeError, accept, connect, relay};

/// Whether a client of the TLS listener must show a certificate signed by `client_ca`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClientAuth {
    /// No `client_ca`: clients are not asked for a certificate.
    None,
    /// A certificate signed by `client_ca` is required.
    Required,
    /// A certificate is asked for; without one the client is served, with a bad one refused.
    Optional,
}

impl ClientAuth {
    pub fn name(self) -> &'static str {
        match self {
            ClientAuth::None => "none",
            ClientAuth::Required => "required",
            ClientAuth::Optional => "optional",
        }
    }
}

/// One problem with a TLS file or setting: the configuration key it belongs to (relative to
/// its table, like `cert` or `tls_ca`) and what is wrong, naming the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub key: &'static str,
    pub message: String,
}

fn problem(key: &'static str, message: impl Into<String>) -> Problem {
    Problem {
        key,
        message: message.into(),
    }
}

/// A file's bytes, folded into `digest`.
fn read(key: &'static str, path: &Path, digest: &mut Md5) -> Result<Vec<u8>, Problem> {
    let bytes = std::fs::read(path)
        .map_err(|e| problem(key, format!("cannot read {}: {e}", path.display())))?;
    digest.update(path.as_os_str().as_encoded_bytes());
    digest.update((bytes.len() as u64).to_le_bytes());
    digest.update(&bytes);
    Ok(bytes)
}

/// Every certificate in a PEM file (at least one).
fn certs(
    key: &'static str,
    path: &Path,
    digest: &mut Md5,
) -> Result<Vec<CertificateDer<'static>>, Problem> {
    let bytes = read(key, path, digest)?;
    let certs = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| problem(key, format!("{} is not valid PEM: {e}", path.display())))?;
    if certs.is_empty() {
        return Err(problem(
            key,
            format!(
                "{} holds no certificate (PEM \"BEGIN CERTIFICATE\")",
                path.display()
            ),
        ));
    }
    Ok(certs)
}

/// The private key in a PEM file. Errors never show the file's contents.
fn private_key(
    key: &'static str,
    path: &Path,
    digest: &mut Md5,
) -> Result<PrivateKeyDer<'static>, Problem> {
    let bytes = read(key, path, digest)?;
    PrivateKeyDer::from_pem_slice(&bytes).map_err(|_| {
        problem(
            key,
            format!(
                "{} holds no private key (PEM \"PRIVATE KEY\", \"RSA PRIVATE KEY\" or \"EC PRIVATE KEY\")",
                path.display()
            ),
        )
    })
}

/// A root store of every certificate in a PEM file.
fn roots(key: &'static str, path: &Path, digest: &mut Md5) -> Result<RootCertStore, Problem> {
    let mut store = RootCertStore::empty();
    for cert in certs(key, path, digest)? {
        store.add(cert).map_err(|e| {
            problem(
                key,
                format!("{}: not a usable CA certificate: {e}", path.display()),
            )
        })?;
    }
    Ok(store)
}

fn hex(digest: Md5) -> String {
    let bytes: [u8; 16] = digest.finalize().into();
    bytes.iter().fold(String::with_capacity(32), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// What the client listener's TLS is built from (`[server.tls]`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerTlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub client_ca: Option<PathBuf>,
    pub client_auth: ClientAuth,
    pub handshake_timeout: Duration,
}

/// The client listener's TLS, loaded: what new client connections are accepted with.
pub struct ServerTls {
    pub acceptor: tokio_rustls::TlsAcceptor,
    pub handshake_timeout: Duration,
    /// Of the files' contents and the settings.
    pub digest: String,
}

impl std::fmt::Debug for ServerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerTls")
            .field("digest", &self.digest)
            .finish()
    }
}

impl PartialEq for ServerTls {
    fn eq(&self, other: &Self) -> bool {
        self.digest == other.digest
    }
}
impl Eq for ServerTls {}

impl ServerTls {
    /// Reads the files and builds the acceptor; every problem found, each by its key.
    pub fn load(files: &ServerTlsFiles) -> Result<ServerTls, Vec<Problem>> {
        let mut digest = Md5::new();
        let mut problems = Vec::new();
        let chain = certs("cert", &files.cert, &mut digest).map_err(|p| problems.push(p));
        let key = private_key("key", &files.key, &mut digest).map_err(|p| problems.push(p));
        let client_roots = match &files.client_ca {
            Some(ca) => roots("client_ca", ca, &mut digest)
                .map(Some)
                .map_err(|p| problems.push(p)),
            None => Ok(None),
        };
        let (Ok(chain), Ok(key), Ok(client_roots)) = (chain, key, client_roots) else {
            return Err(problems);
        };
        digest.update(files.client_auth.name());
        let builder = rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| vec![problem("cert", e.to_string())])?;
        let builder = match client_roots {
            None => builder.with_no_client_auth(),
            Some(roots) => {
                let verifier =
                    WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider());
                let verifier = match files.client_auth {
                    ClientAuth::Optional => verifier.allow_unauthenticated(),
                    ClientAuth::Required | ClientAuth::None => verifier,
                };
                let verifier = verifier.build().map_err(|e| {
                    vec![problem(
                        "client_ca",
                        format!(
                            "{}: {e}",
                            files
                                .client_ca
                                .as_deref()
                                .unwrap_or(Path::new(""))
                                .display()
                        ),
                    )]
                })?;
                builder.with_client_cert_verifier(verifier)
            }
        };
        let config = builder.with_single_cert(chain, key).map_err(|e| {
            vec![problem(
                "key",
                format!(
                    "{} does not go with the certificate in {}: {e}",
                    files.key.display(),
                    files.cert.display()
                ),
            )]
        })?;
        Ok(ServerTls {
            acceptor: tokio_rustls::TlsAcceptor::from(Arc::new(config)),
            handshake_timeout: files.handshake_timeout,
            digest: hex(digest),
        })
    }
}

/// What a pool's backend TLS is built from (`tls = true` and the `tls_*` keys).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientTlsFiles {
    pub ca: Option<PathBuf>,
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
    pub server_name: Option<String>,
    pub insecure_skip_verify: bool,
}

/// A pool's backend TLS, loaded.
pub struct ClientTls {
    pub connector: tokio_rustls::TlsConnector,
    /// `tls_server_name`: the name every backend's certificate must be valid for; without it,
    /// each backend's host.
    pub server_name: Option<ServerName<'static>>,
    pub insecure: bool,
    /// Of the files' contents and the settings.
    pub digest: String,
}

impl std::fmt::Debug for ClientTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientTls")
            .field("digest", &self.digest)
            .finish()
    }
}

impl PartialEq for ClientTls {
    fn eq(&self, other: &Self) -> bool {
        self.digest == other.digest
    }
}
impl Eq for ClientTls {}

impl ClientTls {
    /// Reads the files and builds the connector; every problem found, each by its key.
    pub fn load(files: &ClientTlsFiles) -> Result<ClientTls, Vec<Problem>> {
        let mut digest = Md5::new();
        let mut problems = Vec::new();
        let server_name = match &files.server_name {
            Some(name) => match ServerName::try_from(name.clone()) {
                Ok(n) => Some(n),
                Err(_) => {
                    problems.push(problem(
                        "tls_server_name",
                        format!("{name:?} is not a DNS name or an IP address"),
                    ));
                    None
                }
            },
            None => None,
        };
        let roots = match (&files.ca, files.insecure_skip_verify) {
            (Some(ca), _) => roots("tls_ca", ca, &mut digest).map_err(|p| problems.push(p)),
            (None, true) => Ok(RootCertStore::empty()),
            (None, false) => {
                problems.push(problem(
                    "tls_ca",
                    "is required with tls = true: a PEM file with the CA certificates that sign \
                     the backends' certificates (for a public CA, the system's bundle, like \
                     /etc/ssl/certs/ca-certificates.crt)",
                ));
                Err(())
            }
        };
        let identity = match (&files.cert, &files.key) {
            (Some(cert), Some(key)) => {
                let chain = certs("tls_cert", cert, &mut digest).map_err(|p| problems.push(p));
                let key = private_key("tls_key", key, &mut digest).map_err(|p| problems.push(p));
                match (chain, key) {
                    (Ok(chain), Ok(key)) => Ok(Some((chain, key))),
                    _ => Err(()),
                }
            }
            (None, None) => Ok(None),
            (Some(_), None) => {
                problems.push(problem("tls_key", "is required with tls_cert"));
                Err(())
            }
            (None, Some(_)) => {
                problems.push(problem("tls_cert", "is required with tls_key"));
                Err(())
            }
        };
        let (Ok(roots), Ok(identity), true) = (roots, identity, problems.is_empty()) else {
            return Err(problems);
        };
        digest.update(files.server_name.as_deref().unwrap_or("").as_bytes());
        digest.update([u8::from(files.insecure_skip_verify)]);
        let builder = rustls::ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| vec![problem("tls", e.to_string())])?;
        let builder = if files.insecure_skip_verify {
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(verify::Unverified::new(provider())))
        } else {
            builder.with_root_certificates(roots)
        };
        let config = match identity {
            None => builder.with_no_client_auth(),
            Some((chain, key)) => builder.with_client_auth_cert(chain, key).map_err(|e| {
                vec![problem(
                    "tls_key",
                    format!(
                        "{} does not go with the certificate in {}: {e}",
                        files.key.as_deref().unwrap_or(Path::new("")).display(),
                        files.cert.as_deref().unwrap_or(Path::new("")).display()
                    ),
                )]
            })?,
        };
        Ok(ClientTls {
            connector: tokio_rustls::TlsConnector::from(Arc::new(config)),
            server_name: server_name.map(|n| n.to_owned()),
            insecure: files.insecure_skip_verify,
            digest: hex(digest),
        })
    }

    /// The name a backend at `host` must show a certificate for: `tls_server_name`, else
    /// `host` itself; `None` when `host` is neither a DNS name nor an IP address.
    pub fn name_for(&self, host: &str) -> Option<ServerName<'static>> {
        match &self.server_name {
            Some(name) => Some(name.clone()),
            None => ServerName::try_from(host.to_string()).ok(),
        }
    }
}
