//! Root tests against the host's real cgroup hierarchies (skipped with a
//! note when not root). Every test works under its own top-level cgroup
//! `/berth-test-<pid>-<n>`, removed by a guard even when the test fails.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use nix::sys::wait::WaitStatus;
use oci_spec::runtime::LinuxResources;

use super::files::*;
use super::test_support::{skip_unless_root, Child};
use super::*;

static NEXT: AtomicUsize = AtomicUsize::new(0);

const MOUNTINFO: &str = "/proc/self/mountinfo";
const UNIFIED_MOUNT: &str = "/sys/fs/cgroup/unified";

/// A unique top-level test cgroup; on drop, kills whatever is left in it
/// and removes it from every hierarchy.
struct TopGuard {
    top: PathBuf,
    managers: Vec<Box<dyn CgroupManager>>,
}

impl TopGuard {
    fn new() -> TopGuard {
        let n = NEXT.fetch_add(1, Ordering::SeqCst);
        let top = PathBuf::from(format!("/berth-test-{}-{n}", std::process::id()));
        let layout = detect(Path::new(MOUNTINFO)).unwrap();
        let mut managers = vec![new_manager(&layout, &top, None).unwrap()];
        if Path::new(UNIFIED_MOUNT).join(CGROUP_CONTROLLERS).exists() {
            managers.push(Box::new(V2Manager::new(Path::new(UNIFIED_MOUNT), &top).unwrap()));
        }
        TopGuard { top, managers }
    }

    fn path(&self, leaf: &str) -> PathBuf {
        self.top.join(leaf)
    }
}

impl Drop for TopGuard {
    fn drop(&mut self) {
        for m in &self.managers {
            let _ = m.kill_all(Signal::SIGKILL);
            let _ = m.thaw();
        }
        for m in &self.managers {
            if let Err(e) = m.delete() {
                eprintln!("cleanup of {}: {e}", self.top.display());
            }
        }
    }
}

fn resources(json: &str) -> LinuxResources {
    serde_json::from_str(json).unwrap()
}

fn read(dir: &Path, file: &str) -> String {
    std::fs::read_to_string(dir.join(file)).unwrap().trim().to_string()
}

/// Polls `f` until it holds or 5 s pass.
fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A child that burns a little CPU, touches 4 MiB (charged to its new
/// cgroup), then sleeps until killed.
fn sleeper() -> Child {
    Child::spawn(|| {
        let mem = std::hint::black_box(vec![1u8; 4 << 20]);
        let mut x = u64::from(mem[4096]);
        for i in 0..5_000_000u64 {
            x = std::hint::black_box(x.wrapping_add(i));
        }
        std::thread::sleep(Duration::from_secs(60));
        Ok(())
    })
}

#[test]
fn root_v1_lifecycle_limits_stats_update_kill_delete() {
    if skip_unless_root("root_v1_lifecycle_limits_stats_update_kill_delete") {
        return;
    }
    let guard = TopGuard::new();
    let layout = detect(Path::new(MOUNTINFO)).unwrap();
    let cg = new_manager(&layout, &guard.path("ctr"), None).unwrap();
    cg.create().unwrap();
    for p in cg.paths() {
        assert!(p.is_dir(), "{}", p.display());
    }
    let mut child = sleeper();
    cg.add_pid(child.pid()).unwrap();
    cg.apply(&resources(
        r#"{"memory": {"limit": 67108864, "swap": 67108864},
            "pids": {"limit": 16},
            "cpu": {"shares": 512, "quota": 50000, "period": 100000}}"#,
    ))
    .unwrap();
    child.release();

    let v1 = V1Manager::new(&layout, &guard.path("ctr"), None).unwrap();
    if let Some(mem) = v1.dir(CTRL_MEMORY) {
        assert_eq!(read(mem, MEMORY_LIMIT_IN_BYTES), "67108864");
    }
    if let Some(pids) = v1.dir(CTRL_PIDS) {
        assert_eq!(read(pids, PIDS_MAX), "16");
    }
    if let Some(cpu) = v1.dir(CTRL_CPU) {
        assert_eq!(read(cpu, CPU_SHARES), "512");
        assert_eq!(read(cpu, CPU_CFS_QUOTA_US), "50000");
    }

    assert_eq!(cg.pids().unwrap(), vec![child.pid()]);
    eventually("cpu and memory usage", || {
        let s = cg.stats().unwrap();
        s.cpu_usage_ns.unwrap_or(0) > 0 && s.memory_usage_bytes.unwrap_or(0) >= 4 << 20
    });
    let s = cg.stats().unwrap();
    assert_eq!(s.pids_current, Some(1));
    assert_eq!(s.pids_limit, Some(16));
    assert_eq!(s.memory_limit_bytes, Some(64 << 20));
    assert!(s.memory_usage_bytes.unwrap() > 0, "{s:?}");
    assert!(s.memory_working_set_bytes.unwrap() <= s.memory_usage_bytes.unwrap());
    assert_eq!(s.oom_kill_count, Some(0));

    // Update while running: lower both limits, then raise both; the
    // kernel refuses a wrong limit/memsw order, so these prove it.
    cg.update(&resources(r#"{"memory": {"limit": 33554432, "swap": 33554432}}"#))
        .unwrap();
    assert_eq!(cg.stats().unwrap().memory_limit_bytes, Some(32 << 20));
    cg.update(&resources(r#"{"memory": {"limit": 134217728, "swap": 268435456}}"#))
        .unwrap();
    assert_eq!(cg.stats().unwrap().memory_limit_bytes, Some(128 << 20));
    cg.update(&resources(r#"{"memory": {"limit": -1}}"#)).unwrap();
    assert_eq!(cg.stats().unwrap().memory_limit_bytes, None);

    // Freeze and thaw.
    cg.freeze().unwrap();
    if let Some(f) = v1.dir(CTRL_FREEZER) {
        assert_eq!(read(f, FREEZER_STATE), FREEZER_FROZEN);
    }
    cg.thaw().unwrap();

    cg.kill_all(Signal::SIGKILL).unwrap();
    let (status, _) = child.wait();
    assert_eq!(
        status,
        WaitStatus::Signaled(status.pid().unwrap(), Signal::SIGKILL, false)
    );
    eventually("empty cgroup", || cg.pids().unwrap().is_empty());
    cg.delete().unwrap();
    for p in cg.paths() {
        assert!(!p.exists(), "{}", p.display());
    }
    cg.delete().unwrap();
}

#[test]
fn root_v1_kill_all_with_sigterm_reaches_every_process() {
    if skip_unless_root("root_v1_kill_all_with_sigterm_reaches_every_process") {
        return;
    }
    let guard = TopGuard::new();
    let layout = detect(Path::new(MOUNTINFO)).unwrap();
    let cg = new_manager(&layout, &guard.path("ctr"), None).unwrap();
    cg.create().unwrap();
    let mut a = sleeper();
    let mut b = sleeper();
    cg.add_pid(a.pid()).unwrap();
    cg.add_pid(b.pid()).unwrap();
    a.release();
    b.release();
    assert_eq!(cg.pids().unwrap().len(), 2);
    cg.kill_all(Signal::SIGTERM).unwrap();
    for c in [a, b] {
        let (status, _) = c.wait();
        assert!(
            matches!(status, WaitStatus::Signaled(_, Signal::SIGTERM, _)),
            "{status:?}"
        );
    }
    eventually("empty cgroup", || cg.pids().unwrap().is_empty());
    cg.delete().unwrap();
}

#[test]
fn root_v1_pids_limit_blocks_fork() {
    if skip_unless_root("root_v1_pids_limit_blocks_fork") {
        return;
    }
    let guard = TopGuard::new();
    let layout = detect(Path::new(MOUNTINFO)).unwrap();
    let cg = new_manager(&layout, &guard.path("ctr"), None).unwrap();
    cg.create().unwrap();
    let mut child = Child::spawn(|| {
        // SAFETY: the grandchild only calls _exit.
        match unsafe { nix::unistd::fork() } {
            Err(nix::Error::EAGAIN) => Ok(()),
            // SAFETY: _exit in the forked grandchild, nothing else.
            Ok(nix::unistd::ForkResult::Child) => unsafe { libc::_exit(0) },
            Ok(nix::unistd::ForkResult::Parent { .. }) => Err("fork succeeded at pids.max=1".into()),
            Err(e) => Err(format!("fork: {e}")),
        }
    });
    cg.add_pid(child.pid()).unwrap();
    cg.apply(&resources(r#"{"pids": {"limit": 1}}"#)).unwrap();
    child.release();
    let (status, msg) = child.wait();
    assert!(matches!(status, WaitStatus::Exited(_, 0)), "{status:?} {msg}");
    cg.delete().unwrap();
}

#[test]
fn root_v1_memory_limit_ends_in_oom_kill() {
    if skip_unless_root("root_v1_memory_limit_ends_in_oom_kill") {
        return;
    }
    let guard = TopGuard::new();
    let layout = detect(Path::new(MOUNTINFO)).unwrap();
    let cg = new_manager(&layout, &guard.path("ctr"), None).unwrap();
    cg.create().unwrap();
    let mut child = Child::spawn(|| {
        // Touch 256 MiB, page by page, far above the 16 MiB limit.
        let mut chunks = Vec::new();
        for _ in 0..256 {
            let mut v = vec![0u8; 1 << 20];
            for i in (0..v.len()).step_by(4096) {
                v[i] = 1;
            }
            chunks.push(std::hint::black_box(v));
        }
        Err("allocated 256 MiB under a 16 MiB limit".into())
    });
    cg.add_pid(child.pid()).unwrap();
    cg.apply(&resources(r#"{"memory": {"limit": 16777216, "swap": 16777216}}"#))
        .unwrap();
    child.release();
    let (status, msg) = child.wait();
    assert!(
        matches!(status, WaitStatus::Signaled(_, Signal::SIGKILL, _)),
        "{status:?} {msg}"
    );
    let s = cg.stats().unwrap();
    assert!(s.oom_kill_count.unwrap() > 0, "{s:?}");
    cg.delete().unwrap();
}

#[test]
fn root_v2_unified_mount_hugetlb_freeze_kill() {
    if skip_unless_root("root_v2_unified_mount_hugetlb_freeze_kill") {
        return;
    }
    let mount = Path::new(UNIFIED_MOUNT);
    if !mount.join(CGROUP_CONTROLLERS).exists() {
        eprintln!("skipping root_v2_unified_mount_hugetlb_freeze_kill: no cgroup2 at {UNIFIED_MOUNT}");
        return;
    }
    let guard = TopGuard::new();
    let cg = V2Manager::new(mount, &guard.path("ctr")).unwrap();
    cg.create().unwrap();
    let controllers = read(mount, CGROUP_CONTROLLERS);
    let mut child = sleeper();
    cg.add_pid(child.pid()).unwrap();
    child.release();
    assert_eq!(cg.pids().unwrap(), vec![child.pid()]);
    assert!(read(cg.dir(), CGROUP_PROCS).contains(&child.pid().to_string()));

    if controllers.split_whitespace().any(|c| c == CTRL_HUGETLB)
        && Path::new("/sys/kernel/mm/hugepages/hugepages-2048kB").exists()
    {
        cg.apply(&resources(
            r#"{"hugepageLimits": [{"pageSize": "2MB", "limit": 4194304}]}"#,
        ))
        .unwrap();
        assert_eq!(read(cg.dir(), "hugetlb.2MB.max"), "4194304");
        cg.apply(&resources(r#"{"unified": {"hugetlb.2MB.max": "max"}}"#))
            .unwrap();
        assert_eq!(read(cg.dir(), "hugetlb.2MB.max"), "max");
    }
    // Refused unified keys never reach the filesystem.
    assert!(cg
        .apply(&resources(r#"{"unified": {"../cgroup.procs": "1"}}"#))
        .is_err());

    // cpu.stat is a core file: usage is readable without the cpu controller.
    eventually("cpu usage", || cg.stats().unwrap().cpu_usage_ns.unwrap_or(0) > 0);

    cg.freeze().unwrap();
    assert!(read(cg.dir(), CGROUP_EVENTS).contains("frozen 1"));
    cg.thaw().unwrap();
    assert!(read(cg.dir(), CGROUP_EVENTS).contains("frozen 0"));

    // SIGTERM goes through freeze/signal/thaw, SIGKILL through cgroup.kill.
    let mut second = sleeper();
    cg.add_pid(second.pid()).unwrap();
    second.release();
    cg.kill_all(Signal::SIGTERM).unwrap();
    for c in [child, second] {
        let (status, _) = c.wait();
        assert!(
            matches!(status, WaitStatus::Signaled(_, Signal::SIGTERM, _)),
            "{status:?}"
        );
    }
    let mut third = sleeper();
    cg.add_pid(third.pid()).unwrap();
    third.release();
    cg.kill_all(Signal::SIGKILL).unwrap();
    let (status, _) = third.wait();
    assert!(
        matches!(status, WaitStatus::Signaled(_, Signal::SIGKILL, _)),
        "{status:?}"
    );
    eventually("empty cgroup", || cg.pids().unwrap().is_empty());
    cg.delete().unwrap();
    assert!(!cg.dir().exists());
}
