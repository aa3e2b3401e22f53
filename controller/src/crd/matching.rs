//! `rules[].match`: a Route rule's match beyond a path prefix, in the shape of Gateway
//! API's `HTTPRouteMatch` (path type, headers, query parameters, method), so one
//! reading of it serves both inputs (the index converts both the same way).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// How a rule's path matches, and conditions on the request. Absent: the rule's
/// `pathPrefix` alone.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RuleMatchSpec {
    /// The path, instead of `pathPrefix` (which must then stay unset).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<PathMatchSpec>,
    /// Headers the request must carry with a matching first value; names any case.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub headers: Vec<ValueMatchSpec>,
    /// Query parameters the request must carry with a matching first value (compared
    /// as sent); names exact.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub query_params: Vec<ValueMatchSpec>,
    /// The request's method, e.g. GET.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^(GET|HEAD|POST|PUT|DELETE|CONNECT|OPTIONS|TRACE|PATCH)$"))]
    pub method: Option<String>,
}

/// A path and how it matches.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PathMatchSpec {
    /// PathPrefix (whole segments), Exact, or RegularExpression (Rust regex syntax,
    /// matching the whole path).
    #[serde(default, rename = "type")]
    pub type_: PathType,
    pub value: String,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum PathType {
    #[default]
    PathPrefix,
    Exact,
    RegularExpression,
}

/// A header or query parameter and its value.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ValueMatchSpec {
    /// Exact (the default) or RegularExpression (Rust regex syntax, the whole value).
    #[serde(default, rename = "type")]
    pub type_: ValueType,
    #[schemars(length(min = 1))]
    pub name: String,
    pub value: String,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum ValueType {
    #[default]
    Exact,
    RegularExpression,
}
