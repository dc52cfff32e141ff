//! Shared harness for the integration tests (see `tests/tests/`).
//!
//! - [`fixture`]: the test images (built once, cached under the target dir)
//!   and one registry per test binary with all of them pushed, torn down at
//!   exit.
//! - [`daemon`]: a real `berthd` on a private socket with private root and
//!   state dirs, and CRI clients connected to it.
//! - [`snapshot`]: reading an unpacked snapshot back as the builder's
//!   [`FileExpect`](berth_hack::expect::FileExpect) list and diffing it.
//! - [`fake`]: a hand-rolled registry that serves whatever bytes a test wants
//!   (bad digests, oversized manifests).
//! - [`tools`]: the real crictl and critest (`hack/tools.sh`,
//!   `BERTH_TOOLS_BIN`) and a crictl runner for one berthd.
//!
//! Tests that need root call [`require_root!`] and skip with a note
//! otherwise.

pub mod cri_env;
pub mod daemon;
pub mod fake;
pub mod fixture;
pub mod netclean;
pub mod ops;
pub mod snapshot;
pub mod tools;

pub use berth_hack;
pub use k8s_cri::v1 as cri;

/// True when running as root.
pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// Returns from the calling test (passing it) with a note when not root.
#[macro_export]
macro_rules! require_root {
    () => {
        if !$crate::is_root() {
            eprintln!(
                "SKIPPED {}: needs root (run the integration tests as root, e.g. hack/test.sh)",
                module_path!()
            );
            return;
        }
    };
}
