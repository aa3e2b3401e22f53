//! Duration strings (`250ms`, `30s`, `1m30s`): the parser that agrees with
//! [`DURATION_PATTERN`](super::DURATION_PATTERN), the language the CRD schema lets through.

use std::time::Duration;

/// A duration string did not parse. Each variant is the step that failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    #[error("duration is empty")]
    Empty,
    #[error("duration {input:?}: expected a number at byte {at}")]
    Number { input: String, at: usize },
    #[error("duration {input:?}: expected digits after the decimal point at byte {at}")]
    Fraction { input: String, at: usize },
    #[error("duration {input:?}: expected a unit (ms, s, m, h) at byte {at}")]
    Unit { input: String, at: usize },
    #[error("duration {input:?} is too long")]
    Overflow { input: String },
}

/// Parses a duration string such as `250ms`, `30s`, `1m30s` or `1.5h`.
///
/// Accepts exactly the strings [`DURATION_PATTERN`](super::DURATION_PATTERN) matches;
/// fractions below one nanosecond are truncated. Fails with [`DurationError::Overflow`]
/// beyond `u64::MAX` nanoseconds (~584 years), which the pattern cannot catch.
pub fn parse_duration(input: &str) -> Result<Duration, DurationError> {
    const NANOS_PER_MS: u128 = 1_000_000;
    const NANOS_PER_S: u128 = 1_000 * NANOS_PER_MS;
    // Digits past this many are below a nanosecond even for hours, and keeping them
    // could overflow the u128 arithmetic.
    const MAX_FRACTION_DIGITS: u32 = 18;

    if input.is_empty() {
        return Err(DurationError::Empty);
    }
    let bytes = input.as_bytes();
    let overflow = || DurationError::Overflow {
        input: input.to_owned(),
    };
    let mut at = 0;
    let mut total: u128 = 0;
    while at < bytes.len() {
        let start = at;
        let mut whole: u128 = 0;
        while at < bytes.len() && bytes[at].is_ascii_digit() {
            whole = whole
                .checked_mul(10)
                .and_then(|w| w.checked_add(u128::from(bytes[at] - b'0')))
                .ok_or_else(overflow)?;
            at += 1;
        }
        if at == start {
            return Err(DurationError::Number {
                input: input.to_owned(),
                at,
            });
        }
        let (mut fraction, mut scale) = (0u128, 1u128);
        if bytes.get(at) == Some(&b'.') {
            at += 1;
            let digits = at;
            while at < bytes.len() && bytes[at].is_ascii_digit() {
                if at - digits < MAX_FRACTION_DIGITS as usize {
                    fraction = fraction * 10 + u128::from(bytes[at] - b'0');
                    scale *= 10;
                }
                at += 1;
            }
            if at == digits {
                return Err(DurationError::Fraction {
                    input: input.to_owned(),
                    at,
                });
            }
        }
        // "ms" before "m": the pattern's alternation reads "1ms" as milliseconds too.
        let unit = match (bytes.get(at), bytes.get(at + 1)) {
            (Some(b'm'), Some(b's')) => {
                at += 2;
                NANOS_PER_MS
            }
            (Some(b's'), _) => {
                at += 1;
                NANOS_PER_S
            }
            (Some(b'm'), _) => {
                at += 1;
                60 * NANOS_PER_S
            }
            (Some(b'h'), _) => {
                at += 1;
                3600 * NANOS_PER_S
            }
            _ => {
                return Err(DurationError::Unit {
                    input: input.to_owned(),
                    at,
                });
            }
        };
        let term = whole
            .checked_mul(unit)
            .and_then(|w| w.checked_add(fraction * unit / scale))
            .ok_or_else(overflow)?;
        total = total.checked_add(term).ok_or_else(overflow)?;
    }
    let nanos = u64::try_from(total).map_err(|_| overflow())?;
    Ok(Duration::from_nanos(nanos))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::DURATION_PATTERN;

    #[test]
    fn durations_parse_every_unit_and_combination() {
        let cases = [
            ("0s", Duration::ZERO),
            ("250ms", Duration::from_millis(250)),
            ("30s", Duration::from_secs(30)),
            ("5m", Duration::from_secs(300)),
            ("2h", Duration::from_secs(7200)),
            ("1m30s", Duration::from_secs(90)),
            ("1.5s", Duration::from_millis(1500)),
            ("1.5h", Duration::from_secs(5400)),
            ("0.5ms", Duration::from_micros(500)),
            ("1s1ms", Duration::from_millis(1001)),
            ("1h1m1s1ms", Duration::from_millis(3_661_001)),
            ("0.0000000001s", Duration::ZERO),
            ("007s", Duration::from_secs(7)),
        ];
        for (input, want) in cases {
            assert_eq!(parse_duration(input), Ok(want), "parsing {input:?}");
        }
    }

    #[test]
    fn durations_reject_what_the_pattern_rejects() {
        for input in [
            "", "1", "s", "1.s", ".5s", "1d", "1ns", "1us", "-1s", "1 s", " 1s", "1s ", "1S",
            "1.5.5s", "1m s", "+1s", "1e3s",
        ] {
            assert!(parse_duration(input).is_err(), "{input:?} must not parse");
        }
        assert_eq!(parse_duration(""), Err(DurationError::Empty));
        assert!(matches!(
            parse_duration("10x"),
            Err(DurationError::Unit { at: 2, .. })
        ));
    }

    #[test]
    fn durations_beyond_u64_nanoseconds_overflow() {
        assert!(matches!(
            parse_duration("9999999999999999999999999999999999999999h"),
            Err(DurationError::Overflow { .. })
        ));
        assert!(matches!(
            parse_duration("6000000h"),
            Err(DurationError::Overflow { .. })
        ));
        assert!(parse_duration("5000000h").is_ok(), "~570 years still fits");
    }

    /// The apiserver validates with the pattern, `--static-dir` and the index with the
    /// parser: both must accept the same language.
    #[test]
    fn duration_pattern_and_parser_agree() {
        let pattern = regex::Regex::new(DURATION_PATTERN).expect("pattern compiles");
        let alphabet = ["0", "1", "9", ".", "ms", "s", "m", "h", "x", " ", "-"];
        // Every string of up to five tokens (~180k), each one a verdict to compare.
        let mut inputs = std::collections::BTreeSet::from([String::new()]);
        let mut frontier = vec![String::new()];
        for _ in 0..5 {
            frontier = frontier
                .iter()
                .flat_map(|s| alphabet.iter().map(move |t| format!("{s}{t}")))
                .collect();
            inputs.extend(frontier.iter().cloned());
        }
        for input in &inputs {
            assert_eq!(
                pattern.is_match(input),
                parse_duration(input).is_ok(),
                "pattern and parser disagree on {input:?}"
            );
        }
    }
}
