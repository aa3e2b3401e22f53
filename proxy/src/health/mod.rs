//! Active health checks: a Route's `healthCheck.grpc` asks every endpoint of its
//! backends `grpc.health.v1.Health/Check`; an endpoint that fails (no answer, an
//! error, `NOT_SERVING`) `unhealthyThreshold` times in a row leaves rotation like an
//! ejected one (`balance`, same panic threshold), and comes back after
//! `healthyThreshold` `SERVING` answers in a row.
//!
//! Where to start: [`checker::spawn`] (follows the table, one probe task per endpoint
//! and check); [`verdict`] decides, purely (thresholds, state changes, jittered
//! delays); [`probe`] is the one gRPC call, on a connection of its own.

pub mod checker;
pub mod probe;
pub mod verdict;

pub use checker::spawn;
