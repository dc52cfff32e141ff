//! A monitor killed with SIGKILL (the OOM killer, an operator's mistake):
//! the container keeps running, reads as running, and stop + delete still
//! end every process, record why the exit is unknown, and remove the
//! cgroup.
//!
//! Its own test binary: the test process becomes a child subreaper so the
//! orphaned container init is reparented to it and reaped here, not left
//! as a zombie under a PID 1 that may not reap.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use berth_runtime::engine::Engine;
use berth_runtime::state::Status;
use common::{is_root, Env};
use nix::sys::signal::{kill, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag};
use nix::unistd::Pid;

fn reap_orphans() {
    while let Ok(status) = waitpid(None::<Pid>, Some(WaitPidFlag::WNOHANG)) {
        if status == nix::sys::wait::WaitStatus::StillAlive {
            break;
        }
    }
}

#[test]
fn a_killed_monitor_leaves_a_container_that_stop_and_delete_still_end() {
    if !is_root() {
        return;
    }
    nix::sys::prctl::set_child_subreaper(true).unwrap();
    let env = Env::new();
    let b = env.bundle("orphan", "sleep 300 & sleep 300");
    b.write();
    let (ok, err) = env.rt_detached(&["run", "-d", "--bundle", b.path(), "orphan"]);
    assert!(ok, "{err}");
    let engine = Engine::new(&env.root, common::BIN);
    let before = engine.state("orphan").unwrap();
    assert_eq!(before.status, Status::Running);
    let monitor = before.state.monitor.unwrap().pid;
    let init = before.pid.unwrap();
    let cgroup = before.state.cgroup_path.clone().unwrap();

    kill(Pid::from_raw(monitor), Signal::SIGKILL).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while Path::new(&format!("/proc/{monitor}/stat")).exists()
        && std::fs::read_to_string(format!("/proc/{monitor}/stat")).is_ok_and(|s| !s.contains(") Z "))
    {
        assert!(Instant::now() < deadline, "monitor did not die");
        std::thread::sleep(Duration::from_millis(10));
    }
    reap_orphans();
    // The container's processes live on and it still reads as running.
    assert!(Path::new(&format!("/proc/{init}")).exists());
    assert_eq!(engine.state("orphan").unwrap().status, Status::Running);

    let exit = engine
        .stop("orphan", Signal::SIGTERM, Duration::from_millis(500))
        .unwrap();
    assert_eq!(exit.exit_code, 255);
    assert!(
        exit.error.as_deref().unwrap_or_default().contains("monitor died"),
        "{exit:?}"
    );
    reap_orphans();
    let after = engine.state("orphan").unwrap();
    assert_eq!(after.status, Status::Stopped);
    engine.delete("orphan", false).unwrap();
    reap_orphans();
    assert!(
        !Path::new(&format!("/proc/{init}")).exists() || {
            std::fs::read_to_string(format!("/proc/{init}/stat")).is_ok_and(|s| s.contains(") Z "))
        }
    );
    // Every hierarchy's copy of the container cgroup is gone.
    let leftovers: Vec<_> = std::fs::read_dir("/sys/fs/cgroup")
        .unwrap()
        .flatten()
        .map(|h| h.path().join(cgroup.strip_prefix("/").unwrap_or(&cgroup)))
        .filter(|p| p.exists())
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}
