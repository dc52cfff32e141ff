//! What the test images contain, written next to the layouts as
//! `expected.json` so integration tests can check an unpacked snapshot byte
//! for byte without re-reading the tarballs.
//!
//! Entries are in their *overlayfs snapshot form*: a tar whiteout `.wh.x`
//! is expected as a `whiteout` (a 0:0 character device named `x`), an opaque
//! marker `.wh..wh..opq` as the xattr `trusted.overlay.opaque=y` on its
//! directory, and a tar hardlink as a regular file sharing the inode of
//! `hardlink_of`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::oci::{Compression, Platform};
use crate::tarball::{Entry, Kind};

pub const OPAQUE_XATTR: &str = "trusted.overlay.opaque";

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FileKind {
    File,
    Dir,
    Symlink,
    Char,
    Block,
    Fifo,
    /// An overlayfs whiteout: a character device 0:0.
    Whiteout,
}

/// One path of a snapshot (or of the merged view).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileExpect {
    /// Relative to the snapshot root, no leading `/` or `./`.
    pub path: String,
    pub kind: FileKind,
    /// Permission bits with setuid/setgid/sticky.
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub mtime: u64,
    #[serde(default)]
    pub size: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rdev: Option<(u32, u32)>,
    /// Values as UTF-8 text (all test xattrs are text).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub xattrs: BTreeMap<String, String>,
    /// For a tar hardlink: the path it shares its inode with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hardlink_of: Option<String>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct LayerExpect {
    pub digest: String,
    pub media_type: String,
    pub compression: Compression,
    pub size: u64,
    pub diff_id: String,
    pub chain_id: String,
    pub entries: Vec<FileExpect>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ManifestExpect {
    pub platform: Platform,
    pub digest: String,
    pub config_digest: String,
    pub config: serde_json::Value,
    pub layers: Vec<LayerExpect>,
    /// The merged view of all layers, sorted by path.
    pub merged: Vec<FileExpect>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct HostileExpect {
    /// Absolute host paths the layer tries to create or link; none may exist
    /// after a pull.
    pub forbidden_paths: Vec<String>,
    pub what: String,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ImageExpect {
    /// Repository path in the registry, e.g. `berth/busybox`.
    pub repo: String,
    pub tag: String,
    /// Directory under `layouts/` holding this image's OCI layout.
    pub layout: String,
    /// Digest of the top-level document (the index for multi-arch images):
    /// what `RepoDigests` must carry.
    pub top_digest: String,
    pub top_media_type: String,
    /// Manifests; for an index, every platform manifest in index order
    /// (attestations excluded).
    pub manifests: Vec<ManifestExpect>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostile: Option<HostileExpect>,
}

impl ImageExpect {
    /// `repo:tag`.
    pub fn name(&self) -> String {
        format!("{}:{}", self.repo, self.tag)
    }

    /// The manifest a linux/amd64 node must select.
    pub fn amd64(&self) -> &ManifestExpect {
        self.manifests
            .iter()
            .find(|m| m.platform.os == "linux" && m.platform.architecture == "amd64")
            .expect("image has a linux/amd64 manifest")
    }
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Expected {
    /// Keyed by `repo:tag`.
    pub images: BTreeMap<String, ImageExpect>,
}

impl Expected {
    pub fn image(&self, name: &str) -> &ImageExpect {
        self.images
            .get(name)
            .unwrap_or_else(|| panic!("no test image {name} in expected.json"))
    }
}

/// Strips `./`, leading `/` and trailing `/`.
pub fn clean_path(p: &str) -> String {
    let mut s = p;
    while let Some(r) = s.strip_prefix("./") {
        s = r;
    }
    s.trim_start_matches('/').trim_end_matches('/').to_string()
}

fn split_parent(p: &str) -> (&str, &str) {
    match p.rfind('/') {
        Some(i) => (&p[..i], &p[i + 1..]),
        None => ("", p),
    }
}

fn join(dir: &str, name: &str) -> String {
    if dir.is_empty() {
        name.to_string()
    } else {
        format!("{dir}/{name}")
    }
}

/// The snapshot form of one layer's tar entries, sorted by path.
pub fn layer_entries(entries: &[Entry]) -> Vec<FileExpect> {
    let mut out: BTreeMap<String, FileExpect> = BTreeMap::new();
    let mut opaque: Vec<String> = Vec::new();
    for e in entries {
        let path = clean_path(&e.path);
        let (dir, name) = split_parent(&path);
        if name == ".wh..wh..opq" {
            opaque.push(dir.to_string());
            continue;
        }
        let base = FileExpect {
            path: path.clone(),
            kind: FileKind::File,
            mode: e.mode & 0o7777,
            uid: e.uid,
            gid: e.gid,
            mtime: e.mtime,
            size: 0,
            sha256: None,
            target: None,
            rdev: None,
            xattrs: e
                .xattrs
                .iter()
                .map(|(k, v)| (k.clone(), String::from_utf8_lossy(v).into_owned()))
                .collect(),
            hardlink_of: None,
        };
        if let Some(hidden) = name.strip_prefix(".wh.") {
            let p = join(dir, hidden);
            out.insert(
                p.clone(),
                FileExpect {
                    path: p,
                    kind: FileKind::Whiteout,
                    mode: 0,
                    rdev: Some((0, 0)),
                    xattrs: BTreeMap::new(),
                    ..base
                },
            );
            continue;
        }
        let fe = match &e.kind {
            Kind::File(d) => FileExpect {
                size: d.len() as u64,
                sha256: Some(crate::oci::sha256_digest(d)),
                ..base
            },
            Kind::Dir => FileExpect {
                kind: FileKind::Dir,
                ..base
            },
            Kind::Symlink(t) => FileExpect {
                kind: FileKind::Symlink,
                target: Some(t.clone()),
                size: t.len() as u64,
                ..base
            },
            Kind::Hardlink(t) => {
                let t = clean_path(t);
                // A link to something outside the layer (hostile images)
                // has no content to expect.
                let src = out.get(&t).cloned().unwrap_or(base);
                FileExpect {
                    path,
                    hardlink_of: Some(t),
                    ..src
                }
            }
            Kind::Char(a, b) => FileExpect {
                kind: FileKind::Char,
                rdev: Some((*a, *b)),
                ..base
            },
            Kind::Block(a, b) => FileExpect {
                kind: FileKind::Block,
                rdev: Some((*a, *b)),
                ..base
            },
            Kind::Fifo => FileExpect {
                kind: FileKind::Fifo,
                ..base
            },
        };
        out.insert(fe.path.clone(), fe);
    }
    for d in opaque {
        let e = out
            .get_mut(&d)
            .unwrap_or_else(|| panic!("opaque marker in {d} without its directory entry"));
        e.xattrs.insert(OPAQUE_XATTR.into(), "y".into());
    }
    out.into_values().collect()
}

/// Applies snapshot-form layers bottom-up as overlayfs would and returns the
/// merged view, sorted by path. Whiteouts and opaque markers do not appear in
/// it. `hardlink_of` is dropped (links may span lower layers).
pub fn merge(layers: &[Vec<FileExpect>]) -> Vec<FileExpect> {
    let mut view: BTreeMap<String, FileExpect> = BTreeMap::new();
    for layer in layers {
        for e in layer {
            let opaque = e.kind == FileKind::Dir && e.xattrs.contains_key(OPAQUE_XATTR);
            if e.kind == FileKind::Whiteout || opaque || e.kind != FileKind::Dir {
                // Anything below this path in lower layers is hidden, unless
                // this is a plain directory, which merges.
                let prefix = format!("{}/", e.path);
                view.retain(|k, _| !k.starts_with(&prefix));
            }
            if e.kind == FileKind::Whiteout {
                view.remove(&e.path);
                continue;
            }
            let mut m = e.clone();
            m.xattrs.remove(OPAQUE_XATTR);
            m.hardlink_of = None;
            view.insert(m.path.clone(), m);
        }
    }
    view.into_values().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(p: &str, data: &[u8]) -> Entry {
        Entry::new(p, Kind::File(data.to_vec()), 0o644, 1)
    }
    fn d(p: &str) -> Entry {
        Entry::new(p, Kind::Dir, 0o755, 1)
    }

    #[test]
    fn snapshot_form_of_whiteouts_and_opaque_dirs() {
        let l = layer_entries(&[
            d("a"),
            f("a/.wh.x", b""),
            d("o/"),
            f("o/.wh..wh..opq", b""),
            f("o/new", b"n"),
            f("h", b"data"),
            Entry::new("h2", Kind::Hardlink("./h".into()), 0o644, 1),
        ]);
        let names: Vec<_> = l.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(names, ["a", "a/x", "h", "h2", "o", "o/new"]);
        assert_eq!(l[1].kind, FileKind::Whiteout);
        assert_eq!(l[1].rdev, Some((0, 0)));
        assert_eq!(l[3].hardlink_of.as_deref(), Some("h"));
        assert_eq!(l[3].sha256, l[2].sha256);
        assert_eq!(l[4].xattrs.get(OPAQUE_XATTR).map(String::as_str), Some("y"));
    }

    #[test]
    fn merge_applies_whiteouts_and_opaque_dirs() {
        let lower = layer_entries(&[d("a"), f("a/x", b"1"), f("a/y", b"1"), d("o"), f("o/old", b"")]);
        let upper = layer_entries(&[
            d("a"),
            f("a/.wh.x", b""),
            f("a/y", b"2"),
            d("o"),
            f("o/.wh..wh..opq", b""),
            f("o/new", b""),
        ]);
        let m = merge(&[lower, upper]);
        let names: Vec<_> = m.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(names, ["a", "a/y", "o", "o/new"]);
        assert_eq!(m[1].sha256, Some(crate::oci::sha256_digest(b"2")));
        assert!(m[2].xattrs.is_empty());
    }
}
