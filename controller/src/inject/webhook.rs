//! The mutating admission webhook: an `AdmissionReview` for a Pod in, the same review
//! answered with a JSON patch out. Pure here; `serve` (below) is the HTTPS edge.
//!
//! It never refuses a pod: an object it cannot read is allowed unchanged, one it cannot
//! inject is allowed with a warning and only the reason added (annotation
//! `fairway.dev/inject-error`), as `failurePolicy: Ignore` lets pods through when the
//! webhook is down. Fairway must never be the reason a pod cannot start. What it injects
//! it marks (`fairway.dev/injected`, label and annotation), so the controller can tell
//! a pod the webhook missed (`events`).

use kube::core::DynamicObject;
use kube::core::admission::{AdmissionRequest, AdmissionResponse, AdmissionReview};
use serde_json::Value;

use super::{Asked, Template, inject, mark, mark_refused};

#[derive(Debug, thiserror::Error)]
pub enum ReviewError {
    #[error("the body is not an AdmissionReview: {0}")]
    Parse(#[source] serde_json::Error),
    #[error("the AdmissionReview has no request")]
    NoRequest,
}

/// Answers one AdmissionReview (the request body) with the review to send back, and the
/// namespace of the pod when it was injected (which then needs the controller's CA there,
/// `publish`).
pub fn review(
    body: &[u8],
    template: &Template,
) -> Result<(AdmissionReview<DynamicObject>, Option<String>), ReviewError> {
    let review: AdmissionReview<DynamicObject> =
        serde_json::from_slice(body).map_err(ReviewError::Parse)?;
    let request: AdmissionRequest<DynamicObject> =
        review.try_into().map_err(|_| ReviewError::NoRequest)?;
    let response = answer(&request, template);
    let injected = response
        .patch
        .is_some()
        .then(|| request.namespace.clone())
        .flatten();
    Ok((response.into_review(), injected))
}

fn answer(request: &AdmissionRequest<DynamicObject>, template: &Template) -> AdmissionResponse {
    let response = AdmissionResponse::from(request);
    let Some(object) = &request.object else {
        return response;
    };
    let Ok(pod) = serde_json::to_value(object) else {
        return response;
    };
    let asked = Asked::of(pod["metadata"]["annotations"].as_object());
    let mut patched = pod.clone();
    let Some(spec) = patched.get_mut("spec") else {
        return response;
    };
    let name = pod_name(&pod, request);
    let mut response = response;
    match inject(spec, &asked, template) {
        Ok(done) if done.added.is_empty() => response,
        Ok(done) => {
            tracing::info!(pod = %name, added = ?done.added, "injected");
            mark(&mut patched["metadata"], asked.wanted, &done);
            let warnings = done.warnings;
            response = match with_patch(response, &pod, &patched, &name) {
                Some(patched) => patched,
                None => return AdmissionResponse::from(request),
            };
            if !warnings.is_empty() {
                response.warnings = Some(warnings.into_iter().map(with_prefix).collect());
            }
            response
        }
        Err(error) => {
            tracing::warn!(pod = %name, %error, "not injected");
            // Only the reason, on the pod as it came (the spec above may be half
            // edited): the controller's NotInjected Event quotes it.
            let mut refused = pod.clone();
            mark_refused(&mut refused["metadata"], &error);
            let mut response = with_patch(response, &pod, &refused, &name)
                .unwrap_or_else(|| AdmissionResponse::from(request));
            response.warnings = Some(vec![with_prefix(format!("not injected: {error}"))]);
            response
        }
    }
}

/// `response` with the patch from `pod` to `patched`; `None` if it cannot be written.
fn with_patch(
    response: AdmissionResponse,
    pod: &Value,
    patched: &Value,
    name: &str,
) -> Option<AdmissionResponse> {
    let patch = json_patch::diff(pod, patched);
    match response.with_patch(patch) {
        Ok(patched) => Some(patched),
        Err(error) => {
            tracing::warn!(pod = %name, %error, "serializing the injection patch");
            None
        }
    }
}

fn with_prefix(warning: String) -> String {
    format!("fairway: {warning}")
}

/// A pod from a Deployment has no name yet at admission: its generateName says whose.
fn pod_name(pod: &Value, request: &AdmissionRequest<DynamicObject>) -> String {
    let meta = &pod["metadata"];
    let name = meta["name"]
        .as_str()
        .or(meta["generateName"].as_str())
        .unwrap_or("");
    format!("{}/{}", request.namespace.as_deref().unwrap_or(""), name)
}

#[cfg(test)]
#[path = "webhook_tests.rs"]
mod tests;
