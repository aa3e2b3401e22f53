use super::*;

const LIMITS: Limits = Limits {
    max_head: 64 * 1024,
    max_headers: 100,
};

fn parse_all(raw: &[u8]) -> (Parsed, BytesMut) {
    let mut buf = BytesMut::from(raw);
    let parsed = parse(&mut buf, LIMITS);
    (parsed, buf)
}

fn request(raw: &[u8]) -> (Head, BytesMut) {
    match parse_all(raw) {
        (Parsed::Request(head), rest) => (head, rest),
        (other, _) => panic!("expected a request the fast loop serves, got {other:?}"),
    }
}

fn handed_off(raw: &[u8]) -> bool {
    let (parsed, rest) = parse_all(raw);
    matches!(parsed, Parsed::Handoff) && &rest[..] == raw
}

#[test]
fn a_plain_get_is_parsed_and_removed_leaving_the_next_request() {
    let (head, rest) = request(
        b"GET /a?b=1 HTTP/1.1\r\nHost: Orders.Shop:8080\r\nX-A: 1\r\nX-A: 2\r\n\r\nGET /next",
    );
    assert_eq!(head.request.method(), Method::GET);
    assert_eq!(head.request.uri(), "/a?b=1");
    assert_eq!(head.request.version(), Version::HTTP_11);
    assert!(
        head.request.headers().is_empty(),
        "the fields stay raw, the map is for what the proxy adds"
    );
    let host: Vec<_> = head.fields.get_all("host").collect();
    assert_eq!(host, [b"Orders.Shop:8080"]);
    let values: Vec<_> = head.fields.get_all("x-a").collect();
    assert_eq!(values, [b"1", b"2"], "repeated fields keep their order");
    let lines: Vec<_> = head.fields.lines().map(|(_, line)| line).collect();
    assert_eq!(
        lines,
        [&b"Host: Orders.Shop:8080"[..], b"X-A: 1", b"X-A: 2"],
        "each line as the client sent it"
    );
    assert_eq!(head.body, 0);
    assert!(!head.close);
    assert_eq!(
        &rest[..],
        b"GET /next",
        "pipelined bytes stay for the next turn"
    );
}

#[test]
fn absolute_form_keeps_its_authority() {
    let (head, _) = request(b"GET http://orders.shop:8080/x HTTP/1.1\r\nHost: other\r\n\r\n");
    assert_eq!(
        head.request.uri().authority().map(|a| a.as_str()),
        Some("orders.shop:8080")
    );
}

#[test]
fn a_small_length_body_is_announced_and_close_is_noticed() {
    let (head, rest) = request(b"PUT /x HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nConnection: keep-alive, Close\r\n\r\nhello");
    assert_eq!(head.body, 5);
    assert!(head.close, "Connection lists close (any case, in a list)");
    assert_eq!(&rest[..], b"hello", "the body is left for the loop to read");
}

#[test]
fn an_incomplete_head_waits_for_more() {
    assert!(matches!(
        parse_all(b"GET / HTTP/1.1\r\nHost: a\r\n").0,
        Parsed::Partial
    ));
    assert!(matches!(parse_all(b"").0, Parsed::Partial));
    assert!(
        matches!(parse_all(b"PRI * HTT").0, Parsed::Partial),
        "an HTTP/2 preface is told apart once whole"
    );
}

#[test]
fn every_shape_the_loop_does_not_serve_goes_to_hyper_untouched() {
    let cases: [&[u8]; 12] = [
        b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
        b"GET / HTTP/1.0\r\nHost: a\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nContent-Length: 4\r\n\r\nabcd",
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: +4\r\n\r\nabcd",
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 4, 4\r\n\r\nabcd",
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 70000\r\n\r\n",
        b"PUT / HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n",
        b"CONNECT orders:443 HTTP/1.1\r\nHost: orders:443\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a\r\nBad Name: x\r\n\r\n",
        b"\x00\x01garbage\r\n\r\n",
    ];
    for raw in cases {
        assert!(
            handed_off(raw),
            "{:?} must be handed to hyper with the buffer intact",
            String::from_utf8_lossy(raw)
        );
    }
}

#[test]
fn both_framings_are_conflicting_in_either_order_whatever_the_length_says() {
    let cases: [&[u8]; 4] = [
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n0\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: +4\r\nTransfer-Encoding: chunked\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nTransfer-Encoding: x\r\nContent-Length: 0\r\n\r\n",
    ];
    for raw in cases {
        let (parsed, rest) = parse_all(raw);
        let Parsed::Conflicting(head) = parsed else {
            panic!(
                "{:?} must be refused as conflicting framing, got {parsed:?}",
                String::from_utf8_lossy(raw)
            );
        };
        assert!(head.close, "the connection closes after the 400");
        assert_eq!(
            head.body, 0,
            "no body byte is read for a request that is refused"
        );
        assert!(
            raw.starts_with(b"POST / HTTP/1.1") && rest.len() < raw.len(),
            "the head was taken"
        );
    }
    // HTTP/1.0 with both goes to hyper, which closes after its answer (RFC 9112 §6.1).
    assert!(handed_off(
        b"POST / HTTP/1.0\r\nHost: a\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n"
    ));
}

#[test]
fn oversized_heads_and_too_many_headers_go_to_hyper_for_its_431() {
    let limits = Limits {
        max_head: 64,
        max_headers: 2,
    };
    let mut long = BytesMut::from(&b"GET / HTTP/1.1\r\nHost: a\r\nX-Pad: "[..]);
    long.extend_from_slice(&[b'p'; 64]);
    assert!(
        matches!(parse(&mut long, limits), Parsed::Handoff),
        "a partial head at the limit"
    );
    let mut many = BytesMut::from(&b"GET / HTTP/1.1\r\nHost: a\r\nA: 1\r\nB: 2\r\n\r\n"[..]);
    assert!(
        matches!(parse(&mut many, limits), Parsed::Handoff),
        "more headers than configured"
    );
    let slots: String = (0..SLOTS + 1).map(|i| format!("x-{i}: 1\r\n")).collect();
    let raw = format!("GET / HTTP/1.1\r\nHost: a\r\n{slots}\r\n");
    assert!(
        handed_off(raw.as_bytes()),
        "more headers than the parser's slots"
    );
}

#[test]
fn a_target_http_refuses_is_malformed_after_it_was_taken() {
    // httparse takes any visible ASCII as the target; `http`'s Uri refuses an
    // absolute-form authority with an unclosed IPv6 bracket.
    let (parsed, rest) = parse_all(b"GET http://[::1/x HTTP/1.1\r\nHost: a\r\n\r\n");
    assert!(matches!(parsed, Parsed::Malformed), "got {parsed:?}");
    assert!(rest.is_empty());
}

#[test]
fn content_length_values() {
    assert_eq!(parse_length(b"0"), Some(0));
    assert_eq!(parse_length(b" 42 "), Some(42));
    for bad in [
        &b""[..],
        b"-1",
        b"+1",
        b"1,1",
        b"0x10",
        b"99999999999999999999",
    ] {
        assert_eq!(
            parse_length(bad),
            None,
            "{:?}",
            String::from_utf8_lossy(bad)
        );
    }
}
