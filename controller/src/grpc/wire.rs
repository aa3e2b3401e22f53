//! The Discovery stream's bytes. A controller message is encoded once (per version, not
//! per stream) into an [`Encoded`], and every stream writes those bytes through
//! [`PassThroughCodec`]: the per-stream cost of a delta is a copy into the HTTP/2 send
//! buffer, not a clone and a protobuf encode.
//!
//! The wire does not change: the bytes are exactly prost's encoding of the same
//! `ControllerMessage`, framed by tonic as before, so any proxy (this version or the one
//! before) decodes them with the generated client. Only the server's side of the codec
//! differs; what proxies send is decoded as before.

use bytes::{BufMut, Bytes};
use fairway_proto::Version;
use fairway_proto::pb::{self, controller_message};
use prost::Message;
use tonic::Status;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};

/// What an [`Encoded`] message is, so a stream can keep its books without decoding it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shape {
    Begin,
    Chunk,
    End,
    Delta,
    Rebase,
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

/// The server's codec: writes [`Encoded`] bytes as they are and decodes `ProxyMessage`s
/// with prost, as the generated code does.
#[derive(Clone, Copy, Debug, Default)]
pub struct PassThroughCodec;

impl Codec for PassThroughCodec {
    type Encode = Encoded;
    type Decode = pb::ProxyMessage;
    type Encoder = PassThroughEncoder;
    type Decoder = ProxyMessageDecoder;

    fn encoder(&mut self) -> Self::Encoder {
        PassThroughEncoder
    }

    fn decoder(&mut self) -> Self::Decoder {
        ProxyMessageDecoder
    }
}

/// Copies pre-encoded bytes into tonic's frame buffer.
#[derive(Clone, Copy, Debug, Default)]
pub struct PassThroughEncoder;

impl Encoder for PassThroughEncoder {
    type Item = Encoded;
    type Error = Status;

    fn encode(&mut self, item: Encoded, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        dst.put_slice(&item.bytes);
        Ok(())
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

    /// The codec writes the bytes untouched, and the generated client's decoder (prost,
    /// through tonic) reads the same message back.
    #[test]
    fn the_codec_writes_what_prost_would_have_written() {
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
}
