use super::*;

fn head(raw: &str) -> Head {
    let mut buf = BytesMut::from(raw);
    parse_head(&mut buf).expect("parses").expect("complete")
}

/// Decodes everything in `raw` with `decoder`, feeding it in pieces of `step` bytes.
fn decode_all(mut decoder: Decoder, raw: &[u8], step: usize) -> (Vec<u8>, Option<HeaderMap>) {
    let mut buf = BytesMut::new();
    let mut input = raw.chunks(step);
    let (mut body, mut trailers) = (Vec::new(), None);
    for _ in 0..10_000 {
        match decoder.decode(&mut buf).expect("decodes") {
            Decoded::Data(d) => body.extend_from_slice(&d),
            Decoded::Trailers(t) => trailers = Some(t),
            Decoded::End => return (body, trailers),
            Decoded::NeedMore => buf.extend_from_slice(input.next().expect("more input")),
        }
    }
    panic!("decoder did not finish");
}

#[test]
fn head_parses_and_leaves_the_body() {
    let mut buf = BytesMut::from("HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-A: b\r\n\r\nhello");
    let head = parse_head(&mut buf).expect("ok").expect("complete");
    assert_eq!(head.status, StatusCode::OK);
    assert_eq!(
        head.fields.get_all("X-a").collect::<Vec<_>>(),
        [b"b"],
        "any case"
    );
    assert_eq!(head.fields.to_header_map()["x-a"], "b");
    assert_eq!(&buf[..], b"hello");
}

#[test]
fn partial_heads_wait_and_huge_ones_fail() {
    let mut buf = BytesMut::from("HTTP/1.1 200 OK\r\nContent-Le");
    assert!(parse_head(&mut buf).expect("ok").is_none());
    let mut buf = BytesMut::from("HTTP/1.1 200 OK\r\n");
    buf.extend_from_slice(format!("x: {}", "a".repeat(MAX_RESPONSE_HEAD)).as_bytes());
    assert!(matches!(parse_head(&mut buf), Err(Error::HeadTooLarge)));
    let mut buf = BytesMut::from("HTTP/1.1 abc\r\n\r\n");
    assert!(parse_head(&mut buf).is_err());
}

#[test]
fn framing_follows_rfc_9112() {
    let get = Method::GET;
    let f = |raw: &str, method: &Method| framing(method, &head(raw));
    let ok = |raw: &str| f(raw, &get).expect("framing");
    assert_eq!(
        ok("HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\n"),
        Framing {
            body: BodyKind::Length(3),
            reusable: true
        }
    );
    assert_eq!(
        ok("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n").body,
        BodyKind::Chunked
    );
    assert_eq!(
        ok("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n"),
        Framing {
            body: BodyKind::Chunked,
            reusable: false
        },
        "TE wins over CL, and the connection is not trusted after"
    );
    assert_eq!(
        ok("HTTP/1.1 200 OK\r\n\r\n"),
        Framing {
            body: BodyKind::UntilClose,
            reusable: false
        }
    );
    assert!(!ok("HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n").reusable);
    assert!(!ok("HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n").reusable);
    assert!(ok("HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 0\r\n\r\n").reusable);
    assert_eq!(ok("HTTP/1.1 204 No Content\r\n\r\n").body, BodyKind::Empty);
    assert_eq!(
        ok("HTTP/1.1 304 Not Modified\r\nContent-Length: 9\r\n\r\n").body,
        BodyKind::Empty
    );
    let head_response = f(
        "HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\n",
        &Method::HEAD,
    );
    assert_eq!(head_response.expect("ok").body, BodyKind::Empty);
    assert_eq!(
        ok("HTTP/1.1 200 OK\r\nContent-Length: 4, 4\r\n\r\n").body,
        BodyKind::Length(4)
    );
    assert!(
        f(
            "HTTP/1.1 200 OK\r\nContent-Length: 4\r\nContent-Length: 5\r\n\r\n",
            &get
        )
        .is_err()
    );
    assert!(f("HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n", &get).is_err());
    assert!(f("HTTP/1.1 200 OK\r\nContent-Length: +4\r\n\r\n", &get).is_err());
}

#[test]
fn length_bodies_stop_at_their_length() {
    for step in [1, 3, 100] {
        let (body, _) = decode_all(Decoder::new(BodyKind::Length(5)), b"helloEXTRA", step);
        assert_eq!(body, b"hello");
    }
    let mut buf = BytesMut::from("helloNEXT");
    let mut d = Decoder::new(BodyKind::Length(5));
    assert_eq!(
        d.decode(&mut buf).expect("ok"),
        Decoded::Data(Bytes::from("hello"))
    );
    assert_eq!(d.decode(&mut buf).expect("ok"), Decoded::End);
    assert_eq!(
        &buf[..],
        b"NEXT",
        "the next message's bytes stay in the buffer"
    );
}

#[test]
fn chunked_bodies_with_extensions_and_trailers() {
    let raw = b"5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nGrpc-Status: 0\r\nX-T: 1\r\n\r\n";
    for step in [1, 2, 7, 1000] {
        let (body, trailers) = decode_all(Decoder::new(BodyKind::Chunked), raw, step);
        assert_eq!(body, b"hello world", "step {step}");
        let trailers = trailers.expect("trailers");
        assert_eq!(trailers["grpc-status"], "0");
        assert_eq!(trailers["x-t"], "1");
    }
    let (body, trailers) = decode_all(Decoder::new(BodyKind::Chunked), b"3\r\nabc\r\n0\r\n\r\n", 2);
    assert_eq!(body, b"abc");
    assert!(trailers.is_none());
}

#[test]
fn malformed_chunks_are_errors() {
    for raw in [
        &b"zz\r\n"[..],
        b"11111111111111111\r\n",
        b"3\r\nabcXX",
        b"\r\n",
    ] {
        let mut buf = BytesMut::from(raw);
        let mut d = Decoder::new(BodyKind::Chunked);
        let result = (0..10).try_for_each(|_| match d.decode(&mut buf) {
            Ok(Decoded::NeedMore) | Ok(Decoded::End) => Err(None),
            Ok(_) => Ok(()),
            Err(e) => Err(Some(e)),
        });
        assert!(matches!(result, Err(Some(_))), "{raw:?} must fail");
    }
    let mut buf = BytesMut::from(&[b'1'; MAX_CHUNK_LINE + 1][..]);
    assert!(Decoder::new(BodyKind::Chunked).decode(&mut buf).is_err());
}

#[test]
fn until_close_takes_everything() {
    let mut d = Decoder::new(BodyKind::UntilClose);
    let mut buf = BytesMut::from("abc");
    assert_eq!(
        d.decode(&mut buf).expect("ok"),
        Decoded::Data(Bytes::from("abc"))
    );
    assert_eq!(d.decode(&mut buf).expect("ok"), Decoded::NeedMore);
    assert_eq!(d.remaining(), None);
}
