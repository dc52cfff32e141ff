//! The engine's library API: what berthd calls. Every method is blocking
//! (call it from `spawn_blocking`) and safe to call from a multi-threaded
//! process: anything that must fork in a single-threaded process (the
//! monitor, `exec`) runs in a re-executed runtime binary.
//!
//! ```text
//! let engine = Engine::new("/run/berth/containers", "/usr/bin/berth-runtime");
//! engine.create(&CreateOptions { id, bundle, stdio: StdioMode::Monitor {
//!     log_path: Some(log), stdin: false, stdin_once: false }, pid_file: None,
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
pub use crate::container::exec_stream::ExecLaunch;
pub use crate::container::exec_sync::ExecSyncResult;
use crate::container::query::ContainerState;
use crate::container::{self, ContainerError};
use crate::monitor::client::MonitorConn;
use crate::monitor::protocol::{Request, Response};
pub use crate::monitor::spawn::StdioMode;
use crate::sandbox::{
    self, PinRequest, PinnedNamespaces, PodSandbox, PodSandboxSpec, PodSandboxState, RecoveryReport, SandboxError,
    SandboxPaths,
};
use crate::state::{ExitRecord, StateDir, Status};

/// The engine over one state root.
#[derive(Debug, Clone)]
pub struct Engine {
    dir: StateDir,
    runtime_binary: PathBuf,
    pods: SandboxPaths,
}

impl Engine {
    /// `state_root` holds one directory per container; `runtime_binary` is
    /// the `berth-runtime` executable (monitor and exec run from it).
    pub fn new(state_root: impl Into<PathBuf>, runtime_binary: impl Into<PathBuf>) -> Engine {
        let state_root = state_root.into();
        let runtime_binary = runtime_binary.into();
        Engine {
            pods: default_sandbox_paths(&state_root, &runtime_binary),
            dir: StateDir::new(state_root),
            runtime_binary,
        }
    }

    /// The `berth-runtime` binary this engine runs.
    pub fn runtime_binary(&self) -> &Path {
        &self.runtime_binary
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

    /// Removes a container; `force` kills it first if it runs. Parent
    /// cgroups left empty under the engine's cgroup prefix go too (up to the
    /// prefix, never a pod cgroup: see [`crate::sandbox::cgroup`]).
    pub fn delete(&self, id: &str, force: bool) -> Result<(), ContainerError> {
        let cgroup_path = self.state(id).ok().and_then(|c| c.state.cgroup_path);
        container::delete::delete(&self.dir, id, force)?;
        if let Some(path) = cgroup_path {
            sandbox::cgroup::prune_empty_parents(&path, &self.pods.cgroup_prefix, true);
        }
        Ok(())
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
        self.exec_process_with(id, args, false)
    }

    /// [`Engine::exec_process`] with or without a terminal.
    pub fn exec_process_with(
        &self,
        id: &str,
        args: Vec<String>,
        terminal: bool,
    ) -> Result<oci_spec::runtime::Process, ContainerError> {
        let c = self.state(id)?;
        let bundle = crate::spec::Bundle::load(&c.state.bundle)?;
        let mut p = bundle.spec.process().clone().unwrap_or_default();
        p.set_args(Some(args));
        p.set_terminal(Some(terminal));
        p.set_console_size(None);
        Ok(p)
    }

    /// CRI Exec (streaming): the prepared `berth-runtime exec` of `process`
    /// in container `id`; the caller wires stdio, spawns and waits. See
    /// [`crate::container::exec_stream`].
    pub fn exec_stream(&self, id: &str, process: &oci_spec::runtime::Process) -> Result<ExecLaunch, ContainerError> {
        container::exec_stream::prepare(&self.dir, &self.runtime_binary, id, process)
    }

    /// SIGKILLs an exec's runtime process `leader` (a process group leader),
    /// everything it started, and its process group: a streaming session
    /// that ends early leaves nothing behind.
    pub fn kill_exec_tree(&self, leader: i32) {
        container::exec_sync::kill_tree(nix::unistd::Pid::from_raw(leader));
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

    /// CRI UpdateContainerResources: writes `resources` to the cgroup of
    /// container `id` (the same files as at create, see
    /// [`crate::cgroups::CgroupManager::update`]).
    pub fn update_resources(
        &self,
        id: &str,
        resources: &oci_spec::runtime::LinuxResources,
    ) -> Result<(), ContainerError> {
        self.cgroup_of(id)?
            .update(resources)
            .map_err(|source| ContainerError::Cgroup {
                id: id.to_string(),
                source,
            })
    }

    /// Resource usage of container `id`'s cgroup (CRI ContainerStats).
    pub fn stats(&self, id: &str) -> Result<crate::cgroups::CgroupStats, ContainerError> {
        self.cgroup_of(id)?.stats().map_err(|source| ContainerError::Cgroup {
            id: id.to_string(),
            source,
        })
    }

    fn cgroup_of(&self, id: &str) -> Result<Box<dyn container::cgroup::CgroupManager>, ContainerError> {
        let c = self.state(id)?;
        let path = c.state.cgroup_path.ok_or_else(|| ContainerError::WrongStatus {
            id: id.to_string(),
            status: c.status,
            action: "a cgroup operation",
            needed: "set up (it has no cgroup yet)",
        })?;
        container::cgroup::manager(&path).map_err(|source| ContainerError::Cgroup {
            id: id.to_string(),
            source,
        })
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

/// Pods beside containers: `<state root>/.pods` (not a valid container ID),
/// `berth-pod-init` next to the runtime binary, cgroup prefix `/berth`.
fn default_sandbox_paths(state_root: &Path, runtime_binary: &Path) -> SandboxPaths {
    SandboxPaths {
        root: state_root.join(".pods"),
        pod_init_binary: runtime_binary.with_file_name("berth-pod-init"),
        cgroup_prefix: PathBuf::from("/berth"),
    }
}

/// Pod sandboxes (see [`crate::sandbox`]): what the CRI layer calls from
/// RunPodSandbox, StopPodSandbox, RemovePodSandbox, PodSandboxStatus,
/// PodSandboxStats and on berthd restart.
///
/// ```text
/// let pod = engine.run_pod_sandbox(&PodSandboxSpec { id, namespaces: PinRequest {
///     net: true, ipc: true, uts: true, pid: share_pid, hostname, sysctls, .. },
///     resources })?;
/// // containers: linux.namespaces[].path = pod.namespaces.{net,ipc,uts,pid},
/// //             /dev/shm bind from pod.namespaces.shm,
/// //             linux.cgroupsPath = pod.cgroup_path/<container id>
/// engine.stop_pod_sandbox(id, grace)?;   // pod init stopped; netns stays for CNI DEL
/// engine.remove_pod_sandbox(id)?;        // after its containers: cgroup, binds, dir gone
/// let report = engine.recover()?;        // at startup
/// ```
impl Engine {
    /// Where pods live (default: `<state root>/.pods`).
    pub fn with_pod_root(mut self, root: impl Into<PathBuf>) -> Engine {
        self.pods.root = root.into();
        self
    }

    /// The `berth-pod-init` binary (default: beside the runtime binary).
    pub fn with_pod_init_binary(mut self, path: impl Into<PathBuf>) -> Engine {
        self.pods.pod_init_binary = path.into();
        self
    }

    /// The cgroup prefix for pods and for pruning empty parents (default
    /// `/berth`).
    pub fn with_cgroup_prefix(mut self, prefix: impl Into<PathBuf>) -> Engine {
        self.pods.cgroup_prefix = prefix.into();
        self
    }

    pub fn sandbox_paths(&self) -> &SandboxPaths {
        &self.pods
    }

    /// The cgroup parent of pod `id`'s containers.
    pub fn pod_cgroup_path(&self, id: &str) -> PathBuf {
        sandbox::cgroup::pod_path(&self.pods.cgroup_prefix, id)
    }

    /// The namespace paths (binds, shm) `run_pod_sandbox` will make for
    /// pod `id` with `req`, known before it runs (no init).
    pub fn planned_pod_namespaces(&self, id: &str, req: &PinRequest) -> Result<PinnedNamespaces, SandboxError> {
        sandbox::lifecycle::planned_namespaces(&self.pods, id, req)
    }

    /// CRI RunPodSandbox's engine half: pod cgroup with its resources,
    /// pinned namespaces, /dev/shm, the pod init. Undone on failure.
    pub fn run_pod_sandbox(&self, spec: &PodSandboxSpec) -> Result<PodSandbox, SandboxError> {
        sandbox::lifecycle::run(&self.pods, spec)
    }

    /// CRI StopPodSandbox's engine half: stops the pod init (ending a
    /// shared PID namespace); namespaces stay until removal. Repeatable.
    pub fn stop_pod_sandbox(&self, id: &str, grace: Duration) -> Result<(), SandboxError> {
        sandbox::lifecycle::stop(&self.pods, id, grace)
    }

    /// CRI RemovePodSandbox's engine half, after its containers are
    /// deleted: init, leftover processes, cgroup, binds and dir. Repeatable.
    pub fn remove_pod_sandbox(&self, id: &str) -> Result<(), SandboxError> {
        sandbox::lifecycle::remove(&self.pods, id)
    }

    /// A pod's record, readiness and init status.
    pub fn pod_sandbox(&self, id: &str) -> Result<PodSandboxState, SandboxError> {
        sandbox::lifecycle::status(&self.pods, id)
    }

    /// Every pod on disk.
    pub fn list_pod_sandboxes(&self) -> Result<Vec<PodSandboxState>, SandboxError> {
        sandbox::lifecycle::list(&self.pods)
    }

    /// Pod-level usage (cpu, memory, pids) of the pod cgroup, containers
    /// under it included.
    pub fn pod_sandbox_stats(&self, id: &str) -> Result<crate::cgroups::CgroupStats, SandboxError> {
        sandbox::lifecycle::stats(&self.pods, id)
    }

    /// Restart reconciliation of pods and containers; see
    /// [`crate::sandbox::recover`] for what it assumes and cleans.
    pub fn recover(&self) -> Result<RecoveryReport, SandboxError> {
        sandbox::recover::recover(&self.pods, &self.dir)
    }
}
