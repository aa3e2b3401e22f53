//! A rule's match beyond its path prefix: how the path matches, and conditions on
//! method, headers and query (Gateway API's `HTTPRouteMatch`, as the proxy needs it).

/// How a rule's path matches, and its conditions on method, headers and query.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Matching {
    pub path: PathKind,
    /// An HTTP method, uppercase; `None`: any.
    pub method: Option<String>,
    /// Every one must match (names lowercase).
    pub headers: Vec<HeaderMatch>,
    /// Every one must match (names exact, case-sensitive, as Gateway API says).
    pub query_params: Vec<QueryParamMatch>,
}

impl Matching {
    /// Whether a proxy that knows only path prefixes would serve this rule as meant.
    pub fn is_prefix_only(&self) -> bool {
        *self == Matching::default()
    }
}

/// How a rule's path value matches a request's path (the query left out).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum PathKind {
    /// Whole segments (`/api` matches `/api` and `/api/x`, not `/apix`); see the router.
    #[default]
    Prefix,
    /// The whole path, exactly.
    Exact,
    /// A regular expression (Rust `regex` syntax) matching the whole path.
    RegularExpression,
}

/// A value a condition compares with.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum StringMatch {
    Exact(String),
    /// Rust `regex` syntax, matching the whole value.
    RegularExpression(String),
}

/// A header the request must carry with a matching (first) value.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct HeaderMatch {
    /// Lowercase.
    pub name: String,
    pub value: StringMatch,
}

/// A query parameter the request must carry with a matching (first) value.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct QueryParamMatch {
    pub name: String,
    pub value: StringMatch,
}
