//! A message head's header fields as the peer sent them: the head's bytes and where each
//! field sits in them. A pod's response head, and a request head the downstream fast
//! loop read.
//!
//! Why not an `http::HeaderMap` at once: building one (hashing, validating and inserting
//! every field, then removing the hop-by-hop ones) cost more than the rest of reading the
//! message. The writers copy fields straight from here, leaving out the hop-by-hop ones
//! as they go ([`is_hop_by_hop`]); only the paths that need a map (hyper's, HTTP/2 to a
//! pod, header edits) build one, with [`Fields::to_header_map`].

use bytes::Bytes;
use http::HeaderMap;
use http::header::{HeaderName, HeaderValue};

use super::decode::Span;

/// The header fields of one head. Names keep the peer's case; look-ups ignore it.
#[derive(Clone, Debug, Default)]
pub struct Fields {
    head: Bytes,
    spans: Vec<Span>,
}

impl Fields {
    /// `spans` locate each field in `head` (httparse validated names and values).
    pub(crate) fn new(head: Bytes, spans: Vec<Span>) -> Self {
        Fields { head, spans }
    }

    pub fn is_empty(&self) -> bool {
        self.spans.is_empty()
    }

    pub fn len(&self) -> usize {
        self.spans.len()
    }

    /// Every field as (name, value), in the order the pod sent them.
    pub fn iter(&self) -> impl Iterator<Item = (&[u8], &[u8])> {
        self.spans
            .iter()
            .map(|span| (&self.head[span.name()], &self.head[span.value()]))
    }

    /// Every field as (name, its whole line as sent, without the line end): what a
    /// writer copies in one piece.
    pub fn lines(&self) -> impl Iterator<Item = (&[u8], &[u8])> {
        self.spans
            .iter()
            .map(|span| (&self.head[span.name()], &self.head[span.line()]))
    }

    /// The values of the fields named `name` (any case), in order.
    pub fn get_all<'a>(&'a self, name: &'a str) -> impl DoubleEndedIterator<Item = &'a [u8]> + 'a {
        self.spans
            .iter()
            .filter(move |span| self.head[span.name()].eq_ignore_ascii_case(name.as_bytes()))
            .map(|span| &self.head[span.value()])
    }

    /// The fields as a `HeaderMap`, values sharing the head's bytes. A field `http`
    /// refuses (httparse let it through) is left out rather than failing the response.
    pub fn to_header_map(&self) -> HeaderMap {
        let mut headers = HeaderMap::with_capacity(self.spans.len());
        for span in &self.spans {
            let name = HeaderName::from_bytes(&self.head[span.name()]);
            let value = HeaderValue::from_maybe_shared(self.head.slice(span.value()));
            if let (Ok(name), Ok(value)) = (name, value) {
                headers.append(name, value);
            }
        }
        headers
    }
}

/// Whether a field named `name` (any case) is one of the fixed connection-scoped fields
/// that never cross a proxy (RFC 9110 §7.6.1, with the legacy `Keep-Alive` and
/// `Proxy-Connection`). `TE` is not here: a request may keep `te: trailers`. Fields a
/// `Connection` header lists are the caller's to check.
pub fn is_hop_by_hop(name: &[u8]) -> bool {
    // By length first: most fields are rejected without comparing bytes.
    let fixed: &[&[u8]] = match name.len() {
        7 => &[b"upgrade"],
        10 => &[b"connection", b"keep-alive"],
        16 => &[b"proxy-connection"],
        17 => &[b"transfer-encoding"],
        18 => &[b"proxy-authenticate"],
        19 => &[b"proxy-authorization"],
        _ => &[],
    };
    fixed.iter().any(|hop| name.eq_ignore_ascii_case(hop))
}
