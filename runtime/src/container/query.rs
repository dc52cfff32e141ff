//! `state`: derive a container's status from its state files and the
//! liveness of its monitor and init (see [`crate::state`]).

use std::collections::HashMap;
use std::path::PathBuf;

use serde::Serialize;

use super::ContainerError;
use crate::state::{ExitRecord, State, StateDir, Status, OCI_VERSION};

/// A container as callers see it.
#[derive(Debug, Clone)]
pub struct ContainerState {
    pub state: State,
    pub status: Status,
    /// The init pid while it may be alive.
    pub pid: Option<i32>,
    pub exit: Option<ExitRecord>,
}

/// runc's `state` JSON.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct OciState<'a> {
    pub oci_version: &'static str,
    pub id: &'a str,
    pub pid: i32,
    pub status: Status,
    pub bundle: &'a PathBuf,
    pub rootfs: &'a PathBuf,
    pub created: &'a str,
    pub annotations: &'a HashMap<String, String>,
    pub owner: &'static str,
}

impl ContainerState {
    pub fn oci(&self) -> OciState<'_> {
        OciState {
            oci_version: OCI_VERSION,
            id: &self.state.id,
            pid: self.pid.unwrap_or(0),
            status: self.status,
            bundle: &self.state.bundle,
            rootfs: &self.state.rootfs,
            created: &self.state.created,
            annotations: &self.state.annotations,
            owner: "",
        }
    }
}

/// Loads and classifies container `id`.
pub fn query(dir: &StateDir, id: &str) -> Result<ContainerState, ContainerError> {
    let state = dir.load(id)?;
    let exit = dir.load_exit(id)?;
    // Liveness costs a /proc/<pid>/stat read each (the kernel's most
    // expensive part of a query): only what decides the status is checked.
    let monitor_alive = || state.monitor.is_some_and(|m| m.is_alive());
    let init_alive = || state.init.is_some_and(|p| p.is_alive());
    let status = if exit.is_some() {
        Status::Stopped
    } else {
        match state.status {
            Status::Creating if monitor_alive() => Status::Creating,
            Status::Created | Status::Running if monitor_alive() || init_alive() => state.status,
            _ => Status::Stopped,
        }
    };
    let pid = match status {
        Status::Stopped => None,
        _ => state.init.map(|p| p.pid),
    };
    Ok(ContainerState {
        state,
        status,
        pid,
        exit,
    })
}
