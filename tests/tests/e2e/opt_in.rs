//! Scenario 15: a Namespace opted in to implicit Routes (`fairway.dev/implicit: enabled`
//! on the Namespace, issue 17): every Service in it is served by its DNS names with the
//! port, with no Route and no label on the Service, from the moment the label is set
//! until it is removed.

use fairway_tests::eventually;
use fairway_tests::objects::{State, endpoint};

use crate::world::{CONVERGE, Conn, POD_PORT, World, pod, pod_ip};

/// What the first proxy answers for `host`: status and the pod that answered.
async fn answer(w: &World, host: &str) -> (u16, Option<String>) {
    let mut conn = Conn::open(w.proxies[0].listen).await;
    let (status, pod, _) = conn.get(host, "/").await;
    (status, pod)
}

fn label(w: &World, value: &str) {
    let out = w.kubectl(&["label", "--overwrite", "namespace", &w.ns, value]);
    assert!(
        out.success,
        "kubectl label namespace {}: {}",
        w.ns, out.stderr
    );
}

pub async fn namespace_opt_in_serves_its_services() {
    let mut w = World::new("e2e-optin").await;
    let ip = pod_ip(12, 1);
    let _pod = pod("orders", &ip).await;
    w.create_service("orders", POD_PORT as i32).await;
    let slice = vec![endpoint(&ip, State::Ready)];
    w.create_slice("orders-a", "orders", POD_PORT as i32, slice)
        .await;
    w.start().await;
    let host = format!("orders.{}.svc.cluster.local:{POD_PORT}", w.ns);
    assert_eq!(
        answer(&w, &host).await,
        (404, None),
        "not opted in: no Route serves the Service"
    );

    label(&w, "fairway.dev/implicit=enabled");
    let what = format!("{host} served once the namespace is labelled");
    eventually(CONVERGE, &what, || async {
        (answer(&w, &host).await == (200, Some("orders".to_owned()))).then_some(())
    })
    .await;
    let short = format!("orders.{}:{POD_PORT}", w.ns);
    assert_eq!(answer(&w, &short).await, (200, Some("orders".to_owned())));

    label(&w, "fairway.dev/implicit-");
    let what = format!("{host} not served once the label is gone");
    eventually(CONVERGE, &what, || async {
        (answer(&w, &host).await.0 == 404).then_some(())
    })
    .await;
}
