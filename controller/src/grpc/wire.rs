//! The Discovery stream's bytes. A controller message is encoded once (per version, not
//! per stream) into an [`Encoded`], and every stream sends those very bytes through
//! [`FramedBody`]: the per-stream cost of a message is a 5-byte prefix and a write, not
//! a clone, a protobuf encode or a copy.
//!
//! The wire does not change: the bytes are exactly prost's encoding of the same
//! `ControllerMessage`, framed as gRPC frames them, so any proxy (this version or the
//! one before) decodes them with the generated client. What proxies send is decoded by
//! tonic with [`ProxyMessageDecoder`], as the generated server does.

use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::{BufMut, Bytes, BytesMut};
use fairway_proto::Version;
use fairway_proto::pb::{self, controller_message};
use futures::Stream;
use http_body::Frame;
use prost::Message;
use tonic::Status;
use tonic::codec::{DecodeBuf, Decoder};

/// What an [`Encoded`] message is, so a stream can keep its books without decoding it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shape {
    Begin,
    Chunk,
    End,
    Delta,
    Rebase,
    /// Load figures: outside the versioned sequence.
    Figures,
    /// A message without a kind (never built by this controller).
    Empty,
}

/// One `ControllerMessage`, encoded. Cheap to clone (the bytes are shared).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Encoded {
    bytes: Bytes,
    shape: Shape,
    version: Option<Version>,
}

impl Encoded {
    /// Encodes `message` (once; clones share the bytes).
    pub fn new(message: &pb::ControllerMessage) -> Self {
        let shape = match message.kind {
            Some(controller_message::Kind::Begin(_)) => Shape::Begin,
            Some(controller_message::Kind::Chunk(_)) => Shape::Chunk,
            Some(controller_message::Kind::End(_)) => Shape::End,
            Some(controller_message::Kind::Delta(_)) => Shape::Delta,
            Some(controller_message::Kind::Rebase(_)) => Shape::Rebase,
            Some(controller_message::Kind::Figures(_)) => Shape::Figures,
            None => Shape::Empty,
        };
        Encoded {
            bytes: Bytes::from(message.encode_to_vec()),
            shape,
            version: message.table_version().ok(),
        }
    }

    /// The encoded size, without gRPC or HTTP/2 framing.
    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    pub fn shape(&self) -> Shape {
        self.shape
    }

    /// The table version the message carries.
    pub fn version(&self) -> Option<Version> {
        self.version
    }

    /// The message back, as a proxy decodes it (tests, and the per-stream zone copy of a
    /// snapshot's first message).
    pub fn decode(&self) -> Result<pb::ControllerMessage, prost::DecodeError> {
        pb::ControllerMessage::decode(self.bytes.clone())
    }
}

/// A stream's response body: each [`Encoded`] message framed for gRPC without a copy.
/// tonic's own encoder copies every message into a per-stream buffer, which then keeps
/// the largest message's allocation for the stream's life (a 150 KiB rebase to 5,000
/// proxies held 750 MiB). Here a message goes out as its 5-byte gRPC prefix and then
/// its shared bytes, which h2 writes from the one allocation every stream shares. The
/// stream's end (or its error) becomes the `grpc-status` trailers.
#[derive(Debug)]
pub struct FramedBody<S> {
    messages: S,
    /// The message whose prefix went out last.
    pending: Option<Bytes>,
    done: bool,
}

/// Messages up to this size go out with their prefix in one small copy (one DATA frame
/// instead of two); larger ones are not copied.
const COPY_BELOW: usize = 1024;

impl<S> FramedBody<S> {
    pub fn new(messages: S) -> Self {
        FramedBody {
            messages,
            pending: None,
            done: false,
        }
    }
}

/// The gRPC length prefix: not compressed, then the length, big-endian.
fn prefix(len: usize) -> [u8; 5] {
    let [a, b, c, d] = u32::try_from(len).unwrap_or(u32::MAX).to_be_bytes();
    [0, a, b, c, d]
}

fn trailers(status: &Status) -> Frame<Bytes> {
    let mut trailers = http::HeaderMap::new();
    // A status whose message cannot be a header value still sends its code.
    if status.add_header(&mut trailers).is_err() {
        let _ = Status::new(status.code(), "").add_header(&mut trailers);
    }
    Frame::trailers(trailers)
}

impl<S> http_body::Body for FramedBody<S>
where
    S: Stream<Item = Result<Encoded, Status>> + Unpin,
{
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
        if let Some(bytes) = self.pending.take() {
            return Poll::Ready(Some(Ok(Frame::data(bytes))));
        }
        if self.done {
            return Poll::Ready(None);
        }
        let frame = match ready!(Pin::new(&mut self.messages).poll_next(cx)) {
            Some(Ok(message)) if message.len() < COPY_BELOW => {
                let mut framed = BytesMut::with_capacity(5 + message.len());
                framed.put_slice(&prefix(message.len()));
                framed.put_slice(&message.bytes);
                Frame::data(framed.freeze())
            }
            Some(Ok(message)) => {
                self.pending = Some(message.bytes.clone());
                Frame::data(Bytes::copy_from_slice(&prefix(message.len())))
            }
            Some(Err(status)) => {
                self.done = true;
                trailers(&status)
            }
            None => {
                self.done = true;
                trailers(&Status::ok(""))
            }
        };
        Poll::Ready(Some(Ok(frame)))
    }

    fn is_end_stream(&self) -> bool {
        self.done && self.pending.is_none()
    }
}

/// Decodes what proxies send, exactly as `tonic_prost::ProstDecoder` does.
#[derive(Clone, Copy, Debug, Default)]
pub struct ProxyMessageDecoder;

impl Decoder for ProxyMessageDecoder {
    type Item = pb::ProxyMessage;
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<pb::ProxyMessage>, Status> {
        pb::ProxyMessage::decode(src)
            .map(Some)
            .map_err(|e| Status::internal(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use fairway_proto::diff::TableDiff;
    use fairway_proto::snapshot::snapshot_messages;
    use fairway_proto::{Endpoint, EndpointSet, EndpointSetKey, RouteTable};

    use super::*;

    fn v(sequence: u64) -> Version {
        Version { epoch: 3, sequence }
    }

    fn table() -> RouteTable {
        let key = EndpointSetKey {
            namespace: "shop".into(),
            service: "orders".into(),
            port: std::num::NonZeroU16::new(8080).expect("nonzero"),
        };
        let mut set = EndpointSet::new(key);
        for i in 1..=3u8 {
            let ep = Endpoint::ready(([10, 0, 0, i], 8080).into());
            set.endpoints.insert(ep.addr, ep);
        }
        let mut t = RouteTable::default();
        t.endpoint_sets.insert(set.key.clone(), set.into());
        t
    }

    /// What a proxy of today (or of the version before: the wire did not change) reads
    /// is the very message the controller built.
    #[test]
    fn the_bytes_decode_as_the_message_they_were_built_from() {
        let mut messages = snapshot_messages(&table(), v(1), 64);
        messages.push(
            fairway_proto::diff::diff(&RouteTable::default(), &table()).to_message(v(1), v(2)),
        );
        messages.push(TableDiff::default().to_message(v(2), v(3)));
        for message in messages {
            let encoded = Encoded::new(&message);
            assert_eq!(
                encoded.decode().as_ref(),
                Ok(&message),
                "round trip of {message:?}"
            );
            assert_eq!(encoded.len(), message.encoded_len());
            assert_eq!(encoded.version(), message.table_version().ok());
        }
    }

    /// The bytes are prost's encoding of the message.
    #[test]
    fn the_bytes_are_what_prost_would_have_written() {
        let message =
            fairway_proto::diff::diff(&RouteTable::default(), &table()).to_message(v(1), v(2));
        let encoded = Encoded::new(&message);
        let mut by_prost = Vec::new();
        message.encode(&mut by_prost).expect("encode into a Vec");
        assert_eq!(&encoded.bytes[..], &by_prost[..], "the wire is unchanged");
        assert_eq!(encoded.shape(), Shape::Delta);
    }

    #[test]
    fn shapes_follow_the_snapshot_order() {
        let shapes: Vec<Shape> = snapshot_messages(&table(), v(1), 64)
            .iter()
            .map(|m| Encoded::new(m).shape())
            .collect();
        assert_eq!(shapes.first(), Some(&Shape::Begin));
        assert_eq!(shapes.last(), Some(&Shape::End));
        assert!(
            shapes[1..shapes.len() - 1]
                .iter()
                .all(|s| *s == Shape::Chunk)
        );
    }

    /// The body frames every message as gRPC does (prefix, then the message, whole and
    /// unchanged) and ends with `grpc-status` trailers; large messages are not copied.
    #[tokio::test]
    async fn the_body_frames_messages_and_ends_with_the_status() {
        use http_body::Body as _;
        use http_body_util::BodyExt;

        let small = Encoded::new(&TableDiff::default().to_message(v(1), v(2)));
        let large = Encoded::new(
            &fairway_proto::diff::diff(&RouteTable::default(), &big()).to_message(v(2), v(3)),
        );
        assert!(small.len() < COPY_BELOW && large.len() >= COPY_BELOW);
        let messages = vec![
            Ok(small.clone()),
            Ok(large.clone()),
            Err(Status::invalid_argument("bye")),
        ];
        let mut body = FramedBody::new(futures::stream::iter(messages));
        let mut data = Vec::new();
        let mut trailers = None;
        while let Some(frame) = body.frame().await {
            let frame = frame.expect("no body error");
            match frame.into_data() {
                Ok(bytes) => {
                    if bytes.len() == large.len() {
                        assert_eq!(
                            bytes.as_ptr(),
                            large.bytes.as_ptr(),
                            "sent from the shared bytes"
                        );
                    }
                    data.extend_from_slice(&bytes);
                }
                Err(frame) => trailers = frame.into_trailers().ok(),
            }
        }
        let mut expected = Vec::new();
        for message in [&small, &large] {
            expected.extend_from_slice(&prefix(message.len()));
            expected.extend_from_slice(&message.bytes);
        }
        assert_eq!(data, expected);
        let trailers = trailers.expect("trailers");
        assert_eq!(
            trailers.get("grpc-status").map(|v| v.as_bytes()),
            Some(&b"3"[..])
        );
        assert!(body.is_end_stream());

        let mut ok = FramedBody::new(futures::stream::iter(Vec::<Result<Encoded, Status>>::new()));
        let end = ok.frame().await.expect("a frame").expect("no error");
        let end = end.into_trailers().expect("trailers only");
        assert_eq!(
            end.get("grpc-status").map(|v| v.as_bytes()),
            Some(&b"0"[..])
        );
    }

    /// A table whose delta from empty is well over [`COPY_BELOW`].
    fn big() -> RouteTable {
        let mut t = table();
        let key = t.endpoint_sets.keys().next().cloned().expect("a set");
        let set = std::sync::Arc::make_mut(t.endpoint_sets.get_mut(&key).expect("the set"));
        for i in 0..100u8 {
            let ep = Endpoint::ready(([10, 0, 1, i], 8080).into());
            set.endpoints.insert(ep.addr, ep);
        }
        t
    }
}
