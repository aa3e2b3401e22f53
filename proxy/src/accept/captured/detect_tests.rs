use std::time::Duration;

use proptest::prelude::*;
use tokio::io::AsyncWriteExt;

use super::{
    Detect, FirstRequest, H2_PREFACE, MAX_FIRST_HEAD, MAX_REQUEST_LINE, Protocol, detect,
    first_request, sniff,
};

const HTTP1: Detect = Detect::Known(Protocol::Http1);
const HTTP2: Detect = Detect::Known(Protocol::Http2);
const OPAQUE: Detect = Detect::Known(Protocol::Opaque);

#[test]
fn request_lines_are_http1() {
    for line in [
        &b"GET / HTTP/1.1\r\n"[..],
        b"POST /orders?id=1 HTTP/1.1\r\nHost: orders\r\n\r\n",
        b"GET http://orders.shop:8080/x HTTP/1.1\r\n",
        b"OPTIONS * HTTP/1.1\r\n",
        b"CONNECT orders:443 HTTP/1.1\r\n",
        b"GET / HTTP/1.0\r\n",
        b"GET / HTTP/1.1\n",
    ] {
        assert_eq!(detect(line), HTTP1, "{:?}", String::from_utf8_lossy(line));
    }
}

#[test]
fn the_h2_preface_is_http2() {
    assert_eq!(detect(H2_PREFACE), HTTP2);
    let mut more = H2_PREFACE.to_vec();
    more.extend_from_slice(b"\x00\x00\x12\x04\x00");
    assert_eq!(detect(&more), HTTP2, "a SETTINGS frame after the preface");
}

#[test]
fn prefixes_of_either_need_more() {
    let line = b"GET /orders HTTP/1.1\r\n";
    for end in 0..line.len() {
        assert_eq!(
            detect(&line[..end]),
            Detect::NeedMore,
            "{end} bytes of a request line"
        );
    }
    for end in 0..H2_PREFACE.len() {
        assert_eq!(
            detect(&H2_PREFACE[..end]),
            Detect::NeedMore,
            "{end} bytes of the preface"
        );
    }
}

#[test]
fn other_protocols_are_opaque_as_soon_as_a_byte_does_not_fit() {
    for first in [
        // TLS ClientHello, PostgreSQL startup, MySQL-style binary, Redis RESP and inline.
        &b"\x16\x03\x01\x02\x00"[..],
        b"\x00\x00\x00\x08\x04\xd2\x16\x2f",
        b"*1\r\n$4\r\nPING\r\n",
        b"PING\r\n",
        // A line-echo protocol's line, with two words and three.
        b"hello world\n",
        b"hello big world\n",
        // HTTP/2 and 3 are not HTTP/1 request lines; a doubled CR is malformed.
        b"GET / HTTP/2.0\r\n",
        b"GET / HTTP/1.1\r\r\n",
        b"GET  / HTTP/1.1\r\n",
        b" GET / HTTP/1.1\r\n",
        b"GET /\x01 HTTP/1.1\r\n",
    ] {
        assert_eq!(
            detect(first),
            OPAQUE,
            "{:?}",
            String::from_utf8_lossy(first)
        );
    }
}

#[test]
fn a_long_first_word_is_opaque_before_the_line_ends() {
    let word = vec![b'A'; 40];
    assert_eq!(detect(&word), OPAQUE);
}

#[test]
fn a_request_line_longer_than_the_limit_is_opaque() {
    let mut line = b"GET /".to_vec();
    line.resize(MAX_REQUEST_LINE, b'a');
    assert_eq!(detect(&line), OPAQUE);
    assert_eq!(detect(&line[..MAX_REQUEST_LINE - 1]), Detect::NeedMore);
}

proptest! {
    /// Detection is monotone: once bytes decide, more bytes never change the answer, so
    /// whatever a client's writes are split into, the same protocol comes out.
    #[test]
    fn more_bytes_never_change_a_decision(
        bytes in prop::collection::vec(any::<u8>(), 0..64),
        split in 0usize..64,
    ) {
        let split = split.min(bytes.len());
        if let Detect::Known(p) = detect(&bytes[..split]) {
            prop_assert_eq!(detect(&bytes), Detect::Known(p));
        }
    }

    #[test]
    fn any_split_of_a_request_decides_http1(target in "/[a-z0-9/?=&]{0,40}", split in 0usize..80) {
        let line = format!("GET {target} HTTP/1.1\r\nHost: x\r\n\r\n");
        let split = split.min(line.len());
        let first = detect(&line.as_bytes()[..split]);
        prop_assert!(first == Detect::NeedMore || first == HTTP1);
        prop_assert_eq!(detect(line.as_bytes()), HTTP1);
    }
}

#[tokio::test(start_paused = true)]
async fn sniff_returns_the_bytes_it_read_with_the_protocol() {
    let (mut client, mut proxy) = tokio::io::duplex(1024);
    client.write_all(b"GET / HT").await.unwrap();
    let sniffed = tokio::spawn(async move { sniff(&mut proxy, Duration::from_secs(1)).await });
    tokio::time::sleep(Duration::from_millis(10)).await;
    client
        .write_all(b"TP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let sniffed = sniffed.await.unwrap().unwrap();
    assert_eq!(
        sniffed.protocol,
        Protocol::Http1,
        "a request line split over two writes"
    );
    assert_eq!(
        &sniffed.read[..],
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
        "every byte read is returned"
    );
    let routable = FirstRequest::Routable {
        authority: "x".into(),
        path: "/".into(),
    };
    assert_eq!(
        sniffed.first, routable,
        "read on to the end of the first head"
    );
}

#[tokio::test(start_paused = true)]
async fn a_silent_client_is_opaque_after_the_timeout_not_later() {
    // A server-speaks-first protocol: the client waits for the greeting.
    let (_client, mut proxy) = tokio::io::duplex(1024);
    let started = tokio::time::Instant::now();
    let sniffed = sniff(&mut proxy, Duration::from_millis(100)).await.unwrap();
    assert_eq!(sniffed.protocol, Protocol::Opaque);
    assert!(sniffed.read.is_empty());
    assert_eq!(
        started.elapsed(),
        Duration::from_millis(100),
        "detection gives up at its deadline (paused clock)"
    );
}

#[tokio::test(start_paused = true)]
async fn a_partial_line_then_silence_is_opaque_with_its_bytes() {
    let (mut client, mut proxy) = tokio::io::duplex(1024);
    client.write_all(b"GET /").await.unwrap();
    let sniffed = sniff(&mut proxy, Duration::from_millis(100)).await.unwrap();
    assert_eq!(sniffed.protocol, Protocol::Opaque);
    assert_eq!(
        &sniffed.read[..],
        b"GET /",
        "the bytes read go on to the destination"
    );
}

#[tokio::test(start_paused = true)]
async fn a_client_that_ends_its_side_is_opaque_at_once() {
    let (mut client, mut proxy) = tokio::io::duplex(1024);
    client.write_all(b"GET").await.unwrap();
    client.shutdown().await.unwrap();
    let started = tokio::time::Instant::now();
    let sniffed = sniff(&mut proxy, Duration::from_secs(10)).await.unwrap();
    assert_eq!(
        (sniffed.protocol, &sniffed.read[..]),
        (Protocol::Opaque, &b"GET"[..])
    );
    assert_eq!(
        started.elapsed(),
        Duration::ZERO,
        "no wait for bytes that cannot come"
    );
}

#[test]
fn the_first_request_routes_by_host_or_by_an_absolute_targets_authority() {
    let routable = |authority: &str, path: &str| FirstRequest::Routable {
        authority: authority.into(),
        path: path.into(),
    };
    assert_eq!(
        first_request(
            b"GET /orders?id=1 HTTP/1.1\r\nhost: orders.shop.svc.cluster.local:8080\r\n\r\n"
        ),
        routable("orders.shop.svc.cluster.local:8080", "/orders?id=1")
    );
    assert_eq!(
        first_request(b"GET http://orders.shop:8080/x HTTP/1.1\r\nHost: other\r\n\r\n"),
        routable("orders.shop:8080", "/x")
    );
    assert_eq!(
        first_request(b"GET / HTTP/1.1\r\nHost: orders\r\n"),
        FirstRequest::Partial
    );
    assert_eq!(
        first_request(b"GET / HTTP/1.1\r\n\r\n"),
        FirstRequest::Unroutable,
        "no Host"
    );
    assert_eq!(
        first_request(b"GET / HTTP/1.1\r\nbad header\r\n\r\n"),
        FirstRequest::Unroutable
    );
    let mut huge = b"GET / HTTP/1.1\r\nX: ".to_vec();
    huge.resize(MAX_FIRST_HEAD, b'a');
    assert_eq!(
        first_request(&huge),
        FirstRequest::Unroutable,
        "an oversized head is passed through"
    );
}

#[tokio::test(start_paused = true)]
async fn an_http1_head_cut_short_by_the_deadline_is_partial_with_its_bytes() {
    let (mut client, mut proxy) = tokio::io::duplex(1024);
    client
        .write_all(b"GET / HTTP/1.1\r\nHost: or")
        .await
        .unwrap();
    let sniffed = sniff(&mut proxy, Duration::from_millis(100)).await.unwrap();
    assert_eq!(sniffed.protocol, Protocol::Http1);
    assert_eq!(
        sniffed.first,
        FirstRequest::Partial,
        "not routable: passed through"
    );
    assert_eq!(&sniffed.read[..], b"GET / HTTP/1.1\r\nHost: or");
}
