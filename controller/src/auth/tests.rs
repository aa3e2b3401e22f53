use std::collections::BTreeSet;
use std::sync::atomic::{AtomicUsize, Ordering};

use super::*;

fn sa(s: &str) -> ServiceAccount {
    s.parse().expect("namespace/name")
}

fn policy() -> Policy {
    Policy {
        audience: "fairway".to_owned(),
        allowed: BTreeSet::from([sa("fairway/fairway-proxy")]),
    }
}

fn review(username: &str, audiences: &[&str]) -> Review {
    Review {
        authenticated: true,
        username: username.to_owned(),
        audiences: audiences.iter().map(|a| (*a).to_owned()).collect(),
        error: None,
    }
}

#[test]
fn service_accounts_parse_and_print() {
    let account = sa("fairway/fairway-proxy");
    assert_eq!(account.to_string(), "fairway/fairway-proxy");
    assert_eq!(
        account.username(),
        "system:serviceaccount:fairway:fairway-proxy"
    );
    assert_eq!(
        ServiceAccount::from_username("system:serviceaccount:fairway:fairway-proxy"),
        Some(account)
    );
    for bad in ["fairway", "/x", "x/", "a/b/c", "a/b:c", ""] {
        assert!(bad.parse::<ServiceAccount>().is_err(), "{bad:?} is refused");
    }
    for user in [
        "alice",
        "system:serviceaccount:fairway",
        "system:serviceaccount::x",
        "system:serviceaccount:a:b:c",
    ] {
        assert_eq!(ServiceAccount::from_username(user), None, "{user:?}");
    }
}

#[test]
fn bearer_tokens_are_read_from_the_metadata() {
    assert_eq!(bearer_token(Some(b"Bearer abc.def")), Ok("abc.def"));
    assert_eq!(
        bearer_token(Some(b"bearer abc")),
        Ok("abc"),
        "scheme is case-insensitive"
    );
    let outcome = |value: Option<&[u8]>| bearer_token(value).map(|_| ()).map_err(|v| v.outcome());
    assert_eq!(outcome(None), Err(Outcome::missing_token));
    for bad in [
        &b"abc"[..],
        b"Basic abc",
        b"Bearer ",
        b"Bearer a b",
        b"Bearer \xff",
    ] {
        assert_eq!(outcome(Some(bad)), Err(Outcome::malformed), "{bad:?}");
    }
}

#[test]
fn an_allowed_service_account_for_our_audience_is_admitted() {
    let verdict = decide(
        &review("system:serviceaccount:fairway:fairway-proxy", &["fairway"]),
        &policy(),
    );
    assert_eq!(verdict, Verdict::Admit(sa("fairway/fairway-proxy")));
}

#[test]
fn another_service_account_is_forbidden() {
    let verdict = decide(
        &review("system:serviceaccount:shop:orders", &["fairway"]),
        &policy(),
    );
    assert_eq!(verdict.outcome(), Outcome::forbidden);
    let Verdict::Forbidden(message) = verdict else {
        unreachable!()
    };
    assert!(
        message.contains("shop/orders") && message.contains("fairway/fairway-proxy"),
        "the message names who asked and who is allowed: {message}"
    );
    let user = decide(&review("alice", &["fairway"]), &policy());
    assert_eq!(
        user.outcome(),
        Outcome::forbidden,
        "a user, even authenticated, is no proxy"
    );
}

#[test]
fn unauthenticated_and_foreign_audience_tokens_are_refused() {
    let rejected = Review {
        authenticated: false,
        error: Some("token has expired".to_owned()),
        ..Review::default()
    };
    let verdict = decide(&rejected, &policy());
    assert_eq!(verdict.outcome(), Outcome::invalid_token);
    assert!(
        matches!(&verdict, Verdict::Unauthenticated(_, m) if m.contains("token has expired")),
        "the apiserver's reason reaches the proxy: {verdict:?}"
    );
    let foreign = decide(
        &review("system:serviceaccount:fairway:fairway-proxy", &["vault"]),
        &policy(),
    );
    assert_eq!(
        foreign.outcome(),
        Outcome::wrong_audience,
        "a token for another audience is not ours to accept"
    );
    let none = decide(
        &review("system:serviceaccount:fairway:fairway-proxy", &[]),
        &policy(),
    );
    assert_eq!(none.outcome(), Outcome::wrong_audience);
}

/// A reviewer that answers from a table and counts the calls.
#[derive(Debug, Default)]
struct FakeReviewer {
    calls: AtomicUsize,
    fail: bool,
}

impl TokenReviewer for FakeReviewer {
    fn review<'a>(
        &'a self,
        token: &'a str,
        audience: &'a str,
    ) -> BoxFuture<'a, Result<Review, ReviewError>> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        Box::pin(async move {
            if self.fail {
                return Err(ReviewError::NoStatus);
            }
            Ok(match token {
                "proxy" => review("system:serviceaccount:fairway:fairway-proxy", &[audience]),
                "orders" => review("system:serviceaccount:shop:orders", &[audience]),
                _ => Review {
                    error: Some("invalid bearer token".to_owned()),
                    ..Review::default()
                },
            })
        })
    }
}

#[tokio::test]
async fn verdicts_map_to_grpc_codes_and_are_cached() {
    let reviewer = Arc::new(FakeReviewer::default());
    let auth = Authenticator::token_review(policy(), reviewer.clone());
    let (outcome, admitted) = auth.admit(Some(b"Bearer proxy")).await;
    assert_eq!(outcome, Outcome::admitted);
    assert_eq!(admitted.ok(), Some(Some(sa("fairway/fairway-proxy"))));
    let _ = auth.admit(Some(b"Bearer proxy")).await;
    assert_eq!(
        reviewer.calls.load(Ordering::SeqCst),
        1,
        "a reconnect within the TTL costs no second review"
    );

    let (outcome, refused) = auth.admit(Some(b"Bearer orders")).await;
    assert_eq!(outcome, Outcome::forbidden);
    assert_eq!(
        refused.map_err(|s| s.code()),
        Err(tonic::Code::PermissionDenied)
    );
    let (outcome, refused) = auth.admit(Some(b"Bearer garbage")).await;
    assert_eq!(outcome, Outcome::invalid_token);
    assert_eq!(
        refused.map_err(|s| s.code()),
        Err(tonic::Code::Unauthenticated)
    );
    let (outcome, refused) = auth.admit(None).await;
    assert_eq!(outcome, Outcome::missing_token);
    assert_eq!(
        refused.map_err(|s| s.code()),
        Err(tonic::Code::Unauthenticated)
    );
    assert_eq!(
        reviewer.calls.load(Ordering::SeqCst),
        3,
        "a missing token needs no review"
    );
}

#[tokio::test]
async fn a_failed_review_is_unavailable_and_not_cached() {
    let reviewer = Arc::new(FakeReviewer {
        fail: true,
        ..FakeReviewer::default()
    });
    let auth = Authenticator::token_review(policy(), reviewer.clone());
    for _ in 0..2 {
        let (outcome, result) = auth.admit(Some(b"Bearer proxy")).await;
        assert_eq!(outcome, Outcome::review_failed);
        assert_eq!(result.map_err(|s| s.code()), Err(tonic::Code::Unavailable));
    }
    assert_eq!(
        reviewer.calls.load(Ordering::SeqCst),
        2,
        "each attempt asks again"
    );
}

/// A reviewer that never answers.
#[derive(Debug)]
struct Hung;

impl TokenReviewer for Hung {
    fn review<'a>(&'a self, _: &'a str, _: &'a str) -> BoxFuture<'a, Result<Review, ReviewError>> {
        Box::pin(futures::future::pending())
    }
}

#[tokio::test(start_paused = true)]
async fn a_hung_apiserver_costs_a_bounded_wait() {
    let auth = Authenticator::token_review(policy(), Arc::new(Hung));
    let started = tokio::time::Instant::now();
    let (outcome, result) = auth.admit(Some(b"Bearer proxy")).await;
    assert_eq!(outcome, Outcome::review_failed);
    assert_eq!(result.map_err(|s| s.code()), Err(tonic::Code::Unavailable));
    assert_eq!(
        started.elapsed(),
        REVIEW_TIMEOUT,
        "the stream is answered when the review times out"
    );
}

#[tokio::test]
async fn disabled_admits_everyone() {
    let auth = Authenticator::disabled();
    let (outcome, result) = auth.admit(None).await;
    assert_eq!(outcome, Outcome::unauthenticated_allowed);
    assert_eq!(result.ok(), Some(None));
}

#[test]
fn the_cache_expires_and_stays_bounded() {
    let cache = Cache::default();
    let now = Instant::now();
    let verdict = Verdict::Admit(sa("a/b"));
    cache.put(token_hash("t"), verdict.clone(), now);
    assert_eq!(cache.get(&token_hash("t"), now), Some(verdict));
    assert_eq!(
        cache.get(&token_hash("t"), now + CACHE_TTL),
        None,
        "expired"
    );
    for i in 0..(CACHE_ENTRIES * 2) {
        cache.put(token_hash(&i.to_string()), Verdict::Admit(sa("a/b")), now);
    }
    let len = cache.entries.lock().expect("lock").len();
    assert!(len <= CACHE_ENTRIES, "bounded: {len}");
}
