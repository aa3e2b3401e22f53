//! Request routing from arbitrary request heads: the input is a request target (first
//! line) and header lines (`name: value`), raw bytes. They go through `http`'s own
//! parsers as hyper would hand them to the proxy, then the host is taken as the proxy
//! takes it (an absolute URI's authority, else `Host`; `pod::authority_of`)
//! and `Table::resolve` routes it over a table with overlapping hosts and prefixes,
//! weights (0 included), an empty set and every balancer policy. Raw, unparsed strings
//! also go straight to `Router::route`, which must cope with anything.
//!
//! Properties: a routed request's host is one of its Route's hosts (normalised), its
//! rule's prefix matches the path, and no longer prefix of that Route does.
#![no_main]

use std::time::Instant;

use fairway_fuzz::routing_table;
use fairway_proxy::route::{Router, normalize_host, prefix_matches, request_path};
use fairway_proxy::table::Table;
use http::{HeaderName, HeaderValue, Request, Uri};
use libfuzzer_sys::fuzz_target;
use rand::SeedableRng;
use rand::rngs::SmallRng;

/// Header lines read at most (the proxy's own default limit is far higher, but more
/// adds nothing here).
const MAX_HEADERS: usize = 32;

fn check(router: &Router, authority: &str, path: &str) {
    let Ok(selected) = router.route(authority, path) else {
        return;
    };
    let host = normalize_host(authority);
    assert!(
        selected
            .route
            .hosts
            .iter()
            .any(|h| normalize_host(h) == host),
        "routed {host:?} to a route that does not claim it"
    );
    let path = request_path(path);
    assert!(prefix_matches(&selected.rule.path_prefix, path));
    let longest = selected.rule.path_prefix.len();
    assert!(
        !selected
            .route
            .rules
            .iter()
            .any(|r| r.path_prefix.len() > longest && prefix_matches(&r.path_prefix, path)),
        "a longer matching prefix lost for {path:?}"
    );
}

fuzz_target!(|data: &[u8]| {
    let (source, version) = routing_table();
    let table = Table::build(
        source.clone(),
        version,
        &Table::default(),
        (None, None),
        Instant::now(),
    );
    let router = Router::new(&source);
    let mut rng = SmallRng::seed_from_u64(data.len() as u64);

    let mut lines = data.split(|&b| b == b'\n');
    let target = lines.next().unwrap_or_default();
    let raw_target = String::from_utf8_lossy(target);
    // Unparsed: whatever a caller might pass.
    check(&router, &raw_target, &raw_target);

    let mut builder = Request::builder();
    if let Ok(uri) = Uri::try_from(target) {
        builder = builder.uri(uri);
    }
    for line in lines.take(MAX_HEADERS) {
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        let (name, value) = (&line[..colon], &line[colon + 1..]);
        let value = value.strip_prefix(b" ").unwrap_or(value);
        if let (Ok(name), Ok(value)) =
            (HeaderName::from_bytes(name), HeaderValue::from_bytes(value))
        {
            check(
                &router,
                &String::from_utf8_lossy(value.as_bytes()),
                &raw_target,
            );
            builder = builder.header(name, value);
        }
    }
    let Ok(request) = builder.body(()) else {
        return;
    };
    // As `pod::authority_of` (crate-private): the URI's authority, else Host.
    let authority = match request.uri().authority() {
        Some(authority) => Some(authority.as_str()),
        None => request
            .headers()
            .get(http::header::HOST)
            .and_then(|h| h.to_str().ok()),
    };
    let Some(authority) = authority else {
        return;
    };
    let path = request.uri().path();
    check(&router, authority, path);
    let now = Instant::now();
    for _ in 0..3 {
        if let Ok((target, addr)) = table.resolve(authority, path, now, &mut rng) {
            target.backend.on_end(
                addr,
                std::time::Duration::from_millis(1),
                fairway_proxy::balance::Outcome::Success,
                now,
            );
        }
    }
});
