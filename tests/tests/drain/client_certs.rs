//! The drain hook against a controller that requires client certificates for Discovery
//! (`--tls-client-ca-file`, the chart's `discovery.tls.clientSecretName`): the hook has a
//! token and the controller's CA, no certificate of its own, and is answered; a
//! Discovery stream without a certificate on the same port is still refused.

use std::path::Path;

use fairway_controller::tls::TlsConfig;
use fairway_proto::pb::discovery_client::DiscoveryClient;
use fairway_proto::pb::{Hello, ProxyMessage, proxy_message};
use fairway_tests::controller::Security;
use fairway_tests::objects::State;
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint};

use crate::support::{AUDIENCE, Setup, finished};

/// Writes a CA and a server certificate for 127.0.0.1 it signed into `dir`:
/// `ca.crt`, `tls.crt`, `tls.key`.
fn pki(dir: &Path) {
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca =
        CertifiedIssuer::self_signed(params, KeyPair::generate().expect("a key")).expect("a CA");
    let key = KeyPair::generate().expect("a key");
    let cert = CertificateParams::new(vec!["127.0.0.1".to_owned()])
        .expect("server params")
        .signed_by(&key, &ca)
        .expect("a server certificate");
    for (name, pem) in [
        ("ca.crt", ca.pem()),
        ("tls.crt", cert.pem()),
        ("tls.key", key.serialize_pem()),
    ] {
        std::fs::write(dir.join(name), pem).unwrap_or_else(|e| panic!("write {name}: {e}"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hook_without_a_client_certificate_is_answered_where_discovery_requires_one() {
    fairway_controller::process::install_crypto_provider();
    let setup = Setup::new("drain-certs").await;
    setup
        .orders(&[("web-1", State::Ready), ("web-2", State::Terminating)])
        .await;
    let dir = setup.dir.path();
    pki(dir);
    let security = Security {
        tls: Some(TlsConfig {
            cert_file: dir.join("tls.crt"),
            key_file: dir.join("tls.key"),
            client_ca_file: Some(dir.join("ca.crt")),
        }),
        ..Security::default()
    };
    let controller = setup.secured("certs", security).await;
    assert!(
        controller.endpoint.starts_with("https://"),
        "{}",
        controller.endpoint
    );

    // The real hook: the controller's CA and a token, no certificate.
    let token = setup.token_file("web-2", &setup.pod_token("web-2", AUDIENCE).await);
    let hook = tokio::process::Command::new(fairway_tests::bins::binary("fairway"))
        .args(["wait-drained", "--controller", &controller.endpoint])
        .arg("--controller-ca-file")
        .arg(dir.join("ca.crt"))
        .arg("--controller-token-file")
        .arg(&token)
        .args(["--timeout", "20s", "--fallback-sleep", "1s"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("start fairway wait-drained: {e}"));
    let (ok, out, err) = finished(hook).await;
    assert!(
        ok && out.contains("drained after"),
        "answered over TLS without a client certificate; stdout {out:?}, stderr {err:?}"
    );

    // Discovery on the same port still wants one.
    let tls = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(
        std::fs::read_to_string(dir.join("ca.crt")).expect("read ca.crt"),
    ));
    let channel = (Endpoint::from_shared(controller.endpoint.clone()))
        .and_then(|e| e.tls_config(tls))
        .expect("an endpoint")
        .connect()
        .await
        .unwrap_or_else(|e| panic!("the handshake admits a client without a certificate: {e}"));
    let hello = ProxyMessage {
        kind: Some(proxy_message::Kind::Hello(Hello {
            proxy_id: "no-cert".to_owned(),
            node: "test".to_owned(),
            ..Hello::default()
        })),
    };
    let refused = DiscoveryClient::new(channel)
        .stream(tokio_stream::iter([hello]))
        .await;
    assert!(
        refused
            .as_ref()
            .is_err_and(|s| s.code() == tonic::Code::Unauthenticated),
        "a Discovery stream without a client certificate is refused: {:?}",
        refused.map(|_| "opened")
    );
    controller.stop().await;
}
