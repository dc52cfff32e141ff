//! Which image a user's query means.
//!
//! Accepted, tried in this order:
//! 1. an image ID: `sha256:<64 hex>` or the bare 64 hex;
//! 2. `sha256:<12..63 hex>`: a unique ID prefix;
//! 3. any reference [`Reference::parse`] normalises (`busybox`,
//!    `repo:tag`, `repo@sha256:…`, `repo:tag@sha256:…` — the digest wins);
//! 4. a bare unique ID prefix of at least 12 hex characters (after the
//!    reference lookup, since `abcdef123456` is also a valid repository name).

use crate::metadata::MetadataStore;
use crate::reference::Reference;
use crate::{ImagesError, Result};

const MIN_PREFIX: usize = 12;

fn is_hex(s: &str) -> bool {
    s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// The ID of the image `query` names, if stored.
pub(crate) fn resolve(metadata: &MetadataStore, query: &str) -> Result<Option<String>> {
    if query.is_empty() {
        return Err(ImagesError::InvalidArgument {
            field: "image".into(),
            reason: "empty image name or ID".into(),
        });
    }
    if let Some(hex) = query.strip_prefix("sha256:") {
        return match hex.len() {
            64 if is_hex(hex) => exact(metadata, hex),
            MIN_PREFIX..64 if is_hex(hex) => by_prefix(metadata, hex, query),
            _ => Err(ImagesError::InvalidArgument {
                field: "image".into(),
                reason: format!("{query:?} is not an image ID (sha256: and 12 to 64 lowercase hex characters)"),
            }),
        };
    }
    if query.len() == 64 && is_hex(query) {
        return exact(metadata, query);
    }
    let parsed = Reference::parse(query);
    if let Ok(reference) = &parsed {
        let name = match reference.digest() {
            Some(digest) => reference.digested_name(digest),
            None => reference.tagged_name().unwrap_or_else(|| reference.to_string()),
        };
        if let Some(id) = metadata.image_for_name(&name)? {
            return Ok(Some(id));
        }
    }
    if query.len() >= MIN_PREFIX && is_hex(query) {
        return by_prefix(metadata, query, query);
    }
    parsed.map(|_| None)
}

fn exact(metadata: &MetadataStore, hex: &str) -> Result<Option<String>> {
    let id = format!("sha256:{hex}");
    Ok(metadata.get(&id)?.map(|_| id))
}

fn by_prefix(metadata: &MetadataStore, hex: &str, query: &str) -> Result<Option<String>> {
    let mut ids = metadata.ids_with_prefix(&format!("sha256:{hex}"))?;
    match ids.len() {
        0 => Ok(None),
        1 => Ok(ids.pop()),
        n => Err(ImagesError::InvalidArgument {
            field: "image".into(),
            reason: format!("ID prefix {query:?} is ambiguous: it matches {n} images"),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metadata::ImageRecord;

    fn record(id: &str, tags: &[&str], digests: &[&str]) -> ImageRecord {
        ImageRecord {
            id: id.into(),
            repo_tags: tags.iter().map(|s| s.to_string()).collect(),
            repo_digests: digests.iter().map(|s| s.to_string()).collect(),
            size: 0,
            manifest_digest: String::new(),
            layer_digests: vec![],
            diff_ids: vec![],
            chain_ids: vec![],
            created_at: String::new(),
            pinned: false,
            config: "{}".into(),
        }
    }

    #[test]
    fn resolves_every_query_form() {
        let dir = tempfile::tempdir().unwrap();
        let md = MetadataStore::open(&dir.path().join("m.redb")).unwrap();
        let a = format!("sha256:{}", "a".repeat(64));
        let b = format!("sha256:{}{}", "a".repeat(12), "b".repeat(52));
        let manifest = format!("sha256:{}", "c".repeat(64));
        let digested = format!("docker.io/library/busybox@{manifest}");
        md.put_image(record(&a, &["docker.io/library/busybox:latest"], &[&digested]))
            .unwrap();
        md.put_image(record(&b, &["127.0.0.1:5000/x:v1"], &[])).unwrap();

        let q = |s: &str| resolve(&md, s);
        assert_eq!(q(&a).unwrap().as_deref(), Some(a.as_str()));
        assert_eq!(q(&"a".repeat(64)).unwrap().as_deref(), Some(a.as_str()));
        assert_eq!(q("busybox").unwrap().as_deref(), Some(a.as_str()));
        assert_eq!(
            q("docker.io/library/busybox:latest").unwrap().as_deref(),
            Some(a.as_str())
        );
        assert_eq!(q(&format!("busybox@{manifest}")).unwrap().as_deref(), Some(a.as_str()));
        assert_eq!(
            q(&format!("busybox:other@{manifest}")).unwrap().as_deref(),
            Some(a.as_str())
        );
        assert_eq!(q("127.0.0.1:5000/x:v1").unwrap().as_deref(), Some(b.as_str()));
        assert_eq!(q(&format!("{}b", "a".repeat(12))).unwrap().as_deref(), Some(b.as_str()));
        assert_eq!(
            q(&format!("sha256:{}a", "a".repeat(12))).unwrap().as_deref(),
            Some(a.as_str())
        );
        assert!(matches!(q(&"a".repeat(12)), Err(ImagesError::InvalidArgument { .. })));
        assert_eq!(q("busybox:1.0").unwrap(), None);
        assert_eq!(q(&"d".repeat(64)).unwrap(), None);
        assert_eq!(q("0123456789ab").unwrap(), None);
        assert!(q("sha256:abc").is_err());
        assert!(q("Not A Ref").is_err());
        assert!(q("").is_err());
    }
}
