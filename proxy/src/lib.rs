//! Fairway proxy.
//!
//! Where to start: [`run`] (in `process`) wires discovery, the HTTP server and admin
//! together from one typed [`Config`] (built from the command line's [`Args`]).

pub mod accept;
pub mod admin;
pub mod balance;
pub mod capture;
pub mod config;
pub mod discovery;
pub mod fields;
pub mod forward;
pub mod h1;
pub mod headers;
pub mod health;
pub mod logs;
pub mod metrics;
pub mod pod;
pub mod pool;
pub mod process;
pub mod request;
pub mod response;
pub mod route;
pub mod table;
pub mod tls;
pub mod trace;

pub use config::{Args, Config};
pub use process::{RunError, run};
