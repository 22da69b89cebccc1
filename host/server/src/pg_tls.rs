//! How a connection to PostgreSQL is protected: the URL's `sslmode`, with
//! libpq's meanings, over rustls.
//!
//! | `sslmode` | TLS | the server's certificate |
//! | --- | --- | --- |
//! | `disable` | never | — |
//! | `prefer` (the default, as in libpq) | when the server offers it | not checked |
//! | `require` | always: no TLS, no connection | not checked |
//! | `verify-ca` | always | signed by `sslrootcert` |
//! | `verify-full` | always | signed by `sslrootcert`, and names the host |
//!
//! `sslrootcert=FILE` is a PEM file of the certificates to trust; without
//! it, `verify-ca` and `verify-full` trust the Mozilla roots
//! (`webpki-roots`). `tokio-postgres` itself knows only `disable`, `prefer`
//! and `require`, so the URL it is given says which of those, and the
//! checking of the certificate is this module's.

use anyhow::Context as _;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, ClientConfig, DigitallySignedStruct, Error, RootCertStore, SignatureScheme};
use std::sync::Arc;
use tokio_postgres_rustls::MakeRustlsConnect;

/// The connection settings and TLS connector for `url`, a
/// `postgres://…[?sslmode=…&sslrootcert=…]` URL.
pub fn connect_config(url: &str) -> anyhow::Result<(postgres::Config, MakeRustlsConnect)> {
    let redacted = crate::pg::redact(url);
    let not_a_url =
        || format!("{redacted} is not a PostgreSQL connection URL (postgres://USER@HOST:PORT/DB[?sslmode=…])");
    let mut parsed = url::Url::parse(url).with_context(not_a_url)?;
    let mut mode = None;
    let mut root_file = None;
    let mut rest = Vec::new();
    for (key, value) in parsed.query_pairs() {
        match key.as_ref() {
            "sslmode" => mode = Some(value.into_owned()),
            "sslrootcert" => root_file = Some(value.into_owned()),
            _ => rest.push((key.into_owned(), value.into_owned())),
        }
    }
    let mode = mode.as_deref().unwrap_or("prefer");
    let (driver_mode, check) = match mode {
        "disable" => ("disable", Check::Nothing),
        "allow" | "prefer" => ("prefer", Check::Nothing),
        "require" => ("require", Check::Nothing),
        "verify-ca" => ("require", Check::Chain),
        "verify-full" => ("require", Check::ChainAndName),
        other => anyhow::bail!(
            "{redacted}: sslmode {other:?} is not one of disable, prefer, require, verify-ca, verify-full"
        ),
    };
    anyhow::ensure!(
        root_file.is_none() || matches!(check, Check::Chain | Check::ChainAndName),
        "{redacted}: sslrootcert is read only with sslmode verify-ca or verify-full"
    );
    rest.push(("sslmode".into(), driver_mode.into()));
    parsed.query_pairs_mut().clear().extend_pairs(&rest);
    let config: postgres::Config = parsed.as_str().parse().with_context(not_a_url)?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .context("cannot set up TLS")?;
    let tls = match check {
        Check::Nothing => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(Unchecked(provider)))
            .with_no_client_auth(),
        Check::Chain | Check::ChainAndName => {
            let roots = Arc::new(roots(root_file.as_deref()).with_context(|| format!("{redacted}: sslrootcert"))?);
            let webpki = rustls::client::WebPkiServerVerifier::builder_with_provider(roots, provider)
                .build()
                .context("cannot set up certificate checks")?;
            match check {
                Check::ChainAndName => builder.with_webpki_verifier(webpki).with_no_client_auth(),
                _ => builder
                    .dangerous()
                    .with_custom_certificate_verifier(Arc::new(ChainOnly(webpki)))
                    .with_no_client_auth(),
            }
        }
    };
    Ok((config, MakeRustlsConnect::new(tls)))
}

/// What is checked of the server's certificate.
#[derive(Clone, Copy)]
enum Check {
    Nothing,
    Chain,
    ChainAndName,
}

/// The certificates to trust: those in `file` (PEM), else Mozilla's roots.
fn roots(file: Option<&str>) -> anyhow::Result<RootCertStore> {
    let mut roots = RootCertStore::empty();
    let Some(file) = file else {
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        return Ok(roots);
    };
    use rustls::pki_types::pem::PemObject as _;
    let certificates: Vec<CertificateDer> = CertificateDer::pem_file_iter(file)
        .with_context(|| format!("cannot read {file}"))?
        .collect::<Result<_, _>>()
        .with_context(|| format!("{file} is not a PEM file of certificates"))?;
    anyhow::ensure!(!certificates.is_empty(), "{file} holds no certificate");
    for certificate in certificates {
        roots
            .add(certificate)
            .with_context(|| format!("{file} holds a certificate that cannot be trusted"))?;
    }
    Ok(roots)
}

/// `sslmode` `prefer` and `require`: the session is encrypted and its
/// handshake checked, but the certificate is taken as given (libpq does
/// the same; `verify-full` is the mode that checks it).
#[derive(Debug)]
struct Unchecked(Arc<CryptoProvider>);

impl ServerCertVerifier for Unchecked {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// `sslmode` `verify-ca`: the chain must lead to a trusted root; the name
/// in the certificate need not be the host's.
#[derive(Debug)]
struct ChainOnly(Arc<rustls::client::WebPkiServerVerifier>);

impl ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, Error> {
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
        {
            Err(Error::InvalidCertificate(CertificateError::NotValidForName))
            | Err(Error::InvalidCertificate(CertificateError::NotValidForNameContext { .. })) => {
                Ok(ServerCertVerified::assertion())
            }
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_driver_is_told_disable_prefer_or_require() {
        let mode = |url: &str| connect_config(url).map(|(config, _)| config.get_ssl_mode());
        use postgres::config::SslMode;
        assert_eq!(mode("postgres://u@h/db").unwrap(), SslMode::Prefer);
        assert_eq!(mode("postgres://u@h/db?sslmode=disable").unwrap(), SslMode::Disable);
        assert_eq!(mode("postgres://u@h/db?sslmode=require").unwrap(), SslMode::Require);
        assert_eq!(mode("postgres://u@h/db?sslmode=verify-full").unwrap(), SslMode::Require);
        assert_eq!(mode("postgres://u@h/db?sslmode=verify-ca").unwrap(), SslMode::Require);
    }

    #[test]
    fn a_url_is_shown_without_its_password() {
        use crate::pg::redact;
        assert_eq!(redact("postgres://u:hunter2@h:5432/db"), "postgres://u:***@h:5432/db");
        assert_eq!(
            redact("postgresql://u@h/db?password=hunter2&sslmode=require"),
            "postgresql://u@h/db?password=***&sslmode=require"
        );
        assert!(
            !redact("postgres://u:hunter2@[::1/db").contains("hunter2"),
            "unparsable: nothing shown"
        );
        assert_eq!(redact("/var/lib/assets/state.db"), "/var/lib/assets/state.db");
    }

    #[test]
    fn a_bad_mode_or_root_file_is_refused_without_the_password() {
        for url in [
            "postgres://u:hunter2@h/db?sslmode=sometimes",
            "postgres://u:hunter2@h/db?sslmode=verify-full&sslrootcert=/nonexistent.pem",
            "postgres://u:hunter2@h/db?sslmode=require&sslrootcert=/nonexistent.pem",
        ] {
            let error = format!("{:#}", connect_config(url).err().unwrap());
            assert!(!error.contains("hunter2"), "{error}");
            assert!(error.contains("ssl"), "{error}");
        }
    }
}
