//! The mounts a pod owns: the pods root as a private self-bind (see the
//! propagation note in [`super`]), nsfs bind mounts, the shm tmpfs; and
//! reading mountinfo to find what is mounted under a directory.

use std::collections::HashSet;
use std::fs::OpenOptions;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use nix::errno::Errno;
use nix::mount::{MntFlags, MsFlags};

use super::SandboxError;

/// The kernel's mount table for this process.
pub const MOUNTINFO: &str = "/proc/self/mountinfo";

fn sys<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(Errno) -> SandboxError + 'a {
    move |source| SandboxError::Sys {
        op,
        path: path.to_path_buf(),
        source,
    }
}

fn io<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> SandboxError + 'a {
    move |source| SandboxError::Io {
        op,
        path: path.to_path_buf(),
        source,
    }
}

/// Undoes mountinfo's octal escapes (`\040` for a space).
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let octal = b
            .get(i + 1..i + 4)
            .filter(|d| d.iter().all(|c| (b'0'..=b'7').contains(c)));
        if let (b'\\', Some(d)) = (b[i], octal) {
            out.push(d.iter().fold(0u8, |acc, c| acc.wrapping_mul(8).wrapping_add(c - b'0')));
            i += 4;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Mount points listed in `mountinfo` text.
pub fn mount_points(mountinfo: &str) -> Vec<PathBuf> {
    mountinfo
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(|m| PathBuf::from(unescape(m)))
        .collect()
}

/// Mount points at or below `dir` per the mountinfo file, deepest first
/// (each stacked mount listed once per layer).
pub fn mounts_under(mountinfo: &Path, dir: &Path) -> Result<Vec<PathBuf>, SandboxError> {
    let text = std::fs::read_to_string(mountinfo).map_err(io("read", mountinfo))?;
    let mut found: Vec<PathBuf> = mount_points(&text).into_iter().filter(|m| m.starts_with(dir)).collect();
    found.sort_by_key(|m| std::cmp::Reverse(m.components().count()));
    Ok(found)
}

/// Whether `path` is a mount point per the mountinfo file.
pub fn is_mount_point(mountinfo: &Path, path: &Path) -> Result<bool, SandboxError> {
    let text = std::fs::read_to_string(mountinfo).map_err(io("read", mountinfo))?;
    Ok(mount_points(&text).iter().any(|m| m == path))
}

/// Roots already made private self-binds by this process.
fn prepared_roots() -> &'static Mutex<HashSet<PathBuf>> {
    static ROOTS: OnceLock<Mutex<HashSet<PathBuf>>> = OnceLock::new();
    ROOTS.get_or_init(|| Mutex::new(HashSet::new()))
}

/// Makes `root` (created if missing) a mount point of its own with private
/// propagation: bound onto itself if it is not a mount point yet, then
/// `MS_PRIVATE`. Idempotent; safe to call from many threads.
pub fn ensure_private_root(root: &Path) -> Result<(), SandboxError> {
    let mut done = prepared_roots().lock().unwrap_or_else(|e| e.into_inner());
    if done.contains(root) {
        return Ok(());
    }
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o711)
        .create(root)
        .map_err(io("create", root))?;
    if !is_mount_point(Path::new(MOUNTINFO), root)? {
        nix::mount::mount(Some(root), root, None::<&str>, MsFlags::MS_BIND, None::<&str>)
            .map_err(sys("bind-mount onto itself", root))?;
    }
    nix::mount::mount(None::<&str>, root, None::<&str>, MsFlags::MS_PRIVATE, None::<&str>)
        .map_err(sys("make private", root))?;
    done.insert(root.to_path_buf());
    Ok(())
}

/// Forgets that `root` was prepared (after it was unmounted by a test).
pub fn forget_root(root: &Path) {
    prepared_roots().lock().unwrap_or_else(|e| e.into_inner()).remove(root);
}

/// Bind-mounts the namespace file `source` (`/proc/<pid>/ns/net`) onto a
/// new empty file `target`.
pub fn bind_ns(source: &Path, target: &Path) -> Result<(), SandboxError> {
    OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o444)
        .custom_flags(libc::O_CLOEXEC)
        .open(target)
        .map_err(io("create", target))?;
    nix::mount::mount(Some(source), target, None::<&str>, MsFlags::MS_BIND, None::<&str>)
        .map_err(sys("bind-mount namespace onto", target))
}

/// Mounts the pod's shm tmpfs (`size` bytes, mode 1777, nosuid, nodev,
/// noexec) at `target`, created if missing.
pub fn mount_shm(target: &Path, size: u64) -> Result<(), SandboxError> {
    std::fs::DirBuilder::new()
        .mode(0o755)
        .create(target)
        .or_else(|e| {
            if e.kind() == std::io::ErrorKind::AlreadyExists {
                Ok(())
            } else {
                Err(e)
            }
        })
        .map_err(io("create", target))?;
    let data = format!("mode=1777,size={size}");
    nix::mount::mount(
        Some("shm"),
        target,
        Some("tmpfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
        Some(data.as_str()),
    )
    .map_err(sys("mount shm tmpfs at", target))
}

/// Lazily unmounts every mount at or below `dir`, deepest first. Returns
/// what was unmounted; an already-gone mount is not an error.
pub fn detach_all_under(dir: &Path) -> Result<Vec<PathBuf>, SandboxError> {
    let mut done = Vec::new();
    for m in mounts_under(Path::new(MOUNTINFO), dir)? {
        match nix::mount::umount2(&m, MntFlags::MNT_DETACH) {
            Ok(()) => done.push(m),
            Err(Errno::EINVAL) | Err(Errno::ENOENT) => {}
            Err(e) => return Err(sys("unmount", &m)(e)),
        }
    }
    Ok(done)
}

/// Whether `path` is a live nsfs bind (a namespace file).
pub fn is_nsfs(path: &Path) -> bool {
    nix::sys::statfs::statfs(path).is_ok_and(|s| s.filesystem_type() == nix::sys::statfs::NSFS_MAGIC)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MOUNTINFO_TEXT: &str = "\
22 27 0:21 / /proc rw,relatime - proc proc rw
90 27 0:4 net:[4026532281] /run/berth/pods/a/net rw shared:5 - nsfs nsfs rw
91 27 0:55 / /run/berth/pods/a/shm rw,nosuid - tmpfs shm rw,size=65536k
92 27 0:4 net:[4026532300] /run/berth/pods/with\\040space/net rw - nsfs nsfs rw
93 27 0:4 / /run/berth/pods rw shared:5 - ext4 /dev/vda rw
";

    #[test]
    fn mount_points_are_unescaped_and_sorted_deepest_first() {
        let tmp = tempfile::tempdir().unwrap();
        let mi = tmp.path().join("mountinfo");
        std::fs::write(&mi, MOUNTINFO_TEXT).unwrap();
        let under = mounts_under(&mi, Path::new("/run/berth/pods")).unwrap();
        assert_eq!(under.len(), 4);
        assert_eq!(under.last().unwrap(), Path::new("/run/berth/pods"));
        assert!(under.contains(&PathBuf::from("/run/berth/pods/with space/net")));
        assert_eq!(
            mounts_under(&mi, Path::new("/run/berth/pods/a")).unwrap(),
            vec![
                PathBuf::from("/run/berth/pods/a/net"),
                PathBuf::from("/run/berth/pods/a/shm")
            ]
        );
        // A sibling with a common string prefix is not "under".
        assert!(mounts_under(&mi, Path::new("/run/berth/po")).unwrap().is_empty());
        assert!(is_mount_point(&mi, Path::new("/proc")).unwrap());
        assert!(!is_mount_point(&mi, Path::new("/run")).unwrap());
        assert_eq!(unescape("a\\011b\\"), "a\tb\\");
    }
}
