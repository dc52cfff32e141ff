//! The child side of `create`: what runs between the monitor's fork and the
//! container's execve.
//!
//! ```text
//! monitor ──fork──▶ intermediate: stdio, join/unshare namespaces (user ns
//!                   maps written by the monitor), fork ──▶ init (PID 1 of a
//!                   new PID namespace), intermediate exits; the monitor, a
//!                   subreaper, inherits the init.
//! init: oom_score_adj, rootfs (mounts.rs, devices.rs, paths.rs, sysctl.rs,
//!       pivot.rs via rootfs.rs), terminal, rlimits, user + capabilities,
//!       cwd, executable lookup; "ready"; waits for "start"; no_new_privs,
//!       signals reset, seccomp, execve (process.rs).
//! ```
//! Each step that fails sends its error over the channel (see
//! [`crate::channel`]) and exits non-zero; nothing panics across the fork.

pub mod devices;
pub mod mounts;
pub mod paths;
pub mod pivot;
pub mod process;
pub mod resolve;
pub mod rootfs;
pub mod security;
pub mod sysctl;

use std::os::fd::{AsFd, AsRawFd, RawFd};
use std::path::Path;

use nix::unistd::{ForkResult, Gid, Uid};
use oci_spec::runtime::{LinuxNamespaceType, Spec};

use crate::channel::{ChannelError, ChildEnd};
use crate::namespaces::{NamespaceError, NamespacePlan};
use crate::syscall::{LinuxSyscall, Syscall};
use mounts::MountContext;
use process::{ProcessError, ProcessPlan};
use rootfs::{RootfsError, RootfsOptions};

/// Errors of the container's child processes.
#[derive(Debug, thiserror::Error)]
pub enum InitError {
    #[error(transparent)]
    Channel(#[from] ChannelError),
    #[error(transparent)]
    Namespace(#[from] NamespaceError),
    #[error(transparent)]
    Rootfs(#[from] RootfsError),
    #[error(transparent)]
    Process(#[from] ProcessError),
    #[error(transparent)]
    Security(#[from] security::SecurityError),
    #[error(transparent)]
    Pty(#[from] crate::pty::PtyError),
    #[error("{step}: {source}")]
    Sys {
        step: &'static str,
        source: nix::errno::Errno,
    },
}

fn sys_err(step: &'static str) -> impl FnOnce(nix::errno::Errno) -> InitError {
    move |source| InitError::Sys { step, source }
}

/// What the child side needs, all prepared by the monitor before forking.
#[derive(Debug)]
pub struct InitConfig<'a> {
    pub spec: &'a Spec,
    pub rootfs: &'a Path,
    /// Descriptors to install as 0, 1, 2; `None` keeps the inherited ones.
    pub stdio: Option<[RawFd; 3]>,
    /// Descriptors that must survive the initial cleanup (besides 0-2 and
    /// the channel): none today, kept explicit for callers.
    pub keep_fds: &'a [RawFd],
}

/// Installs `stdio` as 0/1/2 and closes every other descriptor except
/// `keep`, so nothing of the monitor (sync pipe, sockets) leaks into the
/// container.
pub fn setup_fds(stdio: Option<[RawFd; 3]>, keep: &[RawFd]) -> Result<(), InitError> {
    if let Some(fds) = stdio {
        install_stdio(fds)?;
    }
    let entries: Vec<RawFd> = std::fs::read_dir("/proc/self/fd")
        .map_err(|e| InitError::Sys {
            step: "list /proc/self/fd",
            source: nix::errno::Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO)),
        })?
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
        .collect();
    for fd in entries {
        if fd > 2 && !keep.contains(&fd) {
            // SAFETY: closing a descriptor number: any Rust owner of it in
            // this forked child is never used again (the child only runs
            // the init path and exits or execs).
            unsafe { libc::close(fd) };
        }
    }
    Ok(())
}

/// Makes `fds` the process's 0, 1 and 2.
pub fn install_stdio(fds: [RawFd; 3]) -> Result<(), InitError> {
    for (target, fd) in fds.into_iter().enumerate() {
        if fd != target as RawFd {
            // SAFETY: dup2 onto 0/1/2 replaces descriptors this process
            // owns; `fd` is open (the caller created it). The new
            // descriptors are not close-on-exec.
            let rc = unsafe { libc::dup2(fd, target as RawFd) };
            nix::errno::Errno::result(rc).map_err(sys_err("dup2 stdio"))?;
        }
    }
    Ok(())
}

/// Entry of the intermediate process (forked by the monitor). Never returns.
pub fn intermediate_main(cfg: &InitConfig<'_>, chan: ChildEnd) -> ! {
    let result = intermediate(cfg, &chan);
    if let Err(e) = result {
        let _ = chan.send_error(&e.to_string());
        exit(1);
    }
    exit(0)
}

fn intermediate(cfg: &InitConfig<'_>, chan: &ChildEnd) -> Result<(), InitError> {
    let mut keep = cfg.keep_fds.to_vec();
    keep.push(chan.raw_fd());
    setup_fds(cfg.stdio, &keep)?;
    chan.wait_parent_ready()?;
    let sys = LinuxSyscall;
    let linux = cfg.spec.linux().clone().unwrap_or_default();
    let plan = NamespacePlan::for_create(&linux)?;
    plan.join_all(&sys)?;
    if plan.new_user {
        plan.unshare_user(&sys)?;
        chan.request_id_maps()?;
        // Become root of the new user namespace (mapped by the monitor).
        nix::unistd::setresgid(Gid::from_raw(0), Gid::from_raw(0), Gid::from_raw(0))
            .map_err(sys_err("setresgid(0) in user namespace"))?;
        nix::unistd::setresuid(Uid::from_raw(0), Uid::from_raw(0), Uid::from_raw(0))
            .map_err(sys_err("setresuid(0) in user namespace"))?;
    }
    plan.unshare_rest(&sys)?;
    let in_user_ns = plan.new_user || plan.join.iter().any(|j| j.kind == LinuxNamespaceType::User);
    let new_cgroup_ns = plan.unshare.contains(nix::sched::CloneFlags::CLONE_NEWCGROUP);
    drop(plan);
    // SAFETY: this process is single-threaded (forked from the
    // single-threaded monitor), so the child may run arbitrary code.
    match unsafe { nix::unistd::fork() }.map_err(sys_err("fork init"))? {
        ForkResult::Child => {
            let ctx = MountContext {
                in_user_ns,
                new_cgroup_ns,
            };
            match init(cfg, chan, &sys, ctx) {
                Ok(never) => match never {},
                Err(e) => {
                    let _ = chan.send_error(&e.to_string());
                    exit(1);
                }
            }
        }
        ForkResult::Parent { child } => {
            chan.send_init_pid(child.as_raw())?;
            Ok(())
        }
    }
}

/// The container init: everything up to execve.
fn init(
    cfg: &InitConfig<'_>,
    chan: &ChildEnd,
    sys: &dyn Syscall,
    ctx: MountContext,
) -> Result<std::convert::Infallible, InitError> {
    let spec = cfg.spec;
    // Exact modes for device nodes and created mount points; the process
    // gets its own umask in `switch_user`.
    nix::sys::stat::umask(nix::sys::stat::Mode::empty());
    let process = spec.process().clone().unwrap_or_default();
    let linux = spec.linux().clone().unwrap_or_default();
    let proc_root = Path::new("/proc");
    let security = security::SecurityPlan::from_spec(&process, linux.seccomp().as_ref(), proc_root)?;
    let plan = ProcessPlan::from_spec(&process, security)?;
    plan.apply_oom_score_adj(&proc_root.join("self"))?;

    let terminal = process.terminal().unwrap_or(false).then(|| {
        process
            .console_size()
            .as_ref()
            .map(|b| (b.height() as u16, b.width() as u16))
    });
    let console = rootfs::prepare(
        sys,
        spec,
        RootfsOptions {
            rootfs: cfg.rootfs,
            ctx,
            terminal,
            proc_root,
        },
    )?;
    if let Some(console) = console {
        chan.send_console(console.master.as_raw_fd())?;
        drop(console.master);
        crate::pty::make_controlling(console.slave.as_fd())?;
        install_stdio([console.slave.as_raw_fd(); 3])?;
        // The process owns its terminal (runc's fixStdioPermissions).
        nix::unistd::fchown(console.slave.as_fd(), Some(plan.uid), Some(plan.gid))
            .map_err(sys_err("chown terminal to the process user"))?;
    }
    plan.apply_rlimits()?;
    plan.switch_user(!ctx.in_user_ns || setgroups_allowed())?;
    plan.enter_cwd()?;
    let executable = plan.lookup_executable()?;
    chan.send_init_ready()?;
    chan.wait_start()?;
    let e = plan.exec(&executable).unwrap_err();
    let _ = chan.exec_failed(&e.to_string());
    exit(127)
}

/// In a user namespace, setgroups(2) works only if `/proc/self/setgroups`
/// says "allow" (it does when the maps were written by a privileged parent).
fn setgroups_allowed() -> bool {
    std::fs::read_to_string("/proc/self/setgroups").map_or(true, |s| s.trim() == "allow")
}

/// Leaves the child process without running destructors or atexit
/// handlers that belong to the parent's state.
pub fn exit(code: i32) -> ! {
    // SAFETY: _exit is always safe to call; it does not return.
    unsafe { libc::_exit(code) }
}
