//! The controller as `fairway-controller` wires it (`process::start`: flags, the
//! configuration check, TLS files, the TokenReview authenticator on its own client, the
//! admin server), not just its parts: a proxy over https with its token is admitted, a
//! garbage token is refused, and `/metrics` on the admin port counts both.

use clap::Parser;
use fairway_tests::eventually;
use tonic::transport::{Certificate, ClientTlsConfig};

use crate::support::{AUDIENCE, PROXY_SA, Proxy, Setup, WAIT, auth_count, get, open};
use crate::tls::{Pki, server_files, write};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_wired_controller_admits_the_proxy_over_tls_and_counts_refusals() {
    fairway_controller::process::install_crypto_provider();
    let setup = Setup::new("auth-process").await;
    setup.service_account(PROXY_SA).await;
    setup.route().await;
    let pki = Pki::new();
    let dir = server_files(&pki);
    let path = |name: &str| dir.path().join(name);
    write(&path("token"), &setup.token(PROXY_SA, AUDIENCE).await);

    let args = fairway_controller::Args::parse_from([
        "fairway-controller".to_owned(),
        "--grpc-addr=127.0.0.1:0".to_owned(),
        "--admin-addr=127.0.0.1:0".to_owned(),
        format!("--namespace={}", setup.ns),
        format!("--allowed-service-account={}/{PROXY_SA}", setup.ns),
        format!("--tls-cert-file={}", path("tls.crt").display()),
        format!("--tls-key-file={}", path("tls.key").display()),
        "--log-format=text".to_owned(),
    ]);
    let config = fairway_controller::Config::from_args(args);
    let running =
        fairway_controller::process::start_with_client(config, Some(setup.client.clone()))
            .await
            .unwrap_or_else(|e| panic!("start the controller: {e}"));
    let (grpc, admin) = (running.grpc_addr(), running.admin_addr());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let serving = tokio::spawn(running.serve(async move {
        let _ = stopped.await;
    }));

    let endpoint = format!("https://{grpc}");
    let proxy = Proxy::start(&[
        format!("--controller={endpoint}"),
        format!("--controller-ca-file={}", path("ca.crt").display()),
        format!("--controller-token-file={}", path("token").display()),
        "--id=auth-process-proxy".to_owned(),
        "--node=test-node".to_owned(),
        "--log-format=text".to_owned(),
    ])
    .await;
    proxy
        .serves("the proxy to get its table from the wired controller")
        .await;

    let tls = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(pki.ca.pem()));
    let refused = open(&endpoint, Some(tls), Some("not-a-token"))
        .await
        .expect_err("garbage");
    assert_eq!(refused.code(), tonic::Code::Unauthenticated, "{refused:?}");

    eventually(
        WAIT,
        "/metrics to count the admission and the refusal",
        || async move {
            let (_, metrics) = get(admin, "admin", "/metrics").await?;
            (auth_count(&metrics, "admitted") >= 1 && auth_count(&metrics, "invalid_token") == 1)
                .then_some(())
        },
    )
    .await;
    proxy.stop().await;
    let _ = stop.send(());
    let stopped = serving.await.expect("the controller task");
    assert!(stopped.is_ok(), "a clean shutdown: {stopped:?}");
}
