use http::header::{CONTENT_TYPE, HeaderValue};

use super::*;

fn response(
    status: u16,
    body: ProxyBody,
    headers: &[(&'static str, &'static str)],
) -> Response<ProxyBody> {
    let mut r = Response::new(body);
    *r.status_mut() = StatusCode::from_u16(status).expect("status");
    for (name, value) in headers {
        r.headers_mut()
            .append(*name, HeaderValue::from_static(value));
    }
    r
}

fn text(buf: &[u8]) -> String {
    String::from_utf8_lossy(buf).into_owned()
}

#[test]
fn framing_follows_the_request_the_status_and_the_body() {
    let full = || ProxyBody::full("hello");
    assert_eq!(
        framing(false, &response(200, full(), &[])),
        Framing::Length(5)
    );
    assert_eq!(
        framing(true, &response(200, full(), &[])),
        Framing::None,
        "HEAD"
    );
    assert_eq!(framing(false, &response(204, full(), &[])), Framing::None);
    assert_eq!(framing(false, &response(304, full(), &[])), Framing::None);
    assert_eq!(
        framing(false, &response(200, full(), &[("content-length", "5")])),
        Framing::Length(5),
        "the pod's own length"
    );
}

#[test]
fn the_head_replaces_framing_headers_and_adds_date_and_close() {
    let r = response(
        404,
        ProxyBody::full("no"),
        &[("content-type", "text/plain"), ("content-length", "99")],
    );
    let mut buf = BytesMut::new();
    head(&r, Framing::Length(2), true, &mut buf);
    let written = text(&buf);
    assert!(
        written.starts_with("HTTP/1.1 404 Not Found\r\n"),
        "{written}"
    );
    assert!(
        written.contains("content-type: text/plain\r\n"),
        "{written}"
    );
    assert!(
        written.contains("content-length: 2\r\n") && !written.contains("99"),
        "{written}"
    );
    assert!(
        written.contains("\r\ndate: ") && written.contains(" GMT\r\n"),
        "{written}"
    );
    assert!(written.ends_with("connection: close\r\n\r\n"), "{written}");

    let r = response(
        200,
        ProxyBody::full(""),
        &[("content-length", "1234"), ("date", "then")],
    );
    buf.clear();
    head(&r, Framing::None, false, &mut buf);
    let written = text(&buf);
    assert!(
        written.contains("content-length: 1234\r\n"),
        "HEAD keeps the GET's length: {written}"
    );
    assert!(
        written.contains("date: then\r\n") && written.matches("date").count() == 1,
        "{written}"
    );
    assert!(!written.contains("connection"), "{written}");
}

#[tokio::test]
async fn a_known_length_body_follows_its_head() {
    let mut out = Vec::new();
    let mut buf = BytesMut::new();
    let r = response(
        200,
        ProxyBody::full("hello"),
        &[(CONTENT_TYPE.as_str(), "text/plain")],
    );
    write(&mut out, &mut buf, r, false, false)
        .await
        .expect("written");
    let written = text(&out);
    assert!(written.contains("content-length: 5\r\n"), "{written}");
    assert!(written.ends_with("\r\n\r\nhello"), "{written}");
}

#[tokio::test]
async fn a_head_request_gets_no_body() {
    let mut out = Vec::new();
    let mut buf = BytesMut::new();
    let r = response(200, ProxyBody::full("hello"), &[]);
    write(&mut out, &mut buf, r, true, false)
        .await
        .expect("written");
    assert!(text(&out).ends_with("\r\n\r\n"), "{}", text(&out));
}

#[tokio::test]
async fn a_body_longer_than_declared_is_an_error_not_a_second_response() {
    let mut out = Vec::new();
    let mut buf = BytesMut::new();
    let r = response(
        200,
        ProxyBody::full("hello, world"),
        &[("content-length", "5")],
    );
    let result = write(&mut out, &mut buf, r, false, false).await;
    assert!(
        matches!(result, Err(WriteError::Length { declared: 5 })),
        "{result:?}"
    );
    assert!(
        !text(&out).contains("hello"),
        "nothing of the overlong body went out"
    );
}
