//! The injection webhook in the chart: the template the controller reads, its
//! registration with the CA that signed the controller's certificate, and the values
//! that turn it off or bring a certificate.

use fairway_controller::inject::Template;
use fairway_tests::helm::CHART_DIR;
use serde_json::Value;

use super::{find, kinds, run_helm, strings, template};

fn template_objects(extra: &[&str]) -> Vec<Value> {
    template("fairway", "fairway", extra)
}

fn template_of(objects: &[Value]) -> Template {
    let cm = find(objects, "ConfigMap", "fairway-inject");
    let text = cm["data"]["template.yaml"].as_str().expect("template.yaml");
    serde_saphyr::from_str(text)
        .unwrap_or_else(|e| panic!("the template does not read: {e}\n{text}"))
}

#[test]
fn default_render_serves_and_registers_the_webhook_with_the_discovery_ca() {
    let objects = template("fairway", "fairway", &[]);
    let template = template_of(&objects);
    assert_eq!(
        template.proxy.image.as_deref(),
        Some("ghcr.io/fairway-dev/fairway-proxy:0.1.0")
    );
    let args = template.proxy.args.clone().unwrap_or_default();
    for arg in [
        "--controller=https://fairway-controller.fairway.svc:18000",
        "--controller-ca-file=/var/run/fairway/controller-ca/ca.crt",
        "--controller-token-file=/var/run/fairway/token/token",
    ] {
        assert!(args.contains(&arg.to_owned()), "{arg} missing: {args:?}");
    }
    assert_eq!(template.proxy_uid, 2140);
    let capture = template.capture.as_ref().expect("the capture step");
    assert_eq!(
        capture.image.as_deref(),
        Some("ghcr.io/fairway-dev/fairway-capture:0.1.0")
    );
    let capture_args = capture.args.clone().unwrap_or_default();
    assert_eq!(
        capture_args,
        [
            "install",
            "--service-cidr=10.96.0.0/12",
            "--proxy-uid=2140",
            "--to-port=4143"
        ]
    );
    let token = serde_json::to_value(&template.volumes).unwrap();
    assert_eq!(
        token[0]["projected"]["sources"][0]["serviceAccountToken"]["audience"], "fairway",
        "the Discovery audience: {token}"
    );

    let drain = template
        .drain
        .as_ref()
        .expect("the drain hook (drain.enabled)");
    assert_eq!(
        drain.copy.image.as_deref(),
        Some("ghcr.io/fairway-dev/fairway:0.1.0")
    );
    assert_eq!(
        drain.pre_stop[..5],
        [
            "/var/run/fairway/bin/ld.so",
            "--library-path",
            "/var/run/fairway/bin",
            "/var/run/fairway/bin/fairway",
            "wait-drained"
        ]
    );
    let off = template_of(&template_objects(&["--set", "drain.enabled=false"]));
    assert!(off.drain.is_none(), "no hook without the handshake");

    let deploy = find(&objects, "Deployment", "fairway-controller");
    let c = &deploy["spec"]["template"]["spec"]["containers"][0];
    let args = strings(&c["args"]);
    for arg in [
        "--webhook-addr=0.0.0.0:9443",
        "--webhook-cert-file=/var/run/fairway/tls/tls.crt",
        "--inject-template=/etc/fairway/inject/template.yaml",
    ] {
        assert!(args.contains(&arg.to_owned()), "{arg} missing: {args:?}");
    }

    let webhook = find(&objects, "MutatingWebhookConfiguration", "fairway-inject");
    let hook = &webhook["webhooks"][0];
    assert_eq!(
        hook["failurePolicy"], "Ignore",
        "never the reason a pod cannot start"
    );
    assert_eq!(
        hook["clientConfig"]["service"]["name"],
        "fairway-controller"
    );
    assert_eq!(hook["clientConfig"]["service"]["port"], 443);
    let secret = find(&objects, "Secret", "fairway-controller-tls");
    assert_eq!(
        hook["clientConfig"]["caBundle"], secret["data"]["ca.crt"],
        "the webhook trusts the CA that signed the controller's certificate"
    );
    let excluded = strings(&hook["namespaceSelector"]["matchExpressions"][0]["values"]);
    assert_eq!(excluded, ["kube-system", "kube-node-lease", "fairway"]);
    // The pod Events (injector.podEvents, on by default) know the same namespaces as
    // excluded, so a pod there is not blamed on an outage.
    let told = format!("--webhook-excluded-namespace={}", excluded.join(","));
    for arg in ["--pod-events", told.as_str()] {
        assert!(args.contains(&arg.to_owned()), "{arg} missing: {args:?}");
    }
    let off = template_objects(&["--set", "injector.podEvents=false"]);
    let deploy = find(&off, "Deployment", "fairway-controller");
    let args = strings(&deploy["spec"]["template"]["spec"]["containers"][0]["args"]);
    assert!(!args.contains(&"--pod-events".to_owned()), "{args:?}");
}

#[test]
fn the_injector_can_be_turned_off_and_needs_a_ca_for_a_brought_certificate() {
    let off = template("fairway", "fairway", &["--set", "injector.enabled=false"]);
    let names = kinds(&off);
    assert!(
        !names.iter().any(|k| k.contains("inject")),
        "nothing of the injector is rendered: {names:?}"
    );

    let brought = ["--set", "discovery.tls.secretName=mine"];
    let mut args = vec!["template", "fairway", CHART_DIR];
    args.extend_from_slice(&brought);
    let refused = run_helm(&args, None);
    assert!(
        !refused.success && refused.stderr.contains("injector.caBundle is required"),
        "{}",
        refused.stderr
    );

    let pem = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";
    let set = format!("injector.caBundle={pem}");
    let objects = template(
        "fairway",
        "fairway",
        &[brought[0], brought[1], "--set-string", &set],
    );
    let hook = &find(&objects, "MutatingWebhookConfiguration", "fairway-inject")["webhooks"][0];
    use base64::Engine as _;
    let ca = base64::engine::general_purpose::STANDARD
        .decode(hook["clientConfig"]["caBundle"].as_str().unwrap())
        .unwrap();
    assert_eq!(String::from_utf8(ca).unwrap(), pem);
}
