//! A streamed response from a pod that turns terminating: it runs on for the Route's
//! `upstream.drainTimeout`, then ends cleanly, so a long stream (gRPC server streaming,
//! server-sent events) is not cut by the pod's exit mid-message. A gRPC call ends with
//! `UNAVAILABLE` trailers, which clients retry (on another pod: this one is no longer
//! picked); any other body ends with an error, which hyper turns into `RST_STREAM` on
//! the client's HTTP/2 connection (its other streams go on) and a closed connection on
//! HTTP/1.1. Only the pod's side of the stream is reset; no `GOAWAY` reaches the client.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame};
use tokio::sync::watch;

use super::{BoxError, ProxyBody};

/// Why a response body ended early.
#[derive(Debug, thiserror::Error)]
#[error(
    "Drained: the pod turned terminating and the Route's drainTimeout passed: the stream \
     was ended"
)]
pub struct Drained;

/// Completes `grace` after `leaving` turns true; never if its pool goes away first
/// (the body then holds no connection, and nothing is left to end).
async fn deadline(mut leaving: watch::Receiver<bool>, grace: Duration) {
    if leaving.wait_for(|leaving| *leaving).await.is_err() {
        return std::future::pending().await;
    }
    tokio::time::sleep(grace).await;
}

/// A pod's streamed body and the deadline its pod's drain sets.
pub struct Draining {
    pub(super) body: ProxyBody,
    /// `None` once it fired (a finished future must not be polled again).
    deadline: Option<Pin<Box<dyn Future<Output = ()> + Send + Sync>>>,
}

impl std::fmt::Debug for Draining {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Draining")
            .field("body", &self.body)
            .field("armed", &self.deadline.is_some())
            .finish()
    }
}

impl Draining {
    pub(super) fn new(body: ProxyBody, leaving: watch::Receiver<bool>, grace: Duration) -> Self {
        Draining {
            body,
            deadline: Some(Box::pin(deadline(leaving, grace))),
        }
    }

    pub(super) fn poll_frame(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        if let Some(deadline) = self.deadline.as_mut()
            && deadline.as_mut().poll(cx).is_ready()
        {
            self.deadline = None;
            return Poll::Ready(self.body.cut());
        }
        Pin::new(&mut self.body).poll_frame(cx)
    }
}
