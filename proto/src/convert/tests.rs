use std::net::SocketAddr;

use super::*;
use crate::testing::{endpoint, route, set};

fn pb_addr(ip: &[u8], port: u32) -> pb::EndpointAddress {
    pb::EndpointAddress {
        ip: ip.to_vec(),
        port,
    }
}

#[test]
fn ipv4_and_ipv6_addresses_round_trip() {
    for text in ["10.1.2.3:8080", "[2001:db8::7]:443", "[::ffff:10.0.0.1]:80"] {
        let addr = EndpointAddr(text.parse::<SocketAddr>().expect("valid test address"));
        let wire = pb::EndpointAddress::from(addr);
        assert_eq!(
            EndpointAddr::try_from(wire),
            Ok(addr),
            "{text} must survive"
        );
    }
}

#[test]
fn bad_addresses_are_errors() {
    assert_eq!(
        EndpointAddr::try_from(pb_addr(&[10, 0, 0], 80)),
        Err(ConvertError::BadAddress(3)),
        "a 3-byte IP is neither IPv4 nor IPv6"
    );
    assert_eq!(
        EndpointAddr::try_from(pb_addr(&[], 80)),
        Err(ConvertError::BadAddress(0)),
        "an empty IP is an error, not 0.0.0.0"
    );
    assert_eq!(
        EndpointAddr::try_from(pb_addr(&[10, 0, 0, 1], 0)),
        Err(ConvertError::ZeroPort("EndpointAddress.port"))
    );
    assert_eq!(
        EndpointAddr::try_from(pb_addr(&[10, 0, 0, 1], 70_000)),
        Err(ConvertError::PortOutOfRange {
            field: "EndpointAddress.port",
            port: 70_000
        })
    );
}

#[test]
fn set_keys_need_a_real_port() {
    let key = |port| pb::EndpointSetKey {
        namespace: "shop".into(),
        service: "orders".into(),
        port,
    };
    assert_eq!(
        EndpointSetKey::try_from(key(0)),
        Err(ConvertError::ZeroPort("EndpointSetKey.port"))
    );
    assert!(matches!(
        EndpointSetKey::try_from(key(65_536)),
        Err(ConvertError::PortOutOfRange { .. })
    ));
    assert_eq!(
        EndpointSetKey::try_from(key(8080)).map(|k| k.to_string()),
        Ok("shop/orders:8080".to_string())
    );
}

#[test]
fn unspecified_or_unknown_enums_are_errors() {
    let mut wire = pb::Route::from(&route("orders"));
    wire.load_balancer.as_mut().expect("set by From").policy = 0;
    assert_eq!(
        Route::try_from(wire.clone()),
        Err(ConvertError::UnknownPolicy(0))
    );
    wire.load_balancer.as_mut().expect("set by From").policy = 42;
    assert_eq!(
        Route::try_from(wire.clone()),
        Err(ConvertError::UnknownPolicy(42))
    );

    let mut wire = pb::Route::from(&route("orders"));
    wire.upstream.as_mut().expect("set by From").protocol = 9;
    assert_eq!(
        Route::try_from(wire),
        Err(ConvertError::UnknownUpstreamProtocol(9))
    );
}

#[test]
fn missing_required_fields_are_named() {
    let full = pb::Route::from(&route("orders"));
    type Clear = fn(&mut pb::Route);
    let cases: [(Clear, &str); 5] = [
        (|r| r.key = None, "Route.key"),
        (|r| r.load_balancer = None, "Route.load_balancer"),
        (|r| r.upstream = None, "Route.upstream"),
        (|r| r.timeouts = None, "Route.timeouts"),
        (|r| r.retries = None, "Route.retries"),
    ];
    for (clear, field) in cases {
        let mut wire = full.clone();
        clear(&mut wire);
        assert_eq!(
            Route::try_from(wire),
            Err(ConvertError::MissingField(field))
        );
    }

    let mut ep = pb::Endpoint::from(&endpoint(1));
    ep.addr = None;
    assert_eq!(
        Endpoint::try_from(ep),
        Err(ConvertError::MissingField("Endpoint.addr"))
    );
}

#[test]
fn a_whole_set_is_one_part() {
    let set = set("orders", 3);
    let part = pb::EndpointSetPart::from(&set);
    assert_eq!(part.endpoints.len(), 3);
    assert_eq!(EndpointSet::try_from(part), Ok(set));
}

#[test]
fn durations_travel_in_milliseconds() {
    let mut r = route("orders");
    r.load_balancer.slow_start = Some(Duration::from_secs(30));
    r.upstream.max_connection_age = Some(Duration::ZERO);
    let wire = pb::Route::from(&r);
    let lb = wire.load_balancer.as_ref().expect("set by From");
    assert_eq!(lb.slow_start_ms, Some(30_000));
    assert_eq!(
        wire.upstream.as_ref().and_then(|u| u.max_connection_age_ms),
        Some(0),
        "Some(0s) stays distinct from None (unlimited)"
    );
    assert_eq!(Route::try_from(wire), Ok(r));
}

#[test]
fn proxy_messages_carry_their_version() {
    let v = Version {
        epoch: 7,
        sequence: 3,
    };
    let ack = pb::ProxyMessage::ack(v);
    let Some(pb::proxy_message::Kind::Ack(pb::Ack { version })) = ack.kind else {
        panic!("ack() must build an Ack, got {ack:?}");
    };
    assert_eq!(version.map(Version::from), Some(v));

    let hello = pb::ProxyMessage::hello("proxy-1", "node-a", None, Some(v));
    let Some(pb::proxy_message::Kind::Hello(hello)) = hello.kind else {
        panic!("hello() must build a Hello");
    };
    assert_eq!(hello.last_applied.map(Version::from), Some(v));
    assert_eq!(hello.zone, None, "no zone: the controller looks it up");
}

#[test]
fn affinity_travels_and_an_unknown_key_source_means_none() {
    use crate::model::{Affinity, AffinityKey};
    let mut r = route("orders");
    for key in [
        AffinityKey::Header("x-user-id".to_owned()),
        AffinityKey::Cookie("session".to_owned()),
        AffinityKey::SourceIp,
    ] {
        r.load_balancer.affinity = Some(Affinity {
            key,
            balance_factor_percent: 150,
        });
        assert_eq!(Route::try_from(pb::Route::from(&r)), Ok(r.clone()));
    }

    // A key source this build does not know arrives as no key: the Route balances by
    // its policy, as a proxy without affinity would.
    let mut wire = pb::Route::from(&r);
    wire.load_balancer.as_mut().expect("set by From").affinity = Some(pb::Affinity {
        key: None,
        balance_factor_percent: 125,
    });
    let read = Route::try_from(wire).expect("still a Route");
    assert_eq!(read.load_balancer.affinity, None);

    // Header names compare in lowercase.
    let mut wire = pb::Route::from(&r);
    wire.load_balancer.as_mut().expect("set by From").affinity = Some(pb::Affinity {
        key: Some(pb::affinity::Key::Header("X-User".to_owned())),
        balance_factor_percent: 125,
    });
    let read = Route::try_from(wire).expect("still a Route");
    assert_eq!(
        read.load_balancer.affinity.map(|a| a.key),
        Some(AffinityKey::Header("x-user".to_owned()))
    );

    let mut wire = pb::Route::from(&r);
    wire.load_balancer.as_mut().expect("set by From").affinity = Some(pb::Affinity {
        key: Some(pb::affinity::Key::SourceIp(true)),
        balance_factor_percent: 99,
    });
    assert_eq!(Route::try_from(wire), Err(ConvertError::BalanceFactor(99)));
}

/// `LoadBalancer` as proxies before `preferred_policy` know it: fields 1-4.
#[derive(Clone, PartialEq, prost::Message)]
struct OlderLoadBalancer {
    #[prost(enumeration = "pb::Policy", tag = "1")]
    policy: i32,
}

#[test]
fn prequal_travels_as_a_preference_with_a_fallback_older_proxies_use() {
    use prost::Message;
    let mut prequal = route("orders");
    prequal.load_balancer.policy = Policy::Prequal;
    let wire = pb::Route::from(&prequal);
    let lb = wire.load_balancer.clone().expect("set by From");
    assert_eq!(lb.policy, i32::from(pb::Policy::LeastRequest));
    assert_eq!(lb.preferred_policy, i32::from(pb::Policy::Prequal));
    assert_eq!(Route::try_from(wire), Ok(prequal));

    // An older proxy decodes the same bytes, skips field 5 and finds a policy it knows.
    let older = OlderLoadBalancer::decode(lb.encode_to_vec().as_slice()).expect("decodes");
    assert_eq!(older.policy, i32::from(pb::Policy::LeastRequest));

    // A preference newer than this build falls back the same way.
    let mut newer = lb.clone();
    newer.preferred_policy = 42;
    let mut wire = pb::Route::from(&route("orders"));
    wire.load_balancer = Some(newer);
    let decoded = Route::try_from(wire).expect("falls back, not an error");
    assert_eq!(decoded.load_balancer.policy, Policy::LeastRequest);
}

#[test]
fn the_first_three_policies_encode_without_a_preference() {
    for policy in [Policy::RoundRobin, Policy::LeastRequest, Policy::PeakEwma] {
        let mut r = route("orders");
        r.load_balancer.policy = policy;
        let lb = pb::Route::from(&r).load_balancer.expect("set by From");
        // 0 is not encoded: these Routes' bytes, and digests, are as before the field.
        assert_eq!(lb.preferred_policy, 0, "{policy:?}");
        assert_eq!(
            pb::Policy::try_from(lb.policy),
            Ok(pb::Policy::from(policy))
        );
    }
}

/// The previous release's `Route` and `Rule`, as far as its proxy reads rules.
#[derive(Clone, PartialEq, prost::Message)]
struct PreviousRoute {
    #[prost(message, repeated, tag = "3")]
    rules: Vec<PreviousRule>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct PreviousRule {
    #[prost(string, tag = "1")]
    path_prefix: String,
}

/// A Route that matches by prefix alone reads as before to a proxy one release older;
/// one with any other rule reads as a Route with no rule (its hosts answer 404), never
/// as a bare prefix rule that would take requests its conditions exclude.
#[test]
fn match_rules_are_invisible_to_the_previous_release() {
    use crate::model::{HeaderMatch, Matching, PathKind, StringMatch};
    use prost::Message;

    let plain = route("orders");
    let previous = |route: &Route| {
        let bytes = pb::Route::from(route).encode_to_vec();
        PreviousRoute::decode(bytes.as_slice()).expect("decodes")
    };
    assert_eq!(
        previous(&plain).rules.len(),
        plain.rules.len(),
        "prefix rules as before"
    );

    let mut matched = plain.clone();
    let mut header_rule = matched.rules[0].clone();
    header_rule.path_prefix = "/api/v[0-9]+".into();
    header_rule.matching = Matching {
        path: PathKind::RegularExpression,
        method: Some("GET".into()),
        headers: vec![HeaderMatch {
            name: "x-canary".into(),
            value: StringMatch::Exact("1".into()),
        }],
        query_params: Vec::new(),
    };
    matched.rules.push(header_rule);
    assert!(
        previous(&matched).rules.is_empty(),
        "the previous release sees no rule to misapply"
    );
    let mut timed = plain.clone();
    timed.rules[0].timeouts = Some(crate::model::Timeouts::default());
    assert!(
        previous(&timed).rules.is_empty(),
        "a rule with its own timeouts too: an older proxy would apply the Route's"
    );
    assert_eq!(Route::try_from(pb::Route::from(&timed)), Ok(timed));
    let mut edited = plain.clone();
    edited.rules[0].filters.request_headers = Some(crate::model::HeaderEdits {
        set: vec![("x-env".into(), "canary".into())],
        add: Vec::new(),
        remove: vec!["x-debug".into()],
    });
    assert!(
        previous(&edited).rules.is_empty(),
        "nor header edits it would skip"
    );
    assert_eq!(Route::try_from(pb::Route::from(&edited)), Ok(edited));
    let wire = pb::Route::from(&matched);
    assert_eq!(
        wire.match_rules.len(),
        2,
        "the whole Route moves, prefix rules too"
    );
    assert_eq!(
        Route::try_from(wire),
        Ok(matched),
        "and round-trips in this release"
    );
}

/// Response header edits, a rewrite and a redirect round-trip, travel where a proxy
/// that predates them sees no rule, and a redirect status that is not one is refused.
#[test]
fn filters_round_trip_out_of_the_previous_releases_sight() {
    use crate::model::{Filters, HeaderEdits, PathRewrite, Redirect, UrlRewrite};
    let mut rewritten = route("orders");
    rewritten.rules[0].filters = Filters {
        request_headers: None,
        response_headers: Some(HeaderEdits {
            set: vec![("x-served-by".into(), "fairway".into())],
            add: Vec::new(),
            remove: vec!["server".into()],
        }),
        rewrite: Some(UrlRewrite {
            hostname: Some("backend.internal".into()),
            path: Some(PathRewrite::ReplacePrefixMatch("/v2".into())),
        }),
        redirect: None,
    };
    let mut redirected = route("orders");
    redirected.rules[0].filters.redirect = Some(Redirect {
        scheme: Some("https".into()),
        hostname: None,
        path: Some(PathRewrite::ReplaceFullPath("/moved".into())),
        port: Some(8443),
        status: 301,
    });
    for filtered in [rewritten, redirected] {
        let wire = pb::Route::from(&filtered);
        assert!(wire.rules.is_empty(), "only in match_rules: {wire:?}");
        assert_eq!(Route::try_from(wire), Ok(filtered));
    }
    let mut wire = pb::Route::from(&route("orders"));
    let mut rule = wire.rules.remove(0);
    rule.redirect = Some(pb::Redirect {
        status_code: 200,
        ..Default::default()
    });
    wire.match_rules.push(rule);
    assert_eq!(
        Route::try_from(wire),
        Err(ConvertError::RedirectStatus(200))
    );
}

/// A rule's own retries round-trip out of the previous release's sight; a Route's
/// retries from a controller that predates the statuses retry what it retried.
#[test]
fn retries_carry_statuses_and_backoff() {
    use crate::model::{DEFAULT_HTTP_RETRY_STATUSES, Retries};
    let mut retried = route("orders");
    retried.rules[0].retries = Some(Retries {
        attempts: 3,
        http_statuses: vec![500, 503],
        backoff: std::time::Duration::from_millis(100),
        ..Retries::default()
    });
    let wire = pb::Route::from(&retried);
    assert!(wire.rules.is_empty(), "only in match_rules");
    assert_eq!(Route::try_from(wire), Ok(retried));

    let mut old = pb::Route::from(&route("orders"));
    let retries = old.retries.as_mut().expect("retries");
    retries.http_statuses = None;
    retries.backoff_ms = 0;
    let read = Route::try_from(old).expect("converts");
    assert_eq!(read.retries.http_statuses, DEFAULT_HTTP_RETRY_STATUSES);
    let mut none = route("orders");
    none.retries.http_statuses.clear();
    assert_eq!(
        Route::try_from(pb::Route::from(&none)).map(|r| r.retries.http_statuses),
        Ok(Vec::new()),
        "an empty list stays empty: no status is retried"
    );
}
