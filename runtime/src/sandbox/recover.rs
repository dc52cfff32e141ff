//! Restart reconciliation: what a restarted berthd finds on disk, and the
//! half-created leftovers it removes.
//!
//! What recovery assumes:
//! - It runs once at startup, before berthd serves requests: no create,
//!   run or remove of the same engine runs meanwhile. Monitors and pod
//!   supervisors of earlier berthds may still be running; they are only
//!   observed, never restarted.
//! - A process is identified by pid + start time ([`crate::state::ProcessId`]);
//!   a zombie counts as dead.
//! - Records are written by temp file + rename, so each file is the old or
//!   the new version. `pod.json{creating}` (or no `pod.json` at all) means
//!   a RunPodSandbox that never finished: such a pod is removed entirely.
//!   So is a pod whose recorded nsfs binds are no longer namespace files
//!   (someone unmounted them; nothing can join it).
//! - A `ready` pod whose init died is *reported*, not removed: the kubelet
//!   sees it NotReady and stops and removes it through the CRI, and the
//!   network teardown still needs its netns.
//! - Containers: a `creating` container whose monitor is gone never became
//!   a container and is removed; every other one is reported with its
//!   status and exit record (exits that happened while berthd was down).
//!   A container dir without `state.json` is removed when nothing but
//!   stale temp files is in it.
//! - Mounts under the pods root that belong to no surviving pod are
//!   unmounted; cgroups under `<prefix>/pods/` without a surviving pod are
//!   killed and removed.
//! - Temp files (`*.tmp<pid>`) whose writer is gone are removed.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use super::cgroup::{self, PodCgroup};
use super::lifecycle::{self, pod_ids, PodStatus};
use super::record::{self, InitExit, RecordStatus};
use super::{mounts, pin, Errors, SandboxError, SandboxPaths};
use crate::container;
use crate::state::{ExitRecord, StateDir, Status};

/// What became of one pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PodVerdict {
    /// Alive and usable.
    Ready,
    /// The record says ready but the pod init is gone.
    InitExited(Option<InitExit>),
    /// Stopped through the API earlier.
    Stopped,
    /// Half-created or unusable: removed (`reason` says which).
    Cleaned { reason: String },
}

/// One pod found on disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodReport {
    pub id: String,
    pub verdict: PodVerdict,
}

/// One container found on disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerReport {
    pub id: String,
    pub status: Status,
    /// Its monitor still runs.
    pub monitor_alive: bool,
    /// Set once stopped: how it ended (possibly while berthd was down).
    pub exit: Option<ExitRecord>,
    /// Half-created and removed.
    pub cleaned: bool,
}

/// Everything recovery found and did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecoveryReport {
    pub pods: Vec<PodReport>,
    pub containers: Vec<ContainerReport>,
    pub cleaned_mounts: Vec<PathBuf>,
    pub cleaned_cgroups: Vec<PathBuf>,
    pub cleaned_temp_files: Vec<PathBuf>,
    /// Container dirs without a state file (a create that died at once).
    pub cleaned_dirs: Vec<PathBuf>,
    /// Cleanup steps that failed; recovery went on past them.
    pub errors: Vec<String>,
}

impl RecoveryReport {
    pub fn pod(&self, id: &str) -> Option<&PodReport> {
        self.pods.iter().find(|p| p.id == id)
    }

    pub fn container(&self, id: &str) -> Option<&ContainerReport> {
        self.containers.iter().find(|c| c.id == id)
    }
}

/// Reconciles the pods under `paths.root` and the containers under
/// `containers` (see the module doc for what is assumed and done).
#[tracing::instrument(skip_all)]
pub fn recover(paths: &SandboxPaths, containers: &StateDir) -> Result<RecoveryReport, SandboxError> {
    let mut report = RecoveryReport::default();
    let mut kept: BTreeSet<String> = BTreeSet::new();
    for id in pod_ids(&paths.root)? {
        let verdict = recover_pod(paths, &id, &mut report);
        if !matches!(verdict, PodVerdict::Cleaned { .. }) {
            kept.insert(id.clone());
        }
        tracing::info!(pod_sandbox_id = %id, ?verdict, "recovered pod sandbox");
        report.pods.push(PodReport { id, verdict });
    }
    recover_containers(containers, &mut report);
    clean_mounts(paths, &kept, &mut report);
    clean_cgroups(paths, &kept, &mut report);
    Ok(report)
}

fn recover_pod(paths: &SandboxPaths, id: &str, report: &mut RecoveryReport) -> PodVerdict {
    let dir = paths.root.join(id);
    remove_stale_temps(&dir, report);
    let rec = match record::load(&dir) {
        Ok(r) => r,
        Err(e) => {
            report.errors.push(e.to_string());
            None
        }
    };
    let reason = match &rec {
        None => Some("no pod record (setup never finished)".to_string()),
        Some(r) if r.status == RecordStatus::Creating => Some("setup never finished".to_string()),
        Some(r) if !r.namespaces.usable() => Some("its namespace binds are gone".to_string()),
        Some(_) => None,
    };
    if let Some(reason) = reason {
        let cg = match &rec {
            Some(r) => PodCgroup::of_record(r),
            None => PodCgroup::new(&paths.cgroup_prefix, id),
        };
        let mut errs = Errors::default();
        errs.keep(pin::unpin(&dir));
        if cg.exists() {
            errs.keep(cg.delete(&paths.cgroup_prefix));
            report.cleaned_cgroups.push(cg.path().to_path_buf());
        }
        if let Err(e) = errs.into_result() {
            report.errors.push(e.to_string());
        }
        return PodVerdict::Cleaned { reason };
    }
    let rec = rec.expect("checked above");
    let stopped = rec.status == RecordStatus::Stopped;
    let state = lifecycle::state_of(&dir, rec);
    match state.status {
        PodStatus::Ready => PodVerdict::Ready,
        PodStatus::NotReady if stopped => PodVerdict::Stopped,
        PodStatus::NotReady => PodVerdict::InitExited(state.init_exit),
    }
}

fn recover_containers(dir: &StateDir, report: &mut RecoveryReport) {
    // Dirs without state.json: half-made by a create that died at once.
    if let Ok(entries) = std::fs::read_dir(dir.root()) {
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if !e.file_type().is_ok_and(|t| t.is_dir()) || crate::state::validate_id(&name).is_err() {
                continue;
            }
            remove_stale_temps(&e.path(), report);
            if !dir.exists(&name) && std::fs::remove_dir(e.path()).is_ok() {
                report.cleaned_dirs.push(e.path());
            }
        }
    }
    let ids = match dir.list() {
        Ok(ids) => ids,
        Err(e) => {
            report.errors.push(e.to_string());
            return;
        }
    };
    for id in ids {
        let c = match container::query::query(dir, &id) {
            Ok(c) => c,
            Err(e) => {
                report.errors.push(e.to_string());
                continue;
            }
        };
        let monitor_alive = c.state.monitor.is_some_and(|m| m.is_alive());
        let half_created = c.state.status == Status::Creating && !monitor_alive;
        let mut cleaned = false;
        if half_created {
            match container::delete::delete(dir, &id, true) {
                Ok(()) => cleaned = true,
                Err(e) => report.errors.push(e.to_string()),
            }
        }
        tracing::info!(container_id = %id, status = %c.status, monitor_alive, cleaned, "recovered container");
        report.containers.push(ContainerReport {
            id,
            status: c.status,
            monitor_alive,
            exit: c.exit,
            cleaned,
        });
    }
}

/// Unmounts whatever is mounted under the pods root outside kept pods.
fn clean_mounts(paths: &SandboxPaths, kept: &BTreeSet<String>, report: &mut RecoveryReport) {
    let found = match mounts::mounts_under(Path::new(mounts::MOUNTINFO), &paths.root) {
        Ok(m) => m,
        Err(e) => {
            report.errors.push(e.to_string());
            return;
        }
    };
    for m in found {
        let Ok(rel) = m.strip_prefix(&paths.root) else {
            continue;
        };
        let owner = rel
            .components()
            .next()
            .map(|c| c.as_os_str().to_string_lossy().into_owned());
        match owner {
            // The pods root's own self-bind.
            None => continue,
            Some(pod) if kept.contains(&pod) => continue,
            Some(_) => {}
        }
        match nix::mount::umount2(&m, nix::mount::MntFlags::MNT_DETACH) {
            Ok(()) => report.cleaned_mounts.push(m),
            Err(nix::errno::Errno::EINVAL) | Err(nix::errno::Errno::ENOENT) => {}
            Err(e) => report.errors.push(format!("unmount {}: {e}", m.display())),
        }
    }
}

/// Removes pod cgroups whose pod is gone.
fn clean_cgroups(paths: &SandboxPaths, kept: &BTreeSet<String>, report: &mut RecoveryReport) {
    let ids = match cgroup::list_pod_ids(&paths.cgroup_prefix) {
        Ok(ids) => ids,
        Err(e) => {
            report.errors.push(e.to_string());
            return;
        }
    };
    for id in ids.into_iter().filter(|id| !kept.contains(id)) {
        let cg = PodCgroup::new(&paths.cgroup_prefix, &id);
        match cg.delete(&paths.cgroup_prefix) {
            Ok(()) => {
                if !report.cleaned_cgroups.iter().any(|p| p == cg.path()) {
                    report.cleaned_cgroups.push(cg.path().to_path_buf());
                }
            }
            Err(e) => report.errors.push(e.to_string()),
        }
    }
}

fn remove_stale_temps(dir: &Path, report: &mut RecoveryReport) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if e.file_type().is_ok_and(|t| t.is_file())
            && record::is_stale_temp(&name)
            && std::fs::remove_file(e.path()).is_ok()
        {
            report.cleaned_temp_files.push(e.path());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn temp_files_of_dead_writers_go() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::write(tmp.path().join(format!("pod.tmp{}", i32::MAX)), "x").unwrap();
        std::fs::write(tmp.path().join(format!("pod.tmp{}", std::process::id())), "x").unwrap();
        std::fs::write(tmp.path().join("pod.json"), "{}").unwrap();
        let mut report = RecoveryReport::default();
        remove_stale_temps(tmp.path(), &mut report);
        assert_eq!(report.cleaned_temp_files.len(), 1);
        assert_eq!(std::fs::read_dir(tmp.path()).unwrap().count(), 2);
    }
}
