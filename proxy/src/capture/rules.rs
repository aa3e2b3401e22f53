//! The capture rule set as nftables text, decided from a [`CaptureConfig`] alone: no
//! I/O, so every rule the init step installs is visible in a test (and in
//! `fairway-capture print`).
//!
//! One table of our own (`inet fairway_capture`) holds everything, so installing twice
//! replaces it and removing it touches no one else's rules. The text starts by creating
//! the table if it is missing and deleting it, then defines it again: `nft -f` applies a
//! file as one transaction, so the pod has either the old rules or the new ones, never a
//! half-installed set, and a rerun of the init container (a pod restart) is harmless.

use std::fmt::{self, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::num::NonZeroU16;
use std::str::FromStr;

/// Our table's family and name.
pub const TABLE: &str = "inet fairway_capture";

/// The nat output hook's usual priority (`NF_IP_PRI_NAT_DST`): nftables names it
/// `dstnat` only on prerouting, so it is spelled as a number.
const NAT_OUTPUT_PRIORITY: i32 = -100;

/// An address range, `10.96.0.0/12` or `fd00::/108`, host bits cleared.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Cidr {
    addr: IpAddr,
    prefix: u8,
}

/// Why a CIDR did not parse.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum CidrError {
    #[error("{0:?} is not ADDRESS/PREFIX (e.g. 10.96.0.0/12)")]
    Shape(String),
    #[error("{0:?}: the address is not an IP address")]
    Address(String),
    #[error("{0:?}: the prefix length is more than the address has bits")]
    Prefix(String),
    #[error("{0:?} has host bits set: did you mean {1}?")]
    HostBits(String, Cidr),
}

impl Cidr {
    pub fn addr(&self) -> IpAddr {
        self.addr
    }

    pub fn prefix(&self) -> u8 {
        self.prefix
    }
}

impl FromStr for Cidr {
    type Err = CidrError;

    fn from_str(s: &str) -> Result<Cidr, CidrError> {
        let (addr, prefix) = s
            .trim()
            .split_once('/')
            .ok_or_else(|| CidrError::Shape(s.to_owned()))?;
        let addr: IpAddr = addr.parse().map_err(|_| CidrError::Address(s.to_owned()))?;
        let prefix: u8 = prefix.parse().map_err(|_| CidrError::Shape(s.to_owned()))?;
        let bits = if addr.is_ipv4() { 32 } else { 128 };
        if prefix > bits {
            return Err(CidrError::Prefix(s.to_owned()));
        }
        let network = match addr {
            // `checked_shl` is `None` for a shift by the whole width: a /0 keeps no bit.
            IpAddr::V4(a) => IpAddr::V4(Ipv4Addr::from_bits(
                a.to_bits() & u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0),
            )),
            IpAddr::V6(a) => IpAddr::V6(Ipv6Addr::from_bits(
                a.to_bits() & u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0),
            )),
        };
        let cidr = Cidr {
            addr: network,
            prefix,
        };
        // A typo such as 10.96.0.1/12 is refused rather than silently widened.
        if network != addr {
            return Err(CidrError::HostBits(s.to_owned(), cidr));
        }
        Ok(cidr)
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// Which outbound connections go to the proxy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Capture {
    /// TCP to these ranges (the cluster's Service CIDRs): the proxy only balances
    /// Services, and everything else keeps the kernel's path.
    Cidrs(Vec<Cidr>),
    /// All outbound TCP (what is not excluded).
    All,
}

/// What the capture rules do, typed. Built once from `fairway-capture`'s flags.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CaptureConfig {
    pub capture: Capture,
    /// The proxy's own UID: its connections (to pods, to the controller, passed-through
    /// ones) are never captured, which is what keeps it out of a loop.
    pub proxy_uid: u32,
    /// The proxy's `--outbound-listen` port, on loopback.
    pub to_port: NonZeroU16,
    /// Destination ports never captured (a database the app must reach directly).
    pub exclude_ports: Vec<NonZeroU16>,
    /// Destination ranges never captured, even inside a captured range.
    pub exclude_cidrs: Vec<Cidr>,
}

/// The rule set that installs (or replaces) the capture (module docs).
pub fn install(config: &CaptureConfig) -> String {
    let mut out = remove();
    let port = config.to_port;
    let _ = writeln!(out, "table {TABLE} {{");
    out.push_str("  chain output {\n");
    let _ = writeln!(
        out,
        "    type nat hook output priority {NAT_OUTPUT_PRIORITY}; policy accept;"
    );
    // Exclusions first, each a `return`: the first match wins.
    let _ = writeln!(out, "    meta skuid {} return", config.proxy_uid);
    // Loopback by destination, not by interface: a ClusterIP may route over `lo` (a
    // node-local address), and the app talking to itself must never be taken.
    out.push_str("    ip daddr 127.0.0.0/8 return\n");
    out.push_str("    ip6 daddr ::1 return\n");
    if !config.exclude_ports.is_empty() {
        let _ = writeln!(out, "    tcp dport {} return", set(&config.exclude_ports));
    }
    let (v4, v6) = by_family(&config.exclude_cidrs);
    if !v4.is_empty() {
        let _ = writeln!(out, "    ip daddr {} return", set(&v4));
    }
    if !v6.is_empty() {
        let _ = writeln!(out, "    ip6 daddr {} return", set(&v6));
    }
    match &config.capture {
        Capture::All => {
            let _ = writeln!(out, "    meta l4proto tcp redirect to :{port}");
        }
        Capture::Cidrs(cidrs) => {
            let (v4, v6) = by_family(cidrs);
            if !v4.is_empty() {
                let _ = writeln!(
                    out,
                    "    ip daddr {} meta l4proto tcp redirect to :{port}",
                    set(&v4)
                );
            }
            if !v6.is_empty() {
                let _ = writeln!(
                    out,
                    "    ip6 daddr {} meta l4proto tcp redirect to :{port}",
                    set(&v6)
                );
            }
        }
    }
    out.push_str("  }\n}\n");
    out
}

/// The rule set that removes the capture; harmless when it is not installed.
pub fn remove() -> String {
    // `table` alone creates the table only if it is missing, so the `delete` after it
    // never fails.
    format!("table {TABLE} {{}}\ndelete table {TABLE}\n")
}

fn by_family(cidrs: &[Cidr]) -> (Vec<Cidr>, Vec<Cidr>) {
    cidrs.iter().partition(|c| c.addr.is_ipv4())
}

/// `{ a, b }`: nftables' anonymous set (never empty: callers check).
fn set<T: fmt::Display>(items: &[T]) -> String {
    let items: Vec<String> = items.iter().map(ToString::to_string).collect();
    format!("{{ {} }}", items.join(", "))
}

#[cfg(test)]
#[path = "rules_tests.rs"]
mod tests;
