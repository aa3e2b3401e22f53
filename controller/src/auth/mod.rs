//! Who may subscribe to the discovery stream (docs/security.md). Every stream must
//! carry `authorization: Bearer <token>`, a projected ServiceAccount token for our
//! audience; the apiserver's TokenReview API says whose it is, and only the
//! ServiceAccounts named by `--allowed-service-account` are admitted.
//!
//! Where to start: [`mod@decide`] is the pure part (parse the metadata, judge a review);
//! [`Authenticator`] adds the I/O at the edge (a [`TokenReviewer`], the apiserver in
//! production, a fake in tests) and a short cache so a fleet of reconnecting proxies
//! costs one review per token, not one per attempt.

pub mod decide;
pub mod injected;
mod pods;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use k8s_openapi::api::authentication::v1::{TokenReview, TokenReviewSpec};
use kube::api::PostParams;
use tonic::Status;

pub use decide::{
    Outcome, Pod, PodClaims, Policy, Review, ServiceAccount, Verdict, bearer_token, decide, pod_of,
};
pub use injected::{KubePods, PodFacts, PodLookup};
pub use pods::PodAuthenticator;

/// The audience proxies' tokens must be minted for (the chart's projected volume).
pub const DEFAULT_AUDIENCE: &str = "fairway";
/// How long a verdict is reused. Short against the chart's 600 s tokens, so a deleted
/// ServiceAccount or a revoked token stops being admitted within this window.
pub const CACHE_TTL: Duration = Duration::from_secs(30);
/// Distinct tokens remembered at once: one per proxy is the steady state, so this covers
/// a thousand-node fleet twice over while bounding what garbage tokens can cost.
pub const CACHE_ENTRIES: usize = 2048;
/// TokenReviews in flight at once: a flood of distinct tokens must not become a flood
/// of apiserver requests. Others wait their turn (within [`REVIEW_TIMEOUT`]).
pub const MAX_CONCURRENT_REVIEWS: usize = 32;
/// How long a stream waits for its review, queueing included; past it the proxy gets
/// `UNAVAILABLE` and retries with backoff.
pub const REVIEW_TIMEOUT: Duration = Duration::from_secs(10);

/// How streams are authenticated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AuthConfig {
    /// Every stream is admitted (`--no-auth`: the demo, static-dir runs, tests without
    /// an apiserver).
    Disabled,
    /// Bearer tokens, reviewed by the apiserver, judged by this policy.
    TokenReview(Policy),
}

/// Why a TokenReview could not be made.
#[derive(Debug, thiserror::Error)]
pub enum ReviewError {
    #[error("creating the TokenReview failed: {0}")]
    Create(#[source] kube::Error),
    #[error("the TokenReview came back without a status")]
    NoStatus,
    #[error("no TokenReview answer within {0:?} (apiserver slow, or too many reviews queued)")]
    Timeout(Duration),
}

/// Asks whose a token is. The seam between the policy and the apiserver.
pub trait TokenReviewer: Send + Sync + fmt::Debug {
    fn review<'a>(
        &'a self,
        token: &'a str,
        audience: &'a str,
    ) -> BoxFuture<'a, Result<Review, ReviewError>>;
}

/// The apiserver's TokenReview API (needs `create` on `tokenreviews.authentication.k8s.io`).
#[derive(Clone)]
pub struct KubeReviewer {
    api: kube::Api<TokenReview>,
}

impl fmt::Debug for KubeReviewer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KubeReviewer").finish_non_exhaustive()
    }
}

impl KubeReviewer {
    pub fn new(client: kube::Client) -> Self {
        KubeReviewer {
            api: kube::Api::all(client),
        }
    }
}

impl TokenReviewer for KubeReviewer {
    fn review<'a>(
        &'a self,
        token: &'a str,
        audience: &'a str,
    ) -> BoxFuture<'a, Result<Review, ReviewError>> {
        Box::pin(async move {
            let request = TokenReview {
                spec: TokenReviewSpec {
                    token: token.to_owned(),
                    audiences: Some(vec![audience.to_owned()]),
                },
                ..TokenReview::default()
            };
            let answer = (self.api.create(&PostParams::default(), &request).await)
                .map_err(ReviewError::Create)?;
            let status = answer.status.ok_or(ReviewError::NoStatus)?;
            let user = status.user.unwrap_or_default();
            let pod = user
                .extra
                .as_ref()
                .and_then(|extra| PodClaims::from_extra(|key| extra.get(key).map(Vec::as_slice)));
            Ok(Review {
                authenticated: status.authenticated.unwrap_or(false),
                username: user.username.unwrap_or_default(),
                pod,
                audiences: status.audiences.unwrap_or_default(),
                error: status.error.filter(|e| !e.is_empty()),
            })
        })
    }
}

/// A token's cache key: its SHA-256, so the cache never holds a usable token.
type TokenHash = [u8; 32];

fn token_hash(token: &str) -> TokenHash {
    let digest = ring::digest::digest(&ring::digest::SHA256, token.as_bytes());
    let mut key = [0; 32];
    key.copy_from_slice(digest.as_ref());
    key
}

/// Recent verdicts (or reviews) by token hash, each for [`CACHE_TTL`].
#[derive(Debug)]
struct Cache<V = Verdict> {
    entries: Mutex<HashMap<TokenHash, (V, Instant)>>,
}

impl<V> Default for Cache<V> {
    fn default() -> Self {
        Cache {
            entries: Mutex::default(),
        }
    }
}

impl<V: Clone> Cache<V> {
    fn get(&self, key: &TokenHash, now: Instant) -> Option<V> {
        let entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        let (verdict, expires) = entries.get(key)?;
        (now < *expires).then(|| verdict.clone())
    }

    fn put(&self, key: TokenHash, verdict: V, now: Instant) {
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        if entries.len() >= CACHE_ENTRIES {
            entries.retain(|_, (_, expires)| now < *expires);
        }
        if entries.len() >= CACHE_ENTRIES {
            // Still full of live entries (a flood of distinct tokens): forget them all
            // rather than grow; the cost is one review per real proxy.
            entries.clear();
        }
        entries.insert(key, (verdict, now + CACHE_TTL));
    }
}

/// Admits or refuses discovery streams.
#[derive(Debug)]
pub struct Authenticator {
    mode: Mode,
}

#[derive(Debug)]
enum Mode {
    Disabled,
    TokenReview {
        policy: Policy,
        reviewer: Arc<dyn TokenReviewer>,
        /// Reads the pods of tokens `policy.admit_injected` may admit.
        pods: Option<Arc<dyn PodLookup>>,
        cache: Cache,
        in_flight: tokio::sync::Semaphore,
    },
}

impl Authenticator {
    /// Admits every stream.
    pub fn disabled() -> Self {
        Authenticator {
            mode: Mode::Disabled,
        }
    }

    /// Reviews tokens with `reviewer` and judges them by `policy`.
    pub fn token_review(policy: Policy, reviewer: Arc<dyn TokenReviewer>) -> Self {
        Authenticator {
            mode: Mode::TokenReview {
                policy,
                reviewer,
                pods: None,
                cache: Cache::default(),
                in_flight: tokio::sync::Semaphore::new(MAX_CONCURRENT_REVIEWS),
            },
        }
    }

    /// Reads pods with `pods` to admit injected proxies (`Policy::admit_injected`).
    pub fn with_pods(mut self, lookup: Arc<dyn PodLookup>) -> Self {
        if let Mode::TokenReview { pods, .. } = &mut self.mode {
            *pods = Some(lookup);
        }
        self
    }

    pub fn is_enabled(&self) -> bool {
        matches!(self.mode, Mode::TokenReview { .. })
    }

    /// Judges a stream by its `authorization` metadata. `Ok(None)`: authentication is
    /// off. The outcome is for the metric; the `Status` is what the proxy gets.
    pub async fn admit(
        &self,
        authorization: Option<&[u8]>,
    ) -> (Outcome, Result<Option<ServiceAccount>, Status>) {
        let Mode::TokenReview {
            policy,
            reviewer,
            pods,
            cache,
            in_flight,
        } = &self.mode
        else {
            return (Outcome::unauthenticated_allowed, Ok(None));
        };
        let token = match bearer_token(authorization) {
            Ok(token) => token,
            Err(verdict) => return (verdict.outcome(), to_result(verdict)),
        };
        let key = token_hash(token);
        let verdict = match cache.get(&key, Instant::now()) {
            Some(verdict) => verdict,
            None => match review(reviewer.as_ref(), in_flight, token, &policy.audience).await {
                Ok(review) => {
                    let verdict = match decide(&review, policy) {
                        Verdict::IfInjected(account, pod) => {
                            match lookup(pods.as_deref(), in_flight, &pod).await {
                                Ok(found) => injected::judge(account, pod, found.as_ref()),
                                Err(e) => {
                                    tracing::warn!(%pod, error = %e, "cannot read a subscribing proxy's pod");
                                    let message = format!(
                                        "the controller cannot read the pod {pod} right now ({e}); retry shortly"
                                    );
                                    return (
                                        Outcome::review_failed,
                                        Err(Status::unavailable(message)),
                                    );
                                }
                            }
                        }
                        verdict => verdict,
                    };
                    cache.put(key, verdict.clone(), Instant::now());
                    verdict
                }
                Err(e) => {
                    // Not cached: the next attempt should ask again.
                    tracing::warn!(error = %e, "cannot review a proxy's token");
                    return (
                        Outcome::review_failed,
                        Err(Status::unavailable(format!(
                            "the controller cannot verify tokens right now ({e}); retry shortly"
                        ))),
                    );
                }
            },
        };
        (verdict.outcome(), to_result(verdict))
    }
}

/// One review, waiting for a slot among [`MAX_CONCURRENT_REVIEWS`], all within
/// [`REVIEW_TIMEOUT`].
async fn review(
    reviewer: &dyn TokenReviewer,
    in_flight: &tokio::sync::Semaphore,
    token: &str,
    audience: &str,
) -> Result<Review, ReviewError> {
    let reviewed = tokio::time::timeout(REVIEW_TIMEOUT, async {
        // Never closed, so acquiring only fails if it waits forever: the timeout's job.
        let _slot = in_flight.acquire().await;
        reviewer.review(token, audience).await
    });
    reviewed
        .await
        .map_err(|_| ReviewError::Timeout(REVIEW_TIMEOUT))?
}

/// A bound token's pod, read within [`REVIEW_TIMEOUT`] and the reviews' concurrency.
async fn lookup(
    pods: Option<&dyn PodLookup>,
    in_flight: &tokio::sync::Semaphore,
    pod: &Pod,
) -> Result<Option<PodFacts>, LookupError> {
    let pods = pods.ok_or(LookupError::Off)?;
    let read = tokio::time::timeout(REVIEW_TIMEOUT, async {
        let _slot = in_flight.acquire().await;
        pods.facts(pod).await
    });
    match read.await {
        Ok(found) => found.map_err(LookupError::Get),
        Err(_) => Err(LookupError::Timeout(REVIEW_TIMEOUT)),
    }
}

/// Why a subscribing proxy's pod could not be read.
#[derive(Debug, thiserror::Error)]
pub enum LookupError {
    #[error("no pod reader configured")]
    Off,
    #[error("reading the pod failed: {0}")]
    Get(#[source] kube::Error),
    #[error("no answer within {0:?}")]
    Timeout(Duration),
}

fn to_result(verdict: Verdict) -> Result<Option<ServiceAccount>, Status> {
    match verdict {
        Verdict::Admit(account) | Verdict::AdmitInjected(account, _) => Ok(Some(account)),
        Verdict::IfInjected(account, pod) => Err(Status::permission_denied(format!(
            "ServiceAccount {account} (pod {pod}) was not judged"
        ))),
        Verdict::Unauthenticated(_, message) => Err(Status::unauthenticated(message)),
        Verdict::Forbidden(message) => Err(Status::permission_denied(message)),
    }
}
