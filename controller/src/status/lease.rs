//! Leader election for the status writer: a `coordination.k8s.io/v1` Lease, acquired
//! and renewed with resourceVersion-guarded writes (kube-runtime 5 has no helper).
//! Every replica serves streams; only the holder writes status and Events.
//!
//! Expiry is judged on this process's monotonic clock (how long the holder record has
//! stood unchanged since we first saw it), as client-go does, so clock skew between
//! replicas cannot hand the lease to two of them.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
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
/// How often the holder renews (and a follower looks again): three tries per lease.
pub const RENEW_INTERVAL: Duration = Duration::from_secs(5);
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

/// Runs the election forever, publishing whether this process leads on `leader`.
pub async fn run(client: Client, namespace: String, identity: String, leader: watch::Sender<bool>) {
    let api: Api<Lease> = Api::namespaced(client, &namespace);
    let mut seen: Option<Observed> = None;
    let mut last_renewed: Option<Instant> = None;
    loop {
        let step = tokio::time::timeout(REQUEST_TIMEOUT, step(&api, &identity, &mut seen));
        match step.await {
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
        tokio::time::sleep(RENEW_INTERVAL).await;
    }
}

/// One round: read, decide, write. `Ok(true)`: we hold the Lease now.
async fn step(
    api: &Api<Lease>,
    identity: &str,
    seen: &mut Option<Observed>,
) -> Result<bool, StatusError> {
    let now = Instant::now();
    let current = api.get_opt(LEASE_NAME).await.map_err(StatusError::Lease)?;
    *seen = current
        .as_ref()
        .map(|lease| observe(seen.take(), Record::of(lease), now));
    let decision = decide(seen.as_ref(), identity, now);
    let stamp = Some(MicroTime(Timestamp::now()));
    let result = match (decision, current) {
        (Decision::Follow { .. }, _) => return Ok(false),
        (Decision::Create, _) | (_, None) => {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(LEASE_NAME.to_owned()),
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
