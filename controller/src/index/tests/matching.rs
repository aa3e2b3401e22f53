//! Matches beyond a path prefix in our Route (`rules[].match`): the same conversion as
//! an HTTPRoute's, the same model, the same errors on that Route only.

use super::*;
use crate::index::Reason;

/// `rules[].match` in our Route reads as an HTTPRoute's match does: one conversion, the
/// same model, and the same errors on this Route only.
#[test]
fn route_rules_take_gateway_api_matches() {
    use fairway_proto::model::{HeaderMatch, Matching, PathKind, StringMatch};
    let mut index = orders_index();
    let mut canary = route("canary", &["canary.shop"], "orders", num(8080), 2);
    let plain = canary.spec.rules[0].clone();
    let mut exact = plain.clone();
    exact.matches = Some(crd::RuleMatchSpec {
        path: Some(crd::PathMatchSpec {
            type_: crd::PathType::Exact,
            value: "/login".into(),
        }),
        method: Some("POST".into()),
        ..Default::default()
    });
    let mut header = plain.clone();
    header.path_prefix = "/api".into();
    header.matches = Some(crd::RuleMatchSpec {
        headers: vec![crd::ValueMatchSpec {
            type_: crd::ValueType::RegularExpression,
            name: "X-Canary".into(),
            value: "on|yes".into(),
        }],
        ..Default::default()
    });
    canary.spec.rules = vec![plain.clone(), exact, header.clone()];
    index.apply_route(&canary);
    let rules = &index.table().routes[&route_key("canary")].rules;
    let got: Vec<(&str, &Matching)> = rules
        .iter()
        .map(|r| (r.path_prefix.as_str(), &r.matching))
        .collect();
    let login = Matching {
        path: PathKind::Exact,
        method: Some("POST".into()),
        ..Matching::default()
    };
    let api = Matching {
        headers: vec![HeaderMatch {
            name: "x-canary".into(),
            value: StringMatch::RegularExpression("on|yes".into()),
        }],
        ..Matching::default()
    };
    assert_eq!(
        got,
        [
            ("/", &Matching::default()),
            ("/login", &login),
            ("/api", &api)
        ]
    );

    let mut broken = header.clone();
    if let Some(m) = broken.matches.as_mut() {
        m.headers[0].value = "(".into();
    }
    canary.spec.rules = vec![plain.clone(), broken];
    index.apply_route(&canary);
    let status = index.status(&route_key("canary")).expect("known");
    assert_eq!(status.accepted.reason, Reason::InvalidSpec);
    assert!(
        status
            .accepted
            .message
            .starts_with("spec.rules[1].match.headers[0].value: invalid regular"),
        "{}",
        status.accepted.message
    );
    assert!(
        index.table().routes.contains_key(&route_key("orders")),
        "others serve on"
    );

    canary.spec.rules = vec![header.clone(), header];
    index.apply_route(&canary);
    let status = index.status(&route_key("canary")).expect("known");
    assert!(
        status.accepted.message.contains("same match"),
        "{}",
        status.accepted.message
    );
}
