//! `kill`: a signal to the init, or with `all` to every process in the
//! container's cgroup (which also covers a shared PID namespace).

use nix::sys::signal::{kill as send_signal, Signal};
use nix::unistd::Pid;

use super::query::query;
use super::{cgroup, ContainerError};
use crate::state::{StateDir, Status};

pub fn kill(dir: &StateDir, id: &str, signal: Signal, all: bool) -> Result<(), ContainerError> {
    let c = query(dir, id)?;
    if all {
        let Some(path) = &c.state.cgroup_path else {
            return Ok(());
        };
        let cg_err = |source| ContainerError::Cgroup {
            id: id.to_string(),
            source,
        };
        return cgroup::manager(path).map_err(cg_err)?.kill_all(signal).map_err(cg_err);
    }
    if c.status == Status::Stopped {
        return Err(ContainerError::WrongStatus {
            id: id.to_string(),
            status: c.status,
            action: "kill",
            needed: "created or running",
        });
    }
    let init = c.state.init.ok_or_else(|| ContainerError::WrongStatus {
        id: id.to_string(),
        status: c.status,
        action: "kill",
        needed: "an init process",
    })?;
    match send_signal(Pid::from_raw(init.pid), signal) {
        Ok(()) | Err(nix::errno::Errno::ESRCH) => Ok(()),
        Err(source) => Err(ContainerError::Sys {
            id: id.to_string(),
            step: "kill",
            source,
        }),
    }
}

/// Parses a signal as runc accepts it: `9`, `KILL` or `SIGKILL`.
pub fn parse_signal(s: &str) -> Option<Signal> {
    if let Ok(n) = s.parse::<i32>() {
        return Signal::try_from(n).ok();
    }
    let upper = s.to_ascii_uppercase();
    let name = if upper.starts_with("SIG") {
        upper
    } else {
        format!("SIG{upper}")
    };
    name.parse().ok()
}

#[cfg(test)]
mod tests {
    #[test]
    fn signals_parse_like_runc() {
        use nix::sys::signal::Signal;
        assert_eq!(super::parse_signal("9"), Some(Signal::SIGKILL));
        assert_eq!(super::parse_signal("term"), Some(Signal::SIGTERM));
        assert_eq!(super::parse_signal("SIGUSR1"), Some(Signal::SIGUSR1));
        assert_eq!(super::parse_signal("NOPE"), None);
    }
}
