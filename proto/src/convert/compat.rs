//! The Service ClusterIPs on endpoint sets (issue 17) against the previous release's
//! messages, which had no such field: each side must read the other as before.

use prost::Message;

use super::*;
use crate::diff::EndpointSetChange;
use crate::testing::set;

/// The previous release's `EndpointSetPart` (fields 1 to 3).
#[derive(Clone, PartialEq, prost::Message)]
struct PreviousEndpointSetPart {
    #[prost(message, optional, tag = "1")]
    key: Option<pb::EndpointSetKey>,
    #[prost(string, optional, tag = "2")]
    app_protocol: Option<String>,
    #[prost(message, repeated, tag = "3")]
    endpoints: Vec<pb::Endpoint>,
}

/// The previous release's `EndpointSetDelta` (fields 1 to 4).
#[derive(Clone, PartialEq, prost::Message)]
struct PreviousEndpointSetDelta {
    #[prost(message, optional, tag = "1")]
    key: Option<pb::EndpointSetKey>,
    #[prost(message, optional, tag = "2")]
    app_protocol: Option<pb::AppProtocol>,
    #[prost(message, repeated, tag = "3")]
    upsert: Vec<pb::Endpoint>,
    #[prost(message, repeated, tag = "4")]
    remove: Vec<pb::EndpointAddress>,
}

fn with_ips(mut s: EndpointSet) -> EndpointSet {
    s.cluster_ips = vec!["10.96.0.10".parse().unwrap(), "fd00::10".parse().unwrap()];
    s
}

#[test]
fn a_proxy_of_the_previous_release_reads_a_set_with_cluster_ips_as_before() {
    let s = with_ips(set("orders", 3));
    let wire = pb::EndpointSetPart::from(&s).encode_to_vec();
    let previous = PreviousEndpointSetPart::decode(wire.as_slice()).expect("decodes");
    let without = pb::EndpointSetPart::from(&set("orders", 3));
    assert_eq!(previous.key, without.key);
    assert_eq!(previous.app_protocol, without.app_protocol);
    assert_eq!(
        previous.endpoints, without.endpoints,
        "the endpoints read as before"
    );
}

#[test]
fn a_set_from_a_controller_of_the_previous_release_has_no_cluster_ips() {
    let s = set("orders", 3);
    let old = pb::EndpointSetPart::from(&s);
    let previous = PreviousEndpointSetPart {
        key: old.key,
        app_protocol: old.app_protocol,
        endpoints: old.endpoints,
    };
    let wire = previous.encode_to_vec();
    let part = pb::EndpointSetPart::decode(wire.as_slice()).expect("decodes");
    let read = EndpointSet::try_from(part).expect("converts");
    assert_eq!(
        read, s,
        "no ClusterIPs: the sidecar passes its connections through"
    );
    assert!(read.cluster_ips.is_empty());
}

#[test]
fn a_delta_with_a_cluster_ips_change_reads_as_before_to_the_previous_release() {
    let change = EndpointSetChange {
        cluster_ips: Some(vec!["10.96.0.10".parse().unwrap()]),
        upsert: vec![crate::testing::endpoint(1)],
        ..EndpointSetChange::new(set("orders", 0).key)
    };
    let wire = pb::EndpointSetDelta::from(&change).encode_to_vec();
    let previous = PreviousEndpointSetDelta::decode(wire.as_slice()).expect("decodes");
    assert_eq!(previous.upsert.len(), 1);
    assert_eq!(previous.app_protocol, None);
    // And back: the new side reads its own change exactly.
    let back = pb::EndpointSetDelta::decode(wire.as_slice()).expect("decodes");
    assert_eq!(EndpointSetChange::try_from(back), Ok(change));
}

#[test]
fn cluster_ips_are_read_sorted_and_bad_ones_are_errors() {
    let mut part = pb::EndpointSetPart::from(&set("orders", 0));
    part.cluster_ips = vec![
        vec![10, 96, 0, 20],
        vec![10, 96, 0, 10],
        vec![10, 96, 0, 20],
    ];
    let read = EndpointSet::try_from(part.clone()).expect("converts");
    let want: Vec<std::net::IpAddr> =
        vec!["10.96.0.10".parse().unwrap(), "10.96.0.20".parse().unwrap()];
    assert_eq!(read.cluster_ips, want, "sorted, duplicates dropped");
    part.cluster_ips = vec![vec![10, 96, 0]];
    assert_eq!(
        EndpointSet::try_from(part),
        Err(ConvertError::BadAddress(3))
    );
    let round = pb::EndpointSetPart::from(&with_ips(set("orders", 2)));
    assert_eq!(
        EndpointSet::try_from(round),
        Ok(with_ips(set("orders", 2))),
        "a set with ClusterIPs of both families round-trips"
    );
}
