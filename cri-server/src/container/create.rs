//! CreateContainer: validate, resolve the image, reserve the name, build the
//! bundle (spec over the image's layers) and have the engine set the
//! container up, its init waiting before execve. Undone on any failure.

use std::collections::HashMap;
use std::path::{Component, Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use berth_runtime::engine::{CreateOptions, OverlayRootfs, StdioMode};
use k8s_cri::v1::{ContainerConfig, CreateContainerRequest, CreateContainerResponse};
use tracing::Instrument;

use super::{container_dir, detached};
use crate::error::CriError;
use crate::oci::{self, ImageContext, LayerFiles, SpecOptions};
use crate::services::{blocking, new_id, now_nanos, Services};
use crate::store::{container_name_key, ContainerRecord, ContainerState, PodRecord, PodState, ProcessUser};

/// Layer dirs of containers being created, not yet in a record: kept out of
/// image garbage collection too (see [`super::recover`]).
pub(super) fn creating_layers() -> &'static Mutex<HashMap<String, Vec<PathBuf>>> {
    static CREATING: OnceLock<Mutex<HashMap<String, Vec<PathBuf>>>> = OnceLock::new();
    CREATING.get_or_init(Default::default)
}

pub async fn create(s: &Arc<Services>, request: CreateContainerRequest) -> Result<CreateContainerResponse, CriError> {
    let pod_id = request.pod_sandbox_id.clone();
    let span = tracing::info_span!("create_container", pod_sandbox_id = %pod_id, container_id = tracing::field::Empty);
    let s = s.clone();
    detached(async move { create_detached(&s, request).await }.instrument(span)).await
}

async fn create_detached(
    s: &Arc<Services>,
    request: CreateContainerRequest,
) -> Result<CreateContainerResponse, CriError> {
    let config = request
        .config
        .ok_or_else(|| CriError::invalid("config", "must be set"))?;
    let name = config
        .metadata
        .as_ref()
        .map(|m| m.name.clone())
        .filter(|n| !n.is_empty())
        .ok_or_else(|| CriError::invalid("config.metadata.name", "must be set"))?;
    let image_name = config
        .image
        .as_ref()
        .map(|i| i.image.clone())
        .filter(|i| !i.is_empty())
        .ok_or_else(|| CriError::invalid("config.image.image", "must be set"))?;
    if request.pod_sandbox_id.is_empty() {
        return Err(CriError::invalid("pod_sandbox_id", "must be set"));
    }
    let pod = s
        .store
        .pod(&request.pod_sandbox_id)
        .ok_or_else(|| CriError::not_found("pod sandbox", &request.pod_sandbox_id))?;
    if pod.state != PodState::Ready {
        return Err(CriError::FailedPrecondition(format!(
            "pod sandbox {} is not ready: containers can only be created in a ready pod",
            pod.id
        )));
    }
    let log_path = log_path(&pod, &config)?;

    let name_key = ContainerRecord::name_key_of(&config, &pod.config);
    let _name_lock = s.locks.lock(&format!("ctrname/{name_key}")).await;
    if let Some(holder) = s.store.name_holder(&container_name_key(&name_key))? {
        // A kubelet retry of a call that timed out on its side gets the
        // container the first call made.
        if let Some(existing) = s.store.container(&holder) {
            if existing.pod_id == pod.id && existing.config == config {
                tracing::info!(container_id = %holder, "CreateContainer retry: returning the existing container");
                return Ok(CreateContainerResponse { container_id: holder });
            }
        }
        return Err(CriError::AlreadyExists(format!(
            "container name {name_key:?} is already in use by container {holder}: remove it first"
        )));
    }

    let image = s
        .images
        .status(&image_name)?
        .ok_or_else(|| CriError::not_found("image", &image_name))?;
    let sandbox = crate::sandbox::container_context(s, &pod)?;

    let id = new_id();
    tracing::Span::current().record("container_id", id.as_str());
    let dir = container_dir(s, &id);
    let image_id = image.id.clone();
    let stop_signal = image.config.config().as_ref().and_then(|c| c.stop_signal().clone());
    let lower_dirs = {
        let (s, image_id, id) = (s.clone(), image.id.clone(), id.clone());
        blocking(move || {
            let layers = s.images.layer_paths(&image_id)?;
            creating_layers()
                .lock()
                .expect("creating layers")
                .insert(id, layers.clone());
            Ok(layers)
        })
        .await?
    };

    let built = {
        let (s, id, dir, config, lower_dirs, log_path) = (
            s.clone(),
            id.clone(),
            dir.clone(),
            config.clone(),
            lower_dirs.clone(),
            log_path.clone(),
        );
        blocking(move || {
            let result = build(&s, &id, &dir, &config, &sandbox, &image, lower_dirs, log_path);
            if result.is_err() {
                remove_dir(&dir);
            }
            result
        })
        .await
    };
    let user = match built {
        Ok(user) => user,
        Err(e) => {
            creating_layers().lock().expect("creating layers").remove(&id);
            return Err(e);
        }
    };

    let record = ContainerRecord {
        id: id.clone(),
        pod_id: pod.id.clone(),
        name_key,
        config,
        image_id,
        image_ref: image_name.clone(),
        state: ContainerState::Created,
        created_at: now_nanos(),
        started_at: 0,
        finished_at: 0,
        exit_code: 0,
        reason: String::new(),
        message: String::new(),
        log_path,
        stop_signal,
        resources: None,
        lower_dirs,
        user: Some(user),
    };
    let inserted = s.store.insert_container(&record);
    creating_layers().lock().expect("creating layers").remove(&id);
    // A pod removed meanwhile takes no new container.
    let pod_gone = inserted.is_ok() && s.store.pod(&pod.id).is_none();
    if inserted.is_err() || pod_gone {
        let (s2, id2) = (s.clone(), id.clone());
        let undo = blocking(move || {
            s2.engine.delete(&id2, true)?;
            remove_dir(&container_dir(&s2, &id2));
            Ok(())
        })
        .await;
        if let Err(e) = &undo {
            tracing::warn!(container_id = %id, error = %e, "rollback of a half-created container failed");
        }
        if pod_gone {
            s.store.delete_container(&id)?;
            return Err(CriError::not_found("pod sandbox", &pod.id));
        }
        inserted?;
    }
    tracing::info!(container_id = %id, name = %name, image = %record.image_id, "container created");
    Ok(CreateContainerResponse { container_id: id })
}

/// Writes the bundle and has the engine create the container; returns the
/// user its process runs as (as the spec says).
#[allow(clippy::too_many_arguments)]
fn build(
    s: &Services,
    id: &str,
    dir: &Path,
    config: &ContainerConfig,
    sandbox: &oci::SandboxContext,
    image: &berth_images::Image,
    lower_dirs: Vec<PathBuf>,
    log_path: Option<PathBuf>,
) -> Result<ProcessUser, CriError> {
    let bundle = dir.join("bundle");
    let rootfs = bundle.join("rootfs");
    let upper = dir.join("fs/upper");
    let work = dir.join("fs/work");
    for d in [&rootfs, &upper, &work] {
        std::fs::create_dir_all(d).map_err(|e| io_err(d, e))?;
    }
    let files = LayerFiles::new(lower_dirs.clone());
    let image_ctx = ImageContext {
        id: image.id.clone(),
        config: &image.config,
        files: &files,
    };
    let mut opts = SpecOptions::new(&rootfs);
    opts.cgroup_namespace = cgroup_namespace();
    opts.rlimit_nofile = opts.rlimit_nofile.min(max_nofile());
    let spec = oci::container_spec(id, config, sandbox, &image_ctx, &opts)?;
    let user = process_user(&spec);
    let spec_path = bundle.join("config.json");
    spec.save(&spec_path)
        .map_err(|e| CriError::Internal(format!("write {}: {e}", spec_path.display())))?;
    if let Some(log) = &log_path {
        if let Some(parent) = log.parent() {
            std::fs::create_dir_all(parent).map_err(|e| io_err(parent, e))?;
        }
    }
    s.engine.create(&CreateOptions {
        id: id.to_string(),
        bundle,
        stdio: StdioMode::Monitor {
            log_path,
            stdin: config.stdin,
            stdin_once: config.stdin_once,
        },
        pid_file: None,
        overlay: Some(OverlayRootfs {
            lower_dirs,
            upper_dir: upper,
            work_dir: work,
        }),
    })?;
    Ok(user)
}

/// The spec's process user, in the record's terms.
pub(super) fn process_user(spec: &oci_spec::runtime::Spec) -> ProcessUser {
    let user = spec.process().as_ref().map(|p| p.user().clone()).unwrap_or_default();
    ProcessUser {
        uid: user.uid(),
        gid: user.gid(),
        supplemental_groups: user.additional_gids().clone().unwrap_or_default(),
    }
}

/// Whether containers get a cgroup namespace on this host (probed once).
fn cgroup_namespace() -> bool {
    static MODE: OnceLock<bool> = OnceLock::new();
    *MODE.get_or_init(|| {
        berth_runtime::cgroups::detect(Path::new("/proc/self/mountinfo"))
            .map(|layout| oci::cgroup_namespace_for(layout.mode()))
            .unwrap_or(false)
    })
}

/// The highest RLIMIT_NOFILE a container can get from here: any value with
/// CAP_SYS_RESOURCE, else no more than berthd's own hard limit (raising a
/// hard limit needs the capability, which some hosts withhold even from root).
fn max_nofile() -> u64 {
    static MAX: OnceLock<u64> = OnceLock::new();
    *MAX.get_or_init(|| {
        let cap_sys_resource = berth_runtime::capabilities::index_of(oci_spec::runtime::Capability::SysResource);
        let has_cap = berth_runtime::capabilities::current_sets()
            .is_ok_and(|(effective, _, _)| effective & (1 << cap_sys_resource) != 0);
        let own_hard = nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)
            .map(|(_, hard)| hard)
            .unwrap_or(u64::MAX);
        if has_cap {
            u64::MAX
        } else {
            tracing::info!(
                limit = own_hard,
                "no CAP_SYS_RESOURCE: containers' RLIMIT_NOFILE capped at berthd's"
            );
            own_hard
        }
    })
}

/// The container's CRI log file: the pod's `log_directory` joined with the
/// config's `log_path`, which must stay inside it.
pub(super) fn log_path(pod: &PodRecord, config: &ContainerConfig) -> Result<Option<PathBuf>, CriError> {
    if config.log_path.is_empty() {
        return Ok(None);
    }
    let rel = Path::new(&config.log_path);
    let escapes = rel
        .components()
        .any(|c| !matches!(c, Component::Normal(_) | Component::CurDir));
    if escapes || config.log_path.contains('\0') {
        return Err(CriError::invalid(
            "log_path",
            format!(
                "{:?} must be relative to the pod's log_directory without '..'",
                config.log_path
            ),
        ));
    }
    let dir = &pod.config.log_directory;
    if dir.is_empty() {
        return Err(CriError::invalid(
            "log_path",
            format!("{:?} given but pod {} has no log_directory", config.log_path, pod.id),
        ));
    }
    Ok(Some(Path::new(dir).join(rel)))
}

pub(super) fn remove_dir(dir: &Path) {
    // The engine unmounts the rootfs it mounted; a leftover mount (crash
    // mid-create) is detached first so removal cannot reach into layers.
    let _ = nix::mount::umount2(&dir.join("bundle/rootfs"), nix::mount::MntFlags::MNT_DETACH);
    if let Err(e) = std::fs::remove_dir_all(dir) {
        if e.kind() != std::io::ErrorKind::NotFound {
            tracing::warn!(dir = %dir.display(), error = %e, "cannot remove container dir");
        }
    }
}

fn io_err(path: &Path, e: std::io::Error) -> CriError {
    CriError::Internal(format!("{}: {e}", path.display()))
}
