//! What a rule does to a request besides choosing its pod: Gateway API's filters, as the
//! proxy needs them.

/// A rule's filters; the default is none, which every proxy release understands.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Filters {
    /// Header edits on requests this rule takes (a `RequestHeaderModifier`).
    pub request_headers: Option<HeaderEdits>,
    /// Header edits on the responses to them (a `ResponseHeaderModifier`).
    pub response_headers: Option<HeaderEdits>,
    /// The host and path the pod gets instead of the client's (a `URLRewrite`).
    pub rewrite: Option<UrlRewrite>,
    /// The proxy answers with this redirect itself and contacts no pod (a
    /// `RequestRedirect`); never together with `rewrite`.
    pub redirect: Option<Redirect>,
}

impl Filters {
    /// Whether the rule has no filter at all.
    pub fn is_empty(&self) -> bool {
        *self == Filters::default()
    }
}

/// A new path for a request: the whole of it, or the part its rule's path prefix
/// matched (the rest, and the query, stay).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum PathRewrite {
    ReplaceFullPath(String),
    /// Only on a rule whose path matches by prefix.
    ReplacePrefixMatch(String),
}

/// Gateway API's `URLRewrite`: what the pod sees instead of what the client sent.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct UrlRewrite {
    /// The `Host` (or `:authority`) the pod gets; `None`: the client's.
    pub hostname: Option<String>,
    pub path: Option<PathRewrite>,
}

/// Gateway API's `RequestRedirect`: each part of the `Location` the proxy answers
/// with, `None` where the request's own part stays.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Redirect {
    /// `http` or `https`.
    pub scheme: Option<String>,
    pub hostname: Option<String>,
    pub path: Option<PathRewrite>,
    /// `None`: the scheme's well-known port when `scheme` is set, else the port the
    /// request was sent to.
    pub port: Option<u16>,
    /// 301, 302, 303, 307 or 308.
    pub status: u16,
}

/// Gateway API's `RequestHeaderModifier` (and `ResponseHeaderModifier`): header fields
/// the proxy sets, adds and removes on a request (or a response) before passing it on.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct HeaderEdits {
    /// Replace any field of the name (lowercase), or add it.
    pub set: Vec<(String, String)>,
    /// Append a field, keeping those already there.
    pub add: Vec<(String, String)>,
    /// Lowercase names removed.
    pub remove: Vec<String>,
}
