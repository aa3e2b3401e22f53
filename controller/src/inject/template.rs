//! What the injector adds, as data: the chart renders it (ConfigMap `<release>-inject`,
//! key `template.yaml`, from the same helpers as the DaemonSet's proxy container), the
//! webhook reads it once at start, and `fairway inject` uses it from `--template` or
//! builds the default below from an image and a controller address.

use k8s_openapi::api::core::v1::{Container, Volume, VolumeMount};
use serde::{Deserialize, Serialize};

/// The proxy's own user: not 65532, the images' and distroless's usual non-root user,
/// which an app may run as too and would then silently escape capture (rules exempt the
/// proxy's UID). The same as `fairway-capture`'s default (tests/tests/inject.rs checks).
pub const PROXY_UID: i64 = 2140;
/// The injected proxy's container name (an init container with `restartPolicy: Always`).
pub const PROXY_CONTAINER: &str = "fairway-proxy";
/// The capture init container's name in the built-in template (and the chart's).
pub const CAPTURE_CONTAINER: &str = "fairway-capture";
/// Where the injected proxy serves its admin endpoints (`/ready` gates the app's start).
pub const ADMIN_PORT: i32 = 4191;
/// Where capture sends the pod's outbound connections (`fairway-capture --to-port`).
pub const OUTBOUND_PORT: i32 = 4143;
/// The default proxy image, as the chart's `proxy.image`.
pub const DEFAULT_IMAGE: &str = concat!(
    "ghcr.io/fairway-dev/fairway-proxy:",
    env!("CARGO_PKG_VERSION")
);
/// The default drain hook image (docker/fairway.Dockerfile): `fairway copy-hook`.
pub const DEFAULT_HOOK_IMAGE: &str =
    concat!("ghcr.io/fairway-dev/fairway:", env!("CARGO_PKG_VERSION"));
/// The default capture init image (docker/capture.Dockerfile).
pub const DEFAULT_CAPTURE_IMAGE: &str = concat!(
    "ghcr.io/fairway-dev/fairway-capture:",
    env!("CARGO_PKG_VERSION")
);
/// The default controller, as docs/install.md installs the chart (release and namespace
/// `fairway`).
pub const DEFAULT_CONTROLLER: &str = "https://fairway-controller.fairway.svc:18000";
/// kubeadm's default Service range.
pub const DEFAULT_SERVICE_CIDR: &str = "10.96.0.0/12";

/// What the built-in template is made from (`fairway inject`'s flags).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Defaults {
    pub image: String,
    pub capture_image: String,
    pub hook_image: String,
    pub controller: String,
    pub service_cidrs: Vec<String>,
}

impl Default for Defaults {
    fn default() -> Self {
        Defaults {
            image: DEFAULT_IMAGE.to_owned(),
            capture_image: DEFAULT_CAPTURE_IMAGE.to_owned(),
            hook_image: DEFAULT_HOOK_IMAGE.to_owned(),
            controller: DEFAULT_CONTROLLER.to_owned(),
            service_cidrs: vec![DEFAULT_SERVICE_CIDR.to_owned()],
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Template {
    /// The proxy, added as a native sidecar (an init container with
    /// `restartPolicy: Always`, which the injector sets), so it is ready before the app
    /// starts and outlives it.
    pub proxy: Container,
    /// The init container that installs the capture rules, run before the proxy.
    #[serde(default)]
    pub capture: Option<Container>,
    /// The drain hook (`fairway.dev/drain: enabled`, or with the proxy).
    #[serde(default)]
    pub drain: Option<DrainTemplate>,
    /// Pod volumes the containers above mount.
    #[serde(default)]
    pub volumes: Vec<Volume>,
    /// The proxy's UID, for the warning when an app runs as it too.
    #[serde(default = "default_uid")]
    pub proxy_uid: i64,
}

/// The drain handshake's hook: an init container copies the `fairway` binary into a
/// shared volume, and every app container runs it in `preStop` (design.md section 10).
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DrainTemplate {
    /// Copies the binary (and whatever it needs) into the shared volume.
    pub copy: Container,
    /// The `preStop` exec command of each app container.
    pub pre_stop: Vec<String>,
    /// Mounts each app container gets for the hook (the binary, token, CA).
    #[serde(default)]
    pub mounts: Vec<VolumeMount>,
    /// Pod volumes of the hook.
    #[serde(default)]
    pub volumes: Vec<Volume>,
}

fn default_uid() -> i64 {
    PROXY_UID
}

#[derive(Debug, thiserror::Error)]
pub enum TemplateError {
    #[error("reading the injection template {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("the injection template {path} is not valid: {message}")]
    Parse { path: String, message: String },
    #[error("the injection template {path} has no proxy image")]
    NoImage { path: String },
}

impl Template {
    /// Reads the template the chart rendered.
    pub fn read(path: &std::path::Path) -> Result<Template, TemplateError> {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| TemplateError::Read {
            path: shown.clone(),
            source,
        })?;
        let template: Template =
            serde_saphyr::from_str(&text).map_err(|e| TemplateError::Parse {
                path: shown.clone(),
                message: e.to_string(),
            })?;
        if template.proxy.image.as_deref().is_none_or(str::is_empty) {
            return Err(TemplateError::NoImage { path: shown });
        }
        Ok(template)
    }

    /// The offline default: capture of the Service ranges, the proxy subscribing to the
    /// controller with the chart's defaults (TLS with the published CA, a projected
    /// ServiceAccount token), and the drain hook from the `fairway` image.
    pub fn default_for(with: &Defaults) -> Template {
        let yaml = DEFAULT_TEMPLATE
            .replace("{image}", &with.image)
            .replace("{capture_image}", &with.capture_image)
            .replace("{hook_image}", &with.hook_image)
            .replace("{cidrs}", &with.service_cidrs.join(","))
            .replace("{controller}", &with.controller)
            .replace("{uid}", &PROXY_UID.to_string())
            .replace("{admin}", &ADMIN_PORT.to_string())
            .replace("{outbound}", &OUTBOUND_PORT.to_string());
        serde_saphyr::from_str(&yaml).expect("the built-in template is valid")
    }
}

/// The built-in template, in the chart's shape (charts/fairway/templates/_helpers.tpl,
/// `fairway.inject.template`); `{...}` are filled in by [`Template::default_for`].
const DEFAULT_TEMPLATE: &str = r#"
capture:
  name: fairway-capture
  image: "{capture_image}"
  args: [install, "--service-cidr={cidrs}", "--proxy-uid={uid}", "--to-port={outbound}"]
  # A failure's reason (nft's error) in the pod's status, beside the kubelet's BackOff
  # Event: `kubectl describe pod` shows it without fetching logs.
  terminationMessagePolicy: FallbackToLogsOnError
  # Root with NET_ADMIN only, and only while the pod starts (docs/security.md).
  securityContext:
    runAsUser: 0
    runAsNonRoot: false
    allowPrivilegeEscalation: false
    readOnlyRootFilesystem: true
    capabilities: {drop: [ALL], add: [NET_ADMIN]}
proxy:
  name: fairway-proxy
  image: "{image}"
  args:
    - --controller={controller}
    - --controller-ca-file=/var/run/fairway/controller-ca/ca.crt
    - --controller-token-file=/var/run/fairway/token/token
    - --listen=127.0.0.1:4140
    - --listen=[::1]:4140
    # Capture redirects IPv4 to 127.0.0.1 and IPv6 to ::1 (skipped without IPv6).
    - --outbound-listen=127.0.0.1:{outbound}
    - --outbound-listen=[::1]:{outbound}
    - --admin-addr=0.0.0.0:{admin}
    - --id=$(POD_NAMESPACE)/$(POD_NAME)
    - --node=$(NODE_NAME)
    # Bare hosts (`orders`) resolve in the pod's namespace, as its DNS does.
    - --namespace=$(POD_NAMESPACE)
  env:
    - name: POD_NAME
      valueFrom: {fieldRef: {fieldPath: metadata.name}}
    - name: POD_NAMESPACE
      valueFrom: {fieldRef: {fieldPath: metadata.namespace}}
    - name: NODE_NAME
      valueFrom: {fieldRef: {fieldPath: spec.nodeName}}
  ports:
    - name: fairway-admin
      containerPort: {admin}
  startupProbe:
    httpGet: {path: /ready, port: {admin}}
    periodSeconds: 1
    failureThreshold: 120
  readinessProbe:
    httpGet: {path: /ready, port: {admin}}
    periodSeconds: 2
  livenessProbe:
    httpGet: {path: /live, port: {admin}}
  securityContext:
    runAsUser: {uid}
    runAsGroup: {uid}
    runAsNonRoot: true
    allowPrivilegeEscalation: false
    readOnlyRootFilesystem: true
    capabilities: {drop: [ALL]}
  volumeMounts:
    - {name: fairway-token, mountPath: /var/run/fairway/token, readOnly: true}
    - {name: fairway-controller-ca, mountPath: /var/run/fairway/controller-ca, readOnly: true}
drain:
  # The `fairway` image's binary, its loader (as `ld.so`) and libraries, so the hook runs
  # in any app image (fairway copy-hook, src/copy_hook.rs).
  copy:
    name: fairway-drain-copy
    image: "{hook_image}"
    args: [copy-hook, /var/run/fairway/bin]
    securityContext:
      runAsUser: {uid}
      runAsNonRoot: true
      allowPrivilegeEscalation: false
      readOnlyRootFilesystem: true
      capabilities: {drop: [ALL]}
    volumeMounts:
      - {name: fairway-bin, mountPath: /var/run/fairway/bin}
  preStop:
    - /var/run/fairway/bin/ld.so
    - --library-path
    - /var/run/fairway/bin
    - /var/run/fairway/bin/fairway
    - wait-drained
    - --controller={controller}
    - --controller-ca-file=/var/run/fairway/controller-ca/ca.crt
    - --controller-token-file=/var/run/fairway/token/token
  mounts:
    - {name: fairway-bin, mountPath: /var/run/fairway/bin, readOnly: true}
    - {name: fairway-token, mountPath: /var/run/fairway/token, readOnly: true}
    - {name: fairway-controller-ca, mountPath: /var/run/fairway/controller-ca, readOnly: true}
  volumes:
    - name: fairway-bin
      emptyDir: {}
volumes:
  - name: fairway-token
    projected:
      sources:
        - serviceAccountToken: {audience: fairway, expirationSeconds: 600, path: token}
  - name: fairway-controller-ca
    configMap: {name: fairway-controller-ca, optional: true}
"#;
