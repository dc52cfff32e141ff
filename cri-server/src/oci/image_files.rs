//! Reading a few small files (`/etc/passwd`, `/etc/group`) out of an image
//! before any container of it runs, without mounting anything.
//!
//! [`LayerFiles`] reads the merged view of a stack of unpacked layer
//! directories (top layer first, as `ImageService::layer_paths` returns
//! them) the way overlayfs would show it:
//!
//! - the topmost layer that has an entry decides what it is;
//! - a `0:0` character device is a whiteout: the name does not exist;
//! - a directory merges with the same directory of the layers below it,
//!   unless it carries `trusted.overlay.opaque=y` (or a layer below has a
//!   non-directory there, which ends the merge);
//! - symlinks are resolved *inside the merged view* (an absolute target
//!   starts again at the image root, `..` stops at it), at most
//!   [`MAX_SYMLINK_HOPS`] of them; nothing on the host is ever followed:
//!   every step is an `openat`/`fstatat` relative to an already opened
//!   directory of a layer, with `O_NOFOLLOW`/`AT_SYMLINK_NOFOLLOW`;
//! - a file larger than the size cap (1 MiB by default) is an error.

use std::collections::VecDeque;
use std::ffi::{OsStr, OsString};
use std::io::Read;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

use nix::errno::Errno;
use nix::fcntl::{AtFlags, OFlag};
use nix::sys::stat::{Mode, SFlag};

/// Symlinks followed while resolving one path (Linux's own limit).
pub const MAX_SYMLINK_HOPS: usize = 40;

/// Default cap on the size of a file read out of an image.
pub const DEFAULT_MAX_FILE_SIZE: u64 = 1 << 20;

const OPAQUE_XATTR: &[u8] = b"trusted.overlay.opaque\0";

/// Errors reading a file out of an image, each naming the path.
#[derive(Debug, thiserror::Error)]
pub enum ImageFilesError {
    #[error("image file {path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error("image file {path}: more than {max} bytes")]
    TooLarge { path: String, max: u64 },
    #[error("image file {path}: more than {MAX_SYMLINK_HOPS} symlinks")]
    SymlinkLoop { path: String },
    #[error("image file {path}: not a regular file")]
    NotAFile { path: String },
    #[error("image layer {layer}: {source}")]
    Layer { layer: PathBuf, source: std::io::Error },
}

/// Read access to the files of an image, as its containers will see them.
pub trait ImageFiles {
    /// The contents of the regular file at `path` (absolute, inside the
    /// image), or `None` when no such file exists.
    fn read(&self, path: &str) -> Result<Option<Vec<u8>>, ImageFilesError>;
}

/// An image's files read from its unpacked layer directories.
#[derive(Debug, Clone)]
pub struct LayerFiles {
    layers: Vec<PathBuf>,
    max_size: u64,
}

impl LayerFiles {
    /// `layers`: top layer first.
    pub fn new(layers: Vec<PathBuf>) -> LayerFiles {
        LayerFiles {
            layers,
            max_size: DEFAULT_MAX_FILE_SIZE,
        }
    }

    pub fn with_max_size(mut self, max_size: u64) -> LayerFiles {
        self.max_size = max_size;
        self
    }
}

/// One directory of the merged view: its open directory in each layer that
/// contributes to it, top first.
struct Dir {
    fds: Vec<OwnedFd>,
}

/// What a name in a merged directory is.
enum Entry {
    Dir(Dir),
    Symlink(OsString),
    /// A regular file in the layer whose directory is `fds[layer]`.
    File {
        layer: usize,
    },
    Other,
}

fn io_err(path: &str) -> impl Fn(Errno) -> ImageFilesError + '_ {
    move |e| ImageFilesError::Io {
        path: path.to_string(),
        source: std::io::Error::from(e),
    }
}

fn open_dir_at(dir: BorrowedFd<'_>, name: &OsStr) -> nix::Result<OwnedFd> {
    nix::fcntl::openat(
        dir,
        name,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
}

fn is_opaque(dir: BorrowedFd<'_>) -> bool {
    let mut buf = [0u8; 4];
    // SAFETY: `dir` is an open descriptor for the duration of the call, the
    // name is NUL-terminated and `buf` is valid for `buf.len()` bytes.
    let n = unsafe {
        libc::fgetxattr(
            dir.as_raw_fd(),
            OPAQUE_XATTR.as_ptr().cast(),
            buf.as_mut_ptr().cast(),
            buf.len(),
        )
    };
    n == 1 && buf[0] == b'y'
}

fn kind(mode: libc::mode_t) -> SFlag {
    SFlag::from_bits_truncate(mode & SFlag::S_IFMT.bits())
}

/// Looks `name` up in the merged directory `dir`.
fn lookup(dir: &Dir, name: &OsStr, path: &str) -> Result<Option<Entry>, ImageFilesError> {
    for (i, fd) in dir.fds.iter().enumerate() {
        let st = match nix::sys::stat::fstatat(fd.as_fd(), name, AtFlags::AT_SYMLINK_NOFOLLOW) {
            Ok(st) => st,
            Err(Errno::ENOENT) => continue,
            Err(e) => return Err(io_err(path)(e)),
        };
        return Ok(Some(match kind(st.st_mode) {
            SFlag::S_IFCHR if st.st_rdev == 0 => return Ok(None),
            SFlag::S_IFDIR => Entry::Dir(merged_dir(dir, i, name, path)?),
            SFlag::S_IFLNK => Entry::Symlink(nix::fcntl::readlinkat(fd.as_fd(), name).map_err(io_err(path))?),
            SFlag::S_IFREG => Entry::File { layer: i },
            _ => Entry::Other,
        }));
    }
    Ok(None)
}

/// The merged directory `name` whose topmost layer is `dir.fds[top]`.
fn merged_dir(dir: &Dir, top: usize, name: &OsStr, path: &str) -> Result<Dir, ImageFilesError> {
    let mut fds = Vec::new();
    for fd in &dir.fds[top..] {
        if !fds.is_empty() {
            match nix::sys::stat::fstatat(fd.as_fd(), name, AtFlags::AT_SYMLINK_NOFOLLOW) {
                Ok(st) if kind(st.st_mode) == SFlag::S_IFDIR => {}
                Ok(_) => break,
                Err(Errno::ENOENT) => continue,
                Err(e) => return Err(io_err(path)(e)),
            }
        }
        let sub = open_dir_at(fd.as_fd(), name).map_err(io_err(path))?;
        let opaque = is_opaque(sub.as_fd());
        fds.push(sub);
        if opaque {
            break;
        }
    }
    Ok(Dir { fds })
}

fn components(path: &OsStr) -> impl Iterator<Item = OsString> + '_ {
    path.as_bytes()
        .split(|&b| b == b'/')
        .filter(|c| !c.is_empty() && *c != b".")
        .map(|c| OsStr::from_bytes(c).to_os_string())
}

impl LayerFiles {
    fn root(&self) -> Result<Dir, ImageFilesError> {
        let mut fds = Vec::with_capacity(self.layers.len());
        for layer in &self.layers {
            let fd = nix::fcntl::open(
                layer.as_path(),
                OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
                Mode::empty(),
            )
            .map_err(|e| ImageFilesError::Layer {
                layer: layer.clone(),
                source: e.into(),
            })?;
            let opaque = is_opaque(fd.as_fd());
            fds.push(fd);
            if opaque {
                break;
            }
        }
        Ok(Dir { fds })
    }

    fn read_regular(&self, dir: &Dir, layer: usize, name: &OsStr, path: &str) -> Result<Vec<u8>, ImageFilesError> {
        let fd = nix::fcntl::openat(
            dir.fds[layer].as_fd(),
            name,
            OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(io_err(path))?;
        let st = nix::sys::stat::fstat(fd.as_fd()).map_err(io_err(path))?;
        if kind(st.st_mode) != SFlag::S_IFREG {
            return Err(ImageFilesError::NotAFile { path: path.to_string() });
        }
        let mut data = Vec::new();
        std::fs::File::from(fd)
            .take(self.max_size + 1)
            .read_to_end(&mut data)
            .map_err(|source| ImageFilesError::Io {
                path: path.to_string(),
                source,
            })?;
        if data.len() as u64 > self.max_size {
            return Err(ImageFilesError::TooLarge {
                path: path.to_string(),
                max: self.max_size,
            });
        }
        Ok(data)
    }
}

impl ImageFiles for LayerFiles {
    fn read(&self, path: &str) -> Result<Option<Vec<u8>>, ImageFilesError> {
        // The chain of merged directories from the root to the current one.
        let mut stack = vec![self.root()?];
        let mut queue: VecDeque<OsString> = components(OsStr::new(path)).collect();
        let mut hops = 0;
        while let Some(name) = queue.pop_front() {
            if name == ".." {
                if stack.len() > 1 {
                    stack.pop();
                }
                continue;
            }
            let dir = stack.last().expect("the root is never popped");
            match lookup(dir, &name, path)? {
                None => return Ok(None),
                Some(Entry::Dir(sub)) => {
                    if queue.is_empty() {
                        return Err(ImageFilesError::NotAFile { path: path.to_string() });
                    }
                    stack.push(sub);
                }
                Some(Entry::Symlink(target)) => {
                    hops += 1;
                    if hops > MAX_SYMLINK_HOPS {
                        return Err(ImageFilesError::SymlinkLoop { path: path.to_string() });
                    }
                    if target.as_bytes().starts_with(b"/") {
                        stack.truncate(1);
                    }
                    for c in components(&target).collect::<Vec<_>>().into_iter().rev() {
                        queue.push_front(c);
                    }
                }
                Some(Entry::File { layer }) => {
                    if !queue.is_empty() {
                        return Ok(None);
                    }
                    return self.read_regular(dir, layer, &name, path).map(Some);
                }
                Some(Entry::Other) => {
                    if !queue.is_empty() {
                        return Ok(None);
                    }
                    return Err(ImageFilesError::NotAFile { path: path.to_string() });
                }
            }
        }
        // The path named the root itself (or resolved back to it).
        Err(ImageFilesError::NotAFile { path: path.to_string() })
    }
}

#[cfg(test)]
mod tests {
    use std::fs;
    use std::os::unix::fs::symlink;
    use std::path::Path;

    use super::*;

    fn is_root() -> bool {
        nix::unistd::geteuid().is_root()
    }

    fn write(layer: &Path, rel: &str, content: &str) {
        let p = layer.join(rel);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, content).unwrap();
    }

    fn read(files: &LayerFiles, path: &str) -> Option<String> {
        files.read(path).unwrap().map(|b| String::from_utf8(b).unwrap())
    }

    fn layers() -> (tempfile::TempDir, PathBuf, PathBuf) {
        let tmp = tempfile::tempdir().unwrap();
        let upper = tmp.path().join("upper");
        let lower = tmp.path().join("lower");
        fs::create_dir_all(&upper).unwrap();
        fs::create_dir_all(&lower).unwrap();
        (tmp, upper, lower)
    }

    #[test]
    fn topmost_layer_wins_and_lower_layers_show_through() {
        let (_tmp, upper, lower) = layers();
        write(&lower, "etc/passwd", "lower");
        write(&lower, "etc/group", "lower group");
        write(&upper, "etc/passwd", "upper");
        let files = LayerFiles::new(vec![upper, lower]);
        assert_eq!(read(&files, "/etc/passwd").as_deref(), Some("upper"));
        assert_eq!(read(&files, "/etc/group").as_deref(), Some("lower group"));
        assert_eq!(read(&files, "/etc/shadow"), None);
        assert_eq!(read(&files, "/nope/passwd"), None);
        assert!(matches!(files.read("/etc"), Err(ImageFilesError::NotAFile { .. })));
    }

    #[test]
    fn a_file_in_an_upper_layer_hides_a_lower_directory() {
        let (_tmp, upper, lower) = layers();
        write(&lower, "etc/passwd", "lower");
        write(&upper, "etc", "a file now");
        let files = LayerFiles::new(vec![upper, lower]);
        assert_eq!(read(&files, "/etc/passwd"), None);
    }

    #[test]
    fn symlinks_resolve_inside_the_merged_view() {
        let (tmp, upper, lower) = layers();
        // A host file the image must never be able to reach.
        write(tmp.path(), "secret/passwd", "host secret");
        write(&lower, "data/passwd", "image passwd");
        fs::create_dir_all(upper.join("etc")).unwrap();
        // Absolute and escaping relative targets both stay in the image.
        symlink(tmp.path().join("secret/passwd"), upper.join("etc/abs")).unwrap();
        symlink("../../../../../../secret/passwd", upper.join("etc/rel")).unwrap();
        symlink("/data/passwd", upper.join("etc/passwd")).unwrap();
        symlink("../data", upper.join("etc/datadir")).unwrap();
        let files = LayerFiles::new(vec![upper.clone(), lower]);
        assert_eq!(read(&files, "/etc/passwd").as_deref(), Some("image passwd"));
        assert_eq!(read(&files, "/etc/datadir/passwd").as_deref(), Some("image passwd"));
        assert_eq!(
            read(&files, "/etc/abs"),
            None,
            "absolute host path resolved in the image"
        );
        assert_eq!(read(&files, "/etc/rel"), None, "..-escape stops at the image root");
        // A layer directory that is itself a symlink to the host is not followed.
        fs::remove_dir_all(upper.join("etc")).unwrap();
        symlink(tmp.path().join("secret"), upper.join("etc")).unwrap();
        assert_eq!(read(&files, "/etc/passwd"), None);
    }

    #[test]
    fn symlink_loops_and_size_cap_are_errors() {
        let (_tmp, upper, lower) = layers();
        fs::create_dir_all(upper.join("etc")).unwrap();
        symlink("/etc/b", upper.join("etc/a")).unwrap();
        symlink("/etc/a", upper.join("etc/b")).unwrap();
        write(&lower, "etc/big", &"x".repeat(100));
        let files = LayerFiles::new(vec![upper, lower]).with_max_size(10);
        assert!(matches!(files.read("/etc/a"), Err(ImageFilesError::SymlinkLoop { .. })));
        assert!(matches!(
            files.read("/etc/big"),
            Err(ImageFilesError::TooLarge { max: 10, .. })
        ));
    }

    #[test]
    fn whiteouts_hide_lower_files() {
        if !is_root() {
            eprintln!("skipped: a 0:0 whiteout device needs root (mknod)");
            return;
        }
        let (_tmp, upper, lower) = layers();
        write(&lower, "etc/passwd", "lower");
        write(&lower, "etc/group", "lower group");
        fs::create_dir_all(upper.join("etc")).unwrap();
        nix::sys::stat::mknod(
            &upper.join("etc/passwd"),
            SFlag::S_IFCHR,
            Mode::from_bits_truncate(0o644),
            0,
        )
        .unwrap();
        let files = LayerFiles::new(vec![upper, lower]);
        assert_eq!(read(&files, "/etc/passwd"), None);
        assert_eq!(read(&files, "/etc/group").as_deref(), Some("lower group"));
    }

    #[test]
    fn opaque_directories_hide_lower_contents() {
        if !is_root() {
            eprintln!("skipped: trusted.* xattrs need root");
            return;
        }
        let (_tmp, upper, lower) = layers();
        write(&lower, "etc/passwd", "lower");
        write(&lower, "etc/group", "lower group");
        write(&upper, "etc/passwd", "upper");
        let dir = std::ffi::CString::new(upper.join("etc").as_os_str().as_bytes()).unwrap();
        // SAFETY: both strings are NUL-terminated and the value is 1 byte.
        let rc = unsafe { libc::setxattr(dir.as_ptr(), OPAQUE_XATTR.as_ptr().cast(), b"y".as_ptr().cast(), 1, 0) };
        if rc != 0 {
            eprintln!("skipped: the temp dir's filesystem refuses trusted.* xattrs");
            return;
        }
        let files = LayerFiles::new(vec![upper, lower]);
        assert_eq!(read(&files, "/etc/passwd").as_deref(), Some("upper"));
        assert_eq!(read(&files, "/etc/group"), None);
    }
}
