use std::time::Duration;

use bytes::Bytes;
use http_body_util::Empty;
use hyper_util::rt::{TokioExecutor, TokioIo};
use proptest::prelude::*;
use tokio::io::AsyncReadExt;

use super::super::detect::{FirstRequest, H2_PREFACE, MAX_FIRST_HEAD};
use super::first_request;

/// An empty SETTINGS frame (what every client sends first).
const SETTINGS: [u8; 9] = [0, 0, 0, 0x4, 0, 0, 0, 0, 0];

fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = payload.len();
    let mut out = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags];
    out.extend_from_slice(&stream.to_be_bytes());
    out.extend_from_slice(payload);
    out
}

fn block(fields: &[(&str, &str)]) -> Vec<u8> {
    let fields = fields.iter().map(|(n, v)| (n.as_bytes(), v.as_bytes()));
    loona_hpack::Encoder::new().encode(fields)
}

fn connection(frames: &[Vec<u8>]) -> Vec<u8> {
    let mut out = H2_PREFACE.to_vec();
    out.extend_from_slice(&SETTINGS);
    for f in frames {
        out.extend_from_slice(f);
    }
    out
}

fn routable(authority: &str, path: &str) -> FirstRequest {
    FirstRequest::Routable {
        authority: authority.into(),
        path: path.into(),
    }
}

const REQUEST: [(&str, &str); 4] = [
    (":method", "GET"),
    (":scheme", "http"),
    (":authority", "orders.shop:8080"),
    (":path", "/orders?id=7"),
];

/// What a real HTTP/2 client writes first: hyper's client over an in-memory pipe.
async fn real_client_bytes() -> Vec<u8> {
    let (client, mut server) = tokio::io::duplex(64 * 1024);
    let (mut send, conn) = hyper::client::conn::http2::handshake::<_, _, Empty<Bytes>>(
        TokioExecutor::new(),
        TokioIo::new(client),
    )
    .await
    .expect("handshake");
    tokio::spawn(conn);
    let request = http::Request::get("http://orders.shop:8080/orders?id=7")
        .body(Empty::new())
        .unwrap();
    tokio::spawn(async move { send.send_request(request).await });
    let mut read = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while read.len() < H2_PREFACE.len() || first_request(&read) == FirstRequest::Partial {
        let mut chunk = [0u8; 4096];
        let n = tokio::time::timeout_at(deadline, server.read(&mut chunk))
            .await
            .expect("the client's first request within 5 s")
            .expect("read");
        assert!(n > 0, "the client ended before its first request");
        read.extend_from_slice(&chunk[..n]);
    }
    read
}

#[tokio::test]
async fn a_real_clients_first_request_is_read_from_its_headers_frame() {
    let bytes = real_client_bytes().await;
    assert_eq!(
        first_request(&bytes),
        routable("orders.shop:8080", "/orders?id=7")
    );
}

#[test]
fn padding_priority_and_continuation_frames_are_read_through() {
    let fields = block(&REQUEST);
    let (head, tail) = fields.split_at(fields.len() / 2);
    // PADDED | PRIORITY, no END_HEADERS: 2 bytes of padding, 5 of priority.
    let mut payload = vec![2];
    payload.extend_from_slice(&[0, 0, 0, 0, 15]);
    payload.extend_from_slice(head);
    payload.extend_from_slice(&[0, 0]);
    let bytes = connection(&[
        frame(0x8, 0, 0, &[0, 0, 0, 1]), // a connection WINDOW_UPDATE first
        frame(0x1, 0x8 | 0x20, 1, &payload),
        frame(0x9, 0x4, 1, tail),
    ]);
    assert_eq!(
        first_request(&bytes),
        routable("orders.shop:8080", "/orders?id=7")
    );
}

#[test]
fn host_stands_in_for_a_missing_authority_and_nothing_to_route_by_is_unroutable() {
    let with_host = block(&[(":method", "GET"), (":path", "/"), ("host", "orders")]);
    assert_eq!(
        first_request(&connection(&[frame(0x1, 0x4, 1, &with_host)])),
        routable("orders", "/")
    );
    let without = block(&[(":method", "GET"), (":path", "/")]);
    assert_eq!(
        first_request(&connection(&[frame(0x1, 0x4, 1, &without)])),
        FirstRequest::Unroutable
    );
}

#[test]
fn anything_but_a_header_block_first_is_unroutable() {
    let fields = block(&REQUEST);
    let cases = [
        ("DATA first", vec![frame(0x0, 0x1, 1, b"x")]),
        ("HEADERS on stream 0", vec![frame(0x1, 0x4, 0, &fields)]),
        ("a CONTINUATION alone", vec![frame(0x9, 0x4, 1, &fields)]),
        (
            "a frame between a block's parts",
            vec![
                frame(0x1, 0, 1, &fields[..2]),
                frame(0x8, 0, 0, &[0, 0, 0, 1]),
            ],
        ),
        ("not HPACK", vec![frame(0x1, 0x4, 1, &[0xff; 8])]),
        (
            "padding past the end",
            vec![frame(0x1, 0x4 | 0x8, 1, &[200, 1, 2])],
        ),
    ];
    for (case, frames) in cases {
        assert_eq!(
            first_request(&connection(&frames)),
            FirstRequest::Unroutable,
            "{case}"
        );
    }
    assert_eq!(
        first_request(b"GET / HTTP/1.1\r\n\r\n"),
        FirstRequest::Unroutable
    );
}

#[test]
fn a_first_block_that_never_ends_is_unroutable_at_the_limit() {
    let mut frames = vec![frame(0x1, 0, 1, &block(&REQUEST))];
    let filler = vec![0u8; 1024];
    while frames.iter().map(Vec::len).sum::<usize>() < MAX_FIRST_HEAD {
        frames.push(frame(0x9, 0, 1, &filler));
    }
    let bytes = connection(&frames);
    assert_eq!(
        first_request(&bytes[..MAX_FIRST_HEAD - 1]),
        FirstRequest::Partial
    );
    assert_eq!(first_request(&bytes), FirstRequest::Unroutable);
}

proptest! {
    /// Until the header block ends, the answer is "more": a prefix never decides wrong.
    #[test]
    fn every_prefix_is_partial_until_the_block_ends(cut in 0usize..200) {
        let bytes = connection(&[frame(0x1, 0x4, 1, &block(&REQUEST))]);
        let cut = cut.min(bytes.len() - 1);
        let expected = if cut < H2_PREFACE.len() {
            FirstRequest::Unroutable
        } else {
            FirstRequest::Partial
        };
        prop_assert_eq!(first_request(&bytes[..cut]), expected);
    }
}
