//! Defaults a real node showed wrong (issue 26): the DaemonSet's rollout strategy and
//! the sidecar's listen address.

use serde_json::{Value, json};

use super::{find, strings, template};

fn strategy(extra: &[&str]) -> Value {
    let objects = template("fairway", "fairway", extra);
    find(&objects, "DaemonSet", "fairway-proxy")["spec"]["updateStrategy"].clone()
}

#[test]
fn proxy_daemonset_surges_unless_it_holds_a_host_port() {
    assert_eq!(
        strategy(&[]),
        json!({"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}}),
        "a new proxy is Ready before the old one stops, so `helm install --wait` waits for it"
    );
    assert_eq!(
        strategy(&["--set", "proxy.hostPort.enabled=true"]),
        json!({"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 0, "maxUnavailable": 1}}),
        "a surge pod cannot bind the hostPort its predecessor holds"
    );
    assert_eq!(
        strategy(&["--set", "proxy.updateStrategy.type=OnDelete"]),
        json!({"type": "OnDelete"}),
        "an explicit strategy wins"
    );
}

#[test]
fn sidecar_listens_on_loopback_unless_widened() {
    let args = |extra: &[&str]| {
        let mut set = vec!["--set", "proxy.mode=sidecar"];
        set.extend_from_slice(extra);
        let objects = template("fairway", "fairway", &set);
        let cm = find(&objects, "ConfigMap", "fairway-proxy-sidecar");
        let text = cm["data"]["container.yaml"]
            .as_str()
            .expect("container.yaml");
        let container: Value =
            serde_saphyr::from_str(text).unwrap_or_else(|e| panic!("{e}\n{text}"));
        strings(&container["args"])
    };
    let listen = |extra: &[&str]| -> Vec<String> {
        args(extra)
            .into_iter()
            .filter(|a| a.starts_with("--listen="))
            .collect()
    };
    assert_eq!(
        listen(&[]),
        ["--listen=127.0.0.1:4140", "--listen=[::1]:4140"],
        "only the gateway in the pod may send through its sidecar, over either family"
    );
    assert_eq!(
        listen(&["--set", "proxy.sidecar.listenAddresses={0.0.0.0}"]),
        ["--listen=0.0.0.0:4140"],
        "widened on purpose with proxy.sidecar.listenAddresses"
    );
    let objects = template("fairway", "fairway", &[]);
    let ds = find(&objects, "DaemonSet", "fairway-proxy");
    assert!(
        strings(&ds["spec"]["template"]["spec"]["containers"][0]["args"])
            .contains(&"--listen=0.0.0.0:4140".to_owned()),
        "the DaemonSet serves its node-local Service on every interface"
    );
}

#[test]
fn proxy_drains_its_keep_alive_clients_before_it_stops() {
    let objects = template("fairway", "fairway", &[]);
    let ds = find(&objects, "DaemonSet", "fairway-proxy");
    let args = strings(&ds["spec"]["template"]["spec"]["containers"][0]["args"]);
    assert!(
        args.contains(&"--drain-delay=5s".to_owned()),
        "after SIGTERM the proxy closes each client connection after its next response: {args:?}"
    );
    let objects = template("fairway", "fairway", &["--set", "proxy.drainDelay=0s"]);
    let ds = find(&objects, "DaemonSet", "fairway-proxy");
    assert!(
        strings(&ds["spec"]["template"]["spec"]["containers"][0]["args"])
            .contains(&"--drain-delay=0s".to_owned())
    );
}
