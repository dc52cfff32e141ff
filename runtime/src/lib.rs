//! berth's Linux engine. Input: an OCI runtime bundle (`config.json` +
//! rootfs); output: an isolated process tree supervised by a small monitor
//! that outlives berthd. Knows nothing about CRI or gRPC.
//!
//! Modules, by job (see each module's doc):
//! - [`engine`]: the library API berthd calls (create, start, state, kill,
//!   delete, exec, attach, resize, log reopen).
//! - [`container`]: the lifecycle operations behind it, one file each.
//! - [`monitor`]: the per-container monitor — its setup half (in
//!   `berth-runtime`) makes the container, then `execve`s the
//!   `berth-monitor` binary (crate `runtime/monitor`: no_std, no libc),
//!   the supervisor (poll loop, stdio, CRI log, exit record, control
//!   socket).
//! - [`init`]: the child side of create — namespaces, rootfs
//!   (`mounts`, `devices`, `paths`, `pivot`), sysctls, process setup.
//! - [`namespaces`]: new or joined namespaces, in kernel order.
//! - [`channel`]: the typed parent/child handshake.
//! - [`spec`]: load + validate `config.json`; [`state`]: state on disk.
//! - [`syscall`]: the seam for privileged calls, with a recording fake.
//! - [`pty`], [`procfs`]: terminal and `/proc` helpers.
//! - [`cgroups`]: the `CgroupManager` trait with v1 and v2 implementations
//!   (paths passed in; unit-tested against a fake cgroupfs tree).
//! - [`seccomp`]: OCI `LinuxSeccomp` → BPF, and the RuntimeDefault profile.
//! - [`capabilities`]: apply the five capability sets.
//! - [`sandbox`]: pod sandboxes — pinned namespaces, the pod init, the pod
//!   cgroup, restart recovery.

pub mod capabilities;
pub mod cgroups;
pub mod seccomp;

pub mod channel;
pub mod init;
pub mod namespaces;
pub mod procfs;
pub mod pty;
pub mod spec;
pub mod state;
pub mod syscall;

pub mod container;
pub mod engine;
pub mod monitor;
pub mod sandbox;
