//! One `grpc.health.v1.Health/Check` call over a dedicated HTTP/2 connection: the I/O
//! half of health checking, with nothing to decide.
//!
//! Why a connection of its own rather than the request pools': a probe then never
//! takes a request's place under `maxConnectionsPerEndpoint`, never counts towards
//! `maxRequestsPerConnection` or an endpoint's in-flight load, and goes on while the
//! pool drains or recycles its connections (Envoy's health checker does the same). One
//! kept-alive connection per probed endpoint, reopened after a failure, costs one
//! socket and no handshake per probe.

use std::time::Duration;

use bytes::{Buf, Bytes};
use fairway_proto::model::{EndpointAddr, GrpcHealthCheck};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http2;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};

use super::verdict::Answer;
use crate::pool::{H2_KEEPALIVE_INTERVAL, H2_KEEPALIVE_TIMEOUT, connect_tcp};

/// The gRPC method every standard health server serves.
const CHECK_PATH: &str = "/grpc.health.v1.Health/Check";

/// The probe's connection to one endpoint, kept between probes.
pub type Connection = http2::SendRequest<Full<Bytes>>;

/// Asks `addr` for its health under `check`, opening `conn` if there is none and
/// dropping it when the probe breaks it. The whole probe (connect included) is bounded
/// by `check.timeout`.
pub async fn check(
    conn: &mut Option<Connection>,
    addr: EndpointAddr,
    check: &GrpcHealthCheck,
) -> Answer {
    let answer = tokio::time::timeout(check.timeout, call(conn, addr, check))
        .await
        .unwrap_or(Answer::Timeout);
    if matches!(answer, Answer::Timeout | Answer::Broken | Answer::Connect) {
        // A timed-out stream may sit on a stalled connection: start clean next time.
        *conn = None;
    }
    answer
}

async fn call(
    conn: &mut Option<Connection>,
    addr: EndpointAddr,
    check: &GrpcHealthCheck,
) -> Answer {
    let sender = match conn.as_mut().filter(|c| !c.is_closed()) {
        Some(sender) => sender,
        None => match connect(addr, check.timeout).await {
            Some(sender) => conn.insert(sender),
            None => return Answer::Connect,
        },
    };
    if sender.ready().await.is_err() {
        return Answer::Broken;
    }
    let Ok(request) = request(addr, check) else {
        return Answer::Broken;
    };
    let Ok(response) = sender.send_request(request).await else {
        return Answer::Broken;
    };
    let (head, body) = response.into_parts();
    if head.status != http::StatusCode::OK {
        return Answer::Broken;
    }
    let Ok(collected) = body.collect().await else {
        return Answer::Broken;
    };
    // Trailers-only responses carry the status in the headers.
    let status = collected
        .trailers()
        .and_then(|t| t.get("grpc-status"))
        .or_else(|| head.headers.get("grpc-status"))
        .and_then(|v| v.to_str().ok()?.parse::<u32>().ok());
    match status {
        Some(0) => {
            serving_status(collected.to_bytes()).map_or(Answer::Broken, Answer::from_serving_status)
        }
        Some(_) => Answer::Status,
        None => Answer::Broken,
    }
}

async fn connect(addr: EndpointAddr, timeout: Duration) -> Option<Connection> {
    let stream = connect_tcp(addr, timeout).await.ok()?;
    let (sender, connection) = http2::Builder::new(TokioExecutor::new())
        .timer(TokioTimer::new())
        .keep_alive_interval(H2_KEEPALIVE_INTERVAL)
        .keep_alive_timeout(H2_KEEPALIVE_TIMEOUT)
        .handshake(TokioIo::new(stream))
        .await
        .ok()?;
    tokio::spawn(async move {
        if let Err(error) = connection.await {
            tracing::debug!(%addr, %error, "health check connection ended");
        }
    });
    Some(sender)
}

fn request(
    addr: EndpointAddr,
    check: &GrpcHealthCheck,
) -> Result<http::Request<Full<Bytes>>, http::Error> {
    http::Request::post(format!("http://{addr}{CHECK_PATH}"))
        .version(http::Version::HTTP_2)
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        // The server may give up when we do.
        .header(
            "grpc-timeout",
            format!("{}m", check.timeout.as_millis().max(1)),
        )
        .body(Full::new(frame(&check_request(&check.service))))
}

/// `grpc.health.v1.HealthCheckRequest { string service = 1; }`, protobuf-encoded: an
/// empty service is the empty message.
fn check_request(service: &str) -> Vec<u8> {
    let mut message = Vec::with_capacity(service.len() + 11);
    if !service.is_empty() {
        message.push(0x0a); // field 1, length-delimited
        put_varint(&mut message, service.len() as u64);
        message.extend_from_slice(service.as_bytes());
    }
    message
}

/// A gRPC message frame: not compressed, a 4-byte big-endian length, the message.
fn frame(message: &[u8]) -> Bytes {
    let mut framed = Vec::with_capacity(5 + message.len());
    framed.push(0);
    framed.extend_from_slice(
        &u32::try_from(message.len())
            .unwrap_or(u32::MAX)
            .to_be_bytes(),
    );
    framed.extend_from_slice(message);
    Bytes::from(framed)
}

/// `HealthCheckResponse.status` (field 1, varint) from one framed response; an absent
/// field is 0 (`UNKNOWN`). `None`: not one uncompressed, well-formed message.
fn serving_status(mut body: Bytes) -> Option<u64> {
    if body.len() < 5 || body[0] != 0 {
        return None;
    }
    body.advance(1);
    let len = usize::try_from(body.get_u32()).ok()?;
    if body.len() != len {
        return None;
    }
    let mut status = 0;
    while body.has_remaining() {
        let tag = get_varint(&mut body)?;
        match tag & 7 {
            0 => {
                let value = get_varint(&mut body)?;
                if tag >> 3 == 1 {
                    status = value;
                }
            }
            2 => {
                let skip = usize::try_from(get_varint(&mut body)?).ok()?;
                if body.remaining() < skip {
                    return None;
                }
                body.advance(skip);
            }
            _ => return None,
        }
    }
    Some(status)
}

fn put_varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

fn get_varint(buf: &mut Bytes) -> Option<u64> {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        if !buf.has_remaining() {
            return None;
        }
        let byte = buf.get_u8();
        value |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Some(value);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_encode_the_service_as_grpc_does() {
        assert_eq!(
            &frame(&check_request(""))[..],
            [0, 0, 0, 0, 0],
            "empty message"
        );
        assert_eq!(
            &frame(&check_request("rpc"))[..],
            [0, 0, 0, 0, 5, 0x0a, 3, b'r', b'p', b'c']
        );
    }

    #[test]
    fn responses_decode_their_status() {
        let framed = |m: &[u8]| frame(m);
        assert_eq!(serving_status(framed(&[0x08, 1])), Some(1), "SERVING");
        assert_eq!(serving_status(framed(&[0x08, 2])), Some(2), "NOT_SERVING");
        assert_eq!(
            serving_status(framed(&[])),
            Some(0),
            "absent field: UNKNOWN"
        );
        assert_eq!(
            serving_status(framed(&[0x12, 1, b'x', 0x08, 1])),
            Some(1),
            "unknown fields are skipped"
        );
        assert_eq!(
            serving_status(Bytes::from_static(&[0, 0, 0, 0, 9, 8])),
            None,
            "short"
        );
        assert_eq!(
            serving_status(Bytes::from_static(&[1, 0, 0, 0, 0])),
            None,
            "compressed"
        );
    }
}
