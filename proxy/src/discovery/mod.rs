//! Discovery: follows the controller's route table over the Discovery gRPC stream
//! (design.md 4) and publishes each applied version into the [`TableHandle`] the
//! request path reads.
//!
//! Where to start:
//! - [`apply`]: the pure state machine ([`Applier`]): snapshots assembled aside and
//!   swapped in at `end`, deltas applied to a copy when their base is what we serve,
//!   anything else nacked while the last good table stays.
//! - [`client`]: the stream itself ([`Client`]): hello, ack/nack, reconnect with
//!   [`backoff`], resume from the last applied version. It never clears the table.
//!
//! [`TableHandle`]: crate::table::TableHandle

pub mod apply;
pub mod backoff;
pub mod client;

#[cfg(test)]
pub(crate) mod testing;
#[cfg(test)]
mod tests;

pub use apply::{Applier, ApplyError, Step};
pub use backoff::{BACKOFF_BASE, BACKOFF_CAP, Backoff};
pub use client::{Client, DiscoveryConfig, SessionError};
