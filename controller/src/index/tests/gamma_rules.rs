//! HTTPRoute rules beyond the attachment: matches, timeouts and header edits into the
//! model, and the errors they report.

use fairway_proto::model;
use serde_json::json;

use super::gamma::{group, http_route, parent_status, service_parent, services_index};
use crate::index::Reason;

#[test]
fn matches_become_the_models_conditions() {
    use fairway_proto::model::{HeaderMatch, Matching, PathKind, QueryParamMatch, StringMatch};
    let mut index = services_index();
    let spec = json!({
        "parentRefs": [service_parent("orders")],
        "rules": [{
            "matches": [
                {"path": {"type": "Exact", "value": "/login"}, "method": "POST"},
                {
                    "path": {"type": "RegularExpression", "value": "/v[0-9]+/.*"},
                    "headers": [
                        {"name": "X-Canary", "value": "1"},
                        {"type": "RegularExpression", "name": "x-user", "value": "a.*"},
                        {"name": "x-canary", "value": "ignored: the first of a name counts"},
                    ],
                    "queryParams": [{"name": "debug", "value": "on"}],
                },
            ],
            "backendRefs": [{"name": "orders", "port": 8080}],
        }],
    });
    index.apply_http_route(&http_route("shop", "matched", 1, spec));
    let rules = &index.table().routes[&group()].rules;
    let got: Vec<(&str, &Matching)> = rules
        .iter()
        .map(|r| (r.path_prefix.as_str(), &r.matching))
        .collect();
    let login = Matching {
        path: PathKind::Exact,
        method: Some("POST".into()),
        ..Matching::default()
    };
    let versioned = Matching {
        path: PathKind::RegularExpression,
        method: None,
        headers: vec![
            HeaderMatch {
                name: "x-canary".into(),
                value: StringMatch::Exact("1".into()),
            },
            HeaderMatch {
                name: "x-user".into(),
                value: StringMatch::RegularExpression("a.*".into()),
            },
        ],
        query_params: vec![QueryParamMatch {
            name: "debug".into(),
            value: StringMatch::Exact("on".into()),
        }],
    };
    assert_eq!(got, [("/login", &login), ("/v[0-9]+/.*", &versioned)]);
    assert_eq!(parent_status(&index, "matched")[0].1, Reason::Accepted);
}

#[test]
fn rule_timeouts_replace_the_defaults_for_that_rule() {
    use std::time::Duration;
    let mut index = services_index();
    let spec = json!({
        "parentRefs": [service_parent("orders")],
        "rules": [
            {
                "matches": [{"path": {"value": "/slow"}}],
                "timeouts": {"request": "1m", "backendRequest": "10s"},
                "backendRefs": [{"name": "orders", "port": 8080}],
            },
            {"backendRefs": [{"name": "orders", "port": 8080}]},
        ],
    });
    index.apply_http_route(&http_route("shop", "timed", 1, spec));
    let rules = &index.table().routes[&group()].rules;
    let slow = rules[0].timeouts.as_ref().expect("the rule's own timeouts");
    assert_eq!(slow.request, Duration::from_secs(60));
    assert_eq!(
        slow.per_try,
        Some(Duration::from_secs(10)),
        "backendRequest: per try"
    );
    assert_eq!(
        slow.connect,
        model::Timeouts::default().connect,
        "the rest: defaults"
    );
    assert_eq!(rules[1].timeouts, None, "a rule without: the Route's");
}

#[test]
fn a_request_header_modifier_becomes_the_rules_header_edits() {
    let mut index = services_index();
    let spec = json!({
        "parentRefs": [service_parent("orders")],
        "rules": [{
            "filters": [{"type": "RequestHeaderModifier", "requestHeaderModifier": {
                "set": [{"name": "X-Env", "value": "canary"}],
                "add": [{"name": "x-tag", "value": "a"}],
                "remove": ["X-Debug"],
            }}],
            "backendRefs": [{"name": "orders", "port": 8080}],
        }],
    });
    index.apply_http_route(&http_route("shop", "edited", 1, spec));
    let edits = index.table().routes[&group()].rules[0]
        .filters
        .request_headers
        .clone();
    let pair = |n: &str, v: &str| (n.to_owned(), v.to_owned());
    assert_eq!(
        edits,
        Some(model::HeaderEdits {
            set: vec![pair("x-env", "canary")],
            add: vec![pair("x-tag", "a")],
            remove: vec!["x-debug".to_owned()],
        })
    );
}

/// The experimental `retry`: listed codes become the statuses retried, attempts and
/// backoff the rule's own; the budget stays the Route's. Bad values are named.
#[test]
fn a_retry_becomes_the_rules_retries() {
    let mut index = services_index();
    let spec = json!({
        "parentRefs": [service_parent("orders")],
        "rules": [{
            "retry": {"codes": [503, 500, 503], "attempts": 3, "backoff": "100ms"},
            "backendRefs": [{"name": "orders", "port": 8080}],
        }],
    });
    index.apply_http_route(&http_route("shop", "retried", 1, spec));
    let retries = index.table().routes[&group()].rules[0].retries.clone();
    assert_eq!(
        retries,
        Some(model::Retries {
            attempts: 3,
            http_statuses: vec![500, 503],
            backoff: std::time::Duration::from_millis(100),
            ..model::Retries::default()
        })
    );
    for (retry, field) in [
        (json!({"attempts": 11}), "spec.rules[0].retry.attempts"),
        (json!({"codes": [200]}), "spec.rules[0].retry.codes[0]"),
        (json!({"backoff": "soon"}), "spec.rules[0].retry.backoff"),
    ] {
        let spec = json!({
            "parentRefs": [service_parent("orders-v2")],
            "rules": [{"retry": retry, "backendRefs": [{"name": "orders", "port": 8080}]}],
        });
        index.apply_http_route(&http_route("shop", "odd", 2, spec));
        let [accepted, _] = parent_status(&index, "odd");
        assert_eq!(accepted.1, Reason::UnsupportedValue, "{field}");
        assert!(accepted.2.starts_with(field), "{field}: {}", accepted.2);
    }
}

/// A spec field of a later release is named; `useDefaultGateways` concerns Gateways,
/// another controller's, and does not stop the route.
#[test]
fn spec_fields_beyond_the_pinned_release_are_named() {
    let mut index = services_index();
    let rules = json!([{"backendRefs": [{"name": "orders", "port": 8080}]}]);
    let spec = json!({"parentRefs": [service_parent("orders")], "rules": rules,
                      "useDefaultGateways": "All"});
    index.apply_http_route(&http_route("shop", "gateways", 1, spec));
    let [accepted, _] = parent_status(&index, "gateways");
    assert_eq!(accepted.1, Reason::Accepted, "{}", accepted.2);
    let spec = json!({"parentRefs": [service_parent("orders-v2")], "rules": rules,
                      "futureField": {"on": true}});
    index.apply_http_route(&http_route("shop", "future", 2, spec));
    let [accepted, _] = parent_status(&index, "future");
    assert_eq!(accepted.1, Reason::UnsupportedValue);
    assert!(accepted.2.starts_with("spec.futureField"), "{}", accepted.2);
}
