//! The hand-over from the monitor's setup (in `berth-runtime`, with the
//! whole engine linked in) to its supervisor (the `berth_monitor` crate):
//! the setup process `execve`s the `berth-monitor` binary, so the pid, the
//! children, the subreaper flag and the blocked `SIGCHLD` stay; what it
//! passes is a list of inherited descriptors and paths on the command line
//! ([`berth_monitor::args`] documents it and parses it on the other side).
//! When the binary is missing, the same supervisor runs in this process.

use std::ffi::{CString, OsString};
use std::os::fd::{AsRawFd, IntoRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use berth_monitor::args::{Config, FD_FLAGS, PATH_FLAGS, STDIN_ONCE_FLAG};

/// Name of the supervisor binary, looked up next to the running executable.
pub const MONITOR_BINARY: &str = "berth-monitor";
/// Environment variable naming the supervisor binary explicitly.
pub const MONITOR_BINARY_ENV: &str = "BERTH_MONITOR_BINARY";

/// Errors of the hand-over.
#[derive(Debug, thiserror::Error)]
pub enum HandoffError {
    #[error("exec {exe}: {source}")]
    Exec { exe: PathBuf, source: nix::errno::Errno },
}

/// What the supervisor takes over from the setup.
#[derive(Debug)]
pub struct Handoff {
    pub id: String,
    /// The container's state directory (socket, `started`, `exit.json`).
    pub container_dir: PathBuf,
    pub init_pid: i32,
    /// The parent end of the setup channel: `start` releases the init.
    pub chan: OwnedFd,
    /// The bound, listening control socket.
    pub listener: OwnedFd,
    /// Read ends of the container's stdout and stderr (stdout may be a dup
    /// of the pty master).
    pub stdout: Option<OwnedFd>,
    pub stderr: Option<OwnedFd>,
    /// Write end of the container's stdin pipe.
    pub stdin: Option<OwnedFd>,
    /// The pty master (terminal containers).
    pub master: Option<OwnedFd>,
    /// The CRI log file.
    pub log: Option<PathBuf>,
    pub cgroup: Option<PathBuf>,
    pub oom: Option<PathBuf>,
    /// Close the container's stdin when the first attached client leaves.
    pub stdin_once: bool,
}

/// The supervisor binary: `$BERTH_MONITOR_BINARY`, or `berth-monitor`
/// next to the running executable; `None` when there is none.
pub fn monitor_binary() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os(MONITOR_BINARY_ENV) {
        return Some(PathBuf::from(p));
    }
    let exe = std::env::current_exe().ok()?;
    let candidate = exe.parent()?.join(MONITOR_BINARY);
    candidate.is_file().then_some(candidate)
}

fn clear_cloexec(fd: RawFd) -> Result<(), nix::errno::Errno> {
    use nix::fcntl::{fcntl, FcntlArg, FdFlag};
    // SAFETY: `fd` belongs to a descriptor the Handoff owns and keeps open.
    let fd = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
    fcntl(fd, FcntlArg::F_SETFD(FdFlag::empty())).map(drop)
}

fn cstring(s: impl AsRef<std::ffi::OsStr>) -> Option<CString> {
    CString::new(s.as_ref().as_bytes()).ok()
}

impl Handoff {
    fn fds(&self) -> [Option<&OwnedFd>; 6] {
        [
            Some(&self.chan),
            Some(&self.listener),
            self.stdout.as_ref(),
            self.stderr.as_ref(),
            self.stdin.as_ref(),
            self.master.as_ref(),
        ]
    }

    /// The command line (after argv\[0\]) describing this hand-over.
    pub fn to_args(&self) -> Vec<OsString> {
        let mut args: Vec<OsString> = Vec::new();
        let mut push = |flag: &str, value: OsString| {
            args.push(flag.into());
            args.push(value);
        };
        push("--id", self.id.clone().into());
        push("--dir", self.container_dir.clone().into());
        push("--init", self.init_pid.to_string().into());
        for (flag, fd) in FD_FLAGS.iter().zip(self.fds()) {
            if let Some(fd) = fd {
                push(flag, fd.as_raw_fd().to_string().into());
            }
        }
        for (flag, path) in PATH_FLAGS.iter().zip([&self.log, &self.cgroup, &self.oom]) {
            if let Some(p) = path {
                push(flag, p.clone().into());
            }
        }
        if self.stdin_once {
            args.push(STDIN_ONCE_FLAG.into());
        }
        args
    }

    /// Replaces this process with the supervisor at `exe`. Returns only on
    /// failure, with every descriptor still open (the caller may then
    /// supervise in-process).
    pub fn exec(&self, exe: &Path) -> HandoffError {
        let exec_err = |source| HandoffError::Exec {
            exe: exe.to_path_buf(),
            source,
        };
        for fd in self.fds().into_iter().flatten() {
            if let Err(e) = clear_cloexec(fd.as_raw_fd()) {
                return exec_err(e);
            }
        }
        let argv: Option<Vec<CString>> = std::iter::once(exe.as_os_str().to_owned())
            .chain(self.to_args())
            .map(cstring)
            .collect();
        let Some(argv) = argv else {
            return exec_err(nix::errno::Errno::EINVAL);
        };
        match nix::unistd::execv(&argv[0], &argv) {
            Ok(never) => match never {},
            Err(e) => exec_err(e),
        }
    }

    /// Runs the supervisor in this process (the binary is missing or could
    /// not be exec'd) until the container is gone; returns the exit status
    /// for this process. The process must be single-threaded: the
    /// supervisor blocks SIGCHLD and reaps every child.
    pub fn supervise_in_process(self) -> i32 {
        let paths = [&self.log, &self.cgroup, &self.oom].map(|p| p.as_ref().and_then(cstring));
        let (Some(id), Some(dir)) = (CString::new(self.id.as_str()).ok(), cstring(&self.container_dir)) else {
            return 1;
        };
        let raw = |fd: Option<OwnedFd>| fd.map(IntoRawFd::into_raw_fd);
        let [log, cgroup, oom] = &paths;
        let cfg = Config {
            id: &id,
            dir: &dir,
            init_pid: self.init_pid,
            chan: self.chan.into_raw_fd(),
            listener: self.listener.into_raw_fd(),
            stdout: raw(self.stdout),
            stderr: raw(self.stderr),
            stdin: raw(self.stdin),
            master: raw(self.master),
            log: log.as_deref(),
            cgroup: cgroup.as_deref(),
            oom: oom.as_deref(),
            stdin_once: self.stdin_once,
        };
        // SAFETY: every descriptor in `cfg` was just released from an
        // OwnedFd of this Handoff, so nothing else owns it.
        unsafe { berth_monitor::supervise::supervise(cfg) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn devnull() -> OwnedFd {
        std::fs::File::open("/dev/null").unwrap().into()
    }

    #[test]
    fn the_monitor_parses_what_the_setup_writes() {
        let h = Handoff {
            id: "c1".into(),
            container_dir: "/run/berth/c1".into(),
            init_pid: 42,
            chan: devnull(),
            listener: devnull(),
            stdout: Some(devnull()),
            stderr: None,
            stdin: None,
            master: Some(devnull()),
            log: Some("/var/log/pods/p/c/0.log".into()),
            cgroup: Some("/sys/fs/cgroup/pids/berth/c1".into()),
            oom: None,
            stdin_once: true,
        };
        let args: Vec<CString> = h.to_args().into_iter().map(|a| cstring(a).unwrap()).collect();
        let cfg = berth_monitor::args::parse(args.iter().map(|a| a.as_c_str())).unwrap();
        assert_eq!(cfg.id.to_bytes(), b"c1");
        assert_eq!(cfg.dir.to_bytes(), b"/run/berth/c1");
        assert_eq!(cfg.init_pid, 42);
        let fd = |o: Option<&OwnedFd>| o.map(AsRawFd::as_raw_fd);
        assert_eq!(
            [
                Some(cfg.chan),
                Some(cfg.listener),
                cfg.stdout,
                cfg.stderr,
                cfg.stdin,
                cfg.master
            ],
            h.fds().map(fd)
        );
        assert_eq!(cfg.log.unwrap().to_bytes(), b"/var/log/pods/p/c/0.log");
        assert_eq!(cfg.cgroup.unwrap().to_bytes(), b"/sys/fs/cgroup/pids/berth/c1");
        assert!(cfg.oom.is_none());
        assert!(cfg.stdin_once);
    }
}
