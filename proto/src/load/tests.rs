use super::*;
use crate::testing::{endpoint, route, set_key};

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-9
}

#[test]
fn an_even_split_has_no_skew() {
    let skew = skew([(250, 250.0), (250, 250.0), (250, 250.0), (250, 250.0)].into_iter());
    assert_eq!(skew, Some(0.0), "every pod at its fair 25%");
}

#[test]
fn one_pod_taking_everything_is_three_times_its_share_over() {
    // The ClusterIP keep-alive picture after a 1 -> 4 scale-up: 100/0/0/0.
    let skew = skew([(400, 100.0), (0, 100.0), (0, 100.0), (0, 100.0)].into_iter());
    assert!(close(skew.expect("requests"), 3.0), "|1 - .25| / .25 = 3");
}

#[test]
fn skew_is_the_worst_relative_deviation() {
    // 27/25/25/23: +8% and -8% of a fair 25%.
    let skew = skew([(27, 25.0), (25, 25.0), (25, 25.0), (23, 25.0)].into_iter());
    assert!(close(skew.expect("requests"), 0.08), "got {skew:?}");
}

#[test]
fn expected_shares_follow_weights_not_equality() {
    // A ramping pod expected to take a tenth, taking a tenth: fair.
    let skew = skew([(90, 45.0), (10, 5.0)].into_iter());
    assert_eq!(
        skew,
        Some(0.0),
        "a slow-start ramp followed exactly is fair"
    );
}

#[test]
fn one_endpoint_is_always_fair_and_no_requests_means_no_figure() {
    assert_eq!(
        skew([(1, 1.0)].into_iter()),
        Some(0.0),
        "from the first request on"
    );
    assert_eq!(
        skew([(0, 0.0), (0, 0.0)].into_iter()),
        None,
        "nothing observed"
    );
    assert_eq!(
        skew([(3, 0.0)].into_iter()),
        None,
        "nothing expected anywhere (no eligible endpoint): no figure, not infinity"
    );
}

#[test]
fn a_pod_expected_to_take_nothing_does_not_count() {
    // A terminating pod finishing in-flight work: excluded from the maximum.
    let skew = skew([(50, 50.0), (50, 50.0), (0, 0.0)].into_iter());
    assert_eq!(skew, Some(0.0));
}

fn backend(name: &str, n: u32) -> BackendLoad {
    BackendLoad {
        route: route(name).key,
        set: set_key(name, 8080),
        endpoints: (0..n)
            .map(|i| EndpointLoad {
                addr: endpoint(i).addr,
                requests: u64::from(i) * 3,
                in_flight: i % 2,
                expected: f64::from(i) * 2.5,
            })
            .collect(),
    }
}

#[test]
fn a_report_round_trips_through_the_wire() {
    let report = LoadReport {
        window: Duration::from_secs(5),
        backends: vec![backend("orders", 3), backend("cart", 2)],
        truncated: true,
        accepts_figures: true,
    };
    let wire = pb::LoadReport::from(&report);
    assert_eq!(LoadReport::try_from(wire), Ok(report));
}

#[test]
fn broken_figures_from_the_wire_count_as_nothing_expected() {
    let mut wire = pb::BackendLoad::from(&backend("orders", 2));
    wire.endpoints[0].expected_requests = f64::NAN;
    wire.endpoints[1].expected_requests = -4.0;
    let back = BackendLoad::try_from(wire).expect("valid keys and addresses");
    assert!(back.endpoints.iter().all(|e| e.expected == 0.0));
    let mut wire = pb::BackendLoad::from(&backend("orders", 1));
    wire.route = None;
    assert_eq!(
        BackendLoad::try_from(wire),
        Err(ConvertError::MissingField("BackendLoad.route"))
    );
}

#[test]
fn bounding_keeps_whole_backends_first_and_cuts_the_rest() {
    let mut backends = vec![backend("a", 600), backend("b", 600), backend("c", 10)];
    assert!(bound(&mut backends), "1,210 endpoints do not fit");
    let sizes: Vec<usize> = backends.iter().map(|b| b.endpoints.len()).collect();
    assert_eq!(
        sizes,
        vec![600, 400],
        "the cut backend keeps what fits; later ones go"
    );
    let mut small = vec![backend("a", 3)];
    assert!(!bound(&mut small), "nothing cut");
}

#[test]
fn a_full_report_fits_the_controllers_64_kib_limit() {
    use prost::Message;
    // The worst case: IPv6 pods, large counters, every endpoint of one backend.
    let v6 = |i: u32| {
        EndpointAddr(std::net::SocketAddr::from((
            [0xfd00, 0, 0, 0, 0, 0, (i >> 16) as u16, i as u16],
            65_535,
        )))
    };
    let report = LoadReport {
        window: Duration::from_secs(5),
        backends: vec![BackendLoad {
            route: route("orders").key,
            set: set_key("orders", 8080),
            endpoints: (0..MAX_REPORT_ENDPOINTS as u32)
                .map(|i| EndpointLoad {
                    addr: v6(i),
                    requests: u64::from(u32::MAX),
                    in_flight: 65_535,
                    expected: 1e9,
                })
                .collect(),
        }],
        truncated: true,
        accepts_figures: true,
    };
    let bytes = pb::ProxyMessage::report(&report).encoded_len();
    eprintln!("a full report: {bytes} bytes");
    assert!(
        bytes < 64 * 1024,
        "{bytes} bytes for {MAX_REPORT_ENDPOINTS} endpoints"
    );
}

#[test]
fn figures_round_trip_through_the_wire() {
    let addr = |i: u8| EndpointAddr(std::net::SocketAddr::from(([10, 0, 0, i], 8080)));
    let figures = LoadFigures {
        sets: vec![
            (set_key("orders", 8080), vec![(addr(1), 3), (addr(2), 0)]),
            (set_key("cart", 80), vec![(addr(3), 65_535)]),
        ],
    };
    let wire = pb::LoadFigures::from(&figures);
    assert_eq!(LoadFigures::try_from(wire.clone()), Ok(figures));
    let mut broken = wire;
    broken.sets[0].set = None;
    assert_eq!(
        LoadFigures::try_from(broken),
        Err(ConvertError::MissingField("SetFigures.set"))
    );
}
