//! Test helpers: a tar writer that can write anything (including the hostile
//! entries `tar::Builder` refuses to), and an in-memory registry that serves
//! images to the pull pipeline without a network and counts what it serves.

use std::collections::HashMap;
use std::io::Write;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use oci_spec::image::{Descriptor, ImageManifest};
use tar::{EntryType, Header};
use tokio::io::{AsyncWrite, AsyncWriteExt};

use crate::compression::Compression;
use crate::digest::{Digest, Verifier};
use crate::pull::Resolver;
use crate::reference::Reference;
use crate::registry::{BlobSource, BoxFuture, Credentials, ResolvedImage};
use crate::{ImagesError, Result};

pub(crate) fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// `true` (and a note on stderr) when the calling test needs root and we are not.
pub(crate) fn skip_without_root(test: &str) -> bool {
    if is_root() {
        return false;
    }
    eprintln!("skipping {test}: needs root (chown, mknod, trusted.* xattrs)");
    true
}

/// Writes tar entries with raw names, so tests can build hostile layers.
pub(crate) struct Tar {
    builder: tar::Builder<Vec<u8>>,
}

impl Tar {
    pub(crate) fn new() -> Tar {
        Tar {
            builder: tar::Builder::new(Vec::new()),
        }
    }

    /// Append one entry; `path` and `link` are copied byte for byte.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn raw(
        &mut self,
        path: &[u8],
        kind: EntryType,
        mode: u32,
        owner: (u64, u64),
        mtime: u64,
        link: &[u8],
        data: &[u8],
    ) -> &mut Tar {
        let mut h = Header::new_gnu();
        h.as_old_mut().name[..path.len()].copy_from_slice(path);
        h.as_old_mut().linkname[..link.len()].copy_from_slice(link);
        h.set_entry_type(kind);
        h.set_mode(mode);
        h.set_uid(owner.0);
        h.set_gid(owner.1);
        h.set_mtime(mtime);
        h.set_size(data.len() as u64);
        h.set_cksum();
        self.builder.append(&h, data).unwrap();
        self
    }

    pub(crate) fn dir(&mut self, path: &str, mode: u32) -> &mut Tar {
        self.raw(
            path.as_bytes(),
            EntryType::Directory,
            mode,
            (0, 0),
            1_600_000_000,
            b"",
            b"",
        )
    }

    pub(crate) fn file(&mut self, path: &str, mode: u32, data: &[u8]) -> &mut Tar {
        self.raw(
            path.as_bytes(),
            EntryType::Regular,
            mode,
            (0, 0),
            1_600_000_000,
            b"",
            data,
        )
    }

    pub(crate) fn symlink(&mut self, path: &str, target: &str) -> &mut Tar {
        self.raw(
            path.as_bytes(),
            EntryType::Symlink,
            0o777,
            (0, 0),
            1_600_000_000,
            target.as_bytes(),
            b"",
        )
    }

    pub(crate) fn hardlink(&mut self, path: &str, target: &str) -> &mut Tar {
        self.raw(
            path.as_bytes(),
            EntryType::Link,
            0o644,
            (0, 0),
            1_600_000_000,
            target.as_bytes(),
            b"",
        )
    }

    pub(crate) fn device(&mut self, path: &str, kind: EntryType, mode: u32, major: u32, minor: u32) -> &mut Tar {
        let mut h = Header::new_gnu();
        h.set_path(path).unwrap();
        h.set_entry_type(kind);
        h.set_mode(mode);
        h.set_uid(0);
        h.set_gid(0);
        h.set_size(0);
        h.set_mtime(1_600_000_000);
        h.set_device_major(major).unwrap();
        h.set_device_minor(minor).unwrap();
        h.set_cksum();
        self.builder.append(&h, &b""[..]).unwrap();
        self
    }

    /// A PAX header for the next entry.
    pub(crate) fn pax(&mut self, records: &[(&str, &[u8])]) -> &mut Tar {
        self.builder.append_pax_extensions(records.iter().copied()).unwrap();
        self
    }

    pub(crate) fn finish(&mut self) -> Vec<u8> {
        let builder = std::mem::replace(&mut self.builder, tar::Builder::new(Vec::new()));
        builder.into_inner().unwrap()
    }
}

pub(crate) fn compress(tar: &[u8], compression: Compression) -> Vec<u8> {
    match compression {
        Compression::None => tar.to_vec(),
        Compression::Gzip => {
            let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            gz.write_all(tar).unwrap();
            gz.finish().unwrap()
        }
        Compression::Zstd => zstd::encode_all(tar, 1).unwrap(),
    }
}

fn media_type(compression: Compression) -> &'static str {
    match compression {
        Compression::None => "application/vnd.oci.image.layer.v1.tar",
        Compression::Gzip => "application/vnd.oci.image.layer.v1.tar+gzip",
        Compression::Zstd => "application/vnd.oci.image.layer.v1.tar+zstd",
    }
}

/// What [`FakeRegistry::push`] stored.
#[derive(Debug, Clone)]
pub(crate) struct Pushed {
    pub(crate) id: String,
    pub(crate) manifest_digest: Digest,
    pub(crate) layer_digests: Vec<Digest>,
    pub(crate) diff_ids: Vec<Digest>,
    pub(crate) size: u64,
}

/// How to build an image for [`FakeRegistry::push_with`].
pub(crate) struct ImageSpec<'a> {
    pub(crate) layers: &'a [Vec<u8>],
    pub(crate) compression: Compression,
    /// Makes the config (and so the ID) unique.
    pub(crate) label: &'a str,
    /// Override the layer media type.
    pub(crate) media_type: Option<&'a str>,
    /// Override the diff IDs written in the config.
    pub(crate) diff_ids: Option<Vec<Digest>>,
}

#[derive(Default)]
struct Inner {
    blobs: Mutex<HashMap<Digest, Vec<u8>>>,
    /// Bytes to serve instead of the real ones (to test verification).
    corrupt: Mutex<HashMap<Digest, Vec<u8>>>,
    manifests: Mutex<HashMap<String, (Digest, Vec<u8>)>>,
    fetches: Mutex<HashMap<Digest, usize>>,
    resolves: AtomicUsize,
    delay_ms: AtomicUsize,
}

/// An in-memory registry: a [`Resolver`] whose [`BlobSource`] counts fetches.
#[derive(Clone, Default)]
pub(crate) struct FakeRegistry {
    inner: Arc<Inner>,
}

impl FakeRegistry {
    pub(crate) fn new() -> FakeRegistry {
        FakeRegistry::default()
    }

    /// Sleep this long in every fetch (to make pulls overlap).
    pub(crate) fn set_delay(&self, delay: Duration) {
        self.inner.delay_ms.store(delay.as_millis() as usize, Ordering::SeqCst);
    }

    pub(crate) fn put_blob(&self, bytes: Vec<u8>) -> Digest {
        let d = Digest::of(&bytes);
        self.inner.blobs.lock().unwrap().insert(d.clone(), bytes);
        d
    }

    pub(crate) fn corrupt(&self, digest: &Digest, bytes: Vec<u8>) {
        self.inner.corrupt.lock().unwrap().insert(digest.clone(), bytes);
    }

    pub(crate) fn fetches(&self, digest: &Digest) -> usize {
        self.inner.fetches.lock().unwrap().get(digest).copied().unwrap_or(0)
    }

    pub(crate) fn total_fetches(&self) -> usize {
        self.inner.fetches.lock().unwrap().values().sum()
    }

    pub(crate) fn resolves(&self) -> usize {
        self.inner.resolves.load(Ordering::SeqCst)
    }

    /// Push uncompressed layer tarballs as gzip layers under `reference`.
    pub(crate) fn push(&self, reference: &str, layers: &[Vec<u8>], label: &str) -> Pushed {
        self.push_with(
            reference,
            ImageSpec {
                layers,
                compression: Compression::Gzip,
                label,
                media_type: None,
                diff_ids: None,
            },
        )
    }

    pub(crate) fn push_with(&self, reference: &str, spec: ImageSpec<'_>) -> Pushed {
        let real_diff_ids: Vec<Digest> = spec.layers.iter().map(|l| Digest::of(l)).collect();
        let diff_ids = spec.diff_ids.unwrap_or(real_diff_ids.clone());
        let mut layer_descs = Vec::new();
        let mut layer_digests = Vec::new();
        let mut size = 0;
        for layer in spec.layers {
            let blob = compress(layer, spec.compression);
            size += blob.len() as u64;
            let len = blob.len();
            let d = self.put_blob(blob);
            let mt = spec.media_type.unwrap_or(media_type(spec.compression));
            layer_descs.push(format!(r#"{{"mediaType":"{mt}","digest":"{d}","size":{len}}}"#));
            layer_digests.push(d);
        }
        let diff_list: Vec<String> = diff_ids.iter().map(|d| format!("\"{d}\"")).collect();
        let config = format!(
            r#"{{"architecture":"amd64","os":"linux","author":"{}","config":{{"Env":["PATH=/bin"],"Cmd":["/bin/sh"]}},"rootfs":{{"type":"layers","diff_ids":[{}]}}}}"#,
            spec.label,
            diff_list.join(",")
        );
        let config_len = config.len();
        size += config_len as u64;
        let config_digest = self.put_blob(config.into_bytes());
        let manifest = format!(
            r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{config_digest}","size":{config_len}}},"layers":[{}]}}"#,
            layer_descs.join(",")
        );
        let manifest_digest = Digest::of(manifest.as_bytes());
        let key = Reference::parse(reference).unwrap().to_string();
        self.inner
            .manifests
            .lock()
            .unwrap()
            .insert(key, (manifest_digest.clone(), manifest.into_bytes()));
        Pushed {
            id: config_digest.to_string(),
            manifest_digest,
            layer_digests,
            diff_ids: real_diff_ids,
            size,
        }
    }
}

impl Resolver for FakeRegistry {
    fn resolve<'a>(
        &'a self,
        reference: &'a Reference,
        _creds: Option<&'a Credentials>,
    ) -> BoxFuture<'a, Result<ResolvedImage>> {
        Box::pin(async move {
            self.inner.resolves.fetch_add(1, Ordering::SeqCst);
            let found = self
                .inner
                .manifests
                .lock()
                .unwrap()
                .get(&reference.to_string())
                .cloned();
            let (digest, bytes) = found.ok_or_else(|| ImagesError::RegistryNotFound {
                host: reference.registry().into(),
                what: format!("manifest {reference}"),
                detail: "not pushed to the fake".into(),
            })?;
            let manifest = ImageManifest::from_reader(&bytes[..]).map_err(|e| ImagesError::Internal(e.to_string()))?;
            Ok(ResolvedImage {
                manifest_digest: digest.clone(),
                manifest,
                manifest_bytes: bytes,
                platform_manifest_digest: digest,
                source: Box::new(self.clone()),
            })
        })
    }
}

impl BlobSource for FakeRegistry {
    fn fetch<'a>(
        &'a self,
        desc: &'a Descriptor,
        out: &'a mut (dyn AsyncWrite + Send + Unpin),
        progress: &'a (dyn Fn(u64) + Send + Sync),
    ) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            let digest = Digest::parse(desc.digest().as_ref())?;
            *self.inner.fetches.lock().unwrap().entry(digest.clone()).or_insert(0) += 1;
            let delay = self.inner.delay_ms.load(Ordering::SeqCst);
            if delay > 0 {
                tokio::time::sleep(Duration::from_millis(delay as u64)).await;
            }
            let corrupt = self.inner.corrupt.lock().unwrap().get(&digest).cloned();
            let stored = self.inner.blobs.lock().unwrap().get(&digest).cloned();
            let bytes = corrupt.or(stored).ok_or_else(|| ImagesError::RegistryNotFound {
                host: "fake".into(),
                what: format!("blob {digest}"),
                detail: "absent".into(),
            })?;
            let mut verifier = Verifier::new();
            let mut sent = 0u64;
            for chunk in bytes.chunks(16 * 1024) {
                out.write_all(chunk)
                    .await
                    .map_err(|e| ImagesError::io("write blob", "<fake>", e))?;
                verifier.update(chunk);
                sent += chunk.len() as u64;
                progress(sent);
            }
            verifier.verify(&digest, Some(desc.size()))
        })
    }
}
