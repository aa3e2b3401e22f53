//! Reading a pod's HTTP/1.1 response: the head (httparse), then how its body is framed
//! (RFC 9112 §6.3), then the body itself, frame by frame, out of the connection's read
//! buffer. Pure: bytes in, decisions out; the socket is `super::conn`'s business.

use std::mem::MaybeUninit;

use bytes::{Buf, Bytes, BytesMut};
use http::header::{HeaderName, HeaderValue};
use http::{HeaderMap, Method, StatusCode, Version};

use super::Error;
use crate::fields::{Fields, Span};

/// Most response headers read from a pod (Set-Cookie-heavy pages included).
pub const MAX_RESPONSE_HEADERS: usize = 128;
/// Largest response head read from a pod; past it the try fails with `502`.
pub const MAX_RESPONSE_HEAD: usize = 64 * 1024;
/// Longest chunk-size line (hex digits and extensions) accepted.
const MAX_CHUNK_LINE: usize = 4 * 1024;

/// A parsed response head: what the downstream response is built from.
#[derive(Debug)]
pub struct Head {
    pub status: StatusCode,
    pub version: Version,
    pub fields: Fields,
}

/// Parses a response head from the front of `buf`, removing it. `None`: incomplete,
/// read more.
pub fn parse_head(buf: &mut BytesMut) -> Result<Option<Head>, Error> {
    // Uninitialised slots: a fresh `[EMPTY_HEADER; 128]` would write 4 KiB per response.
    let mut slots = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_RESPONSE_HEADERS];
    let mut response = httparse::Response::new(&mut []);
    let parsed = httparse::ParserConfig::default().parse_response_with_uninit_headers(
        &mut response,
        buf,
        &mut slots,
    );
    let len = match parsed {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) if buf.len() > MAX_RESPONSE_HEAD => {
            return Err(Error::HeadTooLarge);
        }
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(error) => return Err(Error::Parse(error)),
    };
    let status = response
        .code
        .and_then(|code| StatusCode::from_u16(code).ok())
        .ok_or(Error::Framing("status code out of range"))?;
    let version = match response.version {
        Some(0) => Version::HTTP_10,
        _ => Version::HTTP_11,
    };
    // Where each field sits in the head, to slice it once the head is split off `buf`
    // (sized to the fields: a fixed array for the maximum costs a 4 KiB memset).
    let spans: Vec<Span> = response
        .headers
        .iter()
        .map(|header| Span::of(buf, header))
        .collect();
    let head = buf.split_to(len).freeze();
    Ok(Some(Head {
        status,
        version,
        fields: Fields::new(head, spans),
    }))
}

/// How a response body is delimited, and whether the connection may carry another
/// request afterwards.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Framing {
    pub body: BodyKind,
    pub reusable: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BodyKind {
    /// No body at all (HEAD, 204, 304).
    Empty,
    /// `Content-Length` bytes.
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
    /// Until the pod closes the connection.
    UntilClose,
}

/// RFC 9112 §6.3, for a response to `method`.
pub fn framing(method: &Method, head: &Head) -> Result<Framing, Error> {
    // One pass over the fields (this runs for every response).
    let (mut keep_alive, mut close) = (false, false);
    let (mut length, mut has_length) = (None, false);
    let mut last_coding: Option<&[u8]> = None;
    for (name, value) in head.fields.iter() {
        if name.eq_ignore_ascii_case(b"connection") {
            keep_alive |= has_token(value, b"keep-alive");
            close |= has_token(value, b"close");
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            last_coding = Some(value);
        } else if name.eq_ignore_ascii_case(b"content-length") {
            has_length = true;
            length = content_length(value, length)?;
        }
    }
    let mut reusable = match head.version {
        Version::HTTP_10 => keep_alive,
        _ => !close,
    };
    let body = if method == Method::HEAD
        || head.status.is_informational()
        || head.status == StatusCode::NO_CONTENT
        || head.status == StatusCode::NOT_MODIFIED
    {
        BodyKind::Empty
    } else if let Some(coding) = last_coding {
        // Transfer-Encoding overrides Content-Length; a message with both may be an
        // attempt at smuggling, so the connection is not reused after it.
        if has_length {
            reusable = false;
        }
        if ends_in_chunked(coding) {
            BodyKind::Chunked
        } else {
            BodyKind::UntilClose
        }
    } else if let Some(length) = length {
        BodyKind::Length(length)
    } else {
        BodyKind::UntilClose
    };
    if body == BodyKind::UntilClose {
        reusable = false;
    }
    Ok(Framing { body, reusable })
}

/// Folds one `Content-Length` value into the length found so far: several values (in
/// one field or several) must agree (RFC 9110 §8.6).
fn content_length(value: &[u8], mut found: Option<u64>) -> Result<Option<u64>, Error> {
    for part in value.split(|b| *b == b',') {
        let part = part.trim_ascii();
        if part.is_empty() || !part.iter().all(u8::is_ascii_digit) {
            return Err(Error::Framing("invalid Content-Length"));
        }
        let n = std::str::from_utf8(part)
            .ok()
            .and_then(|s| s.parse::<u64>().ok())
            .ok_or(Error::Framing("invalid Content-Length"))?;
        if found.is_some_and(|f| f != n) {
            return Err(Error::Framing("conflicting Content-Length values"));
        }
        found = Some(n);
    }
    Ok(found)
}

/// Whether a `Transfer-Encoding` value's last coding is `chunked` (RFC 9112 §6.3: only
/// then is the message framed by chunks).
pub fn ends_in_chunked(value: &[u8]) -> bool {
    value
        .rsplit(|b| *b == b',')
        .next()
        .is_some_and(|last| last.trim_ascii().eq_ignore_ascii_case(b"chunked"))
}

/// Whether a comma-separated field value (`Connection`, ...) lists `token`, any case.
pub(crate) fn has_token(value: &[u8], token: &[u8]) -> bool {
    value
        .split(|b| *b == b',')
        .any(|t| t.trim_ascii().eq_ignore_ascii_case(token))
}

/// One step of body decoding.
#[derive(Debug, PartialEq)]
pub enum Decoded {
    Data(Bytes),
    Trailers(HeaderMap),
    /// The body is complete.
    End,
    /// Read more from the connection first.
    NeedMore,
}

/// The body decoder's position.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decoder {
    /// Bytes left of a `Content-Length` body.
    Length(u64),
    /// Waiting for a chunk-size line.
    ChunkSize,
    /// Bytes left of the current chunk, then its CRLF.
    ChunkData(u64),
    /// The CRLF after a chunk's data.
    ChunkEnd,
    /// After the last chunk: trailer fields, then an empty line.
    Trailers,
    UntilClose,
    Done,
}

impl Decoder {
    pub fn new(kind: BodyKind) -> Self {
        match kind {
            BodyKind::Empty | BodyKind::Length(0) => Decoder::Done,
            BodyKind::Length(n) => Decoder::Length(n),
            BodyKind::Chunked => Decoder::ChunkSize,
            BodyKind::UntilClose => Decoder::UntilClose,
        }
    }

    pub fn is_done(&self) -> bool {
        *self == Decoder::Done
    }

    /// Bytes still expected, when known.
    pub fn remaining(&self) -> Option<u64> {
        match self {
            Decoder::Length(n) => Some(*n),
            Decoder::Done => Some(0),
            _ => None,
        }
    }

    /// Takes the next frame out of `buf`.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Decoded, Error> {
        loop {
            match *self {
                Decoder::Done => return Ok(Decoded::End),
                Decoder::Length(_) | Decoder::ChunkData(_) | Decoder::UntilClose
                    if buf.is_empty() =>
                {
                    return Ok(Decoded::NeedMore);
                }
                Decoder::Length(left) => {
                    let data = take(buf, left);
                    let left = left - data.len() as u64;
                    *self = if left == 0 {
                        Decoder::Done
                    } else {
                        Decoder::Length(left)
                    };
                    return Ok(Decoded::Data(data));
                }
                Decoder::ChunkData(left) => {
                    let data = take(buf, left);
                    let left = left - data.len() as u64;
                    *self = if left == 0 {
                        Decoder::ChunkEnd
                    } else {
                        Decoder::ChunkData(left)
                    };
                    return Ok(Decoded::Data(data));
                }
                Decoder::UntilClose => return Ok(Decoded::Data(buf.split().freeze())),
                Decoder::ChunkSize => {
                    let Some(line) = line(buf, MAX_CHUNK_LINE)? else {
                        return Ok(Decoded::NeedMore);
                    };
                    let size = chunk_size(&line)?;
                    *self = if size == 0 {
                        Decoder::Trailers
                    } else {
                        Decoder::ChunkData(size)
                    };
                }
                Decoder::ChunkEnd => {
                    if buf.len() < 2 {
                        return Ok(Decoded::NeedMore);
                    }
                    if &buf[..2] != b"\r\n" {
                        return Err(Error::Framing("chunk data not followed by CRLF"));
                    }
                    buf.advance(2);
                    *self = Decoder::ChunkSize;
                }
                Decoder::Trailers => return self.trailers(buf),
            }
        }
    }

    fn trailers(&mut self, buf: &mut BytesMut) -> Result<Decoded, Error> {
        if buf.starts_with(b"\r\n") {
            buf.advance(2);
            *self = Decoder::Done;
            return Ok(Decoded::End);
        }
        let Some(end) = find(buf, b"\r\n\r\n") else {
            if buf.len() > MAX_RESPONSE_HEAD {
                return Err(Error::HeadTooLarge);
            }
            return Ok(Decoded::NeedMore);
        };
        let block = buf.split_to(end + 4);
        let mut slots = [httparse::EMPTY_HEADER; MAX_RESPONSE_HEADERS];
        let fields = match httparse::parse_headers(&block, &mut slots) {
            Ok(httparse::Status::Complete((_, fields))) => fields,
            Ok(httparse::Status::Partial) => return Err(Error::Framing("truncated trailers")),
            Err(error) => return Err(Error::Parse(error)),
        };
        let mut trailers = HeaderMap::with_capacity(fields.len());
        for field in fields {
            let name = HeaderName::from_bytes(field.name.as_bytes())
                .map_err(|_| Error::Framing("invalid trailer name"))?;
            let value = HeaderValue::from_bytes(field.value)
                .map_err(|_| Error::Framing("invalid trailer value"))?;
            trailers.append(name, value);
        }
        *self = Decoder::Done;
        Ok(Decoded::Trailers(trailers))
    }
}

fn take(buf: &mut BytesMut, left: u64) -> Bytes {
    let n = usize::try_from(left).unwrap_or(usize::MAX).min(buf.len());
    buf.split_to(n).freeze()
}

/// A CRLF-terminated line from the front of `buf` (CRLF removed).
fn line(buf: &mut BytesMut, max: usize) -> Result<Option<BytesMut>, Error> {
    match find(buf, b"\r\n") {
        Some(end) => {
            let line = buf.split_to(end);
            buf.advance(2);
            Ok(Some(line))
        }
        None if buf.len() > max => Err(Error::Framing("chunk-size line too long")),
        None => Ok(None),
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// The hex size before any `;extension`; at most 16 digits (no overflow).
fn chunk_size(line: &[u8]) -> Result<u64, Error> {
    let digits = line
        .split(|b| *b == b';')
        .next()
        .unwrap_or_default()
        .trim_ascii();
    if digits.is_empty() || digits.len() > 16 || !digits.iter().all(u8::is_ascii_hexdigit) {
        return Err(Error::Framing("invalid chunk size"));
    }
    let text = std::str::from_utf8(digits).map_err(|_| Error::Framing("invalid chunk size"))?;
    u64::from_str_radix(text, 16).map_err(|_| Error::Framing("invalid chunk size"))
}

#[cfg(test)]
mod tests;
