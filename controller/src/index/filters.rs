//! A rule's `filters` into the model's [`model::Filters`]: header modifiers both ways,
//! `URLRewrite` and `RequestRedirect`, each at most once, checked as Gateway API says
//! (a rewrite and a redirect never together; `ReplacePrefixMatch` only on a rule with
//! exactly one `PathPrefix` match; a redirect takes no backends). Any other filter type,
//! or a value that cannot be served, is the field at fault: the route's
//! `UnsupportedValue` (a Route's `InvalidSpec`), never a filter silently left out.

use fairway_proto::model::{self, PathKind};

use super::base::{SpecError, Unsupported, other_fields, unsupported};
use super::names::is_dns_subdomain;
use crate::crd;
use crate::httproute::{HeaderField, HeaderModifier, HttpRouteFilter, PathModifier};

/// The statuses `RequestRedirect` may answer with (301 and 302 are Core, the others
/// Extended in Gateway API).
const REDIRECT_STATUSES: [u16; 5] = [301, 302, 303, 307, 308];
/// Gateway API's default redirect status.
const DEFAULT_REDIRECT_STATUS: u16 = 302;

/// What the filters apply to: the rule's matches and whether it has backends.
pub(super) struct RuleShape<'a> {
    pub matches: &'a [(String, model::Matching)],
    pub backends: usize,
}

/// A rule's `filters` at `field` (`spec.rules[i]`), for a rule of `shape`.
pub(super) fn parse(
    field: &str,
    filters: &[HttpRouteFilter],
    shape: &RuleShape<'_>,
) -> Result<model::Filters, Unsupported> {
    let mut parsed = model::Filters::default();
    let mut seen: Vec<&str> = Vec::new();
    for (j, filter) in filters.iter().enumerate() {
        let field = format!("{field}.filters[{j}]");
        let kind = filter.type_.as_str();
        if seen.contains(&kind) {
            let why = format!("{kind} may appear once per rule");
            return Err(unsupported(field, &why));
        }
        seen.push(kind);
        blocks_match(&field, filter)?;
        let config = |present: bool, name: &str| match present {
            true => Ok(()),
            false => Err(unsupported(format!("{field}.{name}"), "is required")),
        };
        match kind {
            "RequestHeaderModifier" | "ResponseHeaderModifier" => {
                let (name, block, into) = match kind {
                    "RequestHeaderModifier" => (
                        "requestHeaderModifier",
                        &filter.request_header_modifier,
                        &mut parsed.request_headers,
                    ),
                    _ => (
                        "responseHeaderModifier",
                        &filter.response_header_modifier,
                        &mut parsed.response_headers,
                    ),
                };
                config(block.is_some(), name)?;
                let field = format!("{field}.{name}");
                *into = block.as_ref().map(|m| edits(&field, m)).transpose()?;
            }
            "URLRewrite" => {
                config(filter.url_rewrite.is_some(), "urlRewrite")?;
                let Some(r) = &filter.url_rewrite else {
                    continue;
                };
                let field = format!("{field}.urlRewrite");
                parsed.rewrite = Some(model::UrlRewrite {
                    hostname: r
                        .hostname
                        .as_deref()
                        .map(|h| hostname(&field, h))
                        .transpose()?,
                    path: r
                        .path
                        .as_ref()
                        .map(|p| path(&field, p, shape))
                        .transpose()?,
                });
            }
            "RequestRedirect" => {
                config(filter.request_redirect.is_some(), "requestRedirect")?;
                let Some(r) = &filter.request_redirect else {
                    continue;
                };
                parsed.redirect = Some(redirect(&format!("{field}.requestRedirect"), r, shape)?);
            }
            other => {
                let why = format!("{other} is not supported by Fairway yet");
                return Err(unsupported(format!("{field}.type"), &why));
            }
        }
    }
    if parsed.rewrite.is_some() && parsed.redirect.is_some() {
        return Err(unsupported(
            format!("{field}.filters"),
            "URLRewrite and RequestRedirect cannot be used together",
        ));
    }
    if parsed.redirect.is_some() && shape.backends > 0 {
        return Err(unsupported(
            format!("{field}.backendRefs"),
            "RequestRedirect filter must not be used together with backendRefs",
        ));
    }
    Ok(parsed)
}

/// Refuses a block of another type than the filter's (the CRD's CEL rules refuse it
/// too; a `--static-dir` file meets no CEL), and any block Fairway does not type.
fn blocks_match(field: &str, filter: &HttpRouteFilter) -> Result<(), Unsupported> {
    let kind = filter.type_.as_str();
    let blocks = [
        (
            "requestHeaderModifier",
            "RequestHeaderModifier",
            filter.request_header_modifier.is_some(),
        ),
        (
            "responseHeaderModifier",
            "ResponseHeaderModifier",
            filter.response_header_modifier.is_some(),
        ),
        ("urlRewrite", "URLRewrite", filter.url_rewrite.is_some()),
        (
            "requestRedirect",
            "RequestRedirect",
            filter.request_redirect.is_some(),
        ),
    ];
    for (name, owner, present) in blocks {
        if present && owner != kind {
            let why = format!("must be unset in a filter of type {kind}");
            return Err(unsupported(format!("{field}.{name}"), &why));
        }
    }
    if blocks.iter().any(|(_, owner, _)| *owner == kind) {
        other_fields(field, &filter.other)?;
    }
    Ok(())
}

/// A Route's `rules[i].filters`, read as an HTTPRoute's are (the shapes are the same in
/// JSON, so one conversion serves both inputs).
pub(super) fn route_rule(
    i: usize,
    filters: &[crd::RouteFilterSpec],
    shape: &RuleShape<'_>,
) -> Result<model::Filters, SpecError> {
    let gateway = (filters.iter())
        .map(|f| serde_json::to_value(f).and_then(serde_json::from_value::<HttpRouteFilter>))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| SpecError::Filter(format!("spec.rules[{i}].filters: {e}")))?;
    parse(&format!("spec.rules[{i}]"), &gateway, shape)
        .map_err(|e| SpecError::Filter(e.to_string()))
}

fn redirect(
    field: &str,
    r: &crate::httproute::RequestRedirect,
    shape: &RuleShape<'_>,
) -> Result<model::Redirect, Unsupported> {
    let scheme = match r.scheme.as_deref() {
        None => None,
        Some(s @ ("http" | "https")) => Some(s.to_owned()),
        Some(other) => {
            let why = format!("{other} is not a scheme: use http or https");
            return Err(unsupported(format!("{field}.scheme"), &why));
        }
    };
    let port = match r.port {
        None => None,
        Some(p) => Some(
            u16::try_from(p)
                .ok()
                .filter(|p| *p > 0)
                .ok_or_else(|| unsupported(format!("{field}.port"), "must be 1-65535"))?,
        ),
    };
    let status = match r.status_code {
        None => DEFAULT_REDIRECT_STATUS,
        Some(code) => u16::try_from(code)
            .ok()
            .filter(|c| REDIRECT_STATUSES.contains(c))
            .ok_or_else(|| {
                let why = format!("{code} is not a redirect status: use 301, 302, 303, 307 or 308");
                unsupported(format!("{field}.statusCode"), &why)
            })?,
    };
    Ok(model::Redirect {
        scheme,
        hostname: r
            .hostname
            .as_deref()
            .map(|h| hostname(field, h))
            .transpose()?,
        path: r.path.as_ref().map(|p| path(field, p, shape)).transpose()?,
        port,
        status,
    })
}

fn hostname(field: &str, host: &str) -> Result<String, Unsupported> {
    let host = host.to_ascii_lowercase();
    match is_dns_subdomain(&host) {
        true => Ok(host),
        false => Err(unsupported(
            format!("{field}.hostname"),
            "is not a DNS name (no port, scheme or wildcard)",
        )),
    }
}

/// A path modifier; `ReplacePrefixMatch` needs the rule's one match to be a prefix,
/// which is what it replaces.
fn path(
    field: &str,
    p: &PathModifier,
    shape: &RuleShape<'_>,
) -> Result<model::PathRewrite, Unsupported> {
    let field = format!("{field}.path");
    let value = |v: &Option<String>, name: &str| {
        let v = v
            .clone()
            .ok_or_else(|| unsupported(format!("{field}.{name}"), "is required"))?;
        match v.is_empty() || v.starts_with('/') {
            true => Ok(v),
            false => Err(unsupported(
                format!("{field}.{name}"),
                "must start with \"/\"",
            )),
        }
    };
    match p.type_.as_str() {
        "ReplaceFullPath" => Ok(model::PathRewrite::ReplaceFullPath(value(
            &p.replace_full_path,
            "replaceFullPath",
        )?)),
        "ReplacePrefixMatch" => {
            let one_prefix = matches!(shape.matches, [(_, m)] if m.path == PathKind::Prefix);
            if !one_prefix {
                return Err(unsupported(
                    format!("{field}.type"),
                    "ReplacePrefixMatch needs exactly one match, of type PathPrefix",
                ));
            }
            let prefix = value(&p.replace_prefix_match, "replacePrefixMatch")?;
            Ok(model::PathRewrite::ReplacePrefixMatch(prefix))
        }
        other => {
            let why = format!(
                "{other} is not a path modifier: use ReplaceFullPath or ReplacePrefixMatch"
            );
            Err(unsupported(format!("{field}.type"), &why))
        }
    }
}

/// A header modifier (names lowercased, names and values checked as HTTP fields).
fn edits(field: &str, modifier: &HeaderModifier) -> Result<model::HeaderEdits, Unsupported> {
    let fields = |list: &[HeaderField], name: &str| {
        (list.iter().enumerate())
            .map(|(k, f)| header_field(&format!("{field}.{name}[{k}]"), f))
            .collect::<Result<Vec<_>, _>>()
    };
    let remove = (modifier.remove.iter().enumerate())
        .map(|(k, name)| {
            let f = HeaderField {
                name: name.clone(),
                value: String::new(),
            };
            header_field(&format!("{field}.remove[{k}]"), &f).map(|(name, _)| name)
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(model::HeaderEdits {
        set: fields(&modifier.set, "set")?,
        add: fields(&modifier.add, "add")?,
        remove,
    })
}

fn header_field(field: &str, f: &HeaderField) -> Result<(String, String), Unsupported> {
    let name = f.name.to_ascii_lowercase();
    if http::HeaderName::from_bytes(name.as_bytes()).is_err() {
        return Err(unsupported(
            format!("{field}.name"),
            "is not an HTTP field name",
        ));
    }
    if http::HeaderValue::from_str(&f.value).is_err() {
        return Err(unsupported(
            format!("{field}.value"),
            "is not an HTTP field value",
        ));
    }
    Ok((name, f.value.clone()))
}
