//! TLS on the Discovery stream: the proxy verifies the controller with a CA file and
//! proves itself with a client certificate (a stream without one is refused); a
//! certificate rotated on disk is served without a restart.

use std::path::Path;
use std::sync::Arc;

use fairway_controller::tls::TlsConfig;
use fairway_tests::controller::Security;
use fairway_tests::eventually;
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tonic::transport::{Certificate, ClientTlsConfig, Identity};

use crate::support::{AUDIENCE, PROXY_SA, Proxy, Setup, WAIT, open};

/// A CA and what it signs.
pub struct Pki {
    pub ca: CertifiedIssuer<'static, KeyPair>,
}

impl Pki {
    pub fn new() -> Pki {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("ca params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, "fairway-auth-test-ca");
        let ca = CertifiedIssuer::self_signed(params, KeyPair::generate().expect("ca key"))
            .expect("self-sign the ca");
        Pki { ca }
    }

    /// A certificate for `names` signed by the CA: (certificate PEM, key PEM).
    pub fn issue(&self, names: &[&str]) -> (String, String) {
        let key = KeyPair::generate().expect("key");
        let params =
            CertificateParams::new(names.iter().map(|n| (*n).to_owned()).collect::<Vec<_>>())
                .expect("params");
        let cert = params.signed_by(&key, &self.ca).expect("sign");
        (cert.pem(), key.serialize_pem())
    }
}

pub fn write(path: &Path, contents: &str) {
    std::fs::write(path, contents).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
}

/// A directory with a fresh CA (`ca.crt`) and a server certificate for 127.0.0.1
/// signed by it (`tls.crt`, `tls.key`).
pub fn server_files(pki: &Pki) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    write(&dir.path().join("ca.crt"), &pki.ca.pem());
    let (cert, key) = pki.issue(&["127.0.0.1"]);
    write(&dir.path().join("tls.crt"), &cert);
    write(&dir.path().join("tls.key"), &key);
    dir
}

/// The leaf certificate the server at `addr` presents now.
async fn served_certificate(
    addr: std::net::SocketAddr,
    ca_pem: &str,
    client: (&str, &str),
) -> Option<Vec<u8>> {
    let mut roots = rustls::RootCertStore::empty();
    for ca in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(ca.ok()?).ok()?;
    }
    let chain: Vec<_> = CertificateDer::pem_slice_iter(client.0.as_bytes())
        .collect::<Result<_, _>>()
        .ok()?;
    let key = PrivateKeyDer::from_pem_slice(client.1.as_bytes()).ok()?;
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .ok()?
    .with_root_certificates(roots)
    .with_client_auth_cert(chain, key)
    .ok()?;
    config.alpn_protocols = vec![b"h2".to_vec()];
    let tcp = tokio::net::TcpStream::connect(addr).await.ok()?;
    let name = ServerName::try_from("127.0.0.1").ok()?;
    let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
        .ok()?;
    let (_, session) = tls.get_ref();
    Some(session.peer_certificates()?.first()?.to_vec())
}

fn der(pem: &str) -> Vec<u8> {
    CertificateDer::from_pem_slice(pem.as_bytes())
        .expect("certificate pem")
        .to_vec()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_proxy_connects_over_tls_and_a_rotated_certificate_is_served() {
    fairway_controller::process::install_crypto_provider();
    let setup = Setup::new("auth-tls").await;
    setup.service_account(PROXY_SA).await;
    setup.route().await;

    let pki = Pki::new();
    let dir = server_files(&pki);
    let path = |name: &str| dir.path().join(name);
    let server_cert = std::fs::read_to_string(path("tls.crt")).expect("read tls.crt");
    let (client_cert, client_key) = pki.issue(&["fairway-proxy"]);
    write(&path("client.crt"), &client_cert);
    write(&path("client.key"), &client_key);
    write(&path("token"), &setup.token(PROXY_SA, AUDIENCE).await);

    let controller = setup
        .controller(Security {
            auth: setup.authenticator(),
            tls: Some(TlsConfig {
                cert_file: path("tls.crt"),
                key_file: path("tls.key"),
                client_ca_file: Some(path("ca.crt")),
            }),
            ..Security::default()
        })
        .await;
    assert!(
        controller.endpoint.starts_with("https://"),
        "{}",
        controller.endpoint
    );

    let proxy = Proxy::start(&[
        format!("--controller={}", controller.endpoint),
        format!("--controller-ca-file={}", path("ca.crt").display()),
        format!("--controller-cert-file={}", path("client.crt").display()),
        format!("--controller-key-file={}", path("client.key").display()),
        format!("--controller-token-file={}", path("token").display()),
        "--id=auth-tls-proxy".to_owned(),
        "--node=test-node".to_owned(),
        "--log-format=text".to_owned(),
    ])
    .await;
    proxy
        .serves("the proxy to get its table over TLS and route")
        .await;

    // Without a client certificate no Discovery stream opens, whatever the token (the
    // handshake lets it through: drain hooks on this port have none).
    let token = setup.token(PROXY_SA, AUDIENCE).await;
    let no_identity = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(pki.ca.pem()));
    let refused = open(&controller.endpoint, Some(no_identity), Some(&token)).await;
    assert!(
        refused
            .as_ref()
            .is_err_and(|s| s.code() == tonic::Code::Unauthenticated
                && s.message().contains("client certificate")),
        "the controller requires a client certificate for Discovery: {refused:?}"
    );
    let with_identity = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(pki.ca.pem()))
        .identity(Identity::from_pem(&client_cert, &client_key));
    open(
        &controller.endpoint,
        Some(with_identity.clone()),
        Some(&token),
    )
    .await
    .unwrap_or_else(|s| panic!("a verified client with a valid token is admitted: {s:?}"));

    let client = (client_cert.as_str(), client_key.as_str());
    let served = served_certificate(controller.addr, &pki.ca.pem(), client).await;
    assert_eq!(
        served,
        Some(der(&server_cert)),
        "the first certificate is served"
    );

    // Rotate on disk, key first: in between the pair does not match and the old one
    // stays; once both are written the new one is served, with no restart.
    let (rotated_cert, rotated_key) = pki.issue(&["127.0.0.1"]);
    write(&path("tls.key"), &rotated_key);
    write(&path("tls.crt"), &rotated_cert);
    let ca = pki.ca.pem();
    eventually(WAIT, "the rotated certificate to be served", || {
        let ca = ca.clone();
        let rotated = der(&rotated_cert);
        async move {
            let served = served_certificate(controller.addr, &ca, client).await?;
            (served == rotated).then_some(())
        }
    })
    .await;
    open(&controller.endpoint, Some(with_identity), Some(&token))
        .await
        .unwrap_or_else(|s| panic!("streams open under the rotated certificate: {s:?}"));
    proxy
        .serves("the proxy to keep routing across the rotation")
        .await;
    proxy.stop().await;
    controller.stop().await;
}
