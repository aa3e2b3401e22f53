//! Fairway controller.

pub mod crd;
pub mod index;
pub mod state;
