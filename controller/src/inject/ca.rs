//! The controller's CA as the ConfigMap `fairway-controller-ca` (key `ca.crt`) in each
//! namespace whose pods the webhook gives a drain hook or a proxy: both verify the
//! controller's certificate with it, and the injected volume (`optional: true`) mounts
//! it. As Istio publishes its root certificate, so users need not copy it by hand.
//!
//! Written at admission, before the pod is answered, so it exists when the kubelet
//! mounts the volume; once per namespace and CA (a restart, or a new CA, writes again).
//! A failure is logged and the pod is injected anyway: the hook then falls back to its
//! sleep, and the next injected pod of that namespace tries again.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{ObjectMeta, Patch, PatchParams};

/// The ConfigMap's name, which the injected volume names (`template.rs`).
pub const CONFIG_MAP: &str = "fairway-controller-ca";
/// The key holding the PEM bundle.
pub const KEY: &str = "ca.crt";
/// The field manager of our writes (server-side apply).
const MANAGER: &str = "fairway-controller";
/// How long an admission waits for the write: the apiserver's webhook timeout is
/// longer, and a pod must never wait on us for long.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(3);

#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error("reading the CA file {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("applying ConfigMap {namespace}/{CONFIG_MAP}: {source}")]
    Apply {
        namespace: String,
        #[source]
        source: kube::Error,
    },
    #[error("applying ConfigMap {namespace}/{CONFIG_MAP}: no answer within {WRITE_TIMEOUT:?}")]
    Timeout { namespace: String },
}

/// The ConfigMap holding `pem` in `namespace`.
pub fn config_map(namespace: &str, pem: &str) -> ConfigMap {
    ConfigMap {
        metadata: ObjectMeta {
            name: Some(CONFIG_MAP.to_owned()),
            namespace: Some(namespace.to_owned()),
            labels: Some(BTreeMap::from([(
                "app.kubernetes.io/managed-by".to_owned(),
                MANAGER.to_owned(),
            )])),
            ..ObjectMeta::default()
        },
        data: Some(BTreeMap::from([(KEY.to_owned(), pem.to_owned())])),
        ..ConfigMap::default()
    }
}

/// Writes the CA read from `file` into the namespaces it is asked for.
pub struct CaPublisher {
    client: kube::Client,
    file: PathBuf,
    /// Per namespace, the bundle last written there.
    written: Mutex<HashMap<String, String>>,
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

    /// Makes sure `namespace` has the current CA. The file is read each time (a few
    /// hundred bytes, per injected pod): a renewed CA reaches the namespaces with their
    /// next injected pod.
    pub async fn ensure(&self, namespace: &str) -> Result<(), PublishError> {
        let pem = std::fs::read_to_string(&self.file).map_err(|source| PublishError::Read {
            path: self.file.clone(),
            source,
        })?;
        let current = |written: &HashMap<String, String>| written.get(namespace) == Some(&pem);
        if current(&self.written.lock().unwrap_or_else(PoisonError::into_inner)) {
            return Ok(());
        }
        let api = kube::Api::<ConfigMap>::namespaced(self.client.clone(), namespace);
        let patch = Patch::Apply(config_map(namespace, &pem));
        let params = PatchParams::apply(MANAGER).force();
        let applied = tokio::time::timeout(WRITE_TIMEOUT, api.patch(CONFIG_MAP, &params, &patch));
        match applied.await {
            Ok(Ok(_)) => {}
            Ok(Err(source)) => {
                let namespace = namespace.to_owned();
                return Err(PublishError::Apply { namespace, source });
            }
            Err(_) => {
                let namespace = namespace.to_owned();
                return Err(PublishError::Timeout { namespace });
            }
        }
        tracing::info!(%namespace, "published the controller's CA as ConfigMap {CONFIG_MAP}");
        (self.written.lock().unwrap_or_else(PoisonError::into_inner))
            .insert(namespace.to_owned(), pem);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_config_map_is_named_as_the_injected_volume_wants_and_holds_the_bundle() {
        let map = config_map("shop", "-----BEGIN CERTIFICATE-----\n");
        assert_eq!(map.metadata.name.as_deref(), Some("fairway-controller-ca"));
        assert_eq!(map.metadata.namespace.as_deref(), Some("shop"));
        assert_eq!(
            map.data
                .as_ref()
                .and_then(|d| d.get("ca.crt"))
                .map(String::as_str),
            Some("-----BEGIN CERTIFICATE-----\n")
        );
        let template = crate::inject::template::Template::default_for(&Default::default());
        let template = serde_json::to_value(&template).expect("a template serializes");
        let volumes = template["volumes"].as_array().cloned().unwrap_or_default();
        assert!(
            volumes.iter().any(|v| v["configMap"]["name"] == CONFIG_MAP),
            "the default template mounts the ConfigMap this writes: {volumes:?}"
        );
    }
}
