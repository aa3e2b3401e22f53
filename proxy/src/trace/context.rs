//! W3C Trace Context (`traceparent`, https://www.w3.org/TR/trace-context/): parsing the
//! client's, formatting ours, and the sampling decision. Pure.

use std::fmt::Write as _;

/// The header name, lowercase as HTTP/2 requires.
pub const TRACEPARENT: &str = "traceparent";

/// One `traceparent` value: version 00, trace id, parent (span) id, sampled flag.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TraceParent {
    pub trace_id: [u8; 16],
    pub parent_id: [u8; 8],
    pub sampled: bool,
}

/// Parses `00-<32 hex>-<16 hex>-<2 hex>`. Future versions are read as version 00 when
/// they start like it (the spec's forward-compatibility rule); all-zero ids, version
/// `ff` and malformed values are `None` (the request then starts a new trace).
pub fn parse(value: &[u8]) -> Option<TraceParent> {
    let text = std::str::from_utf8(value).ok()?.trim();
    let mut parts = text.split('-');
    let version = parts.next()?;
    let (trace, parent, flags) = (parts.next()?, parts.next()?, parts.next()?);
    let known = version == "00";
    if version.len() != 2 || version == "ff" || (known && parts.next().is_some()) {
        return None;
    }
    if !version
        .bytes()
        .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
    {
        return None;
    }
    let trace_id: [u8; 16] = hex(trace)?;
    let parent_id: [u8; 8] = hex(parent)?;
    let [flags] = hex::<1>(flags)?;
    if trace_id == [0; 16] || parent_id == [0; 8] {
        return None;
    }
    Some(TraceParent {
        trace_id,
        parent_id,
        sampled: flags & 1 == 1,
    })
}

/// `00-<trace>-<span>-<flags>` for a request we send on.
pub fn format(trace_id: &[u8; 16], span_id: &[u8; 8], sampled: bool) -> String {
    let mut out = String::with_capacity(55);
    out.push_str("00-");
    push_hex(&mut out, trace_id);
    out.push('-');
    push_hex(&mut out, span_id);
    out.push_str(if sampled { "-01" } else { "-00" });
    out
}

/// Whether to record a request: a client's decision is followed (parent-based
/// sampling, so a trace is whole or absent); without one, `per_million` of new traces,
/// decided from the trace id's low bits (random), so every proxy decides alike.
pub fn sampled(parent: Option<&TraceParent>, trace_id: &[u8; 16], per_million: u32) -> bool {
    match parent {
        Some(parent) => parent.sampled,
        None => {
            let low = u64::from_be_bytes(trace_id[8..].try_into().unwrap_or_default());
            low % 1_000_000 < u64::from(per_million)
        }
    }
}

fn hex<const N: usize>(text: &str) -> Option<[u8; N]> {
    if text.len() != N * 2 {
        return None;
    }
    let mut out = [0u8; N];
    for (i, pair) in text.as_bytes().chunks(2).enumerate() {
        let digit = |b: u8| match b {
            b'0'..=b'9' => Some(b - b'0'),
            b'a'..=b'f' => Some(b - b'a' + 10),
            _ => None,
        };
        out[i] = digit(pair[0])? << 4 | digit(pair[1])?;
    }
    Some(out)
}

fn push_hex(out: &mut String, bytes: &[u8]) {
    for b in bytes {
        let _ = write!(out, "{b:02x}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn the_specs_example_round_trips() {
        let parsed = parse(EXAMPLE.as_bytes()).expect("valid");
        assert!(parsed.sampled);
        assert_eq!(
            parsed.parent_id,
            [0x00, 0xf0, 0x67, 0xaa, 0x0b, 0xa9, 0x02, 0xb7]
        );
        assert_eq!(format(&parsed.trace_id, &parsed.parent_id, true), EXAMPLE);
        assert_eq!(
            format(&parsed.trace_id, &parsed.parent_id, false),
            EXAMPLE.replace("-01", "-00")
        );
    }

    #[test]
    fn malformed_or_forbidden_values_start_a_new_trace() {
        for bad in [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "0-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        ] {
            assert_eq!(parse(bad.as_bytes()), None, "{bad:?}");
        }
        let future = "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-what-comes";
        assert!(
            parse(future.as_bytes()).is_some(),
            "a later version read as 00"
        );
    }

    #[test]
    fn sampling_follows_the_parent_else_the_ratio() {
        let parent = parse(EXAMPLE.as_bytes()).expect("valid");
        let unsampled = TraceParent {
            sampled: false,
            ..parent
        };
        assert!(sampled(Some(&parent), &parent.trace_id, 0));
        assert!(!sampled(Some(&unsampled), &parent.trace_id, 1_000_000));
        assert!(sampled(None, &[7; 16], 1_000_000), "ratio 1: everything");
        assert!(!sampled(None, &[7; 16], 0), "ratio 0: nothing new");
        let kept = (0u64..10_000)
            .filter(|i| {
                let mut id = [0u8; 16];
                id[8..].copy_from_slice(&(i * 7_919_111).to_be_bytes());
                sampled(None, &id, 100_000)
            })
            .count();
        assert!((800..1_200).contains(&kept), "about a tenth at 0.1: {kept}");
    }
}
