use std::num::NonZeroU16;

use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};

use super::*;

fn ca_pem() -> String {
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let key = KeyPair::generate().expect("key");
    params.self_signed(&key).expect("self-signed").pem()
}

fn set(service: &str) -> EndpointSetKey {
    EndpointSetKey {
        namespace: "shop".into(),
        service: service.into(),
        port: NonZeroU16::new(8443).unwrap(),
    }
}

fn model(ca_pem: &str, hostname: Option<&str>) -> UpstreamTls {
    UpstreamTls {
        ca_pem: ca_pem.into(),
        hostname: hostname.map(str::to_owned),
        cluster_domain: "cluster.local".into(),
        subject_alt_names: Vec::new(),
    }
}

#[test]
fn alpn_offers_what_the_route_may_speak() {
    use AppProtocol::{H2c, Http1};
    use UpstreamProtocol::{Auto, Http1 as AskHttp1, Http2 as AskHttp2};
    let table = [
        (Auto, Http1, Alpn::Either, vec!["h2", "http/1.1"]),
        (Auto, H2c, Alpn::Http2, vec!["h2"]),
        (AskHttp2, H2c, Alpn::Http2, vec!["h2"]),
        (AskHttp1, Http1, Alpn::Http1, vec!["http/1.1"]),
    ];
    for (asked, resolved, alpn, offered) in table {
        assert_eq!(
            Alpn::new(asked, resolved),
            alpn,
            "{asked:?} resolved to {resolved:?}"
        );
        let offered: Vec<Vec<u8>> = offered.iter().map(|p| p.as_bytes().to_vec()).collect();
        assert_eq!(alpn.protocols(), offered);
    }
}

#[test]
fn a_good_ca_builds_a_client_for_the_services_dns_name() {
    let tls = PodTls::new(&model(&ca_pem(), None), &set("orders"), Alpn::Either);
    assert_eq!(tls.server_name, "orders.shop.svc.cluster.local");
    let (config, name) = tls.client().expect("a client");
    assert_eq!(config.alpn_protocols, Alpn::Either.protocols());
    assert_eq!(name.to_str(), "orders.shop.svc.cluster.local");
}

#[test]
fn bad_input_is_an_error_that_refuses_connections() {
    let ca = ca_pem();
    let cases = [
        (model("", None), TlsConfigError::NoCa),
        (model("not a certificate", None), TlsConfigError::NoCa),
        (
            model(&ca, Some("bad name!")),
            TlsConfigError::ServerName("bad name!".into()),
        ),
    ];
    for (tls, want) in cases {
        let got = PodTls::new(&tls, &set("orders"), Alpn::Http1).client();
        assert_eq!(got.err(), Some(want), "{tls:?}");
    }
    let broken = ca.replace("MII", "MI!");
    let got = PodTls::new(&model(&broken, None), &set("orders"), Alpn::Http1).client();
    assert!(
        matches!(got, Err(TlsConfigError::Pem(_) | TlsConfigError::Root(_))),
        "a corrupt PEM body is refused: {got:?}"
    );
}

#[test]
fn equal_when_verifying_alike_whatever_the_arc() {
    let (ca, other_ca) = (ca_pem(), ca_pem());
    let tls = |ca: &str, host: Option<&str>, service: &str, alpn| {
        PodTls::new(&model(ca, host), &set(service), alpn)
    };
    let base = tls(&ca, None, "orders", Alpn::Either);
    assert_eq!(
        base,
        tls(&ca, None, "orders", Alpn::Either),
        "same content, same pool"
    );
    assert_eq!(
        base,
        tls(
            &ca,
            Some("orders.shop.svc.cluster.local"),
            "orders",
            Alpn::Either
        ),
        "the default name spelled out verifies alike"
    );
    for (other, why) in [
        (tls(&other_ca, None, "orders", Alpn::Either), "another CA"),
        (
            tls(&ca, None, "payments", Alpn::Either),
            "another Service's name",
        ),
        (
            tls(&ca, Some("api.example"), "orders", Alpn::Either),
            "another name",
        ),
        (tls(&ca, None, "orders", Alpn::Http1), "another ALPN offer"),
    ] {
        assert_ne!(base, other, "{why} must not share connections");
    }
}
