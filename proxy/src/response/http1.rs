//! An HTTP/1.1 pod's response body, decoded straight from the pod's socket by the
//! downstream connection's task.

use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::Frame;

use super::BoxError;
use crate::fields::Fields;
use crate::h1::{self, Decoded, Decoder};
use crate::pool::Lease;

/// The body of an HTTP/1.1 response: the connection's lease (returned to the pool after
/// the last byte when the response allows reuse, closed otherwise) and the decoder.
///
/// It also carries the response's header fields as the pod sent them ([`Fields`]):
/// the response's `HeaderMap` starts empty, because the downstream fast loop writes the
/// fields straight out and only hyper's path needs a map ([`super::ProxyBody::take_fields`]).
#[derive(Debug)]
pub struct Http1Body {
    pub(super) lease: Option<Lease>,
    pub(super) decoder: Decoder,
    pub(super) reusable: bool,
    pub(super) fields: Fields,
}

impl Http1Body {
    /// The body is complete: the connection goes back to its pool if the response
    /// allows it and nothing unasked follows; otherwise it closes.
    pub(super) fn finish(&mut self) {
        if let Some(mut lease) = self.lease.take()
            && self.reusable
            && lease.http1_conn().is_some_and(|c| c.read.is_empty())
        {
            lease.release();
        }
    }

    pub(super) fn poll_frame(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        loop {
            let Some(conn) = self.lease.as_mut().and_then(Lease::http1_conn) else {
                return Poll::Ready(None);
            };
            let frame = match self.decoder.decode(&mut conn.read) {
                Ok(Decoded::Data(data)) => Frame::data(data),
                Ok(Decoded::Trailers(trailers)) => Frame::trailers(trailers),
                Ok(Decoded::End) => {
                    self.finish();
                    return Poll::Ready(None);
                }
                Ok(Decoded::NeedMore) => {
                    let read = std::task::ready!(conn.poll_fill(cx));
                    match read {
                        Ok(0) if self.decoder == Decoder::UntilClose => {
                            self.decoder = Decoder::Done;
                            self.lease = None;
                            return Poll::Ready(None);
                        }
                        Ok(0) => return self.fail(h1::Error::Closed),
                        Ok(_) => continue,
                        Err(error) => return self.fail(h1::Error::Read(error)),
                    }
                }
                Err(error) => return self.fail(error),
            };
            if self.decoder.is_done() {
                // The frame owns its bytes: the connection may serve the next request
                // while the client is still being written to.
                self.finish();
            }
            return Poll::Ready(Some(Ok(frame)));
        }
    }

    fn fail(&mut self, error: h1::Error) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        // Dropping the lease closes the connection: its framing is lost.
        self.lease = None;
        self.decoder = Decoder::Done;
        Poll::Ready(Some(Err(error.into())))
    }
}
