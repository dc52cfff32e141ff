//! A [`Syscall`] fake that records every call and can be told to fail.

use std::cell::RefCell;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::mount::{MntFlags, MsFlags};
use nix::sched::CloneFlags;
use nix::sys::stat::{Mode, SFlag};
use nix::unistd::{Gid, Uid};

use super::{SysResult, Syscall};

/// One recorded call. Paths of the form `/proc/self/fd/N` are recorded as
/// the path the descriptor refers to, so tests see where a mount really
/// lands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Call {
    Mount {
        source: Option<PathBuf>,
        target: PathBuf,
        fstype: Option<String>,
        flags: MsFlags,
        data: Option<String>,
    },
    Umount2 {
        target: PathBuf,
        flags: MntFlags,
    },
    MountSetattr {
        target: PathBuf,
        recursive: bool,
        attr_set: u64,
    },
    PivotRoot {
        new_root: PathBuf,
        put_old: PathBuf,
    },
    Setns {
        fd: i32,
        nstype: CloneFlags,
    },
    Unshare {
        flags: CloneFlags,
    },
    Mknod {
        path: PathBuf,
        kind: SFlag,
        perm: Mode,
        dev: u64,
    },
    Chown {
        path: PathBuf,
        uid: Option<u32>,
        gid: Option<u32>,
    },
    Sethostname(String),
    Setdomainname(String),
    Chdir(PathBuf),
    /// fchdir, recorded as the directory the descriptor names.
    Fchdir(PathBuf),
}

type FailRule = Box<dyn Fn(&Call) -> Option<Errno>>;

/// Records calls in order; every call succeeds unless a rule says otherwise.
#[derive(Default)]
pub struct RecordingSyscall {
    calls: RefCell<Vec<Call>>,
    fail: RefCell<Vec<FailRule>>,
}

impl std::fmt::Debug for RecordingSyscall {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecordingSyscall")
            .field("calls", &self.calls.borrow())
            .finish()
    }
}

fn real_path(p: &Path) -> PathBuf {
    // `/proc/self/fd/N[/rest]`: the directory N names, joined with the rest.
    let mut comps = p.components();
    let head: PathBuf = comps.by_ref().take(5).collect();
    if head.starts_with("/proc/self/fd") && head.components().count() == 5 {
        if let Ok(target) = std::fs::read_link(&head) {
            return target.join(comps.as_path());
        }
    }
    p.to_path_buf()
}

impl RecordingSyscall {
    pub fn new() -> Self {
        Self::default()
    }

    /// Makes every call for which `rule` returns `Some(errno)` fail with it
    /// (the call is still recorded).
    pub fn fail_when(&self, rule: impl Fn(&Call) -> Option<Errno> + 'static) {
        self.fail.borrow_mut().push(Box::new(rule));
    }

    /// The calls made so far.
    pub fn calls(&self) -> Vec<Call> {
        self.calls.borrow().clone()
    }

    /// The mount calls made so far.
    pub fn mounts(&self) -> Vec<Call> {
        self.calls()
            .into_iter()
            .filter(|c| matches!(c, Call::Mount { .. }))
            .collect()
    }

    fn record(&self, call: Call) -> SysResult<()> {
        let failure = self.fail.borrow().iter().find_map(|rule| rule(&call));
        self.calls.borrow_mut().push(call);
        match failure {
            Some(errno) => Err(errno),
            None => Ok(()),
        }
    }
}

impl Syscall for RecordingSyscall {
    fn mount(
        &self,
        source: Option<&Path>,
        target: &Path,
        fstype: Option<&str>,
        flags: MsFlags,
        data: Option<&str>,
    ) -> SysResult<()> {
        self.record(Call::Mount {
            source: source.map(real_path),
            target: real_path(target),
            fstype: fstype.map(str::to_string),
            flags,
            data: data.map(str::to_string),
        })
    }

    fn umount2(&self, target: &Path, flags: MntFlags) -> SysResult<()> {
        self.record(Call::Umount2 {
            target: real_path(target),
            flags,
        })
    }

    fn mount_setattr(&self, target: &Path, recursive: bool, attr_set: u64) -> SysResult<()> {
        self.record(Call::MountSetattr {
            target: real_path(target),
            recursive,
            attr_set,
        })
    }

    fn pivot_root(&self, new_root: &Path, put_old: &Path) -> SysResult<()> {
        self.record(Call::PivotRoot {
            new_root: new_root.to_path_buf(),
            put_old: put_old.to_path_buf(),
        })
    }

    fn setns(&self, fd: BorrowedFd<'_>, nstype: CloneFlags) -> SysResult<()> {
        self.record(Call::Setns {
            fd: fd.as_raw_fd(),
            nstype,
        })
    }

    fn unshare(&self, flags: CloneFlags) -> SysResult<()> {
        self.record(Call::Unshare { flags })
    }

    fn mknod(&self, path: &Path, kind: SFlag, perm: Mode, dev: u64) -> SysResult<()> {
        self.record(Call::Mknod {
            path: real_path(path),
            kind,
            perm,
            dev,
        })
    }

    fn chown(&self, path: &Path, uid: Option<Uid>, gid: Option<Gid>) -> SysResult<()> {
        self.record(Call::Chown {
            path: real_path(path),
            uid: uid.map(|u| u.as_raw()),
            gid: gid.map(|g| g.as_raw()),
        })
    }

    fn sethostname(&self, name: &str) -> SysResult<()> {
        self.record(Call::Sethostname(name.to_string()))
    }

    fn setdomainname(&self, name: &str) -> SysResult<()> {
        self.record(Call::Setdomainname(name.to_string()))
    }

    fn chdir(&self, path: &Path) -> SysResult<()> {
        self.record(Call::Chdir(path.to_path_buf()))
    }

    fn fchdir(&self, fd: BorrowedFd<'_>) -> SysResult<()> {
        let p = PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd()));
        self.record(Call::Fchdir(real_path(&p)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_in_order_and_injects_failures() {
        let sys = RecordingSyscall::new();
        sys.fail_when(|c| matches!(c, Call::Sethostname(h) if h == "bad").then_some(Errno::EPERM));
        sys.unshare(CloneFlags::CLONE_NEWNS).unwrap();
        sys.sethostname("ok").unwrap();
        assert_eq!(sys.sethostname("bad"), Err(Errno::EPERM));
        assert_eq!(
            sys.calls(),
            vec![
                Call::Unshare {
                    flags: CloneFlags::CLONE_NEWNS
                },
                Call::Sethostname("ok".into()),
                Call::Sethostname("bad".into()),
            ]
        );
    }

    #[test]
    fn fd_paths_are_recorded_as_their_target() {
        let dir = tempfile::tempdir().unwrap();
        let f = std::fs::File::open(dir.path()).unwrap();
        let sys = RecordingSyscall::new();
        let fd_path = PathBuf::from(format!("/proc/self/fd/{}", f.as_raw_fd()));
        sys.mount(None, &fd_path, Some("tmpfs"), MsFlags::empty(), None)
            .unwrap();
        assert!(matches!(&sys.mounts()[0], Call::Mount { target, .. } if target == dir.path()));
    }
}
