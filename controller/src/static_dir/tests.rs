use std::fs;

use super::*;

const SERVICE: &str = "apiVersion: v1
kind: Service
metadata: {name: orders, namespace: shop}
spec:
  ports: [{name: http, port: 8080}]
";

const ROUTE: &str = "apiVersion: fairway.dev/v1alpha1
kind: Route
metadata: {name: orders, namespace: shop}
spec:
  hosts: [orders.shop]
  rules:
  - backends: [{service: orders, port: 8080}]
";

fn slice(ips: &[&str]) -> String {
    let endpoints: String = ips
        .iter()
        .map(|ip| format!("- addresses: [\"{ip}\"]\n  conditions: {{ready: true}}\n"))
        .collect();
    format!(
        "apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: orders-1
  namespace: shop
  labels: {{kubernetes.io/service-name: orders}}
addressType: IPv4
ports: [{{name: http, port: 80}}]
endpoints:
{endpoints}"
    )
}

fn kinds(ops: &[Op]) -> Vec<(&'static str, Kind)> {
    ops.iter()
        .map(|op| match op {
            Op::Apply(o) => ("apply", o.kind()),
            Op::Delete(o) => ("delete", o.kind()),
        })
        .collect()
}

/// Bumps a file's stamp even within one mtime tick (the test writes fast).
fn write(path: &Path, text: &str) {
    let tmp = path.with_extension("tmp");
    fs::write(&tmp, text).expect("write");
    fs::rename(&tmp, path).expect("rename");
}

#[test]
fn polls_apply_only_the_differences() {
    let dir = tempfile::tempdir().expect("tempdir");
    write(
        &dir.path().join("app.yaml"),
        &format!("{SERVICE}---\n{ROUTE}"),
    );
    write(&dir.path().join("slice.yml"), &slice(&["10.0.0.1"]));
    write(&dir.path().join("notes.txt"), "not yaml: ignored");
    write(&dir.path().join(".hidden.yaml"), "{{{ ignored");

    let mut state = DirState::new(dir.path().to_owned());
    let ops = state.poll().expect("poll");
    assert_eq!(ops.len(), 3, "{ops:?}");
    assert_eq!(state.len(), 3);
    assert!(state.poll().expect("poll").is_empty(), "nothing changed");

    write(
        &dir.path().join("slice.yml"),
        &slice(&["10.0.0.1", "10.0.0.2"]),
    );
    assert_eq!(
        kinds(&state.poll().expect("poll")),
        vec![("apply", Kind::EndpointSlice)]
    );

    fs::remove_file(dir.path().join("app.yaml")).expect("rm");
    assert_eq!(
        kinds(&state.poll().expect("poll")),
        vec![("delete", Kind::Route), ("delete", Kind::Service)]
    );
}

#[test]
fn a_broken_file_keeps_its_last_good_objects() {
    let dir = tempfile::tempdir().expect("tempdir");
    let app = dir.path().join("app.yaml");
    write(&app, &format!("{SERVICE}---\n{ROUTE}"));
    write(&dir.path().join("slice.yaml"), &slice(&["10.0.0.1"]));
    let mut state = DirState::new(dir.path().to_owned());
    assert_eq!(state.poll().expect("poll").len(), 3);

    write(&app, &format!("{SERVICE}---\nkind: [oops\n"));
    assert!(
        state.poll().expect("poll").is_empty(),
        "bad YAML changes nothing"
    );
    assert_eq!(state.len(), 3);

    write(&app, SERVICE);
    assert_eq!(
        kinds(&state.poll().expect("poll")),
        vec![("delete", Kind::Route)],
        "fixed file applies"
    );
}

#[test]
fn an_unknown_kind_skips_only_its_document() {
    let dir = tempfile::tempdir().expect("tempdir");
    write(
        &dir.path().join("app.yaml"),
        &format!("apiVersion: v1\nkind: Secret\nmetadata: {{name: x}}\n---\n{SERVICE}"),
    );
    let mut state = DirState::new(dir.path().to_owned());
    assert_eq!(
        kinds(&state.poll().expect("poll")),
        vec![("apply", Kind::Service)]
    );
}

#[test]
fn a_missing_directory_is_an_error() {
    let mut state = DirState::new(PathBuf::from("/nonexistent/fairway-static"));
    assert!(state.poll().is_err());
}

#[tokio::test]
async fn run_loads_the_index_and_marks_it_synced() {
    let dir = tempfile::tempdir().expect("tempdir");
    write(
        &dir.path().join("app.yaml"),
        &format!("{SERVICE}---\n{ROUTE}---\n{}", slice(&["10.0.0.1"])),
    );
    let index = IndexHandle::new();
    let task = tokio::spawn(run(dir.path().to_owned(), index.clone(), Follow::default()));
    let mut synced = index.synced();
    tokio::time::timeout(Duration::from_secs(5), synced.wait_for(|s| *s))
        .await
        .expect("synced within 5s")
        .expect("alive");
    let (routes, endpoints) = index.read(|i| (i.table().routes.len(), i.table().endpoint_count()));
    assert_eq!((routes, endpoints), (1, 1));
    task.abort();
}

/// The number of endpoints in the index's table once it has `want`, or panics after
/// `within` (a bound on a wait, not a timing claim).
async fn wait_endpoints(index: &IndexHandle, want: usize, within: Duration, what: &str) {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if index.read(|i| i.table().endpoint_count()) == want {
            return;
        }
        assert!(tokio::time::Instant::now() < deadline, "{what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Loads `dir` with `follow`, then renames a slice with a second pod into place (as the
/// demo's scale-up does) and waits for the index to hold both pods.
async fn a_renamed_file_is_picked_up(follow: Follow) {
    let dir = tempfile::tempdir().expect("tempdir");
    let app = format!("{SERVICE}---\n{ROUTE}");
    write(&dir.path().join("app.yaml"), &app);
    write(&dir.path().join("slice.yaml"), &slice(&["10.0.0.1"]));
    let index = IndexHandle::new();
    let task = tokio::spawn(run(dir.path().to_owned(), index.clone(), follow));
    wait_endpoints(&index, 1, Duration::from_secs(10), "first load").await;

    write(
        &dir.path().join("slice.yaml"),
        &slice(&["10.0.0.1", "10.0.0.2"]),
    );
    let what = format!("{follow:?} must notice the renamed file");
    wait_endpoints(&index, 2, Duration::from_secs(30), &what).await;
    task.abort();
}

#[tokio::test]
async fn file_system_events_pick_up_a_change_without_the_poll() {
    // The watcher works here, so `run` follows events rather than falling back...
    let probe = tempfile::tempdir().expect("tempdir");
    watch_dir(probe.path(), Arc::new(Notify::new())).expect("inotify is available");
    // ...and a fallback poll of an hour cannot be what notices the change.
    let hour = Duration::from_secs(3600);
    a_renamed_file_is_picked_up(Follow::Events { fallback: hour }).await;
}

#[tokio::test]
async fn the_poll_alone_picks_up_a_change() {
    a_renamed_file_is_picked_up(Follow::Poll(Duration::from_millis(20))).await;
}

#[test]
fn a_route_whose_service_is_missing_is_logged_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    // A slice with a ready pod, but no Service: the Route cannot resolve its backend.
    write(&dir.path().join("app.yaml"), ROUTE);
    write(&dir.path().join("slice.yaml"), &slice(&["10.0.0.1"]));
    let mut state = DirState::new(dir.path().to_owned());
    let mut index = Index::new();
    for op in state.poll().expect("poll") {
        apply_op(&mut index, &op);
    }
    let mut log = UnresolvedLog::default();
    let route = RouteKey {
        namespace: "shop".into(),
        name: "orders".into(),
    };
    assert_eq!(
        log.log(&index),
        vec![(
            route.clone(),
            "ServiceNotFound",
            "service shop/orders not found".to_owned()
        )]
    );
    assert!(log.log(&index).is_empty(), "logged once, not on every look");

    write(&dir.path().join("service.yaml"), SERVICE);
    for op in state.poll().expect("poll") {
        apply_op(&mut index, &op);
    }
    assert!(log.log(&index).is_empty(), "resolved: nothing to say");
    fs::remove_file(dir.path().join("service.yaml")).expect("rm");
    for op in state.poll().expect("poll") {
        apply_op(&mut index, &op);
    }
    assert_eq!(log.log(&index).len(), 1, "missing again: logged again");
}

#[test]
fn a_poll_wakes_no_watcher_and_a_new_file_does() {
    use notify::Watcher;
    let dir = tempfile::tempdir().expect("tempdir");
    write(&dir.path().join("slice.yaml"), &slice(&["10.0.0.1"]));
    let (tx, rx) = std::sync::mpsc::channel();
    let mut watcher = notify::recommended_watcher(move |event| {
        let _ = tx.send(event);
    })
    .expect("inotify is available");
    watcher
        .watch(dir.path(), RecursiveMode::NonRecursive)
        .expect("watch");
    // What every poll does: list the directory and read its files.
    DirState::new(dir.path().to_owned()).poll().expect("poll");
    let sentinel = dir.path().join("new.yaml");
    write(&sentinel, &slice(&["10.0.0.2"]));
    // Events arrive in order: the first that may be a change must be the new file's,
    // not one of the poll's own opens and reads.
    let mut seen = Vec::new();
    let first = loop {
        let event = rx
            .recv_timeout(Duration::from_secs(10))
            .unwrap_or_else(|e| panic!("no event that may be a change ({e}); saw {seen:?}"));
        if may_change(&event) {
            break event;
        }
        seen.push(event);
    };
    // (`write` goes through a temporary name, then renames.)
    let paths = first.expect("an event").paths;
    assert!(
        paths.iter().all(|p| p.file_stem() == sentinel.file_stem()),
        "the new file's event, got {paths:?} after ignoring {seen:?}"
    );
    assert!(
        !seen.is_empty(),
        "the poll's opens were reported and ignored"
    );
}

/// An HTTPRoute as a user writes it, leaning on the CRD's defaults (match, kind, weight)
/// that no apiserver filled in.
const HTTP_ROUTE: &str = "apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: orders-gamma, namespace: shop}
spec:
  parentRefs: [{group: \"\", kind: Service, name: orders}]
  rules:
  - backendRefs: [{name: orders, port: 8080}]
";

#[test]
fn http_routes_are_read_with_their_crd_defaults() {
    let dir = tempfile::tempdir().expect("tempdir");
    write(
        &dir.path().join("app.yaml"),
        &format!("{SERVICE}---\n{HTTP_ROUTE}"),
    );
    write(&dir.path().join("slice.yaml"), &slice(&["10.0.0.1"]));
    let mut state = DirState::new(dir.path().to_owned());
    let mut index = Index::new();
    for op in state.poll().expect("poll") {
        apply_op(&mut index, &op);
    }
    let group = RouteKey {
        namespace: "shop".into(),
        name: "service:orders".into(),
    };
    let route = &index.table().routes[&group];
    assert!(
        route
            .hosts
            .contains(&"orders.shop.svc.cluster.local".to_owned())
    );
    assert_eq!(route.rules[0].path_prefix, "/", "the default match");
    assert_eq!(route.rules[0].backends[0].weight, 1, "the default weight");
    assert_eq!(index.table().endpoint_count(), 1);
    let mut log = UnresolvedLog::default();
    assert!(log.log(&index).is_empty(), "served in full: nothing to say");

    // A filter Fairway does not serve: logged by name, since no status exists here.
    let filtered = HTTP_ROUTE.replace(
        "  - backendRefs",
        "  - filters: [{type: RequestHeaderModifier}]\n    backendRefs",
    );
    write(
        &dir.path().join("app.yaml"),
        &format!("{SERVICE}---\n{filtered}"),
    );
    for op in state.poll().expect("poll") {
        apply_op(&mut index, &op);
    }
    let logged = log.log(&index);
    assert_eq!(logged.len(), 1, "{logged:?}");
    assert_eq!(logged[0].1, "UnsupportedValue");
    assert!(
        logged[0].2.starts_with("spec.rules[0].filters"),
        "{}",
        logged[0].2
    );
    assert!(!index.table().routes.contains_key(&group));
}

#[test]
fn a_tls_routes_ca_is_read_from_a_config_map_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let tls_route = ROUTE.replace(
        "  rules:",
        "  upstream: {tls: {caCertificateRefs: [{name: orders-ca}]}}\n  rules:",
    );
    write(
        &dir.path().join("app.yaml"),
        &format!("{SERVICE}---\n{tls_route}"),
    );
    let mut state = DirState::new(dir.path().to_owned());
    let mut index = Index::new();
    for op in state.poll().expect("poll") {
        apply_op(&mut index, &op);
    }
    let key = RouteKey {
        namespace: "shop".into(),
        name: "orders".into(),
    };
    let tls = |index: &Index| {
        let route = &index.table().routes[&key];
        route.upstream.tls.values().next().cloned()
    };
    assert_eq!(
        tls(&index).map(|t| t.ca_pem),
        Some(String::new()),
        "no CA yet"
    );

    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let key_pair = rcgen::KeyPair::generate().expect("key");
    let pem = params.self_signed(&key_pair).expect("CA").pem();
    let indented: String = pem.lines().map(|l| format!("    {l}\n")).collect();
    let config_map = format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: orders-ca, namespace: shop}}\ndata:\n  ca.crt: |\n{indented}"
    );
    write(&dir.path().join("ca.yaml"), &config_map);
    let ops = state.poll().expect("poll");
    assert_eq!(kinds(&ops), vec![("apply", Kind::ConfigMap)]);
    for op in ops {
        apply_op(&mut index, &op);
    }
    assert_eq!(
        tls(&index).map(|t| t.ca_pem),
        Some(pem),
        "the file's CA reaches the table"
    );
}

#[test]
fn a_backend_tls_policy_file_makes_the_routes_backend_tls_until_removed() {
    let dir = tempfile::tempdir().expect("tempdir");
    write(
        &dir.path().join("app.yaml"),
        &format!("{SERVICE}---\n{ROUTE}"),
    );
    let policy = "apiVersion: gateway.networking.k8s.io/v1
kind: BackendTLSPolicy
metadata: {name: orders-tls, namespace: shop}
spec:
  targetRefs: [{group: \"\", kind: Service, name: orders}]
  validation:
    caCertificateRefs: [{group: \"\", kind: ConfigMap, name: orders-ca}]
    hostname: orders.example
";
    write(&dir.path().join("tls.yaml"), policy);
    let mut state = DirState::new(dir.path().to_owned());
    let mut index = Index::new();
    for op in state.poll().expect("poll") {
        apply_op(&mut index, &op);
    }
    let key = RouteKey {
        namespace: "shop".into(),
        name: "orders".into(),
    };
    let tls = |index: &Index| {
        let route = &index.table().routes[&key];
        route.upstream.tls.values().next().cloned()
    };
    let got = tls(&index).expect("the policy's Service is spoken to in TLS");
    assert_eq!(got.hostname.as_deref(), Some("orders.example"));
    assert_eq!(got.ca_pem, "", "its CA is not there: nothing trusted");
    let mut log = UnresolvedLog::default();
    let logged = log.log(&index);
    assert!(
        logged
            .iter()
            .any(|(k, reason, _)| k.name == "orders-tls" && *reason == "NoValidCACertificate"),
        "the policy's fault is logged, as there is no status: {logged:?}"
    );

    std::fs::remove_file(dir.path().join("tls.yaml")).expect("remove");
    let ops = state.poll().expect("poll");
    assert_eq!(kinds(&ops), vec![("delete", Kind::BackendTlsPolicy)]);
    for op in ops {
        apply_op(&mut index, &op);
    }
    assert_eq!(tls(&index), None, "back to plaintext");
}
