//! Garbage collection of snapshots and blobs, and the leases that keep a
//! running pull's content safe from it.
//!
//! Reference counts are never stored: what is kept is derived, each time,
//! from the image records in the metadata store plus the in-memory leases:
//!
//! - snapshot `S` is kept iff some image lists `S` in `chain_ids`, or a pull
//!   holds a lease on it;
//! - blob `B` is kept iff it is some image's config or manifest, or a pull
//!   holds a lease on it. Compressed layer blobs are referenced by no image:
//!   they are only kept while the pull that downloaded them unpacks them.
//!
//! The lease table's mutex is the GC lock. A pull takes its leases (on every
//! chain ID, layer blob, config and manifest of the image) *before* it looks
//! at what is already on disk, and drops them only *after* its metadata
//! transaction commits. `collect` holds the same mutex while it reads the
//! metadata and moves garbage aside, so it can never take away something a
//! pull has decided to reuse, and never miss an image a pull has just
//! recorded. Deleting the moved-aside trees happens after the lock is
//! released.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};

use crate::content::ContentStore;
use crate::digest::Digest;
use crate::metadata::MetadataStore;
use crate::snapshot::SnapshotStore;
use crate::Result;

/// Something a pull is using.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum LeaseKey {
    Snapshot(Digest),
    Blob(Digest),
}

/// Leases held by running pulls (a count per key).
#[derive(Debug, Default)]
pub(crate) struct Leases {
    held: Mutex<HashMap<LeaseKey, usize>>,
}

/// Released on drop.
#[derive(Debug)]
pub(crate) struct Lease {
    leases: Arc<Leases>,
    keys: Vec<LeaseKey>,
}

impl Leases {
    fn lock(&self) -> MutexGuard<'_, HashMap<LeaseKey, usize>> {
        // A panic while holding the lock leaves the map consistent (every
        // update is a single insert/remove), so poisoning is ignored.
        self.held.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn acquire(self: &Arc<Self>, keys: Vec<LeaseKey>) -> Lease {
        let mut held = self.lock();
        for key in &keys {
            *held.entry(key.clone()).or_insert(0) += 1;
        }
        Lease {
            leases: Arc::clone(self),
            keys,
        }
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        let mut held = self.leases.lock();
        for key in &self.keys {
            if let Some(n) = held.get_mut(key) {
                *n -= 1;
                if *n == 0 {
                    held.remove(key);
                }
            }
        }
    }
}

/// What one collection removed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct GcReport {
    pub snapshots: usize,
    pub blobs: usize,
}

/// Delete every snapshot and blob that no image record and no lease keeps.
pub(crate) fn collect(
    leases: &Leases,
    metadata: &MetadataStore,
    content: &ContentStore,
    snapshots: &SnapshotStore,
) -> Result<GcReport> {
    let mut report = GcReport::default();
    let trashed = {
        let held = leases.lock();
        let mut keep_snapshots: HashSet<Digest> = HashSet::new();
        let mut keep_blobs: HashSet<Digest> = HashSet::new();
        for image in metadata.list()? {
            keep_snapshots.extend(image.chain_ids.iter().filter_map(|c| Digest::parse(c).ok()));
            keep_blobs.extend(
                [&image.id, &image.manifest_digest]
                    .into_iter()
                    .filter_map(|d| Digest::parse(d).ok()),
            );
        }
        for key in held.keys() {
            match key {
                LeaseKey::Snapshot(d) => keep_snapshots.insert(d.clone()),
                LeaseKey::Blob(d) => keep_blobs.insert(d.clone()),
            };
        }
        let mut trashed = Vec::new();
        for chain_id in snapshots.list()? {
            if !keep_snapshots.contains(&chain_id) {
                if let Some(path) = snapshots.trash(&chain_id)? {
                    tracing::info!(chain_id = %chain_id, "removing unused snapshot");
                    trashed.push(path);
                }
            }
        }
        for blob in content.list()? {
            if !keep_blobs.contains(&blob) && content.delete(&blob)? {
                tracing::debug!(digest = %blob, "removed unused blob");
                report.blobs += 1;
            }
        }
        trashed
    };
    for path in trashed {
        snapshots.purge(&path)?;
        report.snapshots += 1;
    }
    Ok(report)
}
