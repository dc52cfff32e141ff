//! `create`: validate the bundle, record the container, mount an overlay
//! rootfs if asked, start its monitor and wait until the init is ready.
//! On failure everything made so far is removed again.

use std::path::{Path, PathBuf};

use nix::mount::MsFlags;

use super::query::{query, ContainerState};
use super::ContainerError;
use crate::monitor::spawn::{self, MonitorRequest, StdioMode};
use crate::spec::Bundle;
use crate::state::{self, OverlayMount, State, StateDir, Status};

/// An overlayfs to mount as the rootfs: read-only layers (top first, as
/// overlayfs wants them) plus a writable upper and its work dir.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OverlayRootfs {
    pub lower_dirs: Vec<PathBuf>,
    pub upper_dir: PathBuf,
    pub work_dir: PathBuf,
}

/// Inputs of [`create`].
#[derive(Debug, Clone)]
pub struct CreateOptions {
    pub id: String,
    pub bundle: PathBuf,
    pub stdio: StdioMode,
    pub pid_file: Option<PathBuf>,
    /// Mounted at the spec's `root.path` before the container is set up,
    /// unmounted on delete.
    pub overlay: Option<OverlayRootfs>,
}

/// Mounts `o` at `target`.
pub fn mount_overlay(id: &str, o: &OverlayRootfs, target: &Path) -> Result<(), ContainerError> {
    let bad = |what: &str, p: &Path| ContainerError::Io {
        id: id.to_string(),
        path: p.to_path_buf(),
        source: std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("overlay {what} contains ':' or ','"),
        ),
    };
    if o.lower_dirs.is_empty() {
        return Err(ContainerError::Io {
            id: id.to_string(),
            path: target.to_path_buf(),
            source: std::io::Error::new(std::io::ErrorKind::InvalidInput, "overlay needs at least one lower dir"),
        });
    }
    for p in o.lower_dirs.iter().chain([&o.upper_dir, &o.work_dir]) {
        let s = p.to_string_lossy();
        if s.contains(':') || s.contains(',') {
            return Err(bad("path", p));
        }
    }
    let lower: Vec<String> = o.lower_dirs.iter().map(|p| p.display().to_string()).collect();
    let data = format!(
        "lowerdir={},upperdir={},workdir={}",
        lower.join(":"),
        o.upper_dir.display(),
        o.work_dir.display()
    );
    nix::mount::mount(
        Some("overlay"),
        target,
        Some("overlay"),
        MsFlags::empty(),
        Some(data.as_str()),
    )
    .map_err(|source| ContainerError::Sys {
        id: id.to_string(),
        step: "mount overlay rootfs",
        source,
    })
}

#[tracing::instrument(skip_all, fields(container_id = %opts.id))]
pub fn create(dir: &StateDir, runtime_exe: &Path, opts: &CreateOptions) -> Result<ContainerState, ContainerError> {
    let id = opts.id.as_str();
    state::validate_id(id)?;
    let bundle_dir = std::path::absolute(&opts.bundle).unwrap_or_else(|_| opts.bundle.clone());
    // The rootfs may be the overlay we are about to mount: validate after.
    let rootfs_target = {
        let spec = oci_spec::runtime::Spec::load(bundle_dir.join("config.json")).map_err(|source| {
            crate::spec::SpecError::Load {
                bundle: bundle_dir.clone(),
                source,
            }
        })?;
        let root = spec
            .root()
            .as_ref()
            .map(|r| r.path().clone())
            .unwrap_or_else(|| "rootfs".into());
        if root.is_absolute() {
            root
        } else {
            bundle_dir.join(root)
        }
    };
    let cdir = dir.create_container_dir(id)?;
    let mut overlay = None;
    let result = (|| {
        if let Some(o) = &opts.overlay {
            std::fs::create_dir_all(&rootfs_target).map_err(|source| ContainerError::Io {
                id: id.to_string(),
                path: rootfs_target.clone(),
                source,
            })?;
            mount_overlay(id, o, &rootfs_target)?;
            overlay = Some(OverlayMount {
                target: rootfs_target.clone(),
            });
        }
        let bundle = Bundle::load(&bundle_dir)?;
        check_terminal(&bundle, &opts.stdio)?;
        let st = State {
            id: id.to_string(),
            status: Status::Creating,
            bundle: bundle.dir.clone(),
            rootfs: bundle.rootfs.clone(),
            annotations: bundle.spec.annotations().clone().unwrap_or_default(),
            created: state::now_rfc3339(),
            started: None,
            init: None,
            monitor: None,
            cgroup_path: None,
            overlay: overlay.clone(),
            terminal: false,
        };
        dir.save(&st)?;
        let pid = spawn::spawn(&MonitorRequest {
            exe: runtime_exe,
            root: dir.root(),
            id,
            bundle: &bundle.dir,
            stdio: &opts.stdio,
        })
        .map_err(|source| ContainerError::Spawn {
            id: id.to_string(),
            source,
        })?;
        if let Some(pid_file) = &opts.pid_file {
            write_pid_file(id, pid_file, pid)?;
        }
        query(dir, id)
    })();
    match result {
        Ok(c) => Ok(c),
        Err(e) => {
            let mut cleanup = Ok(());
            if let Some(o) = &overlay {
                if let Err(source) = nix::mount::umount2(&o.target, nix::mount::MntFlags::MNT_DETACH) {
                    cleanup = Err(ContainerError::Sys {
                        id: id.to_string(),
                        step: "unmount overlay rootfs",
                        source,
                    });
                }
            }
            if let Err(source) = std::fs::remove_dir_all(&cdir) {
                cleanup = Err(ContainerError::Io {
                    id: id.to_string(),
                    path: cdir.clone(),
                    source,
                });
            }
            Err(match cleanup {
                Ok(()) => e,
                Err(c) => ContainerError::WithCleanup {
                    first: Box::new(e),
                    cleanup: Box::new(c),
                },
            })
        }
    }
}

/// A terminal needs somewhere to go: the monitor or a console socket
/// (runc refuses the same combinations).
fn check_terminal(bundle: &Bundle, stdio: &StdioMode) -> Result<(), crate::spec::SpecError> {
    let tty = bundle
        .spec
        .process()
        .as_ref()
        .and_then(|p| p.terminal())
        .unwrap_or(false);
    let reason = match stdio {
        StdioMode::Inherit if tty => "process.terminal is set but no console socket was given",
        StdioMode::ConsoleSocket(_) if !tty => "a console socket was given but process.terminal is not set",
        _ => return Ok(()),
    };
    Err(crate::spec::SpecError::Invalid {
        bundle: bundle.dir.clone(),
        reason: reason.into(),
    })
}

/// Writes `pid` to `path` atomically (temp file + rename).
pub(super) fn write_pid_file(id: &str, path: &Path, pid: i32) -> Result<(), ContainerError> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, pid.to_string())
        .and_then(|()| std::fs::rename(&tmp, path))
        .map_err(|source| ContainerError::Io {
            id: id.to_string(),
            path: path.to_path_buf(),
            source,
        })
}
