//! CRI `CreateContainerRequest` → OCI runtime [`Spec`]: the one place where
//! a container's CRI config becomes what berth's engine runs.
//!
//! [`container_spec`] is pure apart from what it asks through its inputs:
//! the image's files ([`ImageFiles`], for `/etc/passwd` and `/etc/group`) and
//! the node ([`Host`], for device nodes and Localhost seccomp profiles).
//! [`linux_resources`] is also what `UpdateContainerResources` applies.
//! Bad input is an `InvalidArgument` naming the CRI field
//! (`linux.security_context.capabilities.add_capabilities: [2] "FLY" is not
//! a known capability`).
//!
//! # The mapping
//!
//! | CRI | OCI spec | notes |
//! |-----|----------|-------|
//! | `command`, `args` + image Entrypoint/Cmd | `process.args` | kubelet/containerd merge rules ([`process`]) |
//! | `envs` + image Env | `process.env` | `PATH`, `HOSTNAME`, image, CRI; same key replaced in place |
//! | `working_dir` / image WorkingDir | `process.cwd` | else `/` |
//! | `tty` | `process.terminal` | `stdin`/`stdin_once` are the monitor's |
//! | `run_as_user`/`run_as_username`/`run_as_group` / image USER | `process.user` | names from the image's `/etc/passwd`, `/etc/group` ([`user`]) |
//! | `supplemental_groups`(`_policy`) | `process.user.additionalGids` | plus the user's `/etc/group` groups with Merge |
//! | `capabilities` | `process.capabilities` | default 14, ALL semantics ([`security`]) |
//! | `no_new_privs` | `process.noNewPrivileges` | |
//! | — | `process.rlimits` | `RLIMIT_NOFILE` = [`SpecOptions::rlimit_nofile`] (1048576) |
//! | `resources.oom_score_adj` | `process.oomScoreAdj` | -1000..=1000; the engine clamps further |
//! | `readonly_rootfs` | `root.readonly` | also makes the pod's `/etc` files read-only |
//! | `mounts` + pod files | `mounts` | system mounts, binds sorted by depth ([`mounts`]) |
//! | `masked_paths`, `readonly_paths` | `linux.maskedPaths`, `linux.readonlyPaths` | defaults when empty, none when privileged |
//! | `privileged` | all of: every capability, no seccomp, no masked paths, rw sysfs/cgroupfs, host devices | needs a privileged pod |
//! | `seccomp` / `seccomp_profile_path` | `linux.seccomp` | RuntimeDefault = berth's profile, Localhost = JSON file |
//! | `apparmor` / `apparmor_profile` | — | AppArmor is off: Localhost refused |
//! | `selinux_options`, `selinux_relabel` | — | SELinux is off: accepted, ignored |
//! | `namespace_options` + pod | `linux.namespaces` | [`namespaces`] |
//! | `resources` | `linux.resources` | [`resources`] |
//! | `devices` | `linux.devices` + `linux.resources.devices` | [`devices`] |
//! | pod `sysctls` | `linux.sysctl` | |
//! | pod `cgroup_parent` | `linux.cgroupsPath` | `<cgroup_parent>/<container id>` |
//! | metadata, image | `annotations` | containerd's `io.kubernetes.cri.*` keys |
//! | `labels`, `annotations`, `log_path` | — | kept by the container record, not the spec |
//!
//! The spec sets no `hostname`: the container joins the pod's UTS
//! namespace, which already carries it (or the host's, for host network).

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;

use k8s_cri::v1::{ContainerConfig, PodSandboxConfig};
use oci_spec::image::ImageConfiguration;
use oci_spec::runtime::{Linux, PosixRlimitBuilder, PosixRlimitType, Process, Root, Spec, User};

use crate::error::CriError;

pub mod defaults;
pub mod devices;
pub mod host;
pub mod image_files;
pub mod mounts;
pub mod namespaces;
pub mod process;
pub mod resources;
pub mod security;
pub mod user;

#[cfg(test)]
mod test_support;
#[cfg(test)]
mod tests;

pub use host::{Host, HostDevice, SystemHost};
pub use image_files::{ImageFiles, ImageFilesError, LayerFiles};
pub use resources::linux_resources;

/// Annotation keys containerd sets on every container spec.
pub mod annotations {
    pub const CONTAINER_TYPE: &str = "io.kubernetes.cri.container-type";
    pub const CONTAINER_TYPE_CONTAINER: &str = "container";
    pub const SANDBOX_ID: &str = "io.kubernetes.cri.sandbox-id";
    pub const SANDBOX_NAME: &str = "io.kubernetes.cri.sandbox-name";
    pub const SANDBOX_NAMESPACE: &str = "io.kubernetes.cri.sandbox-namespace";
    pub const SANDBOX_UID: &str = "io.kubernetes.cri.sandbox-uid";
    pub const CONTAINER_NAME: &str = "io.kubernetes.cri.container-name";
    pub const IMAGE_NAME: &str = "io.kubernetes.cri.image-name";
}

/// What a container needs of its pod (the pod code fills it in).
#[derive(Debug, Clone)]
pub struct SandboxContext {
    pub id: String,
    /// The pod's hostname (the node's for host-network pods): `HOSTNAME`.
    pub hostname: String,
    /// Pinned nsfs files; `None` = the host's namespace.
    pub netns: Option<PathBuf>,
    pub ipcns: Option<PathBuf>,
    pub utsns: Option<PathBuf>,
    /// The pod's shared PID namespace (pod PID mode `POD`).
    pub pidns: Option<PathBuf>,
    /// e.g. `/berth/pods/<pod id>`; the container's cgroup goes below it.
    pub cgroup_parent: String,
    /// Files the pod code wrote, bind-mounted into every container.
    pub resolv_conf: Option<PathBuf>,
    pub hosts: PathBuf,
    pub hostname_file: PathBuf,
    /// The pod's `/dev/shm` tmpfs; `None` with host IPC (the host's is bound).
    pub shm: Option<PathBuf>,
    pub sysctls: BTreeMap<String, String>,
    pub config: PodSandboxConfig,
}

/// The container's image.
pub struct ImageContext<'a> {
    pub id: String,
    pub config: &'a ImageConfiguration,
    /// The image's files (its layers), for user and group lookups.
    pub files: &'a dyn ImageFiles,
}

/// Everything else the translation needs: the node and the daemon's
/// settings, plus the container's rootfs.
#[derive(Debug, Clone)]
pub struct SpecOptions {
    /// The container's rootfs (the engine mounts the overlay there).
    pub rootfs: PathBuf,
    /// For a PID namespace mode `TARGET`: the target container's namespace
    /// (e.g. `/proc/<its pid>/ns/pid`).
    pub target_pid_ns: Option<PathBuf>,
    /// Where relative Localhost seccomp references are looked up.
    pub seccomp_profile_root: PathBuf,
    /// The capability set of a container that asks for nothing else.
    pub default_capabilities: Vec<String>,
    /// `RLIMIT_NOFILE` (soft and hard) of the container process.
    pub rlimit_nofile: u64,
    /// Whether unprivileged containers get a cgroup namespace: set it with
    /// [`cgroup_namespace_for`] from the host's cgroup mode (containerd
    /// gives one on cgroup v2 hosts only). Off by default.
    pub cgroup_namespace: bool,
    pub host: Arc<dyn Host>,
}

impl SpecOptions {
    /// Options with berth's defaults for a container whose rootfs is `rootfs`.
    pub fn new(rootfs: impl Into<PathBuf>) -> SpecOptions {
        SpecOptions {
            rootfs: rootfs.into(),
            target_pid_ns: None,
            seccomp_profile_root: PathBuf::from("/var/lib/kubelet/seccomp"),
            default_capabilities: defaults::DEFAULT_CAPABILITIES.iter().map(|c| c.to_string()).collect(),
            rlimit_nofile: defaults::DEFAULT_RLIMIT_NOFILE,
            cgroup_namespace: false,
            host: Arc::new(SystemHost::default()),
        }
    }
}

/// Whether containers get a cgroup namespace on a host in `mode`: only on
/// pure cgroup v2 hosts, as containerd (on v1 a cgroup namespace would hide
/// the hierarchies tools inside expect).
pub fn cgroup_namespace_for(mode: berth_runtime::cgroups::CgroupMode) -> bool {
    mode == berth_runtime::cgroups::CgroupMode::Unified
}

impl From<ImageFilesError> for CriError {
    fn from(e: ImageFilesError) -> CriError {
        CriError::Internal(e.to_string())
    }
}

/// Normalises an absolute container path (`//a/./b/` → `/a/b`), refusing
/// relative paths and any `..`; the error is the reason, for the caller to
/// put after the field name.
pub(crate) fn clean_container_path(path: &str) -> Result<String, String> {
    if !path.starts_with('/') {
        return Err(format!("{path:?} must be absolute"));
    }
    if path.contains('\0') {
        return Err(format!("{path:?} contains NUL"));
    }
    let mut out = String::with_capacity(path.len());
    for c in path.split('/').filter(|c| !c.is_empty() && *c != ".") {
        if c == ".." {
            return Err(format!("{path:?} must not contain '..'"));
        }
        out.push('/');
        out.push_str(c);
    }
    if out.is_empty() {
        return Err(format!("{path:?} names the root"));
    }
    Ok(out)
}

fn check_id(id: &str) -> Result<(), CriError> {
    if id.is_empty() || id.contains('/') || id == "." || id == ".." {
        return Err(CriError::Internal(format!("container id {id:?} cannot name a cgroup")));
    }
    Ok(())
}

fn annotations(config: &ContainerConfig, sandbox: &SandboxContext) -> Result<HashMap<String, String>, CriError> {
    let meta = config
        .metadata
        .as_ref()
        .filter(|m| !m.name.is_empty())
        .ok_or_else(|| CriError::invalid("metadata.name", "must be set"))?;
    let image = config.image.as_ref().map(|i| {
        if i.user_specified_image.is_empty() {
            i.image.clone()
        } else {
            i.user_specified_image.clone()
        }
    });
    let pod = sandbox.config.metadata.clone().unwrap_or_default();
    let mut a = HashMap::new();
    a.insert(
        annotations::CONTAINER_TYPE.to_string(),
        annotations::CONTAINER_TYPE_CONTAINER.to_string(),
    );
    a.insert(annotations::SANDBOX_ID.to_string(), sandbox.id.clone());
    a.insert(annotations::SANDBOX_NAME.to_string(), pod.name);
    a.insert(annotations::SANDBOX_NAMESPACE.to_string(), pod.namespace);
    a.insert(annotations::SANDBOX_UID.to_string(), pod.uid);
    a.insert(annotations::CONTAINER_NAME.to_string(), meta.name.clone());
    a.insert(annotations::IMAGE_NAME.to_string(), image.unwrap_or_default());
    Ok(a)
}

/// Translates a container's CRI config into the OCI spec the engine runs
/// (see the module doc for the mapping).
pub fn container_spec(
    id: &str,
    config: &ContainerConfig,
    sandbox: &SandboxContext,
    image: &ImageContext<'_>,
    opts: &SpecOptions,
) -> Result<Spec, CriError> {
    check_id(id)?;
    if !sandbox.cgroup_parent.starts_with('/') {
        return Err(CriError::Internal(format!(
            "pod {}: cgroup parent {:?} is not absolute",
            sandbox.id, sandbox.cgroup_parent
        )));
    }
    let annotations = annotations(config, sandbox)?;
    let sc = config.linux.as_ref().and_then(|l| l.security_context.as_ref());
    let privileged = security::check_privileged(sc, &sandbox.config)?;
    security::check_apparmor(sc)?;
    let img = image.config.config().as_ref();

    let resolved = user::resolve_user(sc, img.and_then(|c| c.user().as_deref()), image.files)?;
    let mut user = User::default();
    user.set_uid(resolved.uid);
    user.set_gid(resolved.gid);
    user.set_additional_gids(Some(resolved.additional_gids));

    let default_caps = security::default_mask(&opts.default_capabilities)?;
    let (capabilities, bounding) = security::capabilities(sc, privileged, default_caps)?;
    let seccomp = security::seccomp(sc, privileged, bounding, &opts.seccomp_profile_root, opts.host.as_ref())?;

    let cri_resources = config.linux.as_ref().and_then(|l| l.resources.as_ref());
    let mut resources = linux_resources(&cri_resources.cloned().unwrap_or_default())?;
    let oom_score_adj = cri_resources.map(resources::oom_score_adj).transpose()?;
    let devs = devices::devices(config, privileged, opts.host.as_ref())?;
    resources.set_devices(Some(devs.rules));

    let rlimit = PosixRlimitBuilder::default()
        .typ(PosixRlimitType::RlimitNofile)
        .soft(opts.rlimit_nofile)
        .hard(opts.rlimit_nofile)
        .build()
        .map_err(|e| CriError::Internal(format!("rlimit: {e}")))?;

    let mut process = Process::default();
    process.set_terminal(Some(config.tty));
    process.set_console_size(None);
    process.set_user(user);
    process.set_args(Some(process::args(config, img)?));
    process.set_env(Some(process::env(config, img, &sandbox.hostname)?));
    process.set_cwd(process::cwd(config, img)?.into());
    process.set_capabilities(Some(capabilities));
    process.set_rlimits(Some(vec![rlimit]));
    process.set_no_new_privileges(Some(sc.is_some_and(|s| s.no_new_privs)));
    process.set_apparmor_profile(None);
    process.set_oom_score_adj(oom_score_adj);
    process.set_selinux_label(None);

    let readonly_rootfs = sc.is_some_and(|s| s.readonly_rootfs);
    let mut root = Root::default();
    root.set_path(opts.rootfs.clone());
    root.set_readonly(Some(readonly_rootfs));

    let m = mounts::mounts(config, sandbox, privileged, readonly_rootfs)?;
    let (masked, readonly) = mounts::masked_and_readonly_paths(sc, privileged)?;
    let namespaces = namespaces::namespaces(
        sc,
        sandbox,
        opts.target_pid_ns.as_ref(),
        opts.cgroup_namespace,
        privileged,
    )?;

    let mut linux = Linux::default();
    linux.set_uid_mappings(None);
    linux.set_gid_mappings(None);
    linux.set_sysctl(
        (!sandbox.sysctls.is_empty()).then(|| sandbox.sysctls.iter().map(|(k, v)| (k.clone(), v.clone())).collect()),
    );
    linux.set_resources(Some(resources));
    linux.set_cgroups_path(Some(
        PathBuf::from(sandbox.cgroup_parent.trim_end_matches('/')).join(id),
    ));
    linux.set_namespaces(Some(namespaces));
    linux.set_devices(Some(devs.devices));
    linux.set_seccomp(seccomp);
    linux.set_rootfs_propagation(m.rootfs_propagation);
    linux.set_masked_paths(Some(masked));
    linux.set_readonly_paths(Some(readonly));
    linux.set_mount_label(None);

    let mut spec = Spec::default();
    spec.set_version("1.2.0".into());
    spec.set_hostname(None);
    spec.set_process(Some(process));
    spec.set_root(Some(root));
    spec.set_mounts(Some(m.mounts));
    spec.set_linux(Some(linux));
    spec.set_annotations(Some(annotations));
    Ok(spec)
}
