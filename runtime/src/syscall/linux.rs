//! The real [`Syscall`] implementation.

use std::ffi::CString;
use std::os::fd::BorrowedFd;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use nix::errno::Errno;

use nix::mount::{MntFlags, MsFlags};
use nix::sched::CloneFlags;
use nix::sys::stat::{Mode, SFlag};
use nix::unistd::{Gid, Uid};

use super::{SysResult, Syscall};

/// Calls the kernel.
#[derive(Debug, Default, Clone, Copy)]
pub struct LinuxSyscall;

impl Syscall for LinuxSyscall {
    fn mount(
        &self,
        source: Option<&Path>,
        target: &Path,
        fstype: Option<&str>,
        flags: MsFlags,
        data: Option<&str>,
    ) -> SysResult<()> {
        nix::mount::mount(source, target, fstype, flags, data)
    }

    fn umount2(&self, target: &Path, flags: MntFlags) -> SysResult<()> {
        nix::mount::umount2(target, flags)
    }

    fn mount_setattr(&self, target: &Path, recursive: bool, attr_set: u64) -> SysResult<()> {
        // nix has no wrapper for mount_setattr(2) (Linux 5.12).
        let path = CString::new(target.as_os_str().as_bytes()).map_err(|_| Errno::EINVAL)?;
        let attr = libc::mount_attr {
            attr_set,
            attr_clr: 0,
            propagation: 0,
            userns_fd: 0,
        };
        let flags = if recursive { libc::AT_RECURSIVE } else { 0 } as libc::c_uint;
        // SAFETY: `path` is a NUL-terminated string and `attr` a live
        // `struct mount_attr` whose size is passed; the kernel copies both
        // and keeps no reference.
        let r = unsafe {
            libc::syscall(
                libc::SYS_mount_setattr,
                libc::AT_FDCWD,
                path.as_ptr(),
                flags,
                &attr as *const libc::mount_attr,
                std::mem::size_of::<libc::mount_attr>(),
            )
        };
        Errno::result(r).map(drop)
    }

    fn pivot_root(&self, new_root: &Path, put_old: &Path) -> SysResult<()> {
        nix::unistd::pivot_root(new_root, put_old)
    }

    fn setns(&self, fd: BorrowedFd<'_>, nstype: CloneFlags) -> SysResult<()> {
        nix::sched::setns(fd, nstype)
    }

    fn unshare(&self, flags: CloneFlags) -> SysResult<()> {
        nix::sched::unshare(flags)
    }

    fn mknod(&self, path: &Path, kind: SFlag, perm: Mode, dev: u64) -> SysResult<()> {
        nix::sys::stat::mknod(path, kind, perm, dev)
    }

    fn chown(&self, path: &Path, uid: Option<Uid>, gid: Option<Gid>) -> SysResult<()> {
        nix::unistd::chown(path, uid, gid)
    }

    fn sethostname(&self, name: &str) -> SysResult<()> {
        nix::unistd::sethostname(name)
    }

    fn setdomainname(&self, name: &str) -> SysResult<()> {
        // nix has no wrapper for setdomainname(2).
        // SAFETY: the pointer and length describe `name`'s live buffer; the
        // kernel copies at most `len` bytes and keeps no reference.
        let rc = unsafe { libc::setdomainname(name.as_ptr().cast(), name.len()) };
        nix::errno::Errno::result(rc).map(drop)
    }

    fn chdir(&self, path: &Path) -> SysResult<()> {
        nix::unistd::chdir(path)
    }

    fn fchdir(&self, fd: BorrowedFd<'_>) -> SysResult<()> {
        nix::unistd::fchdir(fd)
    }
}
