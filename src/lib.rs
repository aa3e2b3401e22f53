//! The `fairway` package: the user's entry point (`src/main.rs`), the one-command
//! demo ([`demo`]), whose stand-in pods, keep-alive load and per-connection balancer
//! the end-to-end tests reuse, and the drain hook ([`wait_drained`], put in place by
//! [`copy_hook`]). Injection (`fairway inject`) lives in the controller's library,
//! beside the webhook that does the same.

pub mod copy_hook;
pub mod demo;
pub mod wait_drained;
