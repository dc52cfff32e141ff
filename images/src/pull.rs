//! The pull pipeline: from a resolved manifest to a recorded image.
//!
//! ```text
//! Reference ──Resolver──▶ ResolvedImage (manifest + BlobSource)
//!   │ lease config, manifest and layer blobs (GC lock)
//!   │ config: content store or fetch (≤ max_config_bytes), parse,
//!   │         diff_ids count == manifest layers
//!   │ chain IDs; lease their snapshots
//!   │ manifest bytes → content store
//!   │ every layer at once, each single-flight by chain ID:
//!   │     snapshot present? → Exists
//!   │     else (≤ max_concurrent_downloads at a time, across pulls):
//!   │       blob → content store (verified) → unpack into .tmp snapshot
//!   │       (diff ID verified) → rename into place → drop the layer blob
//!   │ one metadata transaction: image record + names
//!   ▼ leases released
//! ```
//!
//! Nothing is visible under its final name before it is verified, and the
//! metadata write comes last: a crash anywhere leaves either the old state or
//! unreferenced leftovers that [`ImageService::open`](crate::ImageService::open)
//! removes.

use std::sync::Arc;

use oci_spec::image::{Descriptor, ImageConfiguration, MediaType};
use tracing::Instrument;

use crate::chain::chain_ids;
use crate::compression::Compression;
use crate::content::descriptor_digest;
use crate::digest::Digest;
use crate::gc::LeaseKey;
use crate::metadata::ImageRecord;
use crate::progress::LayerState;
use crate::reference::Reference;
use crate::registry::{BlobSource, BoxFuture, Credentials, RegistryClient, ResolvedImage};
use crate::service::Store;
use crate::tracker::PullTracker;
use crate::unpack;
use crate::{ImagesError, Result};

const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";

/// Turns a reference into a manifest and a blob source: the registry client,
/// or a fake in tests.
pub trait Resolver: Send + Sync {
    fn resolve<'a>(
        &'a self,
        reference: &'a Reference,
        creds: Option<&'a Credentials>,
    ) -> BoxFuture<'a, Result<ResolvedImage>>;
}

impl Resolver for RegistryClient {
    fn resolve<'a>(
        &'a self,
        reference: &'a Reference,
        creds: Option<&'a Credentials>,
    ) -> BoxFuture<'a, Result<ResolvedImage>> {
        Box::pin(RegistryClient::resolve(self, reference, creds))
    }
}

/// One manifest layer, checked.
#[derive(Clone)]
struct LayerPlan {
    desc: Descriptor,
    digest: Digest,
    compression: Compression,
}

/// Resolve and pull `reference`, publishing progress; the record as stored.
pub(crate) async fn pull(
    store: Arc<Store>,
    resolver: Arc<dyn Resolver>,
    reference: Reference,
    creds: Option<Credentials>,
) -> Result<ImageRecord> {
    let span = tracing::info_span!("pull", reference = %reference);
    async move {
        let tracker = Arc::new(PullTracker::new(reference.to_string(), store.progress.clone()));
        let result = async {
            let resolved = resolver.resolve(&reference, creds.as_ref()).await?;
            pull_resolved(&store, &reference, resolved, &tracker).await
        }
        .await;
        match &result {
            Ok(record) => tracing::info!(image = %record.id, "pulled"),
            Err(e) => tracing::warn!(error = %e, "pull failed"),
        }
        tracker.finish(result.as_ref().err().map(|e| e.to_string()));
        result
    }
    .instrument(span)
    .await
}

/// Everything after the registry lookup.
async fn pull_resolved(
    store: &Arc<Store>,
    reference: &Reference,
    resolved: ResolvedImage,
    tracker: &Arc<PullTracker>,
) -> Result<ImageRecord> {
    let ResolvedImage {
        manifest_digest,
        manifest,
        manifest_bytes,
        platform_manifest_digest,
        source,
    } = resolved;
    let source: Arc<dyn BlobSource> = Arc::from(source);
    tracing::debug!(manifest = %manifest_digest, platform_manifest = %platform_manifest_digest, "resolved");

    let config_desc = manifest.config().clone();
    let config_digest = descriptor_digest(&config_desc)?;
    match config_desc.media_type() {
        MediaType::ImageConfig => {}
        MediaType::Other(t) if t == DOCKER_CONFIG => {}
        other => {
            return Err(ImagesError::UnsupportedMediaType {
                media_type: other.to_string(),
                digest: config_digest.to_string(),
            })
        }
    }
    let layers = manifest
        .layers()
        .iter()
        .map(|desc| {
            let digest = descriptor_digest(desc)?;
            let compression = Compression::from_media_type(desc.media_type(), &digest.to_string())?;
            Ok(LayerPlan {
                desc: desc.clone(),
                digest,
                compression,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    tracker.set_layers(layers.iter().map(|l| (l.digest.to_string(), l.desc.size())));

    let mut blob_keys = vec![
        LeaseKey::Blob(config_digest.clone()),
        LeaseKey::Blob(platform_manifest_digest.clone()),
    ];
    blob_keys.extend(layers.iter().map(|l| LeaseKey::Blob(l.digest.clone())));
    let _blob_lease = store.leases.acquire(blob_keys);

    let config_bytes = fetch_config(store, &config_desc, &config_digest, source.as_ref()).await?;
    let diff_ids = parse_config(&config_bytes, &config_digest, layers.len())?;
    let chain = chain_ids(&diff_ids);
    let _snapshot_lease = store
        .leases
        .acquire(chain.iter().cloned().map(LeaseKey::Snapshot).collect());

    let manifest_store = Arc::clone(store);
    let manifest_for_store = platform_manifest_digest.clone();
    blocking(move || manifest_store.content.write(&manifest_for_store, &manifest_bytes)).await?;

    let jobs = layers.iter().enumerate().map(|(index, plan)| {
        ensure_layer(
            store,
            &source,
            tracker,
            index,
            plan.clone(),
            diff_ids[index].clone(),
            chain[index].clone(),
        )
    });
    // Wait for every layer even when one fails, so that nothing this pull
    // started is still running (or publishing progress) once it returns.
    for result in futures::future::join_all(jobs).await {
        result?;
    }

    let record = ImageRecord {
        id: config_digest.to_string(),
        repo_tags: reference.tagged_name().into_iter().collect(),
        repo_digests: vec![reference.digested_name(&manifest_digest)],
        size: config_desc.size() + layers.iter().map(|l| l.desc.size()).sum::<u64>(),
        manifest_digest: platform_manifest_digest.to_string(),
        layer_digests: layers.iter().map(|l| l.digest.to_string()).collect(),
        diff_ids: diff_ids.iter().map(ToString::to_string).collect(),
        chain_ids: chain.iter().map(ToString::to_string).collect(),
        created_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        pinned: false,
        config: String::from_utf8(config_bytes).map_err(|_| ImagesError::Malformed {
            what: "image config".into(),
            digest: config_digest.to_string(),
            reason: "not UTF-8".into(),
        })?,
    };
    let metadata_store = Arc::clone(store);
    blocking(move || metadata_store.metadata.put_image(record)).await
    // The leases drop here, after the record is committed.
}

/// The config blob: from the store if present, else fetched into it.
async fn fetch_config(store: &Store, desc: &Descriptor, digest: &Digest, source: &dyn BlobSource) -> Result<Vec<u8>> {
    let limit = store.max_config_bytes;
    if desc.size() > limit {
        return Err(ImagesError::TooLarge {
            what: "image config".into(),
            digest: digest.to_string(),
            size: desc.size(),
            limit,
        });
    }
    if let Some(bytes) = store.content.read(digest, limit)? {
        return Ok(bytes);
    }
    let file = store.content.ingest(desc, source, Some(limit), &|_| {}).await?;
    let path = store.content.blob_path(digest);
    blocking(move || {
        let mut bytes = Vec::new();
        std::io::Read::read_to_end(&mut std::io::Read::take(file, limit), &mut bytes)
            .map_err(|e| ImagesError::io("read blob", path, e))?;
        Ok(bytes)
    })
    .await
}

/// Parse the config and return its diff IDs, checking them against the
/// manifest's layer count.
fn parse_config(bytes: &[u8], digest: &Digest, layer_count: usize) -> Result<Vec<Digest>> {
    let malformed = |reason: String| ImagesError::Malformed {
        what: "image config".into(),
        digest: digest.to_string(),
        reason,
    };
    let config: ImageConfiguration = serde_json::from_slice(bytes).map_err(|e| malformed(e.to_string()))?;
    let diff_ids = config
        .rootfs()
        .diff_ids()
        .iter()
        .map(|d| Digest::parse(d).map_err(|e| malformed(e.to_string())))
        .collect::<Result<Vec<_>>>()?;
    if diff_ids.len() != layer_count {
        return Err(malformed(format!(
            "rootfs lists {} diff_ids but the manifest has {layer_count} layers",
            diff_ids.len()
        )));
    }
    Ok(diff_ids)
}

/// Make sure the snapshot for one layer exists, importing it (once, however
/// many pulls want it) if not.
async fn ensure_layer(
    store: &Arc<Store>,
    source: &Arc<dyn BlobSource>,
    tracker: &Arc<PullTracker>,
    index: usize,
    plan: LayerPlan,
    diff_id: Digest,
    chain_id: Digest,
) -> Result<()> {
    if store.snapshots.exists(&chain_id) {
        tracker.set_state(index, LayerState::Exists);
        return Ok(());
    }
    let key = chain_id.hex().to_string();
    let (store2, source, tracker2) = (Arc::clone(store), Arc::clone(source), Arc::clone(tracker));
    store
        .layer_imports
        .run(&key, move || {
            import_layer(store2, source, tracker2, index, plan, diff_id, chain_id)
        })
        .await?;
    tracker.set_state(index, LayerState::Done);
    Ok(())
}

/// Download and unpack one layer into its snapshot.
async fn import_layer(
    store: Arc<Store>,
    source: Arc<dyn BlobSource>,
    tracker: Arc<PullTracker>,
    index: usize,
    plan: LayerPlan,
    diff_id: Digest,
    chain_id: Digest,
) -> Result<()> {
    let span = tracing::info_span!("layer", digest = %plan.digest, diff_id = %diff_id, chain_id = %chain_id);
    async move {
        // Our own leases: this task outlives a pull that gives up on it.
        let _lease = store.leases.acquire(vec![
            LeaseKey::Snapshot(chain_id.clone()),
            LeaseKey::Blob(plan.digest.clone()),
        ]);
        let _permit = Arc::clone(&store.downloads)
            .acquire_owned()
            .await
            .map_err(|_| ImagesError::Internal("download limiter closed".into()))?;
        if store.snapshots.exists(&chain_id) {
            tracker.set_state(index, LayerState::Exists);
            return Ok(());
        }
        tracker.set_state(index, LayerState::Downloading);
        let blob = match store.content.open_blob(&plan.digest)? {
            Some(file) => file,
            None => {
                let progress_tracker = Arc::clone(&tracker);
                let progress = move |n: u64| progress_tracker.bytes(index, n);
                store
                    .content
                    .ingest(&plan.desc, source.as_ref(), None, &progress)
                    .await?
            }
        };
        tracker.set_state(index, LayerState::Unpacking);
        let unpack_store = Arc::clone(&store);
        let stats = blocking(move || {
            let result = unpack_into_snapshot(&unpack_store, blob, &plan, &diff_id, &chain_id);
            // Compressed layer blobs are not kept once unpacked (or refused).
            let deleted = unpack_store.content.delete(&plan.digest);
            let stats = result?;
            deleted?;
            Ok(stats)
        })
        .await?;
        tracing::info!(entries = stats.entries, bytes = stats.file_bytes, "layer unpacked");
        Ok(())
    }
    .instrument(span)
    .await
}

fn unpack_into_snapshot(
    store: &Store,
    blob: std::fs::File,
    plan: &LayerPlan,
    diff_id: &Digest,
    chain_id: &Digest,
) -> Result<unpack::UnpackStats> {
    let prepared = store.snapshots.prepare(chain_id)?;
    let stats = unpack::apply_layer(
        blob,
        plan.compression,
        prepared.path(),
        &plan.digest,
        diff_id,
        &store.limits,
    )?;
    store.snapshots.commit(prepared)?;
    Ok(stats)
}

/// Run blocking filesystem work off the async threads.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ImagesError::Internal(format!("blocking task failed: {e}")))?
}
