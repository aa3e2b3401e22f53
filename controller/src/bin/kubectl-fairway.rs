//! `kubectl-fairway`: the kubectl plugin (`kubectl fairway ...` once on PATH). Everything
//! lives in [`fairway_controller::plugin`].

use std::process::ExitCode;

use clap::Parser;
use fairway_controller::plugin::{Args, run};

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    match run(Args::parse()).await {
        Ok(code) => code,
        Err(error) => {
            let mut message = format!("kubectl fairway: {error}");
            let mut source = std::error::Error::source(&error);
            while let Some(cause) = source {
                message.push_str(&format!(": {cause}"));
                source = cause.source();
            }
            eprintln!("{message}");
            ExitCode::from(2)
        }
    }
}
