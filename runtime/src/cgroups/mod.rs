//! cgroups: one container's cgroup, behind the [`CgroupManager`] trait.
//!
//! The engine never touches cgroupfs itself; it holds a
//! `Box<dyn CgroupManager>` made by [`new_manager`] from the host's
//! [`CgroupLayout`] (see [`detect`]) and the spec's `linux.cgroupsPath`.
//! Behind the trait:
//!
//! - [`V1Manager`]: one directory per mounted v1 hierarchy (named ones such
//!   as `name=systemd` included). On a *hybrid* host (v1 hierarchies plus a
//!   cgroup2 mount, like `/sys/fs/cgroup/unified`) it also keeps the same
//!   path in the v2 tree, puts the processes there and uses it for the
//!   controllers that live on v2 (e.g. `hugetlb`) and for `unified` keys.
//! - [`V2Manager`]: one directory in the unified hierarchy.
//!
//! Every path comes from the caller (a mountinfo file, a `/proc/<pid>/cgroup`
//! file, a cgroupfs mountpoint), so the unit tests run against a fake tree in
//! a temp dir. Controller file names are the constants in [`files`].
//!
//! # Lifecycle of a container's cgroup
//!
//! ```text
//! let layout = cgroups::detect(Path::new("/proc/self/mountinfo"))?;
//! let own = cgroups::ProcCgroups::read(Path::new("/proc/self/cgroup"))?; // for relative paths
//! let cg = cgroups::new_manager(&layout, spec_cgroups_path, Some(&own))?;
//! cg.create()?;                 // mkdir -p in every hierarchy
//! cg.add_pid(init_pid)?;        // before the init runs user code
//! cg.apply(&resources)?;        // linux.resources
//! …  cg.update(&new)?; cg.stats()?; cg.freeze()?; cg.thaw()?;
//! cg.kill_all(Signal::SIGKILL)?; // stop: every process, also in a shared pid ns
//! cg.pids()?.is_empty()          // the container is stopped when this is
//! cg.delete()?;                 // rmdir leaf-first; absent is fine
//! ```
//!
//! A manager holds only paths: it can be rebuilt from the same inputs by a
//! restarted berthd or by the monitor, and every method is safe to call in
//! a process forked from a multi-threaded parent (no locks, no async).
//!
//! # What `apply` writes
//!
//! | OCI field | v1 | v2 |
//! |---|---|---|
//! | `cpu.shares` | `cpu.shares` | `cpu.weight` = 1 + (shares − 2)·9999 / 262142 (runc) |
//! | `cpu.quota`/`period` | `cpu.cfs_quota_us`/`cpu.cfs_period_us` | `cpu.max` "quota period" (quota ≤ 0 → `max`) |
//! | `cpu.burst`, `idle`, `realtime*` | `cpu.cfs_burst_us`, `cpu.idle`, `cpu.rt_*` | `cpu.max.burst`, `cpu.idle` (rt refused) |
//! | `cpu.cpus`/`mems` | `cpuset.cpus`/`cpuset.mems` | same |
//! | `memory.limit`/`swap` | `memory.limit_in_bytes`, `memory.memsw.limit_in_bytes` (ordered so neither write fails on the other) | `memory.max`, `memory.swap.max` = swap − limit (runc's conversion) |
//! | `memory.reservation`, `swappiness`, `disableOOMKiller` | `memory.soft_limit_in_bytes`, `memory.swappiness`, `memory.oom_control` | `memory.low`; the others are v1-only and ignored |
//! | `pids.limit` | `pids.max` (≤ 0 → `max`) | same |
//! | `hugepageLimits` | `hugetlb.<size>.limit_in_bytes` | `hugetlb.<size>.max` |
//! | `devices` | `devices.allow` / `devices.deny`, in order | not applied (needs a BPF device program; logged) |
//! | `unified` | hybrid: written in the v2 directory; pure v1: refused | written verbatim; keys with `/` or `..` refused |
//!
//! `blockIO`, `network` and `rdma` are not applied (logged at debug).
//! `apply` and `update` are the same operation; a missing controller file
//! for a requested setting is an error naming the file.

pub mod files;
mod fsutil;
mod layout;
mod resources;
mod v1;
mod v2;

#[cfg(test)]
mod fake;
#[cfg(test)]
mod root_tests;
#[cfg(test)]
pub(crate) mod test_support;

use std::path::{Path, PathBuf};

pub use layout::{detect, CgroupLayout, CgroupMode, ProcCgroups, V1Hierarchy, V2Mount};
use nix::sys::signal::Signal;
use nix::unistd::Pid;
use oci_spec::runtime::LinuxResources;
pub use resources::{convert_memory_swap_to_v2, convert_shares_to_weight};
pub use v1::V1Manager;
pub use v2::V2Manager;

/// Errors of cgroup handling; each names the file, directory or key.
#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    #[error("read {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("write {value:?} to {path}: {source}")]
    Write {
        path: PathBuf,
        value: String,
        source: std::io::Error,
    },
    #[error("mkdir {path}: {source}")]
    Mkdir { path: PathBuf, source: std::io::Error },
    #[error("rmdir {path}: {source}")]
    Rmdir { path: PathBuf, source: std::io::Error },
    #[error("parse {path}: {reason}")]
    Parse { path: PathBuf, reason: String },
    #[error("no cgroup filesystem mounted (per {mountinfo})")]
    NoCgroupMount { mountinfo: PathBuf },
    #[error("invalid cgroups path {path:?}: {reason}")]
    InvalidPath { path: PathBuf, reason: String },
    #[error("invalid resources: {0}")]
    InvalidResources(String),
    #[error("unified key {key:?} refused: {reason}")]
    UnifiedKey { key: String, reason: String },
    #[error("{what} not supported on cgroup {version}")]
    Unsupported { what: String, version: &'static str },
    #[error("kill pid {pid} with {signal}: {source}")]
    Signal {
        pid: i32,
        signal: Signal,
        source: nix::Error,
    },
    #[error("cgroup {path} did not reach {state} in time")]
    FreezeTimeout { path: PathBuf, state: &'static str },
    #[error("{first}; also: {second}")]
    Multiple {
        first: Box<CgroupError>,
        second: Box<CgroupError>,
    },
}

pub type Result<T, E = CgroupError> = std::result::Result<T, E>;

/// Resource usage of a cgroup, as far as its controllers report it (`None`
/// when the controller or file is not available).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CgroupStats {
    /// Total CPU time consumed, nanoseconds (`cpuacct.usage`, v2
    /// `cpu.stat usage_usec` × 1000).
    pub cpu_usage_ns: Option<u64>,
    /// `memory.usage_in_bytes` / `memory.current`.
    pub memory_usage_bytes: Option<u64>,
    /// Usage − inactive file pages (floored at 0), as the kubelet computes it.
    pub memory_working_set_bytes: Option<u64>,
    /// Memory limit, `None` when unlimited or unavailable.
    pub memory_limit_bytes: Option<u64>,
    /// Processes killed by the OOM killer in this cgroup (v1
    /// `memory.oom_control oom_kill`, v2 `memory.events oom_kill`).
    pub oom_kill_count: Option<u64>,
    /// `pids.current`.
    pub pids_current: Option<u64>,
    /// `pids.max`, `None` when `max` or unavailable.
    pub pids_limit: Option<u64>,
}

/// Operations on one container's cgroup. See the module doc for the
/// lifecycle and the mapping of OCI resources to files.
pub trait CgroupManager: std::fmt::Debug + Send + Sync {
    /// The cgroup directories this manager owns (one per v1 hierarchy, plus
    /// the v2 one on a hybrid host; one on v2).
    fn paths(&self) -> Vec<PathBuf>;

    /// Creates the cgroup (with missing parents) everywhere. Idempotent.
    fn create(&self) -> Result<()>;

    /// Moves process `pid` (all its threads) into the cgroup.
    fn add_pid(&self, pid: Pid) -> Result<()>;

    /// The files a single-threaded process writes `0` into to move itself
    /// into the cgroup — the fast alternative to [`CgroupManager::add_pid`]
    /// for a freshly forked child. The kernel takes its global
    /// threadgroup lock (one RCU grace period, milliseconds, when idle) for
    /// every write to `cgroup.procs`, but not for a task moving itself
    /// through a v1 `tasks` file. Default: `cgroup.procs` in every path.
    fn self_join_files(&self) -> Vec<PathBuf> {
        self.paths().iter().map(|p| p.join(files::CGROUP_PROCS)).collect()
    }

    /// Writes `resources` (see the module doc's table).
    fn apply(&self, resources: &LinuxResources) -> Result<()>;

    /// Changes the resources of a running cgroup; same writes as
    /// [`CgroupManager::apply`], ordered so that lowering memory with swap
    /// never fails on the order of the two limits.
    fn update(&self, resources: &LinuxResources) -> Result<()> {
        self.apply(resources)
    }

    /// Current resource usage.
    fn stats(&self) -> Result<CgroupStats>;

    /// Every process in the cgroup and its descendants.
    fn pids(&self) -> Result<Vec<Pid>>;

    /// Freezes every process and waits until the kernel reports frozen.
    fn freeze(&self) -> Result<()>;

    /// Thaws the cgroup.
    fn thaw(&self) -> Result<()>;

    /// Sends `signal` to every process in the cgroup: freeze, signal each
    /// pid, thaw (so no process forks past the signal). On v2, SIGKILL uses
    /// `cgroup.kill` when the kernel has it. Processes that exit meanwhile
    /// are not an error.
    fn kill_all(&self, signal: Signal) -> Result<()>;

    /// Removes the cgroup directories, leaf-first, retrying briefly while
    /// the kernel still reports them busy. Absent directories are fine.
    fn delete(&self) -> Result<()>;
}

/// Builds the manager for `cgroups_path` (an OCI `linux.cgroupsPath`,
/// cgroupfs style such as `/berth/<pod>/<ctr>`). A relative path is taken
/// relative to the cgroups in `own` (the caller's `/proc/self/cgroup`),
/// which is then required. A host with any v1 controller hierarchy gets a
/// [`V1Manager`] (hybrid when a cgroup2 mount exists too), a pure cgroup2
/// host a [`V2Manager`].
pub fn new_manager(
    layout: &CgroupLayout,
    cgroups_path: &Path,
    own: Option<&ProcCgroups>,
) -> Result<Box<dyn CgroupManager>> {
    validate_cgroups_path(cgroups_path)?;
    match layout.mode() {
        CgroupMode::Legacy | CgroupMode::Hybrid => Ok(Box::new(V1Manager::new(layout, cgroups_path, own)?)),
        CgroupMode::Unified => {
            let mount = layout.v2.as_ref().expect("unified mode has a v2 mount");
            Ok(Box::new(V2Manager::for_mount(mount, cgroups_path, own)?))
        }
    }
}

/// Checks a `linux.cgroupsPath`: cgroupfs style, no `..`, not a root.
pub(crate) fn validate_cgroups_path(path: &Path) -> Result<()> {
    let invalid = |reason: &str| {
        Err(CgroupError::InvalidPath {
            path: path.to_path_buf(),
            reason: reason.to_string(),
        })
    };
    let Some(s) = path.to_str() else {
        return invalid("not UTF-8");
    };
    if s.contains(':') {
        return invalid("systemd-style slice:prefix:name paths need the systemd driver");
    }
    if s.contains('\0') {
        return invalid("contains NUL");
    }
    let mut normal = 0;
    for c in path.components() {
        match c {
            std::path::Component::Normal(_) => normal += 1,
            std::path::Component::RootDir | std::path::Component::CurDir => {}
            _ => return invalid("contains '..'"),
        }
    }
    if normal == 0 {
        return invalid("names no cgroup below the root");
    }
    Ok(())
}

/// Joins a cgroup path (absolute within its hierarchy) onto a directory.
pub(crate) fn join_cgroup(base: &Path, cgroup: &Path) -> PathBuf {
    base.join(cgroup.strip_prefix("/").unwrap_or(cgroup))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cgroups_paths_are_validated() {
        assert!(validate_cgroups_path(Path::new("/berth/pod/ctr")).is_ok());
        assert!(validate_cgroups_path(Path::new("berth/ctr")).is_ok());
        for bad in ["/", "", "/a/../b", "system.slice:berth:ctr", "../x"] {
            let err = validate_cgroups_path(Path::new(bad)).unwrap_err();
            assert!(err.to_string().contains("invalid cgroups path"), "{bad}: {err}");
        }
    }

    #[test]
    fn join_keeps_paths_inside_the_base() {
        assert_eq!(
            join_cgroup(Path::new("/sys/fs/cgroup/memory"), Path::new("/berth/x")),
            PathBuf::from("/sys/fs/cgroup/memory/berth/x")
        );
        assert_eq!(join_cgroup(Path::new("/m"), Path::new("rel")), PathBuf::from("/m/rel"));
    }
}
