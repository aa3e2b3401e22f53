//! Header hygiene between client and pod: hop-by-hop headers stay on their hop
//! (RFC 9110 §7.6.1), `X-Forwarded-For` / `-Proto` tell the pod who asked.

use http::header::Entry;
use http::header::{
    CONNECTION, HeaderName, HeaderValue, PROXY_AUTHENTICATE, PROXY_AUTHORIZATION, TE, TRAILER,
    TRANSFER_ENCODING, UPGRADE,
};
use http::{HeaderMap, Response};

use crate::fields::{self, Fields};
use crate::response::ProxyBody;

pub const KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
pub const PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");
pub const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
pub const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");

/// Connection-scoped headers that never cross the proxy (besides what `Connection`
/// lists). `TE` is handled apart: `te: trailers` must reach gRPC servers.
const HOP_COUNT: usize = 7;
const HOP_BY_HOP: [HeaderName; HOP_COUNT] = [
    CONNECTION,
    KEEP_ALIVE,
    PROXY_CONNECTION,
    PROXY_AUTHENTICATE,
    PROXY_AUTHORIZATION,
    TRANSFER_ENCODING,
    UPGRADE,
];

/// Removes `Connection` and every header it lists, and the fixed hop-by-hop set. `TE`
/// survives only as `trailers` (the one value HTTP/2 allows, and gRPC needs).
/// `Trailer` goes on requests only (see [`strip_response`]).
pub fn strip_request(headers: &mut HeaderMap) {
    let present = Present::of(headers);
    strip_common(headers, &present);
    if present.trailer {
        headers.remove(TRAILER);
    }
    if present.te
        && let Some(te) = headers.get(TE)
        && !only_trailers(headers, te)
    {
        headers.remove(TE);
    }
}

/// Like [`strip_request`], for the pod's response headers. `Trailer` stays: hyper only
/// sends HTTP/1.1 response trailers that the response declares in it.
pub fn strip_response(headers: &mut HeaderMap) {
    let present = Present::of(headers);
    strip_common(headers, &present);
    if present.te {
        headers.remove(TE);
    }
}

/// Which names the strip functions handle a message carries, from one pass over its
/// (few) names: every look-up or removal of an absent name still costs a hash.
struct Present {
    hop: [bool; HOP_COUNT],
    trailer: bool,
    te: bool,
}

impl Present {
    fn of(headers: &HeaderMap) -> Self {
        let mut present = Present {
            hop: [false; HOP_COUNT],
            trailer: false,
            te: false,
        };
        for name in headers.keys() {
            if let Some(i) = HOP_BY_HOP.iter().position(|hop| hop == name) {
                present.hop[i] = true;
            } else if name == TRAILER {
                present.trailer = true;
            } else if name == TE {
                present.te = true;
            }
        }
        present
    }
}

fn strip_common(headers: &mut HeaderMap, present: &Present) {
    // Most messages say only `Connection: keep-alive` (or `close`): nothing more to
    // remove than the fixed set, so skip collecting the listed names.
    // `HOP_BY_HOP[0]` is `Connection`.
    let connection = present.hop[0];
    if connection
        && headers
            .get_all(CONNECTION)
            .iter()
            .any(|v| tokens(v.as_bytes()).any(|t| !is_fixed_hop(t)))
    {
        // Copy the listed names out first: removing while borrowing the values is not
        // allowed, and the list is short.
        let listed: Vec<HeaderName> = headers
            .get_all(CONNECTION)
            .iter()
            .flat_map(|v| tokens(v.as_bytes()))
            .filter_map(|name| HeaderName::from_bytes(name).ok())
            .collect();
        for name in listed {
            // `Connection: te` only says TE is hop-by-hop, which the callers handle.
            if name != TE {
                headers.remove(name);
            }
        }
    }
    for (name, present) in HOP_BY_HOP.iter().zip(present.hop) {
        if present {
            headers.remove(name);
        }
    }
}

fn tokens(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value
        .split(|b| *b == b',')
        .map(<[u8]>::trim_ascii)
        .filter(|t| !t.is_empty())
}

/// Tokens naming headers that go anyway (or no header at all: `close`).
fn is_fixed_hop(token: &[u8]) -> bool {
    [&b"keep-alive"[..], b"close", b"te"]
        .iter()
        .any(|fixed| token.eq_ignore_ascii_case(fixed))
}

fn only_trailers(headers: &HeaderMap, te: &HeaderValue) -> bool {
    headers.get_all(TE).iter().count() == 1 && te.as_bytes().eq_ignore_ascii_case(b"trailers")
}

/// What [`strip_response`] removes, for writers that copy a pod's raw HTTP/1.1 fields
/// ([`Fields`]) straight out instead of building a map first.
#[derive(Debug)]
pub struct ResponseHops<'a> {
    /// Names the response's `Connection` fields list besides the fixed set.
    listed: Vec<&'a [u8]>,
}

impl<'a> ResponseHops<'a> {
    pub fn of(fields: &'a Fields) -> Self {
        // Plain loops: this runs per response, and usually finds only `keep-alive`.
        let mut listed = Vec::new();
        for value in fields.get_all("connection") {
            for token in tokens(value) {
                if !is_fixed_hop(token) {
                    listed.push(token);
                }
            }
        }
        ResponseHops { listed }
    }

    /// Whether the field `name` stays on the pod's hop.
    pub fn contains(&self, name: &[u8]) -> bool {
        fields::is_hop_by_hop(name)
            || name.eq_ignore_ascii_case(b"te")
            || self.listed.iter().any(|t| name.eq_ignore_ascii_case(t))
    }
}

/// For hyper's path: moves an HTTP/1.1 pod's raw fields into the response's map, as
/// [`strip_response`] leaves them. Headers the proxy set itself stay.
pub fn materialize(response: &mut Response<ProxyBody>) {
    if let Some(fields) = response.body_mut().take_fields() {
        let mut headers = fields.to_header_map();
        strip_response(&mut headers);
        let own = std::mem::replace(response.headers_mut(), headers);
        append_all(response.headers_mut(), own);
    }
}

/// Whether an HTTP/1.1 client's raw request fields may go to the pod as they are, the
/// writer leaving out the fixed hop-by-hop ones ([`fields::is_hop_by_hop`]): true when
/// nothing in them needs one of [`strip_request`]'s or [`add_forwarded`]'s edits, i.e.
/// no `TE`, `Trailer`, `X-Forwarded-For` or `-Proto`, and a `Connection` that lists only
/// `close`, `keep-alive` or `te`. Otherwise they go into the map first
/// ([`edit_request`]). One pass, by length first.
pub fn raw_fields_pass(fields: &Fields) -> bool {
    fields.iter().all(|(name, value)| match name.len() {
        2 => !name.eq_ignore_ascii_case(b"te"),
        7 => !name.eq_ignore_ascii_case(b"trailer"),
        10 => !name.eq_ignore_ascii_case(b"connection") || tokens(value).all(is_fixed_hop),
        15 => !name.eq_ignore_ascii_case(b"x-forwarded-for"),
        17 => !name.eq_ignore_ascii_case(b"x-forwarded-proto"),
        _ => true,
    })
}

/// The map's edits to a request, in one place for every path that needs them: the
/// client's raw `fields` moved in after what is there (so the edits and HTTP/2's
/// pseudo-headers apply to them), hop-by-hop fields stripped ([`strip_request`]), and
/// `X-Forwarded-*` for `client` ([`add_forwarded`]).
pub fn edit_request(
    headers: &mut HeaderMap,
    fields: Option<&Fields>,
    client: Option<&HeaderValue>,
) {
    if let Some(fields) = fields {
        append_all(headers, fields.to_header_map());
    }
    strip_request(headers);
    if let Some(client) = client {
        add_forwarded(headers, client);
    }
}

/// Appends every value of `from` to `into`, keeping both sides' repeated fields.
fn append_all(into: &mut HeaderMap, from: HeaderMap) {
    // `HeaderMap`'s owned iterator names a field once, before its first value.
    let mut name = None;
    for (key, value) in from {
        name = key.or(name);
        if let Some(name) = &name {
            into.append(name.clone(), value);
        }
    }
}

/// Appends the client's address to `X-Forwarded-For` and sets `X-Forwarded-Proto`.
/// `client` is the peer's IP, formatted once per connection.
pub fn add_forwarded(headers: &mut HeaderMap, client: &HeaderValue) {
    // One hashed look-up for X-Forwarded-For, whether it is there or not.
    match headers.entry(X_FORWARDED_FOR) {
        Entry::Occupied(mut entry) => {
            let existing = entry.get();
            let mut value = Vec::with_capacity(existing.len() + 2 + client.len());
            value.extend_from_slice(existing.as_bytes());
            value.extend_from_slice(b", ");
            value.extend_from_slice(client.as_bytes());
            entry.insert(HeaderValue::from_bytes(&value).unwrap_or_else(|_| client.clone()));
        }
        Entry::Vacant(entry) => {
            entry.insert(client.clone());
        }
    }
    headers.insert(X_FORWARDED_PROTO, HeaderValue::from_static("http"));
}

/// A rule's header edits (Gateway API's `RequestHeaderModifier`): `set` replaces every
/// field of the name, `add` appends, `remove` drops, in that order as the spec lists
/// them. A name or value that is not a valid field is skipped (the controller checks
/// both, so only a hand-made table can hold one).
pub fn apply_edits(headers: &mut HeaderMap, edits: &fairway_proto::model::HeaderEdits) {
    let field = |name: &str, value: &str| {
        Some((
            HeaderName::from_bytes(name.as_bytes()).ok()?,
            HeaderValue::from_str(value).ok()?,
        ))
    };
    for (name, value) in &edits.set {
        if let Some((name, value)) = field(name, value) {
            headers.insert(name, value);
        }
    }
    for (name, value) in &edits.add {
        if let Some((name, value)) = field(name, value) {
            headers.append(name, value);
        }
    }
    for name in &edits.remove {
        headers.remove(name.as_str());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                HeaderName::from_bytes(k.as_bytes()).expect("name"),
                HeaderValue::from_str(v).expect("value"),
            );
        }
        h
    }

    #[test]
    fn strips_hop_by_hop_and_what_connection_lists() {
        let mut h = map(&[
            ("connection", "keep-alive, x-secret, te"),
            ("keep-alive", "timeout=5"),
            ("x-secret", "1"),
            ("proxy-authorization", "basic x"),
            ("proxy-connection", "keep-alive"),
            ("te", "trailers"),
            ("trailer", "x-checksum"),
            ("transfer-encoding", "chunked"),
            ("upgrade", "websocket"),
            ("x-kept", "yes"),
        ]);
        strip_request(&mut h);
        let names: Vec<&str> = h.keys().map(|k| k.as_str()).collect();
        assert_eq!(
            names,
            ["te", "x-kept"],
            "only end-to-end headers and te: trailers"
        );

        let mut h = map(&[("te", "gzip, trailers")]);
        strip_request(&mut h);
        assert!(h.is_empty(), "TE other than `trailers` is dropped");

        let mut h = map(&[("trailer", "grpc-status"), ("connection", "close")]);
        strip_response(&mut h);
        assert_eq!(h.len(), 1, "responses keep Trailer");
    }

    #[test]
    fn raw_response_fields_lose_what_strip_response_removes() {
        let raw = "HTTP/1.1 200 OK\r\nConnection: keep-alive, X-Secret\r\nKeep-Alive: timeout=5\r\n\
                   X-Secret: 1\r\nTE: trailers\r\nTrailer: grpc-status\r\nTransfer-Encoding: chunked\r\n\
                   Upgrade: h2c\r\nX-Kept: yes\r\n\r\n";
        let mut buf = bytes::BytesMut::from(raw);
        let head = crate::h1::parse_head(&mut buf)
            .expect("parses")
            .expect("complete");
        let hops = ResponseHops::of(&head.fields);
        let kept: Vec<String> = head
            .fields
            .iter()
            .filter(|(name, _)| !hops.contains(name))
            .map(|(name, _)| String::from_utf8_lossy(name).to_lowercase())
            .collect();
        let mut map = head.fields.to_header_map();
        strip_response(&mut map);
        let stripped: Vec<&str> = map.keys().map(|k| k.as_str()).collect();
        assert_eq!(kept, ["trailer", "x-kept"]);
        assert_eq!(kept, stripped, "both ways leave the same fields");
    }

    #[test]
    fn the_raw_hop_set_is_the_map_hop_set() {
        let none = ResponseHops { listed: Vec::new() };
        for hop in HOP_BY_HOP.iter().chain([&TE]) {
            assert!(none.contains(hop.as_str().as_bytes()), "{hop}");
            assert!(
                none.contains(hop.as_str().to_uppercase().as_bytes()),
                "{hop}, any case"
            );
        }
        assert!(!none.contains(b"x-kept") && !none.contains(b"trailer"));
    }

    fn fields(lines: &str) -> Fields {
        // The fields of any head parse the same way: borrow the response parser's.
        let raw = format!("HTTP/1.1 200 OK\r\n{lines}\r\n");
        let mut buf = bytes::BytesMut::from(raw.as_bytes());
        crate::h1::parse_head(&mut buf)
            .expect("parses")
            .expect("complete")
            .fields
    }

    #[test]
    fn raw_request_fields_pass_only_when_the_map_would_change_nothing_else() {
        let passing = [
            "Host: a\r\nX-A: 1\r\nX-A: 2\r\n",
            "Host: a\r\nConnection: keep-alive\r\nKeep-Alive: timeout=5\r\n",
            "Host: a\r\nProxy-Connection: keep-alive\r\nProxy-Authorization: x\r\nConnection: Close\r\n",
        ];
        for lines in passing {
            let raw = fields(lines);
            assert!(raw_fields_pass(&raw), "{lines:?}");
            // What the HTTP/1.1 writer copies, and what the map path would leave.
            let copied: Vec<(String, String)> = raw
                .iter()
                .filter(|(name, _)| !fields::is_hop_by_hop(name))
                .map(|(n, v)| {
                    (
                        String::from_utf8_lossy(n).to_lowercase(),
                        String::from_utf8_lossy(v).into(),
                    )
                })
                .collect();
            let mut map = HeaderMap::new();
            edit_request(&mut map, Some(&raw), None);
            let kept: Vec<(String, String)> = map
                .iter()
                .map(|(n, v)| (n.to_string(), v.to_str().expect("ascii").to_owned()))
                .collect();
            assert_eq!(copied, kept, "{lines:?}: both ways send the same fields");
        }
        for lines in [
            "Host: a\r\nTE: trailers\r\n",
            "Host: a\r\nTrailer: x-sum\r\n",
            "Host: a\r\nX-Forwarded-For: 203.0.113.9\r\n",
            "Host: a\r\nx-forwarded-proto: https\r\n",
            "Host: a\r\nConnection: keep-alive, X-Secret\r\nX-Secret: 1\r\n",
        ] {
            assert!(
                !raw_fields_pass(&fields(lines)),
                "{lines:?} needs the map's edits"
            );
        }
    }

    #[test]
    fn forwarded_for_appends_the_client() {
        let client = HeaderValue::from_static("127.0.0.1");
        let mut h = HeaderMap::new();
        add_forwarded(&mut h, &client);
        assert_eq!(h[X_FORWARDED_FOR], "127.0.0.1");
        assert_eq!(h[X_FORWARDED_PROTO], "http");

        let mut h = map(&[
            ("x-forwarded-for", "203.0.113.9"),
            ("x-forwarded-proto", "https"),
        ]);
        add_forwarded(&mut h, &client);
        assert_eq!(h[X_FORWARDED_FOR], "203.0.113.9, 127.0.0.1");
        assert_eq!(h[X_FORWARDED_PROTO], "http", "the proto of this hop");
    }
}
