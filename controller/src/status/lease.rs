//! Leader election for the status writer: a `coordination.k8s.io/v1` Lease, acquired
//! and renewed with resourceVersion-guarded writes (kube-runtime 5 has no helper).
//! Every replica serves streams; only the holder writes status and Events.
//!
//! Expiry is judged on this process's monotonic clock (how long the holder record has
//! stood unchanged since we first saw it), as client-go does, so clock skew between
//! replicas cannot hand the lease to two of them.
//!
//! Hand-overs do not wait for expiry: a holder that stops (SIGTERM) releases the Lease
//! (no holder, as client-go's `ReleaseOnCancel`), and followers look every
//! [`FOLLOW_INTERVAL`], so a rollout or a reinstall resumes status writing within about
//! a second. The Lease is owned by its holder's Pod (an ownerReference, see
//! [`pod_owner`]): when the last controller Pod is deleted (`helm uninstall`), the
//! garbage collector deletes the Lease too.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta, OwnerReference};
use k8s_openapi::jiff::Timestamp;
use kube::api::PostParams;
use kube::{Api, Client};
use tokio::sync::watch;
use tokio::time::Instant;

use super::StatusError;

/// The Lease's name, in the controller's namespace.
pub const LEASE_NAME: &str = "fairway-controller-status";
/// How long a holder's claim stands without a renewal.
pub const LEASE_DURATION: Duration = Duration::from_secs(15);
/// How often the holder renews: three tries per lease.
pub const RENEW_INTERVAL: Duration = Duration::from_secs(5);
/// How often a follower looks at the Lease: soon enough that a released Lease is taken
/// within about a second; one small GET per second per standby replica. (A watch would
/// be sooner still, but the chart grants only `get` and `update` on this Lease.)
pub const FOLLOW_INTERVAL: Duration = Duration::from_secs(1);
/// The duration a released Lease says, as client-go writes it on release.
const RELEASED_SECONDS: i32 = 1;
/// A holder that could not renew for this long stops writing, comfortably before
/// another replica may take over at `LEASE_DURATION`.
pub const RENEW_DEADLINE: Duration = Duration::from_secs(10);
/// Bound on one Lease request, so a hung apiserver cannot stall the deadline check.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(4);

/// The part of a Lease that says who holds it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    pub holder: Option<String>,
    pub renew_time: Option<Timestamp>,
    pub duration: Duration,
}

impl Record {
    pub fn of(lease: &Lease) -> Self {
        let spec = lease.spec.as_ref();
        let seconds = spec.and_then(|s| s.lease_duration_seconds);
        Record {
            holder: spec
                .and_then(|s| s.holder_identity.clone())
                .filter(|h| !h.is_empty()),
            renew_time: spec.and_then(|s| s.renew_time.as_ref()).map(|t| t.0),
            duration: (seconds.and_then(|s| u64::try_from(s).ok()))
                .map_or(LEASE_DURATION, Duration::from_secs),
        }
    }
}

/// A record and when this process first saw it as it is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Observed {
    pub record: Record,
    pub since: Instant,
}

/// Folds a fresh read into what was seen: an unchanged record keeps its first sighting.
pub fn observe(previous: Option<Observed>, record: Record, now: Instant) -> Observed {
    match previous {
        Some(previous) if previous.record == record => previous,
        _ => Observed { record, since: now },
    }
}

/// What to do about the Lease.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// No Lease exists: create it, holding it.
    Create,
    /// We hold it: renew.
    Renew,
    /// Nobody holds it, or the holder let it expire: take it.
    TakeOver,
    /// Someone else holds it.
    Follow { holder: String },
}

/// The pure decision, given the Lease as observed (`None`: it does not exist).
pub fn decide(lease: Option<&Observed>, me: &str, now: Instant) -> Decision {
    let Some(observed) = lease else {
        return Decision::Create;
    };
    match &observed.record.holder {
        None => Decision::TakeOver,
        Some(holder) if holder == me => Decision::Renew,
        Some(_) if now >= observed.since + observed.record.duration => Decision::TakeOver,
        Some(holder) => Decision::Follow {
            holder: holder.clone(),
        },
    }
}

/// Whether we may act as leader: our last successful acquire or renew is recent.
pub fn is_leader(last_renewed: Option<Instant>, now: Instant) -> bool {
    last_renewed.is_some_and(|at| now < at + RENEW_DEADLINE)
}

/// Runs the election until `stop` turns true (or its sender goes), publishing whether
/// this process leads on `leader`. On stop it stops leading first, then releases the
/// Lease if it holds it, so a follower takes over without waiting for expiry.
pub async fn run(
    client: Client,
    namespace: String,
    identity: String,
    owner: Option<OwnerReference>,
    leader: watch::Sender<bool>,
    mut stop: watch::Receiver<bool>,
) {
    let api: Api<Lease> = Api::namespaced(client, &namespace);
    let mut seen: Option<Observed> = None;
    let mut last_renewed: Option<Instant> = None;
    loop {
        let step = step(&api, &identity, owner.as_ref(), &mut seen);
        match tokio::time::timeout(REQUEST_TIMEOUT, step).await {
            Ok(Ok(true)) => last_renewed = Some(Instant::now()),
            Ok(Ok(false)) => last_renewed = None,
            Ok(Err(error)) => tracing::warn!(%error, "lease step failed"),
            Err(_) => tracing::warn!(lease = LEASE_NAME, "lease request timed out"),
        }
        let leading = is_leader(last_renewed, Instant::now());
        leader.send_if_modified(|was| {
            if *was != leading {
                tracing::info!(lease = LEASE_NAME, %namespace, %identity, leading, "status leadership changed");
            }
            std::mem::replace(was, leading) != leading
        });
        let wait = if leading {
            RENEW_INTERVAL
        } else {
            FOLLOW_INTERVAL
        };
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            _ = stop.wait_for(|stopping| *stopping) => break,
        }
    }
    // No status write may follow the release.
    leader.send_replace(false);
    if last_renewed.is_some() {
        match tokio::time::timeout(REQUEST_TIMEOUT, release(&api, &identity)).await {
            Ok(Ok(true)) => {
                tracing::info!(lease = LEASE_NAME, %namespace, %identity, "released the status lease")
            }
            Ok(Ok(false)) => {}
            Ok(Err(error)) => {
                tracing::warn!(%error, "could not release the status lease; a follower takes it when it expires")
            }
            Err(_) => tracing::warn!(
                lease = LEASE_NAME,
                "releasing the status lease timed out; a follower takes it when it expires"
            ),
        }
    }
}

/// Gives up the Lease if `identity` still holds it. `Ok(true)`: released.
async fn release(api: &Api<Lease>, identity: &str) -> Result<bool, StatusError> {
    let Some(mut lease) = api.get_opt(LEASE_NAME).await.map_err(StatusError::Lease)? else {
        return Ok(false);
    };
    let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
    if !released(spec, identity, Timestamp::now()) {
        return Ok(false);
    }
    // Guarded by the fetched resourceVersion: a Lease someone took meanwhile is theirs.
    match api
        .replace(LEASE_NAME, &PostParams::default(), &lease)
        .await
    {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(status)) if status.code == 409 => Ok(false),
        Err(error) => Err(StatusError::Lease(error)),
    }
}

/// Clears `spec`'s holder if it is `identity` (`false`: not ours, left alone). A Lease
/// without a holder is taken at a follower's next look ([`decide`]).
pub fn released(spec: &mut LeaseSpec, identity: &str, now: Timestamp) -> bool {
    if spec.holder_identity.as_deref() != Some(identity) {
        return false;
    }
    spec.holder_identity = None;
    spec.lease_duration_seconds = Some(RELEASED_SECONDS);
    spec.renew_time = Some(MicroTime(now));
    true
}

/// The ownerReference that ties the Lease to the Pod named in a bound ServiceAccount
/// token (the claims `kubernetes.io.pod.name` and `.uid`, which the kubelet's projected
/// token carries). The token is our own and only read, never trusted for access.
/// `None` when it names no Pod (a token from a kubeconfig, or no token).
pub fn pod_owner(token: &str) -> Option<OwnerReference> {
    use base64::Engine;
    let payload = token.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .ok()?;
    let claims: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    let pod = &claims["kubernetes.io"]["pod"];
    Some(OwnerReference {
        api_version: "v1".to_owned(),
        kind: "Pod".to_owned(),
        name: pod["name"].as_str()?.to_owned(),
        uid: pod["uid"].as_str()?.to_owned(),
        // No blockOwnerDeletion: that would need `update` on pods/finalizers.
        ..OwnerReference::default()
    })
}

/// One round: read, decide, write. `Ok(true)`: we hold the Lease now.
async fn step(
    api: &Api<Lease>,
    identity: &str,
    owner: Option<&OwnerReference>,
    seen: &mut Option<Observed>,
) -> Result<bool, StatusError> {
    let now = Instant::now();
    let current = api.get_opt(LEASE_NAME).await.map_err(StatusError::Lease)?;
    *seen = current
        .as_ref()
        .map(|lease| observe(seen.take(), Record::of(lease), now));
    let decision = decide(seen.as_ref(), identity, now);
    let stamp = Some(MicroTime(Timestamp::now()));
    // The holder's Pod owns the Lease; a holder that is no Pod owns it through nobody.
    let owners = owner.map(|o| vec![o.clone()]);
    let result = match (decision, current) {
        (Decision::Follow { .. }, _) => return Ok(false),
        (Decision::Create, _) | (_, None) => {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(LEASE_NAME.to_owned()),
                    owner_references: owners,
                    ..ObjectMeta::default()
                },
                spec: Some(LeaseSpec {
                    holder_identity: Some(identity.to_owned()),
                    lease_duration_seconds: Some(lease_seconds()),
                    acquire_time: stamp.clone(),
                    renew_time: stamp,
                    lease_transitions: Some(0),
                    ..LeaseSpec::default()
                }),
            };
            api.create(&PostParams::default(), &lease).await
        }
        (decision, Some(mut lease)) => {
            // The fetched resourceVersion stays in the metadata: if another replica
            // wrote in between, the replace fails with 409 and nobody double-holds.
            let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
            if decision == Decision::TakeOver {
                spec.acquire_time = stamp.clone();
                spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
            }
            spec.holder_identity = Some(identity.to_owned());
            spec.lease_duration_seconds = Some(lease_seconds());
            spec.renew_time = stamp;
            lease.metadata.owner_references = owners;
            api.replace(LEASE_NAME, &PostParams::default(), &lease)
                .await
        }
    };
    match result {
        Ok(lease) => {
            *seen = Some(observe(seen.take(), Record::of(&lease), now));
            Ok(true)
        }
        // Another replica won the race (409 Conflict / AlreadyExists).
        Err(kube::Error::Api(status)) if status.code == 409 => Ok(false),
        Err(error) => Err(StatusError::Lease(error)),
    }
}

fn lease_seconds() -> i32 {
    i32::try_from(LEASE_DURATION.as_secs()).unwrap_or(i32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(holder: Option<&str>) -> Record {
        Record {
            holder: holder.map(str::to_owned),
            renew_time: None,
            duration: LEASE_DURATION,
        }
    }

    #[test]
    fn no_lease_is_created() {
        assert_eq!(decide(None, "me", Instant::now()), Decision::Create);
    }

    #[test]
    fn our_lease_is_renewed() {
        let now = Instant::now();
        let seen = observe(None, record(Some("me")), now);
        assert_eq!(decide(Some(&seen), "me", now), Decision::Renew);
    }

    #[test]
    fn a_released_lease_is_taken() {
        let now = Instant::now();
        let seen = observe(None, record(None), now);
        assert_eq!(decide(Some(&seen), "me", now), Decision::TakeOver);
    }

    #[test]
    fn another_holder_is_followed_until_its_record_stands_still_for_the_duration() {
        let start = Instant::now();
        let seen = observe(None, record(Some("other")), start);
        let follow = Decision::Follow {
            holder: "other".to_owned(),
        };
        assert_eq!(decide(Some(&seen), "me", start), follow);
        let almost = start + LEASE_DURATION - Duration::from_millis(1);
        let seen = observe(Some(seen), record(Some("other")), almost);
        assert_eq!(decide(Some(&seen), "me", almost), follow, "not expired yet");
        let expired = start + LEASE_DURATION;
        let seen = observe(Some(seen), record(Some("other")), expired);
        assert_eq!(decide(Some(&seen), "me", expired), Decision::TakeOver);
    }

    #[test]
    fn a_renewal_by_the_holder_restarts_the_clock() {
        let start = Instant::now();
        let seen = observe(None, record(Some("other")), start);
        let renewed = Record {
            renew_time: Some(Timestamp::UNIX_EPOCH),
            ..record(Some("other"))
        };
        let later = start + LEASE_DURATION;
        let seen = observe(Some(seen), renewed, later);
        assert_eq!(seen.since, later, "a changed record is a fresh sighting");
        assert!(matches!(
            decide(Some(&seen), "me", later),
            Decision::Follow { .. }
        ));
    }

    #[test]
    fn only_the_holder_releases_and_a_released_lease_is_taken_at_once() {
        let mut spec = LeaseSpec {
            holder_identity: Some("other".to_owned()),
            lease_duration_seconds: Some(15),
            ..LeaseSpec::default()
        };
        let untouched = spec.clone();
        assert!(!released(&mut spec, "me", Timestamp::UNIX_EPOCH));
        assert_eq!(spec, untouched, "another holder's Lease is left alone");

        spec.holder_identity = Some("me".to_owned());
        assert!(released(&mut spec, "me", Timestamp::UNIX_EPOCH));
        assert_eq!(spec.holder_identity, None);
        let lease = Lease {
            spec: Some(spec),
            ..Lease::default()
        };
        let now = Instant::now();
        let seen = observe(None, Record::of(&lease), now);
        assert_eq!(
            decide(Some(&seen), "follower", now),
            Decision::TakeOver,
            "no waiting for the old duration"
        );
        assert!(FOLLOW_INTERVAL < RENEW_INTERVAL, "followers look sooner");
    }

    #[test]
    fn a_bound_token_names_the_pod_that_owns_the_lease() {
        use base64::Engine;
        let encode = |v: serde_json::Value| {
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
        };
        let claims = serde_json::json!({
            "aud": ["https://kubernetes.default.svc"],
            "kubernetes.io": {
                "namespace": "fairway",
                "pod": {"name": "fairway-controller-7d9-abc", "uid": "1f0e-42"},
                "serviceaccount": {"name": "fairway-controller", "uid": "9"}
            }
        });
        let token = format!(
            "{}.{}.sig",
            encode(serde_json::json!({"alg": "RS256"})),
            encode(claims)
        );
        let owner = pod_owner(&token).expect("a bound token names its pod");
        assert_eq!(
            (owner.kind.as_str(), owner.name.as_str(), owner.uid.as_str()),
            ("Pod", "fairway-controller-7d9-abc", "1f0e-42")
        );
        assert_eq!(owner.block_owner_deletion, None);

        let legacy = serde_json::json!({"sub": "system:serviceaccount:fairway:x"});
        let token = format!("{}.{}.sig", encode(serde_json::json!({})), encode(legacy));
        assert_eq!(pod_owner(&token), None, "a legacy token names no pod");
        assert_eq!(pod_owner("not a token"), None);
    }

    #[test]
    fn a_leader_that_cannot_renew_steps_down_before_the_lease_expires() {
        let renewed = Instant::now();
        assert!(is_leader(Some(renewed), renewed + RENEW_INTERVAL));
        assert!(!is_leader(Some(renewed), renewed + RENEW_DEADLINE));
        assert!(!is_leader(None, renewed));
        assert!(
            RENEW_DEADLINE < LEASE_DURATION,
            "step down before anyone may take over"
        );
    }
}
