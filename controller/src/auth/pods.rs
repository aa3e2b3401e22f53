//! Who asks about a drain: the pod whose projected ServiceAccount token comes with the
//! request (design.md section 10). Unlike Discovery, any ServiceAccount may ask, but
//! only about its own pod, so the answer is a [`Pod`], not an admission.
//!
//! The review is cached by token hash as Discovery's is: a rollout of hundreds of pods
//! is hundreds of tokens reviewed once each, and a hook retried by hand costs nothing.

use std::sync::Arc;
use std::time::Instant;

use tonic::Status;

use super::{
    Cache, MAX_CONCURRENT_REVIEWS, Outcome, Pod, TokenReviewer, Verdict, bearer_token, pod_of,
    review, token_hash,
};

/// Reviews drain requests' tokens and names their pod.
#[derive(Debug)]
pub struct PodAuthenticator {
    audience: String,
    reviewer: Arc<dyn TokenReviewer>,
    cache: Cache<super::Review>,
    in_flight: tokio::sync::Semaphore,
}

impl PodAuthenticator {
    /// Reviews tokens for `audience` with `reviewer` (the apiserver in production).
    pub fn new(audience: String, reviewer: Arc<dyn TokenReviewer>) -> Self {
        PodAuthenticator {
            audience,
            reviewer,
            cache: Cache::default(),
            in_flight: tokio::sync::Semaphore::new(MAX_CONCURRENT_REVIEWS),
        }
    }

    /// The pod behind an `authorization` value, or the status the caller gets:
    /// `UNAUTHENTICATED` (no token, not ours), `PERMISSION_DENIED` (not a pod's token),
    /// `UNAVAILABLE` (the apiserver did not answer). The outcome is for the log.
    pub async fn identify(&self, authorization: Option<&[u8]>) -> (Outcome, Result<Pod, Status>) {
        let token = match bearer_token(authorization) {
            Ok(token) => token,
            Err(verdict) => return (verdict.outcome(), Err(status(verdict))),
        };
        let key = token_hash(token);
        let reviewed = match self.cache.get(&key, Instant::now()) {
            Some(reviewed) => reviewed,
            None => {
                let answer = review(
                    self.reviewer.as_ref(),
                    &self.in_flight,
                    token,
                    &self.audience,
                )
                .await;
                match answer {
                    Ok(reviewed) => {
                        self.cache.put(key, reviewed.clone(), Instant::now());
                        reviewed
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot review a drain request's token");
                        return (
                            Outcome::review_failed,
                            Err(Status::unavailable(format!(
                                "the controller cannot verify tokens right now ({e})"
                            ))),
                        );
                    }
                }
            }
        };
        match pod_of(&reviewed, &self.audience) {
            Ok(pod) => (Outcome::admitted, Ok(pod)),
            Err(verdict) => (verdict.outcome(), Err(status(verdict))),
        }
    }
}

fn status(verdict: Verdict) -> Status {
    match verdict {
        Verdict::Admit(_) | Verdict::AdmitInjected(..) | Verdict::IfInjected(..) => {
            Status::internal("a pod's own question judged as a subscription")
        }
        Verdict::Unauthenticated(_, message) => Status::unauthenticated(message),
        Verdict::Forbidden(message) => Status::permission_denied(message),
    }
}
