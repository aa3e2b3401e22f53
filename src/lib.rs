//! The `fairway` package: the user's entry point (`src/main.rs`) and the one-command
//! demo ([`demo`]), whose stand-in pods, keep-alive load and per-connection balancer
//! the end-to-end tests reuse.

pub mod demo;
