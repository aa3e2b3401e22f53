//! Scenario 14: TLS to pods (`spec.upstream.tls`). Real HTTPS pods (rustls, certificates
//! made here by rcgen) behind both proxies, the CA in ConfigMaps: the right CA and name
//! are served, over HTTP/2 where the pod chooses it by ALPN; a wrong CA or a wrong name
//! is refused with `502 TlsHandshake`; a missing ConfigMap is that Route's
//! `ResolvedRefs=False` while the others serve; a WebSocket upgrade is refused (not
//! sent in plaintext); a CA changed in its ConfigMap takes effect with no restart.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use fairway::demo::pods::POD_HEADER;
use fairway_tests::eventually;
use fairway_tests::objects::{State, endpoint};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::Api;
use kube::api::{ObjectMeta, Patch, PatchParams};
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;

use crate::world::{CONVERGE, Conn, POD_PORT, World, pod_ip};

const PORT: i32 = POD_PORT as i32;

/// A CA: its PEM, and the issuer that signs pod certificates.
pub(crate) struct Ca {
    pub(crate) pem: String,
    issuer: CertifiedIssuer<'static, KeyPair>,
}

pub(crate) fn ca(name: &str) -> Ca {
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, name);
    let issuer = CertifiedIssuer::self_signed(params, KeyPair::generate().expect("key"))
        .expect("self-signed CA");
    Ca {
        pem: issuer.pem(),
        issuer,
    }
}

/// An HTTPS pod on `ip:8080` with a certificate for `names` from `ca`, offering `alpn`.
/// It answers every request with its name in the pod header and the HTTP version it
/// spoke as the body. The accept loop ends when the pod is dropped.
pub(crate) struct TlsPod(JoinHandle<()>);

impl Drop for TlsPod {
    fn drop(&mut self) {
        self.0.abort();
    }
}

pub(crate) async fn tls_pod(
    name: &'static str,
    ip: &str,
    ca: &Ca,
    names: &[String],
    alpn: &[&str],
) -> TlsPod {
    let key = KeyPair::generate().expect("key");
    let params = CertificateParams::new(names.to_vec()).expect("params");
    let cert = params.signed_by(&key, &ca.issuer).expect("signed");
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_no_client_auth()
        .with_single_cert(vec![CertificateDer::from(cert.der().to_vec())], key)
        .expect("server config");
    config.alpn_protocols = alpn.iter().map(|p| p.as_bytes().to_vec()).collect();
    let acceptor = TlsAcceptor::from(Arc::new(config));
    let listener = (TcpListener::bind(format!("{ip}:{POD_PORT}")).await)
        .unwrap_or_else(|e| panic!("bind {ip}:{POD_PORT}: {e}"));
    TlsPod(tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                // A refused handshake (the proxy distrusting us) just ends here.
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let answer = service_fn(move |request: hyper::Request<Incoming>| async move {
                    let version = format!("{:?}", request.version());
                    let mut response = hyper::Response::new(Full::new(Bytes::from(version)));
                    let value = hyper::header::HeaderValue::from_static(name);
                    response.headers_mut().insert(POD_HEADER, value);
                    Ok::<_, Infallible>(response)
                });
                let server = auto::Builder::new(TokioExecutor::new());
                let _ = server.serve_connection(TokioIo::new(tls), answer).await;
            });
        }
    }))
}

pub(crate) async fn put_config_map(w: &World, name: &str, pem: &str) {
    let api: Api<ConfigMap> = Api::namespaced(w.client.clone(), &w.ns);
    let map = ConfigMap {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            ..ObjectMeta::default()
        },
        data: Some(BTreeMap::from([("ca.crt".to_owned(), pem.to_owned())])),
        ..ConfigMap::default()
    };
    let params = PatchParams::apply("fairway-e2e").force();
    (api.patch(name, &params, &Patch::Apply(&map)).await)
        .unwrap_or_else(|e| panic!("apply ConfigMap {name}: {e}"));
}

/// A Route `name` (host `name.tls.test`) to `service`, TLS with CA ConfigMap `ca`.
fn route_yaml(name: &str, service: &str, ca: &str, hostname: Option<&str>) -> String {
    let hostname = hostname.map_or(String::new(), |h| format!(", hostname: {h}"));
    format!(
        "apiVersion: fairway.dev/v1alpha1
kind: Route
metadata: {{name: {name}}}
spec:
  hosts: [{name}.tls.test]
  rules: [{{backends: [{{service: {service}, port: {PORT}}}]}}]
  upstream: {{tls: {{caCertificateRefs: [{{name: {ca}}}]{hostname}}}}}
  retries: {{attempts: 0}}
"
    )
}

/// Waits until both proxies answer `route` with `status`; returns each proxy's
/// `(pod, body)`.
async fn answers(w: &World, route: &str, status: u16) -> Vec<(Option<String>, String)> {
    let host = format!("{route}.tls.test");
    let mut seen = Vec::new();
    for p in &w.proxies {
        let what = format!("{} answers {host} with {status}", p.id);
        seen.push(
            eventually(CONVERGE, &what, || async {
                let (got, pod, body) = Conn::open(p.listen).await.get(&host, "/").await;
                (got == status).then_some((pod, body))
            })
            .await,
        );
    }
    seen
}

pub async fn tls_to_pods() {
    let mut w = World::new("e2e-tls").await;
    let (good, other) = (ca("fairway-e2e-ca"), ca("another-ca"));
    let dns = |svc: &str| format!("{svc}.{}.svc.cluster.local", w.ns);
    let names = [dns("secure"), dns("secure-h2")];
    let (ip1, ip2) = (pod_ip(13, 11), pod_ip(13, 12));
    let _h1 = tls_pod("tls-h1", &ip1, &good, &names, &["http/1.1"]).await;
    let _h2 = tls_pod("tls-h2", &ip2, &good, &names, &["h2", "http/1.1"]).await;
    for (svc, ip) in [("secure", &ip1), ("secure-h2", &ip2)] {
        w.create_service(svc, PORT).await;
        let slice = format!("{svc}-a");
        w.create_slice(&slice, svc, PORT, vec![endpoint(ip, State::Ready)])
            .await;
    }
    put_config_map(&w, "good-ca", &good.pem).await;
    put_config_map(&w, "other-ca", &other.pem).await;
    let routes = [
        route_yaml("ok", "secure", "good-ca", None),
        route_yaml("alpn", "secure-h2", "good-ca", None),
        route_yaml("wrong-ca", "secure", "other-ca", None),
        route_yaml("wrong-name", "secure", "good-ca", Some("elsewhere.example")),
        route_yaml("no-ca", "secure", "missing-ca", None),
    ];
    let apply = |yaml: &str| {
        let args = ["-n", w.ns.as_str(), "apply", "-f", "-"];
        let out = fairway_tests::kubectl::kubectl(w.cluster, &args, Some(yaml))
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(out.success, "kubectl apply:\n{yaml}\n{}", out.stderr);
    };
    for yaml in &routes {
        apply(yaml);
    }
    w.start().await;
    let pids: Vec<u32> = w.proxies.iter().map(|p| p.pid()).collect();

    for (pod, version) in answers(&w, "ok", 200).await {
        assert_eq!(
            pod.as_deref(),
            Some("tls-h1"),
            "the right CA and name are served"
        );
        assert_eq!(version, "HTTP/1.1", "the pod offers only http/1.1");
    }
    for (pod, version) in answers(&w, "alpn", 200).await {
        assert_eq!(pod.as_deref(), Some("tls-h2"));
        assert_eq!(version, "HTTP/2.0", "the pod chose h2 by ALPN");
    }
    for route in ["wrong-ca", "wrong-name"] {
        for (pod, body) in answers(&w, route, 502).await {
            assert_eq!(pod, None, "{route}: no pod answers");
            assert!(body.starts_with("TlsHandshake: "), "{route}: {body}");
        }
    }
    for (_, body) in answers(&w, "no-ca", 502).await {
        assert!(
            body.starts_with("TlsConfig: "),
            "no CA, no connection: {body}"
        );
    }
    // WebSockets do not do TLS to pods yet: refused, never sent in plaintext.
    let upgrade = [
        ("connection", "upgrade"),
        ("upgrade", "websocket"),
        ("sec-websocket-version", "13"),
        ("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="),
    ];
    for p in &w.proxies {
        let mut conn = Conn::open(p.listen).await;
        let (status, _, body) = conn.request("GET", "ok.tls.test", "/ws", &upgrade).await;
        assert_eq!(status, 502, "{}: {body}", p.id);
        assert!(body.starts_with("TlsConfig: "), "{}: {body}", p.id);
        assert!(body.contains("upgrades over TLS"), "{}: {body}", p.id);
    }
    let message = eventually(CONVERGE, "no-ca: ResolvedRefs=False", || async {
        let path = "jsonpath={.status.conditions[?(@.type==\"ResolvedRefs\")]}";
        let out = w.kubectl(&["get", "route", "no-ca", "-o", path]);
        let c: serde_json::Value = serde_json::from_str(&out.stdout).ok()?;
        (c["status"] == "False" && c["reason"] == "InvalidCACertificateRef")
            .then(|| c["message"].to_string())
    })
    .await;
    assert!(message.contains("missing-ca"), "{message}");

    // The CA changes in its ConfigMap: the same proxies trust the pod from then on.
    put_config_map(&w, "other-ca", &good.pem).await;
    for (pod, _) in answers(&w, "wrong-ca", 200).await {
        assert_eq!(pod.as_deref(), Some("tls-h1"), "the new CA took effect");
    }
    let now: Vec<u32> = w.proxies.iter().map(|p| p.pid()).collect();
    assert_eq!(pids, now, "no proxy restarted");
    // And back: a CA that stops trusting the pod closes the door again.
    put_config_map(&w, "other-ca", &other.pem).await;
    answers(&w, "wrong-ca", 502).await;
    answers(&w, "ok", 200).await;
    w.check_processes();
}
