//! pivot_root into the prepared rootfs, runc's way: `pivot_root(".", ".")`
//! stacks the old root on top of the new one, which is then detached, so no
//! temporary `put_old` directory is ever created inside the image.

use std::os::fd::AsFd;
use std::path::Path;

use nix::errno::Errno;
use nix::fcntl::{open, OFlag};
use nix::mount::{MntFlags, MsFlags};
use nix::sys::stat::Mode;

use crate::syscall::Syscall;

/// Errors switching to the new root.
#[derive(Debug, thiserror::Error)]
#[error("pivot_root into {rootfs}: {step}: {source}")]
pub struct PivotError {
    rootfs: String,
    step: &'static str,
    source: Errno,
}

/// Makes `rootfs` (a mount point) the root of the calling process's mount
/// namespace and detaches the old root.
pub fn pivot_root(sys: &dyn Syscall, rootfs: &Path) -> Result<(), PivotError> {
    let err = |step, source| PivotError {
        rootfs: rootfs.display().to_string(),
        step,
        source,
    };
    let dir = OFlag::O_DIRECTORY | OFlag::O_RDONLY | OFlag::O_CLOEXEC;
    let old_root = open("/", dir, Mode::empty()).map_err(|e| err("open /", e))?;
    let new_root = open(rootfs, dir, Mode::empty()).map_err(|e| err("open rootfs", e))?;
    sys.fchdir(new_root.as_fd()).map_err(|e| err("fchdir rootfs", e))?;
    sys.pivot_root(Path::new("."), Path::new("."))
        .map_err(|e| err("pivot_root", e))?;
    // The old root is now stacked on top of "/"; reach it through its fd.
    sys.fchdir(old_root.as_fd()).map_err(|e| err("fchdir old root", e))?;
    // Keep the detach below from propagating to the host's mounts.
    sys.mount(None, Path::new("."), None, MsFlags::MS_SLAVE | MsFlags::MS_REC, None)
        .map_err(|e| err("make old root rslave", e))?;
    sys.umount2(Path::new("."), MntFlags::MNT_DETACH)
        .map_err(|e| err("detach old root", e))?;
    sys.chdir(Path::new("/")).map_err(|e| err("chdir /", e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::syscall::{Call, RecordingSyscall};

    #[test]
    fn pivots_in_place_and_detaches_old_root() {
        let tmp = tempfile::tempdir().unwrap();
        let sys = RecordingSyscall::new();
        pivot_root(&sys, tmp.path()).unwrap();
        let calls = sys.calls();
        assert_eq!(calls[0], Call::Fchdir(tmp.path().to_path_buf()));
        assert_eq!(
            calls[1],
            Call::PivotRoot {
                new_root: ".".into(),
                put_old: ".".into()
            }
        );
        assert_eq!(calls[2], Call::Fchdir("/".into()));
        assert!(matches!(
            calls[4],
            Call::Umount2 {
                flags: MntFlags::MNT_DETACH,
                ..
            }
        ));
        assert_eq!(calls[5], Call::Chdir("/".into()));
    }
}
