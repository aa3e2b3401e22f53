//! Fairway controller.

pub mod admin;
pub mod auth;
pub mod backendtlspolicy;
pub mod config;
pub mod crd;
pub mod drain;
pub mod grpc;
pub mod httproute;
pub mod index;
pub mod inject;
pub mod load;
pub mod logs;
pub mod metrics;
pub mod plugin;
pub mod process;
pub mod state;
pub mod static_dir;
pub mod status;
pub mod store;
pub mod tls;
pub mod watch;

pub use config::{Args, Config};
pub use process::{RunError, Running, run, start};
