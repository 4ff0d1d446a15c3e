//! TLS for client connections (rustls, no OpenSSL): the server's certificate and key,
//! optionally a CA that client certificates must be signed by, and the identity a
//! client certificate gives its connection. Reloadable: new files apply to new
//! connections, and a bad new pair keeps the old one serving.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use arc_swap::ArcSwap;
use rustls::RootCertStore;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use tokio_rustls::TlsAcceptor;

use crate::files;
use crate::report::escaped_path;

/// Largest PEM file read (a certificate chain, a key or a CA bundle).
const MAX_PEM: usize = 1024 * 1024;

/// Where the TLS files are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// The server's certificate chain, PEM.
    pub cert: PathBuf,
    /// The server's private key, PEM.
    pub key: PathBuf,
    /// If set, clients must present a certificate signed by a CA in this PEM bundle.
    pub client_ca: Option<PathBuf>,
}

impl TlsFiles {
    /// Every file, for watching them.
    pub fn paths(&self) -> impl Iterator<Item = &Path> {
        [
            Some(self.cert.as_path()),
            Some(self.key.as_path()),
            self.client_ca.as_deref(),
        ]
        .into_iter()
        .flatten()
    }
}

/// Why the TLS files cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file cannot be read.
    #[error(transparent)]
    Read(#[from] files::ReadError),
    /// A file holds no usable PEM of the kind wanted.
    #[error("`{}`: {what}", escaped_path(path))]
    Pem {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        what: String,
    },
    /// rustls refuses the combination (a key that does not match the certificate, …).
    #[error("cannot use `{}` with `{}`", escaped_path(cert), escaped_path(key))]
    Config {
        /// The certificate file.
        cert: PathBuf,
        /// The key file.
        key: PathBuf,
        /// The cause.
        source: rustls::Error,
    },
    /// The client CA bundle cannot verify client certificates.
    #[error("cannot verify client certificates with `{}`: {reason}", escaped_path(path))]
    ClientCa {
        /// The CA file.
        path: PathBuf,
        /// The cause.
        reason: String,
    },
}

/// The TLS acceptor new connections use, swapped whole on reload.
pub struct Tls {
    files: TlsFiles,
    acceptor: ArcSwap<TlsAcceptor>,
}

impl Tls {
    /// Loads `files`.
    ///
    /// # Errors
    /// A [`TlsError`] naming the file and what is wrong with it.
    pub async fn load(files: TlsFiles) -> Result<Self, TlsError> {
        let acceptor = acceptor(&files).await?;
        Ok(Self {
            files,
            acceptor: ArcSwap::from_pointee(acceptor),
        })
    }

    /// The acceptor for the next connection.
    pub fn acceptor(&self) -> Arc<TlsAcceptor> {
        self.acceptor.load_full()
    }

    /// The files it serves.
    pub fn files(&self) -> &TlsFiles {
        &self.files
    }

    /// Whether clients must present a certificate.
    pub fn requires_client_certs(&self) -> bool {
        self.files.client_ca.is_some()
    }

    /// Reads the files again: connections from now on use them. If they cannot be
    /// used, the ones loaded before keep serving.
    ///
    /// # Errors
    /// Why the new files cannot be used.
    pub async fn reload(&self) -> Result<(), TlsError> {
        let acceptor = acceptor(&self.files).await?;
        self.acceptor.store(Arc::new(acceptor));
        Ok(())
    }
}

/// Builds an acceptor from `files`.
async fn acceptor(files: &TlsFiles) -> Result<TlsAcceptor, TlsError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let certs = certificates(&files.cert).await?;
    let key_pem = files::read_regular(&files.key, MAX_PEM).await?;
    let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|error| TlsError::Pem {
        path: files.key.clone(),
        what: format!("no private key: {error}"),
    })?;
    let config_error = |source| TlsError::Config {
        cert: files.cert.clone(),
        key: files.key.clone(),
        source,
    };
    let builder = rustls::ServerConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .map_err(config_error)?;
    let builder = match &files.client_ca {
        None => builder.with_no_client_auth(),
        Some(path) => {
            let mut roots = RootCertStore::empty();
            for cert in certificates(path).await? {
                roots.add(cert).map_err(|error| TlsError::ClientCa {
                    path: path.clone(),
                    reason: error.to_string(),
                })?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .map_err(|error| TlsError::ClientCa {
                    path: path.clone(),
                    reason: error.to_string(),
                })?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let config = builder.with_single_cert(certs, key).map_err(config_error)?;
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// The certificates of the PEM file at `path`: at least one.
async fn certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = files::read_regular(path, MAX_PEM).await?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| TlsError::Pem {
            path: path.to_owned(),
            what: format!("bad certificate PEM: {error}"),
        })?;
    if certs.is_empty() {
        return Err(TlsError::Pem {
            path: path.to_owned(),
            what: "no certificate in it".to_owned(),
        });
    }
    Ok(certs)
}

/// The identity a client certificate names: its subject's common name, else its
/// first subject alternative name (a DNS name, e-mail address or URI). `None` for a
/// certificate that names nobody this way.
pub fn identity_of(cert: &CertificateDer<'_>) -> Option<String> {
    let (_, cert) = x509_parser::parse_x509_certificate(cert.as_ref()).ok()?;
    if let Some(cn) = cert
        .subject()
        .iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())
    {
        return Some(cn.to_owned());
    }
    let names = cert.subject_alternative_name().ok()??;
    names.value.general_names.iter().find_map(|name| {
        use x509_parser::extensions::GeneralName;
        match name {
            GeneralName::DNSName(name) | GeneralName::RFC822Name(name) | GeneralName::URI(name) => {
                Some((*name).to_owned())
            }
            _ => None,
        }
    })
}
