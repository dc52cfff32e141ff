//! [`ImageService`]: the image store's one entry point for the CRI layer.
//!
//! PLACEHOLDER SIGNATURES — the store helper replaces the bodies. The public
//! signatures below are what `cri-server` codes against; keep them.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;

use crate::progress::PullProgress;
use crate::registry::{Credentials, RegistryConfig};
use crate::Result;

/// Tunables of the store.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// Layers downloaded at once within one pull (and across pulls).
    pub max_concurrent_downloads: usize,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions { max_concurrent_downloads: 3 }
    }
}

/// An image as the store records it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Image {
    /// Config digest, `sha256:…` (the image ID).
    pub id: String,
    /// `registry/repo:tag` names pointing at this image.
    pub repo_tags: Vec<String>,
    /// `registry/repo@sha256:…` (top-level manifest digest, i.e. the index's for multi-arch).
    pub repo_digests: Vec<String>,
    /// Bytes: config + compressed layers, as the manifest lists them.
    pub size: u64,
    /// The image config (ENV, USER, Entrypoint, …) as pulled.
    pub config: oci_spec::image::ImageConfiguration,
    /// Digest of the platform-specific manifest.
    pub manifest_digest: String,
    /// Chain IDs of the layers, bottom first.
    pub chain_ids: Vec<String>,
    /// When this image was first stored (RFC 3339).
    pub created_at: String,
    /// Pinned images are never garbage-collected by the kubelet.
    pub pinned: bool,
}

/// Bytes and inodes the store uses on its filesystem.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FsUsage {
    pub used_bytes: u64,
    pub inodes_used: u64,
}

pub struct ImageService {
    _root: PathBuf,
    progress: broadcast::Sender<PullProgress>,
    _inner: Arc<()>,
}

impl ImageService {
    /// Open (or create) the store under `root` (e.g. `/var/lib/berth`), clean
    /// up leftovers of interrupted pulls, and prepare the registry client.
    pub fn open(root: &Path, registry: RegistryConfig, opts: StoreOptions) -> Result<ImageService> {
        let _ = (registry, opts);
        let (progress, _) = broadcast::channel(256);
        Ok(ImageService { _root: root.to_path_buf(), progress, _inner: Arc::new(()) })
    }

    /// Pull `reference` (any form the kubelet sends), store it, and return the
    /// image. Concurrent pulls of the same image share one download.
    pub async fn pull(&self, reference: &str, creds: Option<Credentials>) -> Result<Image> {
        let _ = (reference, creds);
        todo!("store helper")
    }

    /// Every stored image.
    pub fn list(&self) -> Result<Vec<Image>> {
        todo!("store helper")
    }

    /// Find an image by ID (`sha256:…`, bare hex, or unique ID prefix of at
    /// least 12 hex chars), by reference (`busybox`, `repo:tag`) or by digest
    /// reference (`repo@sha256:…`). `Ok(None)` when absent.
    pub fn status(&self, query: &str) -> Result<Option<Image>> {
        let _ = query;
        todo!("store helper")
    }

    /// Remove the image `query` resolves to (every name of it) and free the
    /// layers no other image uses. Absent → `Ok(())`.
    pub fn remove(&self, query: &str) -> Result<()> {
        let _ = query;
        todo!("store helper")
    }

    /// Bytes and inodes used under the store's directories.
    pub fn fs_usage(&self) -> Result<FsUsage> {
        todo!("store helper")
    }

    /// Directory the store lives in (for ImageFsInfo's mountpoint).
    pub fn root(&self) -> &Path {
        &self._root
    }

    /// Read-only layer directories of an image, **top layer first** (overlayfs
    /// `lowerdir` order).
    pub fn layer_paths(&self, image_id: &str) -> Result<Vec<PathBuf>> {
        let _ = image_id;
        todo!("store helper")
    }

    /// Subscribe to pull progress events of every pull.
    pub fn subscribe_progress(&self) -> broadcast::Receiver<PullProgress> {
        self.progress.subscribe()
    }
}
