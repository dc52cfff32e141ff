//! The hand-over from the monitor's setup (in `berth-runtime`, with the
//! whole engine linked in) to its supervisor (`berth-monitor`, small): the
//! setup process `execve`s the supervisor binary, so the pid, the children,
//! the subreaper flag and the blocked `SIGCHLD` stay; what it passes is a
//! list of inherited descriptors and paths on the command line:
//!
//! ```text
//! berth-monitor --id ID --dir CONTAINER_DIR --init PID --chan FD --listener FD
//!               [--stdout FD] [--stderr FD] [--stdin FD] [--master FD]
//!               [--log CRI_LOG] [--cgroup DIR] [--oom FILE]
//! ```
//!
//! `--cgroup` is a cgroup directory whose `cgroup.procs` (recursively) lists
//! the container's processes; `--oom` a file with an `oom_kill N` line
//! (`memory.oom_control` on v1, `memory.events` on v2).

use std::ffi::{CString, OsStr, OsString};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// Name of the supervisor binary, looked up next to the running executable.
pub const MONITOR_BINARY: &str = "berth-monitor";
/// Environment variable naming the supervisor binary explicitly.
pub const MONITOR_BINARY_ENV: &str = "BERTH_MONITOR_BINARY";

/// Errors of the hand-over.
#[derive(Debug, thiserror::Error)]
pub enum HandoffError {
    #[error("monitor arguments: {0}")]
    Args(String),
    #[error("monitor argument {flag}: descriptor {fd} is not open")]
    BadFd { flag: &'static str, fd: RawFd },
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

/// Descriptor flags, in [`Handoff`] field order.
const FD_FLAGS: [&str; 6] = ["--chan", "--listener", "--stdout", "--stderr", "--stdin", "--master"];
/// Path flags, in [`Handoff`] field order.
const PATH_FLAGS: [&str; 3] = ["--log", "--cgroup", "--oom"];

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

    /// The command line (after argv[0]) describing this hand-over.
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
        args
    }

    /// Parses the command line a supervisor was started with.
    ///
    /// # Safety
    /// Every descriptor number on the command line must be open and owned by
    /// nothing else in this process (the setup passed it across `execve`).
    pub unsafe fn from_args(args: impl IntoIterator<Item = OsString>) -> Result<Handoff, HandoffError> {
        let mut id = None;
        let mut dir = None;
        let mut init = None;
        let mut fds: [Option<OwnedFd>; 6] = Default::default();
        let mut paths: [Option<PathBuf>; 3] = Default::default();
        let mut it = args.into_iter();
        while let Some(flag) = it.next() {
            let name = flag.to_str().unwrap_or_default();
            let value = it
                .next()
                .ok_or_else(|| HandoffError::Args(format!("{} needs a value", flag.to_string_lossy())))?;
            if let Some(slot) = FD_FLAGS.iter().position(|f| *f == name) {
                let flag = FD_FLAGS[slot];
                let raw = parse_num(&value, flag)?;
                // SAFETY: only probed with F_GETFD; ownership is taken below.
                let probe = unsafe { std::os::fd::BorrowedFd::borrow_raw(raw) };
                if raw < 0 || nix::fcntl::fcntl(probe, nix::fcntl::FcntlArg::F_GETFD).is_err() {
                    return Err(HandoffError::BadFd { flag, fd: raw });
                }
                // SAFETY: the caller guarantees `raw` is open and ours.
                fds[slot] = Some(unsafe { OwnedFd::from_raw_fd(raw) });
            } else if let Some(slot) = PATH_FLAGS.iter().position(|f| *f == name) {
                paths[slot] = Some(PathBuf::from(value));
            } else {
                match name {
                    "--id" => id = Some(value.to_string_lossy().into_owned()),
                    "--dir" => dir = Some(PathBuf::from(value)),
                    "--init" => init = Some(parse_num(&value, "--init")?),
                    _ => return Err(HandoffError::Args(format!("unknown flag {}", flag.to_string_lossy()))),
                }
            }
        }
        let missing = |what: &str| HandoffError::Args(format!("{what} is required"));
        let [chan, listener, stdout, stderr, stdin, master] = fds;
        let [log, cgroup, oom] = paths;
        Ok(Handoff {
            id: id.ok_or_else(|| missing("--id"))?,
            container_dir: dir.ok_or_else(|| missing("--dir"))?,
            init_pid: init.ok_or_else(|| missing("--init"))?,
            chan: chan.ok_or_else(|| missing("--chan"))?,
            listener: listener.ok_or_else(|| missing("--listener"))?,
            stdout,
            stderr,
            stdin,
            master,
            log,
            cgroup,
            oom,
        })
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
            .map(|a| CString::new(a.as_bytes()).ok())
            .collect();
        let Some(argv) = argv else {
            return exec_err(nix::errno::Errno::EINVAL);
        };
        match nix::unistd::execv(&argv[0], &argv) {
            Ok(never) => match never {},
            Err(e) => exec_err(e),
        }
    }
}

fn parse_num(value: &OsStr, flag: &str) -> Result<i32, HandoffError> {
    value
        .to_str()
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| HandoffError::Args(format!("{flag}: not a number: {}", value.to_string_lossy())))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn devnull() -> OwnedFd {
        std::fs::File::open("/dev/null").unwrap().into()
    }

    #[test]
    fn args_roundtrip_and_descriptors_change_hands() {
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
        };
        let args = h.to_args();
        let raw: Vec<RawFd> = h.fds().into_iter().flatten().map(AsRawFd::as_raw_fd).collect();
        // Release the descriptors, as execve would, so `from_args` owns them.
        let Handoff {
            chan,
            listener,
            stdout,
            master,
            ..
        } = h;
        for fd in [Some(chan), Some(listener), stdout, master].into_iter().flatten() {
            let _released = std::os::fd::IntoRawFd::into_raw_fd(fd);
        }
        // SAFETY: the numbers on the command line were just released above.
        let back = unsafe { Handoff::from_args(args) }.unwrap();
        let back_raw: Vec<RawFd> = back.fds().into_iter().flatten().map(AsRawFd::as_raw_fd).collect();
        assert_eq!(back_raw, raw);
        assert_eq!(back.id, "c1");
        assert_eq!(back.init_pid, 42);
        assert_eq!(back.container_dir, Path::new("/run/berth/c1"));
        assert!(back.stdout.is_some() && back.master.is_some() && back.stderr.is_none() && back.stdin.is_none());
        assert_eq!(back.log.as_deref(), Some(Path::new("/var/log/pods/p/c/0.log")));
        assert_eq!(back.cgroup.as_deref(), Some(Path::new("/sys/fs/cgroup/pids/berth/c1")));
        assert_eq!(back.oom, None);
    }

    #[test]
    fn bad_command_lines_are_refused() {
        let args = |v: &[&str]| v.iter().map(OsString::from).collect::<Vec<_>>();
        // SAFETY: no descriptor in these command lines is ever adopted
        // (they fail before or at the F_GETFD probe of an unused number).
        unsafe {
            assert!(matches!(
                Handoff::from_args(args(&["--id"])),
                Err(HandoffError::Args(_))
            ));
            assert!(matches!(
                Handoff::from_args(args(&["--bogus", "1"])),
                Err(HandoffError::Args(_))
            ));
            assert!(matches!(
                Handoff::from_args(args(&["--id", "c", "--dir", "/x", "--init", "1"])),
                Err(HandoffError::Args(_))
            ));
            assert!(matches!(
                Handoff::from_args(args(&["--chan", "100000"])),
                Err(HandoffError::BadFd {
                    flag: "--chan",
                    fd: 100000
                })
            ));
        }
    }
}
