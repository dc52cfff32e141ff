//! `exec`: run another process in a running container. This process (the
//! `berth-runtime exec` command, single-threaded) enters the container's
//! PID namespace for its children, forks, puts the child in the
//! container's cgroup, and the child joins the other namespaces and becomes
//! the process with the same user/capabilities/no_new_privs/seccomp
//! handling as the init. The caller waits for it and gets its exit code.
//!
//! ```text
//! exec (parent)                          child
//!   setns pid; fork ───────────────────▶ wait_start
//!   add child to the cgroup
//!   start ─────────────────────────────▶ join user, …, mount namespaces;
//!                                         become a child subreaper
//!                                         tty: open a pty on the container's
//!   wait_console ◀────────────────────── devpts, send the master
//!   master → --console-socket             rlimits, user + caps, cwd
//!   wait_exec ◀───────────────────────── seccomp, execve (channel closes)
//!   write --pid-file; wait, forwarding
//!   HUP/INT/QUIT/TERM/USR1/USR2 (forward.rs)
//! ```
//!
//! Like runc, a process that leaves `capabilities` or `noNewPrivileges`
//! unset gets the container's own: an exec never holds more than the
//! container by omission.
//!
//! The process is made a child subreaper (`PR_SET_CHILD_SUBREAPER`, kept
//! across execve) before it execs: while it runs, whatever it starts and
//! then orphans (a double fork, a daemon with `setsid`) is reparented to it
//! instead of to the container's init, so all it started stays among its
//! descendants and an exec cut short (ExecSync's timeout, a streaming
//! session whose client left) kills all of it (`exec_sync::kill_descendants`).
//! The cost: a program that never waits for children it did not make
//! holds such orphans as zombies until it exits (then they go to the
//! container's init), and one that waits until it has no children left
//! also waits for them.
//! `berth-runtime exec` itself cannot be that subreaper: it is outside the
//! container's pid namespace, and orphans only find subreapers inside
//! their own.

use std::os::fd::{AsFd, AsRawFd};
use std::path::Path;

use nix::fcntl::{open, OFlag};
use nix::sys::stat::Mode;
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::ForkResult;
use oci_spec::runtime::{LinuxNamespaceType, Process};

use super::query::query;
use super::{cgroup, ContainerError};
use crate::channel::{self, ChildEnd};
use crate::init::process::ProcessPlan;
use crate::init::security::SecurityPlan;
use crate::init::{self, InitError};
use crate::namespaces::{clone_flag, NamespacePlan};
use crate::pty;
use crate::spec::{Bundle, SpecError};
use crate::state::{StateDir, Status};
use crate::syscall::{LinuxSyscall, Syscall};

/// How [`exec`] wires the process.
#[derive(Debug, Clone, Copy, Default)]
pub struct ExecOptions<'a> {
    /// Where the pty master goes when `process.terminal` is set (runc's
    /// `--console-socket`); required then, refused otherwise.
    pub console_socket: Option<&'a Path>,
    /// Receives the process's host pid once it has called execve: its
    /// presence tells a caller the process really started.
    pub pid_file: Option<&'a Path>,
}

/// `process` with the container's capabilities and no_new_privs where it
/// leaves them unset (runc's rule for exec).
pub fn inherit_from_container(process: &Process, container: Option<&Process>) -> Process {
    let mut p = process.clone();
    if let Some(c) = container {
        if p.capabilities().is_none() {
            p.set_capabilities(c.capabilities().clone());
        }
        if p.no_new_privileges().is_none() {
            p.set_no_new_privileges(c.no_new_privileges());
        }
    }
    p
}

/// Runs `process` in container `id` and returns its exit status as a
/// shell reports it (code, or 128 + signal). Without a terminal, stdio is
/// inherited.
#[tracing::instrument(skip(dir, process, opts))]
pub fn exec(dir: &StateDir, id: &str, process: &Process, opts: &ExecOptions<'_>) -> Result<i32, ContainerError> {
    let c = query(dir, id)?;
    if c.status != Status::Running {
        return Err(ContainerError::WrongStatus {
            id: id.to_string(),
            status: c.status,
            action: "exec",
            needed: "running",
        });
    }
    let init_pid = c.pid.expect("running containers have an init");
    let bundle = Bundle::load(&c.state.bundle)?;
    crate::spec::validate_process(&bundle.dir, process)?;
    let process = inherit_from_container(process, bundle.spec.process().as_ref());
    let tty = process.terminal().unwrap_or(false);
    match (tty, opts.console_socket) {
        (true, None) => {
            return Err(SpecError::Invalid {
                bundle: bundle.dir.clone(),
                reason: "exec: process.terminal is set but no console socket was given".into(),
            }
            .into())
        }
        (false, Some(_)) => {
            return Err(SpecError::Invalid {
                bundle: bundle.dir.clone(),
                reason: "exec: a console socket was given but process.terminal is not set".into(),
            }
            .into())
        }
        _ => {}
    }
    let terminal = tty.then(|| {
        process
            .console_size()
            .as_ref()
            .map(|b| (b.height() as u16, b.width() as u16))
    });
    let linux = bundle.spec.linux().clone().unwrap_or_default();
    let exec_err = |source: InitError| ContainerError::Exec {
        id: id.to_string(),
        source,
    };
    let proc_root = Path::new("/proc");
    let mut ns = NamespacePlan::for_exec(&linux, init_pid, proc_root).map_err(|e| exec_err(e.into()))?;
    let in_user_ns = ns.join.iter().any(|j| j.kind == LinuxNamespaceType::User);
    let security =
        SecurityPlan::from_spec(&process, linux.seccomp().as_ref(), proc_root).map_err(|e| exec_err(e.into()))?;
    let plan = ProcessPlan::from_spec(&process, security).map_err(|e| exec_err(e.into()))?;
    let cg = match &c.state.cgroup_path {
        Some(p) => Some(cgroup::manager(p).map_err(|source| ContainerError::Cgroup {
            id: id.to_string(),
            source,
        })?),
        None => None,
    };
    let sys = LinuxSyscall;
    if let Some(pid_ns) = ns.take_pid_join() {
        sys.setns(pid_ns.file.as_fd(), clone_flag(LinuxNamespaceType::Pid))
            .map_err(|source| ContainerError::Sys {
                id: id.to_string(),
                step: "setns pid",
                source,
            })?;
    }
    let (parent, child) = channel::pair().map_err(|e| exec_err(e.into()))?;
    // Signals that reach this command from now on go to the process.
    let forwarder = super::forward::Forwarder::install().ok();
    // SAFETY: `berth-runtime exec` is single-threaded; the child only runs
    // the setup below and leaves through execve or _exit.
    let pid = match unsafe { nix::unistd::fork() }.map_err(|source| ContainerError::Sys {
        id: id.to_string(),
        step: "fork",
        source,
    })? {
        ForkResult::Child => {
            if let Some(f) = &forwarder {
                f.restore_mask_in_child();
            }
            drop(parent);
            let e = exec_child(&child, &ns, &plan, &sys, in_user_ns, terminal);
            let _ = child.send_error(&e.to_string());
            init::exit(127)
        }
        ForkResult::Parent { child: pid } => pid,
    };
    drop(child);
    let joined = match &cg {
        Some(cg) => cg.add_pid(pid).map_err(|source| ContainerError::Cgroup {
            id: id.to_string(),
            source,
        }),
        None => Ok(()),
    };
    let started = joined.and_then(|()| {
        parent.start().map_err(|e| exec_err(e.into()))?;
        if let Some(sock) = opts.console_socket {
            let master = parent.wait_console().map_err(|e| exec_err(e.into()))?;
            pty::send_to_console_socket(sock, master.as_fd()).map_err(|source| ContainerError::ConsoleSocket {
                id: id.to_string(),
                source,
            })?;
        }
        parent.wait_exec().map_err(|e| exec_err(e.into()))?;
        match opts.pid_file {
            Some(path) => super::create::write_pid_file(id, path, pid.as_raw()),
            None => Ok(()),
        }
    });
    if let Err(e) = started {
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
        let _ = waitpid(pid, None);
        return Err(e);
    }
    let waited = match &forwarder {
        Some(f) => f.wait(pid),
        None => loop {
            match waitpid(pid, None) {
                Err(nix::errno::Errno::EINTR) => continue,
                other => break other,
            }
        },
    };
    match waited {
        Ok(WaitStatus::Exited(_, code)) => Ok(code),
        Ok(WaitStatus::Signaled(_, sig, _)) => Ok(128 + sig as i32),
        // Stopped/continued are only reported when asked for (WUNTRACED).
        Ok(_) => Err(ContainerError::Sys {
            id: id.to_string(),
            step: "wait",
            source: nix::errno::Errno::ECHILD,
        }),
        Err(source) => Err(ContainerError::Sys {
            id: id.to_string(),
            step: "wait",
            source,
        }),
    }
}

fn exec_child(
    chan: &ChildEnd,
    ns: &NamespacePlan,
    plan: &ProcessPlan,
    sys: &dyn Syscall,
    in_user_ns: bool,
    terminal: Option<Option<(u16, u16)>>,
) -> InitError {
    let run = || -> Result<std::convert::Infallible, InitError> {
        chan.wait_start()?;
        ns.join_all(sys)?;
        nix::sys::prctl::set_child_subreaper(true).map_err(|source| InitError::Sys {
            step: "PR_SET_CHILD_SUBREAPER",
            source,
        })?;
        if let Some(size) = terminal {
            open_terminal(chan, plan, size)?;
        }
        plan.apply_rlimits()?;
        plan.switch_user(
            !in_user_ns || std::fs::read_to_string("/proc/self/setgroups").map_or(true, |s| s.trim() == "allow"),
        )?;
        plan.enter_cwd()?;
        let exe = plan.lookup_executable()?;
        Ok(plan.exec(&exe)?)
    };
    match run() {
        Ok(never) => match never {},
        Err(e) => e,
    }
}

/// Opens a pty on the container's devpts (we are in its mount namespace),
/// sends the master to the parent and makes the slave our controlling
/// terminal and stdio, owned by the process user.
fn open_terminal(chan: &ChildEnd, plan: &ProcessPlan, size: Option<(u16, u16)>) -> Result<(), InitError> {
    let (master, n) = pty::open_master(Path::new("/dev/ptmx"))?;
    if let Some((rows, cols)) = size {
        pty::set_winsize(master.as_fd(), rows, cols)?;
    }
    let slave = open(
        format!("/dev/pts/{n}").as_str(),
        OFlag::O_RDWR | OFlag::O_NOCTTY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|source| InitError::Sys {
        step: "open pty slave",
        source,
    })?;
    chan.send_console(master.as_raw_fd())?;
    drop(master);
    pty::make_controlling(slave.as_fd())?;
    init::install_stdio([slave.as_raw_fd(); 3])?;
    nix::unistd::fchown(slave.as_fd(), Some(plan.uid), Some(plan.gid)).map_err(|source| InitError::Sys {
        step: "chown terminal to the process user",
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exec_inherits_capabilities_and_no_new_privs_it_leaves_unset() {
        let container: Process = serde_json::from_value(serde_json::json!({
            "args": ["sh"], "cwd": "/", "user": {"uid": 0, "gid": 0},
            "noNewPrivileges": true,
            "capabilities": {"bounding": ["CAP_KILL"], "effective": ["CAP_KILL"]}
        }))
        .unwrap();
        let bare: Process = serde_json::from_value(serde_json::json!({
            "args": ["id"], "cwd": "/", "user": {"uid": 0, "gid": 0}
        }))
        .unwrap();
        let p = inherit_from_container(&bare, Some(&container));
        assert_eq!(p.no_new_privileges(), Some(true));
        assert_eq!(p.capabilities(), container.capabilities());
        assert_eq!(p.args(), bare.args());

        let own: Process = serde_json::from_value(serde_json::json!({
            "args": ["id"], "cwd": "/", "user": {"uid": 0, "gid": 0},
            "noNewPrivileges": false, "capabilities": {"bounding": []}
        }))
        .unwrap();
        let p = inherit_from_container(&own, Some(&container));
        assert_eq!(p.no_new_privileges(), Some(false));
        assert_eq!(p.capabilities(), own.capabilities());
    }
}
