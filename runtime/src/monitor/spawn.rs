//! The caller's side of starting a monitor: a single-threaded caller (the
//! `berth-runtime` CLI) forks it directly, saving an `execve` of the big
//! runtime binary on the create path; a multi-threaded one (berthd) must
//! not run Rust code after `fork`, so it re-executes the runtime binary as
//! `berth-runtime monitor …` with a sync pipe on fd 3. Either way it waits
//! for the first process (which forks the real monitor and exits at once,
//! so the monitor is nobody's child but a subreaper's or init's), then
//! reads the monitor's one-line JSON report: the init is ready, or why it
//! is not.

use std::io::Read;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use nix::sys::wait::waitpid;
use nix::unistd::ForkResult;
use serde::{Deserialize, Serialize};

use super::MonitorArgs;

/// The fd number the sync pipe has in the monitor.
pub const SYNC_FD: i32 = 3;

/// How the container's stdio is wired.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum StdioMode {
    /// The container inherits the caller's stdin/stdout/stderr (runc's
    /// default for detached `create` and foreground `run`).
    Inherit,
    /// The monitor holds pipes (or the pty master): it writes the CRI log
    /// file when given, serves attach, and feeds stdin when `stdin`; with
    /// `stdin_once`, stdin closes when the first attached client leaves.
    Monitor {
        log_path: Option<PathBuf>,
        stdin: bool,
        #[serde(default)]
        stdin_once: bool,
    },
    /// A terminal whose master is sent to this unix socket (runc's
    /// `--console-socket`).
    ConsoleSocket(PathBuf),
}

/// The monitor's report on the sync pipe.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Report {
    Created { pid: i32 },
    Failed(String),
}

/// Errors starting a monitor.
#[derive(Debug, thiserror::Error)]
pub enum SpawnError {
    #[error("start monitor {exe}: {source}")]
    Exec { exe: PathBuf, source: std::io::Error },
    #[error("monitor sync pipe: {0}")]
    Pipe(nix::errno::Errno),
    #[error("fork monitor: {0}")]
    Fork(nix::errno::Errno),
    #[error("monitor exited without reporting ({0})")]
    NoReport(String),
    #[error("{0}")]
    Failed(String),
}

/// Arguments of the hidden `monitor` subcommand.
#[derive(Debug, Clone)]
pub struct MonitorRequest<'a> {
    pub exe: &'a Path,
    pub root: &'a Path,
    pub id: &'a str,
    pub bundle: &'a Path,
    pub stdio: &'a StdioMode,
}

/// Whether this process has a single thread (then it may fork and go on
/// running Rust code in the child).
fn single_threaded() -> bool {
    std::fs::read_dir("/proc/self/task").is_ok_and(|d| d.count() == 1)
}

/// Starts the monitor and waits for its report; returns the init's pid.
pub fn spawn(req: &MonitorRequest<'_>) -> Result<i32, SpawnError> {
    let (read, write) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(SpawnError::Pipe)?;
    if single_threaded() {
        return fork_monitor(req, read, write);
    }
    let stdio_json = serde_json::to_string(req.stdio).expect("stdio mode serializes");
    let mut cmd = Command::new(req.exe);
    cmd.arg("--root")
        .arg(req.root)
        .arg("monitor")
        .arg("--bundle")
        .arg(req.bundle)
        .arg("--stdio")
        .arg(stdio_json)
        .arg(req.id);
    if *req.stdio != StdioMode::Inherit {
        cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null());
    }
    let write_raw = write.as_raw_fd();
    // SAFETY: the closure runs in the forked child before exec and only
    // calls async-signal-safe dup2/fcntl on descriptors it owns.
    unsafe {
        cmd.pre_exec(move || {
            if write_raw != SYNC_FD && libc::dup2(write_raw, SYNC_FD) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            if libc::fcntl(SYNC_FD, libc::F_SETFD, 0) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let status = cmd.status().map_err(|source| SpawnError::Exec {
        exe: req.exe.to_path_buf(),
        source,
    })?;
    drop(write);
    read_report(read, &status.to_string())
}

/// The single-threaded path: fork, and run the monitor in the child.
fn fork_monitor(req: &MonitorRequest<'_>, read: OwnedFd, write: OwnedFd) -> Result<i32, SpawnError> {
    let args = MonitorArgs {
        root: req.root.to_path_buf(),
        id: req.id.to_string(),
        bundle: req.bundle.to_path_buf(),
        stdio: req.stdio.clone(),
    };
    // SAFETY: this process is single-threaded (checked by the caller), so
    // the child may run Rust code; it never returns from run_with_sync.
    match unsafe { nix::unistd::fork() }.map_err(SpawnError::Fork)? {
        ForkResult::Child => {
            drop(read);
            if *req.stdio != StdioMode::Inherit {
                null_stdio();
            }
            super::run_with_sync(args, write)
        }
        ForkResult::Parent { child } => {
            drop(write);
            let status = loop {
                match waitpid(child, None) {
                    Err(nix::errno::Errno::EINTR) => continue,
                    other => break other,
                }
            };
            read_report(read, &format!("{status:?}"))
        }
    }
}

/// Points 0/1/2 at /dev/null (the container's stdio is the monitor's, not
/// the caller's).
fn null_stdio() {
    if let Ok(null) = std::fs::OpenOptions::new().read(true).write(true).open("/dev/null") {
        for target in 0..3 {
            // SAFETY: dup2 onto the standard descriptors, which no Rust
            // object in the forked child owns.
            unsafe { libc::dup2(null.as_raw_fd(), target) };
        }
    }
}

fn read_report(read: OwnedFd, first_process: &str) -> Result<i32, SpawnError> {
    let mut report = String::new();
    std::fs::File::from(read)
        .read_to_string(&mut report)
        .map_err(|e| SpawnError::NoReport(e.to_string()))?;
    match serde_json::from_str::<Report>(report.trim()) {
        Ok(Report::Created { pid }) => Ok(pid),
        Ok(Report::Failed(e)) => Err(SpawnError::Failed(e)),
        Err(_) => Err(SpawnError::NoReport(format!(
            "first process {first_process}, output {report:?}"
        ))),
    }
}
