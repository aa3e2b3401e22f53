//! A rule's filters applied to a request and its answer: the URL rewrite the pod sees,
//! the response header edits the client sees, and the redirect a rule answers with
//! itself. What the new path and `Location` are is decided in `crate::route` (pure);
//! this puts them into the messages.

use std::sync::Arc;

use bytes::Bytes;
use fairway_proto::model::{HeaderEdits, Route, Rule, UrlRewrite};
use http::header::{CONTENT_LENGTH, HOST, HeaderValue, LOCATION};
use http::request::Parts;
use http::uri::{Authority, PathAndQuery};
use http::{Response, StatusCode, Uri};

use super::service::Answer;
use crate::headers;
use crate::response::ProxyBody;
use crate::route::{Origin, location, rewritten_path};

/// The answer of a redirect rule (`rule` of `route`) to a request for `uri`, sent for
/// `authority`. No pod is contacted.
pub(super) fn redirect(uri: &Uri, authority: &str, route: Arc<Route>, rule: usize) -> Answer {
    let matched = &route.rules[rule];
    let parsed = authority.parse::<Authority>().ok();
    let origin = Origin {
        scheme: uri.scheme_str().unwrap_or("http"),
        host: parsed.as_ref().map_or(authority, Authority::host),
        port: parsed.as_ref().and_then(Authority::port_u16),
        path_and_query: uri.path_and_query().map_or("/", PathAndQuery::as_str),
    };
    let response = match &matched.filters.redirect {
        Some(redirect) => {
            let status = StatusCode::from_u16(redirect.status).unwrap_or(StatusCode::FOUND);
            let location = location(redirect, matched, &origin);
            let mut response = Response::new(ProxyBody::full(Bytes::new()));
            *response.status_mut() = status;
            let headers = response.headers_mut();
            // A Location that is not a field value (a hand-made table) goes unsent.
            if let Ok(value) = HeaderValue::from_str(&location) {
                headers.insert(LOCATION, value);
            }
            headers.insert(CONTENT_LENGTH, HeaderValue::from_static("0"));
            response
        }
        // `Resolved::Redirect` names a redirect rule; a 500 if the table says otherwise.
        None => {
            let mut response = Response::new(ProxyBody::full(Bytes::new()));
            *response.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
            response
        }
    };
    Answer {
        response,
        route: Some(route),
        endpoint: None,
    }
}

/// Gives the pod `rewrite`'s host and path instead of the client's, for a request
/// `rule` matched. The target becomes origin-form, an absolute one's authority moving
/// to `Host` first, so the pod's writer and HTTP/2's `:authority` both see the new host.
pub(super) fn rewrite(parts: &mut Parts, rule: &Rule, rewrite: &UrlRewrite) {
    let path_and_query = parts.uri.path_and_query().map_or("/", PathAndQuery::as_str);
    let path = rewrite
        .path
        .as_ref()
        .map(|p| rewritten_path(rule, p, path_and_query));
    if let Some(authority) = parts.uri.authority()
        && let Ok(host) = HeaderValue::from_str(authority.as_str())
    {
        parts.headers.insert(HOST, host);
    }
    if let Some(host) = rewrite.hostname.as_deref()
        && let Ok(host) = HeaderValue::from_str(host)
    {
        parts.headers.insert(HOST, host);
    }
    let path = path.as_deref().unwrap_or(path_and_query);
    // A path that is not a valid target (a hand-made table) leaves the client's.
    if let Ok(uri) = Uri::try_from(path) {
        parts.uri = uri;
    }
}

/// Edits the pod's response headers for the client (`ResponseHeaderModifier`): an
/// HTTP/1.1 pod's raw fields move into the map first, where the edits apply.
pub(super) fn edit_response(response: &mut Response<ProxyBody>, edits: &HeaderEdits) {
    headers::materialize(response);
    headers::apply_edits(response.headers_mut(), edits);
}
