//! Writing OCI image layouts: `oci-layout`, `index.json`, `blobs/sha256/…`.
//!
//! JSON documents are serialised with sorted keys (serde_json's default map)
//! and no whitespace, so a layout built twice from the same inputs is
//! byte-identical.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

pub const MT_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const MT_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const MT_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const MT_LAYER_TAR: &str = "application/vnd.oci.image.layer.v1.tar";
pub const MT_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
pub const MT_LAYER_ZSTD: &str = "application/vnd.oci.image.layer.v1.tar+zstd";
pub const MT_IN_TOTO: &str = "application/vnd.in-toto+json";

/// `sha256:<hex>` of `data`.
pub fn sha256_digest(data: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(data)))
}

/// The OCI chain ID of a stack of diff IDs, bottom first.
pub fn chain_ids(diff_ids: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for d in diff_ids {
        let next = match out.last() {
            None => d.clone(),
            Some(prev) => sha256_digest(format!("{prev} {d}").as_bytes()),
        };
        out.push(next);
    }
    out
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    None,
    Gzip,
    Zstd,
}

impl Compression {
    pub fn media_type(self) -> &'static str {
        match self {
            Compression::None => MT_LAYER_TAR,
            Compression::Gzip => MT_LAYER_GZIP,
            Compression::Zstd => MT_LAYER_ZSTD,
        }
    }

    /// Compresses deterministically: gzip with a zero mtime and no name,
    /// zstd at a fixed level on one thread.
    pub fn apply(self, data: &[u8], fast: bool) -> Result<Vec<u8>> {
        Ok(match self {
            Compression::None => data.to_vec(),
            Compression::Gzip => {
                let level = if fast {
                    flate2::Compression::fast()
                } else {
                    flate2::Compression::default()
                };
                let mut enc = flate2::GzBuilder::new()
                    .mtime(0)
                    .write(Vec::with_capacity(data.len() / 2), level);
                enc.write_all(data)?;
                enc.finish()?
            }
            Compression::Zstd => zstd::encode_all(data, if fast { 1 } else { 3 })?,
        })
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Platform {
    pub architecture: String,
    pub os: String,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub variant: Option<String>,
}

impl Platform {
    pub fn new(os: &str, arch: &str, variant: Option<&str>) -> Platform {
        Platform {
            architecture: arch.into(),
            os: os.into(),
            variant: variant.map(Into::into),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    pub media_type: String,
    pub digest: String,
    pub size: u64,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub platform: Option<Platform>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub annotations: Option<std::collections::BTreeMap<String, String>>,
}

/// An OCI image layout directory being written.
pub struct Layout {
    dir: PathBuf,
    refs: Vec<Descriptor>,
}

impl Layout {
    /// Creates (or empties) `dir` as an OCI layout.
    pub fn create(dir: &Path) -> Result<Layout> {
        if dir.exists() {
            fs::remove_dir_all(dir).with_context(|| format!("removing {}", dir.display()))?;
        }
        fs::create_dir_all(dir.join("blobs/sha256")).with_context(|| format!("creating {}", dir.display()))?;
        fs::write(dir.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#)?;
        Ok(Layout {
            dir: dir.to_path_buf(),
            refs: Vec::new(),
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Stores a blob and returns its descriptor.
    pub fn put_blob(&self, media_type: &str, data: &[u8]) -> Result<Descriptor> {
        let digest = sha256_digest(data);
        let path = self.dir.join("blobs/sha256").join(&digest[7..]);
        if !path.exists() {
            fs::write(&path, data).with_context(|| format!("writing {}", path.display()))?;
        }
        Ok(Descriptor {
            media_type: media_type.into(),
            digest,
            size: data.len() as u64,
            platform: None,
            annotations: None,
        })
    }

    /// Serialises `doc` compactly and stores it.
    pub fn put_json(&self, media_type: &str, doc: &serde_json::Value) -> Result<Descriptor> {
        let bytes = serde_json::to_vec(doc)?;
        self.put_blob(media_type, &bytes)
    }

    /// Names `desc` in `index.json` under `tag`.
    pub fn tag(&mut self, mut desc: Descriptor, tag: &str) {
        let mut ann = desc.annotations.take().unwrap_or_default();
        ann.insert("org.opencontainers.image.ref.name".into(), tag.into());
        desc.annotations = Some(ann);
        self.refs.push(desc);
    }

    /// Writes `index.json`.
    pub fn finish(self) -> Result<()> {
        let index = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": MT_INDEX,
            "manifests": self.refs,
        });
        fs::write(self.dir.join("index.json"), serde_json::to_vec(&index)?)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chain_id_rule() {
        let a = sha256_digest(b"a");
        let b = sha256_digest(b"b");
        let ids = chain_ids(&[a.clone(), b.clone()]);
        assert_eq!(ids[0], a);
        assert_eq!(ids[1], sha256_digest(format!("{a} {b}").as_bytes()));
    }

    #[test]
    fn compression_is_deterministic_and_reversible() {
        let data = vec![7u8; 10_000];
        for c in [Compression::None, Compression::Gzip, Compression::Zstd] {
            let x = c.apply(&data, false).unwrap();
            assert_eq!(x, c.apply(&data, false).unwrap());
            let back = match c {
                Compression::None => x,
                Compression::Gzip => {
                    let mut out = Vec::new();
                    std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&x[..]), &mut out).unwrap();
                    out
                }
                Compression::Zstd => zstd::decode_all(&x[..]).unwrap(),
            };
            assert_eq!(back, data);
        }
    }
}
