//! The image metadata store: `<root>/metadata.redb`.
//!
//! Tables (redb, one file, ACID):
//!
//! | table    | key                                   | value                      |
//! |----------|---------------------------------------|----------------------------|
//! | `images` | image ID (`sha256:<config digest>`)   | [`ImageRecord`] as JSON    |
//! | `names`  | `repo:tag` or `repo@sha256:<manifest>`| image ID                   |
//! | `meta`   | `schema`                              | schema version             |
//!
//! Invariants, kept by doing every change in **one** write transaction:
//! - a name is in `names` iff it is in the `repo_tags`/`repo_digests` of the
//!   record it points to;
//! - a record is written only after every snapshot in its `chain_ids` and its
//!   config and manifest blobs are committed on disk, so a record never
//!   points at missing content (garbage collection derives reference counts
//!   from these records, and nothing else).
//!
//! A tag that moves to another image is taken off the old image's record;
//! an image left without names stays (the kubelet removes images by ID).

use std::fmt::Display;
use std::path::{Path, PathBuf};

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};

use crate::{ImagesError, Result};

const IMAGES: TableDefinition<&str, &[u8]> = TableDefinition::new("images");
const NAMES: TableDefinition<&str, &str> = TableDefinition::new("names");
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
const SCHEMA_KEY: &str = "schema";
const SCHEMA_VERSION: u64 = 1;

/// One stored image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageRecord {
    /// `sha256:<config digest>`.
    pub id: String,
    pub repo_tags: Vec<String>,
    pub repo_digests: Vec<String>,
    /// Config size plus the compressed layer sizes from the manifest.
    pub size: u64,
    /// Digest of the platform-specific manifest (kept in the content store).
    pub manifest_digest: String,
    /// Compressed layer digests, bottom first.
    pub layer_digests: Vec<String>,
    /// Uncompressed layer digests, bottom first.
    pub diff_ids: Vec<String>,
    /// Snapshot keys, bottom first.
    pub chain_ids: Vec<String>,
    /// RFC 3339, when the image was first stored.
    pub created_at: String,
    pub pinned: bool,
    /// The image config JSON exactly as pulled.
    pub config: String,
}

impl ImageRecord {
    /// Every name (tags and digests) of the image.
    pub fn names(&self) -> impl Iterator<Item = &String> {
        self.repo_tags.iter().chain(self.repo_digests.iter())
    }

    fn forget_name(&mut self, name: &str) {
        self.repo_tags.retain(|n| n != name);
        self.repo_digests.retain(|n| n != name);
    }
}

pub struct MetadataStore {
    db: Database,
    path: PathBuf,
}

impl MetadataStore {
    /// Open (or create) the database file at `path`. redb takes an exclusive
    /// lock on it, so a second daemon on the same root fails here.
    pub fn open(path: &Path) -> Result<MetadataStore> {
        let err = |e: &dyn Display| ImagesError::Store(format!("{}: {e}", path.display()));
        let db = Database::create(path).map_err(|e| err(&e))?;
        let store = MetadataStore {
            db,
            path: path.to_path_buf(),
        };
        let txn = store.db.begin_write().map_err(|e| err(&e))?;
        {
            txn.open_table(IMAGES).map_err(|e| err(&e))?;
            txn.open_table(NAMES).map_err(|e| err(&e))?;
            let mut meta = txn.open_table(META).map_err(|e| err(&e))?;
            let version = meta.get(SCHEMA_KEY).map_err(|e| err(&e))?.map(|v| v.value());
            match version {
                None => {
                    meta.insert(SCHEMA_KEY, SCHEMA_VERSION).map_err(|e| err(&e))?;
                }
                Some(SCHEMA_VERSION) => {}
                Some(v) => {
                    return Err(err(&format!(
                        "schema version {v} is not supported (want {SCHEMA_VERSION})"
                    )))
                }
            }
        }
        txn.commit().map_err(|e| err(&e))?;
        Ok(store)
    }

    fn err(&self, e: impl Display) -> ImagesError {
        ImagesError::Store(format!("{}: {e}", self.path.display()))
    }

    fn decode(&self, id: &str, bytes: &[u8]) -> Result<ImageRecord> {
        serde_json::from_slice(bytes).map_err(|e| self.err(format!("record {id}: {e}")))
    }

    fn encode(&self, record: &ImageRecord) -> Result<Vec<u8>> {
        serde_json::to_vec(record).map_err(|e| self.err(format!("record {}: {e}", record.id)))
    }

    /// The record of image `id`.
    pub fn get(&self, id: &str) -> Result<Option<ImageRecord>> {
        let txn = self.db.begin_read().map_err(|e| self.err(e))?;
        let images = txn.open_table(IMAGES).map_err(|e| self.err(e))?;
        let bytes = images.get(id).map_err(|e| self.err(e))?.map(|v| v.value().to_vec());
        bytes.map(|b| self.decode(id, &b)).transpose()
    }

    /// The image a name (`repo:tag`, `repo@digest`) points to.
    pub fn image_for_name(&self, name: &str) -> Result<Option<String>> {
        let txn = self.db.begin_read().map_err(|e| self.err(e))?;
        let names = txn.open_table(NAMES).map_err(|e| self.err(e))?;
        let id = names.get(name).map_err(|e| self.err(e))?.map(|v| v.value().to_string());
        Ok(id)
    }

    /// IDs starting with `prefix` (e.g. `sha256:0123456789ab`).
    pub fn ids_with_prefix(&self, prefix: &str) -> Result<Vec<String>> {
        let txn = self.db.begin_read().map_err(|e| self.err(e))?;
        let images = txn.open_table(IMAGES).map_err(|e| self.err(e))?;
        let mut out = Vec::new();
        for item in images.range::<&str>(prefix..).map_err(|e| self.err(e))? {
            let (key, _) = item.map_err(|e| self.err(e))?;
            let key = key.value();
            if !key.starts_with(prefix) {
                break;
            }
            out.push(key.to_string());
        }
        Ok(out)
    }

    /// Every record, by ID.
    pub fn list(&self) -> Result<Vec<ImageRecord>> {
        let txn = self.db.begin_read().map_err(|e| self.err(e))?;
        let images = txn.open_table(IMAGES).map_err(|e| self.err(e))?;
        let mut out = Vec::new();
        for item in images.iter().map_err(|e| self.err(e))? {
            let (key, value) = item.map_err(|e| self.err(e))?;
            out.push(self.decode(key.value(), value.value())?);
        }
        Ok(out)
    }

    /// Store an image and point its names at it, in one transaction. An
    /// existing record of the same ID keeps its names and creation time and
    /// gains the new names; names held by other images move here. Returns the
    /// record as stored.
    pub fn put_image(&self, record: ImageRecord) -> Result<ImageRecord> {
        let txn = self.db.begin_write().map_err(|e| self.err(e))?;
        let stored = {
            let mut images = txn.open_table(IMAGES).map_err(|e| self.err(e))?;
            let mut names = txn.open_table(NAMES).map_err(|e| self.err(e))?;
            let existing = images
                .get(record.id.as_str())
                .map_err(|e| self.err(e))?
                .map(|v| v.value().to_vec());
            let mut merged = match existing {
                Some(bytes) => {
                    let old = self.decode(&record.id, &bytes)?;
                    let mut merged = ImageRecord {
                        created_at: old.created_at,
                        pinned: old.pinned,
                        ..record.clone()
                    };
                    merged.repo_tags = union(old.repo_tags, &record.repo_tags);
                    merged.repo_digests = union(old.repo_digests, &record.repo_digests);
                    merged
                }
                None => record.clone(),
            };
            merged.repo_tags = union(Vec::new(), &merged.repo_tags);
            merged.repo_digests = union(Vec::new(), &merged.repo_digests);
            for name in record.names() {
                let holder = names
                    .get(name.as_str())
                    .map_err(|e| self.err(e))?
                    .map(|v| v.value().to_string());
                if let Some(other_id) = holder.filter(|h| *h != record.id) {
                    let other = images
                        .get(other_id.as_str())
                        .map_err(|e| self.err(e))?
                        .map(|v| v.value().to_vec());
                    if let Some(bytes) = other {
                        let mut other = self.decode(&other_id, &bytes)?;
                        other.forget_name(name);
                        tracing::info!(name = %name, from = %other_id, to = %record.id, "name moved to another image");
                        images
                            .insert(other_id.as_str(), self.encode(&other)?.as_slice())
                            .map_err(|e| self.err(e))?;
                    }
                }
                names
                    .insert(name.as_str(), record.id.as_str())
                    .map_err(|e| self.err(e))?;
            }
            images
                .insert(merged.id.as_str(), self.encode(&merged)?.as_slice())
                .map_err(|e| self.err(e))?;
            merged
        };
        txn.commit().map_err(|e| self.err(e))?;
        Ok(stored)
    }

    /// Delete image `id` and every name pointing at it, in one transaction.
    /// Returns the removed record.
    pub fn remove_image(&self, id: &str) -> Result<Option<ImageRecord>> {
        let txn = self.db.begin_write().map_err(|e| self.err(e))?;
        let removed = {
            let mut images = txn.open_table(IMAGES).map_err(|e| self.err(e))?;
            let mut names = txn.open_table(NAMES).map_err(|e| self.err(e))?;
            let removed = images.remove(id).map_err(|e| self.err(e))?.map(|v| v.value().to_vec());
            names.retain(|_, holder| holder != id).map_err(|e| self.err(e))?;
            removed
        };
        txn.commit().map_err(|e| self.err(e))?;
        removed.map(|b| self.decode(id, &b)).transpose()
    }
}

/// `base` followed by the items of `extra` it lacks, without duplicates.
fn union(base: Vec<String>, extra: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::with_capacity(base.len() + extra.len());
    for item in base.into_iter().chain(extra.iter().cloned()) {
        if !out.contains(&item) {
            out.push(item);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(id: &str, tags: &[&str]) -> ImageRecord {
        ImageRecord {
            id: id.to_string(),
            repo_tags: tags.iter().map(|s| s.to_string()).collect(),
            repo_digests: vec![format!("r@{id}")],
            size: 1,
            manifest_digest: "m".into(),
            layer_digests: vec![],
            diff_ids: vec![],
            chain_ids: vec![],
            created_at: format!("created-{id}"),
            pinned: false,
            config: "{}".into(),
        }
    }

    #[test]
    fn names_move_and_merge() {
        let dir = tempfile::tempdir().unwrap();
        let store = MetadataStore::open(&dir.path().join("metadata.redb")).unwrap();
        store.put_image(record("sha256:aa", &["r:1", "r:latest"])).unwrap();
        assert_eq!(store.image_for_name("r:latest").unwrap().as_deref(), Some("sha256:aa"));

        // `r:latest` moves to bb; aa keeps `r:1`.
        store.put_image(record("sha256:bb", &["r:latest"])).unwrap();
        assert_eq!(store.image_for_name("r:latest").unwrap().as_deref(), Some("sha256:bb"));
        assert_eq!(store.get("sha256:aa").unwrap().unwrap().repo_tags, vec!["r:1"]);

        // Same image under a second tag: names merge, creation time stays.
        let mut again = record("sha256:bb", &["r:2"]);
        again.created_at = "later".into();
        let stored = store.put_image(again).unwrap();
        assert_eq!(stored.repo_tags, vec!["r:latest", "r:2"]);
        assert_eq!(stored.created_at, "created-sha256:bb");
        assert_eq!(store.list().unwrap().len(), 2);
        assert_eq!(store.ids_with_prefix("sha256:b").unwrap(), vec!["sha256:bb"]);

        // Moving the last name off an image keeps the image.
        store.put_image(record("sha256:cc", &["r:1"])).unwrap();
        assert!(store.get("sha256:aa").unwrap().unwrap().repo_tags.is_empty());
    }

    #[test]
    fn remove_drops_every_name_and_survives_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("metadata.redb");
        {
            let store = MetadataStore::open(&path).unwrap();
            store.put_image(record("sha256:aa", &["r:1", "r:2"])).unwrap();
            store.put_image(record("sha256:bb", &["s:1"])).unwrap();
            let removed = store.remove_image("sha256:aa").unwrap().unwrap();
            assert_eq!(removed.repo_tags.len(), 2);
            assert_eq!(store.remove_image("sha256:aa").unwrap(), None);
        }
        let store = MetadataStore::open(&path).unwrap();
        assert_eq!(store.image_for_name("r:1").unwrap(), None);
        assert_eq!(store.image_for_name("r@sha256:aa").unwrap(), None);
        assert_eq!(store.image_for_name("s:1").unwrap().as_deref(), Some("sha256:bb"));
        assert_eq!(store.list().unwrap().len(), 1);
    }
}
