//! The HTTPRoute source, on only where the cluster serves Gateway API's HTTPRoute.
//!
//! Most clusters lack the Gateway API CRDs. A watcher of a kind the apiserver does not
//! serve would fail and retry forever, and the index would never count as synced, so
//! the controller would never turn Ready. Instead the source asks API discovery once at
//! start: without `gateway.networking.k8s.io/v1` `httproutes` it logs once that HTTPRoute
//! input is off and counts as listed. CRDs installed later are read after a restart.

use std::time::Duration;

use kube::Client;

use super::source::{self, Scope, Sink};
use crate::httproute::{GROUP, HTTPRoute, PINNED_RELEASE};

/// The first wait after a failed discovery call, doubled up to [`MAX_RETRY`].
const FIRST_RETRY: Duration = Duration::from_millis(500);
/// Discovery retries settle here: an apiserver outage must not become a tight loop.
const MAX_RETRY: Duration = Duration::from_secs(30);

/// Whether the apiserver serves HTTPRoute v1. `Err` only for failures that say nothing
/// (apiserver unreachable, 5xx); a 404 is a definite "not installed".
pub async fn served(client: &Client) -> Result<bool, kube::Error> {
    match client
        .list_api_group_resources(&format!("{GROUP}/v1"))
        .await
    {
        Ok(list) => Ok(list.resources.iter().any(|r| r.name == "httproutes")),
        Err(kube::Error::Api(status)) if status.code == 404 => Ok(false),
        Err(error) => Err(error),
    }
}

/// Asks discovery until it answers, then watches HTTPRoutes in every scope, or marks
/// them listed and idles. Returns the kind's name if a watcher ends (it does not).
pub(super) async fn run(client: Client, scopes: Vec<Scope>, sink: Sink) -> &'static str {
    let mut wait = FIRST_RETRY;
    let on = loop {
        match served(&client).await {
            Ok(on) => break on,
            Err(error) => {
                tracing::warn!(%error, "cannot ask API discovery for HTTPRoute; retrying");
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(MAX_RETRY);
            }
        }
    };
    if !on {
        tracing::info!(
            group = GROUP,
            release = PINNED_RELEASE,
            "HTTPRoute input is off: the cluster does not serve gateway.networking.k8s.io/v1 \
             httproutes (install the Gateway API CRDs and restart the controller to turn it on)"
        );
        for _ in &scopes {
            sink.barrier().listed();
        }
        return std::future::pending().await;
    }
    tracing::info!(group = GROUP, "HTTPRoute input is on");
    let watchers = scopes.into_iter().map(|scope| {
        let config = source::watcher_config(None);
        source::run::<HTTPRoute>(client.clone(), scope, config, sink.clone())
    });
    let (name, _, _) = futures::future::select_all(watchers.map(Box::pin)).await;
    name
}
