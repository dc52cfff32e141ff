//! OCI distribution client.
//!
//! Contract with the rest of the crate (owned by the registry module):
//! - [`RegistryClient::new`] takes a [`RegistryConfig`] (per-host mirrors,
//!   insecure hosts, credentials, target platform).
//! - [`RegistryClient::resolve`] turns a [`Reference`] into a [`ResolvedImage`]:
//!   the top-level manifest digest (an index's digest for multi-arch images,
//!   which is what RepoDigests carry), the platform-specific image manifest, and
//!   a [`BlobSource`] bound to the endpoint (mirror or upstream) and auth
//!   session that served it.
//! - [`BlobSource::fetch`] streams one blob into a writer, verifying size and
//!   digest; nothing is trusted until verified.
//!
//! Inside, by job:
//! - [`hosts`](self::hosts): endpoint order for a host (mirrors, then upstream;
//!   scheme rules; per-endpoint credentials and TLS settings);
//! - `tls`: one pooled HTTP client per distinct TLS setting;
//! - `transport`: one exchange with redirects (Authorization never leaves the
//!   origin) and status → error mapping;
//! - `challenge` / `auth`: `WWW-Authenticate` parsing, credentials, tokens;
//! - `manifest` / `platform`: media types, parsing, platform selection;
//! - `session`: a pull's endpoints, credentials and token cache — the
//!   [`BlobSource`] handed out in [`ResolvedImage`];
//! - `resolve`: reference → verified platform manifest, with fall-through.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;

use oci_spec::image::{Descriptor, ImageManifest};
use serde::{Deserialize, Serialize};
use tokio::io::AsyncWrite;
use tracing::Instrument;

use crate::digest::Digest;
use crate::reference::Reference;
use crate::{ImagesError, Result};

mod auth;
mod challenge;
mod hosts;
mod manifest;
mod platform;
mod resolve;
mod session;
mod tls;
mod transport;

#[cfg(test)]
mod fake;
#[cfg(test)]
mod tests;

/// Settings for one upstream registry host (`docker.io`, `127.0.0.1:5000`, …).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HostConfig {
    /// Mirror base URLs tried in order before the upstream, e.g.
    /// `http://127.0.0.1:5001` (plain HTTP) or `https://mirror.example`.
    /// A mirror serves the same repository paths as the upstream.
    pub mirrors: Vec<String>,
    /// Reach the upstream over plain HTTP (loopback hosts are always allowed to).
    pub insecure: bool,
    /// Credentials for this host (used when the request carries none).
    pub username: Option<String>,
    pub password: Option<String>,
    /// base64("user:password"), as in a docker config.json.
    pub auth: Option<String>,
    /// OAuth2 refresh token (identity token) for the token endpoint.
    pub identity_token: Option<String>,
    /// PEM file of CA certificates to trust for this host (and its https mirrors)
    /// in addition to the system roots.
    pub ca_file: Option<std::path::PathBuf>,
    /// Skip TLS certificate verification for this host (never the default).
    pub skip_verify: bool,
}

/// Registry settings of the whole daemon.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistryConfig {
    /// Keyed by upstream host as it appears in a normalised reference
    /// (`docker.io`, `registry.k8s.io`, `127.0.0.1:5000`).
    pub hosts: BTreeMap<String, HostConfig>,
    /// Platform to select from image indexes.
    pub platform: Platform,
    /// Refuse manifests/indexes larger than this.
    pub max_manifest_bytes: u64,
    /// Refuse image configs larger than this.
    pub max_config_bytes: u64,
}

impl Default for RegistryConfig {
    fn default() -> Self {
        RegistryConfig {
            hosts: BTreeMap::new(),
            platform: Platform::default(),
            max_manifest_bytes: 4 << 20,
            max_config_bytes: 8 << 20,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Platform {
    pub os: String,
    pub architecture: String,
    pub variant: Option<String>,
}

impl Default for Platform {
    fn default() -> Self {
        Platform {
            os: "linux".into(),
            architecture: "amd64".into(),
            variant: None,
        }
    }
}

/// Credentials carried by one request (CRI `AuthConfig`), taking precedence
/// over the host's configured ones.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Credentials {
    pub username: Option<String>,
    pub password: Option<String>,
    /// base64("user:password").
    pub auth: Option<String>,
    pub identity_token: Option<String>,
    /// A bearer token to send as-is.
    pub registry_token: Option<String>,
}

/// A reference resolved against a registry.
pub struct ResolvedImage {
    /// Digest of the top-level manifest the reference pointed at (the index
    /// for multi-arch images).
    pub manifest_digest: Digest,
    /// The platform-specific image manifest.
    pub manifest: ImageManifest,
    /// Its raw bytes, as verified.
    pub manifest_bytes: Vec<u8>,
    /// Digest of the platform-specific manifest (equal to `manifest_digest`
    /// for single-platform images).
    pub platform_manifest_digest: Digest,
    /// Where to fetch the config and layer blobs from.
    pub source: Box<dyn BlobSource>,
}

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Something that can stream verified blobs: the registry session that
/// resolved an image, or a fake in tests.
pub trait BlobSource: Send + Sync {
    /// Write the blob described by `desc` into `out`, calling `progress` with
    /// the running byte count. Fails with `DigestMismatch` / `SizeMismatch` /
    /// `TooLarge` when the bytes do not match the descriptor; the caller must
    /// then discard what was written.
    fn fetch<'a>(
        &'a self,
        desc: &'a Descriptor,
        out: &'a mut (dyn AsyncWrite + Send + Unpin),
        progress: &'a (dyn Fn(u64) + Send + Sync),
    ) -> BoxFuture<'a, Result<()>>;
}

/// The registry client: configuration plus pooled HTTP clients. Cheap to
/// share behind an `Arc`; every [`resolve`](RegistryClient::resolve) starts
/// its own session.
pub struct RegistryClient {
    config: RegistryConfig,
    clients: tls::Clients,
}

impl RegistryClient {
    /// Check the configuration (mirror URLs, credentials, CA files) and build
    /// the HTTP clients.
    pub fn new(config: RegistryConfig) -> Result<RegistryClient> {
        let platform = &config.platform;
        if platform.os.is_empty() || platform.architecture.is_empty() {
            return Err(ImagesError::InvalidArgument {
                field: "registry platform".into(),
                reason: format!(
                    "os and architecture must be set (got {:?})",
                    platform::describe(platform)
                ),
            });
        }
        for host in config.hosts.keys() {
            hosts::endpoints(&config, host)?;
        }
        let clients = tls::Clients::build(config.hosts.values().map(hosts::TlsKey::of))?;
        Ok(RegistryClient { config, clients })
    }

    pub fn config(&self) -> &RegistryConfig {
        &self.config
    }

    /// Resolve `reference` to the platform-specific manifest and a blob source.
    pub async fn resolve(&self, reference: &Reference, creds: Option<&Credentials>) -> Result<ResolvedImage> {
        let span =
            tracing::debug_span!("registry_resolve", host = %reference.registry(), repo = %reference.repository());
        resolve::resolve(&self.config, &self.clients, reference, creds)
            .instrument(span)
            .await
    }
}
