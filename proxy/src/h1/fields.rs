//! A response head's header fields as the pod sent them: the head's bytes and where each
//! field sits in them.
//!
//! Why not an `http::HeaderMap` at once: building one (hashing, validating and inserting
//! every field, then removing the hop-by-hop ones) cost more than the rest of reading the
//! response. The downstream fast loop copies fields straight from here, leaving out the
//! hop-by-hop ones as it goes; only the paths that hand a response to hyper (HTTP/2 and
//! handed-off HTTP/1.1 clients) build a map, with [`Fields::to_header_map`].

use bytes::Bytes;
use http::HeaderMap;
use http::header::{HeaderName, HeaderValue};

use super::decode::Span;

/// The header fields of one response head. Names keep the pod's case; look-ups ignore it.
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
