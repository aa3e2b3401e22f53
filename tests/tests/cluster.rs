//! The test cluster itself: a real kube-apiserver answers, and RBAC is enforced for a
//! ServiceAccount token it signed (so tests of least privilege mean something).

use fairway_tests::TestCluster;
use fairway_tests::kubectl::kubectl;

#[test]
fn apiserver_is_ready_and_enforces_rbac_for_service_accounts() {
    let cluster = TestCluster::shared().unwrap_or_else(|e| panic!("test cluster: {e}"));
    let run = |args: &[&str]| {
        let out = kubectl(cluster, args, None).unwrap_or_else(|e| panic!("{e}"));
        (out.success, out.stdout.trim().to_string(), out.stderr)
    };

    let (ok, body, err) = run(&["get", "--raw", "/readyz"]);
    assert!(ok, "{err}");
    assert_eq!(body, "ok");

    let ns = format!("rbac-{:06x}", rand::random::<u32>() & 0xff_ffff);
    assert!(run(&["create", "namespace", &ns]).0);
    assert!(run(&["create", "serviceaccount", "probe", "-n", &ns]).0);
    let (ok, token, err) = run(&["create", "token", "probe", "-n", &ns, "--audience=fairway"]);
    assert!(
        ok,
        "TokenRequest must work (service-account signing key): {err}"
    );

    let token_flag = format!("--token={token}");
    let (allowed, answer, _) = run(&["auth", "can-i", "list", "secrets", "-n", &ns, &token_flag]);
    assert!(
        !allowed && answer == "no",
        "a fresh ServiceAccount must not list secrets under RBAC, got {answer:?}"
    );
    let (admin, answer, _) = run(&["auth", "can-i", "list", "secrets", "-n", &ns]);
    assert!(
        admin && answer == "yes",
        "the admin kubeconfig must be allowed, got {answer:?}"
    );
}
