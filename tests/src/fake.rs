//! A fake registry serving fixed bytes, for what a real registry will not
//! do: blobs whose bytes do not match their digest, oversized documents.
//!
//! It speaks just enough of the distribution API: `GET /v2/`, and
//! `GET|HEAD /v2/<repo>/manifests/<ref>` and `/v2/<repo>/blobs/<digest>`
//! from a table of paths. Every request is recorded.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use berth_hack::http::{Request, Response, Server};
use berth_hack::oci::{self, sha256_digest, Compression};
use berth_hack::tarball::{self, Entry, Kind};
use serde_json::json;

#[derive(Clone)]
pub struct Doc {
    pub media_type: String,
    pub body: Vec<u8>,
}

pub struct FakeRegistry {
    server: Server,
    pub requests: Arc<Mutex<Vec<String>>>,
}

impl FakeRegistry {
    /// Serves `docs` (keyed by URL path, e.g. `/v2/fake/bad/manifests/v1`).
    pub fn start(docs: BTreeMap<String, Doc>) -> FakeRegistry {
        let requests = Arc::new(Mutex::new(Vec::new()));
        let log = requests.clone();
        let handler = move |req: &Request| {
            log.lock().expect("lock").push(format!("{} {}", req.method, req.path));
            if req.path == "/v2/" || req.path == "/v2" {
                return Response::json(200, &json!({})).header("Docker-Distribution-API-Version", "registry/2.0");
            }
            match docs.get(&req.path) {
                Some(d) => Response::new(200, d.body.clone())
                    .header("Content-Type", &d.media_type)
                    .header("Docker-Content-Digest", &sha256_digest(&d.body))
                    .header("Docker-Distribution-API-Version", "registry/2.0"),
                None => Response::json(
                    404,
                    &json!({"errors": [{"code": "MANIFEST_UNKNOWN", "message": "unknown"}]}),
                ),
            }
        };
        FakeRegistry {
            server: Server::start(Arc::new(handler)).expect("fake registry"),
            requests,
        }
    }

    /// `127.0.0.1:PORT`.
    pub fn host(&self) -> String {
        self.server.addr().to_string()
    }

    pub fn requests(&self) -> Vec<String> {
        self.requests.lock().expect("lock").clone()
    }
}

/// A small valid image: one gzip layer with `/hello`.
pub struct FakeImage {
    pub layer: Vec<u8>,
    pub layer_digest: String,
    pub config: Vec<u8>,
    pub config_digest: String,
    pub manifest: Vec<u8>,
    pub manifest_digest: String,
}

impl FakeImage {
    pub fn new() -> FakeImage {
        let tar = tarball::write_tar(&[Entry::new(
            "hello",
            Kind::File(b"hello from the fake registry\n".to_vec()),
            0o644,
            1_700_000_000,
        )]);
        let diff_id = sha256_digest(&tar);
        let layer = Compression::Gzip.apply(&tar, false).expect("gzip");
        let config = serde_json::to_vec(&json!({
            "architecture": "amd64",
            "os": "linux",
            "config": {"Cmd": ["sh"]},
            "rootfs": {"type": "layers", "diff_ids": [diff_id]},
        }))
        .expect("json");
        FakeImage::assemble(layer, config)
    }

    /// Builds the manifest over the given layer and config bytes.
    pub fn assemble(layer: Vec<u8>, config: Vec<u8>) -> FakeImage {
        let layer_digest = sha256_digest(&layer);
        let config_digest = sha256_digest(&config);
        let manifest = serde_json::to_vec(&json!({
            "schemaVersion": 2,
            "mediaType": oci::MT_MANIFEST,
            "config": {"mediaType": oci::MT_CONFIG, "digest": config_digest, "size": config.len()},
            "layers": [{"mediaType": oci::MT_LAYER_GZIP, "digest": layer_digest, "size": layer.len()}],
        }))
        .expect("json");
        FakeImage {
            manifest_digest: sha256_digest(&manifest),
            layer,
            layer_digest,
            config,
            config_digest,
            manifest,
        }
    }

    /// The documents to serve for `repo:tag`: manifest by tag and digest,
    /// config and layer blobs.
    pub fn docs(&self, repo: &str, tag: &str) -> BTreeMap<String, Doc> {
        let mut m = BTreeMap::new();
        let manifest = Doc {
            media_type: oci::MT_MANIFEST.into(),
            body: self.manifest.clone(),
        };
        m.insert(format!("/v2/{repo}/manifests/{tag}"), manifest.clone());
        m.insert(format!("/v2/{repo}/manifests/{}", self.manifest_digest), manifest);
        m.insert(
            format!("/v2/{repo}/blobs/{}", self.config_digest),
            Doc {
                media_type: "application/octet-stream".into(),
                body: self.config.clone(),
            },
        );
        m.insert(
            format!("/v2/{repo}/blobs/{}", self.layer_digest),
            Doc {
                media_type: "application/octet-stream".into(),
                body: self.layer.clone(),
            },
        );
        m
    }
}

impl Default for FakeImage {
    fn default() -> Self {
        FakeImage::new()
    }
}

/// Same length, one byte flipped in the middle.
pub fn corrupt(bytes: &[u8]) -> Vec<u8> {
    let mut b = bytes.to_vec();
    let i = b.len() / 2;
    b[i] ^= 0xff;
    b
}
