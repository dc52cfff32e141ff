//! Lifecycle operations, one file each: [`create`], [`start`], [`query`]
//! (state), [`kill`], [`stop`], [`delete`], [`exec`], [`exec_sync`]. They work on the state
//! directory and talk to the monitor; [`crate::engine`] is their facade.

pub mod cgroup;
pub mod create;
pub mod delete;
pub mod exec;
pub mod exec_stream;
pub mod exec_sync;
pub mod forward;
pub mod kill;
pub mod query;
pub mod start;
pub mod stop;

use std::path::PathBuf;

use crate::monitor::client::ClientError;
use crate::monitor::spawn::SpawnError;
use crate::state::{StateError, Status};

/// Errors of lifecycle operations; each names the container.
#[derive(Debug, thiserror::Error)]
pub enum ContainerError {
    #[error(transparent)]
    State(#[from] StateError),
    #[error(transparent)]
    Spec(#[from] crate::spec::SpecError),
    #[error("container {id}: {source}")]
    Monitor { id: String, source: ClientError },
    #[error("container {id}: create: {source}")]
    Spawn { id: String, source: SpawnError },
    #[error("container {id} is {status}: {action} needs it {needed}")]
    WrongStatus {
        id: String,
        status: Status,
        action: &'static str,
        needed: &'static str,
    },
    #[error("container {id}: {step}: {source}")]
    Sys {
        id: String,
        step: &'static str,
        source: nix::errno::Errno,
    },
    #[error("container {id}: cgroup: {source}")]
    Cgroup { id: String, source: cgroup::CgroupError },
    #[error("container {id}: {path}: {source}")]
    Io {
        id: String,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("container {id}: timed out after {secs}s waiting for {what}")]
    Timeout { id: String, secs: u64, what: &'static str },
    #[error("container {id}: {source}")]
    ConsoleSocket {
        id: String,
        source: crate::pty::ConsoleSocketError,
    },
    #[error("container {id}: exec: {source}")]
    Exec { id: String, source: crate::init::InitError },
    #[error("container {id}: exec could not start the process: {message}")]
    ExecFailed { id: String, message: String },
    #[error("{first}; cleanup also failed: {cleanup}")]
    WithCleanup {
        first: Box<ContainerError>,
        cleanup: Box<ContainerError>,
    },
}
