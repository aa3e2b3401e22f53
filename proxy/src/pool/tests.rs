//! Which pool a request's connection comes from.

use std::num::NonZeroU16;
use std::time::Duration;

use fairway_proto::model::{AppProtocol, EndpointSetKey, UpstreamTls};

use super::*;
use crate::tls::{Alpn, PodTls};

fn addr(last: u8) -> EndpointAddr {
    EndpointAddr(([10, 0, 0, last], 8443).into())
}

fn tls(ca: &str, hostname: Option<&str>) -> Option<Arc<PodTls>> {
    let model = UpstreamTls {
        ca_pem: ca.into(),
        hostname: hostname.map(str::to_owned),
        cluster_domain: "cluster.local".into(),
        subject_alt_names: Vec::new(),
    };
    let set = EndpointSetKey {
        namespace: "shop".into(),
        service: "orders".into(),
        port: NonZeroU16::MIN.saturating_add(8442),
    };
    Some(Arc::new(PodTls::new(&model, &set, Alpn::Either)))
}

fn settings(tls: Option<Arc<PodTls>>) -> ConnSettings {
    ConnSettings {
        protocol: AppProtocol::Http1,
        tls,
        connect_timeout: Duration::from_secs(1),
        max_connections: 4,
        idle_timeout: Duration::from_secs(90),
        max_age: None,
        max_requests: 0,
    }
}

#[test]
fn plaintext_and_tls_to_one_pod_never_share_a_pool() {
    let key = |addr, tls| PoolKey::new(addr, &settings(tls));
    let with_a = key(addr(1), tls("ca-a", None));
    for (other, why) in [
        (key(addr(1), None), "plaintext"),
        (key(addr(1), tls("ca-b", None)), "another CA"),
        (
            key(addr(1), tls("ca-a", Some("api.example"))),
            "another name",
        ),
        (key(addr(2), tls("ca-a", None)), "another pod"),
    ] {
        assert_ne!(with_a, other, "{why} must not share the pool");
    }
    assert_eq!(
        with_a,
        key(addr(1), tls("ca-a", None)),
        "the same CA and name from a new table version keeps the pool"
    );
}

#[test]
fn each_key_has_its_own_pool_and_an_endpoint_leaving_drains_both() {
    let pools = Pools::new();
    let plain = pools.endpoint(PoolKey::new(addr(1), &settings(None)));
    let secure = pools.endpoint(PoolKey::new(addr(1), &settings(tls("ca-a", None))));
    assert!(!Arc::ptr_eq(&plain, &secure), "two kinds, two pools");
    let again = pools.endpoint(PoolKey::new(addr(1), &settings(tls("ca-a", None))));
    assert!(
        Arc::ptr_eq(&secure, &again),
        "equal TLS finds the same pool"
    );
    assert_eq!(pools.stats().len(), 1, "stats count per endpoint");

    let removed = pools.retain(&|key| key.addr != addr(1));
    assert_eq!(removed.len(), 2, "both pools of the pod that left drain");
    assert!(pools.stats().is_empty());
}
