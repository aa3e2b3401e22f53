//! A message head's header fields as the peer sent them: the head's bytes and where each
//! field sits in them. A pod's response head, and a request head the downstream fast
//! loop read. Below the request and response types and both HTTP/1.1 parsers, which
//! all carry or fill them; it depends on nothing of the proxy's.
//!
//! Why not an `http::HeaderMap` at once: building one (hashing, validating and inserting
//! every field, then removing the hop-by-hop ones) cost more than the rest of reading the
//! message. The writers copy fields straight from here, leaving out the hop-by-hop ones
//! as they go ([`is_hop_by_hop`]); only the paths that need a map (hyper's, HTTP/2 to a
//! pod, header edits) build one, with [`Fields::to_header_map`].

use std::ops::Range;

use bytes::Bytes;
use http::HeaderMap;
use http::header::{HeaderName, HeaderValue};

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

/// Where one header field's name and value sit in a head: (start, length). Shared by
/// the response parser (`h1`) and the downstream request parser, which slice heads the
/// same way.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Span {
    pub name: (usize, usize),
    pub value: (usize, usize),
}

impl Span {
    pub fn of(buf: &[u8], header: &httparse::Header<'_>) -> Self {
        Span {
            name: (offset(buf, header.name.as_bytes()), header.name.len()),
            value: (offset(buf, header.value), header.value.len()),
        }
    }

    /// Where the name sits.
    pub fn name(&self) -> Range<usize> {
        self.name.0..self.name.0 + self.name.1
    }

    /// Where the value sits.
    pub fn value(&self) -> Range<usize> {
        self.value.0..self.value.0 + self.value.1
    }

    /// The whole field line, name to value, without its line end.
    pub fn line(&self) -> Range<usize> {
        self.name.0..self.value.0 + self.value.1
    }
}

/// Where `part`, a slice of `buf`, starts in it.
pub(crate) fn offset(buf: &[u8], part: &[u8]) -> usize {
    part.as_ptr() as usize - buf.as_ptr() as usize
}
