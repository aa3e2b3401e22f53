//! What the router sees of a request: its method, its path and query, and its header
//! fields, in the request's map or still in the raw fields the fast loop read (both are
//! looked at, as every header reader on the request path does). Nothing is copied: a
//! rule without conditions never asks for a header.

use http::{HeaderMap, Request};

use crate::fields::Fields;
use crate::route::{Headers, RequestView};

/// A request's header fields for the router.
pub(super) struct RequestHeaders<'a> {
    pub map: &'a HeaderMap,
    pub fields: Option<&'a Fields>,
}

impl Headers for RequestHeaders<'_> {
    fn first(&self, name: &str) -> Option<&[u8]> {
        if let Some(value) = self.map.get(name) {
            return Some(value.as_bytes());
        }
        let mut raw = self.fields?.iter();
        raw.find(|(n, _)| n.eq_ignore_ascii_case(name.as_bytes()))
            .map(|(_, v)| v)
    }
}

/// The router's view of `request`, whose fields are `headers`.
pub(super) fn of<'a, B>(
    request: &'a Request<B>,
    headers: &'a RequestHeaders<'a>,
) -> RequestView<'a> {
    RequestView {
        method: Some(request.method().as_str()),
        path_and_query: request.uri().path_and_query().map_or("/", |p| p.as_str()),
        headers,
    }
}
