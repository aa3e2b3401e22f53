//! The webhook's HTTPS edge: `POST /mutate` answers an AdmissionReview (`webhook`),
//! anything else is `404`. Its own port and certificate (the chart's, for the
//! controller Service's names), re-read when the files change, as the Discovery port's.

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;

use bytes::Bytes;
use futures::StreamExt as _;
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt as _, Full, Limited};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;

use super::Template;
use super::publish::CaPublisher;
use super::webhook::review;

/// The path the MutatingWebhookConfiguration names.
pub const PATH: &str = "/mutate";
/// Largest review read: a Pod is well under this; the apiserver's own limit is 3 MiB.
const MAX_BODY: usize = 4 << 20;

/// The webhook's TLS settings: the certificate's, and ALPN for the apiserver's client
/// (HTTP/2 or HTTP/1.1).
pub fn tls_config(base: &rustls::ServerConfig) -> Arc<rustls::ServerConfig> {
    let mut config = base.clone();
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Arc::new(config)
}

/// What each review needs: the template, and where to publish the CA (if anywhere).
#[derive(Debug)]
pub struct Injector {
    pub template: Template,
    pub publisher: Option<CaPublisher>,
}

/// Serves the webhook on `listener` until `shutdown`.
pub async fn serve(
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    injector: Arc<Injector>,
    shutdown: impl Future<Output = ()>,
) {
    let mut accepted = crate::tls::incoming(listener, tls);
    let builder = Arc::new(auto::Builder::new(TokioExecutor::new()));
    tokio::pin!(shutdown);
    loop {
        let stream = tokio::select! {
            () = &mut shutdown => return,
            next = accepted.next() => match next {
                Some(Ok(stream)) => stream,
                Some(Err(error)) => {
                    tracing::debug!(%error, "webhook connection failed");
                    continue;
                }
                None => return,
            },
        };
        let (builder, injector) = (Arc::clone(&builder), Arc::clone(&injector));
        tokio::spawn(async move {
            let service = service_fn(move |request| handle(request, Arc::clone(&injector)));
            if let Err(error) = builder
                .serve_connection(TokioIo::new(stream), service)
                .await
            {
                tracing::debug!(%error, "webhook connection ended");
            }
        });
    }
}

async fn handle(
    request: Request<Incoming>,
    injector: Arc<Injector>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    if request.method() != Method::POST || request.uri().path() != PATH {
        return Ok(plain(StatusCode::NOT_FOUND, "not found: POST /mutate\n"));
    }
    let body = match Limited::new(request.into_body(), MAX_BODY).collect().await {
        Ok(body) => body.to_bytes(),
        Err(error) => {
            let message = format!("reading the review: {error}\n");
            return Ok(plain(StatusCode::BAD_REQUEST, &message));
        }
    };
    match review(&body, &injector.template) {
        Ok((mut answer, injected)) => {
            if let (Some(namespace), Some(publisher)) = (injected, &injector.publisher)
                && let Err(error) = publisher.ensure(&namespace).await
            {
                // The pod is still injected: its proxy waits (not ready) until the CA
                // appears, and the warning says why.
                tracing::warn!(%namespace, %error, "cannot publish the controller's CA");
                if let Some(response) = answer.response.as_mut() {
                    let warning = format!("fairway: {error}");
                    response.warnings.get_or_insert_with(Vec::new).push(warning);
                }
            }
            let json = serde_json::to_vec(&answer).expect("a review serializes");
            let mut response = Response::new(Full::new(Bytes::from(json)));
            response.headers_mut().insert(
                http::header::CONTENT_TYPE,
                http::HeaderValue::from_static("application/json"),
            );
            Ok(response)
        }
        Err(error) => Ok(plain(StatusCode::BAD_REQUEST, &format!("{error}\n"))),
    }
}

fn plain(status: StatusCode, text: &str) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(text.to_owned())));
    *response.status_mut() = status;
    response
}
