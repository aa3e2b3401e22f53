//! The chart's half of the Discovery stream's protection (docs/security.md): the
//! proxy's projected token and the controller's CA where the flags point, the
//! controller's allowed ServiceAccount, certificate and TokenReview permission, and the
//! renders that switch them off or bring their own Secrets.

use serde_json::Value;

use super::{find, kinds, strings, template};

/// The default render's Discovery stream: the proxy's projected `fairway` token and the
/// controller's CA (and nothing else of the Secret) mounted where its flags point; the
/// controller admitting exactly the proxy's ServiceAccount, serving the generated
/// certificate, and allowed to create TokenReviews.
pub fn assert_protected(objects: &[Value], release: &str, ns: &str) {
    let proxy_name = format!("{release}-proxy");
    let controller_name = format!("{release}-controller");
    let ds = find(objects, "DaemonSet", &proxy_name);
    let pod = &ds["spec"]["template"]["spec"];
    let c = &pod["containers"][0];
    let volume = |name: &str| -> Value {
        (pod["volumes"].as_array().into_iter().flatten())
            .find(|v| v["name"] == name)
            .cloned()
            .unwrap_or_else(|| panic!("the proxy has no volume {name}: {}", pod["volumes"]))
    };
    let mount = |name: &str| -> String {
        (c["volumeMounts"].as_array().into_iter().flatten())
            .find(|m| m["name"] == name)
            .and_then(|m| m["mountPath"].as_str())
            .unwrap_or_else(|| panic!("the proxy does not mount {name}: {}", c["volumeMounts"]))
            .to_owned()
    };
    let token = &volume("discovery-token")["projected"]["sources"][0]["serviceAccountToken"];
    assert_eq!(token["audience"], "fairway", "{token}");
    assert_eq!(token["expirationSeconds"], 600, "{token}");
    let token_file = format!(
        "{}/{}",
        mount("discovery-token"),
        token["path"].as_str().expect("path")
    );
    let args = strings(&c["args"]);
    assert!(
        args.contains(&format!("--controller-token-file={token_file}")),
        "--controller-token-file points at the projected token {token_file}: {args:?}"
    );
    let ca = volume("controller-ca");
    let secret = format!("{controller_name}-tls");
    assert_eq!(ca["secret"]["secretName"], secret.as_str());
    assert_eq!(
        ca["secret"]["items"].as_array().map(|i| i.len()),
        Some(1),
        "the proxy gets the CA only, never the controller's key: {ca}"
    );
    assert!(
        args.contains(&format!(
            "--controller-ca-file={}/ca.crt",
            mount("controller-ca")
        )),
        "{args:?}"
    );
    assert!(
        args.contains(&format!(
            "--controller=https://{controller_name}.{ns}.svc:18000"
        )),
        "{args:?}"
    );

    let deploy = find(objects, "Deployment", &controller_name);
    let c = &deploy["spec"]["template"]["spec"]["containers"][0];
    let args = strings(&c["args"]);
    for want in [
        format!("--allowed-service-account={ns}/{proxy_name}"),
        "--token-audience=fairway".to_owned(),
        "--tls-cert-file=/var/run/fairway/tls/tls.crt".to_owned(),
        "--tls-key-file=/var/run/fairway/tls/tls.key".to_owned(),
    ] {
        assert!(args.contains(&want), "controller args {args:?} lack {want}");
    }
    assert!(!args.contains(&"--no-auth".to_owned()), "{args:?}");
    assert_eq!(c["volumeMounts"][0]["mountPath"], "/var/run/fairway/tls");
    assert_eq!(
        deploy["spec"]["template"]["spec"]["volumes"][0]["secret"]["secretName"],
        secret.as_str()
    );
    let tls = find(objects, "Secret", &secret);
    for key in ["tls.crt", "tls.key", "ca.crt"] {
        assert!(
            tls["data"][key].is_string(),
            "the generated Secret lacks {key}"
        );
    }
    let rules = find(objects, "ClusterRole", &controller_name)["rules"].clone();
    assert!(
        (rules.as_array().into_iter().flatten())
            .any(|r| r["apiGroups"][0] == "authentication.k8s.io"
                && r["resources"][0] == "tokenreviews"
                && r["verbs"] == serde_json::json!(["create"])),
        "the controller may create TokenReviews: {rules}"
    );
}

#[test]
fn can_be_configured_and_switched_off() {
    let off = template(
        "fairway",
        "fairway",
        &[
            "--set",
            // The injection webhook and the drain handshake go with the Discovery TLS.
            "discovery.auth.enabled=false,discovery.tls.enabled=false,injector.enabled=false,drain.enabled=false",
        ],
    );
    let c = &find(&off, "DaemonSet", "fairway-proxy")["spec"]["template"]["spec"]["containers"][0];
    let args = strings(&c["args"]);
    assert!(
        args.contains(&"--controller=http://fairway-controller.fairway.svc:18000".to_owned())
            && args.contains(&"--controller-plaintext".to_owned()),
        "plaintext is explicit: {args:?}"
    );
    assert!(
        c["volumeMounts"].is_null(),
        "nothing to mount: {}",
        c["volumeMounts"]
    );
    let c = &find(&off, "Deployment", "fairway-controller")["spec"]["template"]["spec"]["containers"]
        [0];
    assert!(strings(&c["args"]).contains(&"--no-auth".to_owned()));
    assert!(
        off.iter().all(|o| o["kind"] != "Secret"),
        "{:?}",
        kinds(&off)
    );
    let rules = find(&off, "ClusterRole", "fairway-controller")["rules"].to_string();
    assert!(!rules.contains("tokenreviews"), "{rules}");

    let own = template(
        "fairway",
        "fairway",
        &[
            "--set",
            "discovery.tls.secretName=discovery-cert,discovery.tls.clientSecretName=proxy-cert",
            "--set",
            "discovery.auth.extraAllowedServiceAccounts={edge/gateway}",
            // helm template cannot read the brought Secret's CA (tests/helm/inject.rs).
            "--set",
            "injector.enabled=false",
        ],
    );
    assert!(
        own.iter().all(|o| o["kind"] != "Secret"),
        "bring your own: {:?}",
        kinds(&own)
    );
    let c = &find(&own, "Deployment", "fairway-controller")["spec"]["template"]["spec"]["containers"]
        [0];
    let args = strings(&c["args"]);
    for want in [
        "--allowed-service-account=edge/gateway",
        "--allowed-service-account=fairway/fairway-proxy",
        "--tls-client-ca-file=/var/run/fairway/tls/ca.crt",
    ] {
        assert!(
            args.contains(&want.to_owned()),
            "controller args {args:?} lack {want}"
        );
    }
    let pod = &find(&own, "DaemonSet", "fairway-proxy")["spec"]["template"]["spec"];
    let args = strings(&pod["containers"][0]["args"]);
    assert!(
        args.contains(&"--controller-cert-file=/var/run/fairway/client-tls/tls.crt".to_owned()),
        "{args:?}"
    );
    assert!(
        pod["volumes"].to_string().contains("proxy-cert"),
        "{}",
        pod["volumes"]
    );
    assert!(
        pod["volumes"].to_string().contains("discovery-cert"),
        "{}",
        pod["volumes"]
    );
}

#[test]
fn the_drain_handshake_reviews_tokens_and_reaches_every_replica() {
    let objects = template("fairway", "fairway", &[]);
    let deploy = find(&objects, "Deployment", "fairway-controller");
    let args = strings(&deploy["spec"]["template"]["spec"]["containers"][0]["args"]);
    for want in [
        "--drain-peer=fairway-controller-peers.fairway.svc:18000",
        "--drain-peer-ca-file=/var/run/fairway/tls/ca.crt",
    ] {
        assert!(
            args.contains(&want.to_owned()),
            "controller args {args:?} lack {want}"
        );
    }
    let peers = find(&objects, "Service", "fairway-controller-peers");
    assert_eq!(
        peers["spec"]["clusterIP"], "None",
        "headless: every replica's address"
    );

    // Discovery without tokens still reviews the hooks' tokens; one replica asks nobody.
    let one = template(
        "fairway",
        "fairway",
        &[
            "--set",
            "discovery.auth.enabled=false,controller.replicas=1",
        ],
    );
    let rules = find(&one, "ClusterRole", "fairway-controller")["rules"].to_string();
    assert!(rules.contains("tokenreviews"), "{rules}");
    let c = &find(&one, "Deployment", "fairway-controller")["spec"]["template"]["spec"]["containers"]
        [0];
    let args = strings(&c["args"]);
    assert!(
        args.contains(&"--token-audience=fairway".to_owned()),
        "{args:?}"
    );
    assert!(
        !args.iter().any(|a| a.starts_with("--drain-peer")),
        "{args:?}"
    );
    assert!(
        one.iter()
            .all(|o| o["metadata"]["name"] != "fairway-controller-peers"),
        "no peers Service for one replica"
    );
}
