//! Scenario 16: Gateway API's BackendTLSPolicy, with the real CRDs of the pinned release.
//! A policy on a Service port makes a Fairway Route and an HTTPRoute to that Service
//! reach real HTTPS pods (rustls, certificates made here); a wrong CA or hostname is
//! refused with `502 TlsHandshake`, a missing CA ConfigMap with `502 TlsConfig` and the
//! policy's own `ResolvedRefs=False` (the routes' statuses untouched); the policy's
//! status is read back; and a plaintext pod is refused while the policy stands (never a
//! downgrade) and served once it is deleted.

use fairway_tests::eventually;
use fairway_tests::objects::{State, endpoint};

use crate::gamma::{apply, group_published, http_route};
use crate::tls::{ca, put_config_map, tls_pod};
use crate::world::{CONVERGE, Conn, POD_PORT, World, pod, pod_ip};

const PORT: i32 = POD_PORT as i32;
/// The policy's name.
const POLICY: &str = "secure-tls";

/// The BackendTLSPolicy on Service `secure`'s port `http`: CA ConfigMap `ca`, `hostname`.
fn policy_yaml(ca: &str, hostname: &str) -> String {
    format!(
        "apiVersion: gateway.networking.k8s.io/v1
kind: BackendTLSPolicy
metadata: {{name: {POLICY}}}
spec:
  targetRefs: [{{group: \"\", kind: Service, name: secure, sectionName: http}}]
  validation:
    caCertificateRefs: [{{group: \"\", kind: ConfigMap, name: {ca}}}]
    hostname: {hostname}
"
    )
}

/// Waits until both proxies answer `host` with `status` and a body containing `expect`
/// (which tells a new configuration's answer from the last one's when both fail);
/// returns each `(pod, body)`.
async fn answers(
    w: &World,
    host: &str,
    status: u16,
    expect: &str,
) -> Vec<(Option<String>, String)> {
    let mut seen = Vec::new();
    for p in &w.proxies {
        let what = format!("{} answers {host} with {status}", p.id);
        seen.push(
            eventually(CONVERGE, &what, || async {
                let (got, pod, body) = Conn::open(p.listen).await.get(host, "/").await;
                (got == status && body.contains(expect)).then_some((pod, body))
            })
            .await,
        );
    }
    seen
}

/// Our `status.ancestors[]` entry's `(Accepted, ResolvedRefs)` as `(status, reason)`,
/// once both are written for the policy's current generation.
fn ancestor(w: &World) -> Option<[(String, String); 2]> {
    let out = w.kubectl(&["get", "backendtlspolicy", POLICY, "-o", "json"]);
    let doc: serde_json::Value = serde_json::from_str(&out.stdout).ok()?;
    let ancestors = doc["status"]["ancestors"].as_array()?;
    let ours = (ancestors.iter()).find(|a| a["controllerName"] == "fairway.dev/controller")?;
    assert_eq!(ours["ancestorRef"]["kind"], "Service", "{ours}");
    assert_eq!(ours["ancestorRef"]["name"], "secure", "{ours}");
    let generation = &doc["metadata"]["generation"];
    let condition = |type_: &str| {
        let conditions = ours["conditions"].as_array()?;
        let c = conditions.iter().find(|c| c["type"] == type_)?;
        let field = |name: &str| c[name].as_str().unwrap_or_default().to_owned();
        (&c["observedGeneration"] == generation).then(|| (field("status"), field("reason")))
    };
    Some([condition("Accepted")?, condition("ResolvedRefs")?])
}

async fn policy_status_is(w: &World, accepted: (&str, &str), resolved: (&str, &str)) {
    let what = format!("{POLICY}: Accepted={accepted:?}, ResolvedRefs={resolved:?}");
    eventually(CONVERGE, &what, || async {
        let [a, r] = ancestor(w)?;
        let want = |got: &(String, String), (s, why): (&str, &str)| got.0 == s && got.1 == why;
        (want(&a, accepted) && want(&r, resolved)).then_some(())
    })
    .await;
}

pub async fn backend_tls_policy() {
    let mut w = World::new("e2e-btls").await;
    fairway_tests::gateway_api::install(w.cluster);
    fairway_tests::gateway_api::install_backend_tls_policy(w.cluster);
    let (good, other) = (ca("fairway-e2e-btls-ca"), ca("another-ca"));
    let ns = w.ns.clone();
    let names = [format!("secure.{ns}.svc.cluster.local")];
    let (tls_ip, plain_ip) = (pod_ip(16, 11), pod_ip(16, 12));
    let _tls = tls_pod("btls-pod", &tls_ip, &good, &names, &["h2", "http/1.1"]).await;
    let _plain = pod("plain-pod", &plain_ip).await;
    w.create_service("secure", PORT).await;
    let ready = vec![endpoint(&tls_ip, State::Ready)];
    w.create_slice("secure-a", "secure", PORT, ready).await;
    put_config_map(&w, "good-ca", &good.pem).await;
    put_config_map(&w, "other-ca", &other.pem).await;
    let route = format!(
        "apiVersion: fairway.dev/v1alpha1
kind: Route
metadata: {{name: plain-route}}
spec:
  hosts: [route.btls.test]
  rules: [{{backends: [{{service: secure, port: {PORT}}}]}}]
  retries: {{attempts: 0}}
"
    );
    apply(&w, &route);
    let rules = format!("  - backendRefs: [{{name: secure, port: {PORT}}}]\n");
    apply(&w, &http_route("mesh", "secure", &rules));
    apply(&w, &policy_yaml("good-ca", &names[0]));
    // Started after both CRDs are installed: HTTPRoute and BackendTLSPolicy input on.
    w.start().await;
    group_published(&mut w, "secure").await;
    let hosts = ["route.btls.test".to_owned(), format!("secure.{ns}")];

    for host in &hosts {
        for (pod, version) in answers(&w, host, 200, "").await {
            assert_eq!(pod.as_deref(), Some("btls-pod"), "{host}: TLS to the pod");
            assert_eq!(
                version, "HTTP/2.0",
                "{host}: ALPN offered h2 and the pod took it"
            );
        }
    }
    policy_status_is(&w, ("True", "Accepted"), ("True", "ResolvedRefs")).await;

    // A CA that did not sign the pod's certificate, then a name it does not carry.
    for (ca, hostname) in [
        ("other-ca", names[0].as_str()),
        ("good-ca", "elsewhere.example"),
    ] {
        apply(&w, &policy_yaml(ca, hostname));
        let expecting = format!("(expecting \"{hostname}\")");
        for host in &hosts {
            for (pod, body) in answers(&w, host, 502, &expecting).await {
                assert_eq!(pod, None, "{host} with {ca}, {hostname}: no pod answers");
                assert!(body.starts_with("TlsHandshake: "), "{host}: {body}");
            }
        }
    }
    // A CA that is not there: refused, and the policy (not the routes) says why.
    apply(&w, &policy_yaml("missing-ca", &names[0]));
    for host in &hosts {
        for (_, body) in answers(&w, host, 502, "TlsConfig: ").await {
            assert!(body.starts_with("TlsConfig: "), "{host}: {body}");
        }
    }
    policy_status_is(
        &w,
        ("False", "NoValidCACertificate"),
        ("False", "InvalidCACertificateRef"),
    )
    .await;
    let path = "jsonpath={.status.conditions[?(@.type==\"ResolvedRefs\")].status}";
    let route_refs = w.kubectl(&["get", "route", "plain-route", "-o", path]);
    assert_eq!(
        route_refs.stdout, "True",
        "the Route's own status is untouched"
    );

    // The pod turns plaintext while the policy stands: refused, never downgraded.
    apply(&w, &policy_yaml("good-ca", &names[0]));
    answers(&w, &hosts[0], 200, "").await;
    w.set_endpoints("secure-a", vec![endpoint(&plain_ip, State::Ready)])
        .await;
    for host in &hosts {
        for (pod, body) in answers(&w, host, 502, "TlsHandshake: ").await {
            assert_eq!(
                pod, None,
                "{host}: the plaintext pod is never sent a request"
            );
            assert!(body.starts_with("TlsHandshake: "), "{host}: {body}");
        }
    }
    // Deleting the policy returns every route to plaintext.
    let deleted = w.kubectl(&["delete", "backendtlspolicy", POLICY]);
    assert!(deleted.success, "kubectl delete: {}", deleted.stderr);
    for host in &hosts {
        for (pod, _) in answers(&w, host, 200, "").await {
            assert_eq!(pod.as_deref(), Some("plain-pod"), "{host}: plaintext again");
        }
    }
    w.check_processes();
}
