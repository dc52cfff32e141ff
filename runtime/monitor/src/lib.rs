//! berth's per-container monitor, the long-lived half of the engine's
//! monitor (see `berth_runtime::monitor`): once the engine's setup has made
//! the container, it `execve`s the `berth-monitor` binary, which takes over
//! the container's init as its parent and subreaper, holds its stdio,
//! writes the CRI log, serves the control socket and records the exit.
//!
//! One runs per container, so it is built to be small: `no_std`, no
//! allocator, no libc — system calls go through [`sys`] — and in release
//! builds a static executable with its own entry point. Measured PSS is in
//! the engine benchmark (`hack/src/bin/bench-engine.rs`).
//!
//! - [`args`]: the command line the setup writes;
//! - [`supervise`]: the poll loop;
//! - [`log`]: the CRI log writer; [`record`]: `started` and `exit.json`;
//! - [`protocol`]: the control socket; [`cgroup`]: emptiness and OOM;
//! - [`sys`], [`buf`], [`time`]: system calls, fixed buffers, timestamps.

#![no_std]

pub mod args;
pub mod buf;
pub mod cgroup;
pub mod log;
pub mod protocol;
pub mod record;
pub mod supervise;
pub mod sys;
pub mod time;
