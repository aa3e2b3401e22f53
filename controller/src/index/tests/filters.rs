//! Filters (header edits both ways, `URLRewrite`, `RequestRedirect`) from both inputs
//! into the model, and the combinations Gateway API forbids reported on that route
//! alone.

use fairway_proto::model::{self, HeaderEdits, PathRewrite, Redirect, UrlRewrite};
use serde_json::{Value, json};

use super::gamma::{group, http_route, parent_status, service_parent, services_index};
use super::routes::reasons;
use super::*;
use crate::index::{ConditionStatus, Reason};

fn filters(rule: Value) -> model::Filters {
    let mut index = services_index();
    let spec = json!({"parentRefs": [service_parent("orders")], "rules": [rule]});
    index.apply_http_route(&http_route("shop", "filtered", 1, spec));
    let [accepted, _] = parent_status(&index, "filtered");
    assert_eq!(accepted.1, Reason::Accepted, "{}", accepted.2);
    index.table().routes[&group()].rules[0].filters.clone()
}

#[test]
fn http_route_filters_become_the_models() {
    let rewrite = json!({
        "matches": [{"path": {"type": "PathPrefix", "value": "/old"}}],
        "filters": [
            {"type": "URLRewrite", "urlRewrite": {
                "hostname": "Backend.Internal",
                "path": {"type": "ReplacePrefixMatch", "replacePrefixMatch": "/new"},
            }},
            {"type": "ResponseHeaderModifier", "responseHeaderModifier": {
                "set": [{"name": "X-Served-By", "value": "fairway"}], "remove": ["Server"],
            }},
        ],
        "backendRefs": [{"name": "orders", "port": 8080}],
    });
    assert_eq!(
        filters(rewrite),
        model::Filters {
            response_headers: Some(HeaderEdits {
                set: vec![("x-served-by".into(), "fairway".into())],
                add: Vec::new(),
                remove: vec!["server".into()],
            }),
            rewrite: Some(UrlRewrite {
                hostname: Some("backend.internal".into()),
                path: Some(PathRewrite::ReplacePrefixMatch("/new".into())),
            }),
            ..model::Filters::default()
        }
    );
    let redirect = json!({"filters": [{"type": "RequestRedirect", "requestRedirect": {
        "scheme": "https", "port": 8443, "statusCode": 301,
        "path": {"type": "ReplaceFullPath", "replaceFullPath": "/moved"},
    }}]});
    let want = Redirect {
        scheme: Some("https".into()),
        hostname: None,
        path: Some(PathRewrite::ReplaceFullPath("/moved".into())),
        port: Some(8443),
        status: 301,
    };
    assert_eq!(filters(redirect).redirect, Some(want));
    let bare = json!({"filters": [{"type": "RequestRedirect", "requestRedirect": {}}]});
    assert_eq!(
        filters(bare).redirect.map(|r| r.status),
        Some(302),
        "Gateway API's default status"
    );
}

#[test]
fn a_redirect_rule_answers_itself_without_a_500_share() {
    let mut index = services_index();
    let spec = json!({"parentRefs": [service_parent("orders")], "rules": [
        {"filters": [{"type": "RequestRedirect", "requestRedirect": {"hostname": "new.example"}}]},
    ]});
    index.apply_http_route(&http_route("shop", "moved", 1, spec));
    let rule = &index.table().routes[&group()].rules[0];
    assert!(
        rule.backends.is_empty() && rule.unresolved.is_empty(),
        "{rule:?}"
    );
}

#[test]
fn forbidden_combinations_are_unsupported_on_that_route_alone() {
    let redirect = json!({"type": "RequestRedirect", "requestRedirect": {"statusCode": 301}});
    let rewrite = json!({"type": "URLRewrite", "urlRewrite": {"hostname": "x.example"}});
    let prefix_rewrite = json!({"type": "URLRewrite", "urlRewrite": {
        "path": {"type": "ReplacePrefixMatch", "replacePrefixMatch": "/new"},
    }});
    let backend = json!([{"name": "orders", "port": 8080}]);
    let cases = [
        (
            json!({"filters": [rewrite, redirect]}),
            "spec.rules[0].filters: URLRewrite and RequestRedirect",
        ),
        (
            json!({"matches": [{"path": {"type": "Exact", "value": "/a"}}],
                   "filters": [prefix_rewrite], "backendRefs": backend}),
            "spec.rules[0].filters[0].urlRewrite.path.type: ReplacePrefixMatch needs",
        ),
        (
            json!({"matches": [{"path": {"value": "/a"}}, {"path": {"value": "/b"}}],
                   "filters": [prefix_rewrite], "backendRefs": backend}),
            "spec.rules[0].filters[0].urlRewrite.path.type: ReplacePrefixMatch needs",
        ),
        (
            json!({"filters": [redirect], "backendRefs": backend}),
            "spec.rules[0].backendRefs: RequestRedirect filter must not",
        ),
        (
            json!({"filters": [{"type": "RequestRedirect", "requestRedirect": {"statusCode": 200}}]}),
            "spec.rules[0].filters[0].requestRedirect.statusCode",
        ),
        (
            json!({"filters": [{"type": "RequestRedirect", "requestRedirect": {"scheme": "ftp"}}]}),
            "spec.rules[0].filters[0].requestRedirect.scheme",
        ),
        (
            json!({"filters": [rewrite, rewrite], "backendRefs": backend}),
            "spec.rules[0].filters[1]: URLRewrite may appear once",
        ),
        (
            json!({"filters": [{"type": "RequestMirror", "requestMirror": {}}], "backendRefs": backend}),
            "spec.rules[0].filters[0].type: RequestMirror is not supported",
        ),
        (
            json!({"filters": [{"type": "URLRewrite", "urlRewrite": {},
                                "requestRedirect": {}}], "backendRefs": backend}),
            "spec.rules[0].filters[0].requestRedirect: must be unset in a filter of type URLRewrite",
        ),
        (
            json!({"filters": [{"type": "URLRewrite", "urlRewrite": {},
                                "cors": {"allowOrigins": ["*"]}}], "backendRefs": backend}),
            "spec.rules[0].filters[0].cors: not supported",
        ),
    ];
    let mut index = services_index();
    let good = json!({"parentRefs": [service_parent("orders")],
                      "rules": [{"backendRefs": [{"name": "orders", "port": 8080}]}]});
    index.apply_http_route(&http_route("shop", "good", 1, good));
    for (rule, field) in cases {
        let spec = json!({"parentRefs": [service_parent("orders-v2")], "rules": [rule]});
        index.apply_http_route(&http_route("shop", "odd", 2, spec));
        let [accepted, _] = parent_status(&index, "odd");
        assert_eq!(
            (accepted.0, accepted.1),
            (ConditionStatus::False, Reason::UnsupportedValue),
            "{field}"
        );
        assert!(accepted.2.starts_with(field), "{field}: {}", accepted.2);
        let served = &index.table().routes;
        assert!(
            served.contains_key(&group()),
            "the other route keeps serving"
        );
        assert_eq!(served.len(), 1, "the odd one is not served ({field})");
    }
}

fn filter(json: Value) -> crd::RouteFilterSpec {
    serde_json::from_value(json).expect("a valid filter")
}

#[test]
fn route_filters_read_as_http_routes_and_report_invalid_specs() {
    let mut index = orders_index();
    let mut redirecting = route("moved", &["moved.shop"], "orders", num(8080), 1);
    redirecting.spec.rules[0].backends.clear();
    redirecting.spec.rules[0].filters = vec![filter(json!({
        "type": "RequestRedirect", "requestRedirect": {"hostname": "new.shop", "statusCode": 301},
    }))];
    index.apply_route(&redirecting);
    assert_eq!(reasons(&index, "moved").0, Reason::Accepted);
    let served = &index.table().routes[&route_key("moved")].rules[0];
    assert_eq!(
        served.filters.redirect.as_ref().map(|r| r.status),
        Some(301)
    );
    assert!(served.backends.is_empty());

    type Case = (&'static str, fn(&mut crd::Route), &'static str);
    let cases: [Case; 3] = [
        (
            "prefix-on-exact",
            |r| {
                r.spec.rules[0].matches = Some(crd::RuleMatchSpec {
                    path: Some(crd::PathMatchSpec {
                        type_: crd::PathType::Exact,
                        value: "/a".into(),
                    }),
                    ..Default::default()
                });
                r.spec.rules[0].filters =
                    vec![filter(json!({"type": "URLRewrite", "urlRewrite": {
                        "path": {"type": "ReplacePrefixMatch", "replacePrefixMatch": "/b"},
                    }}))];
            },
            "ReplacePrefixMatch needs exactly one match, of type PathPrefix",
        ),
        (
            "redirect-with-backends",
            |r| {
                r.spec.rules[0].filters = vec![filter(
                    json!({"type": "RequestRedirect", "requestRedirect": {}}),
                )];
            },
            "must not be used together with backendRefs",
        ),
        (
            "no-backends",
            |r| r.spec.rules[0].backends.clear(),
            "has no backends",
        ),
    ];
    for (name, break_it, says) in cases {
        let mut bad = route(name, &[&format!("{name}.shop")], "orders", num(8080), 0);
        break_it(&mut bad);
        index.apply_route(&bad);
        let status = index.status(&route_key(name)).expect("status");
        assert_eq!(status.accepted.reason, Reason::InvalidSpec, "{name}");
        assert!(status.accepted.message.contains(says), "{name}: {status:?}");
        assert!(!index.table().routes.contains_key(&route_key(name)));
    }
    assert!(index.table().routes.contains_key(&route_key("orders")));
}
