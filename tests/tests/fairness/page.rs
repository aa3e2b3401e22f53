//! The controller's live page in a real headless browser: one page load follows a
//! scale-up from 1 to 4 pods as it happens (server-sent events, no reload), with per-pod
//! share bars, the proxy's applied version and lag, and the Route's conditions; then a
//! phone-sized screenshot (`target/fairway-live-page.png`; docs/img/live-page.png is one).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use fairway_tests::gobuild::target_dir;
use serde_json::Value;

use super::browser::Browser;
use super::world::{WAIT, World, get};

/// Most requests the background load sends, whatever happens.
const MAX_LOAD_REQUESTS: usize = 50_000;

/// What the page shows for `fair/orders`, read from its DOM.
const READ: &str = r#"(() => {
  const card = document.querySelector('[data-route="fair/orders"]');
  if (!card) return null;
  return {
    pods: [...card.querySelectorAll('[data-pod]')].map(e => [e.dataset.pod, Number(e.dataset.share)]),
    conditions: [...card.querySelectorAll('.badge')].map(e => e.textContent),
    skew: card.querySelector('[data-skew]').textContent,
    proxies: [...document.querySelectorAll('#proxies tr')].map(r => [...r.cells].map(c => c.textContent)),
    state: document.getElementById('state').textContent,
    loads: performance.getEntriesByType('navigation').length,
  };
})()"#;

/// Polls the page until `done` holds for what it shows.
async fn until(
    page: &mut super::browser::Page,
    what: &str,
    done: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = Instant::now() + WAIT;
    loop {
        let shown = page.eval(READ).await;
        if done(&shown) {
            return shown;
        }
        assert!(
            Instant::now() < deadline,
            "the page never showed {what}: {shown}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn pods(shown: &Value) -> Vec<(String, f64)> {
    shown["pods"]
        .as_array()
        .map(|pods| {
            pods.iter()
                .map(|p| {
                    (
                        p[0].as_str().unwrap_or("").to_owned(),
                        p[1].as_f64().unwrap_or(0.0),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test]
async fn the_live_page_follows_a_scale_up_from_one_to_four_pods() {
    let mut world = World::start(180, 4, 1).await;
    let proxy = world.add_proxy("page-proxy", &[]).await;

    // Steady keep-alive-like load through the proxy for the whole test, bounded.
    let stop = Arc::new(AtomicBool::new(false));
    let listen = world.proxies[proxy].listen;
    let load = tokio::spawn({
        let stop = Arc::clone(&stop);
        async move {
            for _ in 0..MAX_LOAD_REQUESTS {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let _ = get(listen, "orders.fair", "/").await;
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
    });

    let mut browser = Browser::start(world.dir.path()).await;
    let mut page = browser
        .open(&format!("http://{}/", world.controller_admin))
        .await;
    page.as_phone().await;

    let before = until(&mut page, "one pod taking every request", |shown| {
        pods(shown) == [("pod-1".to_owned(), 1.0)]
    })
    .await;
    assert_eq!(
        before["conditions"],
        serde_json::json!(["Accepted: Accepted", "ResolvedRefs: ResolvedRefs"]),
        "the Route's conditions: {before}"
    );
    let proxies = &before["proxies"][0];
    assert_eq!(proxies[0], "page-proxy", "{before}");
    assert_eq!(proxies[3], "0", "the proxy's lag, in versions: {before}");
    assert!(
        proxies[2].as_str().is_some_and(|v| v.contains('.')),
        "applied version: {before}"
    );

    world.list(4);
    let after = until(&mut page, "four pods sharing the load", |shown| {
        let pods = pods(shown);
        pods.len() == 4 && pods.iter().all(|(_, share)| (0.15..0.35).contains(share))
    })
    .await;
    let names: Vec<String> = pods(&after).into_iter().map(|(name, _)| name).collect();
    assert_eq!(names, ["pod-1", "pod-2", "pod-3", "pod-4"]);
    assert_eq!(after["loads"], 1, "one page load: the change arrived live");
    assert!(
        after["state"]
            .as_str()
            .is_some_and(|s| s.starts_with("live")),
        "the event stream is open: {after}"
    );

    let shot = target_dir().join("fairway-live-page.png");
    page.screenshot(&shot).await;
    let size = std::fs::metadata(&shot).map(|m| m.len()).unwrap_or(0);
    assert!(
        size > 10_000,
        "a real picture, not an empty one: {size} bytes"
    );
    eprintln!("screenshot: {}", shot.display());

    stop.store(true, Ordering::Relaxed);
    load.await.expect("the load task ends");
    drop(browser);
}
