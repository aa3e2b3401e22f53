//! What the auth tests share: a namespace with ServiceAccounts, tokens minted by the
//! TokenRequest API (or signed here, for the expired one), a controller that reviews
//! them, a real fairway-proxy in-process, and a raw stream opener that
//! reports the exact gRPC status.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use clap::Parser;
use fairway_controller::auth::{Authenticator, KubeReviewer, Policy};
use fairway_controller::status::StatusConfig;
use fairway_proto::pb::{self, discovery_client::DiscoveryClient};
use fairway_tests::cluster::SERVICE_ACCOUNT_ISSUER;
use fairway_tests::controller::{self, Controller, Security};
use fairway_tests::objects::{State, endpoint, route, service, slice};
use fairway_tests::{TestCluster, eventually};
use k8s_openapi::api::core::v1::ServiceAccount;
use kube::api::{ObjectMeta, PostParams};
use kube::{Api, Client};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::{ClientTlsConfig, Endpoint};

/// A synced controller opens streams within this; a backed-off proxy returns within
/// it (the backoff caps at 10 s).
pub const WAIT: Duration = Duration::from_secs(60);
/// The audience the controller requires (the chart's projected token).
pub const AUDIENCE: &str = "fairway";
/// The ServiceAccount allowed to subscribe.
pub const PROXY_SA: &str = "fairway-proxy";
/// The Route's host.
pub const HOST: &str = "orders.shop";
/// The Route's one endpoint (TEST-NET-1, RFC 5737: never routed).
pub const ENDPOINT: SocketAddr = SocketAddr::new(
    std::net::IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 10)),
    8080,
);

/// A test's namespace on the shared cluster.
pub struct Setup {
    pub cluster: &'static TestCluster,
    pub ns: String,
    pub client: Client,
}

impl Setup {
    pub async fn new(prefix: &str) -> Setup {
        let cluster = controller::cluster_with_crd();
        let ns = (cluster.namespace(prefix).await).unwrap_or_else(|e| panic!("{e}"));
        let client = (cluster.client().await).unwrap_or_else(|e| panic!("{e}"));
        Setup {
            cluster,
            ns,
            client,
        }
    }

    /// Creates ServiceAccount `name`; returns its uid.
    pub async fn service_account(&self, name: &str) -> String {
        let api: Api<ServiceAccount> = Api::namespaced(self.client.clone(), &self.ns);
        let sa = ServiceAccount {
            metadata: ObjectMeta {
                name: Some(name.to_owned()),
                ..ObjectMeta::default()
            },
            ..ServiceAccount::default()
        };
        let created = (api.create(&PostParams::default(), &sa).await)
            .unwrap_or_else(|e| panic!("create ServiceAccount {name}: {e}"));
        created.metadata.uid.expect("a created object has a uid")
    }

    /// A token for ServiceAccount `name` and `audience`, from the TokenRequest API (as
    /// the kubelet gets the projected one).
    pub async fn token(&self, name: &str, audience: &str) -> String {
        fairway_tests::tokens::token(&self.client, &self.ns, name, audience, None).await
    }

    /// A token for ServiceAccount `name` (uid `uid`) that expired an hour ago, signed
    /// with the cluster's own ServiceAccount key: TokenRequest mints nothing shorter
    /// than ten minutes, and a test should not wait that long. Valid in every other
    /// respect, so only its expiry can be why it is refused.
    pub fn expired_token(&self, name: &str, uid: &str) -> String {
        let key_file = self.cluster.service_account_signing_key();
        let pem = std::fs::read_to_string(&key_file)
            .unwrap_or_else(|e| panic!("read {}: {e}", key_file.display()));
        let pkcs8 = rcgen::KeyPair::from_pem(&pem)
            .unwrap_or_else(|e| panic!("{}: {e}", key_file.display()));
        let spki = rcgen::PublicKeyData::subject_public_key_info(&pkcs8);
        // The apiserver names its key by the hash of its public key (kid).
        let kid = URL_SAFE_NO_PAD.encode(ring::digest::digest(&ring::digest::SHA256, &spki));
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .expect("after 1970")
            .as_secs();
        let header = serde_json::json!({"alg": "ES256", "kid": kid, "typ": "JWT"});
        let claims = serde_json::json!({
            "aud": [AUDIENCE],
            "iss": SERVICE_ACCOUNT_ISSUER,
            "sub": format!("system:serviceaccount:{}:{name}", self.ns),
            "iat": now - 7200,
            "nbf": now - 7200,
            "exp": now - 3600,
            "kubernetes.io": {
                "namespace": self.ns,
                "serviceaccount": {"name": name, "uid": uid},
            },
        });
        let signing_input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let rng = ring::rand::SystemRandom::new();
        let signer = ring::signature::EcdsaKeyPair::from_pkcs8(
            &ring::signature::ECDSA_P256_SHA256_FIXED_SIGNING,
            &pkcs8.serialize_der(),
            &rng,
        )
        .unwrap_or_else(|e| panic!("the cluster's SA key is not P-256 PKCS#8: {e}"));
        let signature =
            (signer.sign(&rng, signing_input.as_bytes())).unwrap_or_else(|e| panic!("sign: {e}"));
        format!(
            "{signing_input}.{}",
            URL_SAFE_NO_PAD.encode(signature.as_ref())
        )
    }

    /// Only `namespace/fairway-proxy` may subscribe, with `fairway` tokens.
    pub fn authenticator(&self) -> Arc<Authenticator> {
        let policy = Policy {
            audience: AUDIENCE.to_owned(),
            allowed: BTreeSet::from([format!("{}/{PROXY_SA}", self.ns)
                .parse()
                .expect("namespace/name")]),
            admit_injected: false,
        };
        Arc::new(Authenticator::token_review(
            policy,
            Arc::new(KubeReviewer::new(self.client.clone())),
        ))
    }

    /// A controller watching this namespace, as `security` says.
    pub async fn controller(&self, security: Security) -> Controller {
        let status = StatusConfig {
            lease_namespace: self.ns.clone(),
            identity: format!("auth-test-{}", self.ns),
            owner: None,
        };
        (controller::start_secured(self.client.clone(), vec![self.ns.clone()], status, security)
            .await)
            .unwrap_or_else(|e| panic!("start the controller: {e}"))
    }

    /// Route `orders.shop` to one ready endpoint, [`ENDPOINT`]. The apiserver refuses
    /// loopback endpoints and no request is sent here, so a documentation address does.
    pub async fn route(&self) {
        let port = i32::from(ENDPOINT.port());
        let ns = &self.ns;
        let ip = ENDPOINT.ip().to_string();
        let client = self.client.clone();
        create(&client, ns, &service(ns, "orders", "http", port)).await;
        let endpoints = vec![endpoint(&ip, State::Ready)];
        create(
            &client,
            ns,
            &slice(ns, "orders-a", "orders", "http", port, endpoints),
        )
        .await;
        create(&client, ns, &route(ns, "orders", &[HOST], "orders", port)).await;
    }
}

async fn create<K>(client: &Client, ns: &str, object: &K)
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + std::fmt::Debug
        + serde::Serialize
        + serde::de::DeserializeOwned,
    K::DynamicType: Default,
{
    let api: Api<K> = Api::namespaced(client.clone(), ns);
    (api.create(&PostParams::default(), object).await)
        .unwrap_or_else(|e| panic!("create {object:?}: {e}"));
}

/// Opens a Discovery stream with `token` and waits for its first message. Retries
/// while the controller is not synced (`UNAVAILABLE`) or not up yet; any other refusal
/// is returned as it came.
pub async fn open(
    endpoint: &str,
    tls: Option<ClientTlsConfig>,
    token: Option<&str>,
) -> Result<(), tonic::Status> {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let status = match open_once(endpoint, tls.clone(), token).await {
            Ok(()) => return Ok(()),
            Err(status) => status,
        };
        let retry = matches!(
            status.code(),
            tonic::Code::Unavailable | tonic::Code::Unknown
        );
        if !retry || tokio::time::Instant::now() > deadline {
            return Err(status);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn open_once(
    endpoint: &str,
    tls: Option<ClientTlsConfig>,
    token: Option<&str>,
) -> Result<(), tonic::Status> {
    let mut endpoint = Endpoint::from_shared(endpoint.to_owned())
        .map_err(|e| tonic::Status::unknown(format!("endpoint: {e}")))?;
    if let Some(tls) = tls {
        endpoint =
            (endpoint.tls_config(tls)).map_err(|e| tonic::Status::unknown(format!("tls: {e}")))?;
    }
    let channel = (endpoint.connect().await)
        .map_err(|e| tonic::Status::unavailable(format!("connect: {e:?}")))?;
    let value = token.map(|t| {
        tonic::metadata::MetadataValue::try_from(format!("Bearer {t}")).expect("ascii token")
    });
    let mut client = DiscoveryClient::with_interceptor(channel, move |mut r: tonic::Request<()>| {
        if let Some(v) = &value {
            r.metadata_mut().insert("authorization", v.clone());
        }
        Ok(r)
    });
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    let hello = pb::ProxyMessage::hello("auth-test", "test-node", None, None);
    tx.send(hello).await.expect("queue hello");
    let mut inbound = client.stream(ReceiverStream::new(rx)).await?.into_inner();
    match tokio::time::timeout(WAIT, inbound.message()).await {
        Ok(Ok(Some(_))) => Ok(()),
        Ok(Ok(None)) => Err(tonic::Status::unknown("stream ended before a message")),
        Ok(Err(status)) => Err(status),
        Err(_) => Err(tonic::Status::deadline_exceeded("no first message")),
    }
}

/// `fairway_controller_discovery_auth_total{result="RESULT"}` in `metrics`, 0 if absent.
pub fn auth_count(metrics: &str, result: &str) -> u64 {
    let series = format!("fairway_controller_discovery_auth_total{{result=\"{result}\"}} ");
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(&series))
        .map_or(0, |v| {
            v.trim().parse().unwrap_or_else(|e| panic!("{v}: {e}"))
        })
}

/// `GET path` with `host` over a fresh connection: (status, body); `None` if the
/// connection failed.
pub async fn get(addr: SocketAddr, host: &str, path: &str) -> Option<(u16, String)> {
    let mut conn = tokio::net::TcpStream::connect(addr).await.ok()?;
    let request = format!("GET {path} HTTP/1.1\r\nhost: {host}\r\nconnection: close\r\n\r\n");
    conn.write_all(request.as_bytes()).await.ok()?;
    let mut response = String::new();
    conn.read_to_string(&mut response).await.ok()?;
    let code = response.get(9..12)?.parse().ok()?;
    let body = response.split_once("\r\n\r\n").map(|(_, b)| b.to_owned())?;
    Some((code, body))
}

#[derive(Parser)]
struct ProxyCli {
    #[command(flatten)]
    args: fairway_proxy::Args,
}

/// A real fairway-proxy, in-process, on loopback ports of its own.
pub struct Proxy {
    pub admin: SocketAddr,
    stop: oneshot::Sender<()>,
    task: JoinHandle<()>,
}

impl Proxy {
    /// Starts one with `args` (plus its own listen and admin addresses).
    pub async fn start(args: &[String]) -> Proxy {
        let argv = [
            "fairway-proxy",
            "--listen=127.0.0.1:0",
            "--admin-addr=127.0.0.1:0",
        ]
        .map(String::from)
        .into_iter()
        .chain(args.iter().cloned());
        let cli = ProxyCli::try_parse_from(argv).unwrap_or_else(|e| panic!("proxy flags: {e}"));
        let config = fairway_proxy::Config::from_args(cli.args)
            .unwrap_or_else(|e| panic!("proxy config: {e}"));
        let listeners = (fairway_proxy::process::Listeners::bind(&config).await)
            .unwrap_or_else(|e| panic!("bind the proxy: {e}"));
        let admin = listeners.admin_addr().expect("admin address");
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let shutdown = async move {
                let _ = stopped.await;
            };
            if let Err(e) = fairway_proxy::process::run_on(listeners, config, shutdown).await {
                eprintln!("proxy: {e}");
            }
        });
        Proxy { admin, stop, task }
    }

    /// Waits until the proxy is ready and serves a table routing `orders.shop` to
    /// [`ENDPOINT`] (its `/ready` and `/debug/routes`).
    pub async fn serves(&self, what: &str) {
        let admin = self.admin;
        eventually(WAIT, what, || async move {
            let (ready, _) = get(admin, "admin", "/ready").await?;
            let (_, routes) = get(admin, "admin", "/debug/routes").await?;
            let endpoint = ENDPOINT.to_string();
            (ready == 200 && routes.contains(HOST) && routes.contains(&endpoint)).then_some(())
        })
        .await;
    }

    pub async fn stop(self) {
        let _ = self.stop.send(());
        let _ = self.task.await;
    }
}

/// Writes `contents` to `path` atomically (write aside, rename), as the kubelet swaps a
/// projected volume, so a reader never sees half a token.
pub fn write_atomically(path: &Path, contents: &[u8]) {
    let aside = path.with_extension("new");
    std::fs::write(&aside, contents).unwrap_or_else(|e| panic!("write {}: {e}", aside.display()));
    std::fs::rename(&aside, path).unwrap_or_else(|e| panic!("rename to {}: {e}", path.display()));
}
