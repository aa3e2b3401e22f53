//! The pure parts of upgrades: what asks for one, what is admitted, what the pod gets
//! and what the client gets back.

use std::num::NonZeroU16;
use std::time::Instant;

use fairway_proto::model::{
    Backend, EndpointSet, EndpointSetKey, Route, RouteKey, RouteTable, Rule, Version,
};
use http::header::{CONNECTION, HOST, SEC_WEBSOCKET_KEY, UPGRADE};
use http::{Method, Request, Version as HttpVersion};

use base64::Engine as _;
use bytes::Bytes;
use http::header::SEC_WEBSOCKET_ACCEPT;

use super::*;
use crate::table::Table;

fn request(version: HttpVersion, fields: &[(&str, &str)]) -> Request<RequestBody> {
    let mut r = Request::new(RequestBody::Buffered(crate::request::Replayable::new(
        Bytes::new(),
        None,
    )));
    *r.version_mut() = version;
    *r.uri_mut() = "/chat?room=1".parse().expect("uri");
    for (name, value) in fields {
        r.headers_mut().append(
            http::header::HeaderName::from_bytes(name.as_bytes()).expect("name"),
            HeaderValue::from_str(value).expect("value"),
        );
    }
    r
}

fn websocket(fields: &[(&str, &str)]) -> Request<RequestBody> {
    let mut all = vec![
        ("host", "chat.test"),
        ("connection", "keep-alive, Upgrade"),
        ("upgrade", "websocket"),
    ];
    all.extend_from_slice(fields);
    request(HttpVersion::HTTP_11, &all)
}

fn table(upgrades: &[&str]) -> Table {
    let set = EndpointSetKey {
        namespace: "shop".into(),
        service: "chat".into(),
        port: NonZeroU16::new(8080).expect("port"),
    };
    let mut route = Route {
        key: RouteKey {
            namespace: "shop".into(),
            name: "chat".into(),
        },
        hosts: vec!["chat.test".into()],
        rules: vec![Rule {
            path_prefix: "/".into(),
            matching: Default::default(),
            timeouts: None,
            retries: None,
            filters: Default::default(),
            backends: vec![Backend {
                endpoint_set: set.clone(),
                weight: 1,
            }],
            unresolved: Vec::new(),
        }],
        load_balancer: Default::default(),
        upstream: Default::default(),
        timeouts: Default::default(),
        retries: Default::default(),
        health_check: None,
    };
    route.upstream.upgrades.protocols = upgrades.iter().map(|p| (*p).to_owned()).collect();
    let source = RouteTable {
        routes: [(route.key.clone(), route.into())].into(),
        endpoint_sets: [(set.clone(), EndpointSet::new(set).into())].into(),
    };
    Table::build(
        std::sync::Arc::new(source),
        Version {
            epoch: 1,
            sequence: 1,
        },
        &Table::default(),
        (None, None),
        Instant::now(),
    )
}

#[test]
fn what_asks_for_an_upgrade() {
    let ask = asked(&websocket(&[])).expect("a WebSocket handshake asks");
    assert_eq!(ask.via, Via::Http1);
    assert_eq!(ask.protocols, ["websocket"]);

    let both = request(
        HttpVersion::HTTP_11,
        &[("connection", "upgrade"), ("upgrade", "foo/2, websocket")],
    );
    assert_eq!(
        asked(&both).expect("asks").protocols,
        ["foo/2", "websocket"]
    );

    let no_connection = request(HttpVersion::HTTP_11, &[("upgrade", "websocket")]);
    assert_eq!(
        asked(&no_connection),
        None,
        "Upgrade without Connection: upgrade"
    );
    let old = request(
        HttpVersion::HTTP_10,
        &[("connection", "upgrade"), ("upgrade", "websocket")],
    );
    assert_eq!(asked(&old), None, "HTTP/1.0 never upgrades (RFC 9110 7.8)");

    let mut connect = request(HttpVersion::HTTP_2, &[]);
    *connect.method_mut() = Method::CONNECT;
    assert_eq!(asked(&connect), None, "a plain CONNECT is no upgrade");
    connect
        .extensions_mut()
        .insert(hyper::ext::Protocol::from_static("websocket"));
    let ask = asked(&connect).expect("extended CONNECT asks");
    assert_eq!(ask.via, Via::ExtendedConnect);
}

#[test]
fn what_the_route_admits() {
    let table = table(&["websocket"]);
    let ask = |r: &Request<RequestBody>| asked(r).expect("asks");

    let plain = websocket(&[]);
    assert!(matches!(admit(&table, &plain, &ask(&plain)), Admit::Tunnel(p) if p == "websocket"));

    let h2c = request(
        HttpVersion::HTTP_11,
        &[
            ("host", "chat.test"),
            ("connection", "upgrade"),
            ("upgrade", "h2c"),
        ],
    );
    assert!(
        matches!(admit(&table, &h2c, &ask(&h2c)), Admit::Plain),
        "h2c goes on without its upgrade"
    );

    let with_body = websocket(&[("content-length", "5")]);
    assert!(matches!(
        admit(&table, &with_body, &ask(&with_body)),
        Admit::Refuse(ProxyError::UpgradeWithBody)
    ));
    let chunked = websocket(&[("transfer-encoding", "chunked")]);
    assert!(matches!(
        admit(&table, &chunked, &ask(&chunked)),
        Admit::Refuse(ProxyError::UpgradeWithBody)
    ));
    let empty_body = websocket(&[("content-length", "0")]);
    assert!(matches!(
        admit(&table, &empty_body, &ask(&empty_body)),
        Admit::Tunnel(_)
    ));

    let unknown = request(
        HttpVersion::HTTP_11,
        &[
            ("host", "nope.test"),
            ("connection", "upgrade"),
            ("upgrade", "websocket"),
        ],
    );
    assert!(
        matches!(admit(&table, &unknown, &ask(&unknown)), Admit::Plain),
        "an unknown host is the normal path's 404"
    );

    let closed = self::table(&[]);
    assert!(
        matches!(admit(&closed, &plain, &ask(&plain)), Admit::Plain),
        "a Route that allows no upgrade forwards the request without it"
    );
    let mut connect = request(HttpVersion::HTTP_2, &[]);
    *connect.method_mut() = Method::CONNECT;
    *connect.uri_mut() = "http://chat.test/chat".parse().expect("uri");
    connect
        .extensions_mut()
        .insert(hyper::ext::Protocol::from_static("websocket"));
    assert!(
        matches!(
            admit(&closed, &connect, &ask(&connect)),
            Admit::Refuse(ProxyError::UpgradeNotAllowed { .. })
        ),
        "an extended CONNECT cannot go on as a plain request"
    );
}

#[test]
fn the_pod_gets_the_upgrade_without_other_hop_by_hop_fields() {
    let client = HeaderValue::from_static("10.0.0.9");
    let (parts, _) = websocket(&[
        ("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="),
        ("keep-alive", "timeout=5"),
    ])
    .into_parts();
    let up = http1_request(&parts, "chat.test", "websocket", Via::Http1, &client);
    assert_eq!(up.method(), Method::GET);
    assert_eq!(up.uri(), "/chat?room=1");
    assert_eq!(up.headers()[CONNECTION], "upgrade");
    assert_eq!(up.headers()[UPGRADE], "websocket");
    assert_eq!(up.headers()[HOST], "chat.test");
    assert_eq!(up.headers()[SEC_WEBSOCKET_KEY], "dGhlIHNhbXBsZSBub25jZQ==");
    assert!(
        !up.headers().contains_key("keep-alive"),
        "hop-by-hop fields go"
    );
    assert_eq!(up.headers()["x-forwarded-for"], "10.0.0.9");
}

#[test]
fn an_extended_connect_becomes_a_websocket_handshake() {
    let client = HeaderValue::from_static("10.0.0.9");
    let mut connect = request(HttpVersion::HTTP_2, &[("sec-websocket-version", "13")]);
    *connect.method_mut() = Method::CONNECT;
    let (parts, _) = connect.into_parts();
    let up = http1_request(
        &parts,
        "chat.test",
        "websocket",
        Via::ExtendedConnect,
        &client,
    );
    assert_eq!(up.method(), Method::GET);
    assert_eq!(up.version(), HttpVersion::HTTP_11);
    assert_eq!(up.headers()[UPGRADE], "websocket");
    let key = up.headers()[SEC_WEBSOCKET_KEY].to_str().expect("ascii");
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(key)
        .expect("the key is base64");
    assert_eq!(decoded.len(), 16, "RFC 6455: a 16-byte nonce");
}

#[test]
fn the_pods_101_must_name_the_protocol_asked_for() {
    let mut headers = HeaderMap::new();
    headers.insert(UPGRADE, HeaderValue::from_static("WebSocket"));
    assert_eq!(
        switched_to(&headers, "websocket"),
        Ok(()),
        "names compare without case"
    );
    headers.insert(UPGRADE, HeaderValue::from_static("h2c"));
    assert_eq!(switched_to(&headers, "websocket"), Err("h2c".to_owned()));
    assert!(switched_to(&HeaderMap::new(), "websocket").is_err());
}

#[test]
fn the_client_gets_101_or_200() {
    let mut pod = HeaderMap::new();
    pod.insert(UPGRADE, HeaderValue::from_static("websocket"));
    pod.insert(CONNECTION, HeaderValue::from_static("Upgrade"));
    pod.insert(
        SEC_WEBSOCKET_ACCEPT,
        HeaderValue::from_static("s3pPLMBiTxaQ9kYGzzhZRbK+xOo="),
    );
    let h1 = client_response(&pod, false, Via::Http1, "websocket", None);
    assert_eq!(h1.status(), StatusCode::SWITCHING_PROTOCOLS);
    assert_eq!(h1.headers()[UPGRADE], "websocket");
    assert_eq!(h1.headers()[CONNECTION], "upgrade");
    assert!(h1.headers().contains_key(SEC_WEBSOCKET_ACCEPT));
    let h2 = client_response(&pod, false, Via::ExtendedConnect, "websocket", None);
    assert_eq!(
        h2.status(),
        StatusCode::OK,
        "RFC 8441: 200 to an extended CONNECT"
    );
    assert!(!h2.headers().contains_key(UPGRADE));
    assert!(!h2.headers().contains_key(CONNECTION));
    assert!(!h2.headers().contains_key(SEC_WEBSOCKET_ACCEPT));
}

#[test]
fn an_http1_client_of_an_http2_pod_gets_the_accept_key_from_the_proxy() {
    // RFC 6455 section 1.3's own example.
    assert_eq!(
        shape::websocket_accept(b"dGhlIHNhbXBsZSBub25jZQ=="),
        "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
    );
    let key = HeaderValue::from_static("dGhlIHNhbXBsZSBub25jZQ==");
    let response = client_response(&HeaderMap::new(), true, Via::Http1, "websocket", Some(&key));
    assert_eq!(response.status(), StatusCode::SWITCHING_PROTOCOLS);
    assert_eq!(response.headers()[UPGRADE], "websocket");
    assert_eq!(
        response.headers()[SEC_WEBSOCKET_ACCEPT],
        "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
    );
}

#[test]
fn an_http2_pod_gets_an_extended_connect_without_the_http1_key() {
    let client = HeaderValue::from_static("10.0.0.9");
    let (parts, _) = websocket(&[("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==")]).into_parts();
    let up = http2_request(&parts, "chat.test", "websocket", &client).expect("a request");
    assert_eq!(up.method(), Method::CONNECT);
    assert_eq!(up.uri(), "http://chat.test/chat?room=1");
    assert_eq!(
        up.extensions()
            .get::<hyper::ext::Protocol>()
            .map(|p| p.as_str()),
        Some("websocket")
    );
    assert!(!up.headers().contains_key(SEC_WEBSOCKET_KEY));
    assert!(!up.headers().contains_key(UPGRADE));
    assert!(!up.headers().contains_key(CONNECTION));
    assert_eq!(up.headers()["sec-websocket-version"], "13");
}
