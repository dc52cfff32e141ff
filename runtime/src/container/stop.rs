//! `stop`: CRI StopContainer. The stop signal to the init, a grace period,
//! then SIGKILL to every process in the container's cgroup until the cgroup
//! is empty; only then is the container reported stopped.
//!
//! ```text
//! running ──signal to init──▶ wait ≤ timeout for "stopped"
//!    │ still running (init ignores the signal, or children linger)
//!    ▼
//! SIGKILL every pid in the cgroup (frozen while signalled) ──▶ repeat
//! until the cgroup is empty and the monitor has recorded the exit
//! ```
//!
//! "Stopped" is decided from the state directory (the monitor writes the
//! exit record only once the cgroup is empty) *and* checked against the
//! cgroup itself, so a monitor that died early cannot make a container
//! with live processes look stopped. Works the same with a shared PID
//! namespace, where the init's death does not take the others with it.

use std::time::{Duration, Instant};

use nix::sys::signal::Signal;

use super::query::query;
use super::{cgroup, kill, ContainerError};
use crate::state::{ExitRecord, StateDir, Status};

/// How long SIGKILL may take to empty the cgroup before stop gives up.
pub const KILL_TIMEOUT: Duration = Duration::from_secs(10);

const POLL: Duration = Duration::from_millis(20);

/// Stops container `id` (see the module doc) and returns its exit record.
#[tracing::instrument(skip(dir))]
pub fn stop(dir: &StateDir, id: &str, signal: Signal, timeout: Duration) -> Result<ExitRecord, ContainerError> {
    let c = query(dir, id)?;
    let cg = match &c.state.cgroup_path {
        Some(p) => Some(cgroup::manager(p).map_err(|source| ContainerError::Cgroup {
            id: id.to_string(),
            source,
        })?),
        None => None,
    };
    let cgroup_empty = || -> Result<bool, ContainerError> {
        match &cg {
            Some(cg) => cg
                .pids()
                .map(|p| p.is_empty())
                .map_err(|source| ContainerError::Cgroup {
                    id: id.to_string(),
                    source,
                }),
            None => Ok(true),
        }
    };
    let stopped =
        || -> Result<bool, ContainerError> { Ok(query(dir, id)?.status == Status::Stopped && cgroup_empty()?) };

    if c.status != Status::Stopped {
        match kill::kill(dir, id, signal, false) {
            Ok(()) | Err(ContainerError::WrongStatus { .. }) => {}
            Err(e) => return Err(e),
        }
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline && !stopped()? {
            std::thread::sleep(POLL);
        }
    }
    let deadline = Instant::now() + KILL_TIMEOUT;
    while !stopped()? {
        if Instant::now() > deadline {
            return Err(ContainerError::Timeout {
                id: id.to_string(),
                secs: KILL_TIMEOUT.as_secs(),
                what: "every process of the container to die after SIGKILL",
            });
        }
        if let Some(cg) = &cg {
            cg.kill_all(Signal::SIGKILL).map_err(|source| ContainerError::Cgroup {
                id: id.to_string(),
                source,
            })?;
        }
        if let Some(init) = query(dir, id)?.state.init.filter(|p| p.is_alive()) {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(init.pid), Signal::SIGKILL);
        }
        std::thread::sleep(POLL);
    }
    Ok(query(dir, id)?.exit.unwrap_or_else(|| ExitRecord {
        exit_code: 255,
        signal: None,
        exited_at: crate::state::now_rfc3339(),
        oom_killed: false,
        error: Some("the monitor died without recording the exit".into()),
    }))
}
