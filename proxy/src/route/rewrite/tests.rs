use fairway_proto::model::{Matching, PathKind, PathRewrite, Redirect, Rule};

use super::{Origin, location, rewritten_path};

fn rule(path: &str, kind: PathKind) -> Rule {
    Rule {
        path_prefix: path.to_owned(),
        matching: Matching {
            path: kind,
            ..Matching::default()
        },
        timeouts: None,
        retries: None,
        filters: Default::default(),
        backends: Vec::new(),
        unresolved: Vec::new(),
    }
}

/// Gateway API's own table for `ReplacePrefixMatch` (`HTTPPathModifier`), row by row,
/// and a full replacement that keeps the query.
#[test]
fn paths_are_rewritten_as_gateway_api_tabulates() {
    let prefix = |p: &str| PathRewrite::ReplacePrefixMatch(p.to_owned());
    let cases = [
        ("/foo/bar", "/foo", prefix("/xyz"), "/xyz/bar"),
        ("/foo/bar", "/foo", prefix("/xyz/"), "/xyz/bar"),
        ("/foo/bar", "/foo/", prefix("/xyz"), "/xyz/bar"),
        ("/foo/bar", "/foo/", prefix("/xyz/"), "/xyz/bar"),
        ("/foo", "/foo", prefix("/xyz"), "/xyz"),
        ("/foo/", "/foo", prefix("/xyz"), "/xyz/"),
        ("/foo/bar", "/foo", prefix(""), "/bar"),
        ("/foo/", "/foo", prefix(""), "/"),
        ("/foo", "/foo", prefix(""), "/"),
        ("/foo/", "/foo", prefix("/"), "/"),
        ("/foo", "/foo", prefix("/"), "/"),
        ("/x/y?q=1&r", "/", prefix("/v2"), "/v2/x/y?q=1&r"),
        ("/foo/bar?q=1", "/foo", prefix("/xyz"), "/xyz/bar?q=1"),
        (
            "/anything?keep=1",
            "/",
            PathRewrite::ReplaceFullPath("/fixed".to_owned()),
            "/fixed?keep=1",
        ),
    ];
    for (path, matched, rewrite, want) in cases {
        let rule = rule(matched, PathKind::Prefix);
        assert_eq!(
            rewritten_path(&rule, &rewrite, path),
            want,
            "{path} matched by {matched}, {rewrite:?}"
        );
    }
}

#[test]
fn redirects_take_each_part_they_set_and_keep_the_rest() {
    let origin = Origin {
        scheme: "http",
        host: "orders.shop",
        port: Some(8080),
        path_and_query: "/old/page?x=1",
    };
    let redirect = |scheme: Option<&str>, host: Option<&str>, port: Option<u16>| Redirect {
        scheme: scheme.map(str::to_owned),
        hostname: host.map(str::to_owned),
        path: None,
        port,
        status: 302,
    };
    let old = rule("/old", PathKind::Prefix);
    let cases = [
        (
            redirect(None, None, None),
            "http://orders.shop:8080/old/page?x=1",
            "the request's own port",
        ),
        (
            redirect(Some("https"), None, None),
            "https://orders.shop/old/page?x=1",
            "another scheme: its well-known port, left out",
        ),
        (
            redirect(Some("https"), Some("new.example"), Some(8443)),
            "https://new.example:8443/old/page?x=1",
            "every part set",
        ),
        (
            redirect(None, Some("new.example"), Some(80)),
            "http://new.example/old/page?x=1",
            "port 80 over http is left out",
        ),
        (
            Redirect {
                path: Some(PathRewrite::ReplacePrefixMatch("/new".to_owned())),
                ..redirect(None, None, None)
            },
            "http://orders.shop:8080/new/page?x=1",
            "the matched prefix replaced",
        ),
    ];
    for (redirect, want, why) in cases {
        assert_eq!(location(&redirect, &old, &origin), want, "{why}");
    }
    let no_port = Origin {
        port: None,
        host: "::1",
        ..origin
    };
    assert_eq!(
        location(&redirect(None, None, None), &old, &no_port),
        "http://[::1]/old/page?x=1",
        "no port asked, none given; an IPv6 host in brackets"
    );
}
