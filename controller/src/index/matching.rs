//! An HTTPRoute match into the model's [`model::Matching`]: path (`PathPrefix`, the
//! default; `Exact`; `RegularExpression`), headers and query parameters (`Exact`, the
//! default; `RegularExpression`) and method. Regular expressions are compiled here with
//! the proxy's engine (Rust `regex`), so one that would not compile is this route's
//! `UnsupportedValue`, never a rule a proxy silently cannot serve.

use fairway_proto::model::{self, HeaderMatch, PathKind, QueryParamMatch, StringMatch};

use super::base::{SpecError, Unsupported, other_fields, unsupported};
use crate::crd;
use crate::httproute::{HttpRouteMatch, HttpValueMatch};

/// The methods Gateway API's `HTTPMethod` enumerates.
const METHODS: [&str; 9] = [
    "GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH",
];

fn regex(field: &str, pattern: &str) -> Result<(), Unsupported> {
    regex::Regex::new(pattern)
        .map(drop)
        .map_err(|e| Unsupported {
            field: field.to_owned(),
            why: format!("invalid regular expression {pattern:?}: {e}"),
        })
}

fn value(field: &str, m: &HttpValueMatch) -> Result<StringMatch, Unsupported> {
    match m.type_.as_deref().unwrap_or("Exact") {
        "Exact" => Ok(StringMatch::Exact(m.value.clone())),
        "RegularExpression" => {
            regex(&format!("{field}.value"), &m.value)?;
            Ok(StringMatch::RegularExpression(m.value.clone()))
        }
        other => Err(Unsupported {
            field: format!("{field}.type"),
            why: format!("{other} is not a match type: use Exact or RegularExpression"),
        }),
    }
}

/// One match: the path value and how it matches, or the field at fault.
pub(super) fn parse(
    field: &str,
    m: &HttpRouteMatch,
) -> Result<(String, model::Matching), Unsupported> {
    other_fields(field, &m.other)?;
    let path = m.path.clone().unwrap_or_default();
    let path_value = path.value.unwrap_or_else(|| "/".to_owned());
    let kind = match path.type_.as_deref().unwrap_or("PathPrefix") {
        "PathPrefix" => PathKind::Prefix,
        "Exact" => PathKind::Exact,
        "RegularExpression" => {
            regex(&format!("{field}.path.value"), &path_value)?;
            PathKind::RegularExpression
        }
        other => {
            return Err(Unsupported {
                field: format!("{field}.path.type"),
                why: format!("{other} is not a path match type"),
            });
        }
    };
    if kind != PathKind::RegularExpression && !path_value.starts_with('/') {
        return Err(unsupported(
            format!("{field}.path.value"),
            "must start with \"/\"",
        ));
    }
    let mut headers = Vec::new();
    for (k, h) in m.headers.iter().enumerate() {
        let name = h.name.to_ascii_lowercase();
        // Gateway API: a second match of the same header name is ignored.
        if headers.iter().any(|x: &HeaderMatch| x.name == name) {
            continue;
        }
        let value = value(&format!("{field}.headers[{k}]"), h)?;
        headers.push(HeaderMatch { name, value });
    }
    let mut query_params = Vec::new();
    for (k, q) in m.query_params.iter().enumerate() {
        if query_params
            .iter()
            .any(|x: &QueryParamMatch| x.name == q.name)
        {
            continue;
        }
        let value = value(&format!("{field}.queryParams[{k}]"), q)?;
        query_params.push(QueryParamMatch {
            name: q.name.clone(),
            value,
        });
    }
    let method = match m.method.as_deref() {
        Some(method) if METHODS.contains(&method) => Some(method.to_owned()),
        Some(other) => {
            let why = format!("{other} is not an HTTP method Gateway API names");
            return Err(unsupported(format!("{field}.method"), &why));
        }
        None => None,
    };
    let matching = model::Matching {
        path: kind,
        method,
        headers,
        query_params,
    };
    Ok((path_value, matching))
}

/// `rules[i].match`, read as an HTTPRoute's match is (one conversion for both inputs).
pub(super) fn route_rule(
    i: usize,
    prefix: &str,
    m: &crd::RuleMatchSpec,
) -> Result<(String, model::Matching), SpecError> {
    use crate::httproute::HttpPathMatch;
    if m.path.is_some() && prefix != "/" {
        return Err(SpecError::PathTwice(prefix.to_owned()));
    }
    let value = |v: &crd::ValueMatchSpec| HttpValueMatch {
        type_: Some(format!("{:?}", v.type_)),
        name: v.name.clone(),
        value: v.value.clone(),
    };
    let path = m.path.as_ref().map_or_else(
        || HttpPathMatch {
            type_: None,
            value: Some(prefix.to_owned()),
        },
        |p| HttpPathMatch {
            type_: Some(format!("{:?}", p.type_)),
            value: Some(p.value.clone()),
        },
    );
    let gateway = HttpRouteMatch {
        path: Some(path),
        headers: m.headers.iter().map(value).collect(),
        query_params: m.query_params.iter().map(value).collect(),
        method: m.method.clone(),
        other: Default::default(),
    };
    parse(&format!("spec.rules[{i}].match"), &gateway).map_err(|e| SpecError::Match(e.to_string()))
}
