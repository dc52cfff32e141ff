//! Disk usage of the store, for CRI `ImageFsInfo`.
//!
//! Walks the given paths without following symlinks and counts every inode
//! once (a file hardlinked inside or across layers counts once, like `du`):
//! bytes are allocated blocks (`st_blocks * 512`, what the filesystem really
//! spends — sparse files count less, directories count their blocks), inodes
//! are distinct `(st_dev, st_ino)` pairs, directories included.

use std::collections::HashSet;
use std::fs;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use crate::service::FsUsage;
use crate::{ImagesError, Result};

/// Usage of everything under `paths` (absent paths count nothing).
pub(crate) fn fs_usage(paths: &[PathBuf]) -> Result<FsUsage> {
    let mut seen: HashSet<(u64, u64)> = HashSet::new();
    let mut usage = FsUsage::default();
    let mut stack: Vec<PathBuf> = paths.to_vec();
    while let Some(path) = stack.pop() {
        let meta = match fs::symlink_metadata(&path) {
            Ok(m) => m,
            // Removed while we walk (a GC, a finished unpack): not ours to count.
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(ImagesError::io("stat", path, e)),
        };
        if !seen.insert((meta.dev(), meta.ino())) {
            continue;
        }
        usage.inodes_used += 1;
        usage.used_bytes += meta.blocks() * 512;
        if meta.is_dir() {
            push_children(&path, &mut stack)?;
        }
    }
    Ok(usage)
}

fn push_children(dir: &Path, stack: &mut Vec<PathBuf>) -> Result<()> {
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(ImagesError::io("list", dir, e)),
    };
    for entry in entries {
        match entry {
            Ok(entry) => stack.push(entry.path()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(ImagesError::io("list", dir, e)),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_hardlinks_once_and_skips_missing_paths() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("store");
        fs::create_dir_all(root.join("a/b")).unwrap();
        fs::write(root.join("a/f"), vec![1u8; 10_000]).unwrap();
        fs::hard_link(root.join("a/f"), root.join("a/b/g")).unwrap();
        std::os::unix::fs::symlink("/etc", root.join("link")).unwrap();
        let usage = fs_usage(&[root.clone(), dir.path().join("absent")]).unwrap();
        // store, a, a/b, a/f (= a/b/g), link.
        assert_eq!(usage.inodes_used, 5);
        let file_blocks = fs::metadata(root.join("a/f")).unwrap().blocks() * 512;
        assert!(usage.used_bytes >= file_blocks);
        let once_more = fs_usage(&[root.clone(), root.join("a")]).unwrap();
        assert_eq!(once_more, usage);
    }
}
