//! The scenarios of issue 6, each on its own namespace, processes and pod subnet
//! (`10.244.S.0/24`, S the scenario's number).

use std::time::{Duration, Instant};

use fairway::demo::l4::L4Balancer;
use fairway::demo::shares::shares;
use fairway_controller::crd::{Route, RouteBackend, RouteRule, RouteSpec};
use fairway_tests::eventually;
use fairway_tests::objects::{State, endpoint, route};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use crate::Scenario;
use crate::world::{
    CONVERGE, Conn, POD_PORT, World, counts, failures, http_get, load, pod, pod_ip, samples_after,
};

const PORT: i32 = POD_PORT as i32;

pub fn all() -> Vec<Scenario> {
    vec![
        Scenario {
            name: "s1_one_ready_endpoint_serves_all_traffic",
            run: || Box::pin(one_ready_endpoint()),
        },
        Scenario {
            name: "s2_seed_scale_up_spreads_keepalive_load",
            run: || Box::pin(seed()),
        },
        Scenario {
            name: "s3_scale_down_under_traffic_fails_nothing",
            run: || Box::pin(scale_down()),
        },
        Scenario {
            name: "s4_controller_sigkill_mid_traffic",
            run: || Box::pin(controller_killed()),
        },
        Scenario {
            name: "s5_invalid_route_reports_resolvedrefs_false",
            run: || Box::pin(invalid_route()),
        },
        Scenario {
            name: "s6_hosts_paths_and_weights",
            run: || Box::pin(hosts_paths_weights()),
        },
        Scenario {
            name: "s7_convergence_time",
            run: || Box::pin(convergence()),
        },
        Scenario {
            name: "s8_faults_under_load",
            run: || Box::pin(crate::faults::faults_under_load()),
        },
        Scenario {
            name: "s9_node_hints_keep_traffic_on_the_node",
            run: || Box::pin(crate::topology::node_hints_keep_traffic_on_the_node()),
        },
        Scenario {
            name: "s10_restarted_controller_rebases_proxies",
            run: || Box::pin(crate::rebase::restarted_controller_rebases_proxies()),
        },
        Scenario {
            name: "s11_httproute_on_a_service",
            run: || Box::pin(crate::gamma::http_route_on_a_service()),
        },
        Scenario {
            name: "s12_filters_rewrite_redirect_and_edit",
            run: || Box::pin(crate::filters::filters_rewrite_redirect_and_edit()),
        },
        Scenario {
            name: "s13_httproute_retry_codes",
            run: || Box::pin(crate::retry::http_route_retry_codes()),
        },
        Scenario {
            name: "s14_tls_to_pods",
            run: || Box::pin(crate::tls::tls_to_pods()),
        },
        Scenario {
            name: "s15_namespace_opt_in_serves_its_services",
            run: || Box::pin(crate::opt_in::namespace_opt_in_serves_its_services()),
        },
        Scenario {
            name: "s16_backend_tls_policy",
            run: || Box::pin(crate::backend_tls::backend_tls_policy()),
        },
        Scenario {
            name: "s17_a_sidecar_gets_implicit_services_it_subscribes_to",
            run: || Box::pin(crate::scope::a_sidecar_gets_implicit_services_it_subscribes_to()),
        },
    ]
}

/// `ip:8080`.
fn addr(ip: &str) -> String {
    format!("{ip}:{POD_PORT}")
}

/// Scenario 1: Route + Service + one ready endpoint: all traffic through both proxies reaches it;
/// `kubectl get routes` shows it Accepted with 1 ready endpoint.
async fn one_ready_endpoint() {
    let mut w = World::new("e2e-one").await;
    let ip = pod_ip(1, 11);
    let p = pod("p1", &ip).await;
    w.create_service("web", PORT).await;
    w.create_slice("web-a", "web", PORT, vec![endpoint(&ip, State::Ready)])
        .await;
    w.create_route(&route(&w.ns, "web", &["web.e2e"], "web", PORT))
        .await;
    w.start().await;
    let key = w.set_key("web", POD_PORT);
    w.converged_set(&key, &[(&addr(&ip), "ready")]).await;

    let start = Instant::now();
    let a = load(w.proxies[0].listen, "web.e2e", 4, start).await;
    let b = load(w.proxies[1].listen, "web.e2e", 4, start).await;
    samples_after(&a, Duration::ZERO, 300, "300 requests through proxy-a").await;
    samples_after(&b, Duration::ZERO, 300, "300 requests through proxy-b").await;
    let (a, b) = (a.stop().await, b.stop().await);
    for (name, samples) in [("proxy-a", &a), ("proxy-b", &b)] {
        let c = counts(samples, Duration::ZERO);
        eprintln!("s1: {name}: {c:?}");
        assert_eq!(
            failures(samples),
            0,
            "failed requests through {name}: {c:?}"
        );
        assert!(
            samples.iter().all(|s| s.pod.as_deref() == Some("p1")),
            "{name}: {c:?}"
        );
    }
    let answered = (a.len() + b.len()) as u64;
    assert_eq!(
        p.requests(),
        answered,
        "the pod counted every request the clients saw answered, no more"
    );

    // kubectl get routes: NAME HOSTS READY ACCEPTED AGE.
    let line = eventually(
        CONVERGE,
        "kubectl get routes: web Accepted True, Ready 1",
        || async {
            let out = w.kubectl(&["get", "routes", "--no-headers"]);
            let line = out
                .stdout
                .lines()
                .find(|l| l.starts_with("web "))?
                .to_owned();
            let cols: Vec<&str> = line.split_whitespace().collect();
            (cols.get(2) == Some(&"1") && cols.get(3) == Some(&"True")).then_some(line)
        },
    )
    .await;
    eprintln!("s1: kubectl get routes: {line}");
    w.check_processes();
}

/// Scenario 2: The seed: a keep-alive load with fixed connections runs through a proxy while
/// the slice grows from 1 to 4 ready endpoints; requests made after both proxies
/// applied the change are spread 25% ± 5 points per pod. The same load through a
/// per-connection L4 balancer (the kube-proxy stand-in, also told about the 4 pods)
/// stays on the first pod.
async fn seed() {
    let mut w = World::new("e2e-seed").await;
    let ips: Vec<String> = (11..=14).map(|h| pod_ip(2, h)).collect();
    let names: Vec<String> = (1..=4).map(|i| format!("p{i}")).collect();
    let mut pods = Vec::new();
    for (name, ip) in names.iter().zip(&ips) {
        pods.push(pod(name, ip).await);
    }
    w.create_service("seed", PORT).await;
    w.create_slice(
        "seed-a",
        "seed",
        PORT,
        vec![endpoint(&ips[0], State::Ready)],
    )
    .await;
    w.create_route(&route(&w.ns, "seed", &["seed.e2e"], "seed", PORT))
        .await;
    w.start().await;
    let key = w.set_key("seed", POD_PORT);
    w.converged_set(&key, &[(&addr(&ips[0]), "ready")]).await;
    let l4 = (L4Balancer::start(
        "127.0.0.1:0".parse().unwrap_or_else(|_| unreachable!()),
        vec![pods[0].addr],
    )
    .await)
        .unwrap_or_else(|e| panic!("start the L4 balancer: {e}"));

    const CONNECTIONS: usize = 8;
    let start = Instant::now();
    let via_proxy = load(w.proxies[0].listen, "seed.e2e", CONNECTIONS, start).await;
    let via_l4 = load(l4.addr, "seed.e2e", CONNECTIONS, start).await;
    samples_after(
        &via_proxy,
        Duration::ZERO,
        200,
        "traffic through the proxy before the scale-up",
    )
    .await;
    samples_after(
        &via_l4,
        Duration::ZERO,
        200,
        "traffic through the L4 balancer before the scale-up",
    )
    .await;

    // Scale up, as the EndpointSlice controller and kube-proxy would see it.
    let written = start.elapsed();
    w.set_endpoints(
        "seed-a",
        ips.iter().map(|ip| endpoint(ip, State::Ready)).collect(),
    )
    .await;
    l4.set_backends(pods.iter().map(|p| p.addr).collect());
    let want: Vec<(String, &str)> = ips.iter().map(|ip| (addr(ip), "ready")).collect();
    let want: Vec<(&str, &str)> = want.iter().map(|(a, s)| (a.as_str(), *s)).collect();
    let version = w.converged_set(&key, &want).await;
    let applied = start.elapsed();
    eprintln!(
        "s2: both proxies applied version {version} {:?} after the slice write",
        applied - written
    );

    samples_after(
        &via_proxy,
        applied,
        2000,
        "2000 requests through the proxy after the scale-up",
    )
    .await;
    samples_after(
        &via_l4,
        applied,
        2000,
        "2000 requests through the L4 balancer after the scale-up",
    )
    .await;
    let end = start.elapsed();
    let (proxy_samples, l4_samples) = (via_proxy.stop().await, via_l4.stop().await);

    let (proxy_shares, proxy_failed) = shares(&proxy_samples, &names, applied, end);
    let (l4_shares, l4_failed) = shares(&l4_samples, &names, applied, end);
    eprintln!(
        "s2: after the scale-up ({} requests through the proxy, {} through L4):",
        counts(&proxy_samples, applied).values().sum::<usize>(),
        counts(&l4_samples, applied).values().sum::<usize>()
    );
    for (i, name) in names.iter().enumerate() {
        eprintln!(
            "s2:   {name}: proxy {:5.1}%   l4 {:5.1}%   (pod counted {} requests, {} connections)",
            proxy_shares[i],
            l4_shares[i],
            pods[i].requests(),
            pods[i]
                .connections
                .load(std::sync::atomic::Ordering::Relaxed)
        );
    }
    assert_eq!(
        failures(&proxy_samples),
        0,
        "failed requests through the proxy"
    );
    assert_eq!(
        failures(&l4_samples),
        0,
        "failed requests through the L4 balancer"
    );
    assert_eq!((proxy_failed, l4_failed), (0, 0));
    for (i, share) in proxy_shares.iter().enumerate() {
        assert!(
            (20.0..=30.0).contains(share),
            "through the proxy, {} took {share:.1}% after the scale-up, not 25% ± 5: {proxy_shares:?}",
            names[i]
        );
    }
    assert_eq!(
        l4_shares[0], 100.0,
        "through the per-connection balancer the keep-alive connections stay on p1: {l4_shares:?}"
    );
    w.check_processes();
}

/// A Route of `rules` (path prefix, [(service, weight)]) for `hosts`.
fn route_with(ns: &str, name: &str, hosts: &[&str], rules: &[(&str, &[(&str, u32)])]) -> Route {
    let mut r = route(ns, name, hosts, "unused", PORT);
    r.spec = RouteSpec {
        rules: rules
            .iter()
            .map(|(prefix, backends)| RouteRule {
                path_prefix: (*prefix).to_owned(),
                matches: None,
                filters: Vec::new(),
                backends: backends
                    .iter()
                    .map(|(service, weight)| RouteBackend {
                        service: (*service).to_owned(),
                        port: IntOrString::Int(PORT),
                        weight: *weight,
                    })
                    .collect(),
            })
            .collect(),
        ..r.spec
    };
    r
}

/// Both loads' samples so far, by proxy.
fn report(tag: &str, loads: &[(&str, &[fairway::demo::load::Sample])], from: Duration) {
    for (name, samples) in loads {
        eprintln!("{tag}: {name}: {:?}", counts(samples, from));
    }
}

/// Scenario 3: Scale down under traffic: an endpoint turns ready=false, serving=true,
/// terminating=true, then leaves the slice, while keep-alive traffic runs through both
/// proxies: zero failed requests, and the departed pod gets no new requests.
async fn scale_down() {
    let mut w = World::new("e2e-down").await;
    let ips: Vec<String> = (11..=13).map(|h| pod_ip(3, h)).collect();
    let mut pods = Vec::new();
    for (i, ip) in ips.iter().enumerate() {
        pods.push(pod(&format!("p{}", i + 1), ip).await);
    }
    w.create_service("down", PORT).await;
    let all_ready: Vec<_> = ips.iter().map(|ip| endpoint(ip, State::Ready)).collect();
    w.create_slice("down-a", "down", PORT, all_ready).await;
    w.create_route(&route(&w.ns, "down", &["down.e2e"], "down", PORT))
        .await;
    w.start().await;
    let key = w.set_key("down", POD_PORT);
    let (a0, a1, a2) = (addr(&ips[0]), addr(&ips[1]), addr(&ips[2]));
    w.converged_set(&key, &[(&a0, "ready"), (&a1, "ready"), (&a2, "ready")])
        .await;

    let start = Instant::now();
    let la = load(w.proxies[0].listen, "down.e2e", 4, start).await;
    let lb = load(w.proxies[1].listen, "down.e2e", 4, start).await;
    samples_after(
        &la,
        Duration::ZERO,
        300,
        "traffic through proxy-a on 3 pods",
    )
    .await;
    samples_after(
        &lb,
        Duration::ZERO,
        300,
        "traffic through proxy-b on 3 pods",
    )
    .await;
    assert!(
        pods[2].requests() > 0,
        "p3 served before it began terminating"
    );

    // p3 shuts down: not ready, still serving, terminating.
    w.set_endpoints(
        "down-a",
        vec![
            endpoint(&ips[0], State::Ready),
            endpoint(&ips[1], State::Ready),
            endpoint(&ips[2], State::Terminating),
        ],
    )
    .await;
    w.converged_set(
        &key,
        &[(&a0, "ready"), (&a1, "ready"), (&a2, "terminating")],
    )
    .await;
    let terminating = start.elapsed();
    let p3_at_terminating = pods[2].requests();
    samples_after(
        &la,
        terminating,
        300,
        "traffic through proxy-a while p3 terminates",
    )
    .await;
    samples_after(
        &lb,
        terminating,
        300,
        "traffic through proxy-b while p3 terminates",
    )
    .await;
    let p3_while_terminating = pods[2].requests() - p3_at_terminating;

    // p3 leaves the slice.
    w.set_endpoints(
        "down-a",
        vec![
            endpoint(&ips[0], State::Ready),
            endpoint(&ips[1], State::Ready),
        ],
    )
    .await;
    w.converged_set(&key, &[(&a0, "ready"), (&a1, "ready")])
        .await;
    let removed = start.elapsed();
    let p3_at_removal = pods[2].requests();
    samples_after(&la, removed, 300, "traffic through proxy-a after p3 left").await;
    samples_after(&lb, removed, 300, "traffic through proxy-b after p3 left").await;
    let p3_after_removal = pods[2].requests() - p3_at_removal;
    let (sa, sb) = (la.stop().await, lb.stop().await);

    report(
        "s3 whole run",
        &[("proxy-a", &sa), ("proxy-b", &sb)],
        Duration::ZERO,
    );
    report(
        "s3 after removal",
        &[("proxy-a", &sa), ("proxy-b", &sb)],
        removed,
    );
    eprintln!(
        "s3: p3 took {p3_while_terminating} requests while terminating, {p3_after_removal} after removal"
    );
    assert_eq!(
        failures(&sa) + failures(&sb),
        0,
        "failed requests during the scale-down"
    );
    // A request already routed when the table changed may still land: at most one per
    // downstream connection (8).
    assert!(
        p3_after_removal <= 8,
        "p3 got {p3_after_removal} requests after it left the slice"
    );
    for (name, samples) in [("proxy-a", &sa), ("proxy-b", &sb)] {
        let late = samples
            .iter()
            .filter(|s| s.at >= removed && s.pod.as_deref() == Some("p3"))
            .count();
        assert!(
            late <= 4,
            "{name}: {late} requests answered by p3 after it left the slice"
        );
    }
    w.check_processes();
}

/// Scenario 4: The controller is SIGKILLed mid-traffic: zero failed requests and the proxies keep
/// their table; a new controller on the same ports comes up and an endpoint change made
/// while none ran reaches both proxies.
async fn controller_killed() {
    let mut w = World::new("e2e-kill").await;
    let ips: Vec<String> = (11..=12).map(|h| pod_ip(4, h)).collect();
    let p1 = pod("p1", &ips[0]).await;
    let p2 = pod("p2", &ips[1]).await;
    w.create_service("kill", PORT).await;
    w.create_slice(
        "kill-a",
        "kill",
        PORT,
        vec![endpoint(&ips[0], State::Ready)],
    )
    .await;
    w.create_route(&route(&w.ns, "kill", &["kill.e2e"], "kill", PORT))
        .await;
    w.start().await;
    let key = w.set_key("kill", POD_PORT);
    let before = w.converged_set(&key, &[(&addr(&ips[0]), "ready")]).await;

    let start = Instant::now();
    let la = load(w.proxies[0].listen, "kill.e2e", 4, start).await;
    let lb = load(w.proxies[1].listen, "kill.e2e", 4, start).await;
    samples_after(&la, Duration::ZERO, 200, "traffic through proxy-a").await;
    samples_after(&lb, Duration::ZERO, 200, "traffic through proxy-b").await;

    w.kill_controller();
    let killed = start.elapsed();
    eprintln!("s4: controller SIGKILLed at {killed:?} (table version {before})");
    samples_after(
        &la,
        killed,
        300,
        "traffic through proxy-a with no controller",
    )
    .await;
    samples_after(
        &lb,
        killed,
        300,
        "traffic through proxy-b with no controller",
    )
    .await;
    for p in &w.proxies {
        let (status, body) =
            (http_get(p.admin, "/debug/routes").await).unwrap_or_else(|| panic!("{} admin", p.id));
        let doc: serde_json::Value = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(status, 200);
        assert_eq!(
            doc["version"].as_str(),
            Some(before.to_string().as_str()),
            "{} kept its table while the controller is down",
            p.id
        );
        assert_eq!(
            http_get(p.admin, "/ready").await.map(|r| r.0),
            Some(200),
            "{} stays ready",
            p.id
        );
    }

    // A change while no controller runs, then a new controller on the same ports.
    w.set_endpoints(
        "kill-a",
        ips.iter().map(|ip| endpoint(ip, State::Ready)).collect(),
    )
    .await;
    w.start_controller().await;
    let after = w
        .converged_set(
            &key,
            &[(&addr(&ips[0]), "ready"), (&addr(&ips[1]), "ready")],
        )
        .await;
    let reconverged = start.elapsed();
    eprintln!(
        "s4: new controller version {after}; both proxies applied it {:?} after the kill",
        reconverged - killed
    );
    samples_after(
        &la,
        reconverged,
        300,
        "traffic through proxy-a after the new controller",
    )
    .await;
    samples_after(
        &lb,
        reconverged,
        300,
        "traffic through proxy-b after the new controller",
    )
    .await;
    let (sa, sb) = (la.stop().await, lb.stop().await);
    report(
        "s4 whole run",
        &[("proxy-a", &sa), ("proxy-b", &sb)],
        Duration::ZERO,
    );
    report(
        "s4 after the new controller",
        &[("proxy-a", &sa), ("proxy-b", &sb)],
        reconverged,
    );
    eprintln!("s4: pods counted p1 {} p2 {}", p1.requests(), p2.requests());
    assert_eq!(
        failures(&sa) + failures(&sb),
        0,
        "failed requests around the controller's death"
    );
    for (name, samples) in [("proxy-a", &sa), ("proxy-b", &sb)] {
        let c = counts(samples, reconverged);
        assert!(
            c.get("p2").copied().unwrap_or(0) > 0,
            "{name}: p2, added while the controller was down, gets traffic: {c:?}"
        );
    }
    w.check_processes();
}

/// The status of condition `type_` and its message, read by kubectl jsonpath.
pub fn condition(w: &World, route: &str, type_: &str) -> (String, String) {
    let get = |field: &str| {
        let path = format!("jsonpath={{.status.conditions[?(@.type==\"{type_}\")].{field}}}");
        let out = w.kubectl(&["get", "route", route, "-o", &path]);
        assert!(out.success, "kubectl get route {route}: {}", out.stderr);
        out.stdout.trim().to_owned()
    };
    (get("status"), get("message"))
}

/// Scenario 5: A Route whose Service lacks the port gets `ResolvedRefs=False` with a message;
/// another Route keeps serving through both proxies meanwhile.
async fn invalid_route() {
    let mut w = World::new("e2e-bad").await;
    let ip = pod_ip(5, 11);
    let p = pod("p1", &ip).await;
    w.create_service("good", PORT).await;
    w.create_slice("good-a", "good", PORT, vec![endpoint(&ip, State::Ready)])
        .await;
    w.create_route(&route(&w.ns, "good", &["good.e2e"], "good", PORT))
        .await;
    w.start().await;
    let key = w.set_key("good", POD_PORT);
    w.converged_set(&key, &[(&addr(&ip), "ready")]).await;

    let start = Instant::now();
    let la = load(w.proxies[0].listen, "good.e2e", 4, start).await;
    let lb = load(w.proxies[1].listen, "good.e2e", 4, start).await;
    samples_after(&la, Duration::ZERO, 100, "traffic through proxy-a").await;
    samples_after(&lb, Duration::ZERO, 100, "traffic through proxy-b").await;

    // Valid to the schema; Service `good` has no port 9999.
    w.create_route(&route(&w.ns, "bad", &["bad.e2e"], "good", 9999))
        .await;
    let (status, message) = eventually(CONVERGE, "route bad: ResolvedRefs=False", || async {
        let (status, message) = condition(&w, "bad", "ResolvedRefs");
        (status == "False").then_some((status, message))
    })
    .await;
    eprintln!("s5: bad: ResolvedRefs={status}: {message}");
    assert!(!message.is_empty(), "ResolvedRefs=False carries a message");
    let bad_key = format!("{}/bad", w.ns);
    let version = w
        .converged("the table after the invalid Route", |doc| {
            doc["statuses"]
                .as_array()
                .is_some_and(|all| all.iter().any(|s| s["route"] == bad_key.as_str()))
        })
        .await;
    let applied = start.elapsed();
    eprintln!("s5: both proxies applied version {version}, which knows route bad");
    let (good_status, _) = condition(&w, "good", "ResolvedRefs");
    assert_eq!(good_status, "True", "route good still resolves");

    samples_after(
        &la,
        applied,
        300,
        "traffic through proxy-a after the invalid Route",
    )
    .await;
    samples_after(
        &lb,
        applied,
        300,
        "traffic through proxy-b after the invalid Route",
    )
    .await;
    let mut conn = Conn::open(w.proxies[0].listen).await;
    let (bad_status, bad_pod, bad_body) = conn.get("bad.e2e", "/").await;
    eprintln!(
        "s5: GET bad.e2e/ through proxy-a: {bad_status} {:?}",
        bad_body.trim()
    );
    assert!(
        bad_pod.is_none() && bad_status >= 400,
        "the invalid Route serves nothing: {bad_status}"
    );
    let (sa, sb) = (la.stop().await, lb.stop().await);
    report("s5", &[("proxy-a", &sa), ("proxy-b", &sb)], Duration::ZERO);
    assert_eq!(
        failures(&sa) + failures(&sb),
        0,
        "failed requests on the valid Route"
    );
    assert_eq!(p.requests(), (sa.len() + sb.len()) as u64);
    w.check_processes();
}

/// Scenario 6: Two Routes on two hosts with path prefixes; `/` of one splits 90/10 between two
/// Services: every request lands where its host and path say, the split within ±3
/// points.
async fn hosts_paths_weights() {
    let mut w = World::new("e2e-split").await;
    let names = ["heavy", "light", "assets", "blog"];
    let mut pods = Vec::new();
    for (i, name) in names.iter().enumerate() {
        let ip = pod_ip(6, 11 + i as u8);
        pods.push(pod(name, &ip).await);
        w.create_service(name, PORT).await;
        w.create_slice(
            &format!("{name}-a"),
            name,
            PORT,
            vec![endpoint(&ip, State::Ready)],
        )
        .await;
    }
    let shop = route_with(
        &w.ns,
        "shop",
        &["shop.e2e"],
        &[
            ("/", &[("heavy", 90), ("light", 10)]),
            ("/static", &[("assets", 1)]),
        ],
    );
    w.create_route(&shop).await;
    w.create_route(&route_with(
        &w.ns,
        "blog",
        &["blog.e2e"],
        &[("/", &[("blog", 1)])],
    ))
    .await;
    w.start().await;
    let keys: Vec<String> = names.iter().map(|n| w.set_key(n, POD_PORT)).collect();
    w.converged("all four sets and both routes", |doc| {
        doc["routes"].as_array().is_some_and(|r| r.len() == 2)
            && keys.iter().all(|k| {
                let states = crate::world::endpoint_states(doc, k);
                states.len() == 1 && states[0].1 == "ready"
            })
    })
    .await;

    const SPLIT: usize = 1000;
    let mut split = std::collections::BTreeMap::<String, usize>::new();
    for p in &w.proxies {
        let mut conn = Conn::open(p.listen).await;
        let expect = |got: (u16, Option<String>, String), want: &str, what: &str| {
            assert_eq!(got.0, 200, "{} {what}: {}", p.id, got.2);
            assert_eq!(got.1.as_deref(), Some(want), "{} {what}", p.id);
        };
        for i in 0..100 {
            expect(
                conn.get("shop.e2e", &format!("/static/{i}.css")).await,
                "assets",
                "shop.e2e/static/…",
            );
            expect(
                conn.get("blog.e2e", &format!("/post/{i}")).await,
                "blog",
                "blog.e2e/post/…",
            );
            expect(
                conn.get("blog.e2e", "/static/x").await,
                "blog",
                "blog.e2e/static/x",
            );
        }
        for i in 0..SPLIT {
            let (status, pod, body) = conn.get("shop.e2e", &format!("/item/{i}")).await;
            assert_eq!(status, 200, "{} shop.e2e/item: {body}", p.id);
            *split.entry(pod.unwrap_or_default()).or_insert(0) += 1;
        }
    }
    let total = (SPLIT * w.proxies.len()) as f64;
    let heavy = 100.0 * split.get("heavy").copied().unwrap_or(0) as f64 / total;
    eprintln!("s6: shop.e2e/ split over {total} requests: {split:?} (heavy {heavy:.1}%)");
    assert_eq!(
        split
            .keys()
            .filter(|k| *k != "heavy" && *k != "light")
            .count(),
        0,
        "{split:?}"
    );
    assert!(
        (87.0..=93.0).contains(&heavy),
        "heavy took {heavy:.1}%, not 90 ± 3: {split:?}"
    );
    let counted: Vec<u64> = pods.iter().map(|p| p.requests()).collect();
    eprintln!(
        "s6: pods counted {:?}",
        names.iter().zip(&counted).collect::<Vec<_>>()
    );
    assert_eq!(counted[2], 200, "assets got exactly the /static requests");
    assert_eq!(counted[3], 400, "blog got exactly blog.e2e's requests");
    w.check_processes();
}

/// Scenario 7: Convergence: the time from an EndpointSlice write until both proxies applied it,
/// as the controller's per-proxy ack tracking reports. Printed, not asserted.
async fn convergence() {
    let mut w = World::new("e2e-conv").await;
    let ips: Vec<String> = (11..=15).map(|h| pod_ip(7, h)).collect();
    let mut pods = Vec::new();
    for (i, ip) in ips.iter().enumerate() {
        pods.push(pod(&format!("p{}", i + 1), ip).await);
    }
    w.create_service("conv", PORT).await;
    w.create_slice(
        "conv-a",
        "conv",
        PORT,
        vec![endpoint(&ips[0], State::Ready)],
    )
    .await;
    w.create_route(&route(&w.ns, "conv", &["conv.e2e"], "conv", PORT))
        .await;
    w.start().await;
    let key = w.set_key("conv", POD_PORT);
    w.converged_set(&key, &[(&addr(&ips[0]), "ready")]).await;

    // Grow 1 → 5, then shrink back to 2: one write each.
    let sizes = [2usize, 3, 4, 5, 4, 3, 2];
    let mut times = Vec::new();
    for n in sizes {
        let want_addrs: Vec<String> = ips[..n].iter().map(|ip| addr(ip)).collect();
        let want: Vec<(&str, &str)> = want_addrs.iter().map(|a| (a.as_str(), "ready")).collect();
        let written = Instant::now();
        w.set_endpoints(
            "conv-a",
            ips[..n]
                .iter()
                .map(|ip| endpoint(ip, State::Ready))
                .collect(),
        )
        .await;
        let version = w.converged_set(&key, &want).await;
        let took = written.elapsed();
        eprintln!(
            "s7: {n} endpoints: version {version} applied by both proxies {took:?} after the write"
        );
        times.push(took);
    }
    times.sort();
    let median = times[times.len() / 2];
    let max = times[times.len() - 1];
    println!(
        "s7: convergence (EndpointSlice write → both proxies acked), {} writes: median {median:?}, max {max:?} \
         (includes the 10 ms polling of the controller's /debug/routes)",
        times.len()
    );
    w.check_processes();
}
