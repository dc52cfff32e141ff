//! Populate the container's `/dev`: the standard character devices, the
//! spec's `linux.devices`, the conventional symlinks, and `/dev/console` for
//! a terminal. Nodes are created with mknod, or — in a user namespace, where
//! mknod is not allowed — bind-mounted from the host's `/dev`.

use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{openat, OFlag};
use nix::mount::MsFlags;
use nix::sys::stat::{makedev, Mode, SFlag};
use nix::unistd::{symlinkat, Gid, Uid};
use oci_spec::runtime::{LinuxDevice, LinuxDeviceType};

use super::resolve::{fd_path, Root};
use crate::syscall::Syscall;

/// Errors creating device nodes and links.
#[derive(Debug, thiserror::Error)]
#[error("device {path}: {step}: {source}")]
pub struct DeviceError {
    path: PathBuf,
    step: &'static str,
    source: Errno,
}

/// A device node to create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    pub path: PathBuf,
    pub kind: SFlag,
    pub major: u64,
    pub minor: u64,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
}

/// The devices every container gets (runc's default set).
pub fn default_nodes() -> Vec<Node> {
    [
        ("null", 1, 3),
        ("zero", 1, 5),
        ("full", 1, 7),
        ("random", 1, 8),
        ("urandom", 1, 9),
        ("tty", 5, 0),
    ]
    .into_iter()
    .map(|(name, major, minor)| Node {
        path: PathBuf::from("/dev").join(name),
        kind: SFlag::S_IFCHR,
        major,
        minor,
        mode: 0o666,
        uid: 0,
        gid: 0,
    })
    .collect()
}

/// Converts a spec device.
pub fn node_from_spec(d: &LinuxDevice) -> Node {
    let kind = match d.typ() {
        LinuxDeviceType::B => SFlag::S_IFBLK,
        LinuxDeviceType::P => SFlag::S_IFIFO,
        _ => SFlag::S_IFCHR,
    };
    Node {
        path: d.path().clone(),
        kind,
        major: d.major() as u64,
        minor: d.minor() as u64,
        mode: d.file_mode().unwrap_or(0o666) & 0o7777,
        uid: d.uid().unwrap_or(0),
        gid: d.gid().unwrap_or(0),
    }
}

fn dir_fd(root: &Root, path: &Path) -> Result<OwnedFd, Errno> {
    let dir = root.mkdir_all(path, Mode::from_bits_truncate(0o755))?;
    openat(
        dir.as_fd(),
        ".",
        OFlag::O_DIRECTORY | OFlag::O_RDONLY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
}

/// Creates `node` inside `root`.
pub fn create_node(sys: &dyn Syscall, root: &Root, node: &Node, bind: bool) -> Result<(), DeviceError> {
    let err = |step, source| DeviceError {
        path: node.path.clone(),
        step,
        source,
    };
    let parent = node.path.parent().unwrap_or(Path::new("/dev"));
    let name = node.path.file_name().ok_or_else(|| err("file name", Errno::EINVAL))?;
    let dir = dir_fd(root, parent).map_err(|e| err("create parent", e))?;
    let target = fd_path(dir.as_fd()).join(name);
    if bind {
        let file = root
            .create_file(&node.path, Mode::from_bits_truncate(0o644))
            .map_err(|e| err("create bind target", e))?;
        return sys
            .mount(Some(&node.path), &fd_path(file.as_fd()), None, MsFlags::MS_BIND, None)
            .map_err(|e| err("bind from host", e));
    }
    match sys.mknod(
        &target,
        node.kind,
        Mode::from_bits_truncate(node.mode),
        makedev(node.major, node.minor),
    ) {
        Ok(()) => {}
        // Already there (a /dev that is not a fresh tmpfs): keep it.
        Err(Errno::EEXIST) => return Ok(()),
        Err(e) => return Err(err("mknod", e)),
    }
    // The init runs with umask 0, so the mode is exact.
    sys.chown(&target, Some(Uid::from_raw(node.uid)), Some(Gid::from_raw(node.gid)))
        .map_err(|e| err("chown", e))
}

/// The standard links: /dev/fd, /dev/std{in,out,err}, /dev/ptmx.
pub fn create_links(root: &Root) -> Result<(), DeviceError> {
    let dir = dir_fd(root, Path::new("/dev")).map_err(|source| DeviceError {
        path: "/dev".into(),
        step: "open",
        source,
    })?;
    for (name, target) in [
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
        ("core", "/proc/kcore"),
    ] {
        match symlinkat(target, dir.as_fd(), name) {
            Ok(()) | Err(Errno::EEXIST) => {}
            Err(source) => {
                return Err(DeviceError {
                    path: PathBuf::from("/dev").join(name),
                    step: "symlink",
                    source,
                })
            }
        }
    }
    // /dev/ptmx must point at this container's devpts instance.
    match nix::unistd::unlinkat(dir.as_fd(), "ptmx", nix::unistd::UnlinkatFlags::NoRemoveDir) {
        Ok(()) | Err(Errno::ENOENT) => {}
        Err(source) => {
            return Err(DeviceError {
                path: "/dev/ptmx".into(),
                step: "remove",
                source,
            })
        }
    }
    symlinkat("pts/ptmx", dir.as_fd(), "ptmx").map_err(|source| DeviceError {
        path: "/dev/ptmx".into(),
        step: "symlink",
        source,
    })
}

/// Bind-mounts the terminal's slave (`slave`, a host-visible path) over
/// `/dev/console`.
pub fn bind_console(sys: &dyn Syscall, root: &Root, slave: &Path) -> Result<(), DeviceError> {
    let err = |step, source| DeviceError {
        path: "/dev/console".into(),
        step,
        source,
    };
    let target = root
        .create_file(Path::new("/dev/console"), Mode::from_bits_truncate(0o600))
        .map_err(|e| err("create", e))?;
    sys.mount(Some(slave), &fd_path(target.as_fd()), None, MsFlags::MS_BIND, None)
        .map_err(|e| err("bind", e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::syscall::{Call, RecordingSyscall};

    #[test]
    fn nodes_are_made_inside_the_root_or_bound_in_a_user_namespace() {
        let tmp = tempfile::tempdir().unwrap();
        let root = Root::open(tmp.path()).unwrap();
        let sys = RecordingSyscall::new();
        let nodes = default_nodes();
        create_node(&sys, &root, &nodes[0], false).unwrap();
        assert!(
            matches!(&sys.calls()[0], Call::Mknod { path, kind: SFlag::S_IFCHR, dev, .. }
            if *path == tmp.path().join("dev/null") && *dev == makedev(1, 3))
        );
        let sys = RecordingSyscall::new();
        create_node(&sys, &root, &nodes[1], true).unwrap();
        assert_eq!(
            sys.mounts(),
            vec![Call::Mount {
                source: Some("/dev/zero".into()),
                target: tmp.path().join("dev/zero"),
                fstype: None,
                flags: MsFlags::MS_BIND,
                data: None
            }]
        );
        create_links(&root).unwrap();
        assert_eq!(
            std::fs::read_link(tmp.path().join("dev/ptmx")).unwrap(),
            Path::new("pts/ptmx")
        );
        assert_eq!(
            std::fs::read_link(tmp.path().join("dev/fd")).unwrap(),
            Path::new("/proc/self/fd")
        );
    }
}
