//! `exec`: run another process in a running container. This process (the
//! `berth-runtime exec` command, single-threaded) enters the container's
//! PID namespace for its children, forks, puts the child in the
//! container's cgroup, and the child joins the other namespaces and becomes
//! the process with the same user/capabilities/no_new_privs/seccomp
//! handling as the init. The caller waits for it and gets its exit code.

use std::path::Path;

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
use crate::spec::Bundle;
use crate::state::{StateDir, Status};
use crate::syscall::{LinuxSyscall, Syscall};

/// Runs `process` in container `id` and returns its exit status as a
/// shell reports it (code, or 128 + signal). stdio is inherited.
#[tracing::instrument(skip(dir, process))]
pub fn exec(dir: &StateDir, id: &str, process: &Process) -> Result<i32, ContainerError> {
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
    let linux = bundle.spec.linux().clone().unwrap_or_default();
    let exec_err = |source: InitError| ContainerError::Exec {
        id: id.to_string(),
        source,
    };
    let proc_root = Path::new("/proc");
    let mut ns = NamespacePlan::for_exec(&linux, init_pid, proc_root).map_err(|e| exec_err(e.into()))?;
    let in_user_ns = ns.join.iter().any(|j| j.kind == LinuxNamespaceType::User);
    let security =
        SecurityPlan::from_spec(process, linux.seccomp().as_ref(), proc_root).map_err(|e| exec_err(e.into()))?;
    let plan = ProcessPlan::from_spec(process, security).map_err(|e| exec_err(e.into()))?;
    let cg = match &c.state.cgroup_path {
        Some(p) => Some(cgroup::manager(p).map_err(|source| ContainerError::Cgroup {
            id: id.to_string(),
            source,
        })?),
        None => None,
    };
    let sys = LinuxSyscall;
    if let Some(pid_ns) = ns.take_pid_join() {
        use std::os::fd::AsFd;
        sys.setns(pid_ns.file.as_fd(), clone_flag(LinuxNamespaceType::Pid))
            .map_err(|source| ContainerError::Sys {
                id: id.to_string(),
                step: "setns pid",
                source,
            })?;
    }
    let (parent, child) = channel::pair().map_err(|e| exec_err(e.into()))?;
    // SAFETY: `berth-runtime exec` is single-threaded; the child only runs
    // the setup below and leaves through execve or _exit.
    let pid = match unsafe { nix::unistd::fork() }.map_err(|source| ContainerError::Sys {
        id: id.to_string(),
        step: "fork",
        source,
    })? {
        ForkResult::Child => {
            drop(parent);
            let e = exec_child(&child, &ns, &plan, &sys, in_user_ns);
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
        parent.wait_exec().map_err(|e| exec_err(e.into()))
    });
    if let Err(e) = started {
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
        let _ = waitpid(pid, None);
        return Err(e);
    }
    loop {
        match waitpid(pid, None) {
            Ok(WaitStatus::Exited(_, code)) => return Ok(code),
            Ok(WaitStatus::Signaled(_, sig, _)) => return Ok(128 + sig as i32),
            Ok(_) | Err(nix::errno::Errno::EINTR) => continue,
            Err(source) => {
                return Err(ContainerError::Sys {
                    id: id.to_string(),
                    step: "wait",
                    source,
                })
            }
        }
    }
}

fn exec_child(
    chan: &ChildEnd,
    ns: &NamespacePlan,
    plan: &ProcessPlan,
    sys: &dyn Syscall,
    in_user_ns: bool,
) -> InitError {
    let run = || -> Result<std::convert::Infallible, InitError> {
        chan.wait_start()?;
        ns.join_all(sys)?;
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
