//! Property tests: after any sequence of events, the incrementally maintained index equals
//! one rebuilt from the final objects by relists, and every call's [`Changes`] covers
//! everything that call changed.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use proptest::prelude::*;

use super::*;
use crate::index::Changes;

const SERVICES: [&str; 2] = ["alpha", "beta"];
const HOSTS: [&str; 3] = ["one.shop", "two.shop", "three.shop"];

#[derive(Clone, Debug)]
enum Event {
    ApplyRoute {
        name: usize,
        hosts: Vec<usize>,
        service: usize,
        by_name: bool,
        created: i64,
        broken: bool,
    },
    DeleteRoute(usize),
    ApplyService {
        service: usize,
        port_name: bool,
    },
    DeleteService(usize),
    ApplySlice {
        name: usize,
        service: usize,
        port_name: bool,
        pods: Vec<(u8, u8)>,
    },
    DeleteSlice(usize),
}

fn event() -> impl Strategy<Value = Event> {
    prop_oneof![
        (
            0..3usize,
            prop::collection::vec(0..3usize, 1..3),
            0..2usize,
            any::<bool>(),
            0..3i64,
            prop::bool::weighted(0.15)
        )
            .prop_map(|(name, hosts, service, by_name, created, broken)| {
                Event::ApplyRoute {
                    name,
                    hosts,
                    service,
                    by_name,
                    created,
                    broken,
                }
            }),
        (0..3usize).prop_map(Event::DeleteRoute),
        (0..2usize, any::<bool>())
            .prop_map(|(service, port_name)| Event::ApplyService { service, port_name }),
        (0..2usize).prop_map(Event::DeleteService),
        (
            0..3usize,
            0..2usize,
            any::<bool>(),
            prop::collection::vec((0..4u8, 0..4u8), 0..4)
        )
            .prop_map(|(name, service, port_name, pods)| Event::ApplySlice {
                name,
                service,
                port_name,
                pods
            }),
        (0..3usize).prop_map(Event::DeleteSlice),
    ]
}

fn route_name(i: usize) -> String {
    format!("r{i}")
}

fn slice_name(i: usize) -> String {
    format!("s{i}")
}

fn port_name(named: bool) -> &'static str {
    if named { "http" } else { "" }
}

/// Pod `ip` in one of four condition states: ready, serving-terminating, not ready,
/// unset.
fn pod((ip, state): (u8, u8)) -> k8s_openapi::api::discovery::v1::Endpoint {
    let ip = format!("10.0.0.{ip}");
    match state {
        0 => ep_with(&ip, Some(true), Some(true), Some(false)),
        1 => ep_with(&ip, Some(false), Some(true), Some(true)),
        2 => ep_with(&ip, Some(false), Some(false), None),
        _ => ep(&ip),
    }
}

/// The objects that exist after the events so far, by name.
#[derive(Default)]
struct World {
    routes: BTreeMap<String, crd::Route>,
    services: BTreeMap<String, Service>,
    slices: BTreeMap<String, EndpointSlice>,
}

impl World {
    fn apply(&mut self, index: &mut Index, event: &Event) -> Changes {
        match event.clone() {
            Event::ApplyRoute {
                name,
                hosts,
                service,
                by_name,
                created,
                broken,
            } => {
                let hosts: Vec<&str> = hosts.iter().map(|h| HOSTS[*h]).collect();
                let port = if by_name { named("http") } else { num(80) };
                let mut r = route(&route_name(name), &hosts, SERVICES[service], port, created);
                if broken {
                    r.spec.timeouts.request = "never".to_owned();
                }
                self.routes.insert(route_name(name), r.clone());
                index.apply_route(&r)
            }
            Event::DeleteRoute(name) => match self.routes.remove(&route_name(name)) {
                Some(r) => index.delete_route(&r),
                None => Changes::default(),
            },
            Event::ApplyService {
                service,
                port_name: n,
            } => {
                let s = super::service(SERVICES[service], &[(port_name(n), 80)]);
                self.services
                    .insert(SERVICES[service].to_owned(), s.clone());
                index.apply_service(&s)
            }
            Event::DeleteService(service) => match self.services.remove(SERVICES[service]) {
                Some(s) => index.delete_service(&s),
                None => Changes::default(),
            },
            Event::ApplySlice {
                name,
                service,
                port_name: n,
                pods,
            } => {
                let pods = pods.into_iter().map(pod).collect();
                let ports = [(port_name(n), 8080)];
                let s = slice(&slice_name(name), SERVICES[service], &ports, pods);
                self.slices.insert(slice_name(name), s.clone());
                index.apply_slice(&s)
            }
            Event::DeleteSlice(name) => match self.slices.remove(&slice_name(name)) {
                Some(s) => index.delete_slice(&s),
                None => Changes::default(),
            },
        }
    }

    fn rebuilt(&self) -> Index {
        let mut index = Index::new();
        index.replace_slices(self.slices.values());
        index.replace_services(self.services.values());
        index.replace_routes(self.routes.values());
        index
    }
}

/// Keys whose values differ between two maps.
fn differing<K: Ord + Clone, V: PartialEq>(a: &BTreeMap<K, V>, b: &BTreeMap<K, V>) -> BTreeSet<K> {
    let keys = a.keys().chain(b.keys());
    keys.filter(|k| a.get(*k) != b.get(*k)).cloned().collect()
}

proptest! {
    #[test]
    fn incremental_equals_rebuilt_and_changes_cover_every_difference(
        events in prop::collection::vec(event(), 1..40)
    ) {
        let mut index = Index::new();
        let mut world = World::default();
        for event in &events {
            let (table, statuses) = (index.table().clone(), index.statuses());
            let changes = world.apply(&mut index, event);
            let moved_routes = differing(&table.routes, &index.table().routes);
            let moved_statuses = differing(&statuses, &index.statuses());
            let moved_sets = differing(&table.endpoint_sets, &index.table().endpoint_sets);
            prop_assert!(
                moved_routes.is_subset(&changes.routes),
                "{event:?}: {moved_routes:?} not in {changes:?}"
            );
            prop_assert!(
                moved_statuses.is_subset(&changes.routes),
                "{event:?}: {moved_statuses:?} not in {changes:?}"
            );
            prop_assert!(
                moved_sets.is_subset(&changes.endpoint_sets),
                "{event:?}: {moved_sets:?} not in {changes:?}"
            );
        }
        let rebuilt = world.rebuilt();
        prop_assert_eq!(index.table(), rebuilt.table());
        prop_assert_eq!(index.statuses(), rebuilt.statuses());
    }
}
