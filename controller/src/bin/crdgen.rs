//! Prints the Route CRD as YAML: `cargo run -p fairway-controller --bin crdgen >
//! crds/fairway.dev_routes.yaml`. `tests/crdgen.rs` fails when the checked-in file differs.

use std::io::Write;
use std::process::ExitCode;

fn main() -> ExitCode {
    let yaml = match fairway_controller::crd::crd_yaml() {
        Ok(yaml) => yaml,
        Err(error) => {
            eprintln!("crdgen: {error}: {:?}", std::error::Error::source(&error));
            return ExitCode::FAILURE;
        }
    };
    match std::io::stdout().lock().write_all(yaml.as_bytes()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("crdgen: writing to stdout: {error}");
            ExitCode::FAILURE
        }
    }
}
