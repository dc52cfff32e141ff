//! `delete`: remove a stopped container (or, forced, kill it first): wait
//! for its monitor to finish, remove its cgroup, unmount an engine-mounted
//! overlay rootfs, remove its state.

use std::time::{Duration, Instant};

use nix::sys::signal::Signal;

use super::query::query;
use super::{cgroup, ContainerError};
use crate::state::{StateDir, StateError, Status};

const MONITOR_EXIT_TIMEOUT: Duration = Duration::from_secs(10);

#[tracing::instrument(skip(dir))]
pub fn delete(dir: &StateDir, id: &str, force: bool) -> Result<(), ContainerError> {
    let c = match query(dir, id) {
        Ok(c) => c,
        Err(ContainerError::State(StateError::NotFound(_))) if force => return Ok(()),
        Err(e) => return Err(e),
    };
    let cg = match &c.state.cgroup_path {
        Some(p) => Some(cgroup::manager(p).map_err(|source| ContainerError::Cgroup {
            id: id.to_string(),
            source,
        })?),
        None => None,
    };
    match c.status {
        Status::Stopped => {}
        // A created container never ran user code: deleting it is safe.
        Status::Created | Status::Creating => kill_everything(id, &c, cg.as_deref())?,
        Status::Running if force => kill_everything(id, &c, cg.as_deref())?,
        Status::Running => {
            return Err(ContainerError::WrongStatus {
                id: id.to_string(),
                status: c.status,
                action: "delete",
                needed: "stopped (or use --force)",
            })
        }
    }
    // Let the monitor record the exit and leave.
    if let Some(m) = c.state.monitor {
        let deadline = Instant::now() + MONITOR_EXIT_TIMEOUT;
        while m.is_alive() {
            if Instant::now() > deadline {
                return Err(ContainerError::Timeout {
                    id: id.to_string(),
                    secs: MONITOR_EXIT_TIMEOUT.as_secs(),
                    what: "the monitor to exit",
                });
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    if let Some(cg) = &cg {
        cg.delete().map_err(|source| ContainerError::Cgroup {
            id: id.to_string(),
            source,
        })?;
    }
    if let Some(o) = &c.state.overlay {
        match nix::mount::umount2(&o.target, nix::mount::MntFlags::MNT_DETACH) {
            Ok(()) | Err(nix::errno::Errno::EINVAL) | Err(nix::errno::Errno::ENOENT) => {}
            Err(source) => {
                return Err(ContainerError::Sys {
                    id: id.to_string(),
                    step: "unmount overlay rootfs",
                    source,
                })
            }
        }
    }
    dir.remove(id)?;
    Ok(())
}

fn kill_everything(
    id: &str,
    c: &super::query::ContainerState,
    cg: Option<&dyn cgroup::CgroupManager>,
) -> Result<(), ContainerError> {
    if let Some(init) = c.state.init.filter(|p| p.is_alive()) {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(init.pid), Signal::SIGKILL);
    }
    if let Some(cg) = cg {
        cg.kill_all(Signal::SIGKILL).map_err(|source| ContainerError::Cgroup {
            id: id.to_string(),
            source,
        })?;
    }
    Ok(())
}
