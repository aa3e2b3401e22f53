//! [`PodStream`]: the byte stream under one HTTP/1.1 connection to a pod, plain TCP or
//! TLS. An enum, not a trait object: the plaintext path, which every benchmark runs,
//! pays a branch and nothing else (no box, no indirect call); the TLS variant is boxed
//! so the enum stays the size of a `TcpStream`.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

/// A connection's stream to its pod.
#[derive(Debug)]
pub enum PodStream {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

impl PodStream {
    /// Whether the pod closed the connection (or sent something unasked) while it sat
    /// idle. Plain: a system call only when the socket became readable. TLS: a read
    /// through rustls, because an idle TLS 1.3 connection does receive bytes that are no
    /// answer (session tickets, which rustls takes in without yielding data); only the
    /// end of the stream, an alert or application data mean the connection is done.
    pub fn is_closed(&mut self) -> bool {
        match self {
            PodStream::Plain(stream) => {
                let mut byte = [0u8; 1];
                !matches!(stream.try_read(&mut byte), Err(e) if e.kind() == io::ErrorKind::WouldBlock)
            }
            PodStream::Tls(stream) => {
                let mut cx = Context::from_waker(Waker::noop());
                let mut byte = [0u8; 1];
                let mut buf = ReadBuf::new(&mut byte);
                !matches!(
                    Pin::new(&mut **stream).poll_read(&mut cx, &mut buf),
                    Poll::Pending
                )
            }
        }
    }
}

impl AsyncRead for PodStream {
    #[inline]
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            PodStream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            PodStream::Tls(s) => Pin::new(&mut **s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for PodStream {
    #[inline]
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            PodStream::Plain(s) => Pin::new(s).poll_write(cx, data),
            PodStream::Tls(s) => Pin::new(&mut **s).poll_write(cx, data),
        }
    }

    #[inline]
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            PodStream::Plain(s) => Pin::new(s).poll_flush(cx),
            PodStream::Tls(s) => Pin::new(&mut **s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            PodStream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            PodStream::Tls(s) => Pin::new(&mut **s).poll_shutdown(cx),
        }
    }
}
