//! The per-container monitor, no async runtime. Its life:
//!
//! ```text
//! caller (berth-runtime CLI / berthd)
//!   │ spawn: fork (single-threaded caller) or exec `berth-runtime monitor`
//!   ▼
//! first process ── fork ──▶ monitor (setsid, subreaper)      exits at once, so the
//!                             │ setup: fork the container,    monitor is nobody's
//!                             │ cgroup, id maps, handshake    child but a subreaper's
//!                             │ until the init waits before   or init's
//!                             │ execve; bind monitor.sock;
//!                             │ state.json = created
//!                             │ report "created" on the sync pipe ──▶ caller returns
//!                             ▼
//!                           execve `berth-monitor` (same pid, children, subreaper)
//!                             │ supervise: poll loop — start, attach, resize,
//!                             │ log reopen, CRI log, reap, exit record
//!                             │ (crate `berth_monitor`: no_std, no libc)
//!                             ▼
//!                           exit once every process of the container is gone
//! ```
//!
//! - [`setup`]: the container-making half, in the big `berth-runtime`.
//! - [`handoff`]: what passes across the `execve` (descriptors and paths).
//! - the long-lived half is the `berth_monitor` crate (`runtime/monitor`),
//!   built as the `berth-monitor` binary: a static executable of a few
//!   KiB in release builds; run in-process if that binary is missing.
//! - [`protocol`], [`client`]: the client's side of the control socket.
//! - [`spawn`]: the caller's side of starting a monitor.
//!
//! Nothing here depends on the caller staying alive: berthd (or the CLI)
//! may die at any time; a new caller reads the state directory and connects
//! to the socket.

pub mod client;
pub mod handoff;
pub mod protocol;
pub mod setup;
pub mod spawn;

use std::io::Write;
use std::os::fd::{FromRawFd, OwnedFd};
use std::path::PathBuf;

use nix::errno::Errno;
use nix::unistd::ForkResult;

use crate::channel::ChannelError;
use crate::init;
use crate::state::{self, StateDir};
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
    Cgroup {
        id: String,
        source: crate::container::cgroup::CgroupError,
    },
    #[error("container {id}: open log file {path}: {source}")]
    Log {
        id: String,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("container {id}: {source}")]
    Console {
        id: String,
        source: crate::pty::ConsoleSocketError,
    },
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

/// Runs the monitor as `berth-runtime monitor`, reporting on [`SYNC_FD`].
/// Never returns.
pub fn run(args: MonitorArgs) -> ! {
    // SAFETY: fd 3 was installed by the spawner as our sync pipe and is
    // owned by nothing else in this process.
    let sync = unsafe { OwnedFd::from_raw_fd(SYNC_FD) };
    run_with_sync(args, sync)
}

/// Runs the monitor, reporting on `sync`. Never returns. The calling
/// process must be single-threaded.
pub fn run_with_sync(args: MonitorArgs, sync: OwnedFd) -> ! {
    // SAFETY: the caller is single-threaded (documented contract), so the
    // child may continue normally.
    match unsafe { nix::unistd::fork() } {
        Ok(ForkResult::Parent { .. }) => init::exit(0),
        Ok(ForkResult::Child) => {}
        Err(_) => init::exit(1),
    }
    let _ = nix::unistd::setsid();
    let report = |r: Report| {
        let _ = std::fs::File::from(sync).write_all(serde_json::to_string(&r).expect("report serializes").as_bytes());
    };
    let handoff = match setup::setup(&args) {
        Ok(h) => h,
        Err(e) => {
            report(Report::Failed(e.to_string()));
            init::exit(1)
        }
    };
    setup::redirect_own_stdio(&StateDir::new(&args.root), &args.id);
    report(Report::Created { pid: handoff.init_pid });
    if let Some(exe) = handoff::monitor_binary() {
        let e = handoff.exec(&exe);
        let _ = writeln!(std::io::stderr(), "container {}: {e}; supervising in-process", args.id);
    }
    init::exit(handoff.supervise_in_process())
}
