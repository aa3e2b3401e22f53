use serde_json::{Value, json};

use super::template::{Defaults, PROXY_UID, Template};
use super::{Asked, InjectError, Wanted, inject};

fn template() -> Template {
    Template::default_for(&Defaults {
        image: "registry.example/fairway-proxy:1.2.3".into(),
        controller: "https://fw.example:8443".into(),
        ..Defaults::default()
    })
}

fn pod_spec() -> Value {
    json!({
        "initContainers": [{"name": "migrate", "image": "app"}],
        "containers": [
            {"name": "gateway", "image": "gateway:1", "volumeMounts": [{"name": "conf", "mountPath": "/etc/gw"}]},
            {"name": "logs", "image": "logs:1"}
        ],
        "volumes": [{"name": "conf", "configMap": {"name": "gw"}}]
    })
}

fn names(list: &Value) -> Vec<&str> {
    list.as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect()
}

#[test]
fn annotations_ask_for_nothing_the_hook_or_everything() {
    let of = |pairs: &[(&str, &str)]| {
        let map: serde_json::Map<String, Value> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), json!(v)))
            .collect();
        Wanted::of(Some(&map))
    };
    assert_eq!(Wanted::of(None), Wanted::Nothing);
    assert_eq!(of(&[("fairway.dev/inject", "disabled")]), Wanted::Nothing);
    assert_eq!(
        of(&[("fairway.dev/inject", "true")]),
        Wanted::Nothing,
        "only `enabled` turns it on"
    );
    assert_eq!(of(&[("fairway.dev/drain", "enabled")]), Wanted::Drain);
    assert_eq!(
        of(&[("fairway.dev/inject", "enabled")]),
        Wanted::Proxy,
        "the drain hook asks for itself"
    );
    assert_eq!(
        of(&[
            ("fairway.dev/inject", "enabled"),
            ("fairway.dev/drain", "enabled")
        ]),
        Wanted::All
    );
    assert_eq!(
        of(&[
            ("fairway.dev/inject", "enabled"),
            ("fairway.dev/drain", "disabled")
        ]),
        Wanted::Proxy
    );
}

#[test]
fn nothing_asked_changes_nothing() {
    let mut spec = pod_spec();
    let done = inject(&mut spec, &Wanted::Nothing.into(), &template()).unwrap();
    assert!(done.added.is_empty());
    assert_eq!(spec, pod_spec());
}

#[test]
fn inject_adds_the_proxy_as_a_native_sidecar_before_the_apps_init_containers() {
    let mut spec = pod_spec();
    let done = inject(&mut spec, &Wanted::All.into(), &template()).unwrap();
    assert_eq!(
        done.added,
        ["fairway-drain-copy", "fairway-capture", "fairway-proxy"]
    );
    assert!(done.warnings.is_empty(), "{:?}", done.warnings);
    assert_eq!(
        names(&spec["initContainers"]),
        [
            "fairway-drain-copy",
            "fairway-capture",
            "fairway-proxy",
            "migrate"
        ],
        "the rules and the proxy come before the app's own init containers, whose traffic they carry"
    );
    let capture = &spec["initContainers"][1];
    assert!(capture["restartPolicy"].is_null(), "capture runs once");
    assert_eq!(
        capture["terminationMessagePolicy"], "FallbackToLogsOnError",
        "a failed capture's reason shows in the pod's status"
    );
    assert_eq!(
        capture["securityContext"]["capabilities"]["add"][0],
        "NET_ADMIN"
    );
    let proxy = &spec["initContainers"][2];
    assert_eq!(proxy["restartPolicy"], "Always", "a native sidecar");
    assert_eq!(proxy["image"], "registry.example/fairway-proxy:1.2.3");
    assert_eq!(proxy["securityContext"]["runAsUser"], PROXY_UID);
    assert!(
        proxy["args"]
            .as_array()
            .unwrap()
            .contains(&json!("--controller=https://fw.example:8443")),
        "{proxy}"
    );
    assert_eq!(
        proxy["startupProbe"]["httpGet"]["path"], "/ready",
        "the app starts once the proxy is ready"
    );
    assert_eq!(
        names(&spec["volumes"]),
        [
            "conf",
            "fairway-bin",
            "fairway-token",
            "fairway-controller-ca"
        ]
    );
    for app in spec["containers"].as_array().unwrap() {
        let hook = &app["lifecycle"]["preStop"]["exec"]["command"];
        assert_eq!(hook[4], "wait-drained", "{app}");
        let mounts: Vec<&str> = app["volumeMounts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["name"].as_str().unwrap())
            .collect();
        assert!(
            mounts.ends_with(&["fairway-bin", "fairway-token", "fairway-controller-ca"]),
            "{mounts:?}"
        );
    }
    assert_eq!(
        spec["containers"][0]["volumeMounts"][0]["name"], "conf",
        "the app's own mounts stay first"
    );
}

#[test]
fn injecting_twice_is_injecting_once() {
    let mut once = pod_spec();
    inject(&mut once, &Wanted::All.into(), &template()).unwrap();
    let mut twice = once.clone();
    let done = inject(&mut twice, &Wanted::All.into(), &template()).unwrap();
    assert!(done.added.is_empty());
    assert_eq!(twice, once);
}

#[test]
fn the_proxy_alone_brings_no_drain_hook() {
    let mut spec = pod_spec();
    let done = inject(&mut spec, &Wanted::Proxy.into(), &template()).unwrap();
    assert_eq!(done.added, ["fairway-capture", "fairway-proxy"]);
    assert!(spec["containers"][0]["lifecycle"].is_null(), "{spec}");
    assert_eq!(
        names(&spec["volumes"]),
        ["conf", "fairway-token", "fairway-controller-ca"]
    );
}

#[test]
fn drain_alone_adds_the_hook_and_no_proxy() {
    let mut spec = pod_spec();
    let done = inject(&mut spec, &Wanted::Drain.into(), &template()).unwrap();
    assert_eq!(done.added, ["fairway-drain-copy"]);
    assert_eq!(
        names(&spec["initContainers"]),
        ["fairway-drain-copy", "migrate"]
    );
    assert!(!spec["containers"][1]["lifecycle"]["preStop"].is_null());
    assert_eq!(
        names(&spec["volumes"]),
        [
            "conf",
            "fairway-bin",
            "fairway-token",
            "fairway-controller-ca"
        ],
        "the hook presents the token and trusts the CA as the proxy does"
    );
}

#[test]
fn a_pods_excluded_ports_reach_its_capture_step_and_bad_ones_are_refused() {
    let annotations = |ports: &str| {
        let map = json!({
            "fairway.dev/inject": "enabled",
            "fairway.dev/capture-exclude-ports": ports,
        });
        Asked::of(map.as_object())
    };
    let mut spec = pod_spec();
    inject(&mut spec, &annotations("5432, 6379"), &template()).unwrap();
    let args = spec["initContainers"][0]["args"].as_array().unwrap();
    assert_eq!(args.last().unwrap(), "--exclude-port=5432,6379", "{args:?}");

    for bad in ["postgres", "5432;6379", "0", "70000"] {
        let mut spec = pod_spec();
        assert_eq!(
            inject(&mut spec, &annotations(bad), &template()),
            Err(InjectError::ExcludePorts(bad.into())),
            "{bad}"
        );
    }
}

#[test]
fn a_users_own_pre_stop_hook_is_kept_with_a_warning() {
    let mut spec = pod_spec();
    spec["containers"][1]["lifecycle"] = json!({"preStop": {"exec": {"command": ["sleep", "5"]}}});
    let done = inject(&mut spec, &Wanted::Drain.into(), &template()).unwrap();
    assert_eq!(
        spec["containers"][1]["lifecycle"]["preStop"]["exec"]["command"][0],
        "sleep"
    );
    assert_eq!(done.warnings.len(), 1, "{:?}", done.warnings);
    assert!(done.warnings[0].contains("\"logs\""), "{:?}", done.warnings);
    assert!(
        !spec["containers"][0]["lifecycle"]["preStop"].is_null(),
        "the other container gets it"
    );
}

#[test]
fn an_app_running_as_the_proxys_uid_is_warned_about() {
    let mut spec = pod_spec();
    spec["securityContext"] = json!({"runAsUser": PROXY_UID});
    spec["containers"][1]["securityContext"] = json!({"runAsUser": 1000});
    let done = inject(&mut spec, &Wanted::All.into(), &template()).unwrap();
    assert_eq!(done.warnings.len(), 1, "{:?}", done.warnings);
    assert!(
        done.warnings[0].contains("\"gateway\"") && done.warnings[0].contains("not captured"),
        "{:?}",
        done.warnings
    );
}

#[test]
fn pods_that_cannot_take_the_injection_are_errors_that_change_nothing_asked() {
    let mut clash = pod_spec();
    clash["volumes"] = json!([{"name": "fairway-token", "emptyDir": {}}]);
    assert_eq!(
        inject(&mut clash, &Wanted::All.into(), &template()),
        Err(InjectError::VolumeClash("fairway-token".into()))
    );
    let mut empty = json!({"containers": []});
    assert_eq!(
        inject(&mut empty, &Wanted::All.into(), &template()),
        Err(InjectError::NoContainers)
    );
    let mut odd = json!("spec");
    assert_eq!(
        inject(&mut odd, &Wanted::All.into(), &template()),
        Err(InjectError::NotAnObject)
    );
}

#[test]
fn the_built_in_template_reads_back_from_yaml_as_the_chart_would_render_it() {
    let template = template();
    let yaml = serde_saphyr::to_string(&template).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("template.yaml");
    std::fs::write(&path, yaml).unwrap();
    assert_eq!(Template::read(&path).unwrap(), template);
    std::fs::write(&path, "proxy: {name: fairway-proxy}\n").unwrap();
    let error = Template::read(&path).unwrap_err().to_string();
    assert!(error.contains("no proxy image"), "{error}");
}
