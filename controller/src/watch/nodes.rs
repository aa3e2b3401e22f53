//! Node zones: only the `topology.kubernetes.io/zone` label of each Node, for proxies
//! whose hello carries no zone. Metadata-only, so a large cluster costs little.

use std::collections::HashMap;
use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Node;
use kube::core::PartialObjectMeta;
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{Event, watcher};
use kube::{Api, Client, ResourceExt};

use crate::state::NodeZones;

/// The well-known label carrying a Node's zone.
pub const ZONE_LABEL: &str = "topology.kubernetes.io/zone";

/// Follows every Node's zone into `zones` until the stream ends (it does not: errors are
/// retried with backoff). Returns the kind's name.
pub(super) async fn run(client: Client, zones: Arc<NodeZones>) -> &'static str {
    // An `Api` of `PartialObjectMeta` makes metadata-only requests.
    let api: Api<PartialObjectMeta<Node>> = Api::all(client);
    let config = super::source::watcher_config(None);
    let mut events = watcher(api, config).default_backoff().boxed();
    let mut relist = HashMap::new();
    while let Some(event) = events.next().await {
        match event {
            Ok(Event::Init) => relist.clear(),
            Ok(Event::InitApply(node)) => {
                if let Some(zone) = zone(&node) {
                    relist.insert(node.name_any(), zone);
                }
            }
            Ok(Event::InitDone) => {
                tracing::info!(count = relist.len(), "listed Node zones");
                zones.replace(std::mem::take(&mut relist));
            }
            Ok(Event::Apply(node)) => zones.set(&node.name_any(), zone(&node)),
            Ok(Event::Delete(node)) => zones.set(&node.name_any(), None),
            Err(error) => {
                tracing::warn!(kind = "Node", %error, "watch failed; retrying with backoff");
            }
        }
    }
    "Node"
}

fn zone(node: &PartialObjectMeta<Node>) -> Option<String> {
    node.labels().get(ZONE_LABEL).cloned()
}
