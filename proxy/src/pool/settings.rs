//! [`ConnSettings`]: what a Route asks of the connections to one endpoint, and the
//! jittered per-connection limits derived from it.

use std::sync::Arc;
use std::time::{Duration, Instant};

use fairway_proto::model::{AppProtocol, Route};

use crate::tls::PodTls;

/// Spread of the per-connection age and request limits: ±10% so connections opened
/// together (a pre-warm, a burst) do not all expire in the same instant and reconnect
/// as a thundering herd.
pub const LIMIT_JITTER_PERCENT: u64 = 10;

/// How connections to one endpoint are made and kept, from the Route that uses it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConnSettings {
    /// With `tls` offering both, what ALPN chooses wins (see `EndpointPool::checkout`).
    pub protocol: AppProtocol,
    /// TLS to the pod; `None`: plaintext. Part of the pool's key, so a pool never
    /// holds both kinds of connection.
    pub tls: Option<Arc<PodTls>>,
    pub connect_timeout: Duration,
    /// HTTP/1.1 connections (idle, busy or connecting) per endpoint; at the cap a
    /// request waits for one to come back.
    pub max_connections: u32,
    /// An idle connection older than this is closed.
    pub idle_timeout: Duration,
    /// `None`: connections live as long as the pod keeps them.
    pub max_age: Option<Duration>,
    /// `0`: unlimited.
    pub max_requests: u32,
}

impl ConnSettings {
    /// The settings of `route`'s `upstream` and `timeouts`, speaking `protocol`, over
    /// `tls` when given.
    pub fn new(route: &Route, protocol: AppProtocol, tls: Option<Arc<PodTls>>) -> Self {
        ConnSettings {
            protocol,
            tls,
            connect_timeout: route.timeouts.connect,
            // A cap of 0 would deadlock every request: treat it as 1.
            max_connections: route.upstream.max_connections_per_endpoint.max(1),
            idle_timeout: route.upstream.idle_timeout,
            max_age: route
                .upstream
                .max_connection_age
                .filter(|age| !age.is_zero()),
            max_requests: route.upstream.max_requests_per_connection,
        }
    }
}

/// One connection's jittered end of life, fixed when it opens.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConnLimits {
    /// When the connection stops taking new requests.
    pub expires: Option<Instant>,
    /// Requests it may still carry; `None` = unlimited.
    pub requests_left: Option<u32>,
}

impl ConnLimits {
    /// Limits for a connection opened at `now`. `random` is any uniform `u64`: the
    /// jitter is taken from it so this stays a pure function.
    pub fn new(settings: &ConnSettings, now: Instant, random: u64) -> Self {
        let jitter_permille = jitter_permille(random);
        let expires = settings.max_age.map(|age| {
            let nanos = age.as_nanos().saturating_mul(jitter_permille) / 1000;
            now + Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
        });
        let requests_left = (settings.max_requests > 0).then(|| {
            let n = u128::from(settings.max_requests) * jitter_permille / 1000;
            u32::try_from(n).unwrap_or(u32::MAX).max(1)
        });
        ConnLimits {
            expires,
            requests_left,
        }
    }

    /// Whether the connection may take another request at `now`.
    pub fn usable(&self, now: Instant) -> bool {
        self.expires.is_none_or(|e| now < e) && self.requests_left != Some(0)
    }

    /// Counts one request carried.
    pub fn count_request(&mut self) {
        if let Some(n) = &mut self.requests_left {
            *n = n.saturating_sub(1);
        }
    }
}

/// A factor in permille, uniform in `[1000 - J*10, 1000 + J*10]` for `J` =
/// [`LIMIT_JITTER_PERCENT`].
fn jitter_permille(random: u64) -> u128 {
    let span = LIMIT_JITTER_PERCENT * 10 * 2 + 1;
    u128::from(1000 - LIMIT_JITTER_PERCENT * 10 + random % span)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(max_age: Option<Duration>, max_requests: u32) -> ConnSettings {
        ConnSettings {
            protocol: AppProtocol::Http1,
            tls: None,
            connect_timeout: Duration::from_secs(1),
            max_connections: 4,
            idle_timeout: Duration::from_secs(90),
            max_age,
            max_requests,
        }
    }

    #[test]
    fn limits_are_jittered_within_ten_percent() {
        let now = Instant::now();
        let s = settings(Some(Duration::from_secs(100)), 1000);
        let mut ages = Vec::new();
        for random in [0, 1, 100, 200, 12345, u64::MAX] {
            let l = ConnLimits::new(&s, now, random);
            let age = l.expires.expect("max age set") - now;
            assert!(
                (Duration::from_secs(90)..=Duration::from_secs(110)).contains(&age),
                "age {age:?} must be 100 s ± 10%"
            );
            let left = l.requests_left.expect("max requests set");
            assert!((900..=1100).contains(&left), "{left} must be 1000 ± 10%");
            ages.push(age);
        }
        ages.dedup();
        assert!(ages.len() > 1, "different randoms must spread the ages");
    }

    #[test]
    fn unlimited_means_no_limit_and_a_used_up_connection_is_not_reused() {
        let now = Instant::now();
        let l = ConnLimits::new(&settings(None, 0), now, 7);
        assert_eq!(l.expires, None);
        assert_eq!(l.requests_left, None);
        assert!(l.usable(now + Duration::from_secs(1_000_000)));

        let mut one = ConnLimits::new(&settings(None, 1), now, 0);
        assert_eq!(one.requests_left, Some(1), "never rounded down to zero");
        one.count_request();
        assert!(!one.usable(now), "no requests left");

        let aged = ConnLimits::new(&settings(Some(Duration::from_secs(10)), 0), now, 0);
        assert!(aged.usable(now + Duration::from_secs(8)));
        assert!(!aged.usable(now + Duration::from_secs(12)));
    }
}
