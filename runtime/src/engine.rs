//! The engine's library API: what berthd calls. Every method is blocking
//! (call it from `spawn_blocking`) and safe to call from a multi-threaded
//! process: anything that must fork in a single-threaded process (the
//! monitor, `exec`) runs in a re-executed runtime binary.
//!
//! ```text
//! let engine = Engine::new("/run/berth/containers", "/usr/bin/berth-runtime");
//! engine.create(&CreateOptions { id, bundle, stdio: StdioMode::Monitor {
//!     log_path: Some(log), stdin: false }, pid_file: None,
//!     overlay: Some(OverlayRootfs { lower_dirs, upper_dir, work_dir }) })?;
//! engine.start(id)?;                        // CRI StartContainer
//! engine.state(id)?.status                  // created | running | stopped
//! engine.stop(id, Signal::SIGTERM, timeout)? // SIGTERM, wait, SIGKILL (all)
//! engine.exec_command(id, &process_json)    // a Command to spawn, pipes/pty yours
//! let p = engine.exec_process(id, args)?;   // the container's process, new args
//! engine.exec_sync(id, &p, timeout, cap)?   // CRI ExecSync: captured, capped, timed
//! engine.attach(id)? / resize / reopen_log  // through the monitor socket
//! engine.delete(id, false)?                 // cgroup, overlay, state gone
//! ```
//!
//! Restart recovery: a new engine over the same state root finds every
//! container with [`Engine::list`]; live ones have a live monitor, exits
//! that happened meanwhile are in their exit records.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use nix::sys::signal::Signal;

pub use crate::container::create::{CreateOptions, OverlayRootfs};
pub use crate::container::exec_sync::ExecSyncResult;
use crate::container::query::ContainerState;
use crate::container::{self, ContainerError};
use crate::monitor::client::MonitorConn;
use crate::monitor::protocol::{Request, Response};
pub use crate::monitor::spawn::StdioMode;
use crate::state::{ExitRecord, StateDir, Status};

/// The engine over one state root.
#[derive(Debug, Clone)]
pub struct Engine {
    dir: StateDir,
    runtime_binary: PathBuf,
}

impl Engine {
    /// `state_root` holds one directory per container; `runtime_binary` is
    /// the `berth-runtime` executable (monitor and exec run from it).
    pub fn new(state_root: impl Into<PathBuf>, runtime_binary: impl Into<PathBuf>) -> Engine {
        Engine {
            dir: StateDir::new(state_root),
            runtime_binary: runtime_binary.into(),
        }
    }

    pub fn state_dir(&self) -> &StateDir {
        &self.dir
    }

    /// Sets the container up and leaves its init blocked before execve.
    pub fn create(&self, opts: &CreateOptions) -> Result<ContainerState, ContainerError> {
        container::create::create(&self.dir, &self.runtime_binary, opts)
    }

    /// Releases a created container's init.
    pub fn start(&self, id: &str) -> Result<(), ContainerError> {
        container::start::start(&self.dir, id)
    }

    pub fn state(&self, id: &str) -> Result<ContainerState, ContainerError> {
        container::query::query(&self.dir, id)
    }

    /// Every container under the state root.
    pub fn list(&self) -> Result<Vec<ContainerState>, ContainerError> {
        self.dir
            .list()?
            .iter()
            .map(|id| container::query::query(&self.dir, id))
            .collect()
    }

    /// Signals the init, or with `all` every process of the container.
    pub fn kill(&self, id: &str, signal: Signal, all: bool) -> Result<(), ContainerError> {
        container::kill::kill(&self.dir, id, signal, all)
    }

    /// Waits until the container is stopped and returns its exit record.
    pub fn wait(&self, id: &str) -> Result<ExitRecord, ContainerError> {
        let monitor_err = |source| ContainerError::Monitor {
            id: id.to_string(),
            source,
        };
        loop {
            let c = self.state(id)?;
            if let Some(exit) = c.exit {
                return Ok(exit);
            }
            if c.status == Status::Stopped {
                return Ok(ExitRecord {
                    exit_code: 255,
                    signal: None,
                    exited_at: crate::state::now_rfc3339(),
                    oom_killed: false,
                    error: Some("the monitor died without recording the exit".into()),
                });
            }
            let conn = match MonitorConn::connect(&self.dir.container_dir(id)?) {
                Ok(c) => c,
                Err(_) => {
                    std::thread::sleep(Duration::from_millis(20));
                    continue;
                }
            };
            match conn.call(&Request::Wait) {
                Ok(Response::Exited(exit)) => return Ok(exit),
                Ok(Response::Error(e)) => return Err(monitor_err(crate::monitor::client::ClientError::Remote(e))),
                // Closed: the monitor finished; the exit record says how.
                Ok(Response::Ok) | Err(_) => std::thread::sleep(Duration::from_millis(5)),
            }
        }
    }

    /// CRI StopContainer: `signal` to the init, then after `timeout`
    /// SIGKILL to every process of its cgroup; returns the exit record
    /// once the cgroup is empty. See [`crate::container::stop`].
    pub fn stop(&self, id: &str, signal: Signal, timeout: Duration) -> Result<ExitRecord, ContainerError> {
        container::stop::stop(&self.dir, id, signal, timeout)
    }

    /// Removes a container; `force` kills it first if it runs.
    pub fn delete(&self, id: &str, force: bool) -> Result<(), ContainerError> {
        container::delete::delete(&self.dir, id, force)
    }

    /// The command that runs `process.json` (an OCI `Process`) in container
    /// `id`; the caller wires its stdio and waits for it. Its exit status
    /// is the process's. With `process.terminal`, add
    /// `--console-socket PATH`: the pty master is sent there (runc's
    /// contract) and resizing is TIOCSWINSZ on it.
    pub fn exec_command(&self, id: &str, process_json: &Path) -> Command {
        let mut cmd = Command::new(&self.runtime_binary);
        cmd.arg("--root")
            .arg(self.dir.root())
            .arg("exec")
            .arg("--process")
            .arg(process_json)
            .arg(id);
        cmd
    }

    /// CRI ExecSync: runs `process` in container `id` with the container's
    /// namespaces, cgroup and security settings, captures up to
    /// `output_cap` bytes of stdout and of stderr, kills the process tree
    /// after `timeout` (zero: none). See [`crate::container::exec_sync`].
    pub fn exec_sync(
        &self,
        id: &str,
        process: &oci_spec::runtime::Process,
        timeout: Duration,
        output_cap: usize,
    ) -> Result<ExecSyncResult, ContainerError> {
        container::exec_sync::exec_sync(&self.dir, &self.runtime_binary, id, process, timeout, output_cap)
    }

    /// The container's own process (user, env, cwd, capabilities, rlimits,
    /// no_new_privs) running `args` without a terminal: what CRI exec runs.
    pub fn exec_process(&self, id: &str, args: Vec<String>) -> Result<oci_spec::runtime::Process, ContainerError> {
        let c = self.state(id)?;
        let bundle = crate::spec::Bundle::load(&c.state.bundle)?;
        let mut p = bundle.spec.process().clone().unwrap_or_default();
        p.set_args(Some(args));
        p.set_terminal(Some(false));
        p.set_console_size(None);
        Ok(p)
    }

    /// Connects to the monitor for attach: the connection then carries
    /// stdout/stderr packets and accepts stdin packets (see
    /// [`crate::monitor::protocol`]).
    pub fn attach(&self, id: &str) -> Result<MonitorConn, ContainerError> {
        let conn = self.connect(id)?;
        conn.call_ok(&Request::Attach)
            .map_err(|source| ContainerError::Monitor {
                id: id.to_string(),
                source,
            })?;
        Ok(conn)
    }

    pub fn resize(&self, id: &str, rows: u16, cols: u16) -> Result<(), ContainerError> {
        self.call(id, &Request::Resize { rows, cols })
    }

    pub fn reopen_log(&self, id: &str) -> Result<(), ContainerError> {
        self.call(id, &Request::ReopenLog)
    }

    fn connect(&self, id: &str) -> Result<MonitorConn, ContainerError> {
        MonitorConn::connect(&self.dir.container_dir(id)?).map_err(|source| ContainerError::Monitor {
            id: id.to_string(),
            source,
        })
    }

    fn call(&self, id: &str, req: &Request) -> Result<(), ContainerError> {
        self.connect(id)?
            .call_ok(req)
            .map(drop)
            .map_err(|source| ContainerError::Monitor {
                id: id.to_string(),
                source,
            })
    }
}
