use super::*;

fn v(sequence: u64) -> Version {
    Version { epoch: 1, sequence }
}

#[test]
fn registration_tracks_versions_and_unlists_on_drop() {
    let zones = Arc::new(NodeZones::default());
    let proxies = Proxies::new(zones.clone());
    let a = proxies.register("a".into(), "node-1".into(), None);
    let b = proxies.register("b".into(), "node-2".into(), Some("z-b".into()));
    zones.set("node-1", Some("z-1".into()));
    a.sent(v(3));
    a.acked(v(2));
    b.nacked(v(3), "bad base".into());

    let list = proxies.list();
    assert_eq!(list.len(), 2);
    assert_eq!(list[0].zone.as_deref(), Some("z-1"), "zone from the Node");
    assert_eq!(
        list[1].zone.as_deref(),
        Some("z-b"),
        "the hello's zone wins"
    );
    assert_eq!(
        (list[0].last_sent, list[0].last_acked),
        (Some(v(3)), Some(v(2)))
    );
    assert_eq!(list[0].lag(v(5)), 3);
    assert_eq!(list[1].lag(v(5)), 5, "nothing acked: the whole sequence");
    assert_eq!(list[1].last_nack, Some((v(3), "bad base".into())));

    drop(a);
    assert_eq!(proxies.list().len(), 1, "a dropped session is unlisted");
}

#[test]
fn reports_are_kept_per_proxy_rate_bounded_and_aged_out() {
    let proxies = Proxies::new(Arc::new(NodeZones::default()));
    let a = proxies.register("a".into(), "node-1".into(), None);
    let t0 = Instant::now();
    let gap = Duration::from_secs(1);
    let report = |ms| LoadReport {
        window: Duration::from_millis(ms),
        ..LoadReport::default()
    };
    assert!(a.report(report(1), t0, gap));
    assert!(
        !a.report(report(2), t0 + gap / 2, gap),
        "faster than asked: dropped"
    );
    assert!(a.report(report(3), t0 + gap, gap));
    let kept = proxies.loads(t0 + gap, gap);
    assert_eq!(kept.len(), 1);
    assert_eq!(
        kept[0].window,
        Duration::from_millis(3),
        "the latest replaces"
    );
    assert!(
        proxies.loads(t0 + gap * 3, gap).is_empty(),
        "a report older than max_age no longer counts"
    );
    assert_eq!(
        proxies.list()[0].last_acked,
        None,
        "reports acknowledge nothing"
    );
    drop(a);
    assert!(
        proxies.loads(t0 + gap, gap).is_empty(),
        "gone with its proxy"
    );
}

#[test]
fn figures_are_the_other_proxies_in_flight_and_follow_reports_and_drops() {
    use fairway_proto::load::{BackendLoad, EndpointLoad};
    use fairway_proto::testing::{route, set_key};
    let proxies = Proxies::new(Arc::new(NodeZones::default()));
    let addr = |i: u8| EndpointAddr(std::net::SocketAddr::from(([10, 0, 0, i], 8080)));
    let report = |in_flight: [u32; 2], accepts_figures| LoadReport {
        backends: vec![BackendLoad {
            route: route("orders").key,
            set: set_key("orders", 8080),
            endpoints: (0..2)
                .map(|i| EndpointLoad {
                    addr: addr(i + 1),
                    requests: 0,
                    in_flight: in_flight[usize::from(i)],
                    expected: 0.0,
                })
                .collect(),
        }],
        accepts_figures,
        ..LoadReport::default()
    };
    let (t0, gap) = (Instant::now(), Duration::from_secs(1));
    let a = proxies.register("a".into(), "node-1".into(), None);
    let b = proxies.register("b".into(), "node-2".into(), None);
    let c = proxies.register("c".into(), "node-3".into(), None);
    assert!(a.report(report([1, 0], true), t0, gap));
    assert!(b.report(report([7, 2], false), t0, gap));
    assert!(c.report(report([3, 0], true), t0, gap));
    let figures = |r: &Registration| r.figures().map(|f| f.sets[0].1.clone());
    assert_eq!(figures(&a), Some(vec![(addr(1), 10), (addr(2), 2)]));
    assert_eq!(figures(&c), Some(vec![(addr(1), 8), (addr(2), 2)]));
    assert_eq!(figures(&b), None, "b does not accept figures");
    // b's next report replaces its part; then b goes.
    assert!(b.report(report([0, 5], false), t0 + gap, gap));
    assert_eq!(figures(&a), Some(vec![(addr(1), 3), (addr(2), 5)]));
    drop(b);
    assert_eq!(figures(&a), Some(vec![(addr(1), 3), (addr(2), 0)]));
}

#[test]
fn a_broken_stream_leaves_its_proxy_counted_until_it_returns_or_is_forgotten() {
    let proxies = Proxies::new(Arc::new(NodeZones::default()));
    let a = proxies.register("a".into(), "node-1".into(), None);
    let b = proxies.register("b".into(), "node-2".into(), None);
    a.acked(v(4));
    b.acked(v(2));
    let t0 = Instant::now();
    drop(b);
    let ack = |id: &str, connected, acked| ProxyAck {
        id: id.into(),
        connected,
        acked,
    };
    assert_eq!(
        proxies.acks(t0),
        vec![ack("a", true, Some(v(4))), ack("b", false, Some(v(2)))],
        "b may still serve the table it acked"
    );
    assert!(
        proxies
            .next_forget()
            .is_some_and(|at| at >= t0 + GONE_TTL - Duration::from_secs(1))
    );
    assert_eq!(
        proxies.acks(t0 + GONE_TTL + Duration::from_secs(1)),
        vec![ack("a", true, Some(v(4)))],
        "forgotten after GONE_TTL"
    );

    let c = proxies.register("c".into(), "node-3".into(), None);
    drop(c);
    let c = proxies.register("c".into(), "node-3".into(), None);
    assert_eq!(
        proxies.acks(t0).len(),
        2,
        "a proxy that came back is listed once, connected"
    );
    c.closed_by_proxy();
    drop(c);
    assert_eq!(
        proxies.acks(t0),
        vec![ack("a", true, Some(v(4)))],
        "a proxy that closed its own stream is not waited for"
    );
}

#[test]
fn the_watermark_is_the_lowest_ack_of_every_proxy_by_id() {
    let proxies = Proxies::new(Arc::new(NodeZones::default()));
    let mut low = proxies.watermark();
    assert_eq!(
        *low.borrow_and_update(),
        u64::MAX,
        "no proxy: nothing to wait for"
    );
    let a = proxies.register("a".into(), "node-1".into(), None);
    assert_eq!(*low.borrow_and_update(), 0, "a has acked nothing");
    a.acked(v(3));
    assert!(low.has_changed().unwrap_or(false));
    assert_eq!(*low.borrow_and_update(), 3);
    // a reconnects before its old stream is noticed dead: the new stream's ack counts.
    let a2 = proxies.register("a".into(), "node-1".into(), None);
    a2.acked(v(5));
    assert_eq!(
        *low.borrow_and_update(),
        5,
        "one proxy, the higher of its two acks"
    );
    drop(a);
    assert_eq!(
        *low.borrow_and_update(),
        5,
        "the old stream ending leaves no gone entry"
    );
    drop(a2);
    assert_eq!(
        *low.borrow_and_update(),
        5,
        "gone, still counted with its last ack"
    );
}

#[test]
fn by_proxy_prefers_connected_and_the_higher_ack() {
    let ack = |id: &str, connected, seq: Option<u64>| ProxyAck {
        id: id.into(),
        connected,
        acked: seq.map(v),
    };
    let acks = [
        ack("a", false, Some(9)),
        ack("a", true, Some(2)),
        ack("b", true, None),
        ack("b", true, Some(1)),
    ];
    let ids = by_proxy(&acks);
    assert_eq!(
        ids["a"],
        (true, Some(v(2))),
        "connected hides its broken past"
    );
    assert_eq!(ids["b"], (true, Some(v(1))));
}
