//! Which pod gets which Warning Event about its injection, decided without I/O (the
//! watch that feeds it and the recorder are `crate::watch::pods`).
//!
//! - `NotInjected`: a pod asks for Fairway (`fairway.dev/inject` or `fairway.dev/drain`)
//!   and carries no injector's mark. The webhook fails open, so this is what a pod
//!   created while it was down (or outside its namespaces) looks like. Decided from
//!   metadata alone.
//! - `CaptureFailed`: an injected pod whose capture init container exited non-zero (no
//!   NET_ADMIN, no nftables in the kernel): the pod never starts, and the kubelet's own
//!   Event says only BackOff. The note carries the container's termination message.
//!
//! Each at most once per pod uid ([`Warned`]): a crash-looping capture step would
//! otherwise report every restart.

use std::collections::{BTreeSet, HashSet, VecDeque};

use k8s_openapi::api::core::v1::{ContainerStateTerminated, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde_json::{Map, Value};

use super::{INJECT_ERROR_ANNOTATION, INJECTED_ANNOTATION, INJECTED_LABEL, Wanted};

/// The longest note the API accepts (events.k8s.io/v1 `note`: 1 KiB).
pub const MAX_NOTE: usize = 1024;
/// How many pods are remembered as warned: far more than pods failing at once; past
/// it the oldest is forgotten (at worst a pod that still fails is warned again).
pub const WARNED_CAPACITY: usize = 10_000;

/// The Events this module decides, by their `reason`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Reason {
    NotInjected,
    CaptureFailed,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::NotInjected => "NotInjected",
            Reason::CaptureFailed => "CaptureFailed",
        }
    }

    /// The Event's `action`: what Fairway did, or tried to.
    pub fn action(self) -> &'static str {
        match self {
            Reason::NotInjected => "Inject",
            Reason::CaptureFailed => "Capture",
        }
    }
}

/// One Warning Event for one pod.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodWarning {
    pub reason: Reason,
    /// What happened and what to do, at most [`MAX_NOTE`] bytes.
    pub note: String,
}

/// What the controller knows about the injector it serves.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PodEvents {
    /// Namespaces the webhook never sees (the chart's: kube-system, kube-node-lease, its
    /// own): a pod there is reported as excluded, not as missed.
    pub excluded_namespaces: BTreeSet<String>,
    /// Whether the template has the drain hook: without it `fairway.dev/drain` alone
    /// asks for nothing this injector adds.
    pub drain: bool,
    /// The capture init container's name (the template's).
    pub capture: String,
    /// The names of the containers the injector adds (the proxy, the drain hook's copy
    /// step): a pod that has one was injected, marked or not.
    pub containers: Vec<String>,
}

/// `NotInjected` for a pod (its metadata) that asks for what `injector` adds and was
/// not marked as injected.
pub fn not_injected(meta: &ObjectMeta, injector: &PodEvents) -> Option<PodWarning> {
    let annotations = meta.annotations.as_ref();
    let as_json: Map<String, Value> = annotations
        .into_iter()
        .flatten()
        .map(|(k, v)| (k.clone(), Value::String(v.clone())))
        .collect();
    let asked = match Wanted::of(Some(&as_json)) {
        Wanted::Drain if !injector.drain => return None,
        Wanted::Nothing => return None,
        asked => asked,
    };
    let marked = meta
        .labels
        .as_ref()
        .is_some_and(|l| l.contains_key(INJECTED_LABEL))
        || annotations.is_some_and(|a| a.contains_key(INJECTED_ANNOTATION));
    if marked || meta.deletion_timestamp.is_some() {
        return None;
    }
    let what = match asked {
        Wanted::Drain => "fairway.dev/drain (the drain hook)",
        _ => "fairway.dev/inject (the proxy)",
    };
    let namespace = meta.namespace.as_deref().unwrap_or("");
    let note = if let Some(error) = annotations.and_then(|a| a.get(INJECT_ERROR_ANNOTATION)) {
        format!(
            "The pod asks for {what} but the injection webhook could not add it: {error}. \
             Fix the pod's spec, then recreate the pod."
        )
    } else if injector.excluded_namespaces.contains(namespace) {
        format!(
            "The pod asks for {what} but namespace {namespace} is excluded from injection \
             (the webhook never sees its pods). Run it in another namespace."
        )
    } else {
        format!(
            "The pod asks for {what} but was created without it: the injection webhook \
             was unavailable then (it fails open), or the namespace is outside \
             injector.namespaceSelector. Recreate the pod once the controller is ready \
             (e.g. kubectl rollout restart of its owner)."
        )
    };
    Some(PodWarning {
        reason: Reason::NotInjected,
        note: bounded(note),
    })
}

/// Whether `pod` has a container the injector adds: then it was injected after all, by
/// a release before the marks, by an older `fairway inject`, or by hand. Asked of the
/// whole pod, once, for a pod [`not_injected`] picked from its metadata.
pub fn has_injection(pod: &Pod, injector: &PodEvents) -> bool {
    let Some(spec) = &pod.spec else {
        return false;
    };
    let inits = spec.init_containers.iter().flatten();
    inits
        .chain(&spec.containers)
        .any(|c| injector.containers.contains(&c.name))
}

/// `CaptureFailed` for an injected `pod` whose capture init container (`capture`)
/// terminated with a non-zero exit, now or before its latest restart.
pub fn capture_failed(pod: &Pod, capture: &str) -> Option<PodWarning> {
    let status = pod
        .status
        .as_ref()?
        .init_container_statuses
        .as_ref()?
        .iter()
        .find(|s| s.name == capture)?;
    let failed = |t: &&ContainerStateTerminated| t.exit_code != 0;
    let terminated = (status.state.as_ref().and_then(|s| s.terminated.as_ref()))
        .filter(failed)
        .or_else(|| {
            (status
                .last_state
                .as_ref()
                .and_then(|s| s.terminated.as_ref()))
            .filter(failed)
        })?;
    let message = terminated
        .message
        .as_deref()
        .map(str::trim)
        .filter(|m| !m.is_empty())
        .unwrap_or("no message (see the container's log)");
    let head = format!(
        "The capture init container {capture} exited with code {}: the pod's traffic rules \
         are not installed and it will not start. It needs NET_ADMIN and nftables in the \
         node's kernel (docs/security.md). Its message: ",
        terminated.exit_code
    );
    Some(PodWarning {
        reason: Reason::CaptureFailed,
        note: bounded(head + message),
    })
}

/// `note` cut to [`MAX_NOTE`] bytes on a character boundary, marked when cut.
fn bounded(note: String) -> String {
    const CUT: &str = " [...]";
    if note.len() <= MAX_NOTE {
        return note;
    }
    let mut end = MAX_NOTE - CUT.len();
    while !note.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}{CUT}", &note[..end])
}

/// The pods warned about, by uid and reason, so no pod gets the same Warning twice.
/// Bounded: the oldest is forgotten past the capacity; a deleted pod is forgotten at
/// once (its uid never comes back).
#[derive(Debug)]
pub struct Warned {
    seen: HashSet<(String, Reason)>,
    order: VecDeque<(String, Reason)>,
    capacity: usize,
}

impl Default for Warned {
    fn default() -> Self {
        Warned::with_capacity(WARNED_CAPACITY)
    }
}

impl Warned {
    pub fn with_capacity(capacity: usize) -> Self {
        Warned {
            seen: HashSet::new(),
            order: VecDeque::new(),
            capacity: capacity.max(1),
        }
    }

    /// Whether `uid` was warned about `reason` already.
    pub fn contains(&self, uid: &str, reason: Reason) -> bool {
        self.seen.contains(&(uid.to_owned(), reason))
    }

    /// Remembers that `uid` was warned about `reason` (after the Event was recorded: a
    /// failed write is tried again on the pod's next change).
    pub fn insert(&mut self, uid: &str, reason: Reason) {
        let key = (uid.to_owned(), reason);
        if !self.seen.insert(key.clone()) {
            return;
        }
        self.order.push_back(key);
        while self.order.len() > self.capacity {
            if let Some(old) = self.order.pop_front() {
                self.seen.remove(&old);
            }
        }
    }

    /// Forgets a deleted pod.
    pub fn forget(&mut self, uid: &str) {
        // Both reasons, so no short-circuit.
        let mut had = false;
        for reason in [Reason::NotInjected, Reason::CaptureFailed] {
            had |= self.seen.remove(&(uid.to_owned(), reason));
        }
        if had {
            self.order.retain(|(u, _)| u != uid);
        }
    }

    pub fn len(&self) -> usize {
        self.seen.len()
    }

    pub fn is_empty(&self) -> bool {
        self.seen.is_empty()
    }
}

/// What to record for one pod seen by a watch, given what was recorded before: the
/// warning, unless this pod had it already.
pub fn decide(warned: &Warned, uid: &str, warning: Option<PodWarning>) -> Option<PodWarning> {
    warning.filter(|w| !warned.contains(uid, w.reason))
}

#[cfg(test)]
#[path = "events_tests.rs"]
mod tests;
