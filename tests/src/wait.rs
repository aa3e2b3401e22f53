//! Bounded waiting on observable facts.

use std::future::Future;
use std::time::Duration;

use tokio::time::Instant;

/// Between probes: short next to any timeout, long enough not to hammer the apiserver.
const PROBE_INTERVAL: Duration = Duration::from_millis(100);

/// Probes until `probe` returns `Some`, at most `timeout`; panics naming `what` if it
/// never does. For tests: the fact waited for goes in `what`.
pub async fn eventually<T, F, Fut>(timeout: Duration, what: &str, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if let Ok(Some(found)) = tokio::time::timeout(left, probe()).await {
            return found;
        }
        if Instant::now() + PROBE_INTERVAL > deadline {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(PROBE_INTERVAL).await;
    }
}
