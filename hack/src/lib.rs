//! berth developer tools: the test image builder, a local registry launcher
//! (Debian's `docker-registry`, optionally behind htpasswd, TLS or token
//! auth), a token server, `skopeo` pushes, the pull benchmark, and for the CRI
//! benchmark a private containerd and the removal of what daemons leave on
//! the host.
//!
//! `critest_images` builds berth's stand-ins for the images critest pulls.
//!
//! The integration tests (`tests/`) use this crate as a library; `berth-hack`
//! is the same functions behind a command line for scripts.

pub mod compare;
pub mod containerd;
pub mod critest_images;
pub mod expect;
pub mod host_cleanup;
pub mod http;
pub mod oci;
pub mod process;
pub mod registry;
pub mod skopeo;
pub mod tarball;
pub mod testimages;
pub mod token;
