//! What a rule does to a request besides choosing its pod: Gateway API's filters, as the
//! proxy needs them.

/// A rule's filters; the default is none, which every proxy release understands.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Filters {
    /// Header edits on requests this rule takes (a `RequestHeaderModifier`).
    pub request_headers: Option<HeaderEdits>,
}

impl Filters {
    /// Whether the rule has no filter at all.
    pub fn is_empty(&self) -> bool {
        *self == Filters::default()
    }
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
