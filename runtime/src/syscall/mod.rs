//! The syscall seam: every privileged, process-wide call the container setup
//! makes (mount, mount_setattr, pivot_root, setns, unshare, mknod, chown,
//! hostname) goes
//! through [`Syscall`], so setup logic can be unit-tested against
//! [`RecordingSyscall`] without root, and run for real with [`LinuxSyscall`].

mod linux;
mod recording;

use std::os::fd::BorrowedFd;
use std::path::Path;

use nix::mount::{MntFlags, MsFlags};
use nix::sched::CloneFlags;
use nix::sys::stat::{Mode, SFlag};
use nix::unistd::{Gid, Uid};

pub use linux::LinuxSyscall;
pub use recording::{Call, RecordingSyscall};

/// Result of a seam call: the raw errno on failure; callers add context.
pub type SysResult<T> = Result<T, nix::errno::Errno>;

/// Privileged calls made while setting up a container.
pub trait Syscall {
    /// mount(2).
    fn mount(
        &self,
        source: Option<&Path>,
        target: &Path,
        fstype: Option<&str>,
        flags: MsFlags,
        data: Option<&str>,
    ) -> SysResult<()>;
    /// umount2(2).
    fn umount2(&self, target: &Path, flags: MntFlags) -> SysResult<()>;
    /// mount_setattr(2): sets `attr_set` (`MOUNT_ATTR_*`) on the mount at
    /// `target`, and on every mount below it when `recursive`.
    fn mount_setattr(&self, target: &Path, recursive: bool, attr_set: u64) -> SysResult<()>;
    /// pivot_root(2).
    fn pivot_root(&self, new_root: &Path, put_old: &Path) -> SysResult<()>;
    /// setns(2) into the namespace behind `fd`.
    fn setns(&self, fd: BorrowedFd<'_>, nstype: CloneFlags) -> SysResult<()>;
    /// unshare(2).
    fn unshare(&self, flags: CloneFlags) -> SysResult<()>;
    /// mknod(2).
    fn mknod(&self, path: &Path, kind: SFlag, perm: Mode, dev: u64) -> SysResult<()>;
    /// chown(2) (follows symlinks; callers pass resolved paths).
    fn chown(&self, path: &Path, uid: Option<Uid>, gid: Option<Gid>) -> SysResult<()>;
    /// sethostname(2).
    fn sethostname(&self, name: &str) -> SysResult<()>;
    /// setdomainname(2).
    fn setdomainname(&self, name: &str) -> SysResult<()>;
    /// chdir(2).
    fn chdir(&self, path: &Path) -> SysResult<()>;
    /// fchdir(2).
    fn fchdir(&self, fd: BorrowedFd<'_>) -> SysResult<()>;
}
