//! Which endpoints may take a new request: pure functions over endpoint conditions.
//!
//! Three filters, in order:
//! 1. **Conditions (KEP-1669)**: `ready` endpoints; only when none is ready, the
//!    `serving && terminating` ones (a rollout's last pods keep serving until their
//!    replacements are ready).
//! 2. **Topology hints**, as kube-proxy applies them: node hints (`hints.forNodes`, set
//!    for `trafficDistribution: PreferSameNode`) first, then zone hints
//!    (`hints.forZones`). Each applies only when our node (zone) is known, *every*
//!    endpoint of the tier carries that kind of hint, and at least one is hinted for us;
//!    otherwise the next kind is tried, and without either, the whole tier.
//! 3. **Outlier ejection** with a panic threshold ([`without_ejected`]).

use fairway_proto::model::Endpoint;

/// Past this share of ejected candidates, ejection is ignored (Envoy's healthy panic
/// threshold): so many failing pods points at a shared cause (a bad deploy, our own
/// network), and the survivors would drown under the whole load.
pub const MAX_EJECTED_PERCENT: usize = 50;

/// Indices (in iteration order) of the endpoints that filters 1 and 2 keep, for a proxy
/// in `zone` on `node`.
pub fn eligible<'a>(
    endpoints: impl IntoIterator<Item = &'a Endpoint>,
    zone: Option<&str>,
    node: Option<&str>,
) -> Vec<usize> {
    let all: Vec<&Endpoint> = endpoints.into_iter().collect();
    let positions = |keep: &dyn Fn(&Endpoint) -> bool| -> Vec<usize> {
        (0..all.len()).filter(|&i| keep(all[i])).collect()
    };
    let ready = positions(&|e| e.ready);
    let tier = if ready.is_empty() {
        positions(&|e| e.serving && e.terminating)
    } else {
        ready
    };
    let hinted = |ours: Option<&str>, hints: fn(&Endpoint) -> &[String]| -> Option<Vec<usize>> {
        let ours = ours?;
        if !tier.iter().all(|&i| !hints(all[i]).is_empty()) {
            return None;
        }
        let local: Vec<usize> = tier
            .iter()
            .copied()
            .filter(|&i| hints(all[i]).iter().any(|h| h == ours))
            .collect();
        (!local.is_empty()).then_some(local)
    };
    hinted(node, |e| &e.hints_for_nodes)
        .or_else(|| hinted(zone, |e| &e.hints_for_zones))
        .unwrap_or(tier)
}

/// Drops ejected candidates, unless that leaves none or more than
/// [`MAX_EJECTED_PERCENT`] of them are ejected (panic mode: ejection is ignored).
pub fn without_ejected(candidates: Vec<usize>, is_ejected: impl Fn(usize) -> bool) -> Vec<usize> {
    let kept: Vec<usize> = candidates
        .iter()
        .copied()
        .filter(|&i| !is_ejected(i))
        .collect();
    let ejected = candidates.len() - kept.len();
    if kept.is_empty() || ejected * 100 > candidates.len() * MAX_EJECTED_PERCENT {
        candidates
    } else {
        kept
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::SocketAddr;

    fn ep(port: u16, ready: bool, serving: bool, terminating: bool, hints: &[&str]) -> Endpoint {
        let mut e = Endpoint::ready(SocketAddr::from(([127, 0, 0, 11], port)));
        e.ready = ready;
        e.serving = serving;
        e.terminating = terminating;
        e.hints_for_zones = hints.iter().map(|z| (*z).to_owned()).collect();
        e
    }

    fn on_nodes(mut e: Endpoint, nodes: &[&str]) -> Endpoint {
        e.hints_for_nodes = nodes.iter().map(|n| (*n).to_owned()).collect();
        e
    }

    #[test]
    fn node_hints_win_over_zone_hints_and_fall_back_as_kube_proxy_does() {
        let set = [
            on_nodes(ep(1, true, true, false, &["a"]), &["n1"]),
            on_nodes(ep(2, true, true, false, &["a"]), &["n2"]),
            on_nodes(ep(3, true, true, false, &["b"]), &["n3"]),
        ];
        assert_eq!(
            eligible(&set, Some("a"), Some("n2")),
            [1],
            "our node's endpoint"
        );
        assert_eq!(
            eligible(&set, Some("a"), Some("n9")),
            [0, 1],
            "no endpoint for our node: zone hints"
        );
        assert_eq!(
            eligible(&set, None, Some("n9")),
            [0, 1, 2],
            "nothing for us: all"
        );
        assert_eq!(
            eligible(&set, Some("a"), None),
            [0, 1],
            "node unknown: zone hints"
        );
        let partly = [set[0].clone(), ep(2, true, true, false, &["a"])];
        assert_eq!(
            eligible(&partly, Some("b"), Some("n1")),
            [0, 1],
            "not every endpoint has node hints: they are ignored"
        );
        let not_ready = on_nodes(ep(4, false, true, false, &[]), &[]);
        let with_unready = [set[0].clone(), set[1].clone(), not_ready];
        assert_eq!(
            eligible(&with_unready, None, Some("n1")),
            [0],
            "only the tier's endpoints need hints"
        );
    }

    #[test]
    fn terminating_only_when_no_ready() {
        let set = [
            ep(1, true, true, false, &[]),
            ep(2, false, true, true, &[]),
            ep(3, false, false, true, &[]),
        ];
        assert_eq!(eligible(&set, None, None), [0]);
        assert_eq!(
            eligible(&set[1..], None, None),
            [0],
            "serving+terminating when none is ready"
        );
        assert!(
            eligible(&set[2..], None, None).is_empty(),
            "not serving: never"
        );
        let not_ready = ep(4, false, false, false, &[]);
        assert!(eligible([&not_ready], None, None).is_empty());
    }

    #[test]
    fn zone_hints_need_every_endpoint_hinted() {
        let set = [
            ep(1, true, true, false, &["a"]),
            ep(2, true, true, false, &["b"]),
            ep(3, true, true, false, &["a", "b"]),
        ];
        assert_eq!(eligible(&set, Some("a"), None), [0, 2]);
        assert_eq!(eligible(&set, Some("b"), None), [1, 2]);
        assert_eq!(
            eligible(&set, None, None),
            [0, 1, 2],
            "zone unknown: hints ignored"
        );
        assert_eq!(
            eligible(&set, Some("c"), None),
            [0, 1, 2],
            "no endpoint for our zone: all"
        );

        let mut partly = set.clone();
        partly[1].hints_for_zones.clear();
        assert_eq!(
            eligible(&partly, Some("a"), None),
            [0, 1, 2],
            "one unhinted endpoint disables hints"
        );

        // Hints of not-ready endpoints do not matter: only the serving tier counts.
        let mut with_unready = set.to_vec();
        with_unready.push(ep(4, false, false, false, &[]));
        assert_eq!(eligible(&with_unready, Some("a"), None), [0, 2]);
    }

    #[test]
    fn ejection_and_panic_threshold() {
        let four = vec![0, 1, 2, 3];
        assert_eq!(without_ejected(four.clone(), |i| i == 0), [1, 2, 3]);
        assert_eq!(
            without_ejected(four.clone(), |i| i < 2),
            [2, 3],
            "exactly half: still honoured"
        );
        assert_eq!(
            without_ejected(four.clone(), |i| i < 3),
            four,
            "past half: panic, all of them"
        );
        assert_eq!(without_ejected(vec![5], |_| true), [5], "never none");
        assert!(without_ejected(Vec::new(), |_| true).is_empty());
    }
}
