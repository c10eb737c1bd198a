//! DICOM TLS (PS3.15 Annex B, "TLS Secure Transport Connection Profile"): the
//! rustls server configuration of the second DIMSE listener (`[dimse.tls]`) and the
//! per-connection handshake. After the handshake the connection runs the same
//! association code as plain TCP; the client certificate's SHA-256 goes to `access`
//! (per-peer `tls_fingerprint` pinning). With `client_ca_file` set, a client without
//! a certificate signed by one of those CAs fails the handshake.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use sha2::{Digest, Sha256};
use tokio::net::TcpStream;
use tokio_rustls::rustls::{self, server::WebPkiClientVerifier, RootCertStore, ServerConfig};
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

use super::access::TlsIdentity;
use crate::config::DimseTlsConfig;

/// Errors setting up or running DICOM TLS. Messages name files, never key material.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("DICOM TLS: {what} {path}: {reason}")]
    File {
        what: &'static str,
        path: String,
        reason: String,
    },
    #[error("DICOM TLS: {0}")]
    Config(String),
    #[error("TLS handshake timed out")]
    HandshakeTimeout,
    #[error("TLS handshake failed: {0}")]
    Handshake(std::io::Error),
}

fn file_error(what: &'static str, path: &Path, reason: impl ToString) -> TlsError {
    TlsError::File {
        what,
        path: path.display().to_string(),
        reason: reason.to_string(),
    }
}

fn read_certs(what: &'static str, path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| file_error(what, path, e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| file_error(what, path, e))?;
    if certs.is_empty() {
        return Err(file_error(what, path, "no PEM certificate in it"));
    }
    Ok(certs)
}

/// The TLS acceptor for `[dimse.tls]`.
pub fn acceptor(cfg: &DimseTlsConfig) -> Result<TlsAcceptor, TlsError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let chain = read_certs("cert_file", &cfg.cert_file)?;
    let key = PrivateKeyDer::from_pem_file(&cfg.key_file)
        .map_err(|e| file_error("key_file", &cfg.key_file, e))?;
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Config(e.to_string()))?;
    let builder = match &cfg.client_ca_file {
        Some(ca) => {
            let mut roots = RootCertStore::empty();
            for cert in read_certs("client_ca_file", ca)? {
                roots
                    .add(cert)
                    .map_err(|e| file_error("client_ca_file", ca, e))?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .map_err(|e| TlsError::Config(e.to_string()))?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let config = builder
        .with_single_cert(chain, key)
        .map_err(|e| TlsError::Config(format!("certificate and key: {e}")))?;
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// SHA-256 (lower-case hex) of a DER certificate, as `tls_fingerprint` expects it.
pub fn fingerprint(der: &[u8]) -> String {
    hex::encode(Sha256::digest(der))
}

/// Run the server handshake on an accepted connection within `timeout`.
pub async fn handshake(
    acceptor: &TlsAcceptor,
    stream: TcpStream,
    timeout: Duration,
) -> Result<(TlsStream<TcpStream>, TlsIdentity), TlsError> {
    let tls = match tokio::time::timeout(timeout, acceptor.accept(stream)).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => return Err(TlsError::Handshake(e)),
        Err(_) => return Err(TlsError::HandshakeTimeout),
    };
    let client_cert_sha256 = tls
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|c| c.first())
        .map(|c| fingerprint(c.as_ref()));
    Ok((tls, TlsIdentity { client_cert_sha256 }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprint_is_sha256_hex() {
        assert_eq!(
            fingerprint(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn missing_files_are_named() {
        let cfg = DimseTlsConfig {
            enabled: true,
            cert_file: "/nonexistent/cert.pem".into(),
            key_file: "/nonexistent/key.pem".into(),
            ..Default::default()
        };
        let err = acceptor(&cfg).err().expect("fails").to_string();
        assert!(
            err.contains("cert_file") && err.contains("/nonexistent/cert.pem"),
            "{err}"
        );
    }
}
