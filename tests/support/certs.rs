//! Certificates for the TLS tests, made with rcgen into a directory of their own: a CA,
//! server certificates for `localhost` and `127.0.0.1`, client certificates, and the
//! bad kinds (expired, from another CA).

use std::path::{Path, PathBuf};

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
use tcpy_host::tls::TlsFiles;
use tempfile::TempDir;
use tokio::net::TcpStream;

/// A certificate and its key, as PEM files.
#[derive(Debug, Clone)]
pub struct Pair {
    /// The certificate (chain) file.
    pub cert: PathBuf,
    /// The private key file.
    pub key: PathBuf,
}

/// A test CA and the directory its files are written to.
pub struct Pki {
    dir: TempDir,
    name: String,
    ca: CertifiedIssuer<'static, KeyPair>,
}

impl Pki {
    /// A new CA called `name`.
    pub fn new(name: &str) -> Self {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, format!("{name} CA"));
        let key = KeyPair::generate().expect("a key");
        let ca = CertifiedIssuer::self_signed(params, key).expect("a CA certificate");
        let dir = tempfile::tempdir().expect("a temporary directory");
        std::fs::write(dir.path().join("ca.pem"), ca.pem()).expect("writes");
        Self {
            dir,
            name: name.to_owned(),
            ca,
        }
    }

    /// The CA's certificate, PEM.
    pub fn ca(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    /// A server certificate for `localhost` and `127.0.0.1`, written as `file`.pem and
    /// `file`.key; expired a year ago if `expired`.
    pub fn server(&self, file: &str, expired: bool) -> Pair {
        let mut params =
            CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()]).expect("params");
        params
            .distinguished_name
            .push(DnType::CommonName, format!("{} server", self.name));
        if expired {
            params.not_before = rcgen::date_time_ymd(2020, 1, 1);
            params.not_after = rcgen::date_time_ymd(2021, 1, 1);
        }
        self.issue(params, file)
    }

    /// A client certificate whose subject's common name is `identity`.
    pub fn client(&self, identity: &str, file: &str) -> Pair {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
        params.distinguished_name.push(DnType::CommonName, identity);
        self.issue(params, file)
    }

    fn issue(&self, params: CertificateParams, file: &str) -> Pair {
        let key = KeyPair::generate().expect("a key");
        let cert = params.signed_by(&key, &self.ca).expect("a certificate");
        let pair = Pair {
            cert: self.dir.path().join(format!("{file}.pem")),
            key: self.dir.path().join(format!("{file}.key")),
        };
        std::fs::write(&pair.cert, cert.pem()).expect("writes");
        std::fs::write(&pair.key, key.serialize_pem()).expect("writes");
        pair
    }

    /// The directory the files are in.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

/// The host's TLS files for `server`, asking for client certificates from `client_ca`.
pub fn tls_files(server: &Pair, client_ca: Option<PathBuf>) -> TlsFiles {
    TlsFiles {
        cert: server.cert.clone(),
        key: server.key.clone(),
        client_ca,
    }
}

/// A client config trusting `ca`, presenting `client` if given.
pub fn client_config(ca: &Path, client: Option<&Pair>) -> tcpy_client::TlsConfig {
    let own = client.map(|pair| (pair.cert.as_path(), pair.key.as_path()));
    tcpy_client::TlsConfig::from_pem_files(ca, own).expect("a client TLS config")
}

/// A raw TLS connection to `addr` (checked as `localhost`), trusting `ca`; for speaking
/// the protocol by hand over TLS.
pub async fn connect(
    addr: std::net::SocketAddr,
    ca: &Path,
) -> std::io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
    let (connector, name) = client_config(ca, None)
        .connector("localhost")
        .expect("localhost is a server name");
    connector.connect(name, TcpStream::connect(addr).await?).await
}
