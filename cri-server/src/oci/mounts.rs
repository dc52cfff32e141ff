//! The container's mounts, masked paths and read-only paths.
//!
//! Order, as containerd: the system mounts first (`/proc`, `/dev`,
//! `/dev/pts`, `/dev/shm`, `/dev/mqueue`, `/sys`, `/sys/fs/cgroup`, see
//! [`defaults::system_mounts`]), minus those a bind below replaces (a bind
//! of `/dev` replaces every system mount under `/dev`); then the binds —
//! the CRI `mounts` followed by the pod's files — stably sorted by depth so
//! that `/a` is mounted before `/a/b`.
//!
//! The pod's files: `/etc/hostname`, `/etc/hosts` and `/etc/resolv.conf`
//! (read-only when the rootfs is, as containerd), and `/dev/shm`: the pod's
//! own tmpfs when it has one, the host's `/dev/shm` for a host-IPC pod. A
//! CRI mount at the same path wins over any of them (that is how the
//! kubelet's `/etc/hosts` reaches host-network pods).
//!
//! CRI mounts are `rbind` mounts of `host_path` at `container_path`
//! (absolute, no `..`), `ro` or `rw`, with propagation `rprivate`,
//! `rslave` (HOST_TO_CONTAINER) or `rshared` (BIDIRECTIONAL); a non-private
//! propagation also sets the rootfs propagation (`rslave`, or `rshared`
//! which wins). `recursive_read_only` adds `rro` (the mounts below the
//! source read-only too; it needs `readonly`, private propagation and
//! mount_setattr(2)). `selinux_relabel` is accepted and ignored (SELinux is
//! off). Refused for now: image volumes (`image`, UNIMPLEMENTED) and
//! id-mapped mounts (the engine cannot do them). A `host_path` that is a
//! symlink is followed by the kernel when bind-mounting.
//!
//! Masked and read-only paths: none for a privileged container; otherwise
//! the CRI lists, or containerd's default lists where a CRI list is empty
//! (proto3 cannot tell "unset" from "empty"; the kubelet only sends empty
//! lists for the Unmasked proc mount, which needs a user namespace, which
//! berth refuses).

use std::path::PathBuf;

use k8s_cri::v1::{ContainerConfig, LinuxContainerSecurityContext, MountPropagation};
use oci_spec::runtime::Mount;

use berth_runtime::init::mounts::recursive_readonly_supported;

use super::{clean_container_path, defaults, SandboxContext};
use crate::error::CriError;

const FIELD: &str = "mounts";

/// A bind mount before it becomes an OCI mount.
#[derive(Debug, Clone)]
struct Bind {
    source: PathBuf,
    destination: String,
    readonly: bool,
    /// Read-only all the way down (`rro`): mounts below the source too.
    recursive_readonly: bool,
    propagation: &'static str,
}

impl Bind {
    fn depth(&self) -> usize {
        self.destination.matches('/').count()
    }

    fn into_mount(self) -> Mount {
        let mut m = Mount::default();
        m.set_destination(self.destination.into());
        m.set_typ(Some("bind".into()));
        m.set_source(Some(self.source));
        let mut options = vec![
            "rbind".to_string(),
            self.propagation.into(),
            if self.readonly { "ro" } else { "rw" }.into(),
        ];
        if self.recursive_readonly {
            options.push("rro".into());
        }
        m.set_options(Some(options));
        m
    }
}

/// The mounts of a container and the rootfs propagation they need.
#[derive(Debug, Clone, Default)]
pub struct Mounts {
    pub mounts: Vec<Mount>,
    pub rootfs_propagation: Option<String>,
}

fn cri_binds(config: &ContainerConfig, propagation: &mut Option<String>) -> Result<Vec<Bind>, CriError> {
    let mut binds = Vec::with_capacity(config.mounts.len());
    for (i, m) in config.mounts.iter().enumerate() {
        let destination = clean_container_path(&m.container_path)
            .map_err(|reason| CriError::invalid(FIELD, format!("[{i}].container_path {reason}")))?;
        if m.image.as_ref().is_some_and(|img| !img.image.is_empty()) {
            // Not an invalid request: a feature berth lacks (critest and
            // the kubelet read Unimplemented as "not supported").
            return Err(CriError::Unimplemented {
                rpc: "image volume mounts (mounts[].image)",
            });
        }
        if !m.host_path.starts_with('/') {
            return Err(CriError::invalid(
                FIELD,
                format!("[{i}].host_path {:?} must be an absolute path", m.host_path),
            ));
        }
        if !m.uid_mappings.is_empty() || !m.gid_mappings.is_empty() {
            return Err(CriError::invalid(
                FIELD,
                format!("[{i}]: id-mapped mounts are not supported by berth yet"),
            ));
        }
        let mode = MountPropagation::try_from(m.propagation)
            .map_err(|_| CriError::invalid(FIELD, format!("[{i}].propagation {} is unknown", m.propagation)))?;
        if m.recursive_read_only {
            // As the CRI (and the kubelet) require.
            if !m.readonly {
                return Err(CriError::invalid(
                    FIELD,
                    format!("[{i}].recursive_read_only needs readonly"),
                ));
            }
            if mode != MountPropagation::PropagationPrivate {
                return Err(CriError::invalid(
                    FIELD,
                    format!("[{i}].recursive_read_only needs propagation PROPAGATION_PRIVATE, not {mode:?}"),
                ));
            }
            if !recursive_readonly_supported() {
                return Err(CriError::invalid(
                    FIELD,
                    format!("[{i}].recursive_read_only: this kernel has no mount_setattr(2) (Linux 5.12)"),
                ));
            }
        }
        let option = match mode {
            MountPropagation::PropagationPrivate => "rprivate",
            MountPropagation::PropagationHostToContainer => {
                if propagation.as_deref() != Some("rshared") {
                    *propagation = Some("rslave".into());
                }
                "rslave"
            }
            MountPropagation::PropagationBidirectional => {
                *propagation = Some("rshared".into());
                "rshared"
            }
        };
        binds.push(Bind {
            source: PathBuf::from(&m.host_path),
            destination,
            readonly: m.readonly,
            recursive_readonly: m.recursive_read_only,
            propagation: option,
        });
    }
    Ok(binds)
}

fn pod_binds(sandbox: &SandboxContext, readonly_rootfs: bool) -> Vec<Bind> {
    let file = |dest: &str, source: &PathBuf| Bind {
        source: source.clone(),
        destination: dest.to_string(),
        readonly: readonly_rootfs,
        recursive_readonly: false,
        propagation: "rprivate",
    };
    let mut binds = vec![
        file("/etc/hostname", &sandbox.hostname_file),
        file("/etc/hosts", &sandbox.hosts),
    ];
    if let Some(r) = &sandbox.resolv_conf {
        binds.push(file("/etc/resolv.conf", r));
    }
    let shm = match (&sandbox.shm, &sandbox.ipcns) {
        (Some(shm), _) => Some(shm.clone()),
        (None, None) => Some(PathBuf::from("/dev/shm")),
        (None, Some(_)) => None, // the private tmpfs of the system mounts
    };
    if let Some(source) = shm {
        binds.push(Bind {
            source,
            destination: "/dev/shm".into(),
            readonly: false,
            recursive_readonly: false,
            propagation: "rprivate",
        });
    }
    binds
}

/// Builds the mount list (see the module doc).
pub fn mounts(
    config: &ContainerConfig,
    sandbox: &SandboxContext,
    privileged: bool,
    readonly_rootfs: bool,
) -> Result<Mounts, CriError> {
    let mut rootfs_propagation = None;
    let mut binds = cri_binds(config, &mut rootfs_propagation)?;
    for b in pod_binds(sandbox, readonly_rootfs) {
        if !binds.iter().any(|c| c.destination == b.destination) {
            binds.push(b);
        }
    }
    binds.sort_by_key(Bind::depth); // stable
    let dev_replaced = binds.iter().any(|b| b.destination == "/dev");
    let mut out: Vec<Mount> = defaults::system_mounts(privileged)
        .into_iter()
        .filter(|m| {
            let dest = m.destination().to_string_lossy();
            let replaced = binds.iter().any(|b| b.destination == dest);
            let under_replaced_dev = dev_replaced && dest.starts_with("/dev/");
            !replaced && !under_replaced_dev
        })
        .collect();
    out.extend(binds.into_iter().map(Bind::into_mount));
    Ok(Mounts {
        mounts: out,
        rootfs_propagation,
    })
}

fn path_list(list: &[String], default: &[&str], field: &'static str) -> Result<Vec<String>, CriError> {
    if list.is_empty() {
        return Ok(default.iter().map(|s| s.to_string()).collect());
    }
    list.iter()
        .enumerate()
        .map(|(i, p)| clean_container_path(p).map_err(|reason| CriError::invalid(field, format!("[{i}] {reason}"))))
        .collect()
}

/// `(masked_paths, readonly_paths)` of the container (see the module doc).
pub fn masked_and_readonly_paths(
    sc: Option<&LinuxContainerSecurityContext>,
    privileged: bool,
) -> Result<(Vec<String>, Vec<String>), CriError> {
    if privileged {
        return Ok((vec![], vec![]));
    }
    let empty = Vec::new();
    let masked = path_list(
        sc.map_or(&empty, |s| &s.masked_paths),
        &defaults::DEFAULT_MASKED_PATHS,
        "linux.security_context.masked_paths",
    )?;
    let readonly = path_list(
        sc.map_or(&empty, |s| &s.readonly_paths),
        &defaults::DEFAULT_READONLY_PATHS,
        "linux.security_context.readonly_paths",
    )?;
    Ok((masked, readonly))
}

#[cfg(test)]
mod tests {
    use k8s_cri::v1::{IdMapping, ImageSpec, Mount as CriMount};

    use super::*;
    use crate::oci::test_support::sandbox;

    fn cri(container: &str, host: &str, readonly: bool, propagation: MountPropagation) -> CriMount {
        CriMount {
            container_path: container.into(),
            host_path: host.into(),
            readonly,
            propagation: propagation as i32,
            selinux_relabel: true,
            ..Default::default()
        }
    }

    fn cfg(mounts: Vec<CriMount>) -> ContainerConfig {
        ContainerConfig {
            mounts,
            ..Default::default()
        }
    }

    fn summary(m: &Mounts) -> Vec<String> {
        m.mounts
            .iter()
            .map(|m| {
                format!(
                    "{} {} {} {}",
                    m.destination().display(),
                    m.typ().as_deref().unwrap_or(""),
                    m.source().as_ref().map(|s| s.display().to_string()).unwrap_or_default(),
                    m.options().as_ref().map(|o| o.join(",")).unwrap_or_default()
                )
            })
            .collect()
    }

    #[test]
    fn system_mounts_then_pod_files() {
        let m = mounts(&cfg(vec![]), &sandbox(), false, false).unwrap();
        assert_eq!(
            summary(&m),
            vec![
                "/proc proc proc nosuid,noexec,nodev",
                "/dev tmpfs tmpfs nosuid,strictatime,mode=755,size=65536k",
                "/dev/pts devpts devpts nosuid,noexec,newinstance,ptmxmode=0666,mode=0620,gid=5",
                "/dev/mqueue mqueue mqueue nosuid,noexec,nodev",
                "/sys sysfs sysfs nosuid,noexec,nodev,ro",
                "/sys/fs/cgroup cgroup cgroup nosuid,noexec,nodev,relatime,ro",
                "/etc/hostname bind /run/berth/pods/p1/hostname rbind,rprivate,rw",
                "/etc/hosts bind /run/berth/pods/p1/hosts rbind,rprivate,rw",
                "/etc/resolv.conf bind /run/berth/pods/p1/resolv.conf rbind,rprivate,rw",
                "/dev/shm bind /run/berth/pods/p1/shm rbind,rprivate,rw",
            ]
        );
        assert_eq!(m.rootfs_propagation, None);
    }

    #[test]
    fn readonly_rootfs_makes_pod_files_readonly_and_privileged_sysfs_rw() {
        let m = mounts(&cfg(vec![]), &sandbox(), true, true).unwrap();
        let s = summary(&m);
        assert!(s.contains(&"/etc/hosts bind /run/berth/pods/p1/hosts rbind,rprivate,ro".to_string()));
        assert!(s.contains(&"/dev/shm bind /run/berth/pods/p1/shm rbind,rprivate,rw".to_string()));
        assert!(s.contains(&"/sys sysfs sysfs nosuid,noexec,nodev,rw".to_string()));
        assert!(s.contains(&"/sys/fs/cgroup cgroup cgroup nosuid,noexec,nodev,relatime,rw".to_string()));
    }

    #[test]
    fn shm_for_host_ipc_and_private_ipc_without_pod_shm() {
        let mut sb = sandbox();
        sb.shm = None;
        sb.ipcns = None;
        let s = summary(&mounts(&cfg(vec![]), &sb, false, false).unwrap());
        assert!(
            s.contains(&"/dev/shm bind /dev/shm rbind,rprivate,rw".to_string()),
            "{s:?}"
        );
        sb.ipcns = Some("/run/berth/pods/p1/ns/ipc".into());
        let s = summary(&mounts(&cfg(vec![]), &sb, false, false).unwrap());
        assert!(
            s.contains(&"/dev/shm tmpfs shm nosuid,noexec,nodev,mode=1777,size=65536k".to_string()),
            "{s:?}"
        );
    }

    #[test]
    fn cri_mounts_with_propagation_sorted_by_depth() {
        let c = cfg(vec![
            cri(
                "/data/cache/deep",
                "/var/lib/a",
                false,
                MountPropagation::PropagationPrivate,
            ),
            cri(
                "/data",
                "/var/lib/b",
                true,
                MountPropagation::PropagationHostToContainer,
            ),
            cri("/shared", "/mnt/s", false, MountPropagation::PropagationBidirectional),
            cri(
                "/dev/termination-log",
                "/var/lib/kubelet/pods/x/termination",
                false,
                MountPropagation::PropagationPrivate,
            ),
        ]);
        let m = mounts(&c, &sandbox(), false, false).unwrap();
        let s = summary(&m);
        let binds: Vec<_> = s.iter().filter(|l| l.contains(" bind ")).cloned().collect();
        assert_eq!(
            binds,
            vec![
                "/data bind /var/lib/b rbind,rslave,ro",
                "/shared bind /mnt/s rbind,rshared,rw",
                "/dev/termination-log bind /var/lib/kubelet/pods/x/termination rbind,rprivate,rw",
                "/etc/hostname bind /run/berth/pods/p1/hostname rbind,rprivate,rw",
                "/etc/hosts bind /run/berth/pods/p1/hosts rbind,rprivate,rw",
                "/etc/resolv.conf bind /run/berth/pods/p1/resolv.conf rbind,rprivate,rw",
                "/dev/shm bind /run/berth/pods/p1/shm rbind,rprivate,rw",
                "/data/cache/deep bind /var/lib/a rbind,rprivate,rw",
            ]
        );
        assert_eq!(m.rootfs_propagation.as_deref(), Some("rshared"));
        let only_slave = cfg(vec![cri(
            "/d",
            "/x",
            false,
            MountPropagation::PropagationHostToContainer,
        )]);
        assert_eq!(
            mounts(&only_slave, &sandbox(), false, false)
                .unwrap()
                .rootfs_propagation
                .as_deref(),
            Some("rslave")
        );
    }

    #[test]
    fn a_cri_mount_replaces_a_default_one() {
        let c = cfg(vec![
            cri(
                "/etc/hosts/",
                "/var/lib/kubelet/pods/x/etc-hosts",
                false,
                MountPropagation::PropagationPrivate,
            ),
            cri("/dev", "/dev", false, MountPropagation::PropagationPrivate),
        ]);
        let s = summary(&mounts(&c, &sandbox(), false, false).unwrap());
        assert!(s
            .iter()
            .any(|l| l == "/etc/hosts bind /var/lib/kubelet/pods/x/etc-hosts rbind,rprivate,rw"));
        assert_eq!(s.iter().filter(|l| l.starts_with("/etc/hosts ")).count(), 1);
        // A bind of /dev removes every system mount under /dev, but the pod's shm bind stays.
        assert!(!s
            .iter()
            .any(|l| l.starts_with("/dev/pts") || l.starts_with("/dev/mqueue") || l.starts_with("/dev tmpfs")));
        assert!(s.iter().any(|l| l.starts_with("/dev bind /dev")));
    }

    #[test]
    fn a_recursive_read_only_mount_is_rro() {
        let mut m = cri("/mnt", "/host", true, MountPropagation::PropagationPrivate);
        m.recursive_read_only = true;
        let s = summary(&mounts(&cfg(vec![m]), &sandbox(), false, false).unwrap());
        assert!(s.iter().any(|l| l == "/mnt bind /host rbind,rprivate,ro,rro"), "{s:?}");
    }

    #[test]
    fn bad_mounts_are_refused_naming_the_index() {
        let private = MountPropagation::PropagationPrivate;
        let mut idmapped = cri("/x", "/y", false, private);
        idmapped.uid_mappings = vec![IdMapping::default()];
        let mut rro_rw = cri("/x", "/y", false, private);
        rro_rw.recursive_read_only = true;
        let mut rro_slave = cri("/x", "/y", true, MountPropagation::PropagationHostToContainer);
        rro_slave.recursive_read_only = true;
        let mut rro_shared = cri("/x", "/y", true, MountPropagation::PropagationBidirectional);
        rro_shared.recursive_read_only = true;
        let mut image = cri("/x", "", true, private);
        image.image = Some(ImageSpec {
            image: "busybox".into(),
            ..Default::default()
        });
        let mut bad_prop = cri("/x", "/y", false, private);
        bad_prop.propagation = 7;
        for (m, needle) in [
            (
                cri("relative", "/y", false, private),
                "[1].container_path \"relative\" must be absolute",
            ),
            (cri("/a/../../etc", "/y", false, private), "[1].container_path"),
            (cri("", "/y", false, private), "[1].container_path"),
            (cri("/x", "y", false, private), "[1].host_path"),
            (idmapped, "[1]: id-mapped"),
            (rro_rw, "[1].recursive_read_only needs readonly"),
            (
                rro_slave,
                "[1].recursive_read_only needs propagation PROPAGATION_PRIVATE",
            ),
            (
                rro_shared,
                "[1].recursive_read_only needs propagation PROPAGATION_PRIVATE",
            ),
            (bad_prop, "[1].propagation"),
        ] {
            let c = cfg(vec![cri("/ok", "/ok", false, private), m]);
            let err = mounts(&c, &sandbox(), false, false).unwrap_err();
            assert!(matches!(err, CriError::InvalidArgument { field: "mounts", .. }));
            assert!(err.to_string().contains(needle), "{err} should contain {needle}");
        }
        // An image volume is a feature berth lacks, not a bad request.
        let c = cfg(vec![cri("/ok", "/ok", false, private), image]);
        let err = mounts(&c, &sandbox(), false, false).unwrap_err();
        assert_eq!(err.code(), tonic::Code::Unimplemented, "{err}");
        assert!(err.to_string().contains("mounts[].image"), "{err}");
    }

    #[test]
    fn masked_and_readonly_paths_defaults_overrides_and_privileged() {
        let (m, r) = masked_and_readonly_paths(None, false).unwrap();
        assert_eq!(m, defaults::DEFAULT_MASKED_PATHS.map(String::from));
        assert_eq!(r, defaults::DEFAULT_READONLY_PATHS.map(String::from));
        let sc = LinuxContainerSecurityContext {
            masked_paths: vec!["/bin/ls".into()],
            readonly_paths: vec!["/tmp".into()],
            ..Default::default()
        };
        let (m, r) = masked_and_readonly_paths(Some(&sc), false).unwrap();
        assert_eq!((m, r), (vec!["/bin/ls".to_string()], vec!["/tmp".to_string()]));
        assert_eq!(masked_and_readonly_paths(Some(&sc), true).unwrap(), (vec![], vec![]));
        let bad = LinuxContainerSecurityContext {
            readonly_paths: vec!["/ok".into(), "tmp".into()],
            ..Default::default()
        };
        let err = masked_and_readonly_paths(Some(&bad), false).unwrap_err().to_string();
        assert!(err.starts_with("linux.security_context.readonly_paths: [1]"), "{err}");
    }
}
