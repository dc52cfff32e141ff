//! The pod init (PID 1 of a pod's shared PID namespace) and its
//! supervisor, both forks of the pin helper (see [`super::helper`]).
//!
//! - The **init** blocks SIGCHLD, SIGTERM and SIGINT and waits for them
//!   with `sigwait`: SIGCHLD reaps every exited child (orphans of the
//!   pod's containers are reparented to it), SIGTERM/SIGINT end it — and
//!   with it, by the kernel's rule for a PID namespace's init, every
//!   process of the pod. No allocation in the loop, no async.
//!   Blocked signals are queued even for a namespace init without
//!   handlers, so signals from the host reach it.
//! - Right after the fork the init joins its cgroup itself (a
//!   single-threaded task writing `0` to v1 `tasks` files skips the
//!   kernel's global threadgroup lock, which costs an RCU grace period per
//!   hierarchy when another process is moved) and tells the supervisor
//!   through a pipe; only then is the pod reported ready.
//! - The **supervisor** stays in the host PID namespace as the init's
//!   parent (berthd may restart; the host's PID 1 may not reap): it waits
//!   for the init and records how it ended in the pod dir's `init-exit`
//!   (`exited N` / `signaled N`), so the death is noticed even when no one
//!   was watching.

use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use nix::sys::signal::{SigSet, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::{ForkResult, Pid};

use super::helper::{report, wait_for_eof, Report};

/// Leaves the process without running destructors.
fn exit(code: i32) -> ! {
    // SAFETY: _exit is always safe; it does not return.
    unsafe { libc::_exit(code) }
}

/// Points 0, 1 and 2 at /dev/null so no pipe of the caller stays open.
fn null_stdio(fds: &[i32]) {
    let Ok(null) = nix::fcntl::open(
        "/dev/null",
        nix::fcntl::OFlag::O_RDWR | nix::fcntl::OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    ) else {
        return;
    };
    for &fd in fds {
        // SAFETY: dup2 onto standard descriptors no Rust object here owns;
        // `null` is open.
        unsafe { libc::dup2(std::os::fd::AsRawFd::as_raw_fd(&null), fd) };
    }
}

/// The supervisor: new PID namespace, fork the init (which joins its
/// cgroup through `cgroup_join`), report, then wait for it and record its
/// end in `exit_file`. Never returns.
pub fn supervise(exit_file: Option<&Path>, cgroup_join: &[PathBuf]) -> ! {
    let _ = nix::unistd::setsid();
    if let Err(e) = nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWPID) {
        report(&Report::Error(format!("unshare pid namespace: {e}")));
        exit(1);
    }
    let (joined_r, joined_w) = match nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC) {
        Ok(p) => p,
        Err(e) => {
            report(&Report::Error(format!("pipe: {e}")));
            exit(1);
        }
    };
    // SAFETY: the supervisor is single-threaded (a fork of the
    // single-threaded helper); the child runs only `join_then_init`.
    let init = match unsafe { nix::unistd::fork() } {
        Ok(ForkResult::Child) => {
            drop(joined_r);
            join_then_init(cgroup_join, joined_w)
        }
        Ok(ForkResult::Parent { child }) => child,
        Err(e) => {
            report(&Report::Error(format!("fork pod init: {e}")));
            exit(1);
        }
    };
    drop(joined_w);
    if let Err(msg) = read_join_result(joined_r) {
        report(&Report::Error(msg));
        let _ = waitpid(init, None);
        exit(1);
    }
    report(&Report::Ready {
        ns_pid: init.as_raw(),
        supervisor: Some(nix::unistd::getpid().as_raw()),
    });
    wait_for_eof();
    null_stdio(&[0, 1]);
    let status = loop {
        match waitpid(init, None) {
            Err(nix::errno::Errno::EINTR) => continue,
            other => break other,
        }
    };
    let line = match status {
        Ok(WaitStatus::Exited(_, code)) => format!("exited {code}\n"),
        Ok(WaitStatus::Signaled(_, sig, _)) => format!("signaled {}\n", sig as i32),
        other => format!("unknown {other:?}\n"),
    };
    if let Some(path) = exit_file {
        let tmp = path.with_extension("tmp");
        if std::fs::write(&tmp, line)
            .and_then(|()| std::fs::rename(&tmp, path))
            .is_err()
        {
            let _ = std::io::Write::write_all(&mut std::io::stderr(), b"pod supervisor: cannot write exit file\n");
        }
    }
    exit(0)
}

/// The init's first step: join the cgroup, then write the outcome (empty:
/// joined; else the error) and close `done`.
fn join_then_init(cgroup_join: &[PathBuf], done: OwnedFd) -> ! {
    let joined = cgroup_join
        .iter()
        .try_for_each(|f| std::fs::write(f, "0").map_err(|e| format!("pod init: join {}: {e}", f.display())));
    if let Err(msg) = &joined {
        let _ = nix::unistd::write(&done, msg.as_bytes());
        exit(1);
    }
    drop(done);
    init_main()
}

/// What the init wrote to the pipe: nothing when it joined its cgroup.
fn read_join_result(r: OwnedFd) -> Result<(), String> {
    let mut msg = Vec::new();
    let mut buf = [0u8; 512];
    loop {
        match nix::unistd::read(&r, &mut buf) {
            Ok(0) => break,
            Ok(n) => msg.extend_from_slice(&buf[..n]),
            Err(nix::errno::Errno::EINTR) => {}
            Err(e) => return Err(format!("pod init: read its cgroup join result: {e}")),
        }
    }
    if msg.is_empty() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&msg).into_owned())
    }
}

/// PID 1 of the pod: reap, exit on SIGTERM/SIGINT. Never returns.
pub fn init_main() -> ! {
    null_stdio(&[0, 1, 2]);
    let _ = nix::unistd::chdir("/");
    let mut set = SigSet::empty();
    for s in [Signal::SIGCHLD, Signal::SIGTERM, Signal::SIGINT] {
        set.add(s);
    }
    if set.thread_block().is_err() {
        exit(1);
    }
    loop {
        match set.wait() {
            Ok(Signal::SIGCHLD) => reap_all(),
            Ok(Signal::SIGTERM) | Ok(Signal::SIGINT) => {
                reap_all();
                exit(0)
            }
            _ => {}
        }
    }
}

/// Reaps every child that has exited (SIGCHLDs coalesce).
fn reap_all() {
    loop {
        match waitpid(None::<Pid>, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) | Err(_) => return,
            Ok(_) => {}
        }
    }
}
