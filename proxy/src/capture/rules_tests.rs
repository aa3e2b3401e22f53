use std::num::NonZeroU16;

use super::{Capture, CaptureConfig, Cidr, CidrError, install, remove};

fn cidr(s: &str) -> Cidr {
    s.parse().unwrap()
}

fn port(n: u16) -> NonZeroU16 {
    NonZeroU16::new(n).unwrap()
}

fn services() -> CaptureConfig {
    CaptureConfig {
        capture: Capture::Cidrs(vec![cidr("10.96.0.0/12")]),
        proxy_uid: 2140,
        to_port: port(4143),
        exclude_ports: Vec::new(),
        exclude_cidrs: Vec::new(),
    }
}

#[test]
fn the_service_range_goes_to_the_proxy_except_its_own_and_loopback_traffic() {
    assert_eq!(
        install(&services()),
        "table inet fairway_capture {}\n\
         delete table inet fairway_capture\n\
         table inet fairway_capture {\n  \
           chain output {\n    \
             type nat hook output priority -100; policy accept;\n    \
             meta skuid 2140 return\n    \
             ip daddr 127.0.0.0/8 return\n    \
             ip6 daddr ::1 return\n    \
             ip daddr { 10.96.0.0/12 } meta l4proto tcp redirect to :4143\n  \
           }\n\
         }\n"
    );
}

#[test]
fn exclusions_come_before_the_redirects_and_families_are_split() {
    let config = CaptureConfig {
        capture: Capture::Cidrs(vec![cidr("10.96.0.0/12"), cidr("fd00:10:96::/112")]),
        exclude_ports: vec![port(5432), port(6379)],
        exclude_cidrs: vec![cidr("10.96.0.1/32"), cidr("fd00:10:96::1/128")],
        ..services()
    };
    let rules = install(&config);
    let lines: Vec<&str> = rules.lines().map(str::trim).collect();
    let at = |line: &str| {
        lines
            .iter()
            .position(|l| *l == line)
            .unwrap_or_else(|| panic!("{line:?} missing from:\n{rules}"))
    };
    let excluded = [
        at("tcp dport { 5432, 6379 } return"),
        at("ip daddr { 10.96.0.1/32 } return"),
        at("ip6 daddr { fd00:10:96::1/128 } return"),
    ];
    let redirected = [
        at("ip daddr { 10.96.0.0/12 } meta l4proto tcp redirect to :4143"),
        at("ip6 daddr { fd00:10:96::/112 } meta l4proto tcp redirect to :4143"),
    ];
    assert!(
        excluded.iter().max() < redirected.iter().min(),
        "an excluded destination inside a captured range returns before its redirect:\n{rules}"
    );
    assert!(at("meta skuid 2140 return") < redirected[0]);
}

#[test]
fn all_outbound_redirects_every_tcp_connection_left() {
    let config = CaptureConfig {
        capture: Capture::All,
        ..services()
    };
    let rules = install(&config);
    let redirects: Vec<&str> = rules.lines().filter(|l| l.contains("redirect")).collect();
    assert_eq!(redirects, ["    meta l4proto tcp redirect to :4143"]);
    assert!(rules.contains("meta skuid 2140 return"));
}

#[test]
fn installing_first_removes_and_removing_is_safe_on_an_empty_ruleset() {
    // The same prefix makes an install a replacement (idempotent) in one transaction.
    assert!(install(&services()).starts_with(&remove()));
    assert_eq!(
        remove(),
        "table inet fairway_capture {}\ndelete table inet fairway_capture\n",
        "creating the table first makes the delete succeed when nothing is installed"
    );
}

#[test]
fn cidrs_parse_and_refuse_typos() {
    assert_eq!(cidr("10.96.0.0/12").to_string(), "10.96.0.0/12");
    assert_eq!(cidr("fd00::/108").to_string(), "fd00::/108");
    assert_eq!(cidr("0.0.0.0/0").to_string(), "0.0.0.0/0");
    assert_eq!(cidr("10.96.0.10/32").prefix(), 32);
    assert!(
        matches!("10.96.0.1/12".parse::<Cidr>(), Err(CidrError::HostBits(_, c)) if c == cidr("10.96.0.0/12"))
    );
    assert!(matches!(
        "10.96.0.0".parse::<Cidr>(),
        Err(CidrError::Shape(_))
    ));
    assert!(matches!(
        "10.96.0.0/33".parse::<Cidr>(),
        Err(CidrError::Prefix(_))
    ));
    assert!(matches!(
        "fd00::/129".parse::<Cidr>(),
        Err(CidrError::Prefix(_))
    ));
    assert!(matches!(
        "orders/12".parse::<Cidr>(),
        Err(CidrError::Address(_))
    ));
}
