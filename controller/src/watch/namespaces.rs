//! Namespaces opted in to implicit Routes: those labelled `fairway.dev/implicit:
//! enabled`, every Service of which is served without a Route. Metadata-only and
//! filtered by the label on the server, so the controller holds only the opted-in
//! names; a Namespace whose label is removed leaves the selection, which the watch
//! reports as a delete.

use std::collections::BTreeSet;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Namespace;
use kube::core::PartialObjectMeta;
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{Event, watcher};
use kube::{Api, Client, ResourceExt};

use super::source::{self, Sink};
use crate::index::IMPLICIT_LABEL;

/// The label selector of opted-in Namespaces.
fn selector() -> String {
    format!("{IMPLICIT_LABEL}=enabled")
}

/// Follows the opted-in Namespaces into the index until the stream ends (it does not:
/// errors are retried with backoff). Returns the kind's name.
pub(super) async fn run(client: Client, sink: Sink) -> &'static str {
    let api: Api<PartialObjectMeta<Namespace>> = Api::all(client);
    let config = source::watcher_config(Some(&selector()));
    let mut events = watcher(api, config).default_backoff().boxed();
    let mut relist = BTreeSet::new();
    let mut listed = false;
    while let Some(event) = events.next().await {
        match event {
            Ok(Event::Init) => relist.clear(),
            Ok(Event::InitApply(namespace)) => {
                relist.insert(namespace.name_any());
            }
            Ok(Event::InitDone) => {
                tracing::info!(
                    count = relist.len(),
                    "listed Namespaces opted in to implicit Routes"
                );
                let namespaces = std::mem::take(&mut relist);
                sink.update(|index| index.replace_namespace_opt_ins(namespaces));
                if !listed {
                    listed = true;
                    sink.barrier().listed();
                }
            }
            Ok(Event::Apply(namespace)) => {
                let name = namespace.name_any();
                sink.update(|index| index.set_namespace_opt_in(&name, true));
            }
            Ok(Event::Delete(namespace)) => {
                let name = namespace.name_any();
                sink.update(|index| index.set_namespace_opt_in(&name, false));
            }
            Err(error) => {
                tracing::warn!(kind = "Namespace", %error, "watch failed; retrying with backoff");
            }
        }
    }
    "Namespace"
}
