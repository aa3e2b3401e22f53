//! Who got what: per-pod shares of the answered requests, over a window or per time
//! bucket. Pure, so the demo's table and chart and the tests all agree.

use std::time::Duration;

use super::load::Sample;

/// Percent of the answered requests in `[from, to)` that each pod took, in `pods`
/// order, and the number of failed requests in the window.
pub fn shares(
    samples: &[Sample],
    pods: &[String],
    from: Duration,
    to: Duration,
) -> (Vec<f64>, u64) {
    let mut counts = vec![0u64; pods.len()];
    let mut failed = 0;
    for s in samples.iter().filter(|s| s.at >= from && s.at < to) {
        match s
            .pod
            .as_ref()
            .and_then(|p| pods.iter().position(|n| n == p))
        {
            Some(i) => counts[i] += 1,
            None => failed += 1,
        }
    }
    (percentages(&counts), failed)
}

/// Shares per `bucket`-long slice of `[0, end)`: one row per whole bucket (a partial
/// last bucket would show a misleading dip).
pub fn timeline(
    samples: &[Sample],
    pods: &[String],
    bucket: Duration,
    end: Duration,
) -> Vec<Vec<f64>> {
    let buckets = (end.as_millis() / bucket.as_millis().max(1)) as usize;
    let mut counts = vec![vec![0u64; pods.len()]; buckets];
    for s in samples {
        let b = (s.at.as_millis() / bucket.as_millis().max(1)) as usize;
        let pod = s
            .pod
            .as_ref()
            .and_then(|p| pods.iter().position(|n| n == p));
        if let (Some(row), Some(i)) = (counts.get_mut(b), pod) {
            row[i] += 1;
        }
    }
    counts.iter().map(|row| percentages(row)).collect()
}

fn percentages(counts: &[u64]) -> Vec<f64> {
    let total: u64 = counts.iter().sum();
    counts
        .iter()
        .map(|&c| {
            if total == 0 {
                0.0
            } else {
                100.0 * c as f64 / total as f64
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(ms: u64, pod: Option<&str>) -> Sample {
        Sample {
            at: Duration::from_millis(ms),
            pod: pod.map(str::to_owned),
        }
    }

    #[test]
    fn shares_count_only_the_window_and_report_failures() {
        let pods = vec!["a".to_string(), "b".to_string()];
        let samples = [
            sample(10, Some("a")),
            sample(1500, Some("a")),
            sample(1600, Some("b")),
            sample(1700, None),
            sample(2500, Some("b")),
        ];
        let (got, failed) = shares(
            &samples,
            &pods,
            Duration::from_secs(1),
            Duration::from_secs(2),
        );
        assert_eq!(got, vec![50.0, 50.0]);
        assert_eq!(failed, 1);
    }

    #[test]
    fn timeline_buckets_by_time() {
        let pods = vec!["a".to_string(), "b".to_string()];
        let samples = [
            sample(100, Some("a")),
            sample(1100, Some("b")),
            sample(1200, Some("a")),
        ];
        let rows = timeline(
            &samples,
            &pods,
            Duration::from_secs(1),
            Duration::from_secs(2),
        );
        assert_eq!(rows, vec![vec![100.0, 0.0], vec![50.0, 50.0]]);
    }
}
