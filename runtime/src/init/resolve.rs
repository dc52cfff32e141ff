//! Resolve paths *inside* a container rootfs, so a symlink in an image can
//! never send a mount, a device node or a masked path onto the host.
//!
//! [`Root::resolve`] returns an `O_PATH` descriptor; callers then mount onto
//! [`fd_path`] (`/proc/self/fd/N`), which names exactly that inode whatever
//! the path's symlinks say later. Resolution uses `openat2(RESOLVE_IN_ROOT)`
//! (Linux 5.6+), falling back to a component-by-component walk with
//! `O_NOFOLLOW` that expands symlinks itself, clamping `..` and absolute
//! targets at the root.

use std::collections::VecDeque;
use std::ffi::{CString, OsStr, OsString};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use nix::errno::Errno;
use nix::fcntl::{openat, readlinkat, OFlag};
use nix::sys::stat::{fstat, mkdirat, Mode, SFlag};

const MAX_SYMLINKS: usize = 40;

/// A container rootfs opened as a directory descriptor.
#[derive(Debug)]
pub struct Root {
    fd: OwnedFd,
    path: PathBuf,
    force_fallback: bool,
}

/// `/proc/self/fd/N` for `fd`: the path to pass to mount(2) and friends.
pub fn fd_path(fd: BorrowedFd<'_>) -> PathBuf {
    PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd()))
}

static OPENAT2_MISSING: AtomicBool = AtomicBool::new(false);

/// Argument of openat2(2) (`struct open_how`; libc's is non-exhaustive).
#[repr(C)]
struct OpenHow {
    flags: u64,
    mode: u64,
    resolve: u64,
}

/// openat2(dirfd, path, O_PATH, RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS).
/// A raw syscall because neither libc nor nix wraps it.
fn openat2_in_root(dirfd: BorrowedFd<'_>, path: &Path) -> Result<OwnedFd, Errno> {
    let c = CString::new(path.as_os_str().as_bytes()).map_err(|_| Errno::EINVAL)?;
    let how = OpenHow {
        flags: (libc::O_PATH | libc::O_CLOEXEC) as u64,
        mode: 0,
        resolve: libc::RESOLVE_IN_ROOT | libc::RESOLVE_NO_MAGICLINKS,
    };
    loop {
        // SAFETY: `c` is a NUL-terminated string and `how` a properly laid
        // out `struct open_how`, both alive for the call; the size passed is
        // that of `how`. The kernel returns a new descriptor or -1.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_openat2,
                dirfd.as_raw_fd(),
                c.as_ptr(),
                &how as *const OpenHow,
                std::mem::size_of::<OpenHow>(),
            )
        };
        match Errno::result(rc) {
            // SAFETY: a non-negative return is a descriptor the kernel just
            // opened for us and nothing else owns.
            Ok(fd) => return Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) }),
            Err(Errno::EINTR) | Err(Errno::EAGAIN) => continue,
            Err(e) => return Err(e),
        }
    }
}

fn components(path: &Path) -> VecDeque<OsString> {
    path.components()
        .filter_map(|c| match c {
            Component::Normal(n) => Some(n.to_os_string()),
            Component::ParentDir => Some(OsString::from("..")),
            _ => None,
        })
        .collect()
}

fn is_symlink(fd: BorrowedFd<'_>) -> Result<bool, Errno> {
    let st = fstat(fd)?;
    Ok(SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT == SFlag::S_IFLNK)
}

fn dup(fd: BorrowedFd<'_>) -> Result<OwnedFd, Errno> {
    fd.try_clone_to_owned()
        .map_err(|e| Errno::from_raw(e.raw_os_error().unwrap_or(libc::EBADF)))
}

impl Root {
    /// Opens the rootfs directory.
    pub fn open(path: &Path) -> std::io::Result<Root> {
        let fd = nix::fcntl::open(
            path,
            OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )?;
        Ok(Root {
            fd,
            path: path.to_path_buf(),
            force_fallback: false,
        })
    }

    /// Uses the component walk even where openat2 exists (tests).
    pub fn with_fallback(mut self) -> Root {
        self.force_fallback = true;
        self
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// Resolves `path` (absolute or relative, taken relative to the root)
    /// inside the root, following symlinks as if the root were `/`.
    pub fn resolve(&self, path: &Path) -> Result<OwnedFd, Errno> {
        if !self.force_fallback && !OPENAT2_MISSING.load(Ordering::Relaxed) {
            let rel = path.strip_prefix("/").unwrap_or(path);
            let rel = if rel.as_os_str().is_empty() {
                Path::new(".")
            } else {
                rel
            };
            match openat2_in_root(self.fd.as_fd(), rel) {
                Err(Errno::ENOSYS) => OPENAT2_MISSING.store(true, Ordering::Relaxed),
                other => return other,
            }
        }
        self.resolve_walk(path)
    }

    /// The fallback resolver: one component at a time with `O_NOFOLLOW`.
    fn resolve_walk(&self, path: &Path) -> Result<OwnedFd, Errno> {
        let mut stack: Vec<OwnedFd> = vec![dup(self.fd.as_fd())?];
        let mut queue = components(path);
        let mut links = 0;
        while let Some(name) = queue.pop_front() {
            if name == ".." {
                if stack.len() > 1 {
                    stack.pop();
                }
                continue;
            }
            let cur = stack.last().expect("stack holds the root");
            let fd = openat(
                cur.as_fd(),
                name.as_os_str(),
                OFlag::O_PATH | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
                Mode::empty(),
            )?;
            if is_symlink(fd.as_fd())? {
                links += 1;
                if links > MAX_SYMLINKS {
                    return Err(Errno::ELOOP);
                }
                let target = PathBuf::from(readlinkat(fd.as_fd(), OsStr::new(""))?);
                if target.is_absolute() {
                    stack.truncate(1);
                }
                for c in components(&target).into_iter().rev() {
                    queue.push_front(c);
                }
            } else {
                stack.push(fd);
            }
        }
        Ok(stack.pop().expect("stack holds the root"))
    }

    /// Creates every missing directory of `path` inside the root (following
    /// symlinks inside it, including dangling ones) and returns the last.
    pub fn mkdir_all(&self, path: &Path, mode: Mode) -> Result<OwnedFd, Errno> {
        self.mkdir_all_depth(path, mode, 0)
    }

    fn mkdir_all_depth(&self, path: &Path, mode: Mode, depth: usize) -> Result<OwnedFd, Errno> {
        if depth > MAX_SYMLINKS {
            return Err(Errno::ELOOP);
        }
        let comps: Vec<OsString> = components(path).into();
        let mut cur = dup(self.fd.as_fd())?;
        let mut prefix = PathBuf::from("/");
        for name in comps {
            let parent = prefix.clone();
            prefix.push(&name);
            match self.resolve(&prefix) {
                Ok(fd) => cur = fd,
                Err(Errno::ENOENT) => {
                    match mkdirat(cur.as_fd(), name.as_os_str(), mode) {
                        Ok(()) => {}
                        Err(Errno::EEXIST) => {
                            // A dangling symlink: create its target, inside.
                            let target = self.dangling_target(&cur, &name, &parent)?;
                            self.mkdir_all_depth(&target, mode, depth + 1)?;
                        }
                        Err(e) => return Err(e),
                    }
                    cur = self.resolve(&prefix)?;
                }
                Err(e) => return Err(e),
            }
        }
        Ok(cur)
    }

    /// For a symlink `name` in directory `dir` (whose in-root path is
    /// `parent`) whose target does not exist, the in-root path of the target.
    fn dangling_target(&self, dir: &OwnedFd, name: &OsStr, parent: &Path) -> Result<PathBuf, Errno> {
        let link = openat(
            dir.as_fd(),
            name,
            OFlag::O_PATH | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::empty(),
        )?;
        if !is_symlink(link.as_fd())? {
            return Err(Errno::EEXIST);
        }
        let target = PathBuf::from(readlinkat(link.as_fd(), OsStr::new(""))?);
        Ok(if target.is_absolute() {
            target
        } else {
            parent.join(target)
        })
    }

    /// Creates an empty regular file at `path` if nothing is there (parents
    /// included), and returns an `O_PATH` descriptor of what is there.
    pub fn create_file(&self, path: &Path, mode: Mode) -> Result<OwnedFd, Errno> {
        self.create_file_depth(path, mode, 0)
    }

    fn create_file_depth(&self, path: &Path, mode: Mode, depth: usize) -> Result<OwnedFd, Errno> {
        if depth > MAX_SYMLINKS {
            return Err(Errno::ELOOP);
        }
        match self.resolve(path) {
            Err(Errno::ENOENT) => {}
            other => return other,
        }
        let parent = path.parent().unwrap_or(Path::new("/"));
        let name = path.file_name().ok_or(Errno::EINVAL)?;
        let dir = self.mkdir_all(parent, Mode::from_bits_truncate(0o755))?;
        // Re-open the directory for writing: O_PATH fds cannot create.
        let dir = openat(
            dir.as_fd(),
            ".",
            OFlag::O_DIRECTORY | OFlag::O_RDONLY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )?;
        match openat(
            dir.as_fd(),
            name,
            OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_WRONLY | OFlag::O_CLOEXEC,
            mode,
        ) {
            Ok(_) => {}
            Err(Errno::EEXIST) => {
                let target = self.dangling_target(&dir, name, parent)?;
                return self.create_file_depth(&target, mode, depth + 1);
            }
            Err(e) => return Err(e),
        }
        self.resolve(path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn real(fd: &OwnedFd) -> PathBuf {
        std::fs::read_link(fd_path(fd.as_fd())).unwrap()
    }

    fn both(dir: &Path) -> [Root; 2] {
        [Root::open(dir).unwrap(), Root::open(dir).unwrap().with_fallback()]
    }

    #[test]
    fn symlinks_and_dotdot_stay_inside_the_root() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("rootfs");
        std::fs::create_dir_all(root.join("etc")).unwrap();
        std::fs::create_dir_all(root.join("tmp/host-target")).unwrap();
        std::fs::create_dir_all(tmp.path().join("tmp/host-target")).unwrap();
        symlink("/tmp/host-target", root.join("etc/evil")).unwrap();
        symlink("../../../../..", root.join("etc/up")).unwrap();
        symlink("loop2", root.join("loop1")).unwrap();
        symlink("loop1", root.join("loop2")).unwrap();
        for r in both(&root) {
            assert_eq!(
                real(&r.resolve(Path::new("/etc/evil")).unwrap()),
                root.join("tmp/host-target")
            );
            assert_eq!(real(&r.resolve(Path::new("/etc/up")).unwrap()), root);
            assert_eq!(real(&r.resolve(Path::new("../../etc")).unwrap()), root.join("etc"));
            assert_eq!(r.resolve(Path::new("/loop1")).unwrap_err(), Errno::ELOOP);
            assert_eq!(r.resolve(Path::new("/missing")).unwrap_err(), Errno::ENOENT);
        }
    }

    #[test]
    fn mkdir_all_and_create_file_follow_dangling_links_inside() {
        for fallback in [false, true] {
            let tmp = tempfile::tempdir().unwrap();
            let root = tmp.path().join("rootfs");
            std::fs::create_dir_all(root.join("etc")).unwrap();
            symlink("/tmp/host-target", root.join("etc/evil")).unwrap();
            symlink("/tmp/host-file", root.join("etc/evil-file")).unwrap();
            let mut r = Root::open(&root).unwrap();
            if fallback {
                r = r.with_fallback();
            }
            let fd = r
                .mkdir_all(Path::new("/etc/evil/sub"), Mode::from_bits_truncate(0o755))
                .unwrap();
            assert_eq!(real(&fd), root.join("tmp/host-target/sub"));
            let fd = r
                .create_file(Path::new("/etc/evil-file"), Mode::from_bits_truncate(0o644))
                .unwrap();
            assert_eq!(real(&fd), root.join("tmp/host-file"));
            assert!(root.join("tmp/host-file").is_file());
        }
    }
}
