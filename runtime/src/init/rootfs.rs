//! Build the container's filesystem view, in order: mount propagation,
//! the rootfs bound onto itself, the spec's mounts, `/dev`, the terminal,
//! sysctls, hostname, masked and read-only paths, pivot_root, read-only
//! rootfs. Runs in the init, inside the container's mount namespace.

use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{open, OFlag};
use nix::mount::MsFlags;
use nix::sys::stat::Mode;
use oci_spec::runtime::Spec;

use super::devices::{self, DeviceError};
use super::mounts::{self, MountContext, MountError};
use super::paths::{self, PathsError};
use super::pivot::{self, PivotError};
use super::resolve::{fd_path, Root};
use super::sysctl::{self, SysctlError};
use crate::pty::{self, PtyError};
use crate::syscall::Syscall;

/// Errors preparing the root filesystem.
#[derive(Debug, thiserror::Error)]
pub enum RootfsError {
    #[error("rootfs {path}: {step}: {source}")]
    Step {
        path: PathBuf,
        step: &'static str,
        source: Errno,
    },
    #[error(transparent)]
    Mount(#[from] MountError),
    #[error(transparent)]
    Device(#[from] DeviceError),
    #[error(transparent)]
    Paths(#[from] PathsError),
    #[error(transparent)]
    Pivot(#[from] PivotError),
    #[error(transparent)]
    Sysctl(#[from] SysctlError),
    #[error(transparent)]
    Pty(#[from] PtyError),
    #[error("terminal requested but the container has no devpts at /dev/pts: {0}")]
    NoDevpts(Errno),
}

/// A terminal opened inside the container's devpts.
#[derive(Debug)]
pub struct Console {
    pub master: OwnedFd,
    pub slave: OwnedFd,
}

/// Inputs of [`prepare`].
#[derive(Debug, Clone, Copy)]
pub struct RootfsOptions<'a> {
    pub rootfs: &'a Path,
    pub ctx: MountContext,
    /// Open a terminal; `Some((rows, cols))` sizes it.
    pub terminal: Option<Option<(u16, u16)>>,
    /// Where the host's procfs is (for sysctls): `/proc`.
    pub proc_root: &'a Path,
}

/// Prepares the rootfs and pivots into it. Returns the terminal, if any.
pub fn prepare(sys: &dyn Syscall, spec: &Spec, opts: RootfsOptions<'_>) -> Result<Option<Console>, RootfsError> {
    let rootfs = opts.rootfs;
    let step = |step, path: &Path| {
        let path = path.to_path_buf();
        move |source| RootfsError::Step { path, step, source }
    };
    let linux = spec.linux().clone().unwrap_or_default();
    let requested = linux
        .rootfs_propagation()
        .as_deref()
        .and_then(mounts::propagation_flags);
    let shared = requested.is_some_and(|f| f.contains(MsFlags::MS_SHARED));
    // As runc: a shared rootfs propagation keeps "/" in the host's peer
    // groups (making it a slave first would cut bidirectional binds off the
    // host); the mount holding the rootfs turns private instead, so the
    // set-up below does not propagate to the host.
    let initial = requested.unwrap_or(MsFlags::MS_SLAVE | MsFlags::MS_REC);
    sys.mount(None, Path::new("/"), None, initial, None)
        .map_err(step("set / propagation", Path::new("/")))?;
    if shared {
        let parent = std::fs::read_to_string(MOUNTINFO)
            .ok()
            .and_then(|info| containing_mount(&info, rootfs))
            .unwrap_or_else(|| PathBuf::from("/"));
        sys.mount(None, &parent, None, MsFlags::MS_PRIVATE, None)
            .map_err(step("make the rootfs' mount private", &parent))?;
    }
    sys.mount(Some(rootfs), rootfs, None, MsFlags::MS_BIND | MsFlags::MS_REC, None)
        .map_err(step("bind rootfs onto itself", rootfs))?;
    let root = Root::open(rootfs).map_err(|e| RootfsError::Step {
        path: rootfs.to_path_buf(),
        step: "open",
        source: Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO)),
    })?;

    let spec_mounts = spec.mounts().clone().unwrap_or_default();
    for m in &spec_mounts {
        mounts::mount_one(sys, &root, m, opts.ctx)?;
    }

    let dev_is_bind = spec_mounts.iter().any(|m| {
        m.destination() == Path::new("/dev") && m.options().iter().flatten().any(|o| o == "bind" || o == "rbind")
    });
    if !dev_is_bind {
        let spec_devices: Vec<devices::Node> = linux.devices().iter().flatten().map(devices::node_from_spec).collect();
        for node in devices::default_nodes() {
            if !spec_devices.iter().any(|d| d.path == node.path) {
                devices::create_node(sys, &root, &node, opts.ctx.in_user_ns)?;
            }
        }
        for node in &spec_devices {
            devices::create_node(sys, &root, node, opts.ctx.in_user_ns)?;
        }
        devices::create_links(&root)?;
    }

    let console = match opts.terminal {
        Some(size) => Some(open_console(sys, &root, size)?),
        None => None,
    };

    for (key, value) in linux.sysctl().iter().flatten() {
        sysctl::apply(&opts.proc_root.join("sys"), key, value)?;
    }
    if let Some(h) = spec.hostname().as_deref().filter(|h| !h.is_empty()) {
        sys.sethostname(h).map_err(step("sethostname", Path::new(h)))?;
    }
    if let Some(d) = spec.domainname().as_deref().filter(|d| !d.is_empty()) {
        sys.setdomainname(d).map_err(step("setdomainname", Path::new(d)))?;
    }
    paths::mask(sys, &root, linux.masked_paths().as_deref().unwrap_or_default())?;
    paths::readonly(sys, &root, linux.readonly_paths().as_deref().unwrap_or_default())?;
    drop(root);

    pivot::pivot_root(sys, rootfs)?;
    if let (true, Some(flags)) = (shared, requested) {
        sys.mount(None, Path::new("/"), None, flags, None)
            .map_err(step("set / propagation", Path::new("/")))?;
    }
    if spec.root().as_ref().and_then(|r| r.readonly()).unwrap_or(false) {
        paths::remount_readonly(sys, Path::new("/")).map_err(step("remount / read-only", Path::new("/")))?;
    }
    Ok(console)
}

const MOUNTINFO: &str = "/proc/self/mountinfo";

/// The deepest mount point in `mountinfo` at or above `path`.
fn containing_mount(mountinfo: &str, path: &Path) -> Option<PathBuf> {
    crate::sandbox::mounts::mount_points(mountinfo)
        .into_iter()
        .filter(|m| path.starts_with(m))
        .max_by_key(|m| m.components().count())
}

/// Opens a pty on the container's own devpts and binds its slave over
/// `/dev/console`.
fn open_console(sys: &dyn Syscall, root: &Root, size: Option<(u16, u16)>) -> Result<Console, RootfsError> {
    let ptmx = root
        .resolve(Path::new("/dev/pts/ptmx"))
        .map_err(RootfsError::NoDevpts)?;
    let (master, n) = pty::open_master(&fd_path(ptmx.as_fd()))?;
    let slave_path = PathBuf::from(format!("/dev/pts/{n}"));
    let slave_o_path = root.resolve(&slave_path).map_err(RootfsError::NoDevpts)?;
    let slave = open(
        &fd_path(slave_o_path.as_fd()),
        OFlag::O_RDWR | OFlag::O_NOCTTY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|source| RootfsError::Step {
        path: slave_path.clone(),
        step: "open pty slave",
        source,
    })?;
    if let Some((rows, cols)) = size {
        pty::set_winsize(master.as_fd(), rows, cols)?;
    }
    devices::bind_console(sys, root, &fd_path(slave_o_path.as_fd()))?;
    Ok(Console { master, slave })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rootfs_mount_is_the_deepest_mount_point_above_it() {
        let info = "22 1 0:21 / / rw shared:1 - ext4 /dev/sda1 rw\n\
                    30 22 0:30 / /var/lib/berth rw - ext4 /dev/sda1 rw\n\
                    31 30 0:31 / /var/lib/berth/c/rootfs rw - overlay overlay rw\n\
                    32 22 0:32 / /var/lib/berthx rw - tmpfs tmpfs rw\n";
        let at = |p: &str| containing_mount(info, Path::new(p));
        assert_eq!(
            at("/var/lib/berth/c/rootfs"),
            Some(PathBuf::from("/var/lib/berth/c/rootfs"))
        );
        assert_eq!(at("/var/lib/berth/d/rootfs"), Some(PathBuf::from("/var/lib/berth")));
        assert_eq!(at("/srv/rootfs"), Some(PathBuf::from("/")));
    }
}
