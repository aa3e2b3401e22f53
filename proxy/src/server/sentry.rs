//! The framing sentry: a reader in front of hyper's HTTP/1.1 parser that flags a request
//! carrying both `Content-Length` and `Transfer-Encoding`, so it is answered `400`.
//!
//! Why here: hyper follows RFC 9112 §6.1 for such a request (chunked wins, the length
//! header is dropped, the connection closes after the response), which smuggles nothing
//! but leaves no trace the service could see. A request with both is an attack or a
//! broken client either way, and the issue (and every security scanner) expects `400`.
//! The sentry sees the same bytes hyper does, follows message boundaries (heads parsed
//! with httparse, bodies skipped by their framing) and raises a per-connection flag the
//! service checks. HTTP/2 (the prior-knowledge preface) is left alone: it has no such
//! headers. Anything it cannot follow turns it off; hyper rejects that input itself.

use std::io;
use std::mem::MaybeUninit;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::h1::{BodyKind, Decoded, Decoder, ends_in_chunked};

/// Heads longer than this are left to hyper's own limit (`431`).
const MAX_HEAD: usize = 256 * 1024;
/// Most request headers the sentry looks at (hyper's limit is lower).
const MAX_HEADERS: usize = 256;

/// Set when a request with both framing headers arrived on the connection.
#[derive(Clone, Debug, Default)]
pub struct Flag(Arc<AtomicBool>);

impl Flag {
    pub fn raised(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }

    fn raise(&self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// Where the sentry is in the byte stream.
#[derive(Debug)]
enum State {
    /// Collecting a request head.
    Head,
    /// Skipping a body.
    Body(Decoder),
    /// HTTP/2, unparseable input, or already flagged: nothing more to check.
    Off,
}

/// The pure part: bytes in, flag out.
#[derive(Debug)]
pub struct Scanner {
    state: State,
    /// Bytes of an unfinished head or chunk line.
    pending: BytesMut,
    flag: Flag,
    first: bool,
}

impl Scanner {
    pub fn new(flag: Flag) -> Self {
        Scanner {
            state: State::Head,
            pending: BytesMut::new(),
            flag,
            first: true,
        }
    }

    /// Follows `bytes`, the next bytes the client sent.
    pub fn scan(&mut self, mut bytes: &[u8]) {
        if matches!(self.state, State::Off) || bytes.is_empty() {
            return;
        }
        // An upload with a known length is skipped in place, not copied.
        if let State::Body(Decoder::Length(left)) = &mut self.state
            && self.pending.is_empty()
        {
            let skip = usize::try_from(*left)
                .unwrap_or(usize::MAX)
                .min(bytes.len());
            bytes = &bytes[skip..];
            *left -= skip as u64;
            if *left == 0 {
                self.state = State::Head;
            }
            if bytes.is_empty() {
                return;
            }
        }
        self.pending.extend_from_slice(bytes);
        if self.first && self.pending.len() >= 3 {
            self.first = false;
            if self.pending.starts_with(b"PRI") {
                self.off();
                return;
            }
        }
        // Bounded: each turn consumes bytes or waits for more.
        for _ in 0..1024 {
            match &mut self.state {
                State::Off => return,
                State::Head => match self.head() {
                    Some(next) => self.state = next,
                    None => return,
                },
                State::Body(decoder) => match decoder.decode(&mut self.pending) {
                    Ok(Decoded::NeedMore) => return,
                    Ok(Decoded::End) => self.state = State::Head,
                    Ok(_) => {}
                    Err(_) => return self.off(),
                },
            }
        }
    }

    /// Parses one head from `pending`; `None`: incomplete.
    fn head(&mut self) -> Option<State> {
        // Empty lines between requests are allowed (RFC 9112 §2.2).
        while self.pending.starts_with(b"\r\n") {
            let _ = self.pending.split_to(2);
        }
        let mut slots = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
        let mut request = httparse::Request::new(&mut []);
        let parsed = httparse::ParserConfig::default().parse_request_with_uninit_headers(
            &mut request,
            &self.pending,
            &mut slots,
        );
        let len = match parsed {
            Ok(httparse::Status::Complete(len)) => len,
            Ok(httparse::Status::Partial) if self.pending.len() <= MAX_HEAD => return None,
            _ => return Some(self.stop()),
        };
        let headers = &*request.headers;
        let named = |name: &'static str| {
            headers
                .iter()
                .filter(move |h| h.name.eq_ignore_ascii_case(name))
        };
        let length = named("content-length").next().map(|h| h.value);
        let chunked = named("transfer-encoding")
            .next_back()
            .map(|h| ends_in_chunked(h.value));
        let next = match (length, chunked) {
            (Some(_), Some(_)) => {
                self.flag.raise();
                return Some(self.stop());
            }
            (_, Some(true)) => State::Body(Decoder::new(BodyKind::Chunked)),
            // Transfer-Encoding not ending in chunked: hyper answers 400 itself.
            (_, Some(false)) => return Some(self.stop()),
            (Some(value), None) => match std::str::from_utf8(value)
                .ok()
                .and_then(|v| v.trim().parse::<u64>().ok())
            {
                Some(n) => State::Body(Decoder::new(BodyKind::Length(n))),
                // Lists and junk: hyper validates them (400 or the agreed value).
                None => return Some(self.stop()),
            },
            (None, None) => State::Head,
        };
        let _ = self.pending.split_to(len);
        Some(next)
    }

    fn stop(&mut self) -> State {
        self.pending = BytesMut::new();
        State::Off
    }

    fn off(&mut self) {
        self.state = self.stop();
    }
}

/// The connection's stream with a [`Scanner`] watching what it reads. It first replays
/// `prefix`, the bytes the fast loop had read when it handed the connection to hyper
/// (`super::downstream`), so hyper and the scanner both see the stream from the start of
/// the request the loop did not take.
#[derive(Debug)]
pub struct Sentry<S> {
    prefix: Bytes,
    inner: S,
    scanner: Scanner,
}

impl<S> Sentry<S> {
    pub fn new(prefix: Bytes, inner: S, flag: Flag) -> Self {
        Sentry {
            prefix,
            inner,
            scanner: Scanner::new(flag),
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Sentry<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let polled = if this.prefix.is_empty() {
            Pin::new(&mut this.inner).poll_read(cx, buf)
        } else {
            let n = this.prefix.len().min(buf.remaining());
            buf.put_slice(&this.prefix.split_to(n));
            Poll::Ready(Ok(()))
        };
        if let Poll::Ready(Ok(())) = polled {
            this.scanner.scan(&buf.filled()[before..]);
        }
        polled
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Sentry<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flagged(chunks: &[&[u8]]) -> bool {
        let flag = Flag::default();
        let mut scanner = Scanner::new(flag.clone());
        for chunk in chunks {
            scanner.scan(chunk);
        }
        flag.raised()
    }

    fn bytewise(raw: &[u8]) -> bool {
        let chunks: Vec<&[u8]> = raw.chunks(1).collect();
        flagged(&chunks)
    }

    const CL_TE: &[u8] =
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n";
    const TE_CL: &[u8] =
        b"POST / HTTP/1.1\r\nHost: a\r\ntransfer-encoding: chunked\r\ncontent-length: 4\r\n\r\n0\r\n\r\n";

    #[test]
    fn both_framing_headers_raise_the_flag_in_either_order_and_any_split() {
        for raw in [CL_TE, TE_CL] {
            assert!(flagged(&[raw]));
            assert!(bytewise(raw));
        }
    }

    #[test]
    fn later_requests_are_found_past_bodies_of_every_framing() {
        let mut raw = Vec::new();
        raw.extend_from_slice(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n");
        raw.extend_from_slice(
            b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 11\r\n\r\nhello world",
        );
        raw.extend_from_slice(
            b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n\
              5\r\nhello\r\n0\r\nx-t: 1\r\n\r\n",
        );
        assert!(!flagged(&[&raw]), "ordinary requests raise nothing");
        raw.extend_from_slice(CL_TE);
        assert!(flagged(&[&raw]), "the fourth request is seen");
        assert!(bytewise(&raw), "also when it arrives a byte at a time");
    }

    #[test]
    fn a_body_that_looks_like_a_head_is_skipped() {
        let mut raw = Vec::new();
        let inner = String::from_utf8_lossy(CL_TE).into_owned();
        let outer = format!(
            "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: {}\r\n\r\n{inner}",
            inner.len()
        );
        raw.extend_from_slice(outer.as_bytes());
        assert!(!flagged(&[&raw]), "a body is data, not a request");
    }

    #[tokio::test]
    async fn the_prefix_is_read_and_scanned_before_the_stream() {
        use tokio::io::AsyncReadExt as _;
        let flag = Flag::default();
        let (head, rest) = CL_TE.split_at(20);
        let mut stream = Sentry::new(Bytes::from_static(head), rest, flag.clone());
        let mut first = [0u8; 7];
        stream.read_exact(&mut first).await.expect("read");
        assert_eq!(&first, b"POST / ", "a short read takes part of the prefix");
        let mut all = first.to_vec();
        stream.read_to_end(&mut all).await.expect("read");
        assert_eq!(
            all, CL_TE,
            "the prefix, then the stream, nothing lost or repeated"
        );
        assert!(
            flag.raised(),
            "the scanner saw the head across prefix and stream"
        );
    }

    #[test]
    fn http2_and_garbage_turn_it_off() {
        assert!(!flagged(&[b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", CL_TE]));
        assert!(!flagged(&[b"\x00\x01garbage\r\n\r\n", CL_TE]));
    }
}
