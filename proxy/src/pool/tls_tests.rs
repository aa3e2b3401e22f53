//! TLS connections to a real rustls server on loopback: kept and reused like plaintext
//! ones (an idle TLS 1.3 connection receives session tickets, which must not read as
//! "closed"), and refused when the certificate does not verify.

use std::num::NonZeroU16;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use fairway_proto::model::{AppProtocol, EndpointSetKey, UpstreamTls};
use http::Request;
use http_body_util::BodyExt as _;
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use super::*;
use crate::pod::{self, TryError};
use crate::request::UpstreamBody;
use crate::tls::{Alpn, PodTls};

const NAME: &str = "orders.shop.svc.cluster.local";

fn ca() -> CertifiedIssuer<'static, KeyPair> {
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    CertifiedIssuer::self_signed(params, KeyPair::generate().expect("key")).expect("CA")
}

/// A TLS pod answering every HTTP/1.1 request `200 ok` on a kept-alive connection;
/// returns its address and a count of the TCP connections it accepted.
async fn pod_with(ca: &CertifiedIssuer<'static, KeyPair>) -> (EndpointAddr, Arc<AtomicUsize>) {
    let key = KeyPair::generate().expect("key");
    let cert = (CertificateParams::new(vec![NAME.to_owned()]).expect("params"))
        .signed_by(&key, ca)
        .expect("signed");
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_no_client_auth()
        .with_single_cert(vec![CertificateDer::from(cert.der().to_vec())], key)
        .expect("config");
    let acceptor = TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = EndpointAddr(listener.local_addr().expect("addr"));
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = Arc::clone(&accepted);
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            count.fetch_add(1, Ordering::SeqCst);
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let mut buf = Vec::new();
                let mut chunk = [0u8; 1024];
                // One answer per request head, until the client goes away.
                while let Ok(n) = tls.read(&mut chunk).await {
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    while let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        buf.drain(..end + 4);
                        let answer = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
                        if tls.write_all(answer).await.is_err() {
                            return;
                        }
                    }
                }
            });
        }
    });
    (addr, accepted)
}

fn settings(ca_pem: &str) -> ConnSettings {
    settings_named(ca_pem, None, &[])
}

/// TLS to the pod sending `hostname` as SNI (default: [`NAME`]), verifying `sans`.
fn settings_named(ca_pem: &str, hostname: Option<&str>, sans: &[&str]) -> ConnSettings {
    let model = UpstreamTls {
        ca_pem: ca_pem.into(),
        hostname: hostname.map(str::to_owned),
        cluster_domain: "cluster.local".into(),
        subject_alt_names: sans.iter().map(|s| (*s).to_owned()).collect(),
    };
    let set = EndpointSetKey {
        namespace: "shop".into(),
        service: "orders".into(),
        port: NonZeroU16::MIN.saturating_add(8442),
    };
    ConnSettings {
        protocol: AppProtocol::Http1,
        tls: Some(Arc::new(PodTls::new(&model, &set, Alpn::Http1))),
        connect_timeout: Duration::from_secs(5),
        max_connections: 4,
        idle_timeout: Duration::from_secs(90),
        max_age: None,
        max_requests: 0,
    }
}

async fn get(
    pools: &Pools,
    addr: EndpointAddr,
    settings: &ConnSettings,
) -> Result<String, TryError> {
    let request = Request::builder()
        .uri("/")
        .header(http::header::HOST, NAME)
        .body(UpstreamBody::empty())
        .expect("request");
    let response = pod::send(pools, addr, settings, &mut Some(request)).await?;
    let body = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    Ok(String::from_utf8_lossy(&body).into_owned())
}

#[tokio::test]
async fn a_verified_tls_connection_is_pooled_and_reused() {
    let ca = ca();
    let (addr, accepted) = pod_with(&ca).await;
    let pools = Pools::new();
    let settings = settings(&ca.pem());
    for i in 0..3 {
        assert_eq!(
            get(&pools, addr, &settings).await.expect("served"),
            "ok",
            "request {i}"
        );
    }
    assert_eq!(
        accepted.load(Ordering::SeqCst),
        1,
        "three requests, one kept-alive TLS connection (session tickets do not close it)"
    );
}

#[tokio::test]
async fn a_pod_of_another_ca_is_refused_before_anything_is_sent() {
    let (addr, _) = pod_with(&ca()).await;
    let pools = Pools::new();
    let other = ca();
    match get(&pools, addr, &settings(&other.pem())).await {
        Err(TryError::Connect(ConnectError::TlsHandshake { server_name, .. })) => {
            assert_eq!(server_name, NAME);
        }
        got => panic!("expected a refused handshake, got {got:?}"),
    }
}

#[tokio::test]
async fn subject_alt_names_replace_the_hostname_in_verification() {
    let ca = ca();
    let (addr, _) = pod_with(&ca).await;
    let pools = Pools::new();
    // SNI names another host; the certificate carries NAME, one of the listed SANs.
    let listed = settings_named(&ca.pem(), Some("sni.example"), &["other.example", NAME]);
    assert_eq!(
        get(&pools, addr, &listed)
            .await
            .expect("a listed SAN verifies"),
        "ok"
    );
    // The hostname matches the certificate, but SANs are set and none is carried.
    let unlisted = settings_named(&ca.pem(), Some(NAME), &["other.example"]);
    match get(&pools, addr, &unlisted).await {
        Err(TryError::Connect(ConnectError::TlsHandshake { .. })) => {}
        got => panic!("the hostname must not verify once SANs are set, got {got:?}"),
    }
}
