//! A whole pod: run (record, cgroup, pin, init into the cgroup), stop (the
//! pod init), remove (init, leftover processes, cgroup, namespaces, dir),
//! status. [`crate::engine::Engine`] exposes these.

use std::path::{Path, PathBuf};
use std::time::Duration;

use oci_spec::runtime::LinuxResources;

use super::cgroup::PodCgroup;
use super::pin::{self, PinRequest, PinnedNamespaces};
use super::record::{self, InitExit, PodRecord, RecordStatus};
use super::{validate_id, Errors, SandboxError, SandboxPaths};
use crate::cgroups::CgroupStats;

/// Inputs of [`run`].
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PodSandboxSpec {
    pub id: String,
    pub namespaces: PinRequest,
    /// Pod-level resources for the pod cgroup (the CRI layer folds
    /// `LinuxPodSandboxConfig.resources` and `overhead` into this).
    pub resources: Option<LinuxResources>,
    /// The caller's cgroup parent (the kubelet's `cgroup_parent`): the pod
    /// cgroup is then `<parent>/<id>` instead of `<prefix>/pods/<id>` (see
    /// [`super::cgroup`]). Must pass [`super::cgroup::validate_parent`].
    pub cgroup_parent: Option<PathBuf>,
}

/// A pod as [`run`] made it.
#[derive(Debug, Clone, PartialEq)]
pub struct PodSandbox {
    pub id: String,
    pub dir: PathBuf,
    pub namespaces: PinnedNamespaces,
    /// The cgroup parent for the pod's containers.
    pub cgroup_path: PathBuf,
    pub created: String,
}

/// Ready or not, as the CRI reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PodStatus {
    Ready,
    NotReady,
}

/// A pod as [`status`] sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct PodSandboxState {
    pub record: PodRecord,
    pub status: PodStatus,
    /// Whether the pod init (when the pod has one) is alive.
    pub init_alive: bool,
    /// How the pod init ended, when it did.
    pub init_exit: Option<InitExit>,
    /// Whether every nsfs bind is still a namespace file.
    pub namespaces_usable: bool,
}

fn pod_dir(paths: &SandboxPaths, id: &str) -> Result<PathBuf, SandboxError> {
    validate_id(id)?;
    Ok(paths.root.join(id))
}

/// The namespace paths [`run`] will make for pod `id` with `req`.
pub fn planned_namespaces(paths: &SandboxPaths, id: &str, req: &PinRequest) -> Result<PinnedNamespaces, SandboxError> {
    Ok(pin::planned_paths(&pod_dir(paths, id)?, req))
}

/// Creates the pod: `pod.json{creating}`, the cgroup with its resources
/// and the pod init's leaf, pinned namespaces with the pod init (which
/// joins its leaf itself), `pod.json{ready}`.
/// Any failure undoes everything (both errors kept if that fails too).
#[tracing::instrument(skip_all, fields(pod_sandbox_id = %spec.id))]
pub fn run(paths: &SandboxPaths, spec: &PodSandboxSpec) -> Result<PodSandbox, SandboxError> {
    let id = spec.id.as_str();
    let dir = pod_dir(paths, id)?;
    if let Some(parent) = &spec.cgroup_parent {
        super::cgroup::validate_parent(parent, &paths.cgroup_prefix).map_err(|reason| {
            SandboxError::InvalidRequest {
                dir: dir.clone(),
                reason: format!("cgroup parent: {reason}"),
            }
        })?;
    }
    super::mounts::ensure_private_root(&paths.root)?;
    match std::fs::create_dir(&dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => return Err(SandboxError::Exists(id.to_string())),
        Err(source) => {
            return Err(SandboxError::Io {
                op: "create",
                path: dir,
                source,
            })
        }
    }
    let mut cg = match &spec.cgroup_parent {
        Some(parent) => PodCgroup::under(parent, id),
        None => PodCgroup::new(&paths.cgroup_prefix, id),
    };
    let mut rec = PodRecord {
        id: id.to_string(),
        status: RecordStatus::Creating,
        created: crate::state::now_rfc3339(),
        cgroup_path: cg.path().to_path_buf(),
        namespaces: PinnedNamespaces::default(),
        created_cgroup_parents: Vec::new(),
    };
    let made = (|| {
        if spec.cgroup_parent.is_some() {
            // Recorded before the create makes them: a crash right after
            // still leaves recovery what to take back.
            rec.created_cgroup_parents = cg.missing_parents()?;
            cg = cg.clone().with_created_parents(rec.created_cgroup_parents.clone());
        }
        record::save(&dir, &rec)?;
        cg.create(spec.resources.as_ref())?;
        let join = if spec.namespaces.pid {
            cg.prepare_init_leaf()?
        } else {
            Vec::new()
        };
        rec.namespaces = pin::pin_joining(&paths.pod_init_binary, &dir, &spec.namespaces, &join)?;
        rec.status = RecordStatus::Ready;
        record::save(&dir, &rec)
    })();
    if let Err(e) = made {
        tracing::warn!(error = %e, "pod sandbox setup failed; rolling back");
        let mut cleanup = Errors::default();
        cleanup.keep(pin::unpin(&dir));
        cleanup.keep(cg.delete(&paths.cgroup_prefix));
        return Err(e.with_cleanup(cleanup.into_result()));
    }
    tracing::debug!(dir = %dir.display(), "pod sandbox ready");
    Ok(PodSandbox {
        id: id.to_string(),
        dir,
        namespaces: rec.namespaces,
        cgroup_path: rec.cgroup_path,
        created: rec.created,
    })
}

/// Loads the record of pod `id`.
fn load(paths: &SandboxPaths, id: &str) -> Result<(PathBuf, PodRecord), SandboxError> {
    let dir = pod_dir(paths, id)?;
    match record::load(&dir)? {
        Some(rec) => Ok((dir, rec)),
        None => Err(SandboxError::NotFound(id.to_string())),
    }
}

/// Stops the pod init (SIGTERM, `grace`, SIGKILL) — which ends every
/// process of a shared PID namespace — and marks the pod stopped. The
/// namespaces stay pinned (the network is torn down with the netns path
/// after this). A stopped or unknown pod is fine.
#[tracing::instrument(skip(paths))]
pub fn stop(paths: &SandboxPaths, id: &str, grace: Duration) -> Result<(), SandboxError> {
    let (dir, mut rec) = match load(paths, id) {
        Ok(found) => found,
        Err(SandboxError::NotFound(_)) => return Ok(()),
        Err(e) => return Err(e),
    };
    if let Some(p) = record::load_init(&dir) {
        pin::stop_init(&dir, &p, grace)?;
    }
    if rec.status != RecordStatus::Stopped {
        rec.status = RecordStatus::Stopped;
        record::save(&dir, &rec)?;
    }
    Ok(())
}

/// Removes the pod: stops its init, kills what is left in its cgroup,
/// removes the cgroup (and empty berth parents), unpins the namespaces and
/// removes its dir. The CRI layer deletes the pod's containers first. An
/// unknown pod is fine; a failed step leaves the rest for a retry.
#[tracing::instrument(skip(paths))]
pub fn remove(paths: &SandboxPaths, id: &str) -> Result<(), SandboxError> {
    let dir = pod_dir(paths, id)?;
    if !dir.exists() {
        // The cgroup may have outlived a crash in an earlier remove.
        return PodCgroup::new(&paths.cgroup_prefix, id).delete(&paths.cgroup_prefix);
    }
    let cg = match record::load(&dir) {
        Ok(Some(rec)) => PodCgroup::of_record(&rec),
        _ => PodCgroup::new(&paths.cgroup_prefix, id),
    };
    if let Some(p) = record::load_init(&dir) {
        pin::stop_init(&dir, &p, pin::INIT_STOP_GRACE)?;
    }
    cg.delete(&paths.cgroup_prefix)?;
    pin::unpin(&dir)
}

/// The pod's record and liveness.
pub fn status(paths: &SandboxPaths, id: &str) -> Result<PodSandboxState, SandboxError> {
    let (dir, record) = load(paths, id)?;
    Ok(state_of(&dir, record))
}

pub(crate) fn state_of(dir: &Path, record: PodRecord) -> PodSandboxState {
    let init_alive = record.namespaces.init.is_none_or(|p| p.is_alive());
    let namespaces_usable = record.namespaces.usable();
    let ready = record.status == RecordStatus::Ready && init_alive && namespaces_usable;
    PodSandboxState {
        init_exit: record::load_init_exit(dir),
        status: if ready { PodStatus::Ready } else { PodStatus::NotReady },
        init_alive: record.namespaces.init.is_some() && init_alive,
        namespaces_usable,
        record,
    }
}

/// Every pod with a record.
pub fn list(paths: &SandboxPaths) -> Result<Vec<PodSandboxState>, SandboxError> {
    let mut out = Vec::new();
    for id in pod_ids(&paths.root)? {
        match status(paths, &id) {
            Ok(s) => out.push(s),
            Err(SandboxError::NotFound(_)) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(out)
}

/// Names of the pod dirs under `root` (valid IDs only), sorted.
pub(crate) fn pod_ids(root: &Path) -> Result<Vec<String>, SandboxError> {
    let entries = match std::fs::read_dir(root) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => {
            return Err(SandboxError::Io {
                op: "list",
                path: root.to_path_buf(),
                source,
            })
        }
    };
    let mut ids: Vec<String> = entries
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|id| validate_id(id).is_ok())
        .collect();
    ids.sort();
    Ok(ids)
}

/// Usage of the whole pod (containers under its cgroup included).
pub fn stats(paths: &SandboxPaths, id: &str) -> Result<CgroupStats, SandboxError> {
    let (_, rec) = load(paths, id)?;
    PodCgroup::at(id, rec.cgroup_path).stats()
}
