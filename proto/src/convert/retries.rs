//! Retry settings on the wire: a Route's, and a rule's own.

use std::time::Duration;

use super::millis;
use crate::model::{DEFAULT_HTTP_RETRY_STATUSES, Retries};
use crate::pb;

impl From<&Retries> for pb::Retries {
    fn from(r: &Retries) -> Self {
        pb::Retries {
            attempts: r.attempts,
            budget_percent: r.budget_percent,
            grpc_statuses: r.grpc_statuses.clone(),
            // The default goes unsaid: a Route's encoding (and digest) stays what it
            // was before the field.
            http_statuses: (r.http_statuses != DEFAULT_HTTP_RETRY_STATUSES).then(|| {
                pb::HttpStatuses {
                    codes: r.http_statuses.iter().copied().map(u32::from).collect(),
                }
            }),
            backoff_ms: millis(r.backoff),
        }
    }
}

/// Absent statuses are what proxies before the field retried; a status beyond `u16`
/// (no HTTP status is) is left out.
impl From<pb::Retries> for Retries {
    fn from(r: pb::Retries) -> Self {
        let http_statuses = match r.http_statuses {
            Some(list) => (list.codes.into_iter())
                .filter_map(|c| u16::try_from(c).ok())
                .collect(),
            None => DEFAULT_HTTP_RETRY_STATUSES.to_vec(),
        };
        Retries {
            attempts: r.attempts,
            budget_percent: r.budget_percent,
            grpc_statuses: r.grpc_statuses,
            http_statuses,
            backoff: Duration::from_millis(r.backoff_ms),
        }
    }
}
