//! TLS for a client's connections (rustls, no OpenSSL): the CA the host's certificate
//! must be signed by, and optionally the client's own certificate.

use std::path::Path;
use std::sync::Arc;

use rustls::RootCertStore;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};

use crate::ClientError;

/// How a client secures its connections; cheap to clone.
#[derive(Clone)]
pub struct TlsConfig {
    config: Arc<rustls::ClientConfig>,
    server_name: Option<ServerName<'static>>,
}

impl std::fmt::Debug for TlsConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsConfig")
            .field("server_name", &self.server_name)
            .finish_non_exhaustive()
    }
}

impl TlsConfig {
    /// Trusts host certificates signed by a CA in the PEM bundle `ca`; with `client`,
    /// presents that certificate chain and key (PEM files) to hosts that ask.
    ///
    /// # Errors
    /// [`ClientError::Tls`] naming the file that cannot be read or used.
    pub fn from_pem_files(ca: &Path, client: Option<(&Path, &Path)>) -> Result<Self, ClientError> {
        let mut roots = RootCertStore::empty();
        for cert in certificates(ca)? {
            roots
                .add(cert)
                .map_err(|error| tls_error(ca, &error.to_string()))?;
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|error| ClientError::Tls(error.to_string()))?
            .with_root_certificates(roots);
        let config = match client {
            None => builder.with_no_client_auth(),
            Some((cert, key)) => {
                let chain = certificates(cert)?;
                let key_der = PrivateKeyDer::from_pem_file(key)
                    .map_err(|error| tls_error(key, &format!("no private key: {error}")))?;
                builder
                    .with_client_auth_cert(chain, key_der)
                    .map_err(|error| tls_error(cert, &error.to_string()))?
            }
        };
        Ok(Self {
            config: Arc::new(config),
            server_name: None,
        })
    }

    /// Checks the host's certificate against `name` instead of the host the client
    /// connects to (for connecting by IP address to a host with a DNS name, say).
    ///
    /// # Errors
    /// [`ClientError::Tls`] if `name` is neither a DNS name nor an IP address.
    pub fn with_server_name(mut self, name: &str) -> Result<Self, ClientError> {
        let name = ServerName::try_from(name.to_owned())
            .map_err(|error| ClientError::Tls(format!("bad server name `{name}`: {error}")))?;
        self.server_name = Some(name);
        Ok(self)
    }

    /// The connector, and the name the host's certificate must carry when the client
    /// connects to `host`: for speaking TLS to a host outside [`crate::Client`] (a
    /// load generator, a test that frames messages by hand).
    ///
    /// # Errors
    /// [`ClientError::Tls`] if `host` cannot be checked against a certificate.
    pub fn connector(
        &self,
        host: &str,
    ) -> Result<(tokio_rustls::TlsConnector, ServerName<'static>), ClientError> {
        let name = match &self.server_name {
            Some(name) => name.clone(),
            None => ServerName::try_from(host.to_owned()).map_err(|error| {
                ClientError::Tls(format!(
                    "`{host}` cannot be checked against a certificate: {error}"
                ))
            })?,
        };
        Ok((tokio_rustls::TlsConnector::from(Arc::clone(&self.config)), name))
    }
}

fn certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, ClientError> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|error| tls_error(path, &error.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| tls_error(path, &error.to_string()))?;
    if certs.is_empty() {
        return Err(tls_error(path, "no certificate in it"));
    }
    Ok(certs)
}

fn tls_error(path: &Path, reason: &str) -> ClientError {
    ClientError::Tls(format!("`{}`: {reason}", path.display()))
}
