//! The seed scenario, in-process: controller (static dir), proxy, pods on 127.0.0.x and
//! two keep-alive loads. Requests made after the scale-up spread evenly through the
//! proxy and stay on the first pod through the per-connection stand-in.

use super::*;

/// Each pod's share after the scale-up, through the proxy: 25% +/- this many points.
/// Round robin over keep-alive connections is exact up to in-flight edges; the slack
/// covers requests that straddle the one-second settling window.
const TOLERANCE_POINTS: f64 = 3.0;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scale_up_spreads_through_the_proxy_and_not_through_l4() {
    let dir = tempfile::tempdir().expect("tempdir");
    let args = DemoArgs {
        pods: 4,
        duration: 6,
        connections: 4,
        chart: dir.path().join("demo.svg"),
    };
    let report = run(args).await.expect("the demo runs to the end");
    assert_eq!(
        report.proxy_failed, 0,
        "no request may fail through the proxy"
    );
    for (pod, share) in report.pods.iter().zip(&report.proxy_after) {
        assert!(
            (share - 25.0).abs() <= TOLERANCE_POINTS,
            "{pod} got {share:.1}% through the proxy after the scale-up; want 25% +/- {TOLERANCE_POINTS}: {report:?}"
        );
    }
    assert!(
        report.l4_after[0] > 99.0,
        "the per-connection stand-in keeps every keep-alive connection on the first pod: {report:?}"
    );
    assert!(dir.path().join("demo.svg").exists(), "the chart is written");
}
