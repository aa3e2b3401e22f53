//! What each command prints, from one status document: pure, so every table and every
//! diagnosis is tested without a cluster.

use std::fmt::Write as _;

use super::view::{Route, Status};

/// A skew above this is worth a look (the chart's alert fires at the same figure).
pub const SKEW_WARNING: f64 = 0.25;

fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let line = |out: &mut String, cells: &mut dyn Iterator<Item = &str>| {
        let mut text = String::new();
        for (cell, w) in cells.zip(&widths) {
            let _ = write!(text, "{cell:<w$}   ");
        }
        out.push_str(text.trim_end());
        out.push('\n');
    };
    line(&mut out, &mut header.iter().copied());
    for row in rows {
        line(&mut out, &mut row.iter().map(String::as_str));
    }
    out
}

fn ago(now_ms: u64, then_ms: u64) -> String {
    let s = now_ms.saturating_sub(then_ms) / 1000;
    match s {
        0..=119 => format!("{s}s"),
        120..=7_199 => format!("{}m", s / 60),
        _ => format!("{}h", s / 3600),
    }
}

/// `kubectl fairway status`: every proxy, its node, applied version, lag, connected since.
pub fn status(doc: &Status, now_unix_ms: u64) -> String {
    let mut out = format!(
        "controller: table {}{}, {} proxies connected\n\n",
        doc.version,
        if doc.ready { "" } else { " (not synced yet)" },
        doc.proxies.len()
    );
    let rows: Vec<Vec<String>> = doc
        .proxies
        .iter()
        .map(|p| {
            vec![
                p.id.clone(),
                p.node.clone(),
                p.zone.clone().unwrap_or_else(|| "-".into()),
                p.applied.clone().unwrap_or_else(|| "-".into()),
                p.lag_versions.to_string(),
                ago(now_unix_ms, p.connected_at_unix_ms),
            ]
        })
        .collect();
    out.push_str(&table(
        &["PROXY", "NODE", "ZONE", "APPLIED", "LAG", "CONNECTED"],
        &rows,
    ));
    out
}

fn condition_text(route: &Route, kind: &str) -> String {
    route
        .condition(kind)
        .map_or_else(|| "-".into(), |c| format!("{} ({})", c.status, c.reason))
}

fn skew_text(skew: Option<f64>) -> String {
    skew.map_or_else(|| "-".into(), |s| format!("{s:.2}"))
}

/// `kubectl fairway routes`: each Route with hosts, conditions, endpoints ready.
pub fn routes(doc: &Status) -> String {
    let rows: Vec<Vec<String>> = doc
        .routes
        .iter()
        .map(|r| {
            vec![
                r.route.clone(),
                if r.hosts.is_empty() {
                    "-".into()
                } else {
                    r.hosts.join(",")
                },
                condition_text(r, "Accepted"),
                condition_text(r, "ResolvedRefs"),
                format!("{}/{}", r.endpoints.ready, r.endpoints.total),
                format!("{:.1}", r.requests_per_second),
                skew_text(r.skew),
            ]
        })
        .collect();
    table(
        &[
            "ROUTE", "HOSTS", "ACCEPTED", "RESOLVED", "READY", "REQ/S", "SKEW",
        ],
        &rows,
    )
}

const BAR_WIDTH: usize = 30;

fn bar(share: f64, expected: Option<f64>) -> String {
    let fill = ((share.clamp(0.0, 1.0)) * BAR_WIDTH as f64).round() as usize;
    let mark = expected.map(|e| ((e.clamp(0.0, 1.0)) * BAR_WIDTH as f64).round() as usize);
    (0..BAR_WIDTH)
        .map(|i| match (i < fill, Some(i) == mark) {
            (_, true) => '|',
            (true, false) => '#',
            (false, false) => '.',
        })
        .collect()
}

/// `kubectl fairway top ROUTE`: per pod, its share of the last seconds against its fair
/// share. `None` when the Route is unknown.
pub fn top(doc: &Status, route: &str) -> Option<String> {
    let r = doc.routes.iter().find(|r| r.route == route)?;
    let mut out = format!(
        "{}  {:.1} req/s  skew {}  ({} proxies reporting; | marks the fair share)\n",
        r.route,
        r.requests_per_second,
        skew_text(r.skew),
        r.proxies_reporting
    );
    for backend in &r.backends {
        let _ = writeln!(out, "\n{}", backend.set);
        let rows: Vec<Vec<String>> = backend
            .pods
            .iter()
            .map(|p| {
                vec![
                    p.pod.clone().unwrap_or_else(|| p.address.clone()),
                    p.state.clone(),
                    bar(p.share.unwrap_or(0.0), p.expected_share),
                    p.share
                        .map_or_else(|| "-".into(), |s| format!("{:.1}%", s * 100.0)),
                    p.expected_share
                        .map_or_else(|| "-".into(), |s| format!("{:.1}%", s * 100.0)),
                    p.in_flight.to_string(),
                ]
            })
            .collect();
        out.push_str(&table(
            &["POD", "STATE", "SHARE", "NOW", "FAIR", "IN-FLIGHT"],
            &rows,
        ));
    }
    Some(out)
}

/// One problem `check` found: what is wrong and what to do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Finding {
    pub subject: String,
    pub problem: String,
    pub fix: String,
}

/// `kubectl fairway check`: everything that stands between a Route and fair traffic.
pub fn check(doc: &Status) -> Vec<Finding> {
    let mut findings = Vec::new();
    let mut add = |subject: &str, problem: String, fix: &str| {
        findings.push(Finding {
            subject: subject.to_owned(),
            problem,
            fix: fix.to_owned(),
        });
    };
    if !doc.ready {
        add(
            "controller",
            "has not finished its first sync".into(),
            "wait; if it lasts, read the controller's logs (API access, RBAC)",
        );
    }
    if doc.proxies.is_empty() {
        add(
            "proxies",
            "no proxy is connected to this controller".into(),
            "check the proxy pods' logs: controller URL, TLS CA, token (docs/security.md)",
        );
    }
    for p in doc.proxies.iter().filter(|p| p.lag_versions > 0) {
        add(
            &format!("proxy {}", p.id),
            format!(
                "{} versions behind (applied {})",
                p.lag_versions,
                p.applied.as_deref().unwrap_or("none")
            ),
            "a lag that stays means the proxy is stuck or nacking: read its logs and fairway_proxy_discovery_updates_total{result=\"nacked\"}",
        );
    }
    for r in &doc.routes {
        let subject = format!("route {}", r.route);
        if let Some(c) = r.condition("Accepted").filter(|c| c.status != "True") {
            let fix = match c.reason.as_str() {
                "HostConflict" => {
                    "another Route holds the host: pick another host, or remove it from one of them"
                }
                "HostNotPermitted" => {
                    "a Service's namespaced names belong to its namespace: move the Route there or use another host"
                }
                _ => "fix the Route's spec (kubectl describe fwr)",
            };
            add(
                &subject,
                format!("not accepted: {} {}", c.reason, c.message),
                fix,
            );
        }
        if let Some(c) = r.condition("ResolvedRefs").filter(|c| c.status != "True") {
            let fix = match c.reason.as_str() {
                "ServiceNotFound" => "create the Service, or fix the backend's service name",
                "PortNotFound" => "use a port the Service exposes (number or name)",
                _ => "fix the backend references",
            };
            add(
                &subject,
                format!("backend not resolved: {} {}", c.reason, c.message),
                fix,
            );
        }
        let resolved = r
            .condition("ResolvedRefs")
            .is_some_and(|c| c.status == "True");
        if resolved && r.endpoints.ready == 0 {
            add(
                &subject,
                format!(
                    "no ready endpoint ({} listed): requests get 503",
                    r.endpoints.total
                ),
                "check the Service's selector and that its pods are Ready (kubectl get endpointslices)",
            );
        }
        if let Some(skew) = r.skew.filter(|s| *s > SKEW_WARNING) {
            add(
                &subject,
                format!("load is not shared fairly: skew {skew:.2}"),
                "kubectl fairway top the route: a pod far from its fair share; for PeakEwma or LeastRequest at low rates, try RoundRobin",
            );
        }
    }
    findings
}

/// `check`'s report.
pub fn findings(findings: &[Finding]) -> String {
    if findings.is_empty() {
        return "no problems found\n".to_owned();
    }
    let mut out = String::new();
    for f in findings {
        let _ = writeln!(out, "{}: {}\n  -> {}", f.subject, f.problem, f.fix);
    }
    out
}

#[cfg(test)]
mod tests;
