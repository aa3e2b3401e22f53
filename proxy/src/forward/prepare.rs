//! A request made ready for the hop to pods: its body ready to send, its header fields
//! edited (hop-by-hop fields, `X-Forwarded-*`, the rule's header edits and rewrite).

use std::time::Instant;

use fairway_proto::model::Route;
use http::Request;
use http::header::HeaderValue;

use super::errors::ProxyError;
use super::filters;
use super::pick::EndGuard;
use crate::headers;
use crate::request::{RawFields as _, RequestBody, UpstreamBody};

/// The request as it goes to pods: its body ready to send (buffered when small and
/// idempotent, so it may be retried), its headers edited for the hop.
pub(super) async fn prepare(
    client: &HeaderValue,
    request: Request<RequestBody>,
    idempotent: bool,
    route: &Route,
    guard: &mut EndGuard,
    traced: bool,
) -> Result<Request<UpstreamBody>, ProxyError> {
    let (mut parts, body) = request.into_parts();
    // Extensions belong to the downstream connection (upgrades, header case).
    parts.extensions.clear();
    // A body still to be read (hyper's path) is the client's upload, not the pod's time.
    let uploading = matches!(body, RequestBody::Hyper(_));
    let mut body =
        body.into_upstream(idempotent)
            .await
            .map_err(|source| ProxyError::ClientBody {
                route: route.key.clone(),
                source,
            })?;
    if uploading {
        guard.started = Instant::now();
    }
    // The fast loop's raw fields go to the pod as they are (its map is empty) unless
    // something in them needs an edit, or an absolute-form target's authority replaces
    // their `Host`.
    // A traced request gets our `traceparent` per try: into the map with the rest.
    // A rule's header edits (RequestHeaderModifier) and URL rewrite are made in the map
    // too.
    let filters = guard.target.rule_filters.as_deref();
    let edits = filters.and_then(|f| f.request_headers.as_ref());
    let rewrite = filters.and_then(|f| f.rewrite.as_ref());
    let as_sent = !traced
        && edits.is_none()
        && rewrite.is_none()
        && body
            .fields()
            .is_some_and(|f| parts.uri.authority().is_none() && headers::raw_fields_pass(f));
    if as_sent {
        body.forward_raw_for(client.clone());
    } else {
        let raw = body.take_raw();
        let fields = raw.as_ref().map(|raw| &raw.fields);
        headers::edit_request(&mut parts.headers, fields, Some(client));
        if let Some(edits) = edits {
            headers::apply_edits(&mut parts.headers, edits);
        }
        if let Some(rewrite) = rewrite {
            filters::rewrite(&mut parts, guard.target.rule(), rewrite);
        }
    }
    Ok(Request::from_parts(parts, body))
}
