//! Who may subscribe to the discovery stream, against the real kube-apiserver: tokens
//! minted by the TokenRequest API are reviewed with the TokenReview API; only the
//! allowed ServiceAccount's token for the `fairway` audience is admitted, and every
//! refusal carries the exact gRPC code and is counted. A proxy refused after it had a
//! table keeps serving it; TLS certificates rotate on disk without a restart (tls.rs).
//!
//! The cluster is tests/src/cluster.rs's (built on first use; a missing Go toolchain or
//! kubectl fails with instructions, nothing skips).

mod injected;
mod process;
mod support;
mod tls;

use std::sync::Arc;

use fairway_controller::auth::Authenticator;
use fairway_tests::controller::Security;
use fairway_tests::eventually;
use support::{AUDIENCE, PROXY_SA, Proxy, Setup, WAIT, auth_count, open};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_allowed_service_account_with_our_audience_is_admitted() {
    let setup = Setup::new("auth-tokens").await;
    let proxy_uid = setup.service_account(PROXY_SA).await;
    setup.service_account("orders").await;
    let controller = setup
        .controller(Security {
            auth: setup.authenticator(),
            ..Security::default()
        })
        .await;
    let endpoint = controller.endpoint.clone();

    let valid = setup.token(PROXY_SA, AUDIENCE).await;
    open(&endpoint, None, Some(&valid))
        .await
        .unwrap_or_else(|s| panic!("the proxy's own token must be admitted, got {s:?}"));

    let other_sa = setup.token("orders", AUDIENCE).await;
    let refused = open(&endpoint, None, Some(&other_sa))
        .await
        .expect_err("orders is not a proxy");
    assert_eq!(
        refused.code(),
        tonic::Code::PermissionDenied,
        "a valid token of another ServiceAccount: {refused:?}"
    );
    assert!(
        refused.message().contains("orders") && refused.message().contains(PROXY_SA),
        "the refusal names who asked and who is allowed: {}",
        refused.message()
    );

    let unauthenticated = [
        ("another audience", setup.token(PROXY_SA, "vault").await),
        (
            "an expired token",
            setup.expired_token(PROXY_SA, &proxy_uid),
        ),
        ("garbage", "not-a-token".to_owned()),
    ];
    for (what, token) in &unauthenticated {
        let refused = open(&endpoint, None, Some(token)).await.expect_err(what);
        assert_eq!(
            refused.code(),
            tonic::Code::Unauthenticated,
            "{what} must be refused as unauthenticated: {refused:?}"
        );
    }
    let refused = open(&endpoint, None, None).await.expect_err("no token");
    assert_eq!(refused.code(), tonic::Code::Unauthenticated, "{refused:?}");
    assert!(
        refused.message().contains("authorization"),
        "says what is missing: {}",
        refused.message()
    );

    let metrics = controller.metrics_text();
    assert!(auth_count(&metrics, "admitted") >= 1, "{metrics}");
    assert_eq!(auth_count(&metrics, "forbidden"), 1, "{metrics}");
    assert_eq!(
        auth_count(&metrics, "invalid_token"),
        3,
        "another audience, expired, garbage: {metrics}"
    );
    assert_eq!(auth_count(&metrics, "missing_token"), 1, "{metrics}");
    controller.stop().await;
}

/// The expired token is refused for its expiry, not for a flaw in how it was made: the
/// same recipe with a future expiry is admitted. Guards the test above against passing
/// for the wrong reason.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_expired_token_is_refused_for_its_expiry() {
    let setup = Setup::new("auth-expiry").await;
    let uid = setup.service_account(PROXY_SA).await;
    let reviewer = setup.authenticator();
    let expired = setup.expired_token(PROXY_SA, &uid);
    let (outcome, result) = reviewer
        .admit(Some(format!("Bearer {expired}").as_bytes()))
        .await;
    let status = result.expect_err("expired");
    assert!(
        status.message().contains("expired"),
        "the apiserver's reason is the expiry ({outcome:?}): {}",
        status.message()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_proxy_keeps_serving_its_last_table() {
    let setup = Setup::new("auth-stable").await;
    setup.service_account(PROXY_SA).await;
    setup.route().await;
    let addr = std::net::SocketAddr::from((
        [127, 0, 0, 1],
        fairway_tests::cluster::free_port().unwrap_or_else(|e| panic!("{e}")),
    ));
    let security = |auth: Arc<Authenticator>| Security {
        auth,
        tls: None,
        addr,
        drain_audience: None,
        drain_peers: Vec::new(),
    };
    let first = setup.controller(security(setup.authenticator())).await;

    let dir = tempfile::tempdir().expect("tempdir");
    let token_file = dir.path().join("token");
    let valid = setup.token(PROXY_SA, AUDIENCE).await;
    support::write_atomically(&token_file, valid.as_bytes());
    let proxy = Proxy::start(&[
        format!("--controller=http://{addr}"),
        "--controller-plaintext".to_owned(),
        format!("--controller-token-file={}", token_file.display()),
        "--id=auth-stable-proxy".to_owned(),
        "--node=test-node".to_owned(),
        "--log-format=text".to_owned(),
    ])
    .await;
    proxy
        .serves("the admitted proxy to serve the table routing orders.shop")
        .await;

    // The controller goes away; its successor refuses the proxy's (now broken) token.
    first.stop().await;
    support::write_atomically(&token_file, b"not-a-token");
    let second = setup.controller(security(setup.authenticator())).await;
    eventually(
        WAIT,
        "the new controller to refuse the proxy's token",
        || {
            let metrics = second.metrics_text();
            async move { (auth_count(&metrics, "invalid_token") >= 1).then_some(()) }
        },
    )
    .await;
    proxy
        .serves("the refused proxy to keep serving its last table")
        .await;
    let ready = support::get(proxy.admin, "admin", "/ready").await;
    assert_eq!(
        ready.map(|(code, _)| code),
        Some(200),
        "a refused proxy with a table stays ready"
    );

    // A rotated token is read on the next reconnect: no restart.
    support::write_atomically(&token_file, valid.as_bytes());
    eventually(
        WAIT,
        "the proxy to be admitted with its rotated token",
        || {
            let metrics = second.metrics_text();
            async move { (auth_count(&metrics, "admitted") >= 1).then_some(()) }
        },
    )
    .await;
    let id = "auth-stable-proxy";
    eventually(WAIT, "the proxy to be connected again", || {
        let connected = second.proxies.list().iter().any(|p| p.id == id);
        async move { connected.then_some(()) }
    })
    .await;
    proxy.serves("the readmitted proxy to route").await;
    proxy.stop().await;
    second.stop().await;
}
