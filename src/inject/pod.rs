//! What injection does to one pod: the capture init container, then the proxy as a
//! native sidecar (an init container with `restartPolicy: Always`, so it starts before
//! the app and stops after it), and their volumes. Pure: a pod template as JSON in, the
//! same template changed out, tested without I/O.
//!
//! Kept open for the drain handshake (issue 19): a `fairway.dev/drain: enabled`
//! annotation will add the proxy's `fairway wait-drained` preStop hook here, next to
//! the containers it belongs to. Not implemented yet.

use serde_json::{Map, Value, json};

/// The annotation that asks for injection, and its one accepted value.
pub const INJECT_ANNOTATION: &str = "fairway.dev/inject";
pub const INJECT_ENABLED: &str = "enabled";
/// Destination ports the pod's capture leaves alone, comma-separated (`5432,6379`).
pub const EXCLUDE_PORTS_ANNOTATION: &str = "fairway.dev/capture-exclude-ports";

/// The injected containers' names; a pod that has them is left as it is.
pub const CAPTURE_CONTAINER: &str = "fairway-capture";
pub const PROXY_CONTAINER: &str = "fairway-proxy";

/// Where the injected proxy's admin server answers `/ready` (the startup probe that holds
/// the app back until the proxy has its table).
const ADMIN_PORT: u16 = 4191;
/// The app's explicit proxy port, on loopback only (sidecar mode, docs/security.md).
const LISTEN_PORT: u16 = 4140;

/// What an injected pod gets, typed (from `fairway inject`'s flags).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Injection {
    pub proxy_image: String,
    pub capture_image: String,
    /// The controller's Discovery address (`--controller`).
    pub controller: String,
    /// The Service ranges captured (`fairway-capture --service-cidr`).
    pub service_cidrs: Vec<String>,
    pub proxy_uid: u32,
    pub outbound_port: u16,
}

/// What happened to one pod template.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Not annotated for injection: unchanged.
    NotAnnotated,
    /// Already has Fairway's containers: unchanged.
    AlreadyInjected,
    /// Changed; warnings for the user (an app running as the proxy's UID).
    Injected { warnings: Vec<String> },
}

/// Whether `metadata` (an object's or a pod template's) asks for injection.
pub fn annotated(metadata: Option<&Value>) -> bool {
    metadata
        .and_then(|m| m.get("annotations"))
        .and_then(|a| a.get(INJECT_ANNOTATION))
        .and_then(Value::as_str)
        == Some(INJECT_ENABLED)
}

/// Injects into the pod template `template` (`metadata` and `spec`) when it, or `owner`
/// (the enclosing object's metadata, e.g. a Deployment's), carries the annotation.
pub fn inject(template: &mut Value, owner: Option<&Value>, with: &Injection) -> Outcome {
    if !annotated(template.get("metadata")) && !annotated(owner) {
        return Outcome::NotAnnotated;
    }
    let exclude_ports = [template.get("metadata"), owner]
        .into_iter()
        .flatten()
        .find_map(|m| {
            m.get("annotations")?
                .get(EXCLUDE_PORTS_ANNOTATION)?
                .as_str()
        })
        .map(str::to_owned);
    let Some(spec) = template.get_mut("spec").and_then(Value::as_object_mut) else {
        return Outcome::NotAnnotated;
    };
    let named = |list: Option<&Value>, name: &str| {
        list.and_then(Value::as_array).is_some_and(|l| {
            l.iter()
                .any(|c| c.get("name").and_then(Value::as_str) == Some(name))
        })
    };
    if named(spec.get("initContainers"), PROXY_CONTAINER)
        || named(spec.get("containers"), PROXY_CONTAINER)
    {
        return Outcome::AlreadyInjected;
    }
    let warnings = uid_warnings(spec, with.proxy_uid);
    let init = spec
        .entry("initContainers")
        .or_insert_with(|| Value::Array(Vec::new()));
    if let Value::Array(init) = init {
        // First: the rules exist before any other container can open a connection, and
        // the proxy is up before the app (and any later init container) starts.
        init.insert(0, capture_container(with, exclude_ports.as_deref()));
        init.insert(1, proxy_container(with));
    }
    let volumes = spec
        .entry("volumes")
        .or_insert_with(|| Value::Array(Vec::new()));
    if let Value::Array(volumes) = volumes {
        volumes.extend(proxy_volumes());
    }
    Outcome::Injected { warnings }
}

/// An app container (or the pod) running as the proxy's UID would escape capture.
fn uid_warnings(spec: &Map<String, Value>, proxy_uid: u32) -> Vec<String> {
    let runs_as = |sc: Option<&Value>| sc.and_then(|s| s.get("runAsUser")).and_then(Value::as_u64);
    let mut warnings = Vec::new();
    if runs_as(spec.get("securityContext")) == Some(u64::from(proxy_uid)) {
        warnings.push(format!(
            "the pod runs as UID {proxy_uid}, the proxy's: its connections escape capture \
             (choose another UID, or --proxy-uid)"
        ));
    }
    for list in ["containers", "initContainers"] {
        for c in spec
            .get(list)
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            if runs_as(c.get("securityContext")) == Some(u64::from(proxy_uid)) {
                let name = c.get("name").and_then(Value::as_str).unwrap_or("?");
                warnings.push(format!(
                    "container {name} runs as UID {proxy_uid}, the proxy's: its connections \
                     escape capture (choose another UID, or --proxy-uid)"
                ));
            }
        }
    }
    warnings
}

fn capture_container(with: &Injection, exclude_ports: Option<&str>) -> Value {
    let mut args = vec![
        "install".to_owned(),
        format!("--service-cidr={}", with.service_cidrs.join(",")),
        format!("--proxy-uid={}", with.proxy_uid),
        format!("--to-port={}", with.outbound_port),
    ];
    if let Some(ports) = exclude_ports.filter(|p| !p.trim().is_empty()) {
        args.push(format!("--exclude-port={}", ports.trim()));
    }
    json!({
        "name": CAPTURE_CONTAINER,
        "image": with.capture_image,
        "args": args,
        // Root with NET_ADMIN only, and only while the pod starts (docs/security.md).
        "securityContext": {
            "runAsUser": 0,
            "runAsNonRoot": false,
            "allowPrivilegeEscalation": false,
            "readOnlyRootFilesystem": true,
            "capabilities": {"drop": ["ALL"], "add": ["NET_ADMIN"]},
        },
    })
}

fn proxy_container(with: &Injection) -> Value {
    let ready = json!({"httpGet": {"path": "/ready", "port": ADMIN_PORT}});
    json!({
        "name": PROXY_CONTAINER,
        "image": with.proxy_image,
        // A native sidecar: started before the app, stopped after it.
        "restartPolicy": "Always",
        "args": [
            format!("--controller={}", with.controller),
            "--controller-ca-file=/var/run/fairway/controller-ca/ca.crt",
            "--controller-token-file=/var/run/secrets/fairway/token",
            format!("--listen=127.0.0.1:{LISTEN_PORT}"),
            format!("--listen=[::1]:{LISTEN_PORT}"),
            // Capture redirects IPv4 to 127.0.0.1 and IPv6 to ::1 (skipped without IPv6).
            format!("--outbound-listen=127.0.0.1:{}", with.outbound_port),
            format!("--outbound-listen=[::1]:{}", with.outbound_port),
            format!("--admin-addr=0.0.0.0:{ADMIN_PORT}"),
            "--id=$(POD_NAME)",
            "--node=$(NODE_NAME)",
            // Bare hosts (`orders`) resolve in the pod's namespace, as its DNS does.
            "--namespace=$(POD_NAMESPACE)",
        ],
        "env": [
            {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
            {"name": "POD_NAMESPACE", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
            {"name": "NODE_NAME", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
        ],
        "ports": [{"name": "fairway-admin", "containerPort": ADMIN_PORT}],
        // The app starts once this succeeds: the proxy has its first table.
        "startupProbe": {"httpGet": {"path": "/ready", "port": ADMIN_PORT}, "periodSeconds": 1, "failureThreshold": 120},
        "readinessProbe": ready,
        "livenessProbe": {"httpGet": {"path": "/live", "port": ADMIN_PORT}},
        "securityContext": {
            "runAsUser": with.proxy_uid,
            "runAsGroup": with.proxy_uid,
            "runAsNonRoot": true,
            "allowPrivilegeEscalation": false,
            "readOnlyRootFilesystem": true,
            "capabilities": {"drop": ["ALL"]},
        },
        "volumeMounts": [
            {"name": "fairway-discovery-token", "mountPath": "/var/run/secrets/fairway", "readOnly": true},
            {"name": "fairway-controller-ca", "mountPath": "/var/run/fairway/controller-ca", "readOnly": true},
        ],
    })
}

fn proxy_volumes() -> [Value; 2] {
    [
        json!({"name": "fairway-discovery-token", "projected": {"sources": [
            {"serviceAccountToken": {"audience": "fairway", "expirationSeconds": 600, "path": "token"}}
        ]}}),
        json!({"name": "fairway-controller-ca", "secret": {
            "secretName": "fairway-controller-tls", "items": [{"key": "ca.crt", "path": "ca.crt"}]
        }}),
    ]
}
