//! TLS to pods: the rustls client configuration one Route backend asks for, built from
//! the model's [`UpstreamTls`] when the table's shape is built (so once per Route
//! change, not per request), and the identity the pools are keyed by.
//!
//! Pure apart from parsing: no socket here. The handshake is `pool::connect`'s.
//! Everything the proxy accepts from a pod follows from this config: its certificate
//! chains to the set's CA (rustls' webpki verifier, ring provider, TLS 1.2 and 1.3)
//! and carries [`PodTls::server_name`], or, when the model lists subject alt names, one
//! of those ([`AnyName`]); ALPN offers what the Route may speak.

use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::Arc;

use fairway_proto::model::{AppProtocol, EndpointSetKey, UpstreamProtocol, UpstreamTls};
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};

/// What ALPN offers a pod, from the protocol the Route asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Alpn {
    /// `http/1.1` only: the Route says `HTTP1`.
    Http1,
    /// `h2` only: the Route says `HTTP2`, or the port's `appProtocol` means HTTP/2.
    Http2,
    /// `h2`, then `http/1.1`: the pod chooses; a pod that answers no ALPN gets HTTP/1.1.
    Either,
}

impl Alpn {
    /// The offer for a backend whose Route asks for `asked` and resolved to `resolved`.
    pub fn new(asked: UpstreamProtocol, resolved: AppProtocol) -> Alpn {
        match (asked, resolved) {
            (_, AppProtocol::H2c) => Alpn::Http2,
            (UpstreamProtocol::Http1, _) => Alpn::Http1,
            _ => Alpn::Either,
        }
    }

    fn protocols(self) -> Vec<Vec<u8>> {
        let (h2, http1) = (b"h2".to_vec(), b"http/1.1".to_vec());
        match self {
            Alpn::Http1 => vec![http1],
            Alpn::Http2 => vec![h2],
            Alpn::Either => vec![h2, http1],
        }
    }
}

/// Why no TLS client could be built for a backend. Every connection to its pods is then
/// refused with this reason (never made in plaintext).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TlsConfigError {
    #[error("no CA certificate to verify the pods with (see the Route's status)")]
    NoCa,
    #[error("reading the CA certificates: {0}")]
    Pem(String),
    #[error("a CA certificate was refused: {0}")]
    Root(String),
    #[error("{0:?} is not a valid TLS server name")]
    ServerName(String),
    #[error("subject alt name {0:?} is not a valid DNS name")]
    SubjectAltName(String),
    #[error("building the TLS client: {0}")]
    Client(String),
    /// Upgraded connections (WebSocket) go through hyper's client on a connection of
    /// their own, which does not do TLS to pods yet: refused rather than sent plaintext.
    #[error("upgrades over TLS to pods are not supported yet")]
    Upgrade,
}

/// TLS to the pods of one backend: what it verifies, and the client that does.
#[derive(Debug)]
pub struct PodTls {
    /// The name the pods' certificates must carry (also sent as SNI).
    pub server_name: String,
    pub alpn: Alpn,
    pub identity: TlsIdentity,
    config: Result<(Arc<ClientConfig>, ServerName<'static>), TlsConfigError>,
}

/// What a TLS connection was verified against: the CA, the names and the ALPN offer.
/// Equal identities verify alike, whatever table version built them: a new version
/// with the same CA keeps its pooled connections, and a CA change opens new ones.
/// Cheap to clone (one `Arc`), and hashed by a fingerprint, so a pool lookup hashes 8
/// bytes, not the PEM; equality still compares the whole content.
#[derive(Clone, Debug)]
pub struct TlsIdentity {
    fingerprint: u64,
    content: Arc<(String, String, Vec<String>, Alpn)>,
}

impl TlsIdentity {
    fn new(ca_pem: &str, server_name: &str, sans: &[String], alpn: Alpn) -> Self {
        let mut hasher = DefaultHasher::new();
        (ca_pem, server_name, sans, alpn).hash(&mut hasher);
        let content = (
            ca_pem.to_owned(),
            server_name.to_owned(),
            sans.to_vec(),
            alpn,
        );
        TlsIdentity {
            fingerprint: hasher.finish(),
            content: Arc::new(content),
        }
    }
}

impl PartialEq for TlsIdentity {
    fn eq(&self, other: &Self) -> bool {
        self.fingerprint == other.fingerprint
            && (Arc::ptr_eq(&self.content, &other.content) || self.content == other.content)
    }
}

impl Eq for TlsIdentity {}

impl Hash for TlsIdentity {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_u64(self.fingerprint);
    }
}

impl PodTls {
    /// The TLS for the pods of `set` under `tls`, offering `alpn`.
    pub fn new(tls: &UpstreamTls, set: &EndpointSetKey, alpn: Alpn) -> PodTls {
        let server_name = tls.server_name(set);
        let sans = &tls.subject_alt_names;
        PodTls {
            identity: TlsIdentity::new(&tls.ca_pem, &server_name, sans, alpn),
            config: client_config(&tls.ca_pem, sans, alpn).and_then(|config| {
                let name = ServerName::try_from(server_name.clone())
                    .map_err(|_| TlsConfigError::ServerName(server_name.clone()))?;
                Ok((config, name))
            }),
            server_name,
            alpn,
        }
    }

    /// The client config and the name to verify, or why there is none.
    pub fn client(&self) -> Result<(Arc<ClientConfig>, ServerName<'static>), TlsConfigError> {
        self.config.clone()
    }
}

impl PartialEq for PodTls {
    fn eq(&self, other: &Self) -> bool {
        self.identity == other.identity
    }
}

impl Eq for PodTls {}

/// A rustls client trusting exactly the certificates in `ca_pem` (not the system's);
/// with `sans`, a pod's certificate must carry one of them instead of the SNI name.
fn client_config(
    ca_pem: &str,
    sans: &[String],
    alpn: Alpn,
) -> Result<Arc<ClientConfig>, TlsConfigError> {
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        let cert = cert.map_err(|e| TlsConfigError::Pem(e.to_string()))?;
        roots
            .add(cert)
            .map_err(|e| TlsConfigError::Root(e.to_string()))?;
    }
    if roots.is_empty() {
        return Err(TlsConfigError::NoCa);
    }
    // The provider named, not the process default: the tests build tables without it.
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsConfigError::Client(e.to_string()))?;
    let mut config = if sans.is_empty() {
        builder.with_root_certificates(roots).with_no_client_auth()
    } else {
        let names = (sans.iter())
            .map(|name| {
                ServerName::try_from(name.clone())
                    .map_err(|_| TlsConfigError::SubjectAltName(name.clone()))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let webpki = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider)
            .build()
            .map_err(|e| TlsConfigError::Client(e.to_string()))?;
        // Not dangerous in the sense rustls means: the chain is still checked by webpki,
        // only against other names than the SNI one, as Gateway API asks.
        let verifier = Arc::new(AnyName { webpki, names });
        (builder.dangerous())
            .with_custom_certificate_verifier(verifier)
            .with_no_client_auth()
    };
    config.alpn_protocols = alpn.protocols();
    Ok(Arc::new(config))
}

/// The webpki verifier, asked once per listed name: a certificate that chains to the
/// CA and carries any one of `names` passes (BackendTLSPolicy's `subjectAltNames`: the
/// SNI name is then not checked).
#[derive(Debug)]
struct AnyName {
    webpki: Arc<WebPkiServerVerifier>,
    names: Vec<ServerName<'static>>,
}

impl ServerCertVerifier for AnyName {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _sni: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let mut last = rustls::Error::General("no subject alt name to verify".to_owned());
        for name in &self.names {
            let verified = (self.webpki).verify_server_cert(
                end_entity,
                intermediates,
                name,
                ocsp_response,
                now,
            );
            match verified {
                Ok(ok) => return Ok(ok),
                Err(error) => last = error,
            }
        }
        Err(last)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.webpki.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.webpki.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.webpki.supported_verify_schemes()
    }
}

#[cfg(test)]
mod tests;
