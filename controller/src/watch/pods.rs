//! Pods, for the injector's Warning Events (`--pod-events`; which pod gets which is
//! decided in [`crate::inject::events`]). Two watches, no cache: each event is decided
//! and forgotten, and only the uids warned about are kept (bounded, [`Warned`]).
//!
//! - Pods without the injector's label, metadata only (annotations are all
//!   `NotInjected` needs): the webhook fails open, so a pod that asks for Fairway and
//!   has no mark was created while it was down. Such a pod (rare) is read whole once,
//!   to spare one injected before the marks existed. Its relist after a controller start is
//!   what finds the pods created while the controller (and so its webhook) was away.
//! - Pods the injector gave a capture step (label `fairway.dev/injected` in `proxy`,
//!   `proxy-drain`), whole, for their init containers' status: `CaptureFailed`.
//!
//! Only the status writer's leader watches (the Lease of `crate::status`): one Event per
//! pod, not one per replica. A new leader starts from an empty memory, so a pod still
//! failing may be warned once more after a hand-over or a restart.

use futures::StreamExt;
use k8s_openapi::api::core::v1::{ObjectReference, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::ListParams;
use kube::core::PartialObjectMeta;
use kube::runtime::WatchStreamExt;
use kube::runtime::events::{Event as KubeEvent, EventType, Recorder};
use kube::runtime::watcher::{self, Event, watcher};
use kube::{Api, Client};
use tokio::sync::watch;

use super::source;
use crate::inject::events::{
    PodEvents, PodWarning, Warned, capture_failed, decide, has_injection, not_injected,
};
use crate::inject::{INJECTED_LABEL, Wanted};

/// A step of reporting on pods that failed; logged, never fatal.
#[derive(Debug, thiserror::Error)]
pub enum PodEventError {
    #[error("recording a {reason} Event on pod {pod}: {source}")]
    Record {
        pod: String,
        reason: &'static str,
        #[source]
        source: kube::Error,
    },
}

/// Pods without the injector's mark (a server-side selector: injected pods never reach
/// this watch).
fn unmarked() -> String {
    format!("!{INJECTED_LABEL}")
}

/// Pods the injector gave a capture step.
fn captured() -> String {
    let values = [Wanted::Proxy, Wanted::All].map(|w| w.label().unwrap_or_default());
    format!("{INJECTED_LABEL} in ({})", values.join(","))
}

/// Watches pods while `leading`, recording each pod's Warning at most once. Never
/// returns (the kind's name is for the sources' join): once `leading`'s sender is gone
/// the status writer stopped, the sources end with it and abort this task.
pub(super) async fn run(
    client: Client,
    injector: PodEvents,
    recorder: Recorder,
    mut leading: watch::Receiver<bool>,
) -> &'static str {
    let mut warned = Warned::default();
    loop {
        if leading.wait_for(|leads| *leads).await.is_err() {
            return std::future::pending().await;
        }
        tracing::info!("leading: watching pods for injection failures");
        let api: Api<PartialObjectMeta<Pod>> = Api::all(client.clone());
        let config = source::watcher_config(Some(&unmarked()));
        // Metadata only: `Api<PartialObjectMeta<_>>` asks for it.
        let mut missed = watcher(api, config).default_backoff().boxed();
        let api: Api<Pod> = Api::all(client.clone());
        let config = source::watcher_config(Some(&captured()));
        let mut failed = watcher(api, config).default_backoff().boxed();
        loop {
            tokio::select! {
                changed = leading.changed() => {
                    if changed.is_err() {
                        return std::future::pending().await;
                    }
                    if !*leading.borrow_and_update() {
                        tracing::info!("no longer leading: pod watches stop");
                        break;
                    }
                }
                Some(event) = missed.next() => {
                    for (pod, exists) in seen(event) {
                        let meta = pod.metadata;
                        if exists {
                            let warning = not_injected(&meta, &injector);
                            let warning = confirm(&client, &injector, &mut warned, &meta, warning).await;
                            record(&recorder, &mut warned, &meta, warning).await;
                        } else if let Some(uid) = &meta.uid {
                            warned.forget(uid);
                        }
                    }
                }
                Some(event) = failed.next() => {
                    for (pod, exists) in seen(event) {
                        if exists {
                            let warning = capture_failed(&pod, &injector.capture);
                            record(&recorder, &mut warned, &pod.metadata, warning).await;
                        } else if let Some(uid) = &pod.metadata.uid {
                            warned.forget(uid);
                        }
                    }
                }
            }
        }
    }
}

/// The objects of one watch event: `(object, true)` for one that exists (applied, or
/// listed), `(object, false)` for one deleted. Errors are logged (the watcher retries).
fn seen<K>(event: Result<Event<K>, watcher::Error>) -> Vec<(K, bool)> {
    match event {
        Ok(Event::Apply(object) | Event::InitApply(object)) => vec![(object, true)],
        Ok(Event::Delete(object)) => vec![(object, false)],
        Ok(Event::Init | Event::InitDone) => Vec::new(),
        Err(error) => {
            tracing::warn!(kind = "Pod", %error, "watch failed; retrying with backoff");
            Vec::new()
        }
    }
}

/// `warning` (a `NotInjected` decided from metadata) if the whole pod confirms it: a pod
/// with the injector's containers and no mark was injected before the marks existed, and
/// is remembered as decided. Read with `list` by name (the grant the watch needs; no
/// `get`), once per pod. A failed read keeps the warning: the metadata says as much.
async fn confirm(
    client: &Client,
    injector: &PodEvents,
    warned: &mut Warned,
    meta: &ObjectMeta,
    warning: Option<PodWarning>,
) -> Option<PodWarning> {
    let (Some(uid), Some(name), Some(namespace)) = (&meta.uid, &meta.name, &meta.namespace) else {
        return warning;
    };
    let warning = decide(warned, uid, warning)?;
    let api: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let by_name = ListParams::default().fields(&format!("metadata.name={name}"));
    match api.list(&by_name).await {
        Ok(list) => {
            let same = list
                .items
                .iter()
                .find(|p| p.metadata.uid.as_ref() == Some(uid));
            if same.is_some_and(|pod| has_injection(pod, injector)) {
                warned.insert(uid, warning.reason);
                return None;
            }
        }
        Err(error) => {
            tracing::debug!(%namespace, %name, %error, "reading the pod to confirm it was missed");
        }
    }
    Some(warning)
}

/// Records `warning` on the pod of `meta` unless it had it already.
async fn record(
    recorder: &Recorder,
    warned: &mut Warned,
    meta: &ObjectMeta,
    warning: Option<PodWarning>,
) {
    let Some(uid) = meta.uid.as_deref() else {
        return;
    };
    let Some(warning) = decide(warned, uid, warning) else {
        return;
    };
    let reason = warning.reason.as_str();
    let pod = format!(
        "{}/{}",
        meta.namespace.as_deref().unwrap_or(""),
        meta.name.as_deref().unwrap_or("")
    );
    let event = KubeEvent {
        type_: EventType::Warning,
        reason: reason.to_owned(),
        note: Some(warning.note),
        action: warning.reason.action().to_owned(),
        secondary: None,
    };
    match recorder.publish(&event, &reference(meta)).await {
        Ok(()) => {
            tracing::info!(%pod, reason, "recorded a Warning Event on the pod");
            warned.insert(uid, warning.reason);
        }
        Err(source) => {
            let error = PodEventError::Record {
                pod,
                reason,
                source,
            };
            tracing::warn!(%error, "could not record Event; tried again on the pod's next change");
        }
    }
}

/// The Event's `regarding`: the pod, by uid too (a later pod of the same name is
/// another object).
fn reference(meta: &ObjectMeta) -> ObjectReference {
    ObjectReference {
        api_version: Some("v1".to_owned()),
        kind: Some("Pod".to_owned()),
        name: meta.name.clone(),
        namespace: meta.namespace.clone(),
        uid: meta.uid.clone(),
        ..ObjectReference::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_selectors_split_pods_by_the_injectors_label() {
        assert_eq!(unmarked(), "!fairway.dev/injected");
        assert_eq!(captured(), "fairway.dev/injected in (proxy,proxy-drain)");
    }
}
