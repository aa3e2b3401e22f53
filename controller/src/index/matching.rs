//! An HTTPRoute match into the model's [`model::Matching`]: path (`PathPrefix`, the
//! default; `Exact`; `RegularExpression`), headers and query parameters (`Exact`, the
//! default; `RegularExpression`) and method. Regular expressions are compiled here with
//! the proxy's engine (Rust `regex`), so one that would not compile is this route's
//! `UnsupportedValue`, never a rule a proxy silently cannot serve.

use fairway_proto::model::{self, HeaderMatch, PathKind, QueryParamMatch, StringMatch};

use super::gamma::{Unsupported, other_fields, unsupported};
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
