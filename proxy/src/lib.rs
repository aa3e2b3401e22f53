//! Fairway proxy.

pub mod balance;
pub mod router;
pub mod table;
