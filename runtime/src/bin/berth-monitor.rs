//! `berth-monitor`: the long-lived half of a container's monitor. The
//! monitor's setup (in `berth-runtime`) `execve`s this small binary once the
//! container waits before its execve, handing over descriptors and paths on
//! the command line (see `berth_runtime::monitor::handoff`). Not meant to be
//! started by hand.
//!
//! Kept small on purpose — one runs per container: no clap, no tracing, no
//! serde reachable from here; see `berth_runtime::monitor::supervise`.

use std::io::Write;
use std::process::ExitCode;

use berth_runtime::monitor::handoff::Handoff;
use berth_runtime::monitor::supervise;

fn main() -> ExitCode {
    // SAFETY: the only caller is the monitor setup's execve, which passed
    // these descriptors to us and to nothing else.
    match unsafe { Handoff::from_args(std::env::args_os().skip(1)) } {
        Ok(h) => {
            supervise::supervise(h);
            ExitCode::SUCCESS
        }
        Err(e) => {
            let _ = writeln!(std::io::stderr(), "berth-monitor: {e}");
            ExitCode::from(2)
        }
    }
}
