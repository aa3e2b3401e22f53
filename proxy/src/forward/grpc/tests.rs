use std::num::NonZeroU16;

use fairway_proto::model::{EndpointAddr, EndpointSetKey, RouteKey};

use super::*;
use crate::route::RouteError;

fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (name, value) in pairs {
        map.insert(*name, HeaderValue::from_static(value));
    }
    map
}

fn route() -> RouteKey {
    RouteKey {
        namespace: "shop".into(),
        name: "orders".into(),
    }
}

#[test]
fn grpc_is_http2_with_a_grpc_content_type() {
    let cases = [
        (Version::HTTP_2, "application/grpc", true),
        (Version::HTTP_2, "application/grpc+proto", true),
        (Version::HTTP_2, "application/grpc;charset=utf-8", true),
        (Version::HTTP_2, "application/grpc-web", false),
        (Version::HTTP_2, "application/grpcx", false),
        (Version::HTTP_2, "application/json", false),
        (Version::HTTP_11, "application/grpc", false),
    ];
    for (version, content_type, want) in cases {
        let map = headers(&[("content-type", content_type)]);
        assert_eq!(is_grpc(version, &map), want, "{version:?} {content_type}");
    }
    assert!(
        !is_grpc(Version::HTTP_2, &HeaderMap::new()),
        "no content-type"
    );
}

#[test]
fn grpc_timeout_units_and_malformed_values() {
    let cases = [
        ("1H", Some(Duration::from_secs(3600))),
        ("2M", Some(Duration::from_secs(120))),
        ("30S", Some(Duration::from_secs(30))),
        ("500m", Some(Duration::from_millis(500))),
        ("250u", Some(Duration::from_micros(250))),
        ("99999999n", Some(Duration::from_nanos(99_999_999))),
        ("123456789m", None), // nine digits: more than gRPC allows
        ("m", None),
        ("10s", None), // units are case-sensitive: `s` is not seconds
        ("1.5S", None),
        ("-1S", None),
    ];
    for (value, want) in cases {
        let map = headers(&[("grpc-timeout", value)]);
        assert_eq!(timeout(&map), want, "grpc-timeout: {value}");
    }
    assert_eq!(timeout(&HeaderMap::new()), None, "absent");
}

#[test]
fn the_limit_per_protocol() {
    let s = Duration::from_secs;
    let route = Timeouts {
        request: s(2),
        ..Timeouts::default()
    };
    let capped = Timeouts {
        grpc_maximum: Some(s(5)),
        ..route.clone()
    };
    let opted_out = Timeouts {
        request: Duration::ZERO,
        ..Timeouts::default()
    };
    // (timeouts, None: HTTP, Some(asked): gRPC with that grpc-timeout, want)
    let cases = [
        (&route, None, Some(s(2))),
        (&opted_out, None, None),
        (&route, Some(Some(s(10))), Some(s(10))),
        (&route, Some(None), None),
        (&capped, Some(Some(s(10))), Some(s(5))),
        (&capped, Some(Some(s(1))), Some(s(1))),
        (&capped, Some(None), Some(s(5))),
    ];
    for (timeouts, asked, want) in cases {
        assert_eq!(limit(timeouts, asked), want, "{timeouts:?} asked {asked:?}");
    }
}

#[test]
fn each_proxy_error_has_its_grpc_code() {
    let set = EndpointSetKey {
        namespace: "shop".into(),
        service: "orders".into(),
        port: NonZeroU16::new(8080).expect("non-zero"),
    };
    let endpoint = EndpointAddr("10.0.0.1:8080".parse().expect("addr"));
    let upstream = || crate::pod::UpstreamError::Http1(crate::h1::Error::Closed);
    let cases = [
        (
            ProxyError::Resolve(ResolveError::NoRoute(RouteError::UnknownHost(
                "nope.shop".into(),
            ))),
            Code::Unavailable,
        ),
        (
            ProxyError::Resolve(ResolveError::NoEndpoint {
                route: route(),
                set,
            }),
            Code::Unavailable,
        ),
        (
            ProxyError::Resolve(ResolveError::Unresolved {
                route: route(),
                reason: "ServiceNotFound".into(),
                message: "no Service".into(),
            }),
            Code::Internal,
        ),
        (
            ProxyError::UpstreamReset {
                route: route(),
                endpoint,
                source: upstream(),
            },
            Code::Unavailable,
        ),
        (
            ProxyError::Timeout {
                route: route(),
                timeout: Duration::from_secs(1),
            },
            Code::DeadlineExceeded,
        ),
        (
            ProxyError::Deadline {
                route: route(),
                timeout: Duration::from_millis(500),
            },
            Code::DeadlineExceeded,
        ),
        (
            ProxyError::TryTimeout {
                route: route(),
                endpoint,
                timeout: Duration::from_secs(1),
            },
            Code::DeadlineExceeded,
        ),
        (
            ProxyError::TooManyHeaders { count: 3, max: 2 },
            Code::ResourceExhausted,
        ),
        (ProxyError::MissingHost, Code::Internal),
    ];
    for (error, want) in cases {
        assert_eq!(code(&error), want, "{error}");
        let response = error_response(&error);
        assert_eq!(
            response.status(),
            StatusCode::OK,
            "trailers-only is HTTP 200"
        );
        let h = response.headers();
        assert_eq!(
            h[GRPC_STATUS],
            (want as u16).to_string().as_str(),
            "{error}"
        );
        assert_eq!(
            h[FAIRWAY_ERROR],
            error.reason(),
            "the reason stays a header"
        );
        assert_eq!(h[CONTENT_TYPE], "application/grpc");
        let message = h[GRPC_MESSAGE].to_str().expect("ascii");
        assert!(
            message.starts_with(error.reason()),
            "grpc-message starts with the reason: {message}"
        );
        if let Some(route) = error.route() {
            assert!(
                message.contains(&route.to_string()),
                "names the route: {message}"
            );
        }
        assert!(
            matches!(response.body(), ProxyBody::Full(None)),
            "no body: the headers end the stream"
        );
    }
}

#[test]
fn grpc_message_is_percent_encoded() {
    assert_eq!(percent_encode("plain text: ok"), "plain text: ok");
    assert_eq!(percent_encode("100%"), "100%25");
    assert_eq!(percent_encode("a\nb"), "a%0Ab");
    assert_eq!(percent_encode("é"), "%C3%A9");
}

#[test]
fn trailers_only_status_and_pushback() {
    let map = headers(&[("grpc-status", "14")]);
    assert_eq!(trailers_only_status(&map, true), Some(14));
    assert_eq!(
        trailers_only_status(&map, false),
        None,
        "headers that do not end the stream: a message may follow"
    );
    assert_eq!(trailers_only_status(&HeaderMap::new(), true), None);

    assert_eq!(pushback(&HeaderMap::new()), Pushback::None);
    let cases = [
        ("250", Pushback::Wait(Duration::from_millis(250))),
        ("0", Pushback::Wait(Duration::ZERO)),
        ("-1", Pushback::Refuse),
        ("soon", Pushback::Refuse),
    ];
    for (value, want) in cases {
        let map = headers(&[("grpc-retry-pushback-ms", value)]);
        assert_eq!(pushback(&map), want, "grpc-retry-pushback-ms: {value}");
    }
}

#[test]
fn a_grpc_call_that_met_an_http1_pod_says_how_to_fix_the_route() {
    let endpoint = EndpointAddr("10.0.0.1:8080".parse().expect("addr"));
    let error = ProxyError::UpstreamReset {
        route: route(),
        endpoint,
        source: crate::pod::UpstreamError::Http1(crate::h1::Error::Closed),
    };
    let response = error_response(&error);
    let message = response.headers()[GRPC_MESSAGE].to_str().expect("ascii");
    assert!(
        message.contains("spec.upstream.protocol: HTTP2"),
        "names the fix: {message}"
    );
}
