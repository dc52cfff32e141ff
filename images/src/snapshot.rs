//! Unpacked layers ("snapshots"), one directory per chain ID.
//!
//! ```text
//! <root>/snapshots/
//!   <chain-id hex>/             one layer's diff in overlayfs form (whiteouts
//!                               are 0:0 char devices, opaque dirs carry
//!                               trusted.overlay.opaque=y); read-only by use
//!   .tmp-<hex>-<pid>-<n>/       an unpack in progress
//!   .trash-<hex>-<pid>-<n>/     a snapshot being deleted
//! ```
//!
//! Unlike containerd's snapshotter there is no parent/child bookkeeping on
//! disk: every directory holds exactly one layer's changes, and an image's
//! root filesystem is the overlay of its chain (see
//! [`ImageService::layer_paths`](crate::ImageService::layer_paths)). Keying by
//! chain ID (not diff ID) keeps the door open for snapshotters that store the
//! merged result; with overlayfs it means a layer shared by two images — same
//! content on the same base — is stored and unpacked once.
//!
//! Import a layer:
//! 1. [`SnapshotStore::prepare`] makes an empty `.tmp-*` directory;
//! 2. [`crate::unpack::apply_layer`] fills it (and verifies the diff ID);
//! 3. [`SnapshotStore::commit`] syncs the filesystem and renames it to
//!    `<hex>` (fsyncing `snapshots/`). If anything fails before, dropping the
//!    [`PreparedSnapshot`] removes the temp directory; a crash leaves it for
//!    [`SnapshotStore::clean_temporaries`].
//!
//! Remove a layer: [`SnapshotStore::trash`] renames it out of the way (one
//! atomic step, done under the GC lock) and [`SnapshotStore::purge`] deletes
//! the tree afterwards, outside the lock.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::content::sync_dir;
use crate::digest::Digest;
use crate::{atfs, ImagesError, Result};

const TEMP_PREFIX: &str = ".tmp-";
const TRASH_PREFIX: &str = ".trash-";

static COUNTER: AtomicU64 = AtomicU64::new(0);

/// The `snapshots/` directory.
#[derive(Debug)]
pub struct SnapshotStore {
    dir: PathBuf,
}

/// An unpack target not yet visible under its chain ID. Removed on drop
/// unless committed.
#[derive(Debug)]
pub struct PreparedSnapshot {
    path: PathBuf,
    chain_id: Digest,
    committed: bool,
}

impl PreparedSnapshot {
    /// Where to unpack.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for PreparedSnapshot {
    fn drop(&mut self) {
        if self.committed {
            return;
        }
        if let Err(e) = fs::remove_dir_all(&self.path) {
            if e.kind() != io::ErrorKind::NotFound {
                tracing::warn!(path = %self.path.display(), error = %e, "could not remove temp snapshot");
            }
        }
    }
}

impl SnapshotStore {
    /// Open (creating as needed) the store at `dir` (`<root>/snapshots`).
    pub fn open(dir: &Path) -> Result<SnapshotStore> {
        fs::create_dir_all(dir).map_err(|e| ImagesError::io("create directory", dir, e))?;
        // Layers hold setuid binaries and device nodes: no access for others.
        let perms = std::os::unix::fs::PermissionsExt::from_mode(0o700);
        fs::set_permissions(dir, perms).map_err(|e| ImagesError::io("chmod", dir, e))?;
        Ok(SnapshotStore { dir: dir.to_path_buf() })
    }

    /// Directory of a committed snapshot (whether or not it exists).
    pub fn path(&self, chain_id: &Digest) -> PathBuf {
        self.dir.join(chain_id.hex())
    }

    pub fn exists(&self, chain_id: &Digest) -> bool {
        fs::symlink_metadata(self.path(chain_id)).is_ok_and(|m| m.is_dir())
    }

    /// A fresh, empty directory to unpack `chain_id` into.
    pub fn prepare(&self, chain_id: &Digest) -> Result<PreparedSnapshot> {
        let path = self.unique(TEMP_PREFIX, chain_id);
        fs::create_dir(&path).map_err(|e| ImagesError::io("create temp snapshot", &path, e))?;
        // Mode of the container's `/` unless the layer has a `./` entry.
        let perms = std::os::unix::fs::PermissionsExt::from_mode(0o755);
        fs::set_permissions(&path, perms).map_err(|e| ImagesError::io("chmod", &path, e))?;
        Ok(PreparedSnapshot {
            path,
            chain_id: chain_id.clone(),
            committed: false,
        })
    }

    /// Make a prepared snapshot durable and visible under its chain ID. When
    /// another unpack of the same chain ID got there first, ours is dropped
    /// and theirs kept.
    pub fn commit(&self, mut prepared: PreparedSnapshot) -> Result<PathBuf> {
        let dest = self.path(&prepared.chain_id);
        let fd = atfs::open_dir(&prepared.path).map_err(|e| ImagesError::io("open", &prepared.path, e.into()))?;
        nix::unistd::syncfs(&fd).map_err(|e| ImagesError::io("syncfs", &prepared.path, e.into()))?;
        drop(fd);
        match fs::rename(&prepared.path, &dest) {
            Ok(()) => prepared.committed = true,
            Err(e) if matches!(e.raw_os_error(), Some(libc::ENOTEMPTY | libc::EEXIST)) => {
                tracing::debug!(chain_id = %prepared.chain_id, "snapshot already committed by another unpack");
                return Ok(dest);
            }
            Err(e) => return Err(ImagesError::io("rename snapshot into place", &dest, e)),
        }
        sync_dir(&self.dir)?;
        Ok(dest)
    }

    /// Chain IDs of every committed snapshot.
    pub fn list(&self) -> Result<Vec<Digest>> {
        let mut out = Vec::new();
        for name in self.names()? {
            if let Ok(d) = Digest::parse(&format!("sha256:{name}")) {
                out.push(d);
            }
        }
        Ok(out)
    }

    /// Move a committed snapshot out of sight; returns where it went (to
    /// [`purge`](Self::purge)), or `None` if it was not there.
    pub fn trash(&self, chain_id: &Digest) -> Result<Option<PathBuf>> {
        let trash = self.unique(TRASH_PREFIX, chain_id);
        match fs::rename(self.path(chain_id), &trash) {
            Ok(()) => Ok(Some(trash)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(ImagesError::io("move snapshot to trash", self.path(chain_id), e)),
        }
    }

    /// Delete a trashed snapshot tree.
    pub fn purge(&self, trashed: &Path) -> Result<()> {
        match fs::remove_dir_all(trashed) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(ImagesError::io("remove snapshot", trashed, e)),
        }
    }

    /// Remove temp and trash directories left by a crash. Only call when no
    /// unpack can be running (at open). Returns how many were removed.
    pub fn clean_temporaries(&self) -> Result<usize> {
        let mut removed = 0;
        for name in self.names()? {
            if name.starts_with(TEMP_PREFIX) || name.starts_with(TRASH_PREFIX) {
                self.purge(&self.dir.join(&name))?;
                removed += 1;
            }
        }
        Ok(removed)
    }

    fn names(&self) -> Result<Vec<String>> {
        let entries = fs::read_dir(&self.dir).map_err(|e| ImagesError::io("list", &self.dir, e))?;
        let mut names = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| ImagesError::io("list", &self.dir, e))?;
            if let Ok(name) = entry.file_name().into_string() {
                names.push(name);
            }
        }
        Ok(names)
    }

    fn unique(&self, prefix: &str, chain_id: &Digest) -> PathBuf {
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        self.dir
            .join(format!("{prefix}{}-{}-{n}", chain_id.hex(), std::process::id()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prepare_commit_trash_purge() {
        let dir = tempfile::tempdir().unwrap();
        let store = SnapshotStore::open(&dir.path().join("snapshots")).unwrap();
        let chain = Digest::of(b"layer");
        assert!(!store.exists(&chain));
        let prepared = store.prepare(&chain).unwrap();
        fs::write(prepared.path().join("f"), b"x").unwrap();
        let path = store.commit(prepared).unwrap();
        assert_eq!(path, store.path(&chain));
        assert!(store.exists(&chain));
        assert_eq!(store.list().unwrap(), vec![chain.clone()]);

        // A second commit of the same chain ID keeps the first.
        let again = store.prepare(&chain).unwrap();
        let again_path = again.path().to_path_buf();
        fs::write(again.path().join("g"), b"y").unwrap();
        store.commit(again).unwrap();
        assert!(!again_path.exists());
        assert!(store.path(&chain).join("f").exists());

        let trashed = store.trash(&chain).unwrap().unwrap();
        assert!(!store.exists(&chain));
        assert!(store.list().unwrap().is_empty());
        store.purge(&trashed).unwrap();
        assert!(!trashed.exists());
        assert_eq!(store.trash(&chain).unwrap(), None);
    }

    #[test]
    fn dropped_preparation_and_leftovers_are_removed() {
        let dir = tempfile::tempdir().unwrap();
        let store = SnapshotStore::open(dir.path()).unwrap();
        let chain = Digest::of(b"x");
        let prepared = store.prepare(&chain).unwrap();
        let p = prepared.path().to_path_buf();
        drop(prepared);
        assert!(!p.exists());

        // What a SIGKILL mid-unpack or mid-delete leaves behind.
        fs::create_dir_all(dir.path().join(format!(".tmp-{}-1-1/usr/bin", chain.hex()))).unwrap();
        fs::create_dir_all(dir.path().join(format!(".trash-{}-1-2/etc", chain.hex()))).unwrap();
        fs::create_dir(dir.path().join(chain.hex())).unwrap();
        assert_eq!(store.clean_temporaries().unwrap(), 2);
        assert_eq!(store.list().unwrap(), vec![chain]);
    }
}
