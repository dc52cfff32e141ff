//! Pinning a pod's namespaces ([`pin`]) and undoing it ([`unpin`]).
//!
//! `pin` starts the `berth-pod-init` helper (see [`super::helper`] for the
//! process tree and why it is a separate executable), reads its one-line
//! report, records the pod init (if any) in the pod dir *before* anything
//! else refers to it, bind-mounts `/proc/<pid>/ns/{net,ipc,uts,pid}` onto
//! files in the pod dir, mounts the shm tmpfs, then closes the helper's
//! stdin: a helper without a pod init exits, the namespaces stay alive
//! through the binds alone.
//!
//! The PID namespace is bound too (`dir/pid`), not only exposed as
//! `/proc/<init>/ns/pid`: a path that cannot come to mean another process's
//! namespace after a pid is recycled. Joining it after the init died fails
//! cleanly (the kernel refuses to fork into a PID namespace whose init is
//! gone).

use std::collections::BTreeMap;
use std::io::BufRead;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde::{Deserialize, Serialize};

use super::helper::{HelperArgs, Report};
use super::record::{self, InitProcesses};
use super::{mounts, sysctl, Errors, SandboxError, DEFAULT_SHM_SIZE};
use crate::state::ProcessId;

/// How long [`unpin`] waits for the pod init after SIGTERM.
pub const INIT_STOP_GRACE: Duration = Duration::from_secs(2);
/// How long a SIGKILLed pod init may take to disappear.
const KILL_WAIT: Duration = Duration::from_secs(5);

/// What to pin. `false` means the pod shares the host's namespace.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PinRequest {
    pub net: bool,
    pub ipc: bool,
    pub uts: bool,
    /// A shared PID namespace with a pod init as PID 1.
    pub pid: bool,
    /// Set in the new UTS namespace (needs `uts`).
    pub hostname: Option<String>,
    /// Namespaced sysctls only (see [`super::sysctl`]).
    pub sysctls: BTreeMap<String, String>,
    /// Size of the pod's `/dev/shm` (with `ipc`); default 64 MiB.
    pub shm_size_bytes: Option<u64>,
}

/// What [`pin`] made: paths containers join (`linux.namespaces[].path`)
/// or mount (`/dev/shm`), and the pod init.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PinnedNamespaces {
    pub net: Option<PathBuf>,
    pub ipc: Option<PathBuf>,
    pub uts: Option<PathBuf>,
    pub pid: Option<PathBuf>,
    pub shm: Option<PathBuf>,
    /// PID 1 of the pod's PID namespace.
    pub init: Option<ProcessId>,
    /// The init's parent, which records its exit.
    pub supervisor: Option<ProcessId>,
}

impl PinnedNamespaces {
    /// The nsfs binds that exist.
    pub fn ns_paths(&self) -> impl Iterator<Item = &PathBuf> {
        [&self.net, &self.ipc, &self.uts, &self.pid].into_iter().flatten()
    }

    /// Whether every bind is still a namespace file.
    pub fn usable(&self) -> bool {
        self.ns_paths().all(|p| mounts::is_nsfs(p))
    }
}

/// Where [`pin`] puts the binds and the shm mount for `req` in `dir`
/// (known before pinning, so a caller can record them first); no init.
pub fn planned_paths(dir: &Path, req: &PinRequest) -> PinnedNamespaces {
    let at = |on: bool, name: &str| on.then(|| dir.join(name));
    PinnedNamespaces {
        net: at(req.net, "net"),
        ipc: at(req.ipc, "ipc"),
        uts: at(req.uts, "uts"),
        pid: at(req.pid, "pid"),
        shm: at(req.ipc, "shm"),
        init: None,
        supervisor: None,
    }
}

fn check(dir: &Path, req: &PinRequest) -> Result<(), SandboxError> {
    let invalid = |reason: String| {
        Err(SandboxError::InvalidRequest {
            dir: dir.to_path_buf(),
            reason,
        })
    };
    sysctl::validate(&req.sysctls, req.net, req.ipc)?;
    if let Some(h) = &req.hostname {
        if !req.uts {
            return invalid(format!("hostname {h:?} needs the pod's own UTS namespace"));
        }
        if h.is_empty() || h.len() > 64 || h.contains('\0') {
            return invalid(format!("invalid hostname {h:?}"));
        }
    }
    if req.shm_size_bytes == Some(0) {
        return invalid("shm size 0".into());
    }
    if dir.parent().is_none() || dir.file_name().is_none() {
        return invalid("the pod dir needs a parent (the pods root)".into());
    }
    Ok(())
}

/// Creates the pod's namespaces and pins them under `dir` (created; its
/// parent becomes a private self-bind mount). `helper` is the
/// `berth-pod-init` binary. On failure, everything made is undone and both
/// errors are kept if that fails too.
pub fn pin(helper: &Path, dir: &Path, req: &PinRequest) -> Result<PinnedNamespaces, SandboxError> {
    pin_joining(helper, dir, req, &[])
}

/// [`pin`], with the pod init (`req.pid`) joining a cgroup through
/// `init_cgroup_join` (`CgroupManager::self_join_files` of its leaf)
/// before the helper reports ready.
pub fn pin_joining(
    helper: &Path,
    dir: &Path,
    req: &PinRequest,
    init_cgroup_join: &[PathBuf],
) -> Result<PinnedNamespaces, SandboxError> {
    check(dir, req)?;
    let root = dir.parent().expect("checked");
    mounts::ensure_private_root(root)?;
    match std::fs::DirBuilder::new().mode(0o711).create(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(source) => {
            return Err(SandboxError::Io {
                op: "create",
                path: dir.to_path_buf(),
                source,
            })
        }
    }
    let mut pinned = PinnedNamespaces::default();
    match pin_into(helper, dir, req, init_cgroup_join, &mut pinned) {
        Ok(()) => Ok(pinned),
        Err(e) => Err(e.with_cleanup(unpin(dir))),
    }
}

fn pin_into(
    helper: &Path,
    dir: &Path,
    req: &PinRequest,
    init_cgroup_join: &[PathBuf],
    pinned: &mut PinnedNamespaces,
) -> Result<(), SandboxError> {
    if req.net || req.ipc || req.uts || req.pid {
        let args = HelperArgs {
            net: req.net,
            ipc: req.ipc,
            uts: req.uts,
            pid: req.pid,
            hostname: req.hostname.clone(),
            sysctls: req.sysctls.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
            exit_file: Some(dir.join(record::INIT_EXIT_FILE)),
            cgroup_join: if req.pid { init_cgroup_join.to_vec() } else { Vec::new() },
        };
        run_helper(helper, dir, &args, &planned_paths(dir, req), pinned)?;
    }
    if let Some(shm) = planned_paths(dir, req).shm {
        mounts::mount_shm(&shm, req.shm_size_bytes.unwrap_or(DEFAULT_SHM_SIZE))?;
        pinned.shm = Some(shm);
    }
    Ok(())
}

fn helper_err(dir: &Path, message: impl Into<String>) -> SandboxError {
    SandboxError::Helper {
        dir: dir.to_path_buf(),
        message: message.into(),
    }
}

fn run_helper(
    helper: &Path,
    dir: &Path,
    args: &HelperArgs,
    planned: &PinnedNamespaces,
    pinned: &mut PinnedNamespaces,
) -> Result<(), SandboxError> {
    let log_path = dir.join(record::LOG_FILE);
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .map_err(|source| SandboxError::Io {
            op: "open",
            path: log_path.clone(),
            source,
        })?;
    let mut child = Command::new(helper)
        .args(args.to_args())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(log)
        .spawn()
        .map_err(|source| SandboxError::Spawn {
            exe: helper.to_path_buf(),
            dir: dir.to_path_buf(),
            source,
        })?;
    let stdin = child.stdin.take();
    let mut new_init = None;
    let result = (|| {
        let mut line = String::new();
        let stdout = child.stdout.take().expect("stdout is piped");
        std::io::BufReader::new(stdout)
            .read_line(&mut line)
            .map_err(|e| helper_err(dir, format!("read report: {e}")))?;
        let (ns_pid, supervisor) = match Report::parse(&line) {
            Some(Report::Ready { ns_pid, supervisor }) => (ns_pid, supervisor),
            Some(Report::Error(msg)) => return Err(helper_err(dir, msg)),
            None => {
                let log = std::fs::read_to_string(&log_path).unwrap_or_default();
                return Err(helper_err(
                    dir,
                    format!("no report (got {line:?}; log {:?})", log.trim()),
                ));
            }
        };
        if args.pid {
            new_init = Some(ns_pid);
            let init = ProcessId::of(ns_pid).ok_or_else(|| helper_err(dir, "the pod init died at once"))?;
            let processes = InitProcesses {
                init,
                supervisor: supervisor.and_then(ProcessId::of),
            };
            record::save_init(dir, &processes)?;
            pinned.init = Some(processes.init);
            pinned.supervisor = processes.supervisor;
        }
        let proc_ns = PathBuf::from(format!("/proc/{ns_pid}/ns"));
        for (target, name, slot) in [
            (&planned.net, "net", &mut pinned.net),
            (&planned.ipc, "ipc", &mut pinned.ipc),
            (&planned.uts, "uts", &mut pinned.uts),
            (&planned.pid, "pid", &mut pinned.pid),
        ] {
            if let Some(target) = target {
                mounts::bind_ns(&proc_ns.join(name), target)?;
                *slot = Some(target.clone());
            }
        }
        Ok(())
    })();
    // "done": a helper without a pod init exits now; the supervisor goes on.
    drop(stdin);
    if result.is_err() {
        let _ = child.kill();
        // A pod init not yet recorded in `init` (which unpin reads) dies
        // here; it is seconds old, so its pid cannot have been recycled.
        if let Some(pid) = new_init.filter(|_| record::load_init(dir).is_none()) {
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        }
    }
    let _ = child.wait();
    result
}

/// Undoes [`pin`]: stops the pod init (SIGTERM, then SIGKILL after
/// [`INIT_STOP_GRACE`]), lazily unmounts every mount under `dir` (nsfs
/// binds, shm), removes `dir`. Idempotent: absent pieces are fine. Every
/// step runs even when an earlier one fails; all failures are returned.
pub fn unpin(dir: &Path) -> Result<(), SandboxError> {
    unpin_with_grace(dir, INIT_STOP_GRACE)
}

/// [`unpin`] with a chosen grace period for the pod init.
pub fn unpin_with_grace(dir: &Path, grace: Duration) -> Result<(), SandboxError> {
    if !dir.exists() {
        return Ok(());
    }
    let mut errs = Errors::default();
    if let Some(p) = record::load_init(dir) {
        errs.keep(stop_init(dir, &p, grace));
    }
    errs.keep(mounts::detach_all_under(dir));
    // Removing the bind targets is what frees copies of the binds in other
    // mount namespaces: the kernel detaches every mount on an unlinked
    // mount point (see the propagation note in the module doc).
    if let Err(source) = std::fs::remove_dir_all(dir) {
        if source.kind() != std::io::ErrorKind::NotFound {
            errs.push(SandboxError::Io {
                op: "remove",
                path: dir.to_path_buf(),
                source,
            });
        }
    }
    errs.into_result()
}

/// Stops the pod init: SIGTERM, `grace`, SIGKILL; waits until it is gone
/// (a zombie counts as gone) and its supervisor has recorded the exit.
pub fn stop_init(dir: &Path, p: &InitProcesses, grace: Duration) -> Result<(), SandboxError> {
    let init = p.init;
    if init.is_alive() {
        let _ = kill(Pid::from_raw(init.pid), Signal::SIGTERM);
        if !wait_gone(&init, grace) {
            let _ = kill(Pid::from_raw(init.pid), Signal::SIGKILL);
            if !wait_gone(&init, KILL_WAIT) {
                return Err(SandboxError::Timeout {
                    id: dir
                        .file_name()
                        .map(|n| n.to_string_lossy().into_owned())
                        .unwrap_or_default(),
                    secs: KILL_WAIT.as_secs(),
                    what: "the pod init to die after SIGKILL",
                });
            }
        }
    }
    // The supervisor writes init-exit and leaves right after its waitpid.
    if let Some(sup) = p.supervisor {
        if !wait_gone(&sup, Duration::from_secs(1)) {
            let _ = kill(Pid::from_raw(sup.pid), Signal::SIGKILL);
        }
    }
    Ok(())
}

fn wait_gone(p: &ProcessId, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    let mut pause = Duration::from_millis(2);
    while p.is_alive() {
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(50));
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_checked_before_anything_runs() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("pod");
        let bad_sysctl = PinRequest {
            net: true,
            sysctls: [("vm.swappiness".to_string(), "1".to_string())].into(),
            ..Default::default()
        };
        let err = pin(Path::new("/nonexistent"), &dir, &bad_sysctl)
            .unwrap_err()
            .to_string();
        assert!(err.contains("vm.swappiness"), "{err}");
        let host_uts = PinRequest {
            hostname: Some("x".into()),
            ..Default::default()
        };
        let err = pin(Path::new("/nonexistent"), &dir, &host_uts).unwrap_err().to_string();
        assert!(err.contains("UTS"), "{err}");
        assert!(!dir.exists());
        unpin(&dir).unwrap();
    }
}
