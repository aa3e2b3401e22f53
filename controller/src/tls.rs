//! TLS for the Discovery server: the certificate and key come from files (a Secret
//! mounted as a volume) and are re-read when they change, so a rotated certificate is
//! served without a restart; an optional client CA makes client certificates mandatory.
//!
//! Where to start: [`server_config`] builds the rustls config around a
//! [`ReloadingCert`] (and a [`ReloadingClientCa`], with a client CA), and returns the
//! [`Reloader`] whose [`Reloader::watch`] polls their files; [`incoming`] turns a
//! listener into handshaken streams for tonic's `serve_with_incoming`.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use arc_swap::ArcSwap;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;
use tokio_stream::wrappers::ReceiverStream;

mod client_ca;

pub use client_ca::ReloadingClientCa;

/// How often the certificate files are checked. Kubernetes updates a mounted Secret
/// within about a minute; a few seconds more is noise, and reading two small files is
/// cheap.
pub const RELOAD_INTERVAL: Duration = Duration::from_secs(5);
/// A client that has not finished its handshake by then is dropped, so half-open
/// connections cannot pile up.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Handshaken connections waiting for tonic to take them.
const ACCEPTED_BUFFER: usize = 64;
/// A failed `accept` (out of file descriptors, usually) is retried after this pause.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// Where the server's key material lives.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsConfig {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
    /// Set: clients must present a certificate signed by this CA.
    pub client_ca_file: Option<PathBuf>,
}

/// The step that failed.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("reading {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} holds no PEM certificate")]
    NoCertificate { path: PathBuf },
    #[error("parsing PEM in {path}: {source}")]
    Pem {
        path: PathBuf,
        #[source]
        source: rustls::pki_types::pem::Error,
    },
    #[error("the key in {key} does not fit the certificate in {cert}: {source}")]
    KeyPair {
        cert: PathBuf,
        key: PathBuf,
        #[source]
        source: rustls::Error,
    },
    #[error("the client CA in {path} is unusable: {reason}")]
    ClientCa { path: PathBuf, reason: String },
    #[error("building the TLS configuration: {0}")]
    Config(#[source] rustls::Error),
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        path: path.to_owned(),
        source,
    })
}

fn certificates(path: &Path, pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|source| TlsError::Pem {
            path: path.to_owned(),
            source,
        })?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate {
            path: path.to_owned(),
        });
    }
    Ok(certs)
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A certificate chain and key that are re-read when their files change.
#[derive(Debug)]
pub struct ReloadingCert {
    cert_file: PathBuf,
    key_file: PathBuf,
    current: ArcSwap<CertifiedKey>,
    /// The file contents behind `current`: a change is a difference in bytes, which
    /// also catches Kubernetes' symlink swap of a whole Secret volume.
    loaded: Mutex<(Vec<u8>, Vec<u8>)>,
}

impl ReloadingCert {
    /// Loads both files; fails if they do not hold a matching certificate and key.
    pub fn load(cert_file: &Path, key_file: &Path) -> Result<Self, TlsError> {
        let (cert_pem, key_pem) = (read(cert_file)?, read(key_file)?);
        let key = certified_key(cert_file, &cert_pem, key_file, &key_pem)?;
        Ok(ReloadingCert {
            cert_file: cert_file.to_owned(),
            key_file: key_file.to_owned(),
            current: ArcSwap::from_pointee(key),
            loaded: Mutex::new((cert_pem, key_pem)),
        })
    }

    /// Re-reads the files. `Ok(true)`: a new certificate is served from now on;
    /// `Ok(false)`: nothing changed; `Err`: the files are unusable and the previous
    /// certificate stays.
    pub fn reload(&self) -> Result<bool, TlsError> {
        let (cert_pem, key_pem) = (read(&self.cert_file)?, read(&self.key_file)?);
        let mut loaded = self.loaded.lock().unwrap_or_else(PoisonError::into_inner);
        if loaded.0 == cert_pem && loaded.1 == key_pem {
            return Ok(false);
        }
        let key = certified_key(&self.cert_file, &cert_pem, &self.key_file, &key_pem)?;
        self.current.store(Arc::new(key));
        *loaded = (cert_pem, key_pem);
        Ok(true)
    }

    /// The certificate served now (leaf first).
    pub fn current(&self) -> Arc<CertifiedKey> {
        self.current.load_full()
    }
}

/// Everything [`server_config`] re-reads from disk.
#[derive(Clone, Debug)]
pub struct Reloader {
    pub cert: Arc<ReloadingCert>,
    pub client_ca: Option<Arc<ReloadingClientCa>>,
}

impl Reloader {
    /// Checks the files every `interval`, forever. A bad file (half-written, or a key
    /// that does not match yet while a rotation is in flight) is logged once and
    /// retried; the previous certificate or CA stays in use meanwhile.
    pub async fn watch(self, interval: Duration) {
        let (mut cert_failing, mut ca_failing) = (false, false);
        loop {
            tokio::time::sleep(interval).await;
            report(
                self.cert.reload(),
                &mut cert_failing,
                "serving a new TLS certificate",
                "cannot load the new TLS certificate; still serving the previous one",
            );
            if let Some(ca) = &self.client_ca {
                report(
                    ca.reload(),
                    &mut ca_failing,
                    "verifying client certificates with a new CA",
                    "cannot load the new client CA; still verifying with the previous one",
                );
            }
        }
    }
}

fn report(result: Result<bool, TlsError>, failing: &mut bool, changed: &str, kept: &str) {
    match result {
        Ok(true) => {
            *failing = false;
            tracing::info!("{changed}");
        }
        Ok(false) => *failing = false,
        Err(e) if !*failing => {
            *failing = true;
            tracing::warn!(error = %e, "{kept}");
        }
        Err(_) => {}
    }
}

fn certified_key(
    cert_file: &Path,
    cert_pem: &[u8],
    key_file: &Path,
    key_pem: &[u8],
) -> Result<CertifiedKey, TlsError> {
    let chain = certificates(cert_file, cert_pem)?;
    let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|source| TlsError::Pem {
        path: key_file.to_owned(),
        source,
    })?;
    CertifiedKey::from_der(chain, key, &provider()).map_err(|source| TlsError::KeyPair {
        cert: cert_file.to_owned(),
        key: key_file.to_owned(),
        source,
    })
}

impl ResolvesServerCert for ReloadingCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current())
    }
}

/// The rustls server configuration for `tls`, and the [`Reloader`] to watch.
pub fn server_config(tls: &TlsConfig) -> Result<(Arc<rustls::ServerConfig>, Reloader), TlsError> {
    let cert = Arc::new(ReloadingCert::load(&tls.cert_file, &tls.key_file)?);
    let client_ca = (tls.client_ca_file.as_deref())
        .map(ReloadingClientCa::load)
        .transpose()?
        .map(Arc::new);
    let builder = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(TlsError::Config)?;
    let builder = match &client_ca {
        None => builder.with_no_client_auth(),
        Some(ca) => builder.with_client_cert_verifier(ca.clone()),
    };
    let mut config = builder.with_cert_resolver(cert.clone());
    // gRPC is HTTP/2 only.
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok((Arc::new(config), Reloader { cert, client_ca }))
}

/// Accepts on `listener` and yields each connection once its TLS handshake is done.
/// Handshakes run concurrently (a slow client delays nobody) and are bounded by
/// [`HANDSHAKE_TIMEOUT`]; failures are logged at debug level (scanners, health checks
/// over plain TCP) and never end the stream. Accepting stops when the stream is dropped.
pub fn incoming(
    listener: TcpListener,
    config: Arc<rustls::ServerConfig>,
) -> ReceiverStream<Result<TlsStream<TcpStream>, std::io::Error>> {
    let acceptor = TlsAcceptor::from(config);
    let (tx, rx) = mpsc::channel(ACCEPTED_BUFFER);
    tokio::spawn(async move {
        loop {
            let accepted = tokio::select! {
                () = tx.closed() => return,
                accepted = listener.accept() => accepted,
            };
            let (tcp, peer) = match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    tracing::warn!(error = %e, "accepting a gRPC connection failed");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                    continue;
                }
            };
            // No Nagle: a one-endpoint delta is ~60 bytes and must not wait for an ACK.
            let _ = tcp.set_nodelay(true);
            let (acceptor, tx) = (acceptor.clone(), tx.clone());
            tokio::spawn(async move {
                match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                    Ok(Ok(stream)) => {
                        let _ = tx.send(Ok(stream)).await;
                    }
                    Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                    Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                }
            });
        }
    });
    ReceiverStream::new(rx)
}

#[cfg(test)]
mod tests;
