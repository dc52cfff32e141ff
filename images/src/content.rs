//! The content store: blobs by digest, written only after verification.
//!
//! ```text
//! <root>/content/
//!   blobs/sha256/<hex>   verified blobs (image configs, manifests; layer
//!                        blobs only while they are being unpacked)
//!   ingest/              downloads in progress: <hex>.<pid>.<n>.partial
//! ```
//!
//! Lifecycle of a blob (containerd's ingest / commit, without resumable
//! writers):
//!
//! 1. [`ContentStore::ingest`] creates a fresh temp file in `ingest/` and
//!    hands it to a [`BlobSource`], hashing and counting every byte on the
//!    way in (on top of the source's own check) and refusing more bytes than
//!    the descriptor announced.
//! 2. When the source is done, size and digest are compared with the
//!    descriptor. On any mismatch or error the temp file is deleted (also
//!    when the future is dropped half-way).
//! 3. The file is fsynced, renamed to `blobs/sha256/<hex>`, and the directory
//!    fsynced. A reader therefore never sees a partial blob under a digest
//!    name; a crash leaves at most a temp file in `ingest/`, which
//!    [`ContentStore::clean_ingest`] removes at the next start.
//!
//! The caller gets an open handle to the committed blob, so it can keep
//! reading it even if a garbage collection unlinks the name meanwhile.
//! Blobs already present are trusted: they were verified before the rename.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};

use oci_spec::image::Descriptor;
use tokio::io::{AsyncWrite, AsyncWriteExt};

use crate::digest::{Digest, Verifier};
use crate::registry::BlobSource;
use crate::{ImagesError, Result};

static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// Our digest type for a descriptor's digest (sha256 only).
pub fn descriptor_digest(desc: &Descriptor) -> Result<Digest> {
    let raw = desc.digest().to_string();
    Digest::parse(&raw).map_err(|e| ImagesError::Malformed {
        what: "descriptor".into(),
        digest: raw.clone(),
        reason: e.to_string(),
    })
}

/// Blobs by digest under one directory.
#[derive(Debug)]
pub struct ContentStore {
    blobs: PathBuf,
    ingest: PathBuf,
}

impl ContentStore {
    /// Open (creating as needed) the store rooted at `dir` (`<root>/content`).
    pub fn open(dir: &Path) -> Result<ContentStore> {
        let blobs = dir.join("blobs").join("sha256");
        let ingest = dir.join("ingest");
        for d in [&blobs, &ingest] {
            fs::create_dir_all(d).map_err(|e| ImagesError::io("create directory", d, e))?;
        }
        let perms = std::os::unix::fs::PermissionsExt::from_mode(0o700);
        fs::set_permissions(dir, perms).map_err(|e| ImagesError::io("chmod", dir, e))?;
        Ok(ContentStore { blobs, ingest })
    }

    pub fn blob_path(&self, digest: &Digest) -> PathBuf {
        self.blobs.join(digest.hex())
    }

    pub fn contains(&self, digest: &Digest) -> bool {
        fs::symlink_metadata(self.blob_path(digest)).is_ok_and(|m| m.is_file())
    }

    /// Open a stored blob for reading; `None` when absent.
    pub fn open_blob(&self, digest: &Digest) -> Result<Option<File>> {
        let path = self.blob_path(digest);
        match OpenOptions::new().read(true).custom_flags(libc::O_NOFOLLOW).open(&path) {
            Ok(f) => Ok(Some(f)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(ImagesError::io("open blob", path, e)),
        }
    }

    /// Read a whole stored blob of at most `limit` bytes, checking its
    /// digest. A blob that no longer matches its name is deleted and reported
    /// absent, so the caller fetches it again.
    pub fn read(&self, digest: &Digest, limit: u64) -> Result<Option<Vec<u8>>> {
        let path = self.blob_path(digest);
        let Some(file) = self.open_blob(digest)? else {
            return Ok(None);
        };
        let mut bytes = Vec::new();
        file.take(limit.saturating_add(1))
            .read_to_end(&mut bytes)
            .map_err(|e| ImagesError::io("read blob", &path, e))?;
        if bytes.len() as u64 > limit {
            return Err(ImagesError::TooLarge {
                what: "blob".into(),
                digest: digest.to_string(),
                size: bytes.len() as u64,
                limit,
            });
        }
        if &Digest::of(&bytes) != digest {
            tracing::warn!(digest = %digest, path = %path.display(), "stored blob is corrupt; deleting it");
            self.delete(digest)?;
            return Ok(None);
        }
        Ok(Some(bytes))
    }

    /// Store bytes already in memory (a manifest), verifying them first.
    pub fn write(&self, digest: &Digest, bytes: &[u8]) -> Result<()> {
        let actual = Digest::of(bytes);
        if &actual != digest {
            return Err(ImagesError::DigestMismatch {
                expected: digest.to_string(),
                actual: actual.to_string(),
            });
        }
        if self.contains(digest) {
            return Ok(());
        }
        let (mut file, temp) = self.create_temp(digest)?;
        file.write_all(bytes)
            .map_err(|e| ImagesError::io("write", &temp.path, e))?;
        commit(&self.blobs, &file, temp, digest).map(drop)
    }

    /// Download the blob `desc` from `source` into the store (see the module
    /// doc) and return an open handle to it, positioned at the start.
    /// `limit` refuses descriptors announcing more bytes before any download.
    pub async fn ingest(
        &self,
        desc: &Descriptor,
        source: &dyn BlobSource,
        limit: Option<u64>,
        progress: &(dyn Fn(u64) + Send + Sync),
    ) -> Result<File> {
        let digest = descriptor_digest(desc)?;
        let size = desc.size();
        if let Some(limit) = limit.filter(|l| size > *l) {
            return Err(ImagesError::TooLarge {
                what: "blob".into(),
                digest: digest.to_string(),
                size,
                limit,
            });
        }
        let (file, temp) = self.create_temp(&digest)?;
        let async_file = file.try_clone().map_err(|e| ImagesError::io("dup", &temp.path, e))?;
        let mut writer = VerifyingWriter {
            inner: tokio::fs::File::from_std(async_file),
            verifier: Verifier::new(),
            limit: size,
        };
        source.fetch(desc, &mut writer, progress).await?;
        writer
            .inner
            .flush()
            .await
            .map_err(|e| ImagesError::io("write", &temp.path, e))?;
        let VerifyingWriter { inner, verifier, .. } = writer;
        drop(inner);
        verifier.verify(&digest, Some(size))?;
        let blobs = self.blobs.clone();
        tokio::task::spawn_blocking(move || {
            let mut file = file;
            let dest = commit(&blobs, &file, temp, &digest)?;
            file.rewind().map_err(|e| ImagesError::io("seek", dest, e))?;
            Ok(file)
        })
        .await
        .map_err(|e| ImagesError::Internal(format!("blob commit task failed: {e}")))?
    }

    /// Remove a blob; `false` when it was not there.
    pub fn delete(&self, digest: &Digest) -> Result<bool> {
        let path = self.blob_path(digest);
        match fs::remove_file(&path) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(ImagesError::io("remove blob", path, e)),
        }
    }

    /// Digests of every stored blob (names that are not digests are ignored).
    pub fn list(&self) -> Result<Vec<Digest>> {
        let entries = fs::read_dir(&self.blobs).map_err(|e| ImagesError::io("list", &self.blobs, e))?;
        let mut out = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| ImagesError::io("list", &self.blobs, e))?;
            if let Some(d) = entry
                .file_name()
                .to_str()
                .and_then(|n| Digest::parse(&format!("sha256:{n}")).ok())
            {
                out.push(d);
            }
        }
        Ok(out)
    }

    /// Remove everything in `ingest/` (downloads a crash interrupted). Only
    /// call when no download can be running (at open).
    pub fn clean_ingest(&self) -> Result<usize> {
        let entries = fs::read_dir(&self.ingest).map_err(|e| ImagesError::io("list", &self.ingest, e))?;
        let mut removed = 0;
        for entry in entries {
            let path = entry.map_err(|e| ImagesError::io("list", &self.ingest, e))?.path();
            let res = match fs::symlink_metadata(&path) {
                Ok(m) if m.is_dir() => fs::remove_dir_all(&path),
                Ok(_) => fs::remove_file(&path),
                Err(e) => Err(e),
            };
            match res {
                Ok(()) => removed += 1,
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(ImagesError::io("remove", path, e)),
            }
        }
        Ok(removed)
    }

    fn create_temp(&self, digest: &Digest) -> Result<(File, TempBlob)> {
        let n = TEMP_COUNTER.fetch_add(1, Ordering::Relaxed);
        let path = self
            .ingest
            .join(format!("{}.{}.{n}.partial", digest.hex(), std::process::id()));
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .map_err(|e| ImagesError::io("create", &path, e))?;
        Ok((file, TempBlob { path, armed: true }))
    }
}

/// fsync the temp file, rename it to its digest name in `blobs`, fsync the
/// directory. Returns the blob's path.
fn commit(blobs: &Path, file: &File, temp: TempBlob, digest: &Digest) -> Result<PathBuf> {
    file.sync_all().map_err(|e| ImagesError::io("fsync", &temp.path, e))?;
    let dest = blobs.join(digest.hex());
    fs::rename(&temp.path, &dest).map_err(|e| ImagesError::io("rename blob into place", &dest, e))?;
    temp.disarm();
    sync_dir(blobs)?;
    Ok(dest)
}

/// fsync a directory so a rename inside it is durable.
pub(crate) fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| ImagesError::io("fsync directory", dir, e))
}

/// A temp file that removes itself unless committed.
struct TempBlob {
    path: PathBuf,
    armed: bool,
}

impl TempBlob {
    fn disarm(mut self) {
        self.armed = false;
    }
}

impl Drop for TempBlob {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        if let Err(e) = fs::remove_file(&self.path) {
            if e.kind() != io::ErrorKind::NotFound {
                tracing::warn!(path = %self.path.display(), error = %e, "could not remove temp blob");
            }
        }
    }
}

/// Hashes what is written and refuses bytes beyond the announced size.
struct VerifyingWriter<W> {
    inner: W,
    verifier: Verifier,
    limit: u64,
}

impl<W: AsyncWrite + Unpin> AsyncWrite for VerifyingWriter<W> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.verifier.len().saturating_add(buf.len() as u64) > this.limit {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("blob is larger than the {} bytes its descriptor announced", this.limit),
            )));
        }
        match Pin::new(&mut this.inner).poll_write(cx, buf) {
            Poll::Ready(Ok(n)) => {
                this.verifier.update(&buf[..n]);
                Poll::Ready(Ok(n))
            }
            other => other,
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests;
