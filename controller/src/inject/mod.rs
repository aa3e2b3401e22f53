//! Injection: what a pod annotated for Fairway gets, decided as a pure function of the
//! pod template and the [`Template`]. Two callers: the mutating webhook (`webhook`),
//! which answers the apiserver with a JSON patch, and `fairway inject`, which rewrites
//! YAML offline (`document`).
//!
//! - `fairway.dev/inject: enabled`: the capture init container and the proxy as a
//!   native sidecar (an init container with `restartPolicy: Always`, so it is ready
//!   before the app and the app's own init containers start, and stops after the app).
//! - `fairway.dev/drain: enabled`: the drain hook (design.md section 10), beside the
//!   proxy or alone (backend pods: no capture, no proxy). Asked for by its own
//!   annotation for now, see [`Wanted::of`].
//!
//! What it injects it marks (`fairway.dev/injected`, [`mark`]); `events` decides the
//! Warning Events the controller records on pods it missed or whose capture failed.
//!
//! The pod is edited as JSON, not through typed `PodSpec`s: a round trip through types
//! would drop fields newer than our Kubernetes version, and the webhook's patch would
//! then remove them.

pub mod document;
pub mod events;
pub mod publish;
pub mod serve;
pub mod template;
pub mod webhook;

use serde_json::{Map, Value, json};

pub use template::Template;

/// Asks for the proxy, its capture rules and the drain hook.
pub const INJECT_ANNOTATION: &str = "fairway.dev/inject";
/// Asks for the drain hook alone.
pub const DRAIN_ANNOTATION: &str = "fairway.dev/drain";
/// The one value that turns either on.
pub const ENABLED: &str = "enabled";

/// Set by the injector on what it changed: the label (`proxy`, `drain` or `proxy-drain`,
/// what the pod asked for and got) selects injected pods on the server (the controller
/// watches those with capture for a failed capture step, `events`); the annotation lists
/// the containers added, for people.
pub const INJECTED_LABEL: &str = "fairway.dev/injected";
pub const INJECTED_ANNOTATION: &str = "fairway.dev/injected";
/// Set by the webhook on a pod it was asked to inject and could not: why (the
/// controller's `NotInjected` Event then says so instead of blaming an outage).
pub const INJECT_ERROR_ANNOTATION: &str = "fairway.dev/inject-error";

/// Destination ports a pod's capture leaves alone, comma-separated (`5432,6379`).
pub const EXCLUDE_PORTS_ANNOTATION: &str = "fairway.dev/capture-exclude-ports";

/// What a pod's annotations ask for, with the capture's exclusions.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Asked {
    pub wanted: Wanted,
    pub exclude_ports: Option<String>,
}

impl Asked {
    pub fn of(annotations: Option<&Map<String, Value>>) -> Asked {
        let exclude_ports = annotations
            .and_then(|a| a.get(EXCLUDE_PORTS_ANNOTATION))
            .and_then(Value::as_str)
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .map(str::to_owned);
        Asked {
            wanted: Wanted::of(annotations),
            exclude_ports,
        }
    }
}

impl From<Wanted> for Asked {
    fn from(wanted: Wanted) -> Asked {
        Asked {
            wanted,
            exclude_ports: None,
        }
    }
}

/// What a pod's annotations ask for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Wanted {
    Nothing,
    /// The capture step and the proxy.
    Proxy,
    /// The drain hook alone.
    Drain,
    /// Both.
    All,
}

impl Wanted {
    /// The drain hook is asked for by its own annotation, with or without the proxy: the
    /// handshake still stalled traffic on a contended real node (docs/benchmarks.md), so
    /// a pod gets it only when it asks, until that is understood.
    pub fn of(annotations: Option<&Map<String, Value>>) -> Wanted {
        let on = |key: &str| {
            annotations
                .and_then(|a| a.get(key))
                .and_then(Value::as_str)
                .is_some_and(|v| v == ENABLED)
        };
        match (on(INJECT_ANNOTATION), on(DRAIN_ANNOTATION)) {
            (true, true) => Wanted::All,
            (true, false) => Wanted::Proxy,
            (false, true) => Wanted::Drain,
            (false, false) => Wanted::Nothing,
        }
    }

    /// The value of [`INJECTED_LABEL`] on a pod that got what it asked for.
    pub fn label(self) -> Option<&'static str> {
        match self {
            Wanted::Nothing => None,
            Wanted::Proxy => Some("proxy"),
            Wanted::Drain => Some("drain"),
            Wanted::All => Some("proxy-drain"),
        }
    }

    fn proxy(self) -> bool {
        matches!(self, Wanted::Proxy | Wanted::All)
    }

    fn drain(self) -> bool {
        matches!(self, Wanted::Drain | Wanted::All)
    }
}

/// What an injection did, for the webhook's warnings and `fairway inject`'s stderr.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Injected {
    /// Names of the containers added, in order.
    pub added: Vec<String>,
    /// Things the user should know, each one sentence.
    pub warnings: Vec<String>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum InjectError {
    #[error("the pod spec is not an object")]
    NotAnObject,
    #[error("the pod has no containers")]
    NoContainers,
    #[error("volume {0:?} already exists in the pod with another definition")]
    VolumeClash(String),
    #[error("{EXCLUDE_PORTS_ANNOTATION}: {0:?} is not a comma-separated list of ports")]
    ExcludePorts(String),
}

/// Edits `spec` (a PodSpec as JSON) as `wanted` asks. Injecting twice changes nothing:
/// a pod that already has the template's containers is left as it is.
pub fn inject(
    spec: &mut Value,
    asked: &Asked,
    template: &Template,
) -> Result<Injected, InjectError> {
    let mut done = Injected::default();
    let wanted = asked.wanted;
    if wanted == Wanted::Nothing {
        return Ok(done);
    }
    let spec = spec.as_object_mut().ok_or(InjectError::NotAnObject)?;
    let apps = spec
        .get("containers")
        .and_then(Value::as_array)
        .filter(|c| !c.is_empty())
        .ok_or(InjectError::NoContainers)?
        .clone();
    let has = |name: &str| {
        ["initContainers", "containers"].iter().any(|list| {
            spec.get(*list)
                .and_then(Value::as_array)
                .is_some_and(|cs| cs.iter().any(|c| c["name"] == name))
        })
    };
    let add_drain = (template.drain.as_ref()).filter(|d| wanted.drain() && !has(&d.copy.name));
    let add_proxy = wanted.proxy() && !has(&template.proxy.name);
    if add_drain.is_none() && !add_proxy {
        return Ok(done);
    }
    // In the order they start: the hook's copy, the rules, then the proxy.
    let mut front: Vec<Value> = Vec::new();
    let mut volumes: Vec<Value> = Vec::new();
    if let Some(drain) = add_drain {
        front.push(to_json(&drain.copy));
        volumes.extend(drain.volumes.iter().map(to_json));
    }
    if add_proxy {
        if let Some(capture) = &template.capture {
            let mut capture = to_json(capture);
            if let Some(ports) = &asked.exclude_ports {
                let valid = ports
                    .split(',')
                    .all(|p| p.trim().parse::<u16>().is_ok_and(|p| p > 0));
                if !valid {
                    return Err(InjectError::ExcludePorts(ports.clone()));
                }
                let arg = json!(format!("--exclude-port={}", ports.replace(' ', "")));
                if let Some(Value::Array(args)) = capture.get_mut("args") {
                    args.push(arg);
                }
            }
            front.push(capture);
        }
        let mut proxy = to_json(&template.proxy);
        proxy["restartPolicy"] = json!("Always");
        front.push(proxy);
        done.warnings
            .extend(uid_warnings(spec, &apps, template.proxy_uid));
    }
    // The token and CA: the proxy's, and the hook's too.
    volumes.extend(template.volumes.iter().map(to_json));
    add_volumes(spec, volumes)?;
    if let Some(drain) = add_drain {
        hook_apps(spec, drain, &mut done.warnings);
    }
    done.added = front
        .iter()
        .map(|c| c["name"].as_str().unwrap_or("").to_owned())
        .collect();
    let inits = spec
        .entry("initContainers")
        .or_insert_with(|| Value::Array(Vec::new()));
    if let Value::Array(inits) = inits {
        inits.splice(0..0, front);
    }
    Ok(done)
}

/// Marks pod metadata `meta` (created if missing) as injected: [`INJECTED_LABEL`] and
/// [`INJECTED_ANNOTATION`]. Nothing when nothing was added (a pod injected before keeps
/// its marks).
pub fn mark(meta: &mut Value, wanted: Wanted, done: &Injected) {
    let Some(label) = wanted.label().filter(|_| !done.added.is_empty()) else {
        return;
    };
    set(meta, "labels", INJECTED_LABEL, label.to_owned());
    set(
        meta,
        "annotations",
        INJECTED_ANNOTATION,
        done.added.join(","),
    );
}

/// Marks pod metadata `meta` as asking for injection and refused, with the reason.
pub fn mark_refused(meta: &mut Value, error: &InjectError) {
    set(
        meta,
        "annotations",
        INJECT_ERROR_ANNOTATION,
        error.to_string(),
    );
}

fn set(meta: &mut Value, map: &str, key: &str, value: String) {
    if !meta.is_object() {
        *meta = json!({});
    }
    if !meta[map].is_object() {
        meta[map] = json!({});
    }
    meta[map][key] = Value::String(value);
}

fn to_json<T: serde::Serialize>(value: &T) -> Value {
    serde_json::to_value(value).expect("Kubernetes types serialize")
}

/// Adds `volumes` by name; one already there is fine if it is the same, an error if not
/// (the pod would mount something else where the proxy expects its token).
fn add_volumes(spec: &mut Map<String, Value>, volumes: Vec<Value>) -> Result<(), InjectError> {
    let list = spec
        .entry("volumes")
        .or_insert_with(|| Value::Array(Vec::new()));
    let Value::Array(list) = list else {
        return Err(InjectError::NotAnObject);
    };
    for volume in volumes {
        match list.iter().find(|v| v["name"] == volume["name"]) {
            Some(same) if *same == volume => {}
            Some(_) => {
                let name = volume["name"].as_str().unwrap_or("").to_owned();
                return Err(InjectError::VolumeClash(name));
            }
            None => list.push(volume),
        }
    }
    Ok(())
}

/// Gives every app container the `preStop` hook and its mounts. A container with its
/// own `preStop` keeps it: replacing a user's hook silently would be worse than a pod
/// that drains by the old rules, so it is a warning.
fn hook_apps(
    spec: &mut Map<String, Value>,
    drain: &template::DrainTemplate,
    warnings: &mut Vec<String>,
) {
    let Some(Value::Array(apps)) = spec.get_mut("containers") else {
        return;
    };
    for app in apps.iter_mut() {
        let name = app["name"].as_str().unwrap_or("").to_owned();
        if !app["lifecycle"]["preStop"].is_null() {
            warnings.push(format!(
                "container {name:?} has its own preStop hook; the drain hook was not added to it"
            ));
            continue;
        }
        let Some(app) = app.as_object_mut() else {
            continue;
        };
        let lifecycle = app.entry("lifecycle").or_insert_with(|| json!({}));
        lifecycle["preStop"] = json!({"exec": {"command": drain.pre_stop}});
        let mounts = app
            .entry("volumeMounts")
            .or_insert_with(|| Value::Array(Vec::new()));
        if let Value::Array(mounts) = mounts {
            for mount in drain.mounts.iter().map(to_json) {
                if !mounts.iter().any(|m| m["mountPath"] == mount["mountPath"]) {
                    mounts.push(mount);
                }
            }
        }
    }
}

/// An app running as the proxy's UID would be exempt from capture like the proxy.
fn uid_warnings(spec: &Map<String, Value>, apps: &[Value], uid: i64) -> Vec<String> {
    let pod_uid = spec
        .get("securityContext")
        .and_then(|s| s["runAsUser"].as_i64());
    apps.iter()
        .filter(|app| app["securityContext"]["runAsUser"].as_i64().or(pod_uid) == Some(uid))
        .map(|app| {
            format!(
                "container {:?} runs as UID {uid}, the proxy's: its connections are not captured",
                app["name"].as_str().unwrap_or("")
            )
        })
        .collect()
}

#[cfg(test)]
mod tests;
