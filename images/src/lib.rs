//! berth image store.
//!
//! `images/` pulls images from OCI registries and hands the engine a read-only
//! stack of unpacked layer directories plus the image config. It knows nothing
//! about gRPC or CRI.
//!
//! Modules, by job:
//! - [`reference`]: parse and normalise image references (`busybox` →
//!   `docker.io/library/busybox:latest`).
//! - [`digest`]: `sha256:<hex>` digests and a hashing writer that verifies them.
//! - [`registry`]: the OCI distribution client (auth, mirrors, manifests,
//!   platform selection, verified blob fetches). Implements [`registry::BlobSource`].
//! - [`content`]: content-addressed blob store (ingest to temp, verify, rename).
//! - [`unpack`]: applies a layer tarball into a snapshot directory, refusing
//!   any entry that would land outside it; whiteouts become overlayfs form.
//! - [`snapshot`]: unpacked layers by chain ID, shared between images.
//! - [`metadata`]: the transactional metadata store (images, names, layers).
//! - [`progress`]: per-layer pull progress, for `berthctl pull`.
//! - [`service`]: [`service::ImageService`], the one entry point the CRI layer
//!   uses: pull, list, status, remove, usage, layer paths.

pub mod content;
pub mod digest;
pub mod error;
pub mod metadata;
pub mod progress;
pub mod reference;
pub mod registry;
pub mod service;
pub mod snapshot;
pub mod unpack;

pub use error::{ImagesError, Result};
pub use service::{Image, ImageService, StoreOptions};
