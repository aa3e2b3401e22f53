//! A streamed request body that keeps a copy of what it sends, up to
//! [`super::REPLAY_BUFFER_LIMIT`], so a gRPC call the pod refused
//! with a retryable status can be sent again although it was streamed (gRPC clients
//! send no `Content-Length`, so the body cannot be buffered before the first try
//! without stalling a streaming call). After linkerd2-proxy's `ReplayBody`.

use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use http::HeaderMap;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;

use super::{REPLAY_BUFFER_LIMIT, Replayable};

/// What the recording saw.
#[derive(Debug, Default)]
struct Tape {
    data: Vec<Bytes>,
    len: u64,
    trailers: Option<HeaderMap>,
    /// The body ended cleanly and every byte is on the tape.
    complete: bool,
    /// Past the limit, or the client's body failed: nothing to replay.
    spoiled: bool,
}

/// The client's body, streamed through while recorded.
#[derive(Debug)]
pub struct Recording {
    body: Incoming,
    tape: Arc<Mutex<Tape>>,
}

/// The other end of a recording (`UpstreamBody::Recorded`), kept by the try loop.
#[derive(Clone, Debug)]
pub struct Playback(Arc<Mutex<Tape>>);

/// Starts recording `body`.
pub fn record(body: Incoming) -> (Recording, Playback) {
    let tape = Arc::new(Mutex::new(Tape::default()));
    (
        Recording {
            body,
            tape: Arc::clone(&tape),
        },
        Playback(tape),
    )
}

impl Playback {
    /// The whole body as sent, if it was sent to its end within the limit.
    pub fn replayable(&self) -> Option<Replayable> {
        let tape = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if !tape.complete || tape.spoiled {
            return None;
        }
        let mut data = BytesMut::with_capacity(usize::try_from(tape.len).unwrap_or(0));
        for chunk in &tape.data {
            data.extend_from_slice(chunk);
        }
        Some(Replayable::new(data.freeze(), tape.trailers.clone()))
    }
}

impl Tape {
    fn note(&mut self, frame: Option<&Result<Frame<Bytes>, hyper::Error>>) {
        if self.spoiled {
            return;
        }
        match frame {
            None => self.complete = true,
            Some(Err(_)) => self.spoil(),
            Some(Ok(frame)) => {
                if let Some(data) = frame.data_ref() {
                    self.len += data.len() as u64;
                    if self.len > REPLAY_BUFFER_LIMIT {
                        self.spoil();
                    } else {
                        self.data.push(data.clone());
                    }
                } else if let Some(trailers) = frame.trailers_ref() {
                    self.trailers = Some(trailers.clone());
                }
            }
        }
    }

    fn spoil(&mut self) {
        self.spoiled = true;
        self.data = Vec::new();
        self.trailers = None;
    }
}

impl Body for Recording {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let polled = std::task::ready!(Pin::new(&mut self.body).poll_frame(cx));
        let mut tape = self.tape.lock().unwrap_or_else(PoisonError::into_inner);
        // Nobody can play it back any more (the call was answered, the retry window
        // closed): a long streaming call must not hold its first 64 KiB for its life.
        if Arc::strong_count(&self.tape) == 1 {
            tape.spoil();
            return Poll::Ready(polled);
        }
        tape.note(polled.as_ref());
        // hyper stops polling a body that says it has ended (END_STREAM rides on the
        // last data frame), so the end is noted here, not only at `None`.
        if self.body.is_end_stream() {
            tape.note(None);
        }
        drop(tape);
        Poll::Ready(polled)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(n: usize) -> Option<Result<Frame<Bytes>, hyper::Error>> {
        Some(Ok(Frame::data(Bytes::from(vec![b'x'; n]))))
    }

    #[test]
    fn a_complete_body_within_the_limit_plays_back_with_its_trailers() {
        let mut tape = Tape::default();
        let playback = Playback(Arc::new(Mutex::new(Tape::default())));
        assert!(playback.replayable().is_none(), "nothing ended yet");
        tape.note(data(3).as_ref());
        tape.note(data(2).as_ref());
        let mut trailers = HeaderMap::new();
        trailers.insert("x-end", "1".parse().expect("value"));
        tape.note(Some(&Ok(Frame::trailers(trailers))));
        tape.note(None);
        let playback = Playback(Arc::new(Mutex::new(tape)));
        let replay = playback.replayable().expect("complete and small");
        assert_eq!(replay.data().map(Bytes::len), Some(5));
        assert_eq!(
            replay.trailers().map(|t| t["x-end"].clone()),
            Some("1".parse().expect("v"))
        );
    }

    #[test]
    fn an_unfinished_or_oversized_body_does_not_play_back() {
        let mut unfinished = Tape::default();
        unfinished.note(data(3).as_ref());
        assert!(
            Playback(Arc::new(Mutex::new(unfinished)))
                .replayable()
                .is_none()
        );

        let mut big = Tape::default();
        big.note(data(REPLAY_BUFFER_LIMIT as usize).as_ref());
        big.note(data(1).as_ref());
        big.note(None);
        assert!(
            Playback(Arc::new(Mutex::new(big))).replayable().is_none(),
            "one byte over the limit spoils the tape"
        );
    }
}
