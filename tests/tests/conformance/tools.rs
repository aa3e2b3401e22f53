//! The external programs, found or built once: h2spec from the Go module in
//! `tests/h2spec` (cached under `target/fairway-h2spec/bin/h2spec`, like helm),
//! slowhttptest from Debian, and the venv Python with the `h2` package (tests/run.sh
//! installs both). A missing tool fails the test with how to get it; nothing skips.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use fairway_tests::gobuild::{tail, target_dir};

const H2SPEC_PACKAGE: &str = "github.com/summerwind/h2spec/cmd/h2spec";

/// The h2spec binary, built when missing or when `tests/h2spec/go.{mod,sum}` changed.
/// An exclusive file lock makes concurrent callers wait for one build.
pub fn h2spec() -> PathBuf {
    let module = Path::new(env!("CARGO_MANIFEST_DIR")).join("h2spec");
    let out = target_dir().join("fairway-h2spec");
    let bin = out.join("bin/h2spec");
    fs::create_dir_all(out.join("bin")).unwrap_or_else(|e| panic!("create {}: {e}", out.display()));
    let lock = fs::File::create(out.join("build.lock"))
        .unwrap_or_else(|e| panic!("create the h2spec build lock: {e}"));
    lock.lock()
        .unwrap_or_else(|e| panic!("take the h2spec build lock: {e}"));
    let mut stamp = String::new();
    for input in ["go.mod", "go.sum"] {
        let text = fs::read_to_string(module.join(input))
            .unwrap_or_else(|e| panic!("read tests/h2spec/{input}: {e}"));
        stamp.push_str(&text);
    }
    let stamp_path = out.join("stamp");
    if bin.exists() && fs::read_to_string(&stamp_path).is_ok_and(|s| s == stamp) {
        return bin;
    }
    eprintln!("conformance: building h2spec from {}", module.display());
    let output = Command::new("go")
        .current_dir(&module)
        .args(["build", "-trimpath", "-o"])
        .arg(&bin)
        .arg(H2SPEC_PACKAGE)
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run `go` ({e}): h2spec is built from the Go module {H2SPEC_PACKAGE} \
                 (tests/h2spec); install Go 1.26 or newer (https://go.dev/dl)"
            )
        });
    assert!(
        output.status.success(),
        "`go build` of h2spec failed ({}); the module proxy must be reachable (GOPROXY) or \
         the modules cached (`cd tests/h2spec && go mod download`):\n{}",
        output.status,
        tail(&String::from_utf8_lossy(&output.stderr), 30)
    );
    fs::write(&stamp_path, &stamp).unwrap_or_else(|e| panic!("write the h2spec stamp: {e}"));
    bin
}

/// `slowhttptest` from PATH.
pub fn slowhttptest() -> PathBuf {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join("slowhttptest"))
            .find(|p| p.is_file())
    });
    found.unwrap_or_else(|| {
        panic!(
            "slowhttptest not found on PATH: install it (Debian: apt-get install -y \
             slowhttptest; tests/run.sh does this when run as root)"
        )
    })
}

/// The venv's Python, checked to import `h2`.
pub fn python_with_h2() -> PathBuf {
    let python = target_dir().join("tools/venv/bin/python3");
    let ok = Command::new(&python)
        .args(["-c", "import h2, hyperframe, hpack"])
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        ok,
        "{} cannot import the `h2` package: run ./tests/run.sh (it creates the venv and \
         installs h2 from PyPI), or `python3 -m venv target/tools/venv && \
         target/tools/venv/bin/pip install h2`",
        python.display()
    );
    python
}

/// A script under `tests/abuse/`.
pub fn abuse_script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("abuse")
        .join(name)
}
