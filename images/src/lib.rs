//! berth image store.
//!
//! `images/` pulls images from OCI registries and hands the engine a read-only
//! stack of unpacked layer directories plus the image config. It knows nothing
//! about gRPC or CRI.
//!
//! Modules, by job:
//! - [`reference`](mod@reference): parse and normalise image references (`busybox` →
//!   `docker.io/library/busybox:latest`).
//! - [`digest`]: `sha256:<hex>` digests and a hashing writer that verifies them.
//! - [`registry`]: the OCI distribution client (auth, mirrors, manifests,
//!   platform selection, verified blob fetches). Implements [`registry::BlobSource`].
//! - [`content`]: content-addressed blob store (ingest to temp, verify, rename).
//! - [`compression`]: layer media types and their decoders.
//! - [`unpack`]: applies a layer tarball into a snapshot directory, refusing
//!   any entry that would land outside it; whiteouts become overlayfs form.
//! - [`chain`]: chain IDs, the snapshot keys.
//! - [`snapshot`]: unpacked layers by chain ID, shared between images.
//! - [`metadata`]: the transactional metadata store (images, names).
//! - [`gc`]: reference counting by derivation, and the leases that protect
//!   running pulls from it.
//! - [`pull`]: the pull pipeline, behind a [`pull::Resolver`].
//! - [`progress`]: per-layer pull progress, for `berthctl pull`.
//! - [`service`]: [`service::ImageService`], the one entry point the CRI layer
//!   uses: pull, list, status, remove, usage, layer paths.
//!
//! # On disk
//!
//! ```text
//! <root>/                          e.g. /var/lib/berth
//!   content/                       0700
//!     blobs/sha256/<hex>           verified blobs: image configs and
//!                                  platform manifests (kept while an image
//!                                  uses them); layer blobs only while they
//!                                  are being unpacked
//!     ingest/<hex>.<pid>.<n>.partial   downloads in progress
//!   snapshots/                     0700
//!     <chain-id hex>/              one layer's diff, overlayfs form
//!     .tmp-<hex>-<pid>-<n>/        an unpack in progress
//!     .trash-<hex>-<pid>-<n>/      a snapshot being deleted
//!   metadata.redb                  image records and names (redb)
//! ```
//!
//! Compressed layer blobs are **not kept** after their layer is unpacked:
//! keeping them (as containerd does) doubles the disk an image costs, and
//! berth never serves or re-exports layers. The price: re-creating a snapshot
//! that was removed means downloading the layer again. Configs and manifests
//! are small and are kept.
//!
//! # Pull an image
//!
//! 1. [`ImageService::pull`] normalises the reference; a pull of the same
//!    normalised reference already running is joined, not repeated.
//! 2. The [`pull::Resolver`] ([`registry::RegistryClient`]) returns the
//!    manifest digest (what `RepoDigests` carry), the platform manifest and a
//!    [`registry::BlobSource`].
//! 3. Leases are taken on everything the image needs (see [`gc`]), so a
//!    concurrent `remove` cannot delete it from under the pull.
//! 4. The config blob is read from `content/` or fetched into it (size
//!    limited, verified), parsed, and its `rootfs.diff_ids` checked against
//!    the manifest layers; [`chain::chain_ids`] gives the snapshot keys.
//! 5. Every layer whose snapshot is missing is imported — at most
//!    `max_concurrent_downloads` at a time across all pulls, once per chain
//!    ID however many pulls want it: blob into `content/ingest/`, verified,
//!    renamed into `blobs/`; unpacked by [`unpack::apply_layer`] into a
//!    `.tmp-*` snapshot, diff ID verified, synced, renamed to
//!    `snapshots/<chain-id>`; the layer blob is deleted.
//! 6. One metadata transaction records the image (ID = config digest) and
//!    points its names at it, taking moved tags off older images.
//!
//! # Run a container
//!
//! 1. The CRI layer asks [`ImageService::status`] for the config (env,
//!    user, entrypoint) and [`ImageService::layer_paths`] for the layers,
//!    top layer first.
//! 2. The engine mounts overlayfs with `lowerdir=` those paths joined by `:`
//!    (they are read-only by convention: nothing in berth writes into a
//!    committed snapshot), an `upperdir`/`workdir` of the container's own
//!    outside this store, and runs the container on the merged view.
//!    Whiteout devices and opaque directories in the layers are interpreted
//!    by overlayfs itself.
//! 3. If an image is removed while its container runs, the CRI layer keeps
//!    the layers alive by reporting them through
//!    [`ImageService::set_layers_in_use`].

mod atfs;
pub mod chain;
pub mod compression;
pub mod content;
pub mod digest;
pub mod error;
pub mod gc;
pub mod metadata;
pub mod progress;
pub mod pull;
mod query;
pub mod reference;
pub mod registry;
pub mod service;
mod singleflight;
pub mod snapshot;
mod tracker;
pub mod unpack;
mod usage;

#[cfg(test)]
mod testutil;

pub use error::{ImagesError, Result};
pub use service::{FsUsage, Image, ImageService, StoreOptions};
