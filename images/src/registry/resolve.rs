//! Turning a reference into a verified, platform-specific image manifest.
//!
//! For each endpoint in order (mirrors, then upstream) until one succeeds:
//! 1. fetch the manifest the reference names (tag or digest);
//! 2. verify it: by digest reference, its sha256 must equal the digest; by
//!    tag, its sha256 is the manifest digest and must agree with any
//!    `Docker-Content-Digest` header;
//! 3. an image manifest is the answer; an index (or manifest list) yields the
//!    entry for our platform, fetched by digest from the same endpoint and
//!    checked against the entry's digest and size (one nested index level is
//!    followed the same way).
//!
//! Any failure at an endpoint moves on to the next; the last error carries
//! the earlier ones.

use oci_spec::image::Descriptor;
use tracing::debug;

use super::auth::Secret;
use super::hosts;
use super::manifest::{self, Kind};
use super::platform;
use super::session::{with_earlier, FetchedManifest, Session};
use super::tls::Clients;
use super::{Credentials, RegistryConfig, ResolvedImage};
use crate::digest::{Digest, Verifier};
use crate::reference::Reference;
use crate::{ImagesError, Result};

/// Levels of index below the top one that are followed.
const MAX_NESTED_INDEXES: usize = 1;

pub(crate) async fn resolve(
    config: &RegistryConfig,
    clients: &Clients,
    reference: &Reference,
    creds: Option<&Credentials>,
) -> Result<ResolvedImage> {
    let endpoints = hosts::endpoints(config, reference.registry())?;
    let request_secret = match creds {
        Some(c) => Secret::from_request(c)?,
        None => None,
    };
    let session = Session::new(
        reference.repository(),
        endpoints,
        clients,
        request_secret,
        config.max_manifest_bytes,
    )?;
    let count = session.endpoint_count();
    let mut earlier = Vec::new();
    for i in 0..count {
        match resolve_at(&session, i, reference, config).await {
            Ok(found) => {
                debug!(endpoint = %session.endpoint(i).describe(), digest = %found.manifest_digest, "manifest resolved");
                session.prefer(i);
                return Ok(ResolvedImage {
                    manifest_digest: found.manifest_digest,
                    manifest: found.manifest,
                    manifest_bytes: found.manifest_bytes,
                    platform_manifest_digest: found.platform_manifest_digest,
                    source: Box::new(session),
                });
            }
            Err(err) if i + 1 < count => {
                debug!(endpoint = %session.endpoint(i).describe(), error = %err, "endpoint failed; trying the next");
                earlier.push(format!("{}: {err}", session.endpoint(i).describe()));
            }
            Err(err) => return Err(with_earlier(err, &earlier)),
        }
    }
    Err(ImagesError::Internal(format!(
        "no endpoints for registry {}",
        reference.registry()
    )))
}

struct Found {
    manifest_digest: Digest,
    manifest: oci_spec::image::ImageManifest,
    manifest_bytes: Vec<u8>,
    platform_manifest_digest: Digest,
}

async fn resolve_at(session: &Session, i: usize, reference: &Reference, config: &RegistryConfig) -> Result<Found> {
    let name = reference.to_string();
    let top = session.fetch_manifest(i, &reference.manifest_selector(), &name).await?;
    let top_digest = verify_top(reference, &top)?;
    let what = format!("{name} ({top_digest})");
    if manifest::classify(top.content_type.as_deref(), None, &top.bytes, &what)? == Kind::Image {
        let manifest = manifest::parse_image(&top.bytes, &top_digest, config.max_config_bytes)?;
        return Ok(Found {
            manifest_digest: top_digest.clone(),
            manifest,
            manifest_bytes: top.bytes,
            platform_manifest_digest: top_digest,
        });
    }

    let mut index_digest = top_digest.clone();
    let mut index_bytes = top.bytes;
    for depth in 0..=MAX_NESTED_INDEXES {
        let index = manifest::parse_index(&index_bytes, &index_digest)?;
        let entry = platform::select(&index, &config.platform, &index_digest)?;
        debug!(index = %index_digest, entry = %entry.digest(), "platform entry selected");
        let (child_digest, child) = fetch_child(session, i, entry, &index_digest, config.max_manifest_bytes).await?;
        let hint = entry.media_type().to_string();
        match manifest::classify(
            child.content_type.as_deref(),
            Some(&hint),
            &child.bytes,
            &child_digest.to_string(),
        )? {
            Kind::Image => {
                let manifest = manifest::parse_image(&child.bytes, &child_digest, config.max_config_bytes)?;
                return Ok(Found {
                    manifest_digest: top_digest,
                    manifest,
                    manifest_bytes: child.bytes,
                    platform_manifest_digest: child_digest,
                });
            }
            Kind::Index if depth < MAX_NESTED_INDEXES => {
                index_digest = child_digest;
                index_bytes = child.bytes;
            }
            Kind::Index => break,
        }
    }
    Err(ImagesError::Malformed {
        what: "image index".into(),
        digest: top_digest.to_string(),
        reason: format!("indexes nested more than {MAX_NESTED_INDEXES} level deep"),
    })
}

/// Check the manifest a reference named and return its digest.
fn verify_top(reference: &Reference, top: &FetchedManifest) -> Result<Digest> {
    let actual = Digest::of(&top.bytes);
    if let Some(wanted) = reference.digest() {
        if &actual != wanted {
            return Err(ImagesError::DigestMismatch {
                expected: wanted.to_string(),
                actual: actual.to_string(),
            });
        }
        return Ok(actual);
    }
    if let Some(header) = top.header_digest.as_deref().map(str::trim) {
        match Digest::parse(header) {
            Ok(claimed) if claimed != actual => {
                return Err(ImagesError::DigestMismatch {
                    expected: header.to_string(),
                    actual: actual.to_string(),
                });
            }
            Ok(_) => {}
            Err(e) => {
                debug!(header, error = %e, "Docker-Content-Digest not comparable; relying on our own hash")
            }
        }
    }
    Ok(actual)
}

/// Fetch the manifest an index entry points at and verify it against the
/// entry's digest and size.
async fn fetch_child(
    session: &Session,
    i: usize,
    entry: &Descriptor,
    index_digest: &Digest,
    max_manifest_bytes: u64,
) -> Result<(Digest, FetchedManifest)> {
    let digest = manifest::descriptor_digest(entry, "manifest", index_digest)?;
    if entry.size() > max_manifest_bytes {
        return Err(ImagesError::TooLarge {
            what: "manifest".into(),
            digest: digest.to_string(),
            size: entry.size(),
            limit: max_manifest_bytes,
        });
    }
    let text = digest.to_string();
    let child = session.fetch_manifest(i, &text, &text).await?;
    let mut verifier = Verifier::new();
    verifier.update(&child.bytes);
    verifier.verify(&digest, Some(entry.size()))?;
    Ok((digest, child))
}
