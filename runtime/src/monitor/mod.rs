//! The per-container monitor: `berth-runtime monitor …`, one small process
//! per container, with no async runtime.
//!
//! It daemonizes (the first process exits at once; the second starts a new
//! session), becomes a child subreaper, forks the container (see
//! [`crate::init`]), places it in its cgroup, writes user-namespace maps,
//! waits for the init to be ready, records the state, and reports on the
//! sync pipe. Then a `poll(2)` loop:
//!
//! - `SIGCHLD` (signalfd): reap every child (reparented orphans included);
//!   when the init exits, wait until the cgroup holds no process, drain the
//!   output, record the exit durably ([`crate::state::ExitRecord`]) and
//!   answer waiters; then exit.
//! - the container's stdout/stderr pipes or pty master: copy to the CRI log
//!   ([`crate::logs::LogWriter`]) and to attached clients.
//! - the control socket ([`protocol`]): start, wait, attach, resize,
//!   log reopen.
//!
//! Nothing here depends on the caller staying alive: berthd (or the CLI)
//! may die at any time; a new caller reads the state directory and connects
//! to the socket.

pub mod client;
pub mod protocol;
pub mod spawn;

use std::io::Write;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::path::PathBuf;

use nix::errno::Errno;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{kill, SigSet, SigmaskHow, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::socket::{
    accept4, bind, listen, recv, send, socket, AddressFamily, Backlog, MsgFlags, SockFlag, SockType, UnixAddr,
};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::{ForkResult, Pid};
use oci_spec::runtime::{LinuxIdMapping, LinuxNamespaceType};

use crate::channel::{self, ChannelError, ParentEnd};
use crate::container::cgroup::{self, CgroupManager};
use crate::init::{self, InitConfig};
use crate::logs::{LogWriter, Stream};
use crate::spec::Bundle;
use crate::state::{self, ExitRecord, ProcessId, State, StateDir, Status};
use protocol::{Request, Response};
use spawn::{Report, StdioMode, SYNC_FD};

/// Errors of the monitor during container setup (reported on the sync pipe).
#[derive(Debug, thiserror::Error)]
pub enum MonitorError {
    #[error("container {id}: {step}: {source}")]
    Sys {
        id: String,
        step: &'static str,
        source: Errno,
    },
    #[error("container {id}: {source}")]
    Channel { id: String, source: ChannelError },
    #[error("container {id}: write {path}: {source}")]
    IdMap {
        id: String,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("container {id}: cgroup: {source}")]
    Cgroup { id: String, source: cgroup::CgroupError },
    #[error("container {id}: log file: {source}")]
    Log { id: String, source: crate::logs::LogError },
    #[error(transparent)]
    Spec(#[from] crate::spec::SpecError),
    #[error(transparent)]
    State(#[from] state::StateError),
}

/// Arguments of the hidden `monitor` subcommand.
#[derive(Debug, Clone)]
pub struct MonitorArgs {
    pub root: PathBuf,
    pub id: String,
    pub bundle: PathBuf,
    pub stdio: StdioMode,
}

/// Runs the monitor. Never returns.
pub fn run(args: MonitorArgs) -> ! {
    // SAFETY: the CLI is single-threaded when it dispatches to the monitor
    // (no threads were started), so the child may continue normally.
    match unsafe { nix::unistd::fork() } {
        Ok(ForkResult::Parent { .. }) => init::exit(0),
        Ok(ForkResult::Child) => {}
        Err(_) => init::exit(1),
    }
    let _ = nix::unistd::setsid();
    // SAFETY: fd 3 was installed by the spawner as our sync pipe and is
    // owned by nothing else in this process.
    let sync = std::fs::File::from(unsafe { OwnedFd::from_raw_fd(SYNC_FD) });
    let report = |mut sync: std::fs::File, r: Report| {
        let _ = sync.write_all(serde_json::to_string(&r).expect("report serializes").as_bytes());
    };
    match Monitor::setup(&args) {
        Ok(mut m) => {
            report(
                sync,
                Report::Created {
                    pid: m.init_pid.as_raw(),
                },
            );
            m.run_loop();
            init::exit(0)
        }
        Err(e) => {
            report(sync, Report::Failed(e.to_string()));
            init::exit(1)
        }
    }
}

struct Client {
    fd: OwnedFd,
    attached: bool,
    waiting: bool,
}

struct Monitor {
    id: String,
    dir: StateDir,
    state: State,
    chan: Option<ParentEnd>,
    init_pid: Pid,
    cgroup: Option<Box<dyn CgroupManager>>,
    /// stdout, stderr (or the pty master as stdout).
    outputs: [Option<OwnedFd>; 2],
    stdin: Option<OwnedFd>,
    master: Option<OwnedFd>,
    log: Option<LogWriter>,
    listener: OwnedFd,
    clients: Vec<Client>,
    sigfd: SignalFd,
    init_status: Option<WaitStatus>,
}

fn pipe() -> Result<(OwnedFd, OwnedFd), Errno> {
    nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
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

impl Monitor {
    fn setup(args: &MonitorArgs) -> Result<Monitor, MonitorError> {
        let id = args.id.clone();
        let sys_err = |step| {
            let id = id.clone();
            move |source| MonitorError::Sys { id, step, source }
        };
        let chan_err = |source| MonitorError::Channel { id: id.clone(), source };
        nix::sys::prctl::set_child_subreaper(true).map_err(sys_err("PR_SET_CHILD_SUBREAPER"))?;
        let mut chld = SigSet::empty();
        chld.add(Signal::SIGCHLD);
        nix::sys::signal::sigprocmask(SigmaskHow::SIG_BLOCK, Some(&chld), None).map_err(sys_err("block SIGCHLD"))?;
        let sigfd =
            SignalFd::with_flags(&chld, SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC).map_err(sys_err("signalfd"))?;

        let dir = StateDir::new(&args.root);
        let mut state = dir.load(&id)?;
        let bundle = Bundle::load(&args.bundle)?;
        let spec = &bundle.spec;
        let process = spec.process().clone().unwrap_or_default();
        let terminal = process.terminal().unwrap_or(false);

        // stdio: what the child gets as 0/1/2 and what we keep.
        let devnull = || {
            nix::fcntl::open(
                "/dev/null",
                nix::fcntl::OFlag::O_RDWR | nix::fcntl::OFlag::O_CLOEXEC,
                nix::sys::stat::Mode::empty(),
            )
        };
        let mut child_stdio: Vec<OwnedFd> = Vec::new();
        let mut outputs = [None, None];
        let mut stdin = None;
        let mut log = None;
        match &args.stdio {
            StdioMode::Inherit => {}
            StdioMode::ConsoleSocket(_) => {
                for _ in 0..3 {
                    child_stdio.push(devnull().map_err(sys_err("open /dev/null"))?);
                }
            }
            StdioMode::Monitor {
                log_path,
                stdin: want_stdin,
            } => {
                if let Some(p) = log_path {
                    log = Some(LogWriter::open(p).map_err(|source| MonitorError::Log { id: id.clone(), source })?);
                }
                if terminal {
                    for _ in 0..3 {
                        child_stdio.push(devnull().map_err(sys_err("open /dev/null"))?);
                    }
                } else {
                    if *want_stdin {
                        let (r, w) = pipe().map_err(sys_err("stdin pipe"))?;
                        child_stdio.push(r);
                        stdin = Some(w);
                    } else {
                        child_stdio.push(devnull().map_err(sys_err("open /dev/null"))?);
                    }
                    for slot in outputs.iter_mut() {
                        let (r, w) = pipe().map_err(sys_err("output pipe"))?;
                        child_stdio.push(w);
                        *slot = Some(r);
                    }
                }
            }
        }
        let stdio_raw: Option<[RawFd; 3]> = (child_stdio.len() == 3).then(|| {
            [
                child_stdio[0].as_raw_fd(),
                child_stdio[1].as_raw_fd(),
                child_stdio[2].as_raw_fd(),
            ]
        });

        let (parent_end, child_end) = channel::pair().map_err(chan_err)?;
        let rootfs = bundle.rootfs.clone();
        // SAFETY: the monitor is single-threaded; the child runs only the
        // init path and leaves with _exit or execve.
        let intermediate = match unsafe { nix::unistd::fork() }.map_err(sys_err("fork"))? {
            ForkResult::Child => {
                drop(parent_end);
                let cfg = InitConfig {
                    spec,
                    rootfs: &rootfs,
                    stdio: stdio_raw,
                    keep_fds: &[],
                };
                init::intermediate_main(&cfg, child_end)
            }
            ForkResult::Parent { child } => child,
        };
        drop(child_end);
        drop(child_stdio);

        let mut cg: Option<Box<dyn CgroupManager>> = None;
        let result = (|| -> Result<(Pid, Option<OwnedFd>), MonitorError> {
            let cg_err = |source| MonitorError::Cgroup { id: id.clone(), source };
            let path = cgroup::path_for(spec, &id);
            let mgr = cgroup::manager(&path).map_err(cg_err)?;
            mgr.create().map_err(cg_err)?;
            cg = Some(mgr);
            let mgr = cg.as_ref().expect("just set");
            mgr.add_pid(intermediate).map_err(cg_err)?;
            if let Some(res) = spec.linux().as_ref().and_then(|l| l.resources().as_ref()) {
                mgr.apply(res).map_err(cg_err)?;
            }
            state.cgroup_path = Some(path);
            parent_end.parent_ready().map_err(chan_err)?;
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
                    &id,
                    proc_dir.join("uid_map"),
                    linux.uid_mappings().as_deref().unwrap_or_default(),
                )?;
                write_id_map(
                    &id,
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
        })();
        // The intermediate has exited (or will, on error); reap it.
        let _ = waitpid(intermediate, None);
        let (init_pid, master) = match result {
            Ok(v) => v,
            Err(e) => {
                let _ = kill(intermediate, Signal::SIGKILL);
                if let Some(mgr) = &cg {
                    let _ = mgr.kill_all(Signal::SIGKILL);
                    // reap what we can, then remove the cgroup
                    while waitpid(None::<Pid>, Some(WaitPidFlag::WNOHANG)).is_ok_and(|s| s != WaitStatus::StillAlive) {}
                    let _ = mgr.delete();
                }
                return Err(e);
            }
        };

        let mut master = master;
        if let (StdioMode::ConsoleSocket(sock), Some(m)) = (&args.stdio, master.take()) {
            send_console(sock, &m).map_err(sys_err("send terminal to console socket"))?;
        }
        let master_out = master
            .as_ref()
            .map(|m| m.try_clone())
            .transpose()
            .map_err(|e| MonitorError::Sys {
                id: id.clone(),
                step: "dup pty master",
                source: Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO)),
            })?;
        if let Some(m) = master_out {
            outputs[0] = Some(m);
        }

        state.status = Status::Created;
        state.init = ProcessId::of(init_pid.as_raw());
        state.monitor = ProcessId::of(std::process::id() as i32);
        state.terminal = master.is_some();
        dir.save(&state)?;

        let listener = listen_socket(&dir, &id).map_err(sys_err("control socket"))?;
        redirect_own_stdio(&dir, &id);
        for fd in outputs.iter().flatten() {
            set_nonblocking(fd.as_fd());
        }
        Ok(Monitor {
            id,
            dir,
            state,
            chan: Some(parent_end),
            init_pid,
            cgroup: cg,
            outputs,
            stdin,
            master,
            log,
            listener,
            clients: Vec::new(),
            sigfd,
            init_status: None,
        })
    }

    fn run_loop(&mut self) {
        let mut buf = vec![0u8; protocol::MAX_PACKET];
        loop {
            if self.init_status.is_some() && self.cgroup_empty() {
                self.finish(&mut buf);
                return;
            }
            let timeout = if self.init_status.is_some() {
                PollTimeout::from(100u16)
            } else {
                PollTimeout::NONE
            };
            let (ready, n_out) = {
                let mut fds: Vec<PollFd<'_>> = Vec::with_capacity(4 + self.clients.len());
                fds.push(PollFd::new(self.sigfd.as_fd(), PollFlags::POLLIN));
                fds.push(PollFd::new(self.listener.as_fd(), PollFlags::POLLIN));
                let mut out_idx = Vec::new();
                for (i, o) in self.outputs.iter().enumerate() {
                    if let Some(fd) = o {
                        fds.push(PollFd::new(fd.as_fd(), PollFlags::POLLIN));
                        out_idx.push(i);
                    }
                }
                for c in &self.clients {
                    fds.push(PollFd::new(c.fd.as_fd(), PollFlags::POLLIN));
                }
                match poll(&mut fds, timeout) {
                    Ok(_) => {}
                    Err(Errno::EINTR) => continue,
                    Err(_) => return,
                }
                let ready: Vec<bool> = fds.iter().map(|f| f.revents().is_some_and(|r| !r.is_empty())).collect();
                (ready, out_idx)
            };
            if ready[0] {
                while let Ok(Some(_)) = self.sigfd.read_signal() {}
                self.reap();
            }
            if ready[1] {
                self.accept();
            }
            for (k, &slot) in n_out.iter().enumerate() {
                if ready[2 + k] {
                    self.pump(slot, &mut buf);
                }
            }
            let first_client = 2 + n_out.len();
            let mut closed = Vec::new();
            for i in 0..self.clients.len() {
                if ready.get(first_client + i).copied().unwrap_or(false) && !self.serve(i, &mut buf) {
                    closed.push(i);
                }
            }
            for i in closed.into_iter().rev() {
                self.clients.remove(i);
            }
        }
    }

    fn reap(&mut self) {
        loop {
            match waitpid(None::<Pid>, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::StillAlive) | Err(_) => return,
                Ok(status) => {
                    if status.pid() == Some(self.init_pid) {
                        self.init_status = Some(status);
                    }
                }
            }
        }
    }

    fn cgroup_empty(&self) -> bool {
        match &self.cgroup {
            Some(cg) => cg.pids().map_or(true, |p| p.is_empty()),
            None => true,
        }
    }

    fn accept(&mut self) {
        if let Ok(fd) = accept4(self.listener.as_raw_fd(), SockFlag::SOCK_CLOEXEC) {
            // SAFETY: accept4 returned a new descriptor that we now own.
            let fd = unsafe { OwnedFd::from_raw_fd(fd) };
            self.clients.push(Client {
                fd,
                attached: false,
                waiting: false,
            });
        }
    }

    /// Copies available output of `slot` to the log and attached clients.
    fn pump(&mut self, slot: usize, buf: &mut [u8]) -> bool {
        let Some(fd) = &self.outputs[slot] else { return false };
        let n = match nix::unistd::read(fd.as_fd(), &mut buf[1..]) {
            Ok(0) | Err(Errno::EIO) => {
                self.outputs[slot] = None;
                if let Some(log) = &mut self.log {
                    let _ = log.flush_stream(if slot == 0 { Stream::Stdout } else { Stream::Stderr });
                }
                return false;
            }
            Err(Errno::EAGAIN) | Err(Errno::EINTR) => return false,
            Err(_) => {
                self.outputs[slot] = None;
                return false;
            }
            Ok(n) => n,
        };
        let stream = if slot == 0 { Stream::Stdout } else { Stream::Stderr };
        if let Some(log) = &mut self.log {
            if let Err(e) = log.write(stream, &buf[1..=n]) {
                tracing::warn!(container_id = %self.id, error = %e, "log write failed");
            }
        }
        buf[0] = if slot == 0 {
            protocol::TAG_STDOUT
        } else {
            protocol::TAG_STDERR
        };
        for c in self.clients.iter().filter(|c| c.attached) {
            let _ = send(
                c.fd.as_raw_fd(),
                &buf[..=n],
                MsgFlags::MSG_NOSIGNAL | MsgFlags::MSG_DONTWAIT,
            );
        }
        true
    }

    /// Handles one packet from client `i`; false when it disconnected.
    fn serve(&mut self, i: usize, buf: &mut [u8]) -> bool {
        let n = match recv(self.clients[i].fd.as_raw_fd(), buf, MsgFlags::MSG_DONTWAIT) {
            Ok(0) => return false,
            Ok(n) => n,
            Err(Errno::EAGAIN) | Err(Errno::EINTR) => return true,
            Err(_) => return false,
        };
        match buf[0] {
            protocol::TAG_STDIN => {
                if let Some(fd) = self.stdin.as_ref().or(self.master.as_ref()) {
                    let _ = nix::unistd::write(fd, &buf[1..n]);
                }
                true
            }
            protocol::TAG_STDIN_CLOSE => {
                self.stdin = None;
                true
            }
            protocol::TAG_CONTROL => {
                let resp = match serde_json::from_slice::<Request>(&buf[1..n]) {
                    Ok(req) => self.handle(i, req),
                    Err(e) => Some(Response::Error(format!("bad request: {e}"))),
                };
                if let Some(r) = resp {
                    let _ = send(
                        self.clients[i].fd.as_raw_fd(),
                        &protocol::control(&r),
                        MsgFlags::MSG_NOSIGNAL,
                    );
                }
                true
            }
            _ => true,
        }
    }

    fn handle(&mut self, i: usize, req: Request) -> Option<Response> {
        let span = tracing::info_span!("monitor", container_id = %self.id);
        let _g = span.enter();
        Some(match req {
            Request::Start => match self.start() {
                Ok(()) => Response::Ok,
                Err(e) => Response::Error(e),
            },
            Request::Wait => {
                self.clients[i].waiting = true;
                return None;
            }
            Request::Attach => {
                self.clients[i].attached = true;
                Response::Ok
            }
            Request::Resize { rows, cols } => match &self.master {
                Some(m) => match crate::pty::set_winsize(m.as_fd(), rows, cols) {
                    Ok(()) => Response::Ok,
                    Err(e) => Response::Error(e.to_string()),
                },
                None => Response::Error(format!("container {} has no terminal", self.id)),
            },
            Request::ReopenLog => match &mut self.log {
                Some(log) => match log.reopen() {
                    Ok(()) => Response::Ok,
                    Err(e) => Response::Error(e.to_string()),
                },
                None => Response::Error(format!("container {} has no log file", self.id)),
            },
        })
    }

    fn start(&mut self) -> Result<(), String> {
        let Some(chan) = self.chan.take() else {
            return Err(format!("container {} was already started", self.id));
        };
        if self.init_status.is_some() {
            return Err(format!("container {} has already exited", self.id));
        }
        chan.start().map_err(|e| e.to_string())?;
        let exec = chan.wait_exec();
        self.state.status = Status::Running;
        self.state.started = Some(state::now_rfc3339());
        self.dir.save(&self.state).map_err(|e| e.to_string())?;
        exec.map_err(|e| format!("container {}: exec failed: {e}", self.id))
    }

    /// Records the exit and answers waiters. Called once every process of
    /// the container is gone.
    fn finish(&mut self, buf: &mut [u8]) {
        // Drain what the pipes still hold (nonblocking).
        for slot in 0..2 {
            while self.pump(slot, buf) {}
        }
        if let Some(log) = &mut self.log {
            let _ = log.flush_stream(Stream::Stdout);
            let _ = log.flush_stream(Stream::Stderr);
        }
        let (exit_code, signal) = match self.init_status {
            Some(WaitStatus::Exited(_, code)) => (code, None),
            Some(WaitStatus::Signaled(_, sig, _)) => (128 + sig as i32, Some(sig as i32)),
            _ => (255, None),
        };
        let oom_killed = self
            .cgroup
            .as_ref()
            .and_then(|c| c.stats().ok())
            .and_then(|s| s.oom_kill_count)
            .is_some_and(|n| n > 0);
        let record = ExitRecord {
            exit_code,
            signal,
            exited_at: state::now_rfc3339(),
            oom_killed,
            error: None,
        };
        if let Err(e) = self.dir.save_exit(&self.id, &record) {
            tracing::error!(container_id = %self.id, error = %e, "cannot record exit");
        }
        let reply = protocol::control(&Response::Exited(record));
        for c in self.clients.iter().filter(|c| c.waiting) {
            let _ = send(c.fd.as_raw_fd(), &reply, MsgFlags::MSG_NOSIGNAL);
        }
        let _ = std::fs::remove_file(self.dir.root().join(&self.id).join(state::MONITOR_SOCKET));
    }
}

fn set_nonblocking(fd: BorrowedFd<'_>) {
    use nix::fcntl::{fcntl, FcntlArg, OFlag};
    if let Ok(flags) = fcntl(fd, FcntlArg::F_GETFL) {
        let _ = fcntl(
            fd,
            FcntlArg::F_SETFL(OFlag::from_bits_truncate(flags) | OFlag::O_NONBLOCK),
        );
    }
}

/// Binds the control socket in the container's state directory.
fn listen_socket(dir: &StateDir, id: &str) -> Result<OwnedFd, Errno> {
    let cdir = dir.container_dir(id).map_err(|_| Errno::EINVAL)?;
    let dfd = nix::fcntl::open(
        &cdir,
        nix::fcntl::OFlag::O_PATH | nix::fcntl::OFlag::O_DIRECTORY | nix::fcntl::OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )?;
    let path = format!("/proc/self/fd/{}/{}", dfd.as_raw_fd(), state::MONITOR_SOCKET);
    let _ = std::fs::remove_file(&path);
    let fd = socket(AddressFamily::Unix, SockType::SeqPacket, SockFlag::SOCK_CLOEXEC, None)?;
    bind(fd.as_raw_fd(), &UnixAddr::new(path.as_str())?)?;
    listen(&fd, Backlog::new(16)?)?;
    set_nonblocking(fd.as_fd());
    Ok(fd)
}

/// Points the monitor's own 0/1/2 away from the caller: /dev/null, and
/// stderr to `monitor.log` in the container's directory.
fn redirect_own_stdio(dir: &StateDir, id: &str) {
    use nix::fcntl::{open, OFlag};
    use nix::sys::stat::Mode;
    let null = open("/dev/null", OFlag::O_RDWR | OFlag::O_CLOEXEC, Mode::empty());
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

/// Sends `master` over the unix stream socket at `path` (runc's
/// `--console-socket` contract).
fn send_console(path: &std::path::Path, master: &OwnedFd) -> Result<(), Errno> {
    use nix::sys::socket::{connect, sendmsg, ControlMessage};
    let fd = socket(AddressFamily::Unix, SockType::Stream, SockFlag::SOCK_CLOEXEC, None)?;
    connect(fd.as_raw_fd(), &UnixAddr::new(path)?)?;
    let fds = [master.as_raw_fd()];
    let name = b"/dev/ptmx";
    sendmsg::<()>(
        fd.as_raw_fd(),
        &[std::io::IoSlice::new(name)],
        &[ControlMessage::ScmRights(&fds)],
        MsgFlags::empty(),
        None,
    )?;
    Ok(())
}
