//! [`ImageService`]: the image store's one entry point for the CRI layer.
//!
//! It wires the pieces together — [`ContentStore`], [`SnapshotStore`],
//! [`MetadataStore`], the pull pipeline ([`crate::pull`]) and garbage
//! collection ([`crate::gc`]) — and owns restart recovery. The on-disk layout
//! and the "pull an image" / "run a container" walk-throughs are in the crate
//! documentation.
//!
//! # Restart recovery ([`ImageService::open`])
//!
//! Assumes: one `berthd` per root (the redb file lock enforces it, and is
//! taken before anything is cleaned), and that everything below held when the
//! previous process died, at any instant:
//! - a blob under `content/blobs/sha256/<hex>` was verified before its rename;
//! - a snapshot under `snapshots/<hex>` was completely unpacked, diff-ID
//!   verified and synced before its rename;
//! - an image record is committed only after all its content was renamed
//!   into place.
//!
//! So, in this order: open the metadata (redb replays or rolls back its own
//! last transaction); delete everything in `content/ingest/` and every
//! `snapshots/.tmp-*` / `.trash-*`; then run a garbage collection, which
//! deletes committed snapshots and blobs that no image record names (a pull
//! that died between committing layers and writing its record). Nothing is
//! deleted unless the metadata could be read in full. Images whose record
//! survived are usable at once; interrupted pulls start over when the kubelet
//! retries.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use oci_spec::image::ImageConfiguration;
use serde::{Deserialize, Serialize};
use tokio::sync::{broadcast, Semaphore};

use crate::content::ContentStore;
use crate::digest::Digest;
use crate::gc::{self, GcReport, Leases};
use crate::metadata::{ImageRecord, MetadataStore};
use crate::progress::PullProgress;
use crate::pull::{self, Resolver};
use crate::reference::Reference;
use crate::registry::{Credentials, RegistryClient, RegistryConfig};
use crate::singleflight::SingleFlight;
use crate::snapshot::SnapshotStore;
use crate::{query, unpack, usage, ImagesError, Result};

/// Tunables of the store.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// Layers downloaded at once within one pull (and across pulls).
    pub max_concurrent_downloads: usize,
    /// A layer whose uncompressed tar stream exceeds this is refused.
    pub max_layer_uncompressed_bytes: u64,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            max_concurrent_downloads: 3,
            max_layer_uncompressed_bytes: unpack::DEFAULT_MAX_UNCOMPRESSED_BYTES,
        }
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

/// Layer directories still in use by containers whose image may be gone.
type LayersInUse = dyn Fn() -> Vec<PathBuf> + Send + Sync;

/// The parts of the store the pull pipeline and GC work on.
pub(crate) struct Store {
    pub(crate) root: PathBuf,
    pub(crate) content: ContentStore,
    pub(crate) snapshots: SnapshotStore,
    pub(crate) metadata: MetadataStore,
    /// The GC lock and what running pulls hold (see [`crate::gc`]).
    pub(crate) leases: Arc<Leases>,
    /// Bounds layer downloads + unpacks across all pulls.
    pub(crate) downloads: Arc<Semaphore>,
    /// Layer imports in flight, by chain ID.
    pub(crate) layer_imports: SingleFlight<()>,
    pub(crate) max_config_bytes: u64,
    pub(crate) limits: unpack::Limits,
    pub(crate) progress: broadcast::Sender<PullProgress>,
    layers_in_use: RwLock<Option<Arc<LayersInUse>>>,
}

impl Store {
    fn collect_garbage(&self) -> Result<GcReport> {
        let in_use = self.layers_in_use.read().unwrap_or_else(|p| p.into_inner()).clone();
        let extra: Vec<Digest> = in_use
            .map(|f| f())
            .unwrap_or_default()
            .iter()
            .filter_map(|p| {
                p.file_name()?
                    .to_str()
                    .and_then(|hex| Digest::parse(&format!("sha256:{hex}")).ok())
            })
            .collect();
        let _roots = (!extra.is_empty()).then(|| {
            self.leases
                .acquire(extra.into_iter().map(gc::LeaseKey::Snapshot).collect())
        });
        gc::collect(&self.leases, &self.metadata, &self.content, &self.snapshots)
    }
}

pub struct ImageService {
    store: Arc<Store>,
    resolver: Arc<dyn Resolver>,
    /// Pulls in flight, by normalised reference.
    pulls: SingleFlight<ImageRecord>,
}

impl ImageService {
    /// Open (or create) the store under `root` (e.g. `/var/lib/berth`), clean
    /// up leftovers of interrupted pulls, and prepare the registry client.
    pub fn open(root: &Path, registry: RegistryConfig, opts: StoreOptions) -> Result<ImageService> {
        let max_config_bytes = registry.max_config_bytes;
        let client = RegistryClient::new(registry)?;
        ImageService::open_with_resolver(root, Arc::new(client), max_config_bytes, opts)
    }

    /// [`open`](Self::open) with another way to resolve references (a fake
    /// registry in tests). Image configs over `max_config_bytes` are refused.
    pub fn open_with_resolver(
        root: &Path,
        resolver: Arc<dyn Resolver>,
        max_config_bytes: u64,
        opts: StoreOptions,
    ) -> Result<ImageService> {
        std::fs::create_dir_all(root).map_err(|e| ImagesError::io("create directory", root, e))?;
        let content = ContentStore::open(&root.join("content"))?;
        let snapshots = SnapshotStore::open(&root.join("snapshots"))?;
        let metadata = MetadataStore::open(&root.join("metadata.redb"))?;
        let ingest_removed = content.clean_ingest()?;
        let temps_removed = snapshots.clean_temporaries()?;
        let (progress, _) = broadcast::channel(256);
        let store = Store {
            root: root.to_path_buf(),
            content,
            snapshots,
            metadata,
            leases: Arc::new(Leases::default()),
            downloads: Arc::new(Semaphore::new(opts.max_concurrent_downloads.max(1))),
            layer_imports: SingleFlight::new(),
            max_config_bytes,
            limits: unpack::Limits {
                max_uncompressed_bytes: opts.max_layer_uncompressed_bytes,
                ..unpack::Limits::default()
            },
            progress,
            layers_in_use: RwLock::new(None),
        };
        let gc = store.collect_garbage()?;
        tracing::info!(
            root = %root.display(),
            ingest_removed,
            temps_removed,
            snapshots_removed = gc.snapshots,
            blobs_removed = gc.blobs,
            "image store opened"
        );
        Ok(ImageService {
            store: Arc::new(store),
            resolver,
            pulls: SingleFlight::new(),
        })
    }

    /// Pull `reference` (any form the kubelet sends), store it, and return the
    /// image. Concurrent pulls of the same image share one download.
    pub async fn pull(&self, reference: &str, creds: Option<Credentials>) -> Result<Image> {
        let parsed = Reference::parse(reference)?;
        let key = parsed.to_string();
        let (store, resolver) = (Arc::clone(&self.store), Arc::clone(&self.resolver));
        let record = self
            .pulls
            .run(&key, move || pull::pull(store, resolver, parsed, creds))
            .await?;
        to_image(record)
    }

    /// Every stored image. A record whose config no longer parses is skipped
    /// (and logged) rather than failing the whole list.
    pub fn list(&self) -> Result<Vec<Image>> {
        let mut images = Vec::new();
        for record in self.store.metadata.list()? {
            let id = record.id.clone();
            match to_image(record) {
                Ok(image) => images.push(image),
                Err(e) => {
                    tracing::error!(image = %id, error = %e, "skipping unreadable image record")
                }
            }
        }
        Ok(images)
    }

    /// Find an image by ID (`sha256:…`, bare hex, or unique ID prefix of at
    /// least 12 hex chars), by reference (`busybox`, `repo:tag`) or by digest
    /// reference (`repo@sha256:…`). `Ok(None)` when absent.
    pub fn status(&self, query: &str) -> Result<Option<Image>> {
        self.record(query)?.map(to_image).transpose()
    }

    /// Remove the image `query` resolves to (every name of it) and free the
    /// layers no other image uses. Absent → `Ok(())`. Blocks while deleting.
    pub fn remove(&self, query: &str) -> Result<()> {
        let Some(id) = query::resolve(&self.store.metadata, query)? else {
            return Ok(());
        };
        if let Some(record) = self.store.metadata.remove_image(&id)? {
            tracing::info!(image = %id, names = ?record.names().collect::<Vec<_>>(), "image removed");
        }
        let report = self.store.collect_garbage()?;
        tracing::debug!(image = %id, snapshots = report.snapshots, blobs = report.blobs, "garbage collected");
        Ok(())
    }

    /// Bytes and inodes used under the store's directories (`content/`,
    /// `snapshots/`, `metadata.redb`): allocated blocks (`st_blocks * 512`)
    /// and distinct inodes, each hardlinked file counted once.
    pub fn fs_usage(&self) -> Result<FsUsage> {
        let root = &self.store.root;
        usage::fs_usage(&[root.join("content"), root.join("snapshots"), root.join("metadata.redb")])
    }

    /// Directory the store lives in (for ImageFsInfo's mountpoint).
    pub fn root(&self) -> &Path {
        &self.store.root
    }

    /// Read-only layer directories of an image, **top layer first** (overlayfs
    /// `lowerdir` order). `image_id` may be any query [`status`](Self::status)
    /// accepts.
    pub fn layer_paths(&self, image_id: &str) -> Result<Vec<PathBuf>> {
        let record = self
            .record(image_id)?
            .ok_or_else(|| ImagesError::ImageNotFound(image_id.to_string()))?;
        let mut paths = Vec::with_capacity(record.chain_ids.len());
        for chain_id in record.chain_ids.iter().rev() {
            let digest = Digest::parse(chain_id)
                .map_err(|e| ImagesError::Store(format!("image {}: bad chain ID: {e}", record.id)))?;
            if !self.store.snapshots.exists(&digest) {
                return Err(ImagesError::Internal(format!(
                    "image {}: snapshot {chain_id} is missing; pull the image again",
                    record.id
                )));
            }
            paths.push(self.store.snapshots.path(&digest));
        }
        Ok(paths)
    }

    /// Subscribe to pull progress events of every pull.
    pub fn subscribe_progress(&self) -> broadcast::Receiver<PullProgress> {
        self.store.progress.subscribe()
    }

    /// Tell garbage collection which layer directories running containers
    /// use (as [`layer_paths`](Self::layer_paths) returned them), so removing
    /// an image a container still runs on keeps its layers until the
    /// container is gone (containerd's behaviour); a later
    /// [`collect_garbage`](Self::collect_garbage) (or `remove`, or the next
    /// start) frees them. `f` is called at the start of every collection, on
    /// the caller's thread; it must not call `remove` or `collect_garbage`.
    pub fn set_layers_in_use(&self, f: impl Fn() -> Vec<PathBuf> + Send + Sync + 'static) {
        *self.store.layers_in_use.write().unwrap_or_else(|p| p.into_inner()) = Some(Arc::new(f));
    }

    /// Delete snapshots and blobs no image (and no running pull, and no layer
    /// in use, see [`set_layers_in_use`](Self::set_layers_in_use)) needs.
    pub fn collect_garbage(&self) -> Result<GcReport> {
        self.store.collect_garbage()
    }

    fn record(&self, query: &str) -> Result<Option<ImageRecord>> {
        match query::resolve(&self.store.metadata, query)? {
            Some(id) => self.store.metadata.get(&id),
            None => Ok(None),
        }
    }
}

fn to_image(record: ImageRecord) -> Result<Image> {
    let config: ImageConfiguration = serde_json::from_str(&record.config).map_err(|e| ImagesError::Malformed {
        what: "stored image config".into(),
        digest: record.id.clone(),
        reason: e.to_string(),
    })?;
    Ok(Image {
        id: record.id,
        repo_tags: record.repo_tags,
        repo_digests: record.repo_digests,
        size: record.size,
        config,
        manifest_digest: record.manifest_digest,
        chain_ids: record.chain_ids,
        created_at: record.created_at,
        pinned: record.pinned,
    })
}

#[cfg(test)]
mod tests;
