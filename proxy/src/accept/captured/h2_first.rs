//! Where a captured HTTP/2 (prior knowledge) connection's first request goes: its
//! `:authority` (else `host`) and `:path`, read from the first HEADERS frame after the
//! preface, so an HTTP/2 client is balanced under the same rule as an HTTP/1 one (only
//! when a Route of the destination's Service claims the request).
//!
//! Pure: frames are read from the bytes so far, nothing is answered and nothing is
//! consumed; the HTTP server reads the same bytes again from the start. The first header
//! block is decoded with a fresh HPACK decoder, which is exact: no block came before it,
//! so the dynamic table is empty, and the client's own `SETTINGS_HEADER_TABLE_SIZE`
//! governs the table the *server* encodes with, not this one (RFC 9113 6.5.2).

use super::detect::{FirstRequest, H2_PREFACE, MAX_FIRST_HEAD};

/// Frame types (RFC 9113 6).
const DATA: u8 = 0x0;
const HEADERS: u8 = 0x1;
const CONTINUATION: u8 = 0x9;
/// HEADERS flags.
const END_HEADERS: u8 = 0x4;
const PADDED: u8 = 0x8;
const PRIORITY: u8 = 0x20;
const FRAME_HEADER: usize = 9;

/// The first request in `buf`, which starts with the HTTP/2 preface. `Partial` while the
/// first header block is incomplete (up to [`MAX_FIRST_HEAD`] bytes); `Unroutable` for
/// a block that is malformed, too large, without an authority, or when a stream's DATA
/// or anything but connection-level frames comes first.
pub fn first_request(buf: &[u8]) -> FirstRequest {
    let Some(mut rest) = buf.strip_prefix(H2_PREFACE) else {
        return FirstRequest::Unroutable;
    };
    let mut block = Vec::new();
    let mut stream = None;
    loop {
        let Some((
            Frame {
                kind,
                flags,
                stream: id,
                payload,
            },
            next,
        )) = frame(rest)
        else {
            return if buf.len() < MAX_FIRST_HEAD {
                FirstRequest::Partial
            } else {
                FirstRequest::Unroutable
            };
        };
        rest = next;
        match (kind, stream) {
            (HEADERS, None) if id != 0 => {
                let Some(fragment) = headers_fragment(flags, payload) else {
                    return FirstRequest::Unroutable;
                };
                block.extend_from_slice(fragment);
                stream = Some(id);
            }
            (CONTINUATION, Some(open)) if id == open => block.extend_from_slice(payload),
            // A request's body before its head, or a frame between a block's parts.
            (DATA | HEADERS | CONTINUATION, _) | (_, Some(_)) => return FirstRequest::Unroutable,
            // SETTINGS, WINDOW_UPDATE, PRIORITY, PING before the first request.
            _ => continue,
        }
        if flags & END_HEADERS != 0 {
            return routable(&block);
        }
    }
}

/// One frame, borrowed from the bytes read.
struct Frame<'a> {
    kind: u8,
    flags: u8,
    stream: u32,
    payload: &'a [u8],
}

/// The whole frame at the start of `buf`, and the bytes after it.
fn frame(buf: &[u8]) -> Option<(Frame<'_>, &[u8])> {
    let head = buf.get(..FRAME_HEADER)?;
    let len = usize::from(head[0]) << 16 | usize::from(head[1]) << 8 | usize::from(head[2]);
    let stream = u32::from_be_bytes([head[5], head[6], head[7], head[8]]) & 0x7fff_ffff;
    let payload = buf.get(FRAME_HEADER..FRAME_HEADER + len)?;
    let frame = Frame {
        kind: head[3],
        flags: head[4],
        stream,
        payload,
    };
    Some((frame, &buf[FRAME_HEADER + len..]))
}

/// A HEADERS frame's header block fragment, without its padding and priority fields.
fn headers_fragment(flags: u8, payload: &[u8]) -> Option<&[u8]> {
    let (pad, mut fragment) = if flags & PADDED != 0 {
        let (&pad, rest) = payload.split_first()?;
        (usize::from(pad), rest)
    } else {
        (0, payload)
    };
    if flags & PRIORITY != 0 {
        fragment = fragment.get(5..)?;
    }
    fragment.get(..fragment.len().checked_sub(pad)?)
}

/// The authority and path of a complete first header block.
fn routable(block: &[u8]) -> FirstRequest {
    let mut authority = None;
    let mut host = None;
    let mut path = None;
    let decoded = loona_hpack::Decoder::new().decode_with_cb(block, |name, value| {
        let value = || String::from_utf8(value.to_vec()).ok();
        match name.as_ref() {
            b":authority" => authority = value(),
            b"host" => host = value(),
            b":path" => path = value(),
            _ => {}
        }
    });
    match (decoded, authority.or(host)) {
        (Ok(()), Some(authority)) if !authority.is_empty() => FirstRequest::Routable {
            authority,
            path: path.unwrap_or_else(|| "/".to_owned()),
        },
        _ => FirstRequest::Unroutable,
    }
}

#[cfg(test)]
#[path = "h2_first_tests.rs"]
mod tests;
