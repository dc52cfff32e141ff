//! Pod sandboxes: what a pod has besides its containers — pinned network,
//! IPC and UTS namespaces (no pause image), an optional shared PID
//! namespace with a tiny init as its PID 1, the pod's `/dev/shm`, and the
//! pod cgroup parent. [`crate::engine::Engine`] is the facade the CRI layer
//! calls (`run_pod_sandbox`, `stop_pod_sandbox`, `remove_pod_sandbox`,
//! `pod_sandbox`, `pod_sandbox_stats`, `recover`).
//!
//! Modules, by job:
//! - [`pin`]: create the namespaces in a helper process and bind-mount their
//!   nsfs files into the pod dir ([`pin::pin`]); undo it ([`pin::unpin`]).
//! - [`helper`], [`podinit`], [`loopback`]: the child side, run by the small
//!   `berth-pod-init` binary (no async, no serde, no tracing): unshare,
//!   hostname, sysctls, `lo` up, the PID 1 loop and its supervisor.
//! - [`sysctl`]: which sysctls a pod may set.
//! - [`mounts`]: the pods root as a private self-bind, nsfs binds, the shm
//!   tmpfs, and reading mountinfo.
//! - [`cgroup`]: the pod cgroup (`<prefix>/pods/<id>`, or `<parent>/<id>`
//!   under the caller's cgroup parent), its stats, and the removal of empty
//!   berth parents (and of the caller's parent dirs berth had to create).
//! - [`record`]: `pod.json` and the small files beside it.
//! - [`lifecycle`]: run / stop / remove / status of a whole pod.
//! - [`recover`]: what a restarted berthd finds and cleans.
//!
//! # On disk
//!
//! ```text
//! <pods root>/                  a self-bind mount with private propagation
//! <pods root>/<id>/pod.json     PodRecord (temp file + rename)
//! <pods root>/<id>/init         "pid start_time sup_pid sup_start": the pod init
//!                               and its supervisor, written before any bind
//! <pods root>/<id>/init-exit    "exited N" | "signaled N": written by the supervisor
//! <pods root>/<id>/net|ipc|uts|pid   nsfs bind mounts
//! <pods root>/<id>/shm/         the pod's /dev/shm (tmpfs)
//! <pods root>/<id>/pod-init.log stderr of the helper and supervisor
//! ```
//!
//! # States of a pod
//!
//! ```text
//!          run: mkdir, pod.json{creating},        init dies / stop
//!          cgroup, pin, init into cgroup           ┌───────────────┐
//!  (none) ─────────────────────────────▶ creating ─▶ ready ────────▶ stopped
//!                │ failure: rollback        │ crash here:             │ remove: stop init,
//!                ▼ (unpin, cgroup, rm)      ▼ recover cleans it       ▼ kill pod cgroup, rmdir
//!              (none)                     (none)                    (none)
//! ```
//!
//! `ready` vs `not ready` as the CRI reports it is derived: a `ready` record
//! whose init died (pid + start time no longer match) or whose nsfs binds
//! are no longer nsfs reads as not ready.
//!
//! # Mount propagation, and why unpinning frees every copy
//!
//! An nsfs bind keeps its namespace alive in every mount namespace holding a
//! copy of it. Copies appear when another mount namespace is made while the
//! bind exists (a container's init before its `pivot_root`, a systemd
//! service with `PrivateTmp`, `unshare -m`). The pods root is a *private*
//! self-bind, so later binds never propagate anywhere: no copy appears in
//! namespaces made before the pin, and a pin costs one mount, not one per
//! peer. Copies made afterwards are not reached by our `umount` (nor would
//! they be with shared propagation once the other namespace remounts
//! itself private, as `unshare -m` does), so [`pin::unpin`] also *removes*
//! the bind target files: since Linux 3.18 unlinking a mount point detaches
//! the mounts on it in every mount namespace. The root test
//! `unpin_reaches_copies_of_the_binds_in_other_mount_namespaces` checks it.
//! Containers lose their copies anyway when their init detaches the old
//! root after `pivot_root`.

pub mod cgroup;
pub mod helper;
pub mod lifecycle;
pub mod loopback;
pub mod mounts;
pub mod pin;
pub mod podinit;
pub mod record;
pub mod recover;
pub mod sysctl;

use std::path::PathBuf;

pub use lifecycle::{PodSandbox, PodSandboxSpec, PodSandboxState, PodStatus};
pub use pin::{pin, unpin, PinRequest, PinnedNamespaces};
pub use recover::RecoveryReport;

/// Default size of a pod's `/dev/shm` (Docker's default).
pub const DEFAULT_SHM_SIZE: u64 = 64 << 20;

/// Where pods live and what runs them; part of the engine's configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SandboxPaths {
    /// One directory per pod (a private self-bind mount, see the module doc).
    pub root: PathBuf,
    /// The `berth-pod-init` binary (pin helper, pod init, supervisor).
    pub pod_init_binary: PathBuf,
    /// cgroupfs prefix: pods get `<prefix>/pods/<id>`; empty parents up to
    /// and including the prefix are removed, never the prefix's parent.
    pub cgroup_prefix: PathBuf,
}

/// Errors of pod sandbox handling; each names the pod, path or key.
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    #[error("invalid pod sandbox id {0:?}: use [A-Za-z0-9][A-Za-z0-9_.-]*, at most 1024 bytes")]
    InvalidId(String),
    #[error("pod sandbox {0} already exists")]
    Exists(String),
    #[error("pod sandbox {0} does not exist")]
    NotFound(String),
    #[error("sysctl {key:?} refused: {reason}")]
    Sysctl { key: String, reason: String },
    #[error("invalid pin request for {dir}: {reason}")]
    InvalidRequest { dir: PathBuf, reason: String },
    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{op} {path}: {source}")]
    Sys {
        op: &'static str,
        path: PathBuf,
        source: nix::errno::Errno,
    },
    #[error("start pod helper {exe} for {dir}: {source}")]
    Spawn {
        exe: PathBuf,
        dir: PathBuf,
        source: std::io::Error,
    },
    #[error("pod helper for {dir}: {message}")]
    Helper { dir: PathBuf, message: String },
    #[error("pod sandbox {id}: cgroup: {source}")]
    Cgroup {
        id: String,
        source: crate::cgroups::CgroupError,
    },
    #[error("pod sandbox {id}: timed out after {secs}s waiting for {what}")]
    Timeout { id: String, secs: u64, what: &'static str },
    #[error("{path}: malformed: {reason}")]
    Malformed { path: PathBuf, reason: String },
    #[error("{first}; cleanup also failed: {cleanup}")]
    WithCleanup {
        first: Box<SandboxError>,
        cleanup: Box<SandboxError>,
    },
    #[error("{first}; also: {second}")]
    Multiple {
        first: Box<SandboxError>,
        second: Box<SandboxError>,
    },
}

impl SandboxError {
    /// Adds `cleanup`'s failure to `self`, keeping both.
    pub fn with_cleanup(self, cleanup: Result<(), SandboxError>) -> SandboxError {
        match cleanup {
            Ok(()) => self,
            Err(c) => SandboxError::WithCleanup {
                first: Box::new(self),
                cleanup: Box::new(c),
            },
        }
    }
}

/// Collects the failures of a multi-step cleanup that goes on after one
/// step fails; yields every error, first ones first.
#[derive(Debug, Default)]
pub(crate) struct Errors(Option<SandboxError>);

impl Errors {
    pub(crate) fn push(&mut self, e: SandboxError) {
        self.0 = Some(match self.0.take() {
            None => e,
            Some(first) => SandboxError::Multiple {
                first: Box::new(first),
                second: Box::new(e),
            },
        });
    }

    pub(crate) fn keep<T>(&mut self, r: Result<T, SandboxError>) -> Option<T> {
        match r {
            Ok(v) => Some(v),
            Err(e) => {
                self.push(e);
                None
            }
        }
    }

    pub(crate) fn into_result(self) -> Result<(), SandboxError> {
        match self.0 {
            None => Ok(()),
            Some(e) => Err(e),
        }
    }
}

/// Checks a pod ID is safe as a single path component and cgroup name.
pub fn validate_id(id: &str) -> Result<(), SandboxError> {
    crate::state::validate_id(id).map_err(|_| SandboxError::InvalidId(id.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_keep_every_failure() {
        let io = |p: &str| SandboxError::Io {
            op: "remove",
            path: p.into(),
            source: std::io::Error::from_raw_os_error(libc::EBUSY),
        };
        let mut errs = Errors::default();
        assert!(errs.keep(Ok::<_, SandboxError>(1)).is_some());
        errs.push(io("/a"));
        errs.push(io("/b"));
        let msg = errs.into_result().unwrap_err().to_string();
        assert!(msg.contains("/a") && msg.contains("/b"), "{msg}");
        let both = io("/x").with_cleanup(Err(io("/y"))).to_string();
        assert!(both.contains("/x") && both.contains("cleanup also failed") && both.contains("/y"));
        assert!(validate_id("../x").is_err());
        validate_id("pod-1").unwrap();
    }
}
