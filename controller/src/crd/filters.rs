//! `rules[].filters`: what a Route rule does to a request besides choosing its pod, in
//! the shape of Gateway API's `HTTPRouteFilter` (header modifiers both ways,
//! `URLRewrite`, `RequestRedirect`), so one reading serves both inputs: the index turns
//! these into an HTTPRoute's filters and converts both the same way.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// One filter: its type, and the block of that type.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RouteFilterSpec {
    #[serde(rename = "type")]
    pub type_: FilterType,
    /// Header fields set, added and removed on the request before it goes to the pod.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_header_modifier: Option<HeaderModifierSpec>,
    /// Header fields set, added and removed on the response before the client gets it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_header_modifier: Option<HeaderModifierSpec>,
    /// The host and path the pod gets instead of the client's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url_rewrite: Option<UrlRewriteSpec>,
    /// The proxy answers with a redirect itself; no pod is contacted, and the rule
    /// takes no backends.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_redirect: Option<RequestRedirectSpec>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum FilterType {
    RequestHeaderModifier,
    ResponseHeaderModifier,
    #[serde(rename = "URLRewrite")]
    UrlRewrite,
    RequestRedirect,
}

/// Header fields to set (replacing), add (appending) and remove, by name (any case).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct HeaderModifierSpec {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub set: Vec<HeaderFieldSpec>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub add: Vec<HeaderFieldSpec>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub remove: Vec<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct HeaderFieldSpec {
    #[schemars(length(min = 1))]
    pub name: String,
    pub value: String,
}

/// What the pod gets instead of what the client sent.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct UrlRewriteSpec {
    /// The Host the pod gets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<PathModifierSpec>,
}

/// The parts of the Location that differ from the request's own.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RequestRedirectSpec {
    /// http or https.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^(http|https)$"))]
    pub scheme: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<PathModifierSpec>,
    /// Absent: the scheme's well-known port when scheme is set, else the request's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 65535))]
    pub port: Option<i32>,
    /// 301, 302 (the default), 303, 307 or 308.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status_code: Option<i32>,
}

/// A new path: `ReplaceFullPath`, or `ReplacePrefixMatch` (the part the rule's path
/// prefix matched; only on a prefix rule).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PathModifierSpec {
    #[serde(rename = "type")]
    pub type_: PathModifierType,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replace_full_path: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replace_prefix_match: Option<String>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum PathModifierType {
    #[default]
    ReplaceFullPath,
    ReplacePrefixMatch,
}
