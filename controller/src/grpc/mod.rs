//! The Discovery gRPC server: one bidirectional stream per proxy, carrying the store's
//! versions as a snapshot and then deltas, with acks and nacks coming back
//! (fairway/discovery/v1/discovery.proto; design.md section 4).
//!
//! Where to start: [`server`] admits a stream (UNAUTHENTICATED / PERMISSION_DENIED
//! unless [`crate::auth`] admits it, UNAVAILABLE before the first sync,
//! INVALID_ARGUMENT without a Hello); [`session`] is the pure protocol state of one
//! stream (resume or snapshot, deltas, snapshot after a nack); `stream` drives it;
//! `shared` is what every stream shares (store, registry, the per-version message caches);
//! [`wire`] is those messages encoded once and the codec that writes them as they are;
//! [`proxies`] is the registry of connected proxies that `/metrics` and `/debug/routes`
//! read. A sidecar (`Hello.mode`) sees a scoped table: [`scope`] is what every sidecar
//! stream shares about it (advanced once per version), [`view`] one stream's
//! subscriptions and the scoped snapshot or delta they give.

pub mod proxies;
pub mod scope;
pub mod server;
pub mod session;
mod shared;
mod stream;
pub mod view;
pub mod wire;

pub use proxies::{Proxies, ProxyInfo, Registration};
pub use server::{DiscoveryService, serve, serve_tls};
