//! Every match type and Gateway API's precedence between them, as tables: each row a
//! request and the rule that must answer it (or none: `404`).

use std::collections::BTreeMap;
use std::sync::Arc;

use fairway_proto::model::{
    HeaderMatch, Matching, PathKind, QueryParamMatch, Route, RouteKey, RouteTable, Rule,
    StringMatch,
};

use super::super::{RequestView, Router};
use super::Headers;

/// A rule whose only backend-free identity is its `name` (in `unresolved`), so a test
/// can say which rule answered.
fn rule(name: &str, path: &str, matching: Matching) -> Rule {
    Rule {
        path_prefix: path.to_owned(),
        matching,
        timeouts: None,
        retries: None,
        filters: Default::default(),
        backends: Vec::new(),
        unresolved: vec![fairway_proto::model::UnresolvedBackend {
            service: name.to_owned(),
            weight: 1,
            reason: String::new(),
            message: String::new(),
        }],
    }
}

fn kind(path: PathKind) -> Matching {
    Matching {
        path,
        ..Matching::default()
    }
}

fn exact(v: &str) -> StringMatch {
    StringMatch::Exact(v.to_owned())
}

fn regex(v: &str) -> StringMatch {
    StringMatch::RegularExpression(v.to_owned())
}

fn header(name: &str, value: StringMatch) -> HeaderMatch {
    HeaderMatch {
        name: name.to_owned(),
        value,
    }
}

fn query(name: &str, value: StringMatch) -> QueryParamMatch {
    QueryParamMatch {
        name: name.to_owned(),
        value,
    }
}

fn router(rules: Vec<Rule>) -> Router {
    let route = Route {
        key: RouteKey {
            namespace: "shop".into(),
            name: "orders".into(),
        },
        hosts: vec!["orders.shop".into()],
        rules,
        load_balancer: Default::default(),
        upstream: Default::default(),
        timeouts: Default::default(),
        retries: Default::default(),
        health_check: None,
    };
    Router::new(&RouteTable {
        routes: BTreeMap::from([(route.key.clone(), Arc::new(route))]),
        endpoint_sets: BTreeMap::new(),
    })
}

struct Fields(Vec<(&'static str, &'static str)>);

impl Headers for Fields {
    fn first(&self, name: &str) -> Option<&[u8]> {
        let found = self.0.iter().find(|(n, _)| *n == name);
        found.map(|(_, v)| v.as_bytes())
    }
}

/// The name of the rule answering `method target` with `headers`, or `None` (404).
fn answer(router: &Router, method: &str, target: &str, headers: &Fields) -> Option<String> {
    let request = RequestView {
        method: Some(method),
        path_and_query: target,
        headers,
    };
    let selected = router.route_request("orders.shop", &request, None).ok()?;
    Some(selected.rule.unresolved[0].service.clone())
}

#[test]
fn paths_exact_then_regex_then_the_longest_prefix() {
    let r = router(vec![
        rule("root", "/", kind(PathKind::Prefix)),
        rule("api", "/api", kind(PathKind::Prefix)),
        rule(
            "regex",
            "/api/v[0-9]+/.*",
            kind(PathKind::RegularExpression),
        ),
        rule("exact", "/api/v1/login", kind(PathKind::Exact)),
    ]);
    let none = Fields(Vec::new());
    let cases = [
        ("/api/v1/login", Some("exact")),
        ("/api/v1/login?x=1", Some("exact")),
        ("/api/v1/login/", Some("regex")),
        ("/api/v2/orders", Some("regex")),
        ("/api/vX/orders", Some("api")),
        ("/api", Some("api")),
        ("/apis", Some("root")),
        ("/x", Some("root")),
    ];
    for (target, want) in cases {
        let got = answer(&r, "GET", target, &none);
        assert_eq!(got.as_deref(), want, "GET {target}");
    }
    let no_root = router(vec![rule("exact", "/a", kind(PathKind::Exact))]);
    assert_eq!(
        answer(&no_root, "GET", "/a/b", &none),
        None,
        "no rule matches: 404"
    );
    let anchored = router(vec![rule("re", "/a", kind(PathKind::RegularExpression))]);
    assert_eq!(
        answer(&anchored, "GET", "/ab", &none),
        None,
        "a regex matches the whole path, not a part"
    );
}

#[test]
fn method_headers_and_query_break_ties_in_that_order() {
    let on =
        |method: Option<&str>, headers: Vec<HeaderMatch>, query: Vec<QueryParamMatch>| Matching {
            path: PathKind::Prefix,
            method: method.map(str::to_owned),
            headers,
            query_params: query,
        };
    let r = router(vec![
        rule("plain", "/", on(None, vec![], vec![])),
        rule("query", "/", on(None, vec![], vec![query("v", exact("2"))])),
        rule(
            "two-headers",
            "/",
            on(
                None,
                vec![header("a", exact("1")), header("b", regex("x.*"))],
                vec![],
            ),
        ),
        rule(
            "one-header",
            "/",
            on(None, vec![header("a", exact("1"))], vec![]),
        ),
        rule("post", "/", on(Some("POST"), vec![], vec![])),
        // Longer prefix beats every condition on a shorter one.
        rule("prefix", "/orders", on(None, vec![], vec![])),
    ]);
    let h = |pairs: Vec<(&'static str, &'static str)>| Fields(pairs);
    let cases = [
        ("POST", "/", h(vec![("a", "1"), ("b", "xy")]), Some("post")),
        (
            "GET",
            "/",
            h(vec![("a", "1"), ("b", "xy")]),
            Some("two-headers"),
        ),
        (
            "GET",
            "/",
            h(vec![("a", "1"), ("b", "y")]),
            Some("one-header"),
        ),
        ("GET", "/?v=2", h(vec![("a", "1")]), Some("one-header")),
        ("GET", "/?w=1&v=2", h(vec![]), Some("query")),
        ("GET", "/?v=22", h(vec![]), Some("plain")),
        ("POST", "/orders/1", h(vec![]), Some("prefix")),
    ];
    for (method, target, headers, want) in cases {
        let got = answer(&r, method, target, &headers);
        assert_eq!(got.as_deref(), want, "{method} {target} {:?}", headers.0);
    }
}

#[test]
fn equal_rules_keep_their_order_and_unknowns_never_match() {
    let r = router(vec![
        rule("first", "/a", kind(PathKind::Prefix)),
        rule("second", "/a", kind(PathKind::Prefix)),
    ]);
    let none = Fields(Vec::new());
    assert_eq!(answer(&r, "GET", "/a", &none).as_deref(), Some("first"));

    let conditioned = Matching {
        method: Some("GET".into()),
        ..Matching::default()
    };
    let r = router(vec![
        rule("broken", "/(", kind(PathKind::RegularExpression)),
        rule("get", "/", conditioned),
    ]);
    assert_eq!(
        answer(&r, "GET", "/(", &none).as_deref(),
        Some("get"),
        "a regex that does not compile never matches"
    );
    assert!(
        r.route("orders.shop", "/").is_err(),
        "without the request's method, a method condition never matches"
    );
}
