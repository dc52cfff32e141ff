//! Test helpers shared by the engine-subsystem tests (cgroups, seccomp,
//! capabilities): root detection and forked children, so process-wide
//! changes (seccomp filters, capability sets, cgroup membership) never
//! touch the test runner itself.

use std::io::{Read, Write};
use std::os::fd::OwnedFd;

use nix::sys::signal::Signal;
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::{fork, ForkResult, Pid};

/// True (after printing a note) when the test needs root and we are not.
pub(crate) fn skip_unless_root(test: &str) -> bool {
    if nix::unistd::geteuid().is_root() {
        false
    } else {
        eprintln!("skipping {test}: needs root");
        true
    }
}

/// A forked child that waits for [`Child::release`] before running its
/// closure, so the parent can first put it into a cgroup. Killed and
/// reaped on drop if still running.
pub(crate) struct Child {
    pid: Pid,
    go: Option<OwnedFd>,
    report: Option<OwnedFd>,
    reaped: bool,
}

impl Child {
    pub(crate) fn spawn(f: impl FnOnce() -> Result<(), String>) -> Child {
        let (go_r, go_w) = nix::unistd::pipe().expect("pipe");
        let (rep_r, rep_w) = nix::unistd::pipe().expect("pipe");
        // SAFETY: the child only runs the test closure and then `_exit`s;
        // it never returns into the test harness. glibc's fork handlers
        // keep malloc usable in the child of a multi-threaded parent.
        match unsafe { fork() }.expect("fork") {
            ForkResult::Child => {
                drop(go_w);
                drop(rep_r);
                let mut go = std::fs::File::from(go_r);
                let mut byte = [0u8; 1];
                let released = go.read(&mut byte).map(|n| n == 1).unwrap_or(false);
                let result = if released {
                    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f))
                        .unwrap_or_else(|_| Err("child panicked".into()))
                } else {
                    Err("parent went away".into())
                };
                let code = match result {
                    Ok(()) => 0,
                    Err(msg) => {
                        let _ = std::fs::File::from(rep_w).write_all(msg.as_bytes());
                        1
                    }
                };
                // SAFETY: _exit ends the forked child without running the
                // parent's atexit handlers or destructors.
                unsafe { libc::_exit(code) }
            }
            ForkResult::Parent { child } => {
                drop(go_r);
                drop(rep_w);
                Child {
                    pid: child,
                    go: Some(go_w),
                    report: Some(rep_r),
                    reaped: false,
                }
            }
        }
    }

    pub(crate) fn pid(&self) -> Pid {
        self.pid
    }

    /// Lets the child run its closure.
    pub(crate) fn release(&mut self) {
        if let Some(go) = self.go.take() {
            let _ = std::fs::File::from(go).write_all(&[1]);
        }
    }

    /// Waits for the child; returns its status and the error it reported.
    pub(crate) fn wait(mut self) -> (WaitStatus, String) {
        self.release();
        let status = waitpid(self.pid, None).expect("waitpid");
        self.reaped = true;
        let mut msg = String::new();
        if let Some(r) = self.report.take() {
            let _ = std::fs::File::from(r).read_to_string(&mut msg);
        }
        (status, msg)
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        if !self.reaped {
            let _ = nix::sys::signal::kill(self.pid, Signal::SIGKILL);
            let _ = waitpid(self.pid, None);
        }
    }
}

/// Runs `f` in a forked child and returns its outcome.
pub(crate) fn in_child(f: impl FnOnce() -> Result<(), String>) -> Result<(), String> {
    let child = Child::spawn(f);
    match child.wait() {
        (WaitStatus::Exited(_, 0), _) => Ok(()),
        (WaitStatus::Exited(_, code), msg) => Err(format!("child exited {code}: {msg}")),
        (other, msg) => Err(format!("child {other:?}: {msg}")),
    }
}
