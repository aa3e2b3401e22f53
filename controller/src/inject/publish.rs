//! The controller's CA where injected proxies can read it: ConfigMap
//! `fairway-controller-ca` (key `ca.crt`) in the namespace of every pod the webhook
//! injects, written before the webhook answers, so the pod's volume (the template mounts
//! that ConfigMap) has it when the kubelet starts the proxy. Without it a user would
//! copy the CA into each namespace by hand, and the fix would no longer be one
//! annotation.
//!
//! Server-side apply, field manager `fairway-controller`: idempotent, and the only
//! permissions it needs are `create` and `patch` on ConfigMaps. Each namespace is
//! written once per CA (a rollout of hundreds of pods costs one write), and again after
//! [`REFRESH`] or when the CA file changes, which is how a new CA reaches pods (the
//! kubelet updates ConfigMap volumes in place).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Patch, PatchParams};

/// The ConfigMap the template mounts, and its key.
pub const CA_CONFIG_MAP: &str = "fairway-controller-ca";
pub const CA_KEY: &str = "ca.crt";
/// How long a namespace's ConfigMap is trusted to hold the current CA before it is
/// written again (someone may have deleted or edited it).
pub const REFRESH: Duration = Duration::from_secs(300);
const FIELD_MANAGER: &str = "fairway-controller";

#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error("reading the CA file {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the CA file {0} holds no PEM certificate")]
    NotPem(PathBuf),
    #[error("writing ConfigMap {CA_CONFIG_MAP} in namespace {namespace}: {source}")]
    Apply {
        namespace: String,
        #[source]
        source: kube::Error,
    },
}

/// The ConfigMap for `namespace` holding `pem`.
pub fn config_map(namespace: &str, pem: &str) -> ConfigMap {
    ConfigMap {
        metadata: ObjectMeta {
            name: Some(CA_CONFIG_MAP.to_owned()),
            namespace: Some(namespace.to_owned()),
            labels: Some(
                [(
                    "app.kubernetes.io/managed-by".to_owned(),
                    FIELD_MANAGER.to_owned(),
                )]
                .into(),
            ),
            ..ObjectMeta::default()
        },
        data: Some([(CA_KEY.to_owned(), pem.to_owned())].into()),
        ..ConfigMap::default()
    }
}

/// A namespace's last write: which CA (its SHA-256) and when.
type Written = ([u8; 32], Instant);

/// Whether `namespace` needs a write of the CA whose digest is `digest`.
pub fn due(last: Option<&Written>, digest: &[u8; 32], now: Instant) -> bool {
    match last {
        Some((written, at)) => written != digest || now.duration_since(*at) >= REFRESH,
        None => true,
    }
}

/// Publishes the CA from one file into the namespaces of injected pods.
pub struct CaPublisher {
    client: kube::Client,
    file: PathBuf,
    written: Mutex<HashMap<String, Written>>,
}

impl std::fmt::Debug for CaPublisher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CaPublisher")
            .field("file", &self.file)
            .finish_non_exhaustive()
    }
}

impl CaPublisher {
    pub fn new(client: kube::Client, file: PathBuf) -> Self {
        CaPublisher {
            client,
            file,
            written: Mutex::default(),
        }
    }

    /// Makes sure `namespace` has the current CA (the file is read each time: small,
    /// and a rotated CA must not wait for a restart).
    pub async fn ensure(&self, namespace: &str) -> Result<(), PublishError> {
        let pem = tokio::fs::read_to_string(&self.file)
            .await
            .map_err(|source| PublishError::Read {
                path: self.file.clone(),
                source,
            })?;
        if !pem.contains("-----BEGIN CERTIFICATE-----") {
            return Err(PublishError::NotPem(self.file.clone()));
        }
        let digest = sha256(&pem);
        let last = self.lock().get(namespace).copied();
        if !due(last.as_ref(), &digest, Instant::now()) {
            return Ok(());
        }
        let api: kube::Api<ConfigMap> = kube::Api::namespaced(self.client.clone(), namespace);
        let params = PatchParams::apply(FIELD_MANAGER).force();
        api.patch(
            CA_CONFIG_MAP,
            &params,
            &Patch::Apply(config_map(namespace, &pem)),
        )
        .await
        .map_err(|source| PublishError::Apply {
            namespace: namespace.to_owned(),
            source,
        })?;
        tracing::info!(%namespace, config_map = CA_CONFIG_MAP, "published the controller's CA");
        self.lock()
            .insert(namespace.to_owned(), (digest, Instant::now()));
        Ok(())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Written>> {
        self.written
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

fn sha256(text: &str) -> [u8; 32] {
    let digest = ring::digest::digest(&ring::digest::SHA256, text.as_bytes());
    let mut out = [0; 32];
    out.copy_from_slice(digest.as_ref());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_namespace_is_written_once_per_ca_and_again_after_the_refresh() {
        let now = Instant::now();
        let (one, two) = ([1; 32], [2; 32]);
        assert!(due(None, &one, now), "never written");
        let written = (one, now);
        assert!(!due(Some(&written), &one, now + REFRESH / 2));
        assert!(due(Some(&written), &two, now), "a new CA");
        assert!(due(Some(&written), &one, now + REFRESH), "refreshed");
    }

    #[test]
    fn the_config_map_is_what_the_template_mounts() {
        let cm = config_map("shop", "PEM");
        assert_eq!(cm.metadata.name.as_deref(), Some("fairway-controller-ca"));
        assert_eq!(cm.metadata.namespace.as_deref(), Some("shop"));
        let data = cm.data.expect("data");
        assert_eq!(data.get("ca.crt").map(String::as_str), Some("PEM"));
        let template = super::super::template::Template::default_for(&Default::default());
        let text = serde_saphyr::to_string(&template).expect("template");
        assert!(
            text.contains(CA_CONFIG_MAP) && text.contains(CA_KEY),
            "the injected proxy mounts this ConfigMap's key"
        );
    }
}
