//! Child processes that cannot outlive the test run.
//!
//! Each child gets its own process group (so a signal reaches everything it forked) and
//! a parent-death signal (`PR_SET_PDEATHSIG`): when the thread that spawned it dies, the
//! kernel kills it. A cluster shared through a `static` is never dropped, so this, not
//! `Drop`, is what guarantees no etcd or apiserver is left behind, however the test
//! binary ends (panic, abort, SIGKILL).
//!
//! The death signal is tied to the spawning *thread*, so spawn only from a thread that
//! lives as long as the process (see `cluster::keeper`).

use std::fs::File;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::error::ClusterError;

/// A child process with its log file.
#[derive(Debug)]
pub struct Managed {
    pub what: &'static str,
    pub child: Child,
    pub log: PathBuf,
}

impl Managed {
    /// Starts `program` with `args`, stdout and stderr appended to `log`.
    pub fn spawn(
        what: &'static str,
        program: &Path,
        args: &[String],
        log: PathBuf,
    ) -> Result<Managed, ClusterError> {
        Managed::spawn_with_env(what, program, args, &[], log)
    }

    /// [`Managed::spawn`] with extra environment variables `envs`.
    pub fn spawn_with_env(
        what: &'static str,
        program: &Path,
        args: &[String],
        envs: &[(String, String)],
        log: PathBuf,
    ) -> Result<Managed, ClusterError> {
        let out = File::options()
            .create(true)
            .append(true)
            .open(&log)
            .map_err(ClusterError::io("open a process log"))?;
        let err = out
            .try_clone()
            .map_err(ClusterError::io("open a process log"))?;
        let mut command = Command::new(program);
        command
            .args(args)
            .envs(envs.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .process_group(0);
        die_with_parent(&mut command);
        let child = command
            .spawn()
            .map_err(ClusterError::io("spawn a cluster process"))?;
        Ok(Managed { what, child, log })
    }

    /// `Err(Exited)` when the process has already ended.
    pub fn check_running(&mut self) -> Result<(), ClusterError> {
        match self.child.try_wait() {
            Ok(None) => Ok(()),
            Ok(Some(status)) => Err(self.exited(status.to_string())),
            Err(e) => Err(self.exited(e.to_string())),
        }
    }

    pub fn exited(&self, status: String) -> ClusterError {
        ClusterError::Exited {
            what: self.what,
            status,
            log: self.log.display().to_string(),
            tail: self.log_tail(),
        }
    }

    pub fn log_tail(&self) -> String {
        crate::gobuild::tail(&std::fs::read_to_string(&self.log).unwrap_or_default(), 30)
    }

    /// SIGKILL to the whole group, then reaps the child.
    pub fn kill(&mut self) {
        signal_group(self.child.id() as libc::pid_t, libc::SIGKILL);
        let _ = self.child.wait();
    }

    /// SIGTERM to the whole group, then SIGKILL if it has not ended within `grace`.
    pub fn stop(&mut self, grace: Duration) {
        let group = self.child.id() as libc::pid_t;
        signal_group(group, libc::SIGTERM);
        let deadline = std::time::Instant::now() + grace;
        while std::time::Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        signal_group(group, libc::SIGKILL);
        let _ = self.child.wait();
    }
}

#[allow(unsafe_code)]
fn signal_group(group: libc::pid_t, signal: libc::c_int) {
    // SAFETY: kill(2) with a negative pid signals a process group; no memory is touched.
    unsafe {
        libc::kill(-group, signal);
    }
}

#[allow(unsafe_code)]
/// Makes `command`'s child get SIGKILL when the spawning thread dies (module docs).
pub fn die_with_parent(command: &mut Command) {
    let parent = std::process::id() as libc::pid_t;
    // SAFETY: the closure runs between fork and exec and calls only async-signal-safe
    // functions (prctl, getppid, _exit), allocating nothing.
    unsafe {
        command.pre_exec(move || {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            // The parent may have died before prctl took effect.
            if libc::getppid() != parent {
                libc::_exit(1);
            }
            Ok(())
        });
    }
}
