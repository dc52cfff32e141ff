//! Masked paths (hidden: `/dev/null` over files, an empty read-only tmpfs
//! over directories), read-only paths (bind onto themselves, remounted
//! read-only) and the read-only rootfs remount.

use std::os::fd::AsFd;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::mount::MsFlags;
use nix::sys::stat::{fstat, SFlag};

use super::resolve::{fd_path, Root};
use crate::syscall::Syscall;

/// Errors masking or protecting paths.
#[derive(Debug, thiserror::Error)]
#[error("{what} {path}: {source}")]
pub struct PathsError {
    what: &'static str,
    path: PathBuf,
    source: Errno,
}

/// Hides each path in `paths` (missing ones are skipped).
pub fn mask(sys: &dyn Syscall, root: &Root, paths: &[String]) -> Result<(), PathsError> {
    for p in paths {
        let err = |source| PathsError {
            what: "masked path",
            path: PathBuf::from(p),
            source,
        };
        let fd = match root.resolve(Path::new(p)) {
            Ok(fd) => fd,
            Err(Errno::ENOENT) => continue,
            Err(e) => return Err(err(e)),
        };
        let is_dir =
            SFlag::from_bits_truncate(fstat(fd.as_fd()).map_err(err)?.st_mode) & SFlag::S_IFMT == SFlag::S_IFDIR;
        let target = fd_path(fd.as_fd());
        if is_dir {
            sys.mount(
                Some(Path::new("tmpfs")),
                &target,
                Some("tmpfs"),
                MsFlags::MS_RDONLY,
                Some("size=0"),
            )
        } else {
            sys.mount(Some(Path::new("/dev/null")), &target, None, MsFlags::MS_BIND, None)
        }
        .map_err(err)?;
    }
    Ok(())
}

/// Makes each path in `paths` read-only (missing ones are skipped).
pub fn readonly(sys: &dyn Syscall, root: &Root, paths: &[String]) -> Result<(), PathsError> {
    for p in paths {
        let err = |source| PathsError {
            what: "read-only path",
            path: PathBuf::from(p),
            source,
        };
        let fd = match root.resolve(Path::new(p)) {
            Ok(fd) => fd,
            Err(Errno::ENOENT) => continue,
            Err(e) => return Err(err(e)),
        };
        let target = fd_path(fd.as_fd());
        sys.mount(Some(&target), &target, None, MsFlags::MS_BIND | MsFlags::MS_REC, None)
            .map_err(err)?;
        let mounted = root.resolve(Path::new(p)).map_err(err)?;
        remount_readonly(sys, &fd_path(mounted.as_fd())).map_err(err)?;
    }
    Ok(())
}

/// Remounts the bind mount at `target` read-only, keeping flags a less
/// privileged mount namespace may not clear.
pub fn remount_readonly(sys: &dyn Syscall, target: &Path) -> Result<(), Errno> {
    let mut flags = MsFlags::MS_REMOUNT | MsFlags::MS_BIND | MsFlags::MS_RDONLY;
    if let Ok(st) = nix::sys::statvfs::statvfs(target) {
        use nix::sys::statvfs::FsFlags;
        for (s, m) in [
            (FsFlags::ST_NOSUID, MsFlags::MS_NOSUID),
            (FsFlags::ST_NODEV, MsFlags::MS_NODEV),
            (FsFlags::ST_NOEXEC, MsFlags::MS_NOEXEC),
        ] {
            if st.flags().contains(s) {
                flags |= m;
            }
        }
    }
    sys.mount(None, target, None, flags, None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::syscall::{Call, RecordingSyscall};

    #[test]
    fn files_get_dev_null_dirs_get_tmpfs_missing_skipped() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(tmp.path().join("proc/acpi")).unwrap();
        std::fs::write(tmp.path().join("proc/kcore"), "").unwrap();
        let root = Root::open(tmp.path()).unwrap();
        let sys = RecordingSyscall::new();
        mask(
            &sys,
            &root,
            &["/proc/kcore".into(), "/proc/acpi".into(), "/proc/missing".into()],
        )
        .unwrap();
        let m = sys.mounts();
        assert_eq!(m.len(), 2);
        assert!(matches!(&m[0], Call::Mount { source: Some(s), target, .. }
            if s == Path::new("/dev/null") && *target == tmp.path().join("proc/kcore")));
        assert!(matches!(&m[1], Call::Mount { fstype: Some(t), flags, target, .. }
            if t == "tmpfs" && flags.contains(MsFlags::MS_RDONLY) && *target == tmp.path().join("proc/acpi")));
    }

    #[test]
    fn readonly_paths_bind_then_remount() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(tmp.path().join("proc/sys")).unwrap();
        let root = Root::open(tmp.path()).unwrap();
        let sys = RecordingSyscall::new();
        readonly(&sys, &root, &["/proc/sys".into()]).unwrap();
        let m = sys.mounts();
        assert_eq!(m.len(), 2);
        assert!(matches!(&m[1], Call::Mount { flags, .. }
            if flags.contains(MsFlags::MS_REMOUNT | MsFlags::MS_BIND | MsFlags::MS_RDONLY)));
    }
}
