//! A proxy's scope on the wire: its mode and subscriptions in the hello, and the
//! `Subscribe` message (discovery.proto, "Scope").

use std::net::SocketAddr;

use super::ip::{ip_from_bytes, ip_to_bytes};
use super::{ConvertError, port, required};
use crate::pb;
use crate::scope::{HelloScope, MAX_SUBSCRIPTIONS, ProxyMode, ServiceDestination};

impl From<ProxyMode> for pb::ProxyMode {
    fn from(mode: ProxyMode) -> Self {
        match mode {
            ProxyMode::Explicit => pb::ProxyMode::Explicit,
            ProxyMode::Sidecar => pb::ProxyMode::Sidecar,
        }
    }
}

/// The mode a hello's field says: unspecified and unknown values are EXPLICIT, the
/// behaviour of every proxy before the field (a newer mode a controller does not know
/// still gets a whole, correct table).
pub fn mode_from_proto(mode: i32) -> ProxyMode {
    match pb::ProxyMode::try_from(mode) {
        Ok(pb::ProxyMode::Sidecar) => ProxyMode::Sidecar,
        _ => ProxyMode::Explicit,
    }
}

impl From<ServiceDestination> for pb::ServiceDestination {
    fn from(ServiceDestination(addr): ServiceDestination) -> Self {
        pb::ServiceDestination {
            ip: ip_to_bytes(addr.ip()),
            port: u32::from(addr.port()),
        }
    }
}

impl TryFrom<pb::ServiceDestination> for ServiceDestination {
    type Error = ConvertError;

    fn try_from(d: pb::ServiceDestination) -> Result<Self, ConvertError> {
        let ip = ip_from_bytes(&d.ip)?;
        let port = port("ServiceDestination.port", d.port)?;
        Ok(ServiceDestination::new(SocketAddr::new(ip, port.get())))
    }
}

impl pb::Subscribe {
    /// The destination subscribed to.
    pub fn destination(self) -> Result<ServiceDestination, ConvertError> {
        required(self.destination, "Subscribe.destination")?.try_into()
    }
}

impl pb::Hello {
    /// The scope this hello asks for. Invalid destinations are skipped (a proxy then
    /// simply passes those connections through) and at most [`MAX_SUBSCRIPTIONS`] are
    /// kept; an explicit proxy's subscriptions are ignored.
    pub fn scope(&self) -> HelloScope {
        let mode = mode_from_proto(self.mode);
        let subscriptions = match mode {
            ProxyMode::Explicit => Vec::new(),
            ProxyMode::Sidecar => (self.subscriptions.iter().cloned())
                .filter_map(|d| ServiceDestination::try_from(d).ok())
                .take(MAX_SUBSCRIPTIONS)
                .collect(),
        };
        HelloScope {
            mode,
            subscriptions,
        }
    }
}

impl pb::ProxyMessage {
    /// The same hello with this proxy's mode and subscriptions. Other messages are
    /// returned unchanged.
    pub fn with_scope(mut self, scope: &HelloScope) -> Self {
        if let Some(pb::proxy_message::Kind::Hello(hello)) = &mut self.kind {
            hello.mode = pb::ProxyMode::from(scope.mode).into();
            hello.subscriptions = (scope.subscriptions.iter())
                .take(MAX_SUBSCRIPTIONS)
                .map(|&d| d.into())
                .collect();
        }
        self
    }

    /// "Add the Service at `destination` to my table."
    pub fn subscribe(destination: ServiceDestination) -> Self {
        pb::ProxyMessage {
            kind: Some(pb::proxy_message::Kind::Subscribe(pb::Subscribe {
                destination: Some(destination.into()),
            })),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::net::{Ipv4Addr, Ipv6Addr};

    use prost::Message;

    use super::*;

    fn dest(addr: &str) -> ServiceDestination {
        ServiceDestination::new(addr.parse().expect("a socket address"))
    }

    #[test]
    fn a_hello_keeps_its_scope_through_the_wire() {
        let scope = HelloScope {
            mode: ProxyMode::Sidecar,
            subscriptions: vec![dest("10.96.0.10:8080"), dest("[fd00::10]:443")],
        };
        let hello = pb::ProxyMessage::hello("p", "n", None, None).with_scope(&scope);
        let decoded = pb::ProxyMessage::decode(hello.encode_to_vec().as_slice()).expect("decodes");
        let Some(pb::proxy_message::Kind::Hello(hello)) = decoded.kind else {
            panic!("a hello: {decoded:?}");
        };
        assert_eq!(hello.scope(), scope);
    }

    #[test]
    fn a_hello_without_a_mode_is_explicit_and_subscribes_to_nothing() {
        let old = pb::Hello {
            proxy_id: "old".into(),
            subscriptions: vec![dest("10.96.0.10:8080").into()],
            ..Default::default()
        };
        assert_eq!(old.scope(), HelloScope::default(), "as before the field");
        let unknown = pb::Hello {
            mode: 99,
            ..Default::default()
        };
        assert_eq!(unknown.scope().mode, ProxyMode::Explicit);
    }

    #[test]
    fn bad_destinations_are_skipped_and_the_list_is_bounded() {
        let mut subscriptions: Vec<pb::ServiceDestination> = vec![
            pb::ServiceDestination {
                ip: vec![1, 2, 3],
                port: 80,
            },
            pb::ServiceDestination {
                ip: vec![10, 0, 0, 1],
                port: 0,
            },
            pb::ServiceDestination {
                ip: vec![10, 0, 0, 1],
                port: 70_000,
            },
        ];
        subscriptions.extend(
            (0..MAX_SUBSCRIPTIONS as u32 + 5)
                .map(|i| dest(&format!("10.96.{}.{}:80", i / 256, i % 256)).into()),
        );
        let hello = pb::Hello {
            mode: pb::ProxyMode::Sidecar.into(),
            subscriptions,
            ..Default::default()
        };
        let scope = hello.scope();
        assert_eq!(scope.subscriptions.len(), MAX_SUBSCRIPTIONS);
        assert_eq!(
            scope.subscriptions[0],
            dest("10.96.0.0:80"),
            "the bad ones are gone"
        );
    }

    #[test]
    fn a_subscribe_round_trips_and_a_mapped_address_is_its_ipv4_one() {
        let mapped =
            ServiceDestination::new((Ipv4Addr::new(10, 96, 0, 10).to_ipv6_mapped(), 8080).into());
        assert_eq!(mapped, dest("10.96.0.10:8080"));
        let v6 = ServiceDestination::new((Ipv6Addr::LOCALHOST, 9).into());
        for d in [mapped, v6] {
            let message = pb::ProxyMessage::subscribe(d);
            let decoded =
                pb::ProxyMessage::decode(message.encode_to_vec().as_slice()).expect("decodes");
            let Some(pb::proxy_message::Kind::Subscribe(subscribe)) = decoded.kind else {
                panic!("a subscribe: {decoded:?}");
            };
            assert_eq!(subscribe.destination(), Ok(d));
        }
        assert_eq!(
            pb::Subscribe { destination: None }.destination(),
            Err(ConvertError::MissingField("Subscribe.destination"))
        );
    }
}
