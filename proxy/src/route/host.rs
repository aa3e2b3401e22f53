//! Host normalisation: what the router compares, from a `Host` header, an `:authority`
//! or a Route's `hosts` entry alike, so both sides of the lookup agree.

use std::borrow::Cow;

/// The lookup form of a host: userinfo and port stripped, IPv6 brackets removed,
/// one trailing dot (a fully qualified name) removed, ASCII lowercased.
///
/// `Orders.Shop:8080` -> `orders.shop`, `[::1]:80` -> `::1`, `::1` -> `::1` (a bare
/// IPv6 address has no port to strip), `orders.shop.` -> `orders.shop`,
/// `user@orders:80` -> `orders`. Never fails: garbage in gives a key no Route has.
/// Borrows when nothing needs lowercasing (the common case: no allocation per request).
pub fn normalize_host(authority: &str) -> Cow<'_, str> {
    match plain_host(authority) {
        Some(host) => Cow::Borrowed(host),
        None => any_host(authority),
    }
}

/// The fast path, one pass over the bytes: a lowercase name or IPv4 address, with or
/// without a port (`orders.shop:8080`), which is what nearly every request sends.
/// `None` for anything else (uppercase, userinfo, IPv6): [`any_host`] decides those.
fn plain_host(authority: &str) -> Option<&str> {
    let bytes = authority.as_bytes();
    let end = bytes
        .iter()
        .position(|&b| !(b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-'))
        .unwrap_or(bytes.len());
    match &bytes[end..] {
        [] => {}
        [b':', port @ ..] if port.iter().all(u8::is_ascii_digit) => {}
        _ => return None,
    }
    let host = &authority[..end];
    Some(host.strip_suffix('.').unwrap_or(host))
}

/// Every other authority form.
fn any_host(authority: &str) -> Cow<'_, str> {
    // Userinfo may precede the host in an absolute-form URI's authority.
    let host_port = authority
        .rsplit_once('@')
        .map_or(authority, |(_, rest)| rest);
    let host = if let Some(rest) = host_port.strip_prefix('[') {
        // `[v6]` or `[v6]:port`: everything up to the closing bracket.
        rest.split_once(']').map_or(rest, |(inside, _)| inside)
    } else {
        match host_port.split_once(':') {
            // Exactly one colon: `host:port`. Two or more: a bare IPv6 address.
            Some((host, port)) if !port.contains(':') => host,
            _ => host_port,
        }
    };
    let host = host.strip_suffix('.').unwrap_or(host);
    if host.bytes().any(|b| b.is_ascii_uppercase()) {
        Cow::Owned(host.to_ascii_lowercase())
    } else {
        Cow::Borrowed(host)
    }
}

/// The port of an authority (`orders.shop:8080`, `[fd00::10]:8080`), if it has one.
pub fn port_of(authority: &str) -> Option<u16> {
    let host_port = authority
        .rsplit_once('@')
        .map_or(authority, |(_, rest)| rest);
    let port = match host_port.strip_prefix('[') {
        Some(rest) => rest.split_once("]:")?.1,
        None => match host_port.split_once(':') {
            Some((_, port)) if !port.contains(':') => port,
            _ => return None,
        },
    };
    port.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::{any_host, normalize_host, plain_host, port_of};

    #[test]
    fn ports_are_read_from_names_and_both_address_families() {
        assert_eq!(port_of("orders.shop:8080"), Some(8080));
        assert_eq!(port_of("[fd00::10]:8080"), Some(8080));
        assert_eq!(port_of("user@10.96.0.10:80"), Some(80));
        for none in [
            "orders.shop",
            "[fd00::10]",
            "fd00::10",
            "orders:http",
            "orders:",
        ] {
            assert_eq!(port_of(none), None, "{none}");
        }
    }

    #[test]
    fn the_fast_path_agrees_with_the_general_one() {
        for authority in [
            "orders.shop",
            "orders.shop:8080",
            "orders.shop.",
            "orders.shop.:80",
            "10.0.0.1:80",
            ":80",
            "",
            "a-b.c",
            "orders:",
            "orders:8a",
            "Orders",
            "u@orders",
            "[::1]:80",
            "fd00::a",
            "orders:80:90",
        ] {
            if let Some(fast) = plain_host(authority) {
                assert_eq!(fast, any_host(authority), "{authority:?}");
            }
        }
        assert_eq!(plain_host("orders.shop:4140"), Some("orders.shop"));
        assert_eq!(
            plain_host("Orders.shop"),
            None,
            "uppercase takes the general path"
        );
        assert_eq!(plain_host("fd00::a"), None, "IPv6 takes the general path");
    }

    #[test]
    fn strips_port_and_lowercases() {
        assert_eq!(normalize_host("Orders.Shop:8080"), "orders.shop");
        assert_eq!(normalize_host("ORDERS"), "orders");
        assert_eq!(
            normalize_host("orders.shop.svc.cluster.local."),
            "orders.shop.svc.cluster.local"
        );
        assert_eq!(normalize_host("orders.shop.:80"), "orders.shop");
    }

    #[test]
    fn ipv6_with_and_without_port() {
        assert_eq!(normalize_host("[::1]:80"), "::1");
        assert_eq!(normalize_host("[FD00::A]"), "fd00::a");
        assert_eq!(
            normalize_host("fd00::a"),
            "fd00::a",
            "a bare IPv6 has no port"
        );
    }

    #[test]
    fn userinfo_and_empty() {
        assert_eq!(normalize_host("user:pw@Orders:80"), "orders");
        assert_eq!(normalize_host(""), "");
        assert_eq!(normalize_host(":80"), "");
    }
}
