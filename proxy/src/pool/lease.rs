//! [`Lease`]: one request's hold on a pooled connection.

use std::sync::Arc;

use hyper::client::conn::http2;

use super::endpoint::{EndpointPool, Http1Conn};
use crate::h1;
use crate::request::UpstreamBody;

#[derive(Debug)]
pub(super) enum LeaseKind {
    Http1(Box<Http1Conn>),
    Http2(http2::SendRequest<UpstreamBody>),
}

/// A connection checked out for one request. [`Lease::release`] returns an HTTP/1.1
/// connection to its pool once the response was read to its end; dropping the lease
/// instead discards the connection (its state is unknown: a response was cut short).
/// An HTTP/2 lease only counts the stream; the connection itself stays shared.
#[derive(Debug)]
pub struct Lease {
    pool: Arc<EndpointPool>,
    kind: Option<LeaseKind>,
}

/// The sender to use for the request, borrowed from a [`Lease`].
#[derive(Debug)]
pub enum Sender<'a> {
    Http1(&'a mut h1::Conn),
    Http2(&'a mut http2::SendRequest<UpstreamBody>),
}

impl Lease {
    pub(super) fn new(pool: Arc<EndpointPool>, kind: LeaseKind) -> Self {
        if let LeaseKind::Http2(_) = kind {
            pool.h2_stream_started();
        }
        Lease {
            pool,
            kind: Some(kind),
        }
    }

    /// The endpoint this connection goes to.
    pub fn pool(&self) -> &Arc<EndpointPool> {
        &self.pool
    }

    pub fn sender(&mut self) -> Sender<'_> {
        match self.kind.as_mut() {
            Some(LeaseKind::Http1(conn)) => Sender::Http1(&mut conn.conn),
            Some(LeaseKind::Http2(sender)) => Sender::Http2(sender),
            None => unreachable!("a lease holds its connection until released or dropped"),
        }
    }

    /// The HTTP/1.1 connection, while the lease holds one.
    pub fn http1_conn(&mut self) -> Option<&mut h1::Conn> {
        match self.kind.as_mut() {
            Some(LeaseKind::Http1(conn)) => Some(&mut conn.conn),
            _ => None,
        }
    }

    /// The response was read to its end: the connection can carry another request.
    pub fn release(mut self) {
        match self.kind.take() {
            Some(LeaseKind::Http1(conn)) => self.pool.put_back(conn),
            Some(LeaseKind::Http2(_)) => self.pool.h2_stream_ended(),
            None => {}
        }
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        match self.kind.take() {
            Some(LeaseKind::Http1(_)) => self.pool.discard(),
            Some(LeaseKind::Http2(_)) => self.pool.h2_stream_ended(),
            None => {}
        }
    }
}
