//! A request's affinity key (`loadBalancer.affinity`), read from where the Route says:
//! a header's first value, a cookie's value, or the client's address. The header
//! fields may sit in the request's map or, for a request the fast loop read, still in
//! its raw fields: both are looked at, as every header reader on the request path does.
//! Pure: nothing here reads a socket or a clock.

use fairway_proto::model::AffinityKey;
use http::HeaderMap;
use http::header::{COOKIE, HeaderValue};

use crate::balance::key_hash;
use crate::fields::Fields;

/// The key hash of a request with `headers`, raw `fields` and `client` (its address as
/// `X-Forwarded-For` writes it), for [`crate::table::Table::resolve_for`]. An empty
/// value is no key: such requests are balanced by the Route's policy.
pub(super) fn key_of<'a>(
    headers: &'a HeaderMap,
    fields: Option<&'a Fields>,
    client: &'a HeaderValue,
) -> impl Fn(&AffinityKey) -> Option<u64> + 'a {
    move |key| {
        let value = match key {
            AffinityKey::Header(name) => first(headers, fields, name),
            AffinityKey::Cookie(name) => cookie(headers, fields, name),
            AffinityKey::SourceIp => Some(client.as_bytes()),
        };
        value.filter(|v| !v.is_empty()).map(key_hash)
    }
}

/// The first value of the header `name` (lowercase), from the map or the raw fields.
fn first<'a>(
    headers: &'a HeaderMap,
    fields: Option<&'a Fields>,
    name: &'a str,
) -> Option<&'a [u8]> {
    if let Some(value) = headers.get(name) {
        return Some(value.as_bytes());
    }
    fields?.get_all(name).next()
}

/// The value of cookie `name` in any `Cookie` header (RFC 6265 §4.2: `a=1; b=2`);
/// names compare exactly, the first match wins.
fn cookie<'a>(headers: &'a HeaderMap, fields: Option<&'a Fields>, name: &str) -> Option<&'a [u8]> {
    let mapped = headers
        .get_all(COOKIE)
        .into_iter()
        .map(HeaderValue::as_bytes);
    let raw = fields.into_iter().flat_map(|f| f.get_all("cookie"));
    mapped.chain(raw).find_map(|line| {
        line.split(|&b| b == b';').find_map(|pair| {
            let pair = pair.trim_ascii();
            let eq = pair.iter().position(|&b| b == b'=')?;
            (pair[..eq].trim_ascii() == name.as_bytes()).then(|| pair[eq + 1..].trim_ascii())
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(headers: &HeaderMap, client: &str, k: &AffinityKey) -> Option<u64> {
        key_of(headers, None, &HeaderValue::from_str(client).unwrap())(k)
    }

    #[test]
    fn each_source_reads_its_key() {
        let mut h = HeaderMap::new();
        h.append("x-user", HeaderValue::from_static("alice"));
        h.append("x-user", HeaderValue::from_static("bob"));
        h.append(COOKIE, HeaderValue::from_static("theme=dark; session=s1"));
        h.append(COOKIE, HeaderValue::from_static("session=s2"));
        let header = AffinityKey::Header("x-user".into());
        let session = AffinityKey::Cookie("session".into());
        assert_eq!(key(&h, "10.0.0.1", &header), Some(key_hash(b"alice")));
        assert_eq!(key(&h, "10.0.0.1", &session), Some(key_hash(b"s1")));
        assert_eq!(
            key(&h, "10.0.0.1", &AffinityKey::SourceIp),
            Some(key_hash(b"10.0.0.1"))
        );
    }

    #[test]
    fn missing_or_empty_keys_are_none() {
        let mut h = HeaderMap::new();
        h.append("x-empty", HeaderValue::from_static(""));
        h.append(
            COOKIE,
            HeaderValue::from_static("Session=upper; sessionx=1; session"),
        );
        for k in [
            AffinityKey::Header("x-user".into()),
            AffinityKey::Header("x-empty".into()),
            // Cookie names compare exactly, and a pair without `=` has no value.
            AffinityKey::Cookie("session".into()),
        ] {
            assert_eq!(key(&h, "10.0.0.1", &k), None, "{k:?}");
        }
    }

    #[test]
    fn raw_fields_are_read_like_the_map() {
        // The fast loop's fields, built as its parser builds them.
        let raw: &'static [u8] = b"GET / HTTP/1.1\r\nX-User: carol\r\nCookie: session=s3\r\n\r\n";
        let mut parsed = [httparse::EMPTY_HEADER; 4];
        let mut request = httparse::Request::new(&mut parsed);
        request.parse(raw).expect("a request head");
        let spans = request
            .headers
            .iter()
            .map(|h| crate::fields::Span::of(raw, h));
        let fields = Fields::new(bytes::Bytes::from_static(raw), spans.collect());
        let client = HeaderValue::from_static("10.0.0.2");
        let empty = HeaderMap::new();
        let read = key_of(&empty, Some(&fields), &client);
        assert_eq!(
            read(&AffinityKey::Header("x-user".into())),
            Some(key_hash(b"carol"))
        );
        assert_eq!(
            read(&AffinityKey::Cookie("session".into())),
            Some(key_hash(b"s3"))
        );
    }
}
