//! `start`: ask the monitor to release the init waiting before execve.

use super::query::query;
use super::ContainerError;
use crate::monitor::client::MonitorConn;
use crate::monitor::protocol::Request;
use crate::state::{StateDir, Status};

pub fn start(dir: &StateDir, id: &str) -> Result<(), ContainerError> {
    let c = query(dir, id)?;
    if c.status != Status::Created {
        return Err(ContainerError::WrongStatus {
            id: id.to_string(),
            status: c.status,
            action: "start",
            needed: "created",
        });
    }
    let monitor_err = |source| ContainerError::Monitor {
        id: id.to_string(),
        source,
    };
    let conn = MonitorConn::connect(&dir.container_dir(id)?).map_err(monitor_err)?;
    conn.call_ok(&Request::Start).map_err(monitor_err)?;
    Ok(())
}
