//! Apply one layer tarball to an empty snapshot directory, in overlayfs form.
//!
//! This is the security boundary of the image store: the tarball comes from
//! a registry and may be hostile. The `tar` crate only *parses*; every file is
//! created here, relative to directory descriptors, component by component:
//!
//! - paths are cleaned lexically: leading `/` is stripped (as docker does),
//!   `.` and empty components dropped, and a `..` that would climb above the
//!   snapshot root refuses the layer;
//! - every parent component is opened with `O_NOFOLLOW | O_DIRECTORY`
//!   (`atfs::open_subdir`), so an entry whose path runs through a symlink
//!   (`evil -> /etc` then `evil/passwd`) is refused, whoever made the symlink;
//!   missing parents are created as `0755` directories;
//! - the final component is created with `O_CREAT | O_EXCL | O_NOFOLLOW`,
//!   `mkdirat`, `symlinkat`, `mknodat` or `linkat`, after removing whatever
//!   an earlier entry left under that name (a directory is kept when the new
//!   entry is a directory too);
//! - a hardlink's target is resolved the same way, must already exist in this
//!   layer, and must be neither a directory nor a symlink;
//! - symlink targets are stored as written: they are only resolved later,
//!   inside the container's rootfs.
//!
//! Metadata is preserved: mode (including setuid, setgid, sticky), owner
//! (when running as root), mtime (directories last, after their contents), and
//! extended attributes from PAX `SCHILY.xattr.*` records (`trusted.overlay.*`
//! and `user.overlay.*` are dropped: overlayfs would interpret them).
//! Attributes the filesystem refuses (`EPERM`, `ENOTSUP`) are skipped and
//! counted, as docker does.
//!
//! Whiteouts become overlayfs whiteouts: `D/.wh.NAME` is a `0:0` character
//! device `D/NAME`, and `D/.wh..wh..opq` sets `trusted.overlay.opaque=y` on `D`.
//! Other `.wh..wh.*` (AUFS bookkeeping) entries are ignored.
//!
//! The uncompressed stream is hashed as it is read (including the padding
//! after the tar trailer) and must equal the layer's diff ID from the image
//! config; on any error the caller discards the whole directory.
//!
//! Known limit: the `tar` crate buffers PAX and GNU long-name records in
//! memory; their size is bounded only by the (digest-verified) blob size.

use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{openat, AtFlags, OFlag};
use nix::sys::stat::{
    fchmod, fchmodat, futimens, makedev, mkdirat, mknodat, utimensat, FchmodatFlags, Mode, SFlag, UtimensatFlags,
};
use nix::sys::time::TimeSpec;
use nix::unistd::{fchown, fchownat, linkat, symlinkat, Gid, Uid};
use tar::EntryType;

use crate::atfs;
use crate::compression::Compression;
use crate::digest::{Digest, Verifier};
use crate::{ImagesError, Result};

const WHITEOUT_PREFIX: &[u8] = b".wh.";
const WHITEOUT_META_PREFIX: &[u8] = b".wh..wh.";
const WHITEOUT_OPAQUE: &[u8] = b".wh..wh..opq";
const OPAQUE_XATTR: &str = "trusted.overlay.opaque";
const PAX_XATTR_PREFIX: &str = "SCHILY.xattr.";
const MAX_NAME_BYTES: usize = 255;
const MAX_SYMLINK_TARGET_BYTES: usize = 4095;

/// Default cap on one layer's uncompressed size: 32 GiB.
pub const DEFAULT_MAX_UNCOMPRESSED_BYTES: u64 = 32 << 30;

/// Sanity limits for one layer.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Tar headers (of any kind) in one layer.
    pub max_entries: u64,
    /// Bytes in one entry path or hardlink target.
    pub max_path_bytes: usize,
    /// Extended attributes on one entry.
    pub max_xattrs_per_entry: usize,
    /// Bytes in one extended attribute value (the kernel's own limit is 64 KiB).
    pub max_xattr_value_bytes: usize,
    /// Bytes of the uncompressed tar stream: a decompression bomb stops here
    /// instead of filling the disk.
    pub max_uncompressed_bytes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_entries: 1 << 20,
            max_path_bytes: 4096,
            max_xattrs_per_entry: 128,
            max_xattr_value_bytes: 64 * 1024,
            max_uncompressed_bytes: DEFAULT_MAX_UNCOMPRESSED_BYTES,
        }
    }
}

/// What one unpack did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UnpackStats {
    pub entries: u64,
    /// Bytes of regular-file content written.
    pub file_bytes: u64,
    /// Extended attributes the filesystem refused or that were dropped.
    pub xattrs_skipped: u64,
}

/// Decompress `compressed` and apply it to the empty directory `dest`.
/// `layer` (the blob digest) names the layer in errors; the uncompressed
/// stream must hash to `diff_id`.
pub fn apply_layer<R: Read>(
    compressed: R,
    compression: Compression,
    dest: &Path,
    layer: &Digest,
    diff_id: &Digest,
    limits: &Limits,
) -> Result<UnpackStats> {
    let malformed = |e: io::Error| malformed(layer, e);
    let mut stream = HashingReader {
        inner: compression.decoder(compressed).map_err(malformed)?,
        verifier: Verifier::new(),
        limit: limits.max_uncompressed_bytes,
    };
    let root = atfs::open_dir(dest).map_err(|e| ImagesError::io("open snapshot dir", dest, e.into()))?;
    let too_large = |stream: &HashingReader<_>| ImagesError::TooLarge {
        what: "uncompressed layer".into(),
        digest: layer.to_string(),
        size: stream.verifier.len(),
        limit: limits.max_uncompressed_bytes,
    };
    let unpacked = {
        let mut archive = tar::Archive::new(&mut stream);
        let mut unpacker = Unpacker::new(root, dest, layer, limits);
        unpacker.run(&mut archive).and_then(|_| unpacker.finish())
    };
    if stream.over_limit() {
        return Err(too_large(&stream));
    }
    let stats = unpacked?;
    // Whatever follows the tar trailer is part of the diff ID too.
    let drained = io::copy(&mut stream, &mut io::sink());
    if stream.over_limit() {
        return Err(too_large(&stream));
    }
    drained.map_err(malformed)?;
    let actual = stream.verifier.finish();
    if &actual != diff_id {
        return Err(ImagesError::Malformed {
            what: "layer".into(),
            digest: layer.to_string(),
            reason: format!("uncompressed content is {actual}, but the image config says {diff_id}"),
        });
    }
    if stats.xattrs_skipped > 0 {
        tracing::warn!(layer = %layer, skipped = stats.xattrs_skipped, "extended attributes not applied");
    }
    Ok(stats)
}

fn malformed(layer: &Digest, e: io::Error) -> ImagesError {
    ImagesError::Malformed {
        what: "layer".into(),
        digest: layer.to_string(),
        reason: e.to_string(),
    }
}

/// Hashes everything read through it.
struct HashingReader<R> {
    inner: R,
    verifier: Verifier,
    /// Reading past this many bytes fails.
    limit: u64,
}

impl<R> HashingReader<R> {
    fn over_limit(&self) -> bool {
        self.verifier.len() > self.limit
    }
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.over_limit() {
            return Err(io::Error::other("uncompressed layer exceeds its size limit"));
        }
        // Never hand out more than one byte past the limit, so at most that
        // much of a bomb reaches the disk before the unpack stops.
        let room = (self.limit + 1).saturating_sub(self.verifier.len());
        let take = buf.len().min(usize::try_from(room).unwrap_or(usize::MAX));
        let n = self.inner.read(&mut buf[..take])?;
        self.verifier.update(&buf[..n]);
        Ok(n)
    }
}

/// Metadata of one entry, gathered from its header and PAX records.
struct Meta {
    mode: Mode,
    uid: u32,
    gid: u32,
    mtime: TimeSpec,
    xattrs: Vec<(String, Vec<u8>)>,
}

struct Unpacker<'a> {
    root: OwnedFd,
    dest: &'a Path,
    layer: &'a Digest,
    limits: &'a Limits,
    /// Set owners only as root (like tar's `--same-owner` default).
    chown: bool,
    /// The last parent directory resolved, so a run of entries in one
    /// directory does not re-walk its path. Dropped whenever anything is
    /// removed, so it never points at a directory that was replaced.
    cache: Option<(Vec<OsString>, OwnedFd)>,
    /// Directory mtimes, applied once everything inside them is written.
    dir_times: Vec<(Vec<OsString>, TimeSpec)>,
    stats: UnpackStats,
}

impl<'a> Unpacker<'a> {
    fn new(root: OwnedFd, dest: &'a Path, layer: &'a Digest, limits: &'a Limits) -> Self {
        Unpacker {
            root,
            dest,
            layer,
            limits,
            chown: nix::unistd::geteuid().is_root(),
            cache: None,
            dir_times: Vec::new(),
            stats: UnpackStats::default(),
        }
    }

    fn run<R: Read>(&mut self, archive: &mut tar::Archive<R>) -> Result<()> {
        let layer = self.layer;
        for entry in archive.entries().map_err(|e| malformed(layer, e))? {
            let mut entry = entry.map_err(|e| malformed(layer, e))?;
            self.stats.entries += 1;
            if self.stats.entries > self.limits.max_entries {
                let name = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
                return Err(self.hostile(
                    &name,
                    format!("layer has more than {} entries", self.limits.max_entries),
                ));
            }
            self.apply_entry(&mut entry)?;
        }
        Ok(())
    }

    fn apply_entry<R: Read>(&mut self, entry: &mut tar::Entry<'_, R>) -> Result<()> {
        let raw_path = entry.path_bytes().into_owned();
        let name = String::from_utf8_lossy(&raw_path).into_owned();
        let mut etype = entry.header().entry_type();
        if etype == EntryType::XGlobalHeader {
            return Ok(());
        }
        // Pre-POSIX archives mark directories only with a trailing slash.
        if etype == EntryType::Regular && raw_path.ends_with(b"/") {
            etype = EntryType::Directory;
        }
        let comps = self.clean_path(&raw_path, &name)?;
        let meta = self.read_meta(entry, &name)?;
        if comps.last().is_some_and(|c| c.as_bytes().starts_with(WHITEOUT_PREFIX)) {
            return self.whiteout(&comps, &meta, &name);
        }
        match etype {
            EntryType::Directory => self.directory(&comps, &meta, &name),
            EntryType::Regular | EntryType::Continuous | EntryType::GNUSparse => {
                self.regular(&comps, &meta, entry, &name)
            }
            EntryType::Symlink => {
                let target = entry.link_name_bytes().map(|t| t.into_owned()).unwrap_or_default();
                self.symlink(&comps, &meta, &target, &name)
            }
            EntryType::Link => {
                let target = entry.link_name_bytes().map(|t| t.into_owned()).unwrap_or_default();
                self.hardlink(&comps, &target, &name)
            }
            EntryType::Char | EntryType::Block | EntryType::Fifo => {
                let header = entry.header();
                let major = header
                    .device_major()
                    .map_err(|e| malformed(self.layer, e))?
                    .unwrap_or(0);
                let minor = header
                    .device_minor()
                    .map_err(|e| malformed(self.layer, e))?
                    .unwrap_or(0);
                let kind = match etype {
                    EntryType::Char => SFlag::S_IFCHR,
                    EntryType::Block => SFlag::S_IFBLK,
                    _ => SFlag::S_IFIFO,
                };
                self.node(&comps, &meta, kind, makedev(major.into(), minor.into()), &name)
            }
            other => Err(self.hostile(&name, format!("unsupported entry type {other:?}"))),
        }
    }

    // ---- errors ---------------------------------------------------------

    fn hostile(&self, entry: &str, reason: impl Into<String>) -> ImagesError {
        ImagesError::HostileLayer {
            digest: self.layer.to_string(),
            entry: entry.to_string(),
            reason: reason.into(),
        }
    }

    fn io_error(&self, op: &'static str, comps: &[OsString], e: impl Into<io::Error>) -> ImagesError {
        let mut path = self.dest.to_path_buf();
        path.extend(comps);
        ImagesError::io(op, path, e.into())
    }

    // ---- paths ----------------------------------------------------------

    /// Lexically clean an entry path into components below the root.
    fn clean_path(&self, raw: &[u8], entry: &str) -> Result<Vec<OsString>> {
        if raw.len() > self.limits.max_path_bytes {
            return Err(self.hostile(entry, format!("path longer than {} bytes", self.limits.max_path_bytes)));
        }
        let mut comps: Vec<OsString> = Vec::new();
        for comp in raw.split(|b| *b == b'/') {
            match comp {
                b"" | b"." => {}
                b".." => {
                    if comps.pop().is_none() {
                        return Err(self.hostile(entry, "path escapes the layer root through `..`"));
                    }
                }
                _ if comp.len() > MAX_NAME_BYTES => {
                    return Err(self.hostile(entry, format!("path component longer than {MAX_NAME_BYTES} bytes")));
                }
                _ if comp.contains(&0) => return Err(self.hostile(entry, "path contains a NUL byte")),
                _ => comps.push(OsStr::from_bytes(comp).to_os_string()),
            }
        }
        Ok(comps)
    }

    fn split<'c>(&self, comps: &'c [OsString], entry: &str) -> Result<(&'c [OsString], &'c OsStr)> {
        match comps.split_last() {
            Some((last, parent)) => Ok((parent, last.as_os_str())),
            None => Err(self.hostile(entry, "a non-directory entry would replace the layer root")),
        }
    }

    /// Open `comps` below the root without following symlinks, creating
    /// missing directories (0755) when `create`. On failure, the index of the
    /// component that failed and why.
    fn walk(&self, comps: &[OsString], create: bool) -> std::result::Result<OwnedFd, (usize, Errno)> {
        let mut cur = self.root.try_clone().map_err(|e| (0, io_errno(&e)))?;
        for (i, comp) in comps.iter().enumerate() {
            let next = match atfs::open_subdir(cur.as_fd(), comp) {
                Err(Errno::ENOENT) if create => make_implicit_dir(cur.as_fd(), comp),
                other => other,
            };
            cur = next.map_err(|e| (i, e))?;
        }
        Ok(cur)
    }

    /// The directory an entry goes into (created as needed).
    fn parent_dir(&mut self, parent: &[OsString], entry: &str) -> Result<OwnedFd> {
        if let Some((path, fd)) = &self.cache {
            if path.as_slice() == parent {
                return fd.try_clone().map_err(|e| self.io_error("dup", parent, e));
            }
        }
        let fd = self
            .walk(parent, true)
            .map_err(|(i, e)| self.walk_error(parent, i, e, entry))?;
        let dup = fd.try_clone().map_err(|e| self.io_error("dup", parent, e))?;
        self.cache = Some((parent.to_vec(), fd));
        Ok(dup)
    }

    fn walk_error(&self, comps: &[OsString], index: usize, errno: Errno, entry: &str) -> ImagesError {
        let upto = &comps[..(index + 1).min(comps.len())];
        match errno {
            Errno::ELOOP | Errno::ENOTDIR => {
                let at: PathBuf = upto.iter().collect();
                self.hostile(entry, format!("{} is a symlink or not a directory", at.display()))
            }
            e => self.io_error("open directory", upto, e),
        }
    }

    /// Make room for a new entry `name` in `parent`: remove what is there,
    /// except a directory when `keep_dir`. Returns whether a directory was kept.
    fn clear_slot(&mut self, parent: BorrowedFd<'_>, name: &OsStr, keep_dir: bool, comps: &[OsString]) -> Result<bool> {
        match atfs::lstat_at(parent, name) {
            Ok(None) => Ok(false),
            Ok(Some(st)) if keep_dir && atfs::kind(&st) == SFlag::S_IFDIR => Ok(true),
            Ok(Some(_)) => {
                self.cache = None;
                atfs::remove_at(parent, name).map_err(|e| self.io_error("remove", comps, e))?;
                Ok(false)
            }
            Err(e) => Err(self.io_error("lstat", comps, e)),
        }
    }

    // ---- metadata -------------------------------------------------------

    fn read_meta<R: Read>(&mut self, entry: &mut tar::Entry<'_, R>, name: &str) -> Result<Meta> {
        let layer = self.layer;
        let header = entry.header();
        let mode = Mode::from_bits_truncate(header.mode().map_err(|e| malformed(layer, e))? & 0o7777);
        let uid = header.uid().map_err(|e| malformed(layer, e))?;
        let gid = header.gid().map_err(|e| malformed(layer, e))?;
        let (uid, gid) = match (u32::try_from(uid), u32::try_from(gid)) {
            (Ok(u), Ok(g)) => (u, g),
            _ => return Err(self.hostile(name, format!("owner {uid}:{gid} out of range"))),
        };
        let header_mtime = header.mtime().map_err(|e| malformed(layer, e))?;
        let mut mtime = TimeSpec::new(i64::try_from(header_mtime).unwrap_or(i64::MAX), 0);
        let mut xattrs = Vec::new();
        if let Some(pax) = entry.pax_extensions().map_err(|e| malformed(layer, e))? {
            for ext in pax {
                let ext = ext.map_err(|e| malformed(layer, e))?;
                let Ok(key) = ext.key() else { continue };
                if key == "mtime" {
                    if let Some(t) = ext.value().ok().and_then(parse_pax_time) {
                        mtime = t;
                    }
                } else if let Some(attr) = key.strip_prefix(PAX_XATTR_PREFIX) {
                    if attr.starts_with("trusted.overlay.") || attr.starts_with("user.overlay.") {
                        self.stats.xattrs_skipped += 1;
                        continue;
                    }
                    if attr.is_empty() || attr.len() > MAX_NAME_BYTES || attr.contains('\0') {
                        return Err(ImagesError::HostileLayer {
                            digest: layer.to_string(),
                            entry: name.to_string(),
                            reason: format!("invalid extended attribute name {attr:?}"),
                        });
                    }
                    let value = ext.value_bytes();
                    if value.len() > self.limits.max_xattr_value_bytes {
                        return Err(ImagesError::HostileLayer {
                            digest: layer.to_string(),
                            entry: name.to_string(),
                            reason: format!(
                                "extended attribute {attr} larger than {} bytes",
                                self.limits.max_xattr_value_bytes
                            ),
                        });
                    }
                    xattrs.push((attr.to_string(), value.to_vec()));
                }
            }
        }
        if xattrs.len() > self.limits.max_xattrs_per_entry {
            return Err(self.hostile(
                name,
                format!("more than {} extended attributes", self.limits.max_xattrs_per_entry),
            ));
        }
        Ok(Meta {
            mode,
            uid,
            gid,
            mtime,
            xattrs,
        })
    }

    fn owner_fd(&self, fd: BorrowedFd<'_>, meta: &Meta, comps: &[OsString]) -> Result<()> {
        if self.chown {
            fchown(fd, Some(Uid::from_raw(meta.uid)), Some(Gid::from_raw(meta.gid)))
                .map_err(|e| self.io_error("chown", comps, e))?;
        }
        Ok(())
    }

    fn owner_at(&self, parent: BorrowedFd<'_>, name: &OsStr, uid: u32, gid: u32, comps: &[OsString]) -> Result<()> {
        if self.chown {
            fchownat(
                parent,
                name,
                Some(Uid::from_raw(uid)),
                Some(Gid::from_raw(gid)),
                AtFlags::AT_SYMLINK_NOFOLLOW,
            )
            .map_err(|e| self.io_error("lchown", comps, e))?;
        }
        Ok(())
    }

    /// Apply xattrs with `set`; refusals by the filesystem are counted, not fatal.
    fn xattrs(&mut self, meta: &Meta, comps: &[OsString], set: impl Fn(&str, &[u8]) -> io::Result<()>) -> Result<()> {
        for (key, value) in &meta.xattrs {
            match set(key, value) {
                Ok(()) => {}
                Err(e) if matches!(e.raw_os_error(), Some(libc::EPERM | libc::ENOTSUP)) => {
                    self.stats.xattrs_skipped += 1
                }
                Err(e) => return Err(self.io_error("setxattr", comps, e)),
            }
        }
        Ok(())
    }

    // ---- entry kinds ----------------------------------------------------

    fn directory(&mut self, comps: &[OsString], meta: &Meta, entry: &str) -> Result<()> {
        let dir = if comps.is_empty() {
            self.root.try_clone().map_err(|e| self.io_error("dup", comps, e))?
        } else {
            let (parent, name) = self.split(comps, entry)?;
            let pfd = self.parent_dir(parent, entry)?;
            if !self.clear_slot(pfd.as_fd(), name, true, comps)? {
                mkdirat(pfd.as_fd(), name, Mode::from_bits_truncate(0o700))
                    .map_err(|e| self.io_error("mkdir", comps, e))?;
            }
            atfs::open_subdir(pfd.as_fd(), name).map_err(|e| self.io_error("open directory", comps, e))?
        };
        self.owner_fd(dir.as_fd(), meta, comps)?;
        fchmod(dir.as_fd(), meta.mode).map_err(|e| self.io_error("chmod", comps, e))?;
        self.xattrs(meta, comps, |k, v| atfs::set_xattr_fd(dir.as_fd(), k, v))?;
        self.dir_times.push((comps.to_vec(), meta.mtime));
        Ok(())
    }

    fn regular(&mut self, comps: &[OsString], meta: &Meta, data: &mut impl Read, entry: &str) -> Result<()> {
        let (parent, name) = self.split(comps, entry)?;
        let pfd = self.parent_dir(parent, entry)?;
        self.clear_slot(pfd.as_fd(), name, false, comps)?;
        let flags = OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
        let fd = openat(pfd.as_fd(), name, flags, Mode::from_bits_truncate(0o600))
            .map_err(|e| self.io_error("create", comps, e))?;
        let mut file = File::from(fd);
        self.copy_data(data, &mut file, comps)?;
        self.owner_fd(file.as_fd(), meta, comps)?;
        // After chown, which clears setuid/setgid; before xattrs, because chown
        // also drops security.capability.
        fchmod(file.as_fd(), meta.mode).map_err(|e| self.io_error("chmod", comps, e))?;
        self.xattrs(meta, comps, |k, v| atfs::set_xattr_fd(file.as_fd(), k, v))?;
        futimens(file.as_fd(), &meta.mtime, &meta.mtime).map_err(|e| self.io_error("set times", comps, e))?;
        Ok(())
    }

    fn copy_data(&mut self, data: &mut impl Read, file: &mut File, comps: &[OsString]) -> Result<()> {
        let mut buf = vec![0u8; 128 * 1024];
        loop {
            let n = match data.read(&mut buf) {
                Ok(0) => return Ok(()),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(malformed(self.layer, e)),
            };
            file.write_all(&buf[..n])
                .map_err(|e| self.io_error("write", comps, e))?;
            self.stats.file_bytes += n as u64;
        }
    }

    fn symlink(&mut self, comps: &[OsString], meta: &Meta, target: &[u8], entry: &str) -> Result<()> {
        if target.is_empty() || target.len() > MAX_SYMLINK_TARGET_BYTES || target.contains(&0) {
            return Err(self.hostile(entry, "symlink target is empty, too long or contains NUL"));
        }
        let (parent, name) = self.split(comps, entry)?;
        let pfd = self.parent_dir(parent, entry)?;
        self.clear_slot(pfd.as_fd(), name, false, comps)?;
        symlinkat(OsStr::from_bytes(target), pfd.as_fd(), name).map_err(|e| self.io_error("symlink", comps, e))?;
        self.owner_at(pfd.as_fd(), name, meta.uid, meta.gid, comps)?;
        self.xattrs(meta, comps, |k, v| atfs::set_xattr_at(pfd.as_fd(), name, k, v))?;
        utimensat(
            pfd.as_fd(),
            name,
            &meta.mtime,
            &meta.mtime,
            UtimensatFlags::NoFollowSymlink,
        )
        .map_err(|e| self.io_error("set times", comps, e))?;
        Ok(())
    }

    fn hardlink(&mut self, comps: &[OsString], target: &[u8], entry: &str) -> Result<()> {
        let target_comps = self.clean_path(target, entry)?;
        let (target_parent, target_name) = match target_comps.split_last() {
            Some((last, parent)) => (parent, last.as_os_str()),
            None => return Err(self.hostile(entry, "hardlink to the layer root")),
        };
        let shown = String::from_utf8_lossy(target);
        let tfd = match self.walk(target_parent, false) {
            Ok(fd) => fd,
            Err((_, Errno::ENOENT)) => {
                return Err(self.hostile(entry, format!("hardlink target {shown:?} is not in this layer")))
            }
            Err((i, e)) => return Err(self.walk_error(target_parent, i, e, entry)),
        };
        match atfs::lstat_at(tfd.as_fd(), target_name) {
            Ok(None) => return Err(self.hostile(entry, format!("hardlink target {shown:?} is not in this layer"))),
            Ok(Some(st)) if atfs::kind(&st) == SFlag::S_IFDIR => {
                return Err(self.hostile(entry, format!("hardlink target {shown:?} is a directory")))
            }
            Ok(Some(st)) if atfs::kind(&st) == SFlag::S_IFLNK => {
                return Err(self.hostile(entry, format!("hardlink target {shown:?} is a symlink")))
            }
            Ok(Some(_)) => {}
            Err(e) => return Err(self.io_error("lstat", &target_comps, e)),
        }
        if target_comps.as_slice() == comps {
            return Ok(());
        }
        let (parent, name) = self.split(comps, entry)?;
        let pfd = self.parent_dir(parent, entry)?;
        self.clear_slot(pfd.as_fd(), name, false, comps)?;
        linkat(tfd.as_fd(), target_name, pfd.as_fd(), name, AtFlags::empty())
            .map_err(|e| self.io_error("link", comps, e))?;
        Ok(())
    }

    fn node(&mut self, comps: &[OsString], meta: &Meta, kind: SFlag, dev: libc::dev_t, entry: &str) -> Result<()> {
        let (parent, name) = self.split(comps, entry)?;
        let pfd = self.parent_dir(parent, entry)?;
        self.clear_slot(pfd.as_fd(), name, false, comps)?;
        mknodat(pfd.as_fd(), name, kind, Mode::empty(), dev).map_err(|e| self.io_error("mknod", comps, e))?;
        self.owner_at(pfd.as_fd(), name, meta.uid, meta.gid, comps)?;
        // The node was just created by us, so following is harmless (and
        // AT_SYMLINK_NOFOLLOW is unsupported by fchmodat on older kernels).
        fchmodat(pfd.as_fd(), name, meta.mode, FchmodatFlags::FollowSymlink)
            .map_err(|e| self.io_error("chmod", comps, e))?;
        self.xattrs(meta, comps, |k, v| atfs::set_xattr_at(pfd.as_fd(), name, k, v))?;
        utimensat(
            pfd.as_fd(),
            name,
            &meta.mtime,
            &meta.mtime,
            UtimensatFlags::NoFollowSymlink,
        )
        .map_err(|e| self.io_error("set times", comps, e))?;
        Ok(())
    }

    fn whiteout(&mut self, comps: &[OsString], meta: &Meta, entry: &str) -> Result<()> {
        let (parent, name) = self.split(comps, entry)?;
        let pfd = self.parent_dir(parent, entry)?;
        let marker = name.as_bytes();
        if marker == WHITEOUT_OPAQUE {
            return atfs::set_xattr_fd(pfd.as_fd(), OPAQUE_XATTR, b"y")
                .map_err(|e| self.io_error("setxattr", parent, e));
        }
        if marker.starts_with(WHITEOUT_META_PREFIX) {
            return Ok(());
        }
        let hidden = OsStr::from_bytes(&marker[WHITEOUT_PREFIX.len()..]);
        if hidden.is_empty() || hidden == "." || hidden == ".." {
            return Err(self.hostile(entry, "whiteout names no file"));
        }
        let mut hidden_comps = parent.to_vec();
        hidden_comps.push(hidden.to_os_string());
        self.clear_slot(pfd.as_fd(), hidden, false, &hidden_comps)?;
        mknodat(pfd.as_fd(), hidden, SFlag::S_IFCHR, Mode::empty(), makedev(0, 0))
            .map_err(|e| self.io_error("mknod whiteout", &hidden_comps, e))?;
        self.owner_at(pfd.as_fd(), hidden, meta.uid, meta.gid, &hidden_comps)
    }

    /// Apply directory mtimes, deepest last-written first, now that nothing
    /// else will be created inside them.
    fn finish(mut self) -> Result<UnpackStats> {
        self.cache = None;
        let times = std::mem::take(&mut self.dir_times);
        for (comps, mtime) in times.iter().rev() {
            let fd = match self.walk(comps, false) {
                Ok(fd) => fd,
                // Replaced or removed by a later entry: nothing to date.
                Err((_, Errno::ENOENT | Errno::ELOOP | Errno::ENOTDIR)) => continue,
                Err((_, e)) => return Err(self.io_error("open directory", comps, e)),
            };
            futimens(fd.as_fd(), mtime, mtime).map_err(|e| self.io_error("set times", comps, e))?;
        }
        Ok(self.stats)
    }
}

fn io_errno(e: &io::Error) -> Errno {
    Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO))
}

/// `mkdir name` (0755 whatever the umask) inside `parent`, then open it.
fn make_implicit_dir(parent: BorrowedFd<'_>, name: &OsStr) -> nix::Result<OwnedFd> {
    match mkdirat(parent, name, Mode::from_bits_truncate(0o755)) {
        Ok(()) | Err(Errno::EEXIST) => {}
        Err(e) => return Err(e),
    }
    let fd = atfs::open_subdir(parent, name)?;
    fchmod(fd.as_fd(), Mode::from_bits_truncate(0o755))?;
    Ok(fd)
}

/// PAX time: `seconds[.fraction]`, possibly negative.
fn parse_pax_time(value: &str) -> Option<TimeSpec> {
    let (secs, frac) = value.split_once('.').unwrap_or((value, ""));
    let secs: i64 = secs.parse().ok()?;
    if !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let mut digits: String = frac.chars().take(9).collect();
    while digits.len() < 9 {
        digits.push('0');
    }
    let nanos: i64 = digits.parse().ok()?;
    if secs < 0 && nanos > 0 {
        Some(TimeSpec::new(secs - 1, 1_000_000_000 - nanos))
    } else {
        Some(TimeSpec::new(secs, nanos))
    }
}

#[cfg(test)]
mod tests;
