//! `fairway inject`: the sidecar injection of issue 17, offline. Reads Kubernetes YAML
//! (one document or several) on stdin and writes it to stdout with Fairway's capture
//! init container and proxy sidecar added to every pod annotated
//! `fairway.dev/inject: enabled`. No cluster, no kubeconfig: for GitOps repositories, and
//! to read what injection does.
//!
//! Data flows: [`Args`] become one [`Injection`]; [`inject_documents`] splits the input
//! into documents, finds each one's pod template (a Pod's own, `spec.template` of a
//! Deployment, StatefulSet, DaemonSet, ReplicaSet or Job, a CronJob's
//! `spec.jobTemplate.spec.template`, a PodTemplate's `template`) and hands it to `pod`
//! (pure). A document without the annotation is written back exactly as it was read; an
//! injected one is written as block-style YAML.

pub mod pod;

use serde_json::Value;

pub use pod::{INJECT_ANNOTATION, Injection, Outcome};

/// The proxy image `fairway inject` uses unless `--proxy-image` says otherwise.
pub const DEFAULT_PROXY_IMAGE: &str = concat!(
    "ghcr.io/fairway-dev/fairway-proxy:",
    env!("CARGO_PKG_VERSION")
);
/// The capture init image (docker/capture.Dockerfile).
pub const DEFAULT_CAPTURE_IMAGE: &str = concat!(
    "ghcr.io/fairway-dev/fairway-capture:",
    env!("CARGO_PKG_VERSION")
);
/// kubeadm's default Service range; other clusters pass `--service-cidr`.
pub const DEFAULT_SERVICE_CIDR: &str = "10.96.0.0/12";

/// `fairway inject` flags.
#[derive(Clone, Debug, clap::Args)]
pub struct Args {
    /// The proxy sidecar's image.
    #[arg(long, default_value = DEFAULT_PROXY_IMAGE)]
    pub proxy_image: String,
    /// The capture init container's image.
    #[arg(long, default_value = DEFAULT_CAPTURE_IMAGE)]
    pub capture_image: String,
    /// The controller's Discovery address.
    #[arg(long, default_value = fairway_proxy::config::DEFAULT_CONTROLLER)]
    pub controller: String,
    /// The cluster's Service range(s) to capture (repeat, or separate with commas).
    #[arg(long, value_delimiter = ',', default_value = DEFAULT_SERVICE_CIDR)]
    pub service_cidr: Vec<fairway_proxy::capture::Cidr>,
    /// The proxy's UID, which capture leaves alone.
    #[arg(long, default_value_t = fairway_proxy::capture::DEFAULT_PROXY_UID)]
    pub proxy_uid: u32,
    /// The proxy's outbound port.
    #[arg(long, default_value_t = fairway_proxy::capture::DEFAULT_OUTBOUND_PORT)]
    pub outbound_port: u16,
}

impl From<Args> for Injection {
    fn from(args: Args) -> Injection {
        Injection {
            proxy_image: args.proxy_image,
            capture_image: args.capture_image,
            controller: args.controller,
            service_cidrs: args.service_cidr.iter().map(ToString::to_string).collect(),
            proxy_uid: args.proxy_uid,
            outbound_port: args.outbound_port,
        }
    }
}

/// Why the input could not be injected.
#[derive(Debug, thiserror::Error)]
pub enum InjectError {
    #[error("document {index}: not valid YAML: {message}")]
    Parse { index: usize, message: String },
    #[error("document {index}: writing it as YAML: {message}")]
    Write { index: usize, message: String },
}

/// The output for `input`, and a warning per injected pod that needs the user's eye.
pub fn inject_documents(
    input: &str,
    with: &Injection,
) -> Result<(String, Vec<String>), InjectError> {
    let mut out = Vec::new();
    let mut warnings = Vec::new();
    for (index, text) in documents(input).into_iter().enumerate() {
        let parsed: Option<Value> =
            serde_saphyr::from_str(text).map_err(|e| InjectError::Parse {
                index,
                message: e.to_string(),
            })?;
        let Some(mut object) = parsed.filter(|v| !v.is_null()) else {
            out.push(text.to_owned());
            continue;
        };
        match inject_object(&mut object, with) {
            Outcome::Injected { warnings: w } => {
                let name = object_name(&object);
                warnings.extend(w.into_iter().map(|w| format!("{name}: {w}")));
                let yaml = serde_saphyr::to_string(&object).map_err(|e| InjectError::Write {
                    index,
                    message: e.to_string(),
                })?;
                out.push(yaml);
            }
            Outcome::NotAnnotated | Outcome::AlreadyInjected => out.push(text.to_owned()),
        }
    }
    let mut joined = String::new();
    for (i, doc) in out.iter().enumerate() {
        if i > 0 {
            joined.push_str("---\n");
        }
        joined.push_str(doc);
        if !doc.is_empty() && !doc.ends_with('\n') {
            joined.push('\n');
        }
    }
    Ok((joined, warnings))
}

/// Injects into `object`'s pod template, wherever its kind keeps it.
fn inject_object(object: &mut Value, with: &Injection) -> Outcome {
    let owner = object.get("metadata").cloned();
    let kind = object
        .get("kind")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    let template = match kind.as_str() {
        // A Pod is its own template; its metadata is the only one to read.
        "Pod" => return pod::inject(object, None, with),
        "PodTemplate" => object.get_mut("template"),
        "CronJob" => object.pointer_mut("/spec/jobTemplate/spec/template"),
        _ => object.pointer_mut("/spec/template"),
    };
    match template {
        Some(template) => pod::inject(template, owner.as_ref(), with),
        None => Outcome::NotAnnotated,
    }
}

fn object_name(object: &Value) -> String {
    let kind = object
        .get("kind")
        .and_then(Value::as_str)
        .unwrap_or("object");
    let name = object
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("?");
    format!("{kind}/{name}")
}

/// The documents of a YAML stream, split at `---` lines, each as its original text. A
/// leading `---` starts the first document rather than ending an empty one.
fn documents(input: &str) -> Vec<&str> {
    let mut docs = Vec::new();
    let mut start = 0;
    let mut offset = 0;
    for line in input.split_inclusive('\n') {
        let bare = line.trim_end();
        if bare == "---" || bare.starts_with("--- ") {
            if offset > start || !docs.is_empty() {
                docs.push(&input[start..offset]);
            }
            start = offset + line.len();
        }
        offset += line.len();
    }
    if start < input.len() || docs.is_empty() {
        docs.push(&input[start..]);
    }
    docs
}

#[cfg(test)]
mod tests;
