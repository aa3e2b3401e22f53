//! What a rule's `URLRewrite` and `RequestRedirect` make of a request: the path the pod
//! gets, or the `Location` the client gets. Pure: strings in, strings out.
//!
//! `ReplacePrefixMatch` replaces the part of the path the rule's prefix matched, as
//! Gateway API's table lays out (prefix `/foo`, replacement `/xyz`: `/foo/bar` becomes
//! `/xyz/bar`, `/foo` becomes `/xyz`; an empty replacement leaves `/bar`, or `/`).

use fairway_proto::model::{PathKind, PathRewrite, Redirect, Rule};

/// The path and query after `rewrite`, for `path_and_query` which `rule` matched. The
/// query stays as the client sent it.
pub fn rewritten_path(rule: &Rule, rewrite: &PathRewrite, path_and_query: &str) -> String {
    let (path, query) = match path_and_query.find('?') {
        Some(at) => path_and_query.split_at(at),
        None => (path_and_query, ""),
    };
    let mut new = match rewrite {
        PathRewrite::ReplaceFullPath(full) => full.clone(),
        PathRewrite::ReplacePrefixMatch(replacement) => {
            // A prefix matches whole segments, so what follows it is empty or a `/...`.
            let prefix = rule.path_prefix.trim_end_matches('/');
            let rest = match rule.matching.path {
                PathKind::Prefix => path.get(prefix.len()..).unwrap_or(""),
                // The controller allows ReplacePrefixMatch on prefix rules only.
                PathKind::Exact | PathKind::RegularExpression => "",
            };
            let mut new = replacement.trim_end_matches('/').to_owned();
            new.push_str(rest);
            new
        }
    };
    if new.is_empty() {
        new.push('/');
    }
    new.push_str(query);
    new
}

/// Where the request was sent, as the `Location` of a redirect starts from it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Origin<'a> {
    /// `http`, unless an absolute-form target said otherwise.
    pub scheme: &'a str,
    /// The host without its port.
    pub host: &'a str,
    /// The port the authority named, if any.
    pub port: Option<u16>,
    pub path_and_query: &'a str,
}

/// The `Location` a redirect rule answers `origin` with: each part the redirect sets,
/// the request's own for the rest. Without a port, a redirect to another scheme goes to
/// that scheme's well-known port and one that keeps the scheme keeps the request's
/// port; a well-known port is left out, as Gateway API asks.
pub fn location(redirect: &Redirect, rule: &Rule, origin: &Origin<'_>) -> String {
    let scheme = redirect.scheme.as_deref().unwrap_or(origin.scheme);
    let host = redirect.hostname.as_deref().unwrap_or(origin.host);
    let port = match (redirect.port, &redirect.scheme) {
        (Some(port), _) => Some(port),
        (None, Some(_)) => None,
        (None, None) => origin.port,
    };
    let port = port.filter(|p| Some(*p) != well_known_port(scheme));
    let path = match &redirect.path {
        Some(rewrite) => rewritten_path(rule, rewrite, origin.path_and_query),
        None => origin.path_and_query.to_owned(),
    };
    let host = match host.contains(':') {
        true => format!("[{host}]"),
        false => host.to_owned(),
    };
    match port {
        Some(port) => format!("{scheme}://{host}:{port}{path}"),
        None => format!("{scheme}://{host}{path}"),
    }
}

fn well_known_port(scheme: &str) -> Option<u16> {
    match scheme {
        "http" => Some(80),
        "https" => Some(443),
        _ => None,
    }
}

#[cfg(test)]
#[path = "rewrite/tests.rs"]
mod tests;
