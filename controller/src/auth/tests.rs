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
        admit_injected: false,
    }
}

fn review(username: &str, audiences: &[&str]) -> Review {
    Review {
        authenticated: true,
        username: username.to_owned(),
        audiences: audiences.iter().map(|a| (*a).to_owned()).collect(),
        error: None,
        pod: None,
    }
}

fn bound(username: &str, audiences: &[&str], pod: &str) -> Review {
    Review {
        pod: Some(PodClaims {
            name: pod.to_owned(),
            uid: format!("uid-{pod}"),
        }),
        ..review(username, audiences)
    }
}

#[test]
fn pod_claims_need_exactly_one_nonempty_value_each() {
    let extra = std::collections::BTreeMap::from([
        (decide::POD_NAME_CLAIM, vec!["web-1".to_owned()]),
        (decide::POD_UID_CLAIM, vec!["u-1".to_owned()]),
    ]);
    let claims = PodClaims::from_extra(|k| extra.get(k).map(Vec::as_slice));
    assert_eq!(
        claims,
        Some(PodClaims {
            name: "web-1".into(),
            uid: "u-1".into()
        })
    );
    let two = std::collections::BTreeMap::from([
        (decide::POD_NAME_CLAIM, vec!["a".to_owned(), "b".to_owned()]),
        (decide::POD_UID_CLAIM, vec!["u".to_owned()]),
    ]);
    assert_eq!(
        PodClaims::from_extra(|k| two.get(k).map(Vec::as_slice)),
        None,
        "two pod names: not a bound token we understand"
    );
    assert_eq!(PodClaims::from_extra(|_| None), None, "an unbound token");
}

#[test]
fn any_service_account_names_its_own_pod_but_only_with_a_bound_token_of_our_audience() {
    let pod = pod_of(
        &bound("system:serviceaccount:shop:default", &["fairway"], "web-1"),
        "fairway",
    );
    assert_eq!(
        pod,
        Ok(Pod {
            namespace: "shop".into(),
            name: "web-1".into(),
            uid: "uid-web-1".into()
        }),
        "the namespace comes from the ServiceAccount, the pod from the claims"
    );
    let unbound = pod_of(
        &review("system:serviceaccount:shop:default", &["fairway"]),
        "fairway",
    );
    assert!(
        matches!(unbound, Err(Verdict::Forbidden(_))),
        "a token bound to no pod may not ask: {unbound:?}"
    );
    let other = pod_of(
        &bound("system:serviceaccount:shop:default", &["api"], "web-1"),
        "fairway",
    );
    assert_eq!(other.map_err(|v| v.outcome()), Err(Outcome::wrong_audience));
    let user = pod_of(&bound("alice", &["fairway"], "web-1"), "fairway");
    assert!(matches!(user, Err(Verdict::Forbidden(_))), "{user:?}");
    let invalid = pod_of(&Review::default(), "fairway");
    assert_eq!(
        invalid.map_err(|v| v.outcome()),
        Err(Outcome::invalid_token)
    );
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
                "web-1" => bound("system:serviceaccount:shop:default", &[audience], "web-1"),
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

#[tokio::test]
async fn drain_requests_name_their_pod_and_are_cached() {
    let reviewer = Arc::new(FakeReviewer::default());
    let auth = PodAuthenticator::new("fairway".into(), reviewer.clone());
    let (outcome, pod) = auth.identify(Some(b"Bearer web-1")).await;
    assert_eq!(outcome, Outcome::admitted);
    assert_eq!(
        pod.map(|p| p.to_string()).ok().as_deref(),
        Some("shop/web-1")
    );
    let _ = auth.identify(Some(b"Bearer web-1")).await;
    assert_eq!(reviewer.calls.load(Ordering::SeqCst), 1, "cached");
    let (_, unbound) = auth.identify(Some(b"Bearer orders")).await;
    assert_eq!(
        unbound.map_err(|s| s.code()),
        Err(tonic::Code::PermissionDenied),
        "a token bound to no pod"
    );
    let (_, none) = auth.identify(None).await;
    assert_eq!(
        none.map_err(|s| s.code()),
        Err(tonic::Code::Unauthenticated)
    );
    let failing = PodAuthenticator::new(
        "fairway".into(),
        Arc::new(FakeReviewer {
            fail: true,
            ..FakeReviewer::default()
        }),
    );
    let (outcome, down) = failing.identify(Some(b"Bearer web-1")).await;
    assert_eq!(outcome, Outcome::review_failed);
    assert_eq!(down.map_err(|s| s.code()), Err(tonic::Code::Unavailable));
}
