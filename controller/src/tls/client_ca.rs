//! The client CA of `--tls-client-ca-file`, re-read like the certificate: rotating the
//! CA that signs proxies' certificates needs no controller restart. A verifier built
//! from the file as it is now; each handshake uses whichever is current.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use arc_swap::ArcSwap;
use rustls::client::danger::HandshakeSignatureValid;
use rustls::pki_types::{CertificateDer, UnixTime};
use rustls::server::WebPkiClientVerifier;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{DigitallySignedStruct, DistinguishedName, SignatureScheme};

use super::{TlsError, certificates, provider, read};

/// The verifier in use (a newtype: `ArcSwap` needs a sized value).
#[derive(Debug)]
struct Current(Arc<dyn ClientCertVerifier>);

/// A client-certificate verifier that follows its CA file.
#[derive(Debug)]
pub struct ReloadingClientCa {
    path: PathBuf,
    current: ArcSwap<Current>,
    /// The bytes behind `current`, to notice a change.
    loaded: Mutex<Vec<u8>>,
}

fn verifier(path: &Path, pem: &[u8]) -> Result<Arc<dyn ClientCertVerifier>, TlsError> {
    let unusable = |reason: String| TlsError::ClientCa {
        path: path.to_owned(),
        reason,
    };
    let mut roots = rustls::RootCertStore::empty();
    for ca in certificates(path, pem)? {
        roots.add(ca).map_err(|e| unusable(e.to_string()))?;
    }
    WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider())
        .build()
        .map_err(|e| unusable(e.to_string()))
}

impl ReloadingClientCa {
    /// Loads the CA bundle at `path`; fails if it holds no usable CA.
    pub fn load(path: &Path) -> Result<Self, TlsError> {
        let pem = read(path)?;
        Ok(ReloadingClientCa {
            path: path.to_owned(),
            current: ArcSwap::from_pointee(Current(verifier(path, &pem)?)),
            loaded: Mutex::new(pem),
        })
    }

    /// Re-reads the file: `Ok(true)` when a new CA is in use, `Ok(false)` when nothing
    /// changed, `Err` (previous CA kept) when the new file is unusable.
    pub fn reload(&self) -> Result<bool, TlsError> {
        let pem = read(&self.path)?;
        let mut loaded = self.loaded.lock().unwrap_or_else(PoisonError::into_inner);
        if *loaded == pem {
            return Ok(false);
        }
        self.current
            .store(Arc::new(Current(verifier(&self.path, &pem)?)));
        *loaded = pem;
        Ok(true)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn now(&self) -> Arc<dyn ClientCertVerifier> {
        self.current.load().0.clone()
    }
}

impl ClientCertVerifier for ReloadingClientCa {
    /// Asked for in every handshake and verified when sent, but not required there: a
    /// drain hook (and a replica asking its peers) proves itself with a token alone.
    /// Discovery requires it per stream (`DiscoveryService::requiring_client_certs`).
    fn client_auth_mandatory(&self) -> bool {
        false
    }

    /// No hints: they would have to outlive a reload. An empty list tells the client to
    /// send the certificate it has, which is what a proxy with one certificate does.
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        self.now()
            .verify_client_cert(end_entity, intermediates, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.now().verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.now().verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.now().supported_verify_schemes()
    }
}
