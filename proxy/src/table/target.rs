//! What one matched request goes to: its Route, the backend's balancer state, the
//! protocol, and its rule's own timeouts and filters.

use std::sync::Arc;

use fairway_proto::model::{AppProtocol, Filters, Route, Rule, Timeouts};

use super::BackendState;
use crate::tls::PodTls;

/// Everything the request path needs for one matched request.
#[derive(Clone, Debug)]
pub struct Target {
    pub route: Arc<Route>,
    pub backend: Arc<BackendState>,
    /// The protocol to speak to the picked endpoint.
    pub protocol: AppProtocol,
    /// TLS to the pods of this backend's set (the Route's `upstream.tls` for that set);
    /// `None`: plaintext.
    pub tls: Option<Arc<PodTls>>,
    /// The rule's own timeouts, when it has them (shared: a target is cloned per request).
    pub rule_timeouts: Option<Arc<Timeouts>>,
    /// The matched rule's position in `route.rules`.
    pub rule_index: usize,
    /// The rule's filters, when it has any.
    pub rule_filters: Option<Arc<Filters>>,
}

impl Target {
    /// The rule this target serves.
    pub fn rule(&self) -> &Rule {
        &self.route.rules[self.rule_index]
    }

    /// The timeouts of a request through this target: its rule's, else its Route's.
    pub fn timeouts(&self) -> &Timeouts {
        self.rule_timeouts
            .as_deref()
            .unwrap_or(&self.route.timeouts)
    }
}
