//! Certificates made per test with rcgen (a CA, a server certificate for 127.0.0.1 and
//! localhost, a client certificate), written as PEM files; rustls client settings that trust
//! them; and blocking TLS connections for [`super::Client`].

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConnection, StreamOwned};

use super::TempDir;
use super::client::READ_TIMEOUT;

/// A certificate and its key, as PEM files.
#[derive(Clone, Debug)]
pub struct Pair {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// A test CA with a server and a client certificate, as PEM files in a temp dir (removed on
/// drop).
pub struct Pki {
    dir: TempDir,
    /// The CA certificate.
    pub ca: PathBuf,
    /// For 127.0.0.1, ::1 and localhost.
    pub server: Pair,
    /// For the client "test-client".
    pub client: Pair,
    issuer: Issuer<'static, KeyPair>,
    issued: std::sync::atomic::AtomicUsize,
}

impl Pki {
    /// A new CA (its own key: certificates of another [`Pki`] are not trusted by this one),
    /// with its server and client certificates.
    pub fn new() -> Pki {
        let dir = TempDir::new("pki");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        // A name of its own: another Pki's CA must be unknown, not a namesake.
        static CAS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = CAS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        params.distinguished_name.push(
            DnType::CommonName,
            format!("shardis test CA {} {n}", std::process::id()),
        );
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let key = KeyPair::generate().expect("CA key");
        let cert = params.self_signed(&key).expect("self-sign the CA");
        let ca = dir.path().join("ca.pem");
        std::fs::write(&ca, cert.pem()).expect("write ca.pem");
        let mut pki = Pki {
            ca,
            server: Pair {
                cert: PathBuf::new(),
                key: PathBuf::new(),
            },
            client: Pair {
                cert: PathBuf::new(),
                key: PathBuf::new(),
            },
            issuer: Issuer::new(params, key),
            issued: Default::default(),
            dir,
        };
        pki.server = pki.issue_server("shardis test server", &["127.0.0.1", "::1", "localhost"]);
        pki.client = pki.issue("test-client", &[], ExtendedKeyUsagePurpose::ClientAuth);
        pki
    }

    /// The directory the files are in.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// A new server certificate signed by this CA, named `cn`, valid for `names` (DNS names
    /// or IP addresses).
    pub fn issue_server(&self, cn: &str, names: &[&str]) -> Pair {
        self.issue(cn, names, ExtendedKeyUsagePurpose::ServerAuth)
    }

    fn issue(&self, cn: &str, names: &[&str], usage: ExtendedKeyUsagePurpose) -> Pair {
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let mut params = CertificateParams::new(names).expect("leaf params");
        params.distinguished_name.push(DnType::CommonName, cn);
        params.use_authority_key_identifier_extension = true;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![usage];
        let key = KeyPair::generate().expect("leaf key");
        let cert = params.signed_by(&key, &self.issuer).expect("sign leaf");
        let n = self
            .issued
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let pair = Pair {
            cert: self.dir.path().join(format!("leaf{n}.pem")),
            key: self.dir.path().join(format!("leaf{n}.key")),
        };
        std::fs::write(&pair.cert, cert.pem()).expect("write leaf cert");
        std::fs::write(&pair.key, key.serialize_pem()).expect("write leaf key");
        pair
    }

    /// rustls client settings that trust this CA, with the client certificate when
    /// `with_cert`.
    pub fn client_config(&self, with_cert: bool) -> Arc<rustls::ClientConfig> {
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_file_iter(&self.ca).expect("read ca.pem") {
            roots.add(cert.expect("CA PEM")).expect("add CA");
        }
        let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .with_root_certificates(roots);
        let config = if with_cert {
            let chain = CertificateDer::pem_file_iter(&self.client.cert)
                .expect("read client cert")
                .collect::<Result<Vec<_>, _>>()
                .expect("client cert PEM");
            let key = PrivateKeyDer::from_pem_file(&self.client.key).expect("client key");
            builder
                .with_client_auth_cert(chain, key)
                .expect("client cert and key")
        } else {
            builder.with_no_client_auth()
        };
        Arc::new(config)
    }

    /// `[server.tls]` lines for shardis with this CA's server certificate, plus `extra` lines.
    pub fn server_tls_section(&self, extra: &str) -> String {
        format!(
            "[server.tls]\ncert = {:?}\nkey = {:?}\n{extra}\n",
            self.server.cert.display().to_string(),
            self.server.key.display().to_string()
        )
    }

    /// Pool lines for TLS to backends signed by this CA, plus `extra` lines.
    pub fn pool_tls_lines(&self, extra: &str) -> String {
        format!(
            "tls = true\ntls_ca = {:?}\n{extra}",
            self.ca.display().to_string()
        )
    }
}

/// A blocking TLS connection to `addr` whose certificate must be valid for `name`, with the
/// client's read timeout; the handshake is complete when it returns.
pub fn tls_connect(
    addr: &str,
    config: Arc<rustls::ClientConfig>,
    name: &str,
) -> std::io::Result<StreamOwned<ClientConnection, TcpStream>> {
    let tcp = TcpStream::connect(addr)?;
    tcp.set_read_timeout(Some(READ_TIMEOUT))?;
    tcp.set_nodelay(true)?;
    let name = ServerName::try_from(name.to_string())
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
    let conn = ClientConnection::new(config, name)
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?;
    let mut stream = StreamOwned::new(conn, tcp);
    while stream.conn.is_handshaking() {
        stream
            .conn
            .complete_io(&mut stream.sock)
            .map_err(|e| std::io::Error::new(e.kind(), e))?;
    }
    Ok(stream)
}

/// The certificate (DER) a TLS server at `addr` shows.
pub fn peer_certificate(addr: &str, config: Arc<rustls::ClientConfig>) -> Vec<u8> {
    let stream = tls_connect(addr, config, "127.0.0.1").expect("TLS handshake");
    stream
        .conn
        .peer_certificates()
        .and_then(|c| c.first())
        .expect("a server certificate")
        .to_vec()
}

/// The DER of the first certificate in a PEM file.
pub fn certificate_der(path: &Path) -> Vec<u8> {
    CertificateDer::pem_file_iter(path)
        .expect("read cert")
        .next()
        .expect("a certificate")
        .expect("PEM")
        .to_vec()
}

/// One TLS stream used by a [`super::Client`]'s reader and writer in turn (a client never
/// reads and writes at once).
#[derive(Clone)]
pub struct Shared(pub Arc<Mutex<StreamOwned<ClientConnection, TcpStream>>>);

impl Read for Shared {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.0.lock().expect("TLS stream lock").read(buf)
    }
}

impl Write for Shared {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("TLS stream lock").write(buf)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.0.lock().expect("TLS stream lock").flush()
    }
}
