//! The Gateway API sources (HTTPRoute, BackendTLSPolicy), each on only where the
//! cluster serves its kind.
//!
//! Most clusters lack the Gateway API CRDs. A watcher of a kind the apiserver does not
//! serve would fail and retry forever, and the index would never count as synced, so
//! the controller would never turn Ready. Instead the source asks API discovery at
//! start: without `gateway.networking.k8s.io/v1` `httproutes` it logs once that HTTPRoute
//! input is off and counts as listed, then asks again on a bounded backoff (one
//! discovery call at most every [`MAX_RECHECK`], which any authenticated client may make:
//! no RBAC beyond HTTPRoute's own) and starts the watchers when the CRDs appear, with no
//! restart. BackendTLSPolicy, whose CRD may come with or after HTTPRoute's, is watched
//! the same way on its own.

use std::time::Duration;

use kube::Client;

use super::source::{self, Kind, Scope, Sink};
use crate::httproute::{GROUP, PINNED_RELEASE};

/// The first wait after a failed discovery call, doubled up to [`MAX_RETRY`].
const FIRST_RETRY: Duration = Duration::from_millis(500);
/// Discovery retries settle here: an apiserver outage must not become a tight loop.
const MAX_RETRY: Duration = Duration::from_secs(30);
/// The first re-check for CRDs installed after start, doubled up to [`MAX_RECHECK`].
const FIRST_RECHECK: Duration = Duration::from_secs(1);
/// How late HTTPRoute input may start after the CRDs are installed: a discovery call
/// every 10 s costs the apiserver nothing it notices.
const MAX_RECHECK: Duration = Duration::from_secs(10);

/// The wait after `wait`: doubled, at most `max`.
fn next_wait(wait: Duration, max: Duration) -> Duration {
    wait.saturating_mul(2).min(max)
}

/// Whether the apiserver serves HTTPRoute v1. `Err` only for failures that say nothing
/// (apiserver unreachable, 5xx); a 404 is a definite "not installed".
pub async fn served(client: &Client) -> Result<bool, kube::Error> {
    served_kind(client, "httproutes").await
}

/// Whether the apiserver serves the Gateway API v1 resource `plural`, as [`served`].
pub async fn served_kind(client: &Client, plural: &str) -> Result<bool, kube::Error> {
    match client
        .list_api_group_resources(&format!("{GROUP}/v1"))
        .await
    {
        Ok(list) => Ok(list.resources.iter().any(|r| r.name == plural)),
        Err(kube::Error::Api(status)) if status.code == 404 => Ok(false),
        Err(error) => Err(error),
    }
}

/// Asks discovery until it answers, then watches `K` (Gateway API resource `plural`)
/// in every scope; without it, marks it listed and asks again until it appears. Returns
/// the kind's name if a watcher ends (it does not).
pub(super) async fn run<K: Kind>(
    client: Client,
    scopes: Vec<Scope>,
    sink: Sink,
    plural: &'static str,
) -> &'static str {
    let kind = K::NAME;
    let mut wait = FIRST_RETRY;
    let on = loop {
        match served_kind(&client, plural).await {
            Ok(on) => break on,
            Err(error) => {
                tracing::warn!(%error, kind, "cannot ask API discovery for a Gateway API kind; retrying");
                tokio::time::sleep(wait).await;
                wait = next_wait(wait, MAX_RETRY);
            }
        }
    };
    // Counted as listed already when it starts late: the controller turned Ready then.
    let counted = !on;
    if !on {
        tracing::info!(
            group = GROUP,
            release = PINNED_RELEASE,
            "{kind} input is off: the cluster does not serve gateway.networking.k8s.io/v1 \
             {plural} (it turns on by itself once the Gateway API CRDs are installed)"
        );
        for _ in &scopes {
            sink.barrier().listed();
        }
        let mut wait = FIRST_RECHECK;
        loop {
            tokio::time::sleep(wait).await;
            wait = next_wait(wait, MAX_RECHECK);
            match served_kind(&client, plural).await {
                Ok(true) => break,
                Ok(false) => {}
                Err(error) => tracing::debug!(%error, kind, "cannot ask API discovery"),
            }
        }
    }
    tracing::info!(group = GROUP, "{kind} input is on");
    let watchers = scopes.into_iter().map(|scope| {
        let config = source::watcher_config(None);
        source::run_counted::<K>(client.clone(), scope, config, sink.clone(), counted)
    });
    let (name, _, _) = futures::future::select_all(watchers.map(Box::pin)).await;
    name
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_double_up_to_their_bound() {
        let mut wait = FIRST_RECHECK;
        let mut waits = Vec::new();
        for _ in 0..6 {
            waits.push(wait.as_secs());
            wait = next_wait(wait, MAX_RECHECK);
        }
        assert_eq!(
            waits,
            [1, 2, 4, 8, 10, 10],
            "bounded: never longer than 10 s"
        );
        assert_eq!(
            next_wait(Duration::MAX, MAX_RETRY),
            MAX_RETRY,
            "no overflow"
        );
    }
}
