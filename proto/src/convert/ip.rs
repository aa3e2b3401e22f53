//! IP addresses on the wire: 4 or 16 bytes (endpoint addresses and a Service's
//! ClusterIPs alike).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::ConvertError;

/// An IP from its 4 (IPv4) or 16 (IPv6) wire bytes.
pub(super) fn ip_from_bytes(ip: &[u8]) -> Result<IpAddr, ConvertError> {
    if let Ok(v4) = <[u8; 4]>::try_from(ip) {
        Ok(IpAddr::V4(Ipv4Addr::from(v4)))
    } else if let Ok(v6) = <[u8; 16]>::try_from(ip) {
        Ok(IpAddr::V6(Ipv6Addr::from(v6)))
    } else {
        Err(ConvertError::BadAddress(ip.len()))
    }
}

/// An IP as its 4 (IPv4) or 16 (IPv6) wire bytes.
pub(crate) fn ip_to_bytes(ip: IpAddr) -> Vec<u8> {
    match ip {
        IpAddr::V4(v4) => v4.octets().to_vec(),
        IpAddr::V6(v6) => v6.octets().to_vec(),
    }
}

/// A Service's ClusterIPs on the wire, in the model's order.
pub(crate) fn ips_to_proto(ips: &[IpAddr]) -> Vec<Vec<u8>> {
    ips.iter().map(|&ip| ip_to_bytes(ip)).collect()
}

/// A Service's ClusterIPs from the wire, sorted and de-duplicated (the model's form,
/// whatever order a sender used).
pub(crate) fn ips_from_proto(ips: Vec<Vec<u8>>) -> Result<Vec<IpAddr>, ConvertError> {
    let mut ips = ips
        .iter()
        .map(|ip| ip_from_bytes(ip))
        .collect::<Result<Vec<_>, _>>()?;
    ips.sort_unstable();
    ips.dedup();
    Ok(ips)
}
