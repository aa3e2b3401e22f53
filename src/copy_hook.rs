//! `fairway copy-hook DIR`: puts this binary, its dynamic loader and the shared
//! libraries it runs with into `DIR` (an emptyDir, from an init container), so that an
//! app container of any image, whatever its libc or none, can run `fairway
//! wait-drained` as its preStop hook through that loader (design.md section 10: "ship
//! it with its own loader and libraries").
//!
//! The libraries are the ones this process has mapped (`/proc/self/maps`): exactly what
//! the loader resolved for it, nothing the image merely has. Name lookups go through
//! glibc's built-in `files` and `dns` sources (glibc >= 2.34); a module that an app
//! image's `nsswitch.conf` names beyond those is looked for in the image, and one built
//! for another glibc fails to load and is skipped.

use std::collections::BTreeSet;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// The name the binary gets in `DIR`.
pub const PROGRAM: &str = "fairway";
/// The loader's name in `DIR`, whatever the architecture calls it (`ld-linux-x86-64.so.2`,
/// `ld-linux-aarch64.so.1`): the injection template writes the hook's command before any
/// copy ran, so it needs one name for every node.
pub const LOADER: &str = "ld.so";

/// The step that failed.
#[derive(Debug, thiserror::Error)]
pub enum CopyError {
    #[error("reading /proc/self/maps: {0}")]
    Maps(#[source] std::io::Error),
    #[error("finding this program (/proc/self/exe): {0}")]
    Exe(#[source] std::io::Error),
    #[error("this program maps no dynamic loader (ld-*.so): is it statically linked?")]
    NoLoader,
    #[error("copying {from} to {to}: {source}")]
    Copy {
        from: PathBuf,
        to: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// The shared objects mapped in `maps` (the text of `/proc/self/maps`), each once, in
/// order of appearance; `exe` (the program itself) left out.
pub fn libraries(maps: &str, exe: &Path) -> Vec<PathBuf> {
    let mut seen = BTreeSet::new();
    let mut found = Vec::new();
    for line in maps.lines() {
        // address perms offset dev inode pathname: the path is the rest after 5 fields.
        let mut rest = line;
        for _ in 0..5 {
            rest = rest.trim_start();
            rest = rest.find(char::is_whitespace).map_or("", |i| &rest[i..]);
        }
        let path = Path::new(rest.trim());
        let shared = (path.file_name().and_then(|n| n.to_str()))
            .is_some_and(|n| n.contains(".so") && !n.ends_with(" (deleted)"));
        if path.is_absolute() && shared && path != exe && seen.insert(path.to_path_buf()) {
            found.push(path.to_path_buf());
        }
    }
    found
}

/// What `copy` put in place: the command a preStop hook runs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hook {
    pub loader: PathBuf,
    pub program: PathBuf,
    pub dir: PathBuf,
}

impl Hook {
    /// `LOADER --library-path DIR DIR/fairway wait-drained`: the start of the exec.
    pub fn command(&self) -> Vec<String> {
        let text = |p: &Path| p.display().to_string();
        vec![
            text(&self.loader),
            "--library-path".to_owned(),
            text(&self.dir),
            text(&self.program),
            "wait-drained".to_owned(),
        ]
    }
}

/// Copies this program and what it runs with into `dir`, readable and executable by
/// every user (the app container's may differ from the init container's).
pub fn copy(dir: &Path) -> Result<Hook, CopyError> {
    let exe = std::fs::read_link("/proc/self/exe").map_err(CopyError::Exe)?;
    let maps = std::fs::read_to_string("/proc/self/maps").map_err(CopyError::Maps)?;
    let libs = libraries(&maps, &exe);
    let is_loader = |p: &&PathBuf| {
        (p.file_name().and_then(|n| n.to_str())).is_some_and(|n| n.starts_with("ld-"))
    };
    let loader = libs.iter().find(is_loader).ok_or(CopyError::NoLoader)?;
    let put = |from: &Path, name: &std::ffi::OsStr| -> Result<PathBuf, CopyError> {
        let to = dir.join(name);
        let failed = |source| CopyError::Copy {
            from: from.to_path_buf(),
            to: to.clone(),
            source,
        };
        std::fs::copy(from, &to).map_err(failed)?;
        std::fs::set_permissions(&to, std::fs::Permissions::from_mode(0o755)).map_err(failed)?;
        Ok(to)
    };
    for lib in &libs {
        if let Some(name) = lib.file_name() {
            put(lib, name)?;
        }
    }
    let program = put(&exe, PROGRAM.as_ref())?;
    let loader = put(loader, LOADER.as_ref())?;
    Ok(Hook {
        loader,
        program,
        dir: dir.to_path_buf(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAPS: &str = "\
55d0c0a00000-55d0c0b00000 r--p 00000000 08:01 131 /usr/local/bin/fairway
7f1c2a000000-7f1c2a022000 r--p 00000000 08:01 201 /usr/lib/x86_64-linux-gnu/libc.so.6
7f1c2a022000-7f1c2a197000 r-xp 00022000 08:01 201 /usr/lib/x86_64-linux-gnu/libc.so.6
7f1c2a200000-7f1c2a210000 r--p 00000000 08:01 202 /usr/lib/x86_64-linux-gnu/libgcc_s.so.1
7f1c2a300000-7f1c2a321000 rw-p 00000000 00:00 0 [heap]
7f1c2a400000-7f1c2a401000 r--p 00000000 08:01 203 /usr/lib/locale/C.utf8/LC_CTYPE
7f1c2a500000-7f1c2a52a000 r--p 00000000 08:01 204 /usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2
7ffd1a000000-7ffd1a021000 rw-p 00000000 00:00 0 [stack]
";

    #[test]
    fn the_mapped_libraries_once_each_without_the_program_or_data_files() {
        let libs = libraries(MAPS, Path::new("/usr/local/bin/fairway"));
        let names: Vec<&str> = (libs.iter())
            .filter_map(|p| p.file_name()?.to_str())
            .collect();
        assert_eq!(
            names,
            ["libc.so.6", "libgcc_s.so.1", "ld-linux-x86-64.so.2"]
        );
    }

    #[test]
    fn copies_a_runnable_hook_of_this_very_process() {
        let dir = tempfile::tempdir().expect("temp dir");
        let hook = copy(dir.path()).expect("a test binary is dynamically linked");
        let command = hook.command();
        let out = std::process::Command::new(&command[0])
            .args(&command[1..3])
            .arg(&command[3])
            .arg("--help")
            .output()
            .expect("run the copied test binary through the copied loader");
        assert!(
            out.status.success(),
            "the copy runs through its own loader: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
