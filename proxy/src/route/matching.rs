//! A rule's match beyond the host: its path (prefix, exact or regular expression) and
//! its conditions on method, headers and query parameters, compiled once per table
//! version, and the order in which rules are tried (Gateway API's precedence).
//!
//! A regular expression that does not compile (the controller checks them, so only a
//! hand-made table can hold one) never matches: the rule is never served, rather than
//! served without its condition.

use std::cmp::Reverse;

use fairway_proto::model::{PathKind, Rule, StringMatch};
use regex::Regex;

use super::path::{prefix_matches, request_path};

/// What the router may ask of a request beyond its host and target.
pub trait Headers: Sync {
    /// The first value of header `name` (lowercase), if any.
    fn first(&self, name: &str) -> Option<&[u8]>;
}

/// No headers: a request whose headers are unknown matches no header condition.
impl Headers for () {
    fn first(&self, _: &str) -> Option<&[u8]> {
        None
    }
}

/// A request as the router sees it.
#[derive(Clone, Copy)]
pub struct RequestView<'a> {
    /// `None`: unknown, so no method condition matches.
    pub method: Option<&'a str>,
    /// The request target's path and query.
    pub path_and_query: &'a str,
    pub headers: &'a dyn Headers,
}

impl std::fmt::Debug for RequestView<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RequestView")
            .field("method", &self.method)
            .field("path_and_query", &self.path_and_query)
            .finish_non_exhaustive()
    }
}

#[derive(Clone, Debug)]
enum Value {
    Exact(String),
    Regex(Regex),
    /// A pattern that did not compile.
    Never,
}

impl Value {
    fn compile(value: &StringMatch) -> Self {
        match value {
            StringMatch::Exact(v) => Value::Exact(v.clone()),
            StringMatch::RegularExpression(p) => whole(p).map_or(Value::Never, Value::Regex),
        }
    }

    fn matches(&self, value: &[u8]) -> bool {
        match self {
            Value::Exact(v) => v.as_bytes() == value,
            Value::Regex(re) => std::str::from_utf8(value).is_ok_and(|v| re.is_match(v)),
            Value::Never => false,
        }
    }
}

/// A regex that must match the whole value, as Gateway API's matches do.
fn whole(pattern: &str) -> Option<Regex> {
    Regex::new(&format!("^(?:{pattern})$")).ok()
}

#[derive(Clone, Debug)]
enum PathMatcher {
    Prefix,
    Exact,
    Regex(Regex),
    Never,
}

/// One rule's compiled match.
#[derive(Clone, Debug)]
pub(super) struct Matcher {
    path: PathMatcher,
    method: Option<String>,
    headers: Vec<(String, Value)>,
    query: Vec<(String, Value)>,
}

impl Matcher {
    pub(super) fn compile(rule: &Rule) -> Self {
        let m = &rule.matching;
        let path = match m.path {
            PathKind::Prefix => PathMatcher::Prefix,
            PathKind::Exact => PathMatcher::Exact,
            PathKind::RegularExpression => {
                whole(&rule.path_prefix).map_or(PathMatcher::Never, PathMatcher::Regex)
            }
        };
        let pairs = |name: &String, value: &StringMatch| (name.clone(), Value::compile(value));
        Matcher {
            path,
            method: m.method.clone(),
            headers: m.headers.iter().map(|h| pairs(&h.name, &h.value)).collect(),
            query: m
                .query_params
                .iter()
                .map(|q| pairs(&q.name, &q.value))
                .collect(),
        }
    }

    /// Whether `request` (whose path without query is `path`) matches `rule`.
    pub(super) fn matches(&self, rule: &Rule, path: &str, request: &RequestView<'_>) -> bool {
        let path_ok = match &self.path {
            PathMatcher::Prefix => prefix_matches(&rule.path_prefix, path),
            PathMatcher::Exact => rule.path_prefix == path,
            PathMatcher::Regex(re) => re.is_match(path),
            PathMatcher::Never => false,
        };
        path_ok
            && (self.method.as_deref()).is_none_or(|m| request.method == Some(m))
            && (self.headers.iter())
                .all(|(name, v)| request.headers.first(name).is_some_and(|h| v.matches(h)))
            && (self.query.iter()).all(|(name, v)| {
                query_param(request.path_and_query, name).is_some_and(|q| v.matches(q.as_bytes()))
            })
    }
}

/// The first value of query parameter `name` (compared as sent, not percent-decoded).
fn query_param<'a>(path_and_query: &'a str, name: &str) -> Option<&'a str> {
    let query = path_and_query.split_once('?')?.1;
    let query = query.split_once('#').map_or(query, |(q, _)| q);
    query.split('&').find_map(|pair| {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        (key == name).then_some(value)
    })
}

/// The order rules are tried in, Gateway API's: an exact path, then a regular
/// expression (its place is implementation-specific; before prefixes, so a `/`
/// catch-all does not hide it), then the longest prefix; on a tie, a method condition
/// first, then more header conditions, then more query conditions; then rule order
/// (the sort is stable).
pub(super) fn precedence(rules: &[Rule]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..rules.len()).collect();
    order.sort_by_key(|&i| {
        let rule = &rules[i];
        let m = &rule.matching;
        let kind = match m.path {
            PathKind::Exact => 0,
            PathKind::RegularExpression => 1,
            PathKind::Prefix => 2,
        };
        (
            kind,
            Reverse(rule.path_prefix.len()),
            m.method.is_none(),
            Reverse(m.headers.len()),
            Reverse(m.query_params.len()),
        )
    });
    order
}

/// The path part of a request target, for matching.
pub(super) fn path_of(path_and_query: &str) -> &str {
    request_path(path_and_query)
}

#[cfg(test)]
mod tests;
