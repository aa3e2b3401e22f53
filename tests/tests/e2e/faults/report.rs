//! The fault run's numbers: per phase, requests sent, succeeded, retried (the proxy's
//! `fairway_proxy_retries_total`), cut after headers and failed, and the proxy's RSS;
//! printed as a Markdown table (what `docs/security.md` quotes), then asserted on.

use std::fmt::Write as _;
use std::time::Duration;

use super::load::Tally;

/// The phase whose pod resets mid-response: the one that must show after-headers cuts.
const RESETS_PHASE: usize = 5;
/// The phase with injected faults, whose resets may also land after the headers.
const INJECTED_PHASE: usize = 6;

/// RSS readings shown over time in the report.
const RSS_POINTS: usize = 12;

/// One RSS reading of the proxy.
#[derive(Clone, Copy, Debug)]
pub struct RssSample {
    pub at: Duration,
    pub phase: usize,
    pub kib: u64,
}

/// What one phase did, besides the load's counts.
#[derive(Clone, Debug)]
pub struct Phase {
    pub name: &'static str,
    pub took: Duration,
    /// Retries by reason: not sent, reset, status.
    pub retried: [u64; 3],
    pub note: String,
}

/// The whole run.
#[derive(Debug)]
pub struct Report {
    total: Duration,
    clients: usize,
    request_timeout: &'static str,
    pub phases: Vec<Phase>,
    /// After-headers resets the flaky pod made.
    pub flaky_after_headers: u64,
    tallies: Vec<Tally>,
    rss: Vec<RssSample>,
}

impl Report {
    pub fn new(total: Duration, clients: usize, request_timeout: &'static str) -> Report {
        Report {
            total,
            clients,
            request_timeout,
            phases: Vec::new(),
            flaky_after_headers: 0,
            tallies: Vec::new(),
            rss: Vec::new(),
        }
    }

    pub fn finish(&mut self, tallies: Vec<Tally>, rss: Vec<RssSample>) {
        self.tallies = tallies;
        self.rss = rss;
    }

    fn rss_max(&self, phase: usize) -> Option<u64> {
        self.rss
            .iter()
            .filter(|s| s.phase == phase)
            .map(|s| s.kib)
            .max()
    }

    pub fn table(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "faults under load: FAIRWAY_SOAK_SECS={}, {} keep-alive clients sending GETs \
             through one proxy, Route timeout {}, 2 retries",
            self.total.as_secs(),
            self.clients,
            self.request_timeout
        );
        let _ = writeln!(out);
        let _ = writeln!(
            out,
            "| phase | secs | sent | ok | retried (not sent / reset / status) | cut after headers | failed | proxy RSS max |"
        );
        let _ = writeln!(
            out,
            "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
        );
        let mut sum = Tally::default();
        let mut retried_sum = [0u64; 3];
        for (i, phase) in self.phases.iter().enumerate() {
            let t = self.tallies.get(i).cloned().unwrap_or_default();
            let r = phase.retried;
            let rss = self
                .rss_max(i)
                .map_or("-".to_owned(), |k| format!("{:.1} MiB", k as f64 / 1024.0));
            let _ = writeln!(
                out,
                "| {} | {:.0} | {} | {} | {} ({} / {} / {}) | {} | {} | {rss} |",
                phase.name,
                phase.took.as_secs_f64(),
                t.sent,
                t.ok,
                r.iter().sum::<u64>(),
                r[0],
                r[1],
                r[2],
                t.after_headers,
                t.failed
            );
            sum.sent += t.sent;
            sum.ok += t.ok;
            sum.after_headers += t.after_headers;
            sum.failed += t.failed;
            for k in 0..3 {
                retried_sum[k] += r[k];
            }
        }
        let peak = self.rss.iter().map(|s| s.kib).max().unwrap_or(0);
        let secs = self.rss.last().map_or(0.0, |s| s.at.as_secs_f64());
        let _ = writeln!(
            out,
            "| **total** | {secs:.0} | {} | {} | {} ({} / {} / {}) | {} | {} | {:.1} MiB peak |",
            sum.sent,
            sum.ok,
            retried_sum.iter().sum::<u64>(),
            retried_sum[0],
            retried_sum[1],
            retried_sum[2],
            sum.after_headers,
            sum.failed,
            peak as f64 / 1024.0
        );
        let _ = writeln!(out);
        for phase in self.phases.iter().filter(|p| !p.note.is_empty()) {
            let _ = writeln!(out, "- {}: {}", phase.name, phase.note);
        }
        let _ = writeln!(
            out,
            "- proxy RSS: {} samples, {} first phase max, {} last phase max",
            self.rss.len(),
            kib(self.rss_max(0)),
            kib(self.rss_max(self.phases.len().saturating_sub(1)))
        );
        // Over time: about a dozen evenly spaced samples, so a slow climb shows.
        let step = (self.rss.len() / RSS_POINTS).max(1);
        let points: Vec<String> = self
            .rss
            .iter()
            .step_by(step)
            .map(|s| format!("{:.0}s {:.1}", s.at.as_secs_f64(), s.kib as f64 / 1024.0))
            .collect();
        let _ = writeln!(out, "- proxy RSS over time (MiB): {}", points.join(", "));
        out
    }

    /// The run's claims: no idempotent request failed (after-headers cuts aside, and
    /// those only where a pod or the fault proxies cut responses), the cuts were really
    /// provoked and the resets before headers retried, and the RSS did not grow.
    pub fn assert(&self, growth: f64, slack_kib: u64) {
        for (i, phase) in self.phases.iter().enumerate() {
            let t = self.tallies.get(i).cloned().unwrap_or_default();
            assert!(t.sent > 0, "phase `{}` sent no requests", phase.name);
        }
        let failed: Vec<String> = self
            .phases
            .iter()
            .zip(&self.tallies)
            .filter(|(_, t)| t.failed > 0)
            .map(|(p, t)| format!("`{}`: {} failed, e.g. {:?}", p.name, t.failed, t.reasons))
            .collect();
        assert!(
            failed.is_empty(),
            "idempotent GETs failed although a healthy endpoint existed throughout \
             (docs/security.md, Faults under load, says why): {}",
            failed.join("; ")
        );
        for (i, t) in self.tallies.iter().enumerate() {
            if i != RESETS_PHASE && i != INJECTED_PHASE {
                assert_eq!(
                    t.after_headers, 0,
                    "responses cut after headers in phase `{}`, where no fault cuts bodies",
                    self.phases[i].name
                );
            }
        }
        let resets = self.tallies.get(RESETS_PHASE).cloned().unwrap_or_default();
        assert!(
            self.flaky_after_headers > 0 && resets.after_headers > 0,
            "the flaky pod cut {} responses after the headers and the clients saw {}: \
             the run did not exercise what it counts",
            self.flaky_after_headers,
            resets.after_headers
        );
        assert!(
            resets.after_headers <= self.flaky_after_headers,
            "clients saw {} cut responses, more than the {} the flaky pod cut",
            resets.after_headers,
            self.flaky_after_headers
        );
        let retried = self.phases[RESETS_PHASE].retried;
        assert!(
            retried[1] > 0,
            "the flaky pod's resets before headers were never retried: {retried:?}"
        );
        let (Some(early), Some(late)) = (
            self.rss_max(0),
            self.rss_max(self.phases.len().saturating_sub(1)),
        ) else {
            panic!(
                "no RSS samples in the first or the last phase: {:?}",
                self.rss
            );
        };
        let bound = (early as f64 * growth) as u64 + slack_kib;
        assert!(
            late <= bound,
            "the proxy's RSS grew: {late} KiB in the last phase against {early} KiB in the \
             first (bound {bound} KiB = ×{growth} + {slack_kib} KiB)"
        );
    }
}

fn kib(v: Option<u64>) -> String {
    v.map_or("-".to_owned(), |k| format!("{:.1} MiB", k as f64 / 1024.0))
}
