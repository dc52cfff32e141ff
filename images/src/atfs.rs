//! At-style, no-follow filesystem primitives for building a snapshot out of an
//! untrusted tarball.
//!
//! Every call here takes a directory file descriptor plus **one** path
//! component, never a path: the caller walks a path component by component
//! with [`open_subdir`], which refuses symlinks (`O_NOFOLLOW`), so nothing a
//! layer created earlier can redirect a later write outside the snapshot.
//!
//! The only `unsafe` of the crate lives here: extended attributes have no
//! safe wrapper in `nix`, so `fsetxattr`/`lsetxattr`/`lgetxattr` are called
//! through `libc`, each in one small function.

use std::ffi::{CString, OsStr, OsString};
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use nix::dir::Dir;
use nix::errno::Errno;
use nix::fcntl::{openat, AtFlags, OFlag, AT_FDCWD};
use nix::sys::stat::{fstatat, FileStat, Mode, SFlag};
use nix::unistd::{unlinkat, UnlinkatFlags};

/// Flags for opening a directory we are about to work in: never through a
/// symlink, never leaked across exec.
fn dir_flags() -> OFlag {
    OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC
}

/// Open the directory at `path` (its last component must not be a symlink).
pub(crate) fn open_dir(path: &Path) -> nix::Result<OwnedFd> {
    openat(AT_FDCWD, path, dir_flags(), Mode::empty())
}

/// Open the sub-directory `name` of `parent`. Fails with `ELOOP` or `ENOTDIR`
/// when `name` is a symlink or not a directory, `ENOENT` when absent.
pub(crate) fn open_subdir(parent: BorrowedFd<'_>, name: &OsStr) -> nix::Result<OwnedFd> {
    openat(parent, name, dir_flags(), Mode::empty())
}

/// `lstat` of `name` in `parent`; `None` when it does not exist.
pub(crate) fn lstat_at(parent: BorrowedFd<'_>, name: &OsStr) -> nix::Result<Option<FileStat>> {
    match fstatat(parent, name, AtFlags::AT_SYMLINK_NOFOLLOW) {
        Ok(st) => Ok(Some(st)),
        Err(Errno::ENOENT) => Ok(None),
        Err(e) => Err(e),
    }
}

/// The file type bits of a stat result.
pub(crate) fn kind(st: &FileStat) -> SFlag {
    SFlag::from_bits_truncate(st.st_mode & SFlag::S_IFMT.bits())
}

/// Remove `name` from `parent`, recursively when it is a directory. Symlinks
/// are removed, never followed.
pub(crate) fn remove_at(parent: BorrowedFd<'_>, name: &OsStr) -> nix::Result<()> {
    let Some(st) = lstat_at(parent, name)? else {
        return Ok(());
    };
    if kind(&st) != SFlag::S_IFDIR {
        return unlinkat(parent, name, UnlinkatFlags::NoRemoveDir);
    }
    let dir_fd = open_subdir(parent, name)?;
    empty_dir(&dir_fd)?;
    unlinkat(parent, name, UnlinkatFlags::RemoveDir)
}

/// Remove everything inside the directory `dir`.
fn empty_dir(dir: &OwnedFd) -> nix::Result<()> {
    let names: Vec<OsString> = {
        let listing_fd = openat(dir, ".", dir_flags(), Mode::empty())?;
        let mut listing = Dir::from_fd(listing_fd)?;
        let mut names = Vec::new();
        for entry in listing.iter() {
            let entry = entry?;
            let name = entry.file_name().to_bytes();
            if name != b"." && name != b".." {
                names.push(OsStr::from_bytes(name).to_os_string());
            }
        }
        names
    };
    for name in names {
        remove_at(dir.as_fd(), &name)?;
    }
    Ok(())
}

fn cstring(bytes: &[u8]) -> io::Result<CString> {
    CString::new(bytes).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "name contains a NUL byte"))
}

/// `/proc/self/fd/<parent>/<name>`: a path that reaches `name` inside the
/// directory `parent` without resolving anything but that one component
/// (the `/proc` fd link is the directory itself).
fn proc_path(parent: BorrowedFd<'_>, name: &OsStr) -> io::Result<CString> {
    let mut path = format!("/proc/self/fd/{}/", parent.as_raw_fd()).into_bytes();
    path.extend_from_slice(name.as_bytes());
    cstring(&path)
}

/// Set extended attribute `key` on the open file or directory `fd`.
pub(crate) fn set_xattr_fd(fd: BorrowedFd<'_>, key: &str, value: &[u8]) -> io::Result<()> {
    let key = cstring(key.as_bytes())?;
    // SAFETY: `fd` is a live descriptor borrowed for the whole call; `key` is a
    // NUL-terminated string that outlives the call; `value` points to
    // `value.len()` initialised bytes the kernel only reads.
    let rc = unsafe { libc::fsetxattr(fd.as_raw_fd(), key.as_ptr(), value.as_ptr().cast(), value.len(), 0) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Set extended attribute `key` on `name` in `parent` without following
/// `name` if it is a symlink (used for symlinks, devices and fifos, which we
/// must not open).
pub(crate) fn set_xattr_at(parent: BorrowedFd<'_>, name: &OsStr, key: &str, value: &[u8]) -> io::Result<()> {
    let path = proc_path(parent, name)?;
    let key = cstring(key.as_bytes())?;
    // SAFETY: `path` and `key` are NUL-terminated strings that outlive the
    // call; `value` points to `value.len()` initialised bytes the kernel only
    // reads; `parent` stays open for the call, so the /proc link is valid.
    let rc = unsafe { libc::lsetxattr(path.as_ptr(), key.as_ptr(), value.as_ptr().cast(), value.len(), 0) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Read extended attribute `key` of `path` (not following a final symlink);
/// `None` when the file has no such attribute. Tests use it to check unpacks.
#[cfg(test)]
pub(crate) fn get_xattr(path: &Path, key: &str) -> io::Result<Option<Vec<u8>>> {
    let path = cstring(path.as_os_str().as_bytes())?;
    let key = cstring(key.as_bytes())?;
    let mut buf = vec![0u8; 64 * 1024];
    // SAFETY: `path` and `key` are NUL-terminated strings that outlive the
    // call; `buf` is a writable buffer of exactly `buf.len()` bytes.
    let rc = unsafe { libc::lgetxattr(path.as_ptr(), key.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    if rc < 0 {
        let err = io::Error::last_os_error();
        return match err.raw_os_error() {
            Some(libc::ENODATA) => Ok(None),
            _ => Err(err),
        };
    }
    let len = usize::try_from(rc).map_err(|_| io::Error::other("negative xattr length"))?;
    buf.truncate(len);
    Ok(Some(buf))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn open_subdir_refuses_symlinks() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("real")).unwrap();
        std::os::unix::fs::symlink("real", dir.path().join("link")).unwrap();
        let root = open_dir(dir.path()).unwrap();
        assert!(open_subdir(root.as_fd(), OsStr::new("real")).is_ok());
        let err = open_subdir(root.as_fd(), OsStr::new("link")).unwrap_err();
        assert!(matches!(err, Errno::ELOOP | Errno::ENOTDIR), "{err}");
        assert_eq!(
            open_subdir(root.as_fd(), OsStr::new("absent")).unwrap_err(),
            Errno::ENOENT
        );
    }

    #[test]
    fn remove_at_removes_trees_without_following_links() {
        let dir = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("keep"), b"x").unwrap();
        std::fs::create_dir_all(dir.path().join("t/a/b")).unwrap();
        std::fs::write(dir.path().join("t/a/b/f"), b"y").unwrap();
        std::os::unix::fs::symlink(outside.path(), dir.path().join("t/out")).unwrap();
        let root = open_dir(dir.path()).unwrap();
        remove_at(root.as_fd(), OsStr::new("t")).unwrap();
        assert!(!dir.path().join("t").exists());
        assert!(outside.path().join("keep").exists());
        remove_at(root.as_fd(), OsStr::new("t")).unwrap();
    }

    #[test]
    fn user_xattrs_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("f"), b"").unwrap();
        let root = open_dir(dir.path()).unwrap();
        match set_xattr_at(root.as_fd(), OsStr::new("f"), "user.berth", b"v") {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(libc::ENOTSUP) => {
                eprintln!("skipping: user xattrs unsupported on the temp filesystem");
                return;
            }
            Err(e) => panic!("{e}"),
        }
        assert_eq!(
            get_xattr(&dir.path().join("f"), "user.berth").unwrap().as_deref(),
            Some(&b"v"[..])
        );
        assert_eq!(get_xattr(&dir.path().join("f"), "user.none").unwrap(), None);
    }
}
