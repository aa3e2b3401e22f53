//! What can be wrong with a wire message.

/// Why a wire message could not become a domain value. Variant names double as metric
/// labels; field names in messages are `Message.field`, as in the `.proto`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ConvertError {
    /// A message field the contract requires is absent.
    #[error("missing field {0}")]
    MissingField(&'static str),
    /// An endpoint IP that is neither 4 (IPv4) nor 16 (IPv6) bytes long.
    #[error("bad address: an IP is 4 or 16 bytes, got {0}")]
    BadAddress(usize),
    /// A port of 0, which can be neither dialled nor a Service port.
    #[error("{0} is 0")]
    ZeroPort(&'static str),
    /// A port above 65535.
    #[error("{field} {port} is out of range")]
    PortOutOfRange { field: &'static str, port: u32 },
    /// A load-balancer policy that is unspecified or unknown to this build.
    #[error("unknown load balancer policy {0}")]
    UnknownPolicy(i32),
    /// An affinity bound below 100%: no endpoint could ever take a keyed request.
    #[error("affinity balance factor {0}% is below 100%")]
    BalanceFactor(u32),
    /// An upstream protocol that is unspecified or unknown to this build.
    #[error("unknown upstream protocol {0}")]
    UnknownUpstreamProtocol(i32),
    /// A rule's path type unknown to this build.
    #[error("unknown path type {0}")]
    UnknownPathType(i32),
    /// A redirect status other than 301, 302, 303, 307 or 308.
    #[error("redirect status {0} is not a redirect")]
    RedirectStatus(u32),
}
