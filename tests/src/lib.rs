//! Test helpers for Fairway's end-to-end tests, built on real parts.
//!
//! Start at [`cluster::TestCluster`]: a real `kube-apiserver` and `etcd`, built from the
//! Go module in `tests/kube` and started on loopback. [`kubectl`] runs the real kubectl
//! against it. A missing prerequisite (Go, kubectl) fails with a message saying how to
//! get it; nothing here skips.
//!
//! For the controller: [`controller::start`] runs one in-process against the cluster,
//! [`discovery::TestProxy`] follows its stream like a proxy, [`objects`] builds the
//! Kubernetes objects it reads, [`eventually`] waits, bounded, on an observable fact.

pub mod bins;
pub mod cluster;
pub mod controller;
pub mod discovery;
pub mod error;
pub mod faultproxy;
pub mod gateway_api;
pub mod gobuild;
pub mod helm;
pub mod kubectl;
pub mod node;
pub mod objects;
mod pki;
pub mod process;
pub mod tokens;
pub mod wait;

pub use cluster::TestCluster;
pub use error::ClusterError;
pub use wait::eventually;
