//! Rules on the wire, and the compatibility rule for matching beyond path prefixes.
//!
//! A Route whose rules all match by path prefix alone goes in `Route.rules`, as every
//! proxy release reads it. A Route with any other rule (an exact or regex path, a
//! method, header or query condition, timeouts of its own) goes whole in
//! `Route.match_rules` instead: a
//! proxy that predates matching skips that unknown field, sees a Route with no rule and
//! answers its hosts `404`, rather than serve a header rule as the bare prefix it can
//! read and send requests where the Route says they must not go.

use super::{ConvertError, filters, required};
use crate::model::{
    Backend, Filters, HeaderMatch, Matching, PathKind, QueryParamMatch, Redirect, Rule,
    StringMatch, UnresolvedBackend, UrlRewrite,
};
use crate::pb;

/// Whether a proxy that predates matching serves `rule` as meant.
fn plain(rule: &Rule) -> bool {
    rule.matching.is_prefix_only()
        && rule.timeouts.is_none()
        && rule.retries.is_none()
        && rule.filters.is_empty()
}

/// `Route.rules`: the rules, when every one is a plain prefix rule.
pub(super) fn rules(rules: &[Rule]) -> Vec<pb::Rule> {
    if rules.iter().all(plain) {
        rules.iter().map(pb::Rule::from).collect()
    } else {
        Vec::new()
    }
}

/// `Route.match_rules`: the rules, when any one is more than a prefix rule.
pub(super) fn match_rules(rules: &[Rule]) -> Vec<pb::Rule> {
    if rules.iter().all(plain) {
        Vec::new()
    } else {
        rules.iter().map(pb::Rule::from).collect()
    }
}

/// The rules of a wire Route: `match_rules` when present, else `rules`.
pub(super) fn from_wire(
    rules: Vec<pb::Rule>,
    match_rules: Vec<pb::Rule>,
) -> Result<Vec<Rule>, ConvertError> {
    let wire = if match_rules.is_empty() {
        rules
    } else {
        match_rules
    };
    wire.into_iter().map(Rule::try_from).collect()
}

fn condition(name: &str, value: &StringMatch) -> pb::StringCondition {
    use pb::string_condition::Value;
    pb::StringCondition {
        name: name.to_owned(),
        value: Some(match value {
            StringMatch::Exact(v) => Value::Exact(v.clone()),
            StringMatch::RegularExpression(v) => Value::RegularExpression(v.clone()),
        }),
    }
}

fn string_match(c: pb::StringCondition) -> Result<(String, StringMatch), ConvertError> {
    use pb::string_condition::Value;
    let value = match required(c.value, "StringCondition.value")? {
        Value::Exact(v) => StringMatch::Exact(v),
        Value::RegularExpression(v) => StringMatch::RegularExpression(v),
    };
    Ok((c.name, value))
}

impl From<&Rule> for pb::Rule {
    fn from(r: &Rule) -> Self {
        let m = &r.matching;
        pb::Rule {
            path_prefix: r.path_prefix.clone(),
            backends: r.backends.iter().map(pb::Backend::from).collect(),
            unresolved: r
                .unresolved
                .iter()
                .map(|u| pb::UnresolvedBackend {
                    service: u.service.clone(),
                    weight: u.weight,
                    reason: u.reason.clone(),
                    message: u.message.clone(),
                })
                .collect(),
            path_type: match m.path {
                PathKind::Prefix => pb::PathType::Prefix,
                PathKind::Exact => pb::PathType::Exact,
                PathKind::RegularExpression => pb::PathType::RegularExpression,
            }
            .into(),
            method: m.method.clone(),
            headers: (m.headers.iter())
                .map(|h| condition(&h.name, &h.value))
                .collect(),
            query_params: (m.query_params.iter())
                .map(|q| condition(&q.name, &q.value))
                .collect(),
            timeouts: r.timeouts.as_ref().map(pb::Timeouts::from),
            retries: r.retries.as_ref().map(pb::Retries::from),
            request_headers: (r.filters.request_headers.as_ref()).map(filters::edits_to_wire),
            response_headers: (r.filters.response_headers.as_ref()).map(filters::edits_to_wire),
            rewrite: r.filters.rewrite.as_ref().map(pb::UrlRewrite::from),
            redirect: r.filters.redirect.as_ref().map(pb::Redirect::from),
        }
    }
}

impl TryFrom<pb::Rule> for Rule {
    type Error = ConvertError;

    fn try_from(r: pb::Rule) -> Result<Self, ConvertError> {
        let path = match pb::PathType::try_from(r.path_type) {
            Ok(pb::PathType::Prefix) => PathKind::Prefix,
            Ok(pb::PathType::Exact) => PathKind::Exact,
            Ok(pb::PathType::RegularExpression) => PathKind::RegularExpression,
            Err(_) => return Err(ConvertError::UnknownPathType(r.path_type)),
        };
        let headers = (r.headers.into_iter())
            .map(|c| string_match(c).map(|(name, value)| HeaderMatch { name, value }))
            .collect::<Result<_, _>>()?;
        let query_params = (r.query_params.into_iter())
            .map(|c| string_match(c).map(|(name, value)| QueryParamMatch { name, value }))
            .collect::<Result<_, _>>()?;
        Ok(Rule {
            path_prefix: r.path_prefix,
            matching: Matching {
                path,
                method: r.method,
                headers,
                query_params,
            },
            timeouts: r.timeouts.map(crate::model::Timeouts::from),
            retries: r.retries.map(crate::model::Retries::from),
            filters: Filters {
                request_headers: r.request_headers.map(filters::edits_from_wire),
                response_headers: r.response_headers.map(filters::edits_from_wire),
                rewrite: r.rewrite.map(UrlRewrite::try_from).transpose()?,
                redirect: r.redirect.map(Redirect::try_from).transpose()?,
            },
            backends: r
                .backends
                .into_iter()
                .map(Backend::try_from)
                .collect::<Result<_, _>>()?,
            unresolved: r
                .unresolved
                .into_iter()
                .map(|u| UnresolvedBackend {
                    service: u.service,
                    weight: u.weight,
                    reason: u.reason,
                    message: u.message,
                })
                .collect(),
        })
    }
}
