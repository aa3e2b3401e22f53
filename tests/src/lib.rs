//! Test helpers for Fairway's end-to-end tests, built on real parts.
//!
//! Start at [`cluster::TestCluster`]: a real `kube-apiserver` and `etcd`, built from the
//! Go module in `tests/kube` and started on loopback. [`kubectl`] runs the real kubectl
//! against it. A missing prerequisite (Go, kubectl) fails with a message saying how to
//! get it; nothing here skips.

pub mod cluster;
pub mod error;
pub mod gobuild;
pub mod kubectl;
mod pki;
mod process;

pub use cluster::TestCluster;
pub use error::ClusterError;
