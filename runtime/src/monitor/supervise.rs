//! The monitor's supervisor: the long-lived half of the monitor, run by
//! the small `berth-monitor` binary after the setup hands over (see
//! [`super::handoff`]), or in-process when that binary is missing.
//!
//! A `poll(2)` loop, no async runtime, no serde, no tracing:
//!
//! - `SIGCHLD` (signalfd): reap every child (reparented orphans included);
//!   when the init has exited, wait until the cgroup holds no process,
//!   drain the output, record the exit durably (`exit.json`), answer
//!   waiters, remove the socket and return.
//! - the container's stdout/stderr pipes or pty master: copy to the CRI log
//!   ([`LogWriter`]) and to attached clients.
//! - the control socket ([`super::protocol`]): start, wait, attach, resize,
//!   log reopen.
//!
//! Its own warnings go to stderr, which the setup pointed at `monitor.log`.

use std::io::Write;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{SigSet, SigmaskHow, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::socket::{accept4, recv, send, MsgFlags, SockFlag};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

use super::handoff::Handoff;
use super::protocol::{self, Request, Response};
use super::record;
use crate::channel::ParentEnd;
use crate::logs::{LogWriter, Stream};
use crate::state::{ExitRecord, MONITOR_SOCKET};

/// While the init is gone but other processes of its cgroup are not, the
/// cgroup is re-checked this often.
const CGROUP_RECHECK_MS: u16 = 100;

struct Client {
    fd: OwnedFd,
    attached: bool,
    waiting: bool,
}

/// The supervisor's state; see the module doc.
pub struct Supervisor {
    id: String,
    container_dir: PathBuf,
    init_pid: Pid,
    listener: OwnedFd,
    stdin: Option<OwnedFd>,
    master: Option<OwnedFd>,
    cgroup: Option<PathBuf>,
    oom: Option<PathBuf>,
    chan: Option<ParentEnd>,
    outputs: [Option<OwnedFd>; 2],
    log: Option<LogWriter>,
    clients: Vec<Client>,
    sigfd: SignalFd,
    init_status: Option<WaitStatus>,
}

/// Writes one line to the monitor's own log (its stderr).
fn warn(id: &str, what: &str, detail: &dyn std::fmt::Display) {
    let _ = writeln!(
        std::io::stderr(),
        "{} container {id}: {what}: {detail}",
        crate::logs::now_rfc3339_nano()
    );
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

/// Whether `dir/cgroup.procs`, or that of any cgroup below, lists a
/// process. A cgroup that cannot be read counts as empty (it is gone).
pub fn cgroup_has_processes(dir: &Path) -> bool {
    match std::fs::read(dir.join("cgroup.procs")) {
        Ok(procs) if procs.iter().any(u8::is_ascii_digit) => return true,
        Ok(_) => {}
        Err(_) => return false,
    }
    std::fs::read_dir(dir).is_ok_and(|entries| {
        entries
            .flatten()
            .any(|e| e.file_type().is_ok_and(|t| t.is_dir()) && cgroup_has_processes(&e.path()))
    })
}

/// The `oom_kill` counter in `memory.oom_control` (v1) or `memory.events`
/// (v2); absent or unreadable counts as none.
pub fn oom_kills(file: &Path) -> u64 {
    std::fs::read_to_string(file)
        .ok()
        .and_then(|text| {
            text.lines()
                .find_map(|l| l.strip_prefix("oom_kill ").and_then(|n| n.trim().parse().ok()))
        })
        .unwrap_or(0)
}

impl Supervisor {
    /// Takes over from the setup. Fails only when the signalfd cannot be
    /// made (then nothing could ever be reaped).
    pub fn new(h: Handoff) -> Result<Supervisor, Errno> {
        // Kept across execve by the setup, but a re-exec'd binary sets both
        // again rather than rely on it.
        nix::sys::prctl::set_child_subreaper(true)?;
        let mut chld = SigSet::empty();
        chld.add(Signal::SIGCHLD);
        nix::sys::signal::sigprocmask(SigmaskHow::SIG_BLOCK, Some(&chld), None)?;
        let sigfd = SignalFd::with_flags(&chld, SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC)?;
        let log = h.log.as_ref().and_then(|p| match LogWriter::open(p) {
            Ok(l) => Some(l),
            Err(e) => {
                warn(&h.id, "CRI log", &e);
                None
            }
        });
        let outputs = [h.stdout, h.stderr];
        for fd in outputs.iter().flatten() {
            set_nonblocking(fd.as_fd());
        }
        set_nonblocking(h.listener.as_fd());
        Ok(Supervisor {
            id: h.id,
            container_dir: h.container_dir,
            init_pid: Pid::from_raw(h.init_pid),
            listener: h.listener,
            stdin: h.stdin,
            master: h.master,
            cgroup: h.cgroup,
            oom: h.oom,
            chan: Some(ParentEnd::from_fd(h.chan)),
            outputs,
            log,
            clients: Vec::new(),
            sigfd,
            init_status: None,
        })
    }

    /// Supervises until every process of the container is gone and the
    /// exit is recorded.
    pub fn run(mut self) {
        // Children may have exited before we took over.
        self.reap();
        let mut buf = vec![0u8; protocol::MAX_PACKET];
        loop {
            if self.init_status.is_some() && self.cgroup_empty() {
                self.finish(&mut buf);
                return;
            }
            let timeout = match self.init_status {
                Some(_) => PollTimeout::from(CGROUP_RECHECK_MS),
                None => PollTimeout::NONE,
            };
            let (ready, out_slots) = {
                let mut fds: Vec<PollFd<'_>> = Vec::with_capacity(4 + self.clients.len());
                fds.push(PollFd::new(self.sigfd.as_fd(), PollFlags::POLLIN));
                fds.push(PollFd::new(self.listener.as_fd(), PollFlags::POLLIN));
                let mut out_slots = Vec::with_capacity(2);
                for (i, o) in self.outputs.iter().enumerate() {
                    if let Some(fd) = o {
                        fds.push(PollFd::new(fd.as_fd(), PollFlags::POLLIN));
                        out_slots.push(i);
                    }
                }
                for c in &self.clients {
                    fds.push(PollFd::new(c.fd.as_fd(), PollFlags::POLLIN));
                }
                match poll(&mut fds, timeout) {
                    Ok(_) => {}
                    Err(Errno::EINTR) => continue,
                    Err(e) => {
                        warn(&self.id, "poll", &e);
                        return;
                    }
                }
                let ready: Vec<bool> = fds.iter().map(|f| f.revents().is_some_and(|r| !r.is_empty())).collect();
                (ready, out_slots)
            };
            if ready[0] {
                while let Ok(Some(_)) = self.sigfd.read_signal() {}
                self.reap();
            }
            if ready[1] {
                self.accept();
            }
            for (k, &slot) in out_slots.iter().enumerate() {
                if ready[2 + k] {
                    self.pump(slot, &mut buf);
                }
            }
            let first_client = 2 + out_slots.len();
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
        let init = self.init_pid;
        loop {
            match waitpid(None::<Pid>, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::StillAlive) | Err(_) => return,
                Ok(status) => {
                    if status.pid() == Some(init) {
                        self.init_status = Some(status);
                    }
                }
            }
        }
    }

    fn cgroup_empty(&self) -> bool {
        self.cgroup.as_deref().is_none_or(|d| !cgroup_has_processes(d))
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

    /// Copies available output of `slot` to the log and attached clients;
    /// false when there was nothing (or the stream ended).
    fn pump(&mut self, slot: usize, buf: &mut [u8]) -> bool {
        let Some(fd) = &self.outputs[slot] else { return false };
        let stream = if slot == 0 { Stream::Stdout } else { Stream::Stderr };
        let n = match nix::unistd::read(fd.as_fd(), &mut buf[1..]) {
            Ok(0) | Err(Errno::EIO) => {
                self.outputs[slot] = None;
                if let Some(log) = &mut self.log {
                    let _ = log.flush_stream(stream);
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
        if let Some(log) = &mut self.log {
            if let Err(e) = log.write(stream, &buf[1..=n]) {
                warn(&self.id, "CRI log write", &e);
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
            }
            protocol::TAG_STDIN_CLOSE => self.stdin = None,
            protocol::TAG_CONTROL => {
                let resp = match Request::parse(&buf[1..n]) {
                    Ok(req) => self.handle(i, req),
                    Err(e) => Some(Response::Error(e.to_string())),
                };
                if let Some(r) = resp {
                    let _ = send(self.clients[i].fd.as_raw_fd(), &r.packet(), MsgFlags::MSG_NOSIGNAL);
                }
            }
            _ => {}
        }
        true
    }

    fn handle(&mut self, i: usize, req: Request) -> Option<Response> {
        let id = &self.id;
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
                None => Response::Error(format!("container {id} has no terminal")),
            },
            Request::ReopenLog => match &mut self.log {
                Some(log) => match log.reopen() {
                    Ok(()) => Response::Ok,
                    Err(e) => Response::Error(e.to_string()),
                },
                None => Response::Error(format!("container {id} has no log file")),
            },
        })
    }

    /// Releases the init and waits until it has called execve.
    fn start(&mut self) -> Result<(), String> {
        let id = &self.id;
        let Some(chan) = self.chan.take() else {
            return Err(format!("container {id} was already started"));
        };
        if self.init_status.is_some() {
            return Err(format!("container {id} has already exited"));
        }
        chan.start().map_err(|e| format!("container {id}: {e}"))?;
        let exec = chan.wait_exec();
        record::write_started(&self.container_dir, &crate::logs::now_rfc3339_nano())
            .map_err(|e| format!("container {id}: {e}"))?;
        exec.map_err(|e| format!("container {id}: exec failed: {e}"))
    }

    /// Records the exit and answers waiters. Called once every process of
    /// the container is gone.
    fn finish(&mut self, buf: &mut [u8]) {
        // Drain what the pipes still hold (nonblocking).
        for slot in 0..2 {
            while self.pump(slot, buf) {}
        }
        if let Some(log) = &mut self.log {
            let _ = log.flush();
        }
        let (exit_code, signal) = match self.init_status {
            Some(WaitStatus::Exited(_, code)) => (code, None),
            Some(WaitStatus::Signaled(_, sig, _)) => (128 + sig as i32, Some(sig as i32)),
            _ => (255, None),
        };
        let record = ExitRecord {
            exit_code,
            signal,
            exited_at: crate::logs::now_rfc3339_nano(),
            oom_killed: self.oom.as_deref().is_some_and(|f| oom_kills(f) > 0),
            error: None,
        };
        if let Err(e) = record::write_exit(&self.container_dir, &record) {
            warn(&self.id, "cannot record exit", &e);
        }
        let reply = Response::Exited(record).packet();
        for c in self.clients.iter().filter(|c| c.waiting) {
            let _ = send(c.fd.as_raw_fd(), &reply, MsgFlags::MSG_NOSIGNAL);
        }
        let _ = std::fs::remove_file(self.container_dir.join(MONITOR_SOCKET));
    }
}

/// Supervises `h` to the end; the monitor exits after this.
pub fn supervise(h: Handoff) {
    let id = h.id.clone();
    match Supervisor::new(h) {
        Ok(s) => s.run(),
        Err(e) => warn(&id, "cannot supervise", &e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cgroup_emptiness_looks_into_child_cgroups() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        std::fs::write(root.join("cgroup.procs"), "").unwrap();
        std::fs::create_dir_all(root.join("sub/deeper")).unwrap();
        std::fs::write(root.join("sub/cgroup.procs"), "").unwrap();
        std::fs::write(root.join("sub/deeper/cgroup.procs"), "").unwrap();
        assert!(!cgroup_has_processes(root));
        std::fs::write(root.join("sub/deeper/cgroup.procs"), "123\n").unwrap();
        assert!(cgroup_has_processes(root));
        std::fs::write(root.join("cgroup.procs"), "7\n").unwrap();
        assert!(cgroup_has_processes(root));
        assert!(!cgroup_has_processes(&root.join("gone")));
    }

    #[test]
    fn oom_counter_is_read_from_v1_and_v2_files() {
        let tmp = tempfile::tempdir().unwrap();
        let v1 = tmp.path().join("memory.oom_control");
        std::fs::write(&v1, "oom_kill_disable 0\nunder_oom 0\noom_kill 2\n").unwrap();
        assert_eq!(oom_kills(&v1), 2);
        let v2 = tmp.path().join("memory.events");
        std::fs::write(&v2, "low 0\nhigh 0\nmax 4\noom 1\noom_kill 0\noom_group_kill 0\n").unwrap();
        assert_eq!(oom_kills(&v2), 0);
        assert_eq!(oom_kills(&tmp.path().join("missing")), 0);
    }
}
