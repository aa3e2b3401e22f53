//! Whether and what to write for one Route: a pure function of the computed status,
//! the status the cluster shows, and this writer's last write.

use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use tokio::time::Instant;

use crate::crd::RouteStatus;
use crate::index::ComputedStatus;

/// At most one status write per Route per this interval: endpoint churn in a big
/// Service would otherwise become a write per pod event. Changes in between coalesce.
pub const MIN_WRITE_INTERVAL: Duration = Duration::from_secs(1);

/// This writer's last write of one Route's status.
#[derive(Clone, Debug, PartialEq)]
pub struct Written {
    pub status: RouteStatus,
    pub at: Instant,
}

/// What to do for one Route.
#[derive(Clone, Debug, PartialEq)]
pub enum Plan {
    /// The cluster already shows this status (or the Route is gone).
    Skip,
    /// Write this status now.
    Write(RouteStatus),
    /// A write is (or may be) needed, but the last one was too recent: check again then.
    Later(Instant),
}

/// Decides for one Route. `observed` is the status on the watch, `written` this
/// writer's last write (possibly not yet echoed by the watch), `wall` the time stamped
/// on conditions that change.
pub fn plan(
    computed: &ComputedStatus,
    observed: Option<&RouteStatus>,
    written: Option<&Written>,
    now: Instant,
    wall: &Time,
) -> Plan {
    // The cluster's view keeps transition times; our unechoed write is the fallback.
    let previous = observed.or(written.map(|w| &w.status));
    let desired = computed.to_route_status(previous, wall);
    if observed.is_some_and(|o| equivalent(o, &desired)) {
        return Plan::Skip;
    }
    match written {
        Some(written) if now < written.at + MIN_WRITE_INTERVAL => {
            // Most often our own write not echoed yet; the re-check then settles it.
            Plan::Later(written.at + MIN_WRITE_INTERVAL)
        }
        _ => Plan::Write(desired),
    }
}

/// Equal up to the order of conditions (a list-map in the API: the server may keep
/// another order than the one we applied).
pub fn equivalent(a: &RouteStatus, b: &RouteStatus) -> bool {
    let sorted = |s: &RouteStatus| {
        let mut conditions = s.conditions.clone();
        conditions.sort_by(|x, y| x.type_.cmp(&y.type_));
        conditions
    };
    a.observed_generation == b.observed_generation
        && a.endpoints == b.endpoints
        && sorted(a) == sorted(b)
}

/// The wall-clock time for conditions, in whole seconds: the API stores seconds, so a
/// finer stamp would never compare equal to its own echo.
pub fn wall_now() -> Time {
    Time(Timestamp::from_second(Timestamp::now().as_second()).unwrap_or(Timestamp::UNIX_EPOCH))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::EndpointCounts;
    use crate::index::{ConditionState, ConditionStatus, Reason};

    fn computed(resolved: bool, ready: u32) -> ComputedStatus {
        let resolved_refs = if resolved {
            ConditionState {
                status: ConditionStatus::True,
                reason: Reason::ResolvedRefs,
                message: "all backends resolved".to_owned(),
            }
        } else {
            ConditionState {
                status: ConditionStatus::False,
                reason: Reason::ServiceNotFound,
                message: "service shop/orders not found".to_owned(),
            }
        };
        ComputedStatus {
            observed_generation: Some(1),
            accepted: ConditionState {
                status: ConditionStatus::True,
                reason: Reason::Accepted,
                message: "all hosts are served".to_owned(),
            },
            resolved_refs,
            endpoints: EndpointCounts {
                ready,
                serving: ready,
                total: ready,
            },
        }
    }

    fn at(second: i64) -> Time {
        Time(Timestamp::from_second(second).expect("valid second"))
    }

    #[test]
    fn a_route_without_status_is_written() {
        let now = Instant::now();
        let plan = plan(&computed(true, 1), None, None, now, &at(100));
        let Plan::Write(status) = plan else {
            panic!("a Route with no status must get one, got {plan:?}");
        };
        assert_eq!(status.observed_generation, Some(1));
        assert_eq!(status.conditions.len(), 2, "Accepted and ResolvedRefs");
        assert!(
            (status.conditions.iter()).all(|c| c.last_transition_time == at(100)),
            "new conditions are stamped now: {status:?}"
        );
    }

    #[test]
    fn an_unchanged_status_is_skipped_and_keeps_its_transition_time() {
        let now = Instant::now();
        let observed = computed(true, 3).to_route_status(None, &at(100));
        let plan = plan(&computed(true, 3), Some(&observed), None, now, &at(500));
        assert_eq!(plan, Plan::Skip, "the cluster already shows this status");
    }

    #[test]
    fn condition_order_does_not_matter() {
        let now = Instant::now();
        let mut observed = computed(true, 3).to_route_status(None, &at(100));
        observed.conditions.reverse();
        let plan = plan(&computed(true, 3), Some(&observed), None, now, &at(500));
        assert_eq!(plan, Plan::Skip, "conditions are a map keyed by type");
    }

    #[test]
    fn a_count_change_keeps_transition_times() {
        let now = Instant::now();
        let observed = computed(true, 3).to_route_status(None, &at(100));
        let Plan::Write(status) = plan(&computed(true, 4), Some(&observed), None, now, &at(500))
        else {
            panic!("a new ready count must be written");
        };
        assert_eq!(status.endpoints.map(|e| e.ready), Some(4));
        assert!(
            (status.conditions.iter()).all(|c| c.last_transition_time == at(100)),
            "conditions that did not move keep their time: {status:?}"
        );
    }

    #[test]
    fn a_condition_that_moves_is_stamped_now() {
        let now = Instant::now();
        let observed = computed(false, 0).to_route_status(None, &at(100));
        let Plan::Write(status) = plan(&computed(true, 1), Some(&observed), None, now, &at(500))
        else {
            panic!("ResolvedRefs turning True must be written");
        };
        let resolved = (status.conditions.iter()).find(|c| c.type_ == "ResolvedRefs");
        let accepted = (status.conditions.iter()).find(|c| c.type_ == "Accepted");
        assert_eq!(
            resolved.map(|c| c.last_transition_time.clone()),
            Some(at(500))
        );
        assert_eq!(
            accepted.map(|c| c.last_transition_time.clone()),
            Some(at(100))
        );
    }

    #[test]
    fn writes_to_one_route_are_spaced_by_the_interval() {
        let start = Instant::now();
        let first = computed(true, 1).to_route_status(None, &at(100));
        let written = Written {
            status: first.clone(),
            at: start,
        };
        let soon = start + MIN_WRITE_INTERVAL / 2;
        let plan_soon = plan(
            &computed(true, 2),
            Some(&first),
            Some(&written),
            soon,
            &at(100),
        );
        assert_eq!(
            plan_soon,
            Plan::Later(start + MIN_WRITE_INTERVAL),
            "a second change within the interval waits for its end"
        );
        let later = start + MIN_WRITE_INTERVAL;
        let plan_later = plan(
            &computed(true, 2),
            Some(&first),
            Some(&written),
            later,
            &at(101),
        );
        assert!(
            matches!(plan_later, Plan::Write(_)),
            "after the interval it is written"
        );
    }

    #[test]
    fn an_unechoed_write_is_not_repeated_before_the_interval() {
        let start = Instant::now();
        let status = computed(true, 1).to_route_status(None, &at(100));
        let written = Written { status, at: start };
        let plan = plan(&computed(true, 1), None, Some(&written), start, &at(100));
        assert_eq!(
            plan,
            Plan::Later(start + MIN_WRITE_INTERVAL),
            "re-checked once the echo is due"
        );
    }
}
