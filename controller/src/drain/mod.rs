//! The drain handshake (design.md section 10): a pod's preStop hook asks, with its own
//! projected ServiceAccount token, whether every proxy has stopped sending it new
//! requests, and the controller answers when they have, instead of the pod sleeping
//! for a guessed time.
//!
//! Where to start: [`decide`] is the pure part (a pod's state in a table; drained,
//! wait, last serving or unknown given every proxy's ack); [`wait`] follows the store's
//! versions and the registry's ack watermark (both `watch`es, no polling) until the
//! decision is an answer or the timeout passes; [`service`] is the gRPC method
//! (`Drain.WaitDrained`) on the Discovery port, which names the pod by its token
//! ([`crate::auth::PodAuthenticator`]); with several replicas, [`peers`] asks each
//! and combines their answers.

pub mod decide;
pub mod peers;
pub mod service;
#[cfg(test)]
mod tests;
pub mod wait;

pub use service::DrainService;
