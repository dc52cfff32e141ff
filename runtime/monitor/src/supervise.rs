//! The supervisor loop: one `ppoll(2)` over
//!
//! - a signalfd for `SIGCHLD`: reap every child (reparented orphans too);
//!   once the init has exited, wait until the cgroup holds no process,
//!   drain the output, record the exit durably (`exit.json`), answer
//!   waiters, remove the socket and return;
//! - the container's stdout/stderr pipes or pty master: copy to the CRI log
//!   and to attached clients;
//! - the control socket ([`crate::protocol`]): start, wait, attach, resize,
//!   log reopen; at most [`MAX_CLIENTS`] connections at once (more wait in
//!   the listen backlog).
//!
//! Its own warnings go to stderr, which the setup pointed at `monitor.log`.

use core::ffi::CStr;

use crate::args::Config;
use crate::buf::Buf;
use crate::cgroup;
use crate::log::{LogWriter, Stream};
use crate::protocol::{self, Request};
use crate::record::{self, Exit};
use crate::sys::{self, ChildStatus, Errno, Fd, Pages};
use crate::time;

/// While the init is gone but other processes of its cgroup are not, the
/// cgroup is re-checked this often.
const CGROUP_RECHECK_MS: u32 = 100;

/// Control connections served at once.
pub const MAX_CLIENTS: usize = 64;

/// Output drained after the last process is gone is bounded by this many
/// reads (a writer outside the cgroup could otherwise keep us forever).
const MAX_FINAL_READS: usize = 1024;

/// Setup channel tags the monitor reads (see `berth_runtime::channel`).
const CHAN_START: u8 = 6;
const CHAN_EXEC_FAILED: u8 = 7;
const CHAN_ERROR: u8 = 8;

type Reply = Buf<512>;

struct Client {
    fd: Fd,
    attached: bool,
    waiting: bool,
}

/// Writes one line to the monitor's own log (its stderr).
fn warn(id: &CStr, what: &str, errno: Errno) {
    let mut line = Buf::<512>::new();
    line.push(time::now().as_bytes())
        .push(b" container ")
        .push(id.to_bytes());
    line.push(b": ")
        .push(what.as_bytes())
        .push(b": errno ")
        .push_i64(errno.0.into());
    line.push(b"\n");
    let _ = sys::write(2, line.as_bytes());
}

fn error_reply(id: &CStr, what: &[u8], detail: &[u8]) -> Reply {
    let mut r = Reply::new();
    r.push(&[protocol::TAG_CONTROL])
        .push(b"error container ")
        .push(id.to_bytes());
    r.push(what).push(detail);
    r
}

fn ok_reply() -> Reply {
    let mut r = Reply::new();
    r.push(&[protocol::TAG_CONTROL]).push(b"ok");
    r
}

fn errno_text(e: Errno) -> Buf<24> {
    let mut b = Buf::new();
    b.push(b"errno ").push_i64(e.0.into());
    b
}

/// The supervisor's state; see the module doc.
pub struct Supervisor<'a> {
    id: &'a CStr,
    dir: Option<Fd>,
    init_pid: i32,
    listener: Fd,
    stdin: Option<Fd>,
    master: Option<Fd>,
    cgroup: Option<&'a CStr>,
    oom: Option<&'a CStr>,
    chan: Option<Fd>,
    outputs: [Option<Fd>; 2],
    log: Option<LogWriter<'a>>,
    clients: [Option<Client>; MAX_CLIENTS],
    sigfd: Fd,
    init_status: Option<ChildStatus>,
    stdin_once: bool,
    /// One packet: output read for the log and clients, or a request.
    buf: Pages,
}

/// Takes ownership of an optional descriptor.
///
/// # Safety
/// As [`Fd::from_raw`].
unsafe fn own(fd: Option<i32>) -> Option<Fd> {
    // SAFETY: forwarded to the caller.
    fd.map(|fd| unsafe { Fd::from_raw(fd) })
}

impl<'a> Supervisor<'a> {
    /// Takes over from the setup. Fails only when nothing could ever be
    /// reaped or read (no subreaper, signalfd or buffer).
    ///
    /// # Safety
    /// Every descriptor in `cfg` must be open and owned by nothing else in
    /// this process; the supervisor closes them.
    pub unsafe fn new(cfg: Config<'a>) -> Result<Self, Errno> {
        // SAFETY: the caller hands these descriptors over (contract above).
        let (listener, chan) = unsafe { (Fd::from_raw(cfg.listener), Fd::from_raw(cfg.chan)) };
        // SAFETY: as above.
        let (stdout, stderr, stdin, master) =
            unsafe { (own(cfg.stdout), own(cfg.stderr), own(cfg.stdin), own(cfg.master)) };
        // Kept across execve by the setup, but set again rather than relied on.
        sys::set_child_subreaper()?;
        // A container that closed its stdin, or a client gone mid-send,
        // must give EPIPE, never kill the monitor (SIG_IGN is usually
        // inherited across the setup's execve; not relied on).
        sys::ignore_signal(libc::SIGPIPE)?;
        let sigfd = sys::block_into_signalfd(libc::SIGCHLD)?;
        let buf = Pages::new(protocol::MAX_PACKET)?;
        let dir = sys::openat(sys::AT_FDCWD, cfg.dir, libc::O_RDONLY | libc::O_DIRECTORY, 0)
            .map_err(|e| warn(cfg.id, "open state directory", e))
            .ok();
        let log = cfg
            .log
            .and_then(|p| LogWriter::open(p).map_err(|e| warn(cfg.id, "open CRI log", e)).ok());
        let outputs = [stdout, stderr];
        // A stuck reader of stdin must never stall the loop: writes to it
        // are nonblocking too.
        for fd in outputs.iter().chain([&stdin]).flatten().chain([&listener]) {
            let _ = sys::set_nonblocking(fd.raw());
        }
        Ok(Supervisor {
            id: cfg.id,
            dir,
            init_pid: cfg.init_pid,
            listener,
            stdin,
            master,
            cgroup: cfg.cgroup,
            oom: cfg.oom,
            chan: Some(chan),
            outputs,
            log,
            clients: core::array::from_fn(|_| None),
            sigfd,
            init_status: None,
            stdin_once: cfg.stdin_once,
            buf,
        })
    }

    /// Supervises until every process of the container is gone and the
    /// exit is recorded.
    pub fn run(mut self) {
        // Children may have exited before we took over.
        self.reap();
        loop {
            if self.init_status.is_some() && self.cgroup_empty() {
                self.finish();
                return;
            }
            let idle = libc::pollfd {
                fd: -1,
                events: 0,
                revents: 0,
            };
            let watch = |fd: Option<&Fd>| libc::pollfd {
                fd: fd.map_or(-1, Fd::raw),
                events: libc::POLLIN,
                revents: 0,
            };
            let mut fds = [idle; 4 + MAX_CLIENTS];
            fds[0] = watch(Some(&self.sigfd));
            let room = self.clients.iter().any(Option::is_none);
            fds[1] = watch(room.then_some(&self.listener));
            fds[2] = watch(self.outputs[0].as_ref());
            fds[3] = watch(self.outputs[1].as_ref());
            for (slot, c) in fds[4..].iter_mut().zip(&self.clients) {
                *slot = watch(c.as_ref().map(|c| &c.fd));
            }
            let timeout = self.init_status.map(|_| CGROUP_RECHECK_MS);
            match sys::poll(&mut fds, timeout) {
                Ok(_) => {}
                Err(Errno::EINTR) => continue,
                Err(e) => {
                    warn(self.id, "poll", e);
                    return;
                }
            }
            let ready = |i: usize| fds[i].revents != 0;
            if ready(0) {
                let mut info = [0u8; 128];
                while sys::read(self.sigfd.raw(), &mut info).is_ok() {}
                self.reap();
            }
            if ready(1) {
                self.accept();
            }
            for slot in 0..2 {
                if ready(2 + slot) {
                    self.pump(slot);
                }
            }
            for i in 0..MAX_CLIENTS {
                if ready(4 + i) && !self.serve(i) {
                    self.disconnect(i);
                }
            }
        }
    }

    fn reap(&mut self) {
        while let Ok(Some((pid, status))) = sys::reap_any() {
            if pid == self.init_pid {
                self.init_status = Some(status);
            }
        }
    }

    fn cgroup_empty(&self) -> bool {
        self.cgroup.is_none_or(|d| !cgroup::has_processes(d))
    }

    fn accept(&mut self) {
        let Some(slot) = self.clients.iter_mut().find(|c| c.is_none()) else {
            return;
        };
        if let Ok(fd) = sys::accept(self.listener.raw()) {
            *slot = Some(Client {
                fd,
                attached: false,
                waiting: false,
            });
        }
    }

    fn disconnect(&mut self, i: usize) {
        if let Some(c) = self.clients[i].take() {
            if c.attached && self.stdin_once {
                self.stdin = None;
            }
        }
    }

    /// Copies available output of `slot` to the log and attached clients;
    /// false when there was nothing (or the stream ended).
    fn pump(&mut self, slot: usize) -> bool {
        let Some(fd) = self.outputs[slot].as_ref().map(Fd::raw) else {
            return false;
        };
        let (stream, tag) = match slot {
            0 => (Stream::Stdout, protocol::TAG_STDOUT),
            _ => (Stream::Stderr, protocol::TAG_STDERR),
        };
        let n = match sys::read(fd, &mut self.buf[1..]) {
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
            if let Err(e) = log.write(stream, &self.buf[1..=n]) {
                warn(self.id, "CRI log write", e);
            }
        }
        self.buf[0] = tag;
        for c in self.clients.iter().flatten().filter(|c| c.attached) {
            let _ = sys::send(c.fd.raw(), &self.buf[..=n], sys::MSG_NOSIGNAL | sys::MSG_DONTWAIT);
        }
        true
    }

    /// Handles one packet from client `i`; false when it disconnected.
    fn serve(&mut self, i: usize) -> bool {
        let Some(fd) = self.clients[i].as_ref().map(|c| c.fd.raw()) else {
            return true;
        };
        let n = match sys::recv(fd, &mut self.buf, sys::MSG_DONTWAIT) {
            Ok(0) => return false,
            Ok(n) => n,
            Err(Errno::EAGAIN) | Err(Errno::EINTR) => return true,
            Err(_) => return false,
        };
        match self.buf[0] {
            protocol::TAG_STDIN => {
                if let Some(target) = self.stdin.as_ref().or(self.master.as_ref()) {
                    if let Err(e) = write_some(target.raw(), &self.buf[1..n]) {
                        warn(self.id, "stdin write", e);
                    }
                }
            }
            protocol::TAG_STDIN_CLOSE => self.stdin = None,
            protocol::TAG_CONTROL => {
                let reply = match Request::parse(&self.buf[1..n]) {
                    Ok(req) => self.handle(i, req),
                    Err(why) => Some(error_reply(self.id, b": bad control message: ", why.as_bytes())),
                };
                if let Some(r) = reply {
                    let _ = sys::send(fd, r.as_bytes(), sys::MSG_NOSIGNAL);
                }
            }
            _ => {}
        }
        true
    }

    fn handle(&mut self, i: usize, req: Request) -> Option<Reply> {
        let ok = ok_reply;
        let client = self.clients[i].as_mut()?;
        Some(match req {
            Request::Start => self.start(),
            Request::Wait => {
                client.waiting = true;
                return None;
            }
            Request::Attach => {
                client.attached = true;
                ok()
            }
            Request::Resize { rows, cols } => match &self.master {
                Some(m) => match sys::set_winsize(m.raw(), rows, cols) {
                    Ok(()) => ok(),
                    Err(e) => error_reply(self.id, b": resize: ", errno_text(e).as_bytes()),
                },
                None => error_reply(self.id, b" has no terminal", b""),
            },
            Request::ReopenLog => match &mut self.log {
                Some(log) => match log.reopen() {
                    Ok(()) => ok(),
                    Err(e) => error_reply(self.id, b": reopen log: ", errno_text(e).as_bytes()),
                },
                None => error_reply(self.id, b" has no log file", b""),
            },
        })
    }

    /// Releases the init and waits until it has called execve; the reply
    /// is `ok` or the error.
    fn start(&mut self) -> Reply {
        let id = self.id;
        let Some(chan) = self.chan.take() else {
            return error_reply(id, b" was already started", b"");
        };
        if self.init_status.is_some() {
            return error_reply(id, b" has already exited", b"");
        }
        if let Err(e) = sys::send(chan.raw(), &[CHAN_START], sys::MSG_NOSIGNAL) {
            return error_reply(id, b": channel: ", errno_text(e).as_bytes());
        }
        // The init's end is close-on-exec: EOF means it has exec'd.
        let exec = loop {
            match sys::recv(chan.raw(), &mut self.buf, 0) {
                Err(Errno::EINTR) => continue,
                Err(e) => break error_reply(id, b": channel: ", errno_text(e).as_bytes()),
                Ok(0) => break ok_reply(),
                Ok(n) => match self.buf[0] {
                    CHAN_EXEC_FAILED | CHAN_ERROR => break error_reply(id, b": exec failed: ", &self.buf[1..n]),
                    _ => break error_reply(id, b": channel: unexpected message waiting for exec", b""),
                },
            }
        };
        let started = match &self.dir {
            Some(d) => record::write_atomic(d.raw(), record::STARTED_FILE, time::now().as_bytes(), false),
            None => Err(Errno::EINVAL),
        };
        match started {
            Ok(()) => exec,
            Err(e) => error_reply(id, b": write started: ", errno_text(e).as_bytes()),
        }
    }

    /// Records the exit and answers waiters. Called once every process of
    /// the container is gone.
    fn finish(&mut self) {
        for slot in 0..2 {
            for _ in 0..MAX_FINAL_READS {
                if !self.pump(slot) {
                    break;
                }
            }
        }
        if let Some(log) = &mut self.log {
            let _ = log.flush();
        }
        let (exit_code, signal) = match self.init_status {
            Some(ChildStatus::Exited(code)) => (code, None),
            Some(ChildStatus::Signaled(sig)) => (128 + sig, Some(sig)),
            _ => (255, None),
        };
        let exit = Exit {
            exit_code,
            signal,
            exited_at: time::now(),
            oom_killed: self.oom.is_some_and(|f| cgroup::oom_kills(f) > 0),
        };
        let json = record::exit_json(&exit);
        let written = match &self.dir {
            Some(d) => record::write_atomic(d.raw(), record::EXIT_FILE, json.as_bytes(), true),
            None => Err(Errno::EINVAL),
        };
        if let Err(e) = written {
            warn(self.id, "cannot record exit", e);
        }
        let mut reply = Buf::<256>::new();
        reply
            .push(&[protocol::TAG_CONTROL])
            .push(b"exited ")
            .push(json.as_bytes());
        for c in self.clients.iter().flatten().filter(|c| c.waiting) {
            let _ = sys::send(c.fd.raw(), reply.as_bytes(), sys::MSG_NOSIGNAL);
        }
        if let Some(d) = &self.dir {
            let _ = sys::unlinkat(d.raw(), record::MONITOR_SOCKET);
        }
    }
}

/// Writes what the (nonblocking) target takes now; the rest is dropped.
fn write_some(fd: i32, mut bytes: &[u8]) -> sys::Result<()> {
    while !bytes.is_empty() {
        match sys::write(fd, bytes) {
            Ok(n) => bytes = &bytes[n..],
            Err(Errno::EINTR) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Supervises `cfg` to the end; returns the monitor's exit status (0, or 1
/// when supervision could not begin).
///
/// # Safety
/// As [`Supervisor::new`].
pub unsafe fn supervise(cfg: Config<'_>) -> i32 {
    let id = cfg.id;
    // SAFETY: forwarded to the caller.
    match unsafe { Supervisor::new(cfg) } {
        Ok(s) => {
            s.run();
            0
        }
        Err(e) => {
            warn(id, "cannot supervise", e);
            1
        }
    }
}
