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
        &format!("apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: x}}\n---\n{SERVICE}"),
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
    let task = tokio::spawn(run(dir.path().to_owned(), index.clone(), POLL_INTERVAL));
    let mut synced = index.synced();
    tokio::time::timeout(Duration::from_secs(5), synced.wait_for(|s| *s))
        .await
        .expect("synced within 5s")
        .expect("alive");
    let (routes, endpoints) = index.read(|i| (i.table().routes.len(), i.table().endpoint_count()));
    assert_eq!((routes, endpoints), (1, 1));
    task.abort();
}
