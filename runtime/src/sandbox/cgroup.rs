//! The pod cgroup parent, through [`crate::cgroups`]:
//!
//! ```text
//! <prefix>/pods/<id>                 pod-level resources (CRI pod resources + overhead)
//! <prefix>/pods/<id>/berth-pod-init  the pod init (a leaf: cgroup v2 allows no
//!                                    processes beside child cgroups with controllers)
//! <prefix>/pods/<id>/<container>     containers, when the CRI layer puts them here
//! ```
//!
//! With a cgroup parent from the caller (the kubelet's `cgroup_parent`,
//! e.g. `/kubepods/burstable/pod<uid>`), the pod cgroup is `<parent>/<id>`
//! instead — where containerd puts its sandbox — and the same tree hangs
//! below it. The parent belongs to the caller: berth creates it when it is
//! missing (as runc does), remembers which directories of it that create
//! made ([`PodCgroup::missing_parents`], stored in the pod record before
//! anything is created) and on removal takes back exactly those, if empty;
//! never one that existed before.
//!
//! Removal is leaf-first with EBUSY retries (the cgroups module's
//! `delete`), then empty parents up to and including the prefix are
//! removed with a plain `rmdir` — never the prefix's parent, never a
//! non-empty cgroup, never a pod cgroup on behalf of a container.
//! A concurrent creation can lose a parent to that `rmdir` between its
//! `mkdir`s; pod cgroup creation retries for that reason.

use std::path::{Path, PathBuf};

use nix::sys::signal::Signal;
use nix::unistd::Pid;
use oci_spec::runtime::LinuxResources;

use super::SandboxError;
use crate::cgroups::{CgroupError, CgroupManager, CgroupStats};
use crate::container::cgroup::manager;

/// Name of the pod init's leaf cgroup.
pub const INIT_LEAF: &str = "berth-pod-init";

/// The cgroup path of pod `id` under `prefix`.
pub fn pod_path(prefix: &Path, id: &str) -> PathBuf {
    prefix.join("pods").join(id)
}

/// Checks a caller's cgroup parent (see the module doc): an absolute
/// cgroupfs path naming a cgroup below the root, outside berth's own
/// `prefix` (whose empty dirs berth prunes).
pub fn validate_parent(parent: &Path, prefix: &Path) -> Result<(), String> {
    if !parent.is_absolute() {
        return Err(format!("{} is not an absolute cgroup path", parent.display()));
    }
    crate::cgroups::validate_cgroups_path(parent).map_err(|e| e.to_string())?;
    if parent.starts_with(prefix) {
        return Err(format!(
            "{} lies inside berth's own cgroup prefix {}",
            parent.display(),
            prefix.display()
        ));
    }
    Ok(())
}

/// One pod's cgroup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodCgroup {
    id: String,
    path: PathBuf,
    /// Directories above `path` (in the hierarchies' filesystems) that the
    /// pod's create made; removed with the pod when empty.
    created_parents: Vec<PathBuf>,
}

impl PodCgroup {
    pub fn new(prefix: &Path, id: &str) -> PodCgroup {
        PodCgroup::at(id, pod_path(prefix, id))
    }

    /// `<parent>/<id>`, for a caller's cgroup parent.
    pub fn under(parent: &Path, id: &str) -> PodCgroup {
        PodCgroup::at(id, parent.join(id))
    }

    /// For a recorded path.
    pub fn at(id: &str, path: PathBuf) -> PodCgroup {
        PodCgroup {
            id: id.to_string(),
            path,
            created_parents: Vec::new(),
        }
    }

    /// For a pod record: its path and the parent dirs its create made.
    pub fn of_record(rec: &super::record::PodRecord) -> PodCgroup {
        PodCgroup {
            created_parents: rec.created_cgroup_parents.clone(),
            ..PodCgroup::at(&rec.id, rec.cgroup_path.clone())
        }
    }

    /// Records `dirs` as made by this pod's create (see [`Self::missing_parents`]).
    pub fn with_created_parents(mut self, dirs: Vec<PathBuf>) -> PodCgroup {
        self.created_parents = dirs;
        self
    }

    /// The directories above the pod cgroup, in every hierarchy, that do
    /// not exist yet: what [`Self::create`] is about to make. Innermost first.
    pub fn missing_parents(&self) -> Result<Vec<PathBuf>, SandboxError> {
        let Some(parent) = self.path.parent().filter(|p| *p != Path::new("/")) else {
            return Ok(Vec::new());
        };
        let mut missing = Vec::new();
        for dir in self.manager(parent)?.paths() {
            let mut cur = Some(dir.as_path());
            while let Some(d) = cur.filter(|d| !d.exists()) {
                missing.push(d.to_path_buf());
                cur = d.parent();
            }
        }
        Ok(missing)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn err(&self) -> impl FnOnce(CgroupError) -> SandboxError + '_ {
        move |source| SandboxError::Cgroup {
            id: self.id.clone(),
            source,
        }
    }

    fn manager(&self, path: &Path) -> Result<Box<dyn CgroupManager>, SandboxError> {
        manager(path).map_err(self.err())
    }

    /// Whether the pod cgroup exists in any hierarchy.
    pub fn exists(&self) -> bool {
        manager(&self.path).is_ok_and(|m| m.paths().iter().any(|p| p.exists()))
    }

    /// Creates the pod cgroup and writes `resources` to it.
    pub fn create(&self, resources: Option<&LinuxResources>) -> Result<(), SandboxError> {
        let m = self.manager(&self.path)?;
        create_retrying(m.as_ref()).map_err(self.err())?;
        if let Some(r) = resources {
            m.apply(r).map_err(self.err())?;
        }
        Ok(())
    }

    /// Creates the pod init's leaf; returns the files the init writes `0`
    /// into to move itself there (cheaper than moving it from outside: see
    /// `CgroupManager::self_join_files`).
    pub fn prepare_init_leaf(&self) -> Result<Vec<PathBuf>, SandboxError> {
        let m = self.manager(&self.path.join(INIT_LEAF))?;
        create_retrying(m.as_ref()).map_err(self.err())?;
        Ok(m.self_join_files())
    }

    /// Usage of the whole pod (every hierarchy counts descendants).
    pub fn stats(&self) -> Result<CgroupStats, SandboxError> {
        self.manager(&self.path)?.stats().map_err(self.err())
    }

    /// Every process left in the pod's cgroups.
    pub fn pids(&self) -> Result<Vec<Pid>, SandboxError> {
        self.manager(&self.path)?.pids().map_err(self.err())
    }

    /// SIGKILLs whatever is left, removes the tree leaf-first, then the
    /// empty parents up to and including `prefix`.
    pub fn delete(&self, prefix: &Path) -> Result<(), SandboxError> {
        let m = self.manager(&self.path)?;
        if !m.pids().map_err(self.err())?.is_empty() {
            m.kill_all(Signal::SIGKILL).map_err(self.err())?;
        }
        m.delete().map_err(self.err())?;
        prune_empty_parents(&self.path, prefix, false);
        self.remove_created_parents(&m.paths());
        Ok(())
    }

    /// `rmdir`s the recorded parents this pod made, innermost first; only
    /// strict ancestors of the pod's own dirs, only when empty. Best effort.
    fn remove_created_parents(&self, own: &[PathBuf]) {
        let mut dirs: Vec<&PathBuf> = self
            .created_parents
            .iter()
            .filter(|d| own.iter().any(|p| p.starts_with(d) && p != *d))
            .collect();
        dirs.sort_by_key(|d| std::cmp::Reverse(d.components().count()));
        for d in dirs {
            match std::fs::remove_dir(d) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => tracing::debug!(cgroup = %d.display(), error = %e, "parent cgroup kept"),
            }
        }
    }
}

/// `create`, retried when a concurrent prune removed a parent mid-way.
fn create_retrying(m: &dyn CgroupManager) -> Result<(), CgroupError> {
    let mut tries = 0;
    loop {
        match m.create() {
            Err(CgroupError::Mkdir { source, .. }) if source.kind() == std::io::ErrorKind::NotFound && tries < 5 => {
                tries += 1;
            }
            other => return other,
        }
    }
}

/// Removes the empty parents of `cgroup` (already removed) that lie under
/// `prefix`, up to and including `prefix`; stops at the first one that is
/// not empty. With `keep_pods`, stops at a pod cgroup (`<prefix>/pods/<x>`:
/// the sandbox removes those). Best effort: failures only end the walk.
pub fn prune_empty_parents(cgroup: &Path, prefix: &Path, keep_pods: bool) {
    if crate::cgroups::validate_cgroups_path(prefix).is_err() || !prefix.is_absolute() {
        return;
    }
    let pods = prefix.join("pods");
    let mut cur = cgroup.parent();
    while let Some(dir) = cur.filter(|d| d.starts_with(prefix)) {
        if keep_pods && dir.parent() == Some(pods.as_path()) {
            return;
        }
        let Ok(m) = manager(dir) else {
            return;
        };
        for p in m.paths() {
            match std::fs::remove_dir(&p) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    tracing::debug!(cgroup = %p.display(), error = %e, "parent cgroup kept");
                    return;
                }
            }
        }
        cur = dir.parent();
    }
}

/// Pod IDs that have a cgroup under `<prefix>/pods` in any hierarchy.
pub fn list_pod_ids(prefix: &Path) -> Result<Vec<String>, SandboxError> {
    let pods = prefix.join("pods");
    let m = manager(&pods).map_err(|source| SandboxError::Cgroup {
        id: String::new(),
        source,
    })?;
    let mut ids: Vec<String> = m
        .paths()
        .iter()
        .filter_map(|p| std::fs::read_dir(p).ok())
        .flat_map(|entries| entries.flatten())
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .filter_map(|e| e.file_name().into_string().ok())
        .collect();
    ids.sort();
    ids.dedup();
    Ok(ids)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pod_paths() {
        assert_eq!(pod_path(Path::new("/berth"), "p1"), PathBuf::from("/berth/pods/p1"));
        let c = PodCgroup::new(Path::new("/x"), "p");
        assert_eq!(c.path(), Path::new("/x/pods/p"));
        assert_eq!(
            PodCgroup::under(Path::new("/kubepods/pod1"), "p").path(),
            Path::new("/kubepods/pod1/p")
        );
    }

    #[test]
    fn caller_parents_are_validated() {
        let prefix = Path::new("/berth");
        validate_parent(Path::new("/kubepods/burstable/pod1"), prefix).unwrap();
        validate_parent(Path::new("/berth-other/x"), prefix).unwrap();
        for bad in ["kubepods", "/", "/a/../b", "/berth", "/berth/pods/x", "/a:b:c"] {
            assert!(validate_parent(Path::new(bad), prefix).is_err(), "{bad}");
        }
    }

    #[test]
    fn only_recorded_strict_ancestors_are_removed() {
        let tmp = tempfile::tempdir().unwrap();
        let own = tmp.path().join("a/b/pod");
        std::fs::create_dir_all(&own).unwrap();
        let other = tmp.path().join("other");
        std::fs::create_dir(&other).unwrap();
        std::fs::remove_dir(&own).unwrap();
        let cg = PodCgroup::at("pod", "/a/b/pod".into()).with_created_parents(vec![
            tmp.path().join("a/b"),
            tmp.path().join("a"),
            other.clone(),
            own.clone(),
        ]);
        cg.remove_created_parents(std::slice::from_ref(&own));
        assert!(
            !tmp.path().join("a").exists(),
            "recorded ancestors removed innermost first"
        );
        assert!(other.exists(), "a recorded dir that is no ancestor stays");
    }
}
