//! The monitor's setup half: make the container (fork the intermediate,
//! cgroup, id maps, the handshake up to "init ready"), bind the control
//! socket, record the state, and return what the supervisor takes over.
//! Any failure before the hand-over kills what was started and removes the
//! cgroup again.

use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::sys::signal::{kill, Signal};
use nix::sys::socket::{bind, listen, socket, AddressFamily, Backlog, SockFlag, SockType, UnixAddr};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::{ForkResult, Pid};
use oci_spec::runtime::{LinuxIdMapping, LinuxNamespaceType, Spec};

use super::handoff::Handoff;
use super::spawn::StdioMode;
use super::{MonitorArgs, MonitorError};
use crate::channel::{self, ParentEnd};
use crate::container::cgroup::{self, CgroupManager};
use crate::init::{self, InitConfig};
use crate::spec::Bundle;
use crate::state::{self, ProcessId, StateDir, Status};

fn pipe() -> Result<(OwnedFd, OwnedFd), Errno> {
    nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
}

fn devnull() -> Result<OwnedFd, Errno> {
    nix::fcntl::open(
        "/dev/null",
        nix::fcntl::OFlag::O_RDWR | nix::fcntl::OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )
}

fn write_id_map(id: &str, path: PathBuf, maps: &[LinuxIdMapping]) -> Result<(), MonitorError> {
    let content: String = maps
        .iter()
        .map(|m| format!("{} {} {}\n", m.container_id(), m.host_id(), m.size()))
        .collect();
    std::fs::write(&path, content).map_err(|source| MonitorError::IdMap {
        id: id.to_string(),
        path,
        source,
    })
}

/// Opens (creating) the CRI log file as the monitor will.
fn open_log(path: &Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .mode(berth_monitor::log::LOG_FILE_MODE)
        .custom_flags(libc::O_CLOEXEC)
        .open(path)
}

/// The container's stdio as the init gets it and as the monitor keeps it.
#[derive(Default)]
struct Stdio {
    /// What the init installs as 0/1/2 (empty: it inherits ours).
    child: Vec<OwnedFd>,
    /// Read ends of stdout and stderr.
    outputs: [Option<OwnedFd>; 2],
    /// Write end of stdin.
    stdin: Option<OwnedFd>,
}

fn make_stdio(mode: &StdioMode, terminal: bool) -> Result<Stdio, Errno> {
    let mut s = Stdio::default();
    match mode {
        StdioMode::Inherit => {}
        StdioMode::ConsoleSocket(_) => {
            for _ in 0..3 {
                s.child.push(devnull()?);
            }
        }
        StdioMode::Monitor { .. } if terminal => {
            for _ in 0..3 {
                s.child.push(devnull()?);
            }
        }
        StdioMode::Monitor { stdin, .. } => {
            if *stdin {
                let (r, w) = pipe()?;
                s.child.push(r);
                s.stdin = Some(w);
            } else {
                s.child.push(devnull()?);
            }
            for slot in s.outputs.iter_mut() {
                let (r, w) = pipe()?;
                s.child.push(w);
                *slot = Some(r);
            }
        }
    }
    Ok(s)
}

/// Makes the container; on success the init waits before execve and the
/// state says `created`.
pub fn setup(args: &MonitorArgs) -> Result<Handoff, MonitorError> {
    let id = args.id.clone();
    let sys_err = |step| {
        let id = id.clone();
        move |source| MonitorError::Sys { id, step, source }
    };
    let chan_err = |source| MonitorError::Channel { id: id.clone(), source };
    nix::sys::prctl::set_child_subreaper(true).map_err(sys_err("PR_SET_CHILD_SUBREAPER"))?;

    let dir = StateDir::new(&args.root);
    let mut state = dir.load(&id)?;
    let bundle = Bundle::load(&args.bundle)?;
    let spec = &bundle.spec;
    let terminal = spec.process().as_ref().and_then(|p| p.terminal()).unwrap_or(false);
    let log = match &args.stdio {
        StdioMode::Monitor { log_path: Some(p), .. } => {
            // Opened here so a bad path fails the create; the supervisor
            // opens it again by path.
            open_log(p).map_err(|source| MonitorError::Log {
                id: id.clone(),
                path: p.clone(),
                source,
            })?;
            Some(p.clone())
        }
        _ => None,
    };
    let stdio = make_stdio(&args.stdio, terminal).map_err(sys_err("stdio pipes"))?;
    let stdio_raw: Option<[RawFd; 3]> = (stdio.child.len() == 3).then(|| {
        [
            stdio.child[0].as_raw_fd(),
            stdio.child[1].as_raw_fd(),
            stdio.child[2].as_raw_fd(),
        ]
    });

    // The cgroup exists before the fork so the child can move itself in
    // (see `CgroupManager::self_join_files`); its limits are written
    // while the child gets going.
    let cg_err = |source| MonitorError::Cgroup { id: id.clone(), source };
    let cg_path = cgroup::path_for(spec, &id);
    let mgr = cgroup::manager(&cg_path).map_err(cg_err)?;
    mgr.create().map_err(cg_err)?;
    let cg: Option<Box<dyn CgroupManager>> = Some(mgr);
    let join_files = cg.as_ref().map(|m| m.self_join_files()).unwrap_or_default();

    let (parent_end, child_end) = match channel::pair() {
        Ok(pair) => pair,
        Err(e) => return Err(remove_cgroup(chan_err(e), &cg)),
    };
    let rootfs = bundle.rootfs.clone();
    // SAFETY: the monitor is single-threaded; the child runs only the init
    // path and leaves with _exit or execve.
    let intermediate = match unsafe { nix::unistd::fork() } {
        Err(e) => return Err(remove_cgroup(sys_err("fork")(e), &cg)),
        Ok(ForkResult::Child) => {
            drop(parent_end);
            if let Err(e) = join_cgroup(&join_files) {
                let _ = child_end.send_error(&format!("container {id}: cgroup: {e}"));
                init::exit(1)
            }
            let cfg = InitConfig {
                spec,
                rootfs: &rootfs,
                stdio: stdio_raw,
                keep_fds: &[],
            };
            init::intermediate_main(&cfg, child_end)
        }
        Ok(ForkResult::Parent { child }) => child,
    };
    drop(child_end);
    let Stdio {
        child: child_stdio,
        mut outputs,
        stdin,
    } = stdio;
    drop(child_stdio);

    let made = (|| -> Result<(Pid, Option<OwnedFd>), MonitorError> {
        if let (Some(mgr), Some(res)) = (&cg, spec.linux().as_ref().and_then(|l| l.resources().as_ref())) {
            mgr.apply(res).map_err(cg_err)?;
        }
        state.cgroup_path = Some(cg_path.clone());
        handshake(args, spec, &parent_end, intermediate, terminal)
    })();
    // The intermediate has exited (or will, on error); reap it.
    let _ = waitpid(intermediate, None);
    let rollback = |e: MonitorError, cg: &Option<Box<dyn CgroupManager>>| {
        let _ = kill(intermediate, Signal::SIGKILL);
        remove_cgroup(e, cg)
    };
    let (init_pid, mut master) = made.map_err(|e| rollback(e, &cg))?;

    let finished = (|| -> Result<Handoff, MonitorError> {
        // Only a console socket takes the master away (`take` inside the
        // match arm: taken in the scrutinee it would be dropped, and the
        // pty hung up, for a monitored terminal too).
        if let StdioMode::ConsoleSocket(sock) = &args.stdio {
            if let Some(m) = master.take() {
                crate::pty::send_to_console_socket(sock, m.as_fd())
                    .map_err(|source| MonitorError::Console { id: id.clone(), source })?;
            }
        }
        if let Some(m) = &master {
            outputs[0] = Some(
                m.try_clone()
                    .map_err(|e| sys_err("dup pty master")(Errno::from_raw(e.raw_os_error().unwrap_or(0))))?,
            );
        }
        let container_dir = dir.container_dir(&id)?;
        let listener = listen_socket(&container_dir).map_err(sys_err("control socket"))?;
        let (cgroup, oom) = exit_probes(cg.as_deref(), init_pid);
        state.status = Status::Created;
        state.init = ProcessId::of(init_pid.as_raw());
        state.monitor = ProcessId::of(std::process::id() as i32);
        state.terminal = master.is_some();
        dir.save(&state)?;
        let [stdout, stderr] = outputs;
        Ok(Handoff {
            id: id.clone(),
            container_dir,
            init_pid: init_pid.as_raw(),
            chan: parent_end.into_fd(),
            listener,
            stdout,
            stderr,
            stdin,
            master,
            log,
            cgroup,
            oom,
            stdin_once: matches!(args.stdio, StdioMode::Monitor { stdin_once: true, .. }),
        })
    })();
    finished.map_err(|e| {
        let _ = kill(init_pid, Signal::SIGKILL);
        rollback(e, &cg)
    })
}

/// Kills whatever is in the cgroup, reaps it and removes the cgroup;
/// returns `e` (the failure that led here).
fn remove_cgroup(e: MonitorError, cg: &Option<Box<dyn CgroupManager>>) -> MonitorError {
    if let Some(mgr) = cg {
        let _ = mgr.kill_all(Signal::SIGKILL);
        while waitpid(None::<Pid>, Some(WaitPidFlag::WNOHANG)).is_ok_and(|s| s != WaitStatus::StillAlive) {}
        let _ = mgr.delete();
    }
    e
}

/// Moves the calling (single-threaded, freshly forked) process into the
/// container's cgroup by writing `0` into each of `files`.
fn join_cgroup(files: &[PathBuf]) -> Result<(), String> {
    for f in files {
        std::fs::write(f, "0").map_err(|e| format!("join {}: {e}", f.display()))?;
    }
    Ok(())
}

/// The monitor's side of the channel, from "parent ready" to "init ready".
fn handshake(
    args: &MonitorArgs,
    spec: &Spec,
    parent_end: &ParentEnd,
    intermediate: Pid,
    terminal: bool,
) -> Result<(Pid, Option<OwnedFd>), MonitorError> {
    let id = &args.id;
    let chan_err = |source| MonitorError::Channel { id: id.clone(), source };
    if let Err(e) = parent_end.parent_ready() {
        // The child may have failed first (e.g. joining the cgroup) and
        // left its reason on the channel.
        return Err(chan_err(match parent_end.wait_init_ready() {
            Err(remote @ crate::channel::ChannelError::Remote(_)) => remote,
            _ => e,
        }));
    }
    let linux = spec.linux().clone().unwrap_or_default();
    let new_user = linux
        .namespaces()
        .iter()
        .flatten()
        .any(|n| n.typ() == LinuxNamespaceType::User && n.path().is_none());
    if new_user {
        parent_end.wait_id_map_request().map_err(chan_err)?;
        let proc_dir = PathBuf::from(format!("/proc/{intermediate}"));
        write_id_map(
            id,
            proc_dir.join("uid_map"),
            linux.uid_mappings().as_deref().unwrap_or_default(),
        )?;
        write_id_map(
            id,
            proc_dir.join("gid_map"),
            linux.gid_mappings().as_deref().unwrap_or_default(),
        )?;
        parent_end.id_maps_written().map_err(chan_err)?;
    }
    let init_pid = Pid::from_raw(parent_end.wait_init_pid().map_err(chan_err)?);
    let master = if terminal && args.stdio != StdioMode::Inherit {
        Some(parent_end.wait_console().map_err(chan_err)?)
    } else {
        None
    };
    parent_end.wait_init_ready().map_err(chan_err)?;
    Ok((init_pid, master))
}

/// Where the supervisor looks to learn that the container is gone and
/// whether it was OOM-killed: the first cgroup dir whose `cgroup.procs`
/// lists the init, and the memory controller's `oom_kill` counter file.
fn exit_probes(cg: Option<&dyn CgroupManager>, init: Pid) -> (Option<PathBuf>, Option<PathBuf>) {
    let Some(cg) = cg else { return (None, None) };
    let paths = cg.paths();
    let pid = init.as_raw().to_string();
    let procs = paths
        .iter()
        .find(|p| std::fs::read_to_string(p.join("cgroup.procs")).is_ok_and(|s| s.lines().any(|l| l.trim() == pid)))
        .cloned();
    let oom = ["memory.oom_control", "memory.events"]
        .iter()
        .find_map(|f| paths.iter().map(|p| p.join(f)).find(|p| p.exists()));
    (procs, oom)
}

/// Binds the control socket in the container's state directory (through
/// `/proc/self/fd` so long state paths fit in `sun_path`).
fn listen_socket(container_dir: &Path) -> Result<OwnedFd, Errno> {
    let dfd = nix::fcntl::open(
        container_dir,
        nix::fcntl::OFlag::O_PATH | nix::fcntl::OFlag::O_DIRECTORY | nix::fcntl::OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )?;
    let path = format!("/proc/self/fd/{}/{}", dfd.as_raw_fd(), state::MONITOR_SOCKET);
    let _ = std::fs::remove_file(&path);
    let fd = socket(AddressFamily::Unix, SockType::SeqPacket, SockFlag::SOCK_CLOEXEC, None)?;
    bind(fd.as_raw_fd(), &UnixAddr::new(path.as_str())?)?;
    listen(&fd, Backlog::new(16)?)?;
    Ok(fd)
}

/// Points the monitor's own 0/1/2 away from the caller: /dev/null, and
/// stderr to `monitor.log` in the container's directory.
pub fn redirect_own_stdio(dir: &StateDir, id: &str) {
    use nix::fcntl::{open, OFlag};
    use nix::sys::stat::Mode;
    let null = devnull();
    let log = dir.container_dir(id).ok().and_then(|d| {
        open(
            &d.join(state::MONITOR_LOG),
            OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_APPEND | OFlag::O_CLOEXEC,
            Mode::from_bits_truncate(0o600),
        )
        .ok()
    });
    if let Ok(null) = &null {
        let err = log.as_ref().map_or(null.as_raw_fd(), |l| l.as_raw_fd());
        for (fd, target) in [(null.as_raw_fd(), 0), (null.as_raw_fd(), 1), (err, 2)] {
            // SAFETY: replaces the monitor's own standard descriptors with
            // open ones; no Rust object owns 0/1/2 here.
            unsafe { libc::dup2(fd, target) };
        }
    }
}
