//! The recording fake behind the pool seam ([`crate::pod::Upstream`]): pods that
//! answer as scripted, per endpoint, and a record of every try that reached one. The
//! request service's unit tests (`service/tests.rs`) run through it without sockets.

use std::collections::HashMap;
use std::sync::Mutex;

use bytes::Bytes;
use fairway_proto::model::EndpointAddr;
use http::{HeaderMap, Method, Request, Response, StatusCode};

use crate::h1;
use crate::pod::{TryError, Upstream, UpstreamError};
use crate::pool::{ConnSettings, ConnectError};
use crate::request::UpstreamBody;
use crate::response::ProxyBody;

/// How a scripted pod answers every try.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reply {
    /// A response with this status and a body naming the pod.
    Status(StatusCode),
    /// The connection is refused: nothing was sent.
    Refuse,
    /// The request was sent, then the connection broke before response headers.
    Reset,
}

/// One try as the pod saw it: the request after the proxy's edits.
#[derive(Clone, Debug)]
pub struct Sent {
    pub addr: EndpointAddr,
    pub method: Method,
    pub path: String,
    pub headers: HeaderMap,
}

/// Pods answering `200` unless scripted otherwise.
#[derive(Debug, Default)]
pub struct FakePods {
    replies: Mutex<HashMap<EndpointAddr, Reply>>,
    sent: Mutex<Vec<Sent>>,
}

impl FakePods {
    pub fn script(&self, addr: EndpointAddr, reply: Reply) {
        self.replies.lock().unwrap().insert(addr, reply);
    }

    /// Every try that reached a pod (refused connections reached none), in order.
    pub fn sent(&self) -> Vec<Sent> {
        self.sent.lock().unwrap().clone()
    }

    /// How the pod at `addr` answers.
    fn reply(&self, addr: EndpointAddr) -> Reply {
        let replies = self.replies.lock().unwrap();
        replies
            .get(&addr)
            .copied()
            .unwrap_or(Reply::Status(StatusCode::OK))
    }
}

impl Upstream for FakePods {
    async fn send(
        &self,
        addr: EndpointAddr,
        _settings: &ConnSettings,
        slot: &mut Option<Request<UpstreamBody>>,
    ) -> Result<Response<ProxyBody>, TryError> {
        let reply = self.reply(addr);
        if reply == Reply::Refuse {
            let source = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
            return Err(TryError::Connect(ConnectError::Tcp { addr, source }));
        }
        // As HTTP/1.1 does, the request stays in its slot (borrowed, not taken).
        let Some(request) = slot.as_ref() else {
            return Err(TryError::NotSent(UpstreamError::Http1(h1::Error::Closed)));
        };
        self.sent.lock().unwrap().push(Sent {
            addr,
            method: request.method().clone(),
            path: request.uri().path().to_owned(),
            headers: request.headers().clone(),
        });
        match reply {
            Reply::Status(status) => {
                let mut response = Response::new(ProxyBody::full(Bytes::from(addr.to_string())));
                *response.status_mut() = status;
                Ok(response)
            }
            Reply::Reset | Reply::Refuse => {
                Err(TryError::Sent(UpstreamError::Http1(h1::Error::Closed)))
            }
        }
    }
}
