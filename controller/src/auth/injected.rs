//! Admitting the proxy the webhook injected into an app's pod, without naming the app's
//! ServiceAccount (`--admit-injected-sidecars`): one annotation must be the whole fix, so
//! the gateway's own ServiceAccount, which the user never listed, has to subscribe.
//!
//! The token proves which pod asks (a projected token is bound to its pod: the review's
//! pod claims); the pod's spec, read from the apiserver, proves it is an injected one
//! (it asks for injection and has the proxy container). [`judge`] is pure; the read is
//! behind [`PodLookup`], the apiserver in production.
//!
//! What this admits: any pod whose creator annotated it and gave it the proxy
//! container, that is whoever may create pods in a namespace the injector serves. They
//! get what every proxy gets (the served Services' endpoints); docs/security.md.

use std::fmt;

use futures::future::BoxFuture;
use k8s_openapi::api::core::v1::Pod as KubePod;

use super::decide::{Pod, ServiceAccount, Verdict};
use crate::inject::template::PROXY_CONTAINER;
use crate::inject::{ENABLED, INJECT_ANNOTATION};

/// What the admission needs of a pod's object.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PodFacts {
    pub uid: String,
    /// The `fairway.dev/inject` annotation's value.
    pub inject: Option<String>,
    /// Every container's name, init containers included.
    pub containers: Vec<String>,
}

impl PodFacts {
    pub fn of(pod: &KubePod) -> PodFacts {
        let spec = pod.spec.as_ref();
        let init = spec.and_then(|s| s.init_containers.as_ref());
        let main = spec.map(|s| &s.containers);
        PodFacts {
            uid: pod.metadata.uid.clone().unwrap_or_default(),
            inject: (pod.metadata.annotations.as_ref())
                .and_then(|a| a.get(INJECT_ANNOTATION))
                .cloned(),
            containers: init
                .into_iter()
                .flatten()
                .chain(main.into_iter().flatten())
                .map(|c| c.name.clone())
                .collect(),
        }
    }
}

/// The verdict on `account`'s token bound to `pod`, given what the apiserver has of it.
pub fn judge(account: ServiceAccount, pod: Pod, found: Option<&PodFacts>) -> Verdict {
    let Some(facts) = found else {
        return Verdict::Forbidden(format!(
            "ServiceAccount {account} may not subscribe, and the pod its token is bound to \
             ({pod}) no longer exists"
        ));
    };
    if facts.uid != pod.uid {
        return Verdict::Forbidden(format!(
            "the pod {pod} that {account}'s token was minted for has been replaced"
        ));
    }
    let asks = facts.inject.as_deref() == Some(ENABLED);
    let has_proxy = facts.containers.iter().any(|c| c == PROXY_CONTAINER);
    if asks && has_proxy {
        return Verdict::AdmitInjected(account, pod);
    }
    Verdict::Forbidden(format!(
        "ServiceAccount {account} may not subscribe to discovery, and its pod {pod} is not \
         an injected one ({INJECT_ANNOTATION}: {ENABLED} and a {PROXY_CONTAINER} container)"
    ))
}

/// Reads the pod a token is bound to. The seam between the judgement and the apiserver.
pub trait PodLookup: Send + Sync + fmt::Debug {
    fn facts<'a>(&'a self, pod: &'a Pod) -> BoxFuture<'a, Result<Option<PodFacts>, kube::Error>>;
}

/// The apiserver (needs `get` on pods).
#[derive(Clone)]
pub struct KubePods {
    client: kube::Client,
}

impl fmt::Debug for KubePods {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KubePods").finish_non_exhaustive()
    }
}

impl KubePods {
    pub fn new(client: kube::Client) -> Self {
        KubePods { client }
    }
}

impl PodLookup for KubePods {
    fn facts<'a>(&'a self, pod: &'a Pod) -> BoxFuture<'a, Result<Option<PodFacts>, kube::Error>> {
        Box::pin(async move {
            let api: kube::Api<KubePod> =
                kube::Api::namespaced(self.client.clone(), &pod.namespace);
            Ok(api.get_opt(&pod.name).await?.as_ref().map(PodFacts::of))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn account() -> ServiceAccount {
        "shop/gateway".parse().expect("namespace/name")
    }

    fn pod() -> Pod {
        Pod {
            namespace: "shop".into(),
            name: "gateway-7d9f".into(),
            uid: "u1".into(),
        }
    }

    fn facts(inject: Option<&str>, containers: &[&str]) -> PodFacts {
        PodFacts {
            uid: "u1".into(),
            inject: inject.map(str::to_owned),
            containers: containers.iter().map(|c| (*c).to_owned()).collect(),
        }
    }

    #[test]
    fn only_a_live_injected_pod_admits_its_token() {
        let injected = facts(
            Some("enabled"),
            &["fairway-capture", "fairway-proxy", "app"],
        );
        assert_eq!(
            judge(account(), pod(), Some(&injected)),
            Verdict::AdmitInjected(account(), pod())
        );
        let refused = [
            ("gone", None),
            (
                "replaced",
                Some(PodFacts {
                    uid: "u2".into(),
                    ..injected.clone()
                }),
            ),
            (
                "not annotated",
                Some(facts(None, &["fairway-proxy", "app"])),
            ),
            (
                "annotation off",
                Some(facts(Some("disabled"), &["fairway-proxy"])),
            ),
            ("no proxy container", Some(facts(Some("enabled"), &["app"]))),
        ];
        for (what, found) in refused {
            let verdict = judge(account(), pod(), found.as_ref());
            let Verdict::Forbidden(message) = verdict else {
                panic!("{what}: {verdict:?}");
            };
            assert!(message.contains("shop/gateway"), "{what}: {message}");
        }
    }
}
