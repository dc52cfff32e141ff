//! berth's Linux engine. Input: an OCI runtime bundle (`config.json` +
//! rootfs); output: an isolated process tree supervised by a small monitor
//! that outlives berthd. Knows nothing about CRI or gRPC.
//!
//! Modules, by job (see each module's doc):
//! - [`cgroups`]: the `CgroupManager` trait with v1 and v2 implementations
//!   (paths passed in; unit-tested against a fake cgroupfs tree).
//! - [`seccomp`]: OCI `LinuxSeccomp` → BPF, and the RuntimeDefault profile.
//! - [`capabilities`]: apply the five capability sets.
//! - [`logs`]: the CRI log-file writer (`RFC3339Nano stream F|P content`).

pub mod capabilities;
pub mod cgroups;
pub mod logs;
pub mod seccomp;
