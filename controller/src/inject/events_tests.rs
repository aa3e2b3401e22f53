use k8s_openapi::api::core::v1::{
    ContainerState, ContainerStateTerminated, ContainerStateWaiting, ContainerStatus, Pod,
    PodStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};

use super::*;

fn injector() -> PodEvents {
    PodEvents {
        excluded_namespaces: ["kube-system".to_owned(), "fairway".to_owned()].into(),
        drain: true,
        capture: "fairway-capture".to_owned(),
        containers: vec!["fairway-proxy".to_owned(), "fairway-drain-copy".to_owned()],
    }
}

fn meta(namespace: &str, annotations: &[(&str, &str)], labels: &[(&str, &str)]) -> ObjectMeta {
    let map = |pairs: &[(&str, &str)]| {
        Some(
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        )
    };
    ObjectMeta {
        name: Some("gateway-1".to_owned()),
        namespace: Some(namespace.to_owned()),
        uid: Some("uid-1".to_owned()),
        annotations: map(annotations),
        labels: map(labels),
        ..ObjectMeta::default()
    }
}

const ASKS: (&str, &str) = ("fairway.dev/inject", "enabled");

#[test]
fn a_pod_that_asks_and_has_no_mark_was_missed_by_the_webhook() {
    let warning = not_injected(&meta("shop", &[ASKS], &[]), &injector()).expect("a warning");
    assert_eq!(warning.reason, Reason::NotInjected);
    assert!(
        warning.note.contains("webhook was unavailable") && warning.note.contains("Recreate"),
        "says why and what to do: {}",
        warning.note
    );
}

#[test]
fn injected_pods_and_pods_that_ask_for_nothing_get_no_warning() {
    let marked = meta("shop", &[ASKS], &[("fairway.dev/injected", "proxy")]);
    assert_eq!(not_injected(&marked, &injector()), None, "labelled");
    let annotated = meta(
        "shop",
        &[
            ASKS,
            ("fairway.dev/injected", "fairway-capture,fairway-proxy"),
        ],
        &[],
    );
    assert_eq!(not_injected(&annotated, &injector()), None, "annotated");
    for annotations in [&[][..], &[("fairway.dev/inject", "disabled")][..]] {
        let plain = meta("shop", annotations, &[]);
        assert_eq!(not_injected(&plain, &injector()), None, "{annotations:?}");
    }
    let mut leaving = meta("shop", &[ASKS], &[]);
    leaving.deletion_timestamp = Some(Time(k8s_openapi::jiff::Timestamp::UNIX_EPOCH));
    assert_eq!(not_injected(&leaving, &injector()), None, "being deleted");
}

#[test]
fn the_drain_annotation_counts_only_when_the_injector_adds_the_hook() {
    let drain = meta("shop", &[("fairway.dev/drain", "enabled")], &[]);
    let warning = not_injected(&drain, &injector()).expect("drain asked and served");
    assert!(
        warning.note.contains("fairway.dev/drain"),
        "{}",
        warning.note
    );
    let without = PodEvents {
        drain: false,
        ..injector()
    };
    assert_eq!(not_injected(&drain, &without), None, "no hook to miss");
}

#[test]
fn an_excluded_namespace_is_reported_as_excluded_not_as_an_outage() {
    let warning = not_injected(&meta("kube-system", &[ASKS], &[]), &injector()).unwrap();
    assert!(
        warning.note.contains("namespace kube-system is excluded")
            && !warning.note.contains("unavailable"),
        "{}",
        warning.note
    );
}

#[test]
fn a_pod_the_webhook_refused_is_reported_with_the_reason() {
    let refused = meta(
        "shop",
        &[
            ASKS,
            (
                "fairway.dev/inject-error",
                "volume \"fairway-token\" clashes",
            ),
        ],
        &[],
    );
    let warning = not_injected(&refused, &injector()).unwrap();
    assert!(
        warning
            .note
            .contains("could not add it: volume \"fairway-token\" clashes")
            && !warning.note.contains("unavailable"),
        "{}",
        warning.note
    );
}

fn terminated(exit_code: i32, message: &str) -> ContainerState {
    ContainerState {
        terminated: Some(ContainerStateTerminated {
            exit_code,
            message: Some(message.to_owned()),
            reason: Some("Error".to_owned()),
            ..ContainerStateTerminated::default()
        }),
        ..ContainerState::default()
    }
}

fn pod(name: &str, state: Option<ContainerState>, last: Option<ContainerState>) -> Pod {
    Pod {
        metadata: meta("shop", &[ASKS], &[("fairway.dev/injected", "proxy")]),
        status: Some(PodStatus {
            init_container_statuses: Some(vec![ContainerStatus {
                name: name.to_owned(),
                state,
                last_state: last,
                ..ContainerStatus::default()
            }]),
            ..PodStatus::default()
        }),
        ..Pod::default()
    }
}

const NO_CAP: &str =
    "fairway-capture: installing the rules: Operation not permitted (needs NET_ADMIN)\n";

#[test]
fn a_capture_step_that_exited_non_zero_is_reported_with_its_message() {
    let failed = pod("fairway-capture", Some(terminated(1, NO_CAP)), None);
    let warning = capture_failed(&failed, "fairway-capture").expect("a warning");
    assert_eq!(warning.reason, Reason::CaptureFailed);
    assert!(
        warning.note.contains("exited with code 1")
            && warning
                .note
                .ends_with("Operation not permitted (needs NET_ADMIN)"),
        "the trimmed message: {:?}",
        warning.note
    );
    // Restarted: waiting in back-off, the failure in lastState.
    let waiting = ContainerState {
        waiting: Some(ContainerStateWaiting {
            reason: Some("CrashLoopBackOff".to_owned()),
            ..ContainerStateWaiting::default()
        }),
        ..ContainerState::default()
    };
    let backoff = pod(
        "fairway-capture",
        Some(waiting),
        Some(terminated(2, NO_CAP)),
    );
    let warning = capture_failed(&backoff, "fairway-capture").expect("from lastState");
    assert!(warning.note.contains("code 2"), "{}", warning.note);
}

#[test]
fn a_capture_step_that_succeeded_or_is_not_ours_is_not_reported() {
    let done = pod("fairway-capture", Some(terminated(0, "installed")), None);
    assert_eq!(capture_failed(&done, "fairway-capture"), None);
    let other = pod("migrate", Some(terminated(1, "boom")), None);
    assert_eq!(capture_failed(&other, "fairway-capture"), None, "not ours");
    let running = pod("fairway-capture", None, None);
    assert_eq!(capture_failed(&running, "fairway-capture"), None);
    assert_eq!(capture_failed(&Pod::default(), "fairway-capture"), None);
}

#[test]
fn a_long_message_is_cut_to_what_the_api_accepts() {
    let long = "é".repeat(2000);
    let failed = pod("fairway-capture", Some(terminated(1, &long)), None);
    let note = capture_failed(&failed, "fairway-capture").unwrap().note;
    assert!(note.len() <= MAX_NOTE, "{} bytes", note.len());
    assert!(note.ends_with("[...]"), "marked as cut");
}

#[test]
fn a_pod_is_warned_once_per_reason_however_often_it_is_seen() {
    let mut warned = Warned::default();
    let failed = pod("fairway-capture", Some(terminated(1, NO_CAP)), None);
    let mut recorded = Vec::new();
    // Every restart of the capture step is another watch event for the same pod.
    for _ in 0..5 {
        if let Some(w) = decide(&warned, "uid-1", capture_failed(&failed, "fairway-capture")) {
            warned.insert("uid-1", w.reason);
            recorded.push(w.reason);
        }
    }
    assert_eq!(recorded, [Reason::CaptureFailed], "once, not per restart");
    let missed = not_injected(&meta("shop", &[ASKS], &[]), &injector());
    assert!(
        decide(&warned, "uid-1", missed.clone()).is_some(),
        "another reason is another Event"
    );
    assert!(decide(&warned, "uid-2", capture_failed(&failed, "fairway-capture")).is_some());
    warned.forget("uid-1");
    assert!(warned.is_empty(), "a deleted pod is forgotten");
}

#[test]
fn the_memory_of_warned_pods_is_bounded() {
    let mut warned = Warned::with_capacity(3);
    for uid in ["a", "b", "c", "d"] {
        warned.insert(uid, Reason::NotInjected);
    }
    assert_eq!(warned.len(), 3);
    assert!(
        !warned.contains("a", Reason::NotInjected),
        "the oldest goes"
    );
    assert!(warned.contains("d", Reason::NotInjected));
    warned.insert("d", Reason::NotInjected);
    assert_eq!(warned.len(), 3, "inserting twice keeps one");
}

#[test]
fn a_pod_without_the_mark_but_with_the_injected_containers_was_injected() {
    use k8s_openapi::api::core::v1::{Container, PodSpec};
    let with = |inits: &[&str]| Pod {
        spec: Some(PodSpec {
            init_containers: Some(
                inits
                    .iter()
                    .map(|name| Container {
                        name: (*name).to_owned(),
                        ..Container::default()
                    })
                    .collect(),
            ),
            containers: vec![Container {
                name: "app".to_owned(),
                ..Container::default()
            }],
            ..PodSpec::default()
        }),
        ..Pod::default()
    };
    assert!(has_injection(
        &with(&["fairway-capture", "fairway-proxy"]),
        &injector()
    ));
    assert!(has_injection(&with(&["fairway-drain-copy"]), &injector()));
    assert!(!has_injection(&with(&["migrate"]), &injector()));
    assert!(!has_injection(&with(&[]), &injector()), "missed");
}
