//! The cgroup v2 (unified hierarchy) manager. Also used by [`super::V1Manager`]
//! for the v2 side of a hybrid host.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use nix::unistd::Pid;
use oci_spec::runtime::{LinuxCpu, LinuxHugepageLimit, LinuxMemory, LinuxResources};

use super::files::*;
use super::layout::{dir_in_mount, resolve, ProcCgroups, V2Mount};
use super::resources::{
    convert_memory_swap_to_v2, convert_shares_to_weight, cpu_max, pids_max, v2_limit, validate_page_size,
    validate_unified_key,
};
use super::{fsutil, CgroupError, CgroupManager, CgroupStats, Result};

/// How long freeze waits for `cgroup.events` to say `frozen 1`.
const FREEZE_TIMEOUT: Duration = Duration::from_secs(2);

/// One cgroup in the unified hierarchy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct V2Manager {
    mountpoint: PathBuf,
    dir: PathBuf,
}

impl V2Manager {
    /// The cgroup `cgroup` (absolute within the hierarchy, e.g.
    /// `/berth/pod/ctr`) of the cgroup2 hierarchy mounted at `mountpoint`.
    pub fn new(mountpoint: &Path, cgroup: &Path) -> Result<Self> {
        super::validate_cgroups_path(cgroup)?;
        if !cgroup.is_absolute() {
            return Err(CgroupError::InvalidPath {
                path: cgroup.to_path_buf(),
                reason: "V2Manager::new needs an absolute cgroup path".into(),
            });
        }
        Ok(Self {
            mountpoint: mountpoint.to_path_buf(),
            dir: super::join_cgroup(mountpoint, cgroup),
        })
    }

    /// The manager for an OCI `cgroupsPath` on `mount`; a relative path is
    /// resolved against `own`'s v2 cgroup.
    pub fn for_mount(mount: &V2Mount, cgroups_path: &Path, own: Option<&ProcCgroups>) -> Result<Self> {
        super::validate_cgroups_path(cgroups_path)?;
        let cgroup = resolve(cgroups_path, own.and_then(|o| o.v2.as_deref()))?;
        Ok(Self {
            mountpoint: mount.mountpoint.clone(),
            dir: dir_in_mount(&mount.mountpoint, &mount.root, &cgroup),
        })
    }

    /// The cgroup's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Enables every available controller in `cgroup.subtree_control` of
    /// each ancestor (mount root down to our parent), so the leaf gets the
    /// controller files. Failures are logged, not fatal: an ancestor with
    /// processes of its own cannot enable domain controllers, and the
    /// setting that needs one then fails with its file named.
    fn enable_controllers(&self) {
        let Ok(rel) = self.dir.strip_prefix(&self.mountpoint) else {
            return;
        };
        let mut cur = self.mountpoint.clone();
        let mut levels = vec![cur.clone()];
        let comps: Vec<_> = rel.components().collect();
        for c in comps.iter().take(comps.len().saturating_sub(1)) {
            cur.push(c);
            levels.push(cur.clone());
        }
        for level in levels {
            let Ok(Some(available)) = fsutil::read_opt(&level, CGROUP_CONTROLLERS) else {
                continue;
            };
            let enabled = fsutil::read_opt(&level, CGROUP_SUBTREE_CONTROL)
                .ok()
                .flatten()
                .unwrap_or_default();
            for ctrl in available.split_whitespace() {
                if enabled.split_whitespace().any(|e| e == ctrl) {
                    continue;
                }
                if let Err(e) = fsutil::write(&level, CGROUP_SUBTREE_CONTROL, &format!("+{ctrl}")) {
                    tracing::debug!(error = %e, "cannot enable cgroup controller");
                }
            }
        }
    }

    fn apply_cpu(&self, cpu: &LinuxCpu) -> Result<()> {
        if let Some(shares) = cpu.shares() {
            let weight = convert_shares_to_weight(shares);
            if weight != 0 {
                fsutil::write(&self.dir, CPU_WEIGHT, &weight.to_string())?;
            }
        }
        if let Some(max) = cpu_max(cpu.quota(), cpu.period()) {
            fsutil::write(&self.dir, CPU_MAX, &max)?;
        }
        if let Some(burst) = cpu.burst() {
            fsutil::write(&self.dir, CPU_MAX_BURST, &burst.to_string())?;
        }
        if let Some(idle) = cpu.idle() {
            fsutil::write(&self.dir, CPU_IDLE, &idle.to_string())?;
        }
        if cpu.realtime_runtime().unwrap_or(0) != 0 || cpu.realtime_period().unwrap_or(0) != 0 {
            return Err(CgroupError::Unsupported {
                what: "cpu realtime runtime/period".into(),
                version: "v2",
            });
        }
        if let Some(cpus) = cpu.cpus().as_deref().filter(|s| !s.is_empty()) {
            fsutil::write(&self.dir, CPUSET_CPUS, cpus)?;
        }
        if let Some(mems) = cpu.mems().as_deref().filter(|s| !s.is_empty()) {
            fsutil::write(&self.dir, CPUSET_MEMS, mems)?;
        }
        Ok(())
    }

    fn apply_memory(&self, mem: &LinuxMemory) -> Result<()> {
        // Swap first, then the limit (as runc): the two v2 limits are
        // independent, so no order can make either write fail.
        if let Some(swap) = convert_memory_swap_to_v2(mem.swap(), mem.limit())? {
            if fsutil::exists(&self.dir, MEMORY_SWAP_MAX) {
                fsutil::write(&self.dir, MEMORY_SWAP_MAX, &v2_limit(swap))?;
            } else if swap > 0 {
                return Err(CgroupError::Unsupported {
                    what: format!("swap limit (no {MEMORY_SWAP_MAX})"),
                    version: "v2",
                });
            }
        }
        if let Some(limit) = mem.limit().filter(|&l| l != 0) {
            fsutil::write(&self.dir, MEMORY_MAX, &v2_limit(limit))?;
        }
        if let Some(low) = mem.reservation().filter(|&l| l != 0) {
            fsutil::write(&self.dir, MEMORY_LOW, &v2_limit(low))?;
        }
        if mem.swappiness().is_some() || mem.disable_oom_killer() == Some(true) {
            tracing::debug!("memory swappiness / disableOOMKiller have no cgroup v2 file; ignored");
        }
        Ok(())
    }

    /// Writes `hugetlb.<size>.max` for each limit.
    pub(crate) fn apply_hugepages(&self, limits: &[LinuxHugepageLimit]) -> Result<()> {
        for l in limits {
            validate_page_size(l.page_size())?;
            fsutil::write(&self.dir, &hugetlb_max_v2(l.page_size()), &v2_limit(l.limit()))?;
        }
        Ok(())
    }

    /// Writes `unified` keys verbatim, refusing keys that would leave the
    /// cgroup directory and keys with no file (controller not enabled).
    pub(crate) fn apply_unified(&self, unified: &HashMap<String, String>) -> Result<()> {
        let mut keys: Vec<&String> = unified.keys().collect();
        keys.sort();
        for key in &keys {
            validate_unified_key(key)?;
        }
        for key in keys {
            if !fsutil::exists(&self.dir, key) {
                return Err(CgroupError::UnifiedKey {
                    key: key.clone(),
                    reason: format!("no such file in {} (controller not enabled?)", self.dir.display()),
                });
            }
            fsutil::write(&self.dir, key, &unified[key])?;
        }
        Ok(())
    }

    fn wait_frozen(&self, want: bool) -> Result<()> {
        let deadline = Instant::now() + FREEZE_TIMEOUT;
        loop {
            let frozen = fsutil::read_keyed_opt(&self.dir, CGROUP_EVENTS, "frozen")?;
            match frozen {
                // No cgroup.events (or no frozen key): nothing to wait on.
                None => return Ok(()),
                Some(v) if (v == 1) == want => return Ok(()),
                Some(_) if Instant::now() >= deadline => {
                    return Err(CgroupError::FreezeTimeout {
                        path: self.dir.clone(),
                        state: if want { "frozen" } else { "thawed" },
                    })
                }
                Some(_) => std::thread::sleep(Duration::from_millis(2)),
            }
        }
    }
}

/// Signals every pid; pids that are gone already are fine.
pub(crate) fn signal_all(pids: &[Pid], signal: Signal) -> Result<()> {
    for &pid in pids {
        match nix::sys::signal::kill(pid, signal) {
            Ok(()) | Err(nix::Error::ESRCH) => {}
            Err(source) => {
                return Err(CgroupError::Signal {
                    pid: pid.as_raw(),
                    signal,
                    source,
                })
            }
        }
    }
    Ok(())
}

impl CgroupManager for V2Manager {
    fn paths(&self) -> Vec<PathBuf> {
        vec![self.dir.clone()]
    }

    fn create(&self) -> Result<()> {
        fsutil::mkdir_p(&self.dir)?;
        self.enable_controllers();
        Ok(())
    }

    fn add_pid(&self, pid: Pid) -> Result<()> {
        fsutil::write(&self.dir, CGROUP_PROCS, &pid.to_string())
    }

    fn apply(&self, r: &LinuxResources) -> Result<()> {
        if let Some(cpu) = r.cpu() {
            self.apply_cpu(cpu)?;
        }
        if let Some(mem) = r.memory() {
            self.apply_memory(mem)?;
        }
        if let Some(pids) = r.pids() {
            fsutil::write(&self.dir, PIDS_MAX, &pids_max(pids.limit()))?;
        }
        if let Some(limits) = r.hugepage_limits() {
            self.apply_hugepages(limits)?;
        }
        if r.devices().as_ref().is_some_and(|d| !d.is_empty()) {
            tracing::warn!(
                cgroup = %self.dir.display(),
                "device cgroup rules are not enforced on cgroup v2 (no BPF device filter)"
            );
        }
        if r.block_io().is_some() || r.network().is_some() || r.rdma().is_some() {
            tracing::debug!("blockIO/network/rdma resources are not applied");
        }
        if let Some(unified) = r.unified() {
            self.apply_unified(unified)?;
        }
        Ok(())
    }

    fn stats(&self) -> Result<CgroupStats> {
        let usage = fsutil::read_u64_opt(&self.dir, MEMORY_CURRENT)?;
        let inactive = fsutil::read_keyed_opt(&self.dir, MEMORY_STAT, MEMORY_STAT_INACTIVE_FILE)?.unwrap_or(0);
        Ok(CgroupStats {
            cpu_usage_ns: fsutil::read_keyed_opt(&self.dir, CPU_STAT, CPU_STAT_USAGE_USEC)?
                .map(|us| us.saturating_mul(1000)),
            memory_usage_bytes: usage,
            memory_working_set_bytes: usage.map(|u| u.saturating_sub(inactive)),
            memory_limit_bytes: fsutil::read_limit_opt(&self.dir, MEMORY_MAX)?,
            oom_kill_count: fsutil::read_keyed_opt(&self.dir, MEMORY_EVENTS, OOM_KILL_KEY)?,
            pids_current: fsutil::read_u64_opt(&self.dir, PIDS_CURRENT)?,
            pids_limit: fsutil::read_limit_opt(&self.dir, PIDS_MAX)?,
        })
    }

    fn pids(&self) -> Result<Vec<Pid>> {
        fsutil::procs_recursive(&self.dir)
    }

    fn freeze(&self) -> Result<()> {
        fsutil::write(&self.dir, CGROUP_FREEZE, "1")?;
        self.wait_frozen(true)
    }

    fn thaw(&self) -> Result<()> {
        fsutil::write(&self.dir, CGROUP_FREEZE, "0")?;
        self.wait_frozen(false)
    }

    fn kill_all(&self, signal: Signal) -> Result<()> {
        if !self.dir.exists() {
            return Ok(());
        }
        if signal == Signal::SIGKILL && fsutil::exists(&self.dir, CGROUP_KILL) {
            return fsutil::write(&self.dir, CGROUP_KILL, "1");
        }
        let frozen = self.freeze();
        let sent = self.pids().and_then(|pids| signal_all(&pids, signal));
        let thawed = self.thaw();
        match (frozen.and(sent), thawed) {
            (Ok(()), Ok(())) => Ok(()),
            (Err(e), Ok(())) | (Ok(()), Err(e)) => Err(e),
            (Err(a), Err(b)) => Err(fsutil::chain(Some(a), b)),
        }
    }

    fn delete(&self) -> Result<()> {
        fsutil::remove_tree(&self.dir)
    }
}

#[cfg(test)]
mod tests {
    use oci_spec::runtime::LinuxResources;

    use super::*;
    use crate::cgroups::fake::FakeTree;

    fn resources(json: &str) -> LinuxResources {
        serde_json::from_str(json).unwrap()
    }

    fn manager(tree: &FakeTree) -> V2Manager {
        let m = V2Manager::new(&tree.v2_root(), Path::new("/berth/pod/ctr")).unwrap();
        m.create().unwrap();
        tree.populate_v2(m.dir());
        m
    }

    #[test]
    fn create_enables_controllers_in_ancestors_only() {
        let tree = FakeTree::new();
        let m = manager(&tree);
        assert!(m.dir().is_dir());
        assert_eq!(
            tree.read(&tree.v2_root().join(CGROUP_SUBTREE_CONTROL)),
            "+memory" // fake files keep only the last write
        );
        assert_eq!(m.paths(), vec![tree.v2_root().join("berth/pod/ctr")]);
    }

    #[test]
    fn apply_writes_every_file() {
        let tree = FakeTree::new();
        let m = manager(&tree);
        m.apply(&resources(
            r#"{
              "cpu": {"shares": 1024, "quota": 50000, "period": 100000, "cpus": "0-1", "mems": "0", "burst": 1000, "idle": 0},
              "memory": {"limit": 16777216, "swap": 33554432, "reservation": 8388608},
              "pids": {"limit": 32},
              "hugepageLimits": [{"pageSize": "2MB", "limit": 4194304}],
              "unified": {"memory.high": "12345678", "cpu.weight.nice": "5"}
            }"#,
        ))
        .unwrap();
        let d = m.dir();
        let f = |n: &str| tree.read(&d.join(n));
        assert_eq!(f(CPU_WEIGHT), "39");
        assert_eq!(f(CPU_MAX), "50000 100000");
        assert_eq!(f(CPU_MAX_BURST), "1000");
        assert_eq!(f(CPU_IDLE), "0");
        assert_eq!(f(CPUSET_CPUS), "0-1");
        assert_eq!(f(CPUSET_MEMS), "0");
        assert_eq!(f(MEMORY_MAX), "16777216");
        assert_eq!(f(MEMORY_SWAP_MAX), "16777216");
        assert_eq!(f(MEMORY_LOW), "8388608");
        assert_eq!(f(PIDS_MAX), "32");
        assert_eq!(f("hugetlb.2MB.max"), "4194304");
        assert_eq!(f("memory.high"), "12345678");
        assert_eq!(f("cpu.weight.nice"), "5");
    }

    #[test]
    fn unlimited_values_and_unset_swap() {
        let tree = FakeTree::new();
        let m = manager(&tree);
        m.apply(&resources(
            r#"{"memory": {"limit": -1}, "pids": {"limit": 0}, "cpu": {"quota": -1}}"#,
        ))
        .unwrap();
        let f = |n: &str| tree.read(&m.dir().join(n));
        assert_eq!(f(MEMORY_MAX), "max");
        assert_eq!(f(MEMORY_SWAP_MAX), "max");
        assert_eq!(f(PIDS_MAX), "max");
        assert_eq!(f(CPU_MAX), "max");
        // swap < limit is refused before anything is written.
        let err = m
            .apply(&resources(r#"{"memory": {"limit": 100, "swap": 50}}"#))
            .unwrap_err();
        assert!(err.to_string().contains("swap"), "{err}");
        assert_eq!(f(MEMORY_MAX), "max");
    }

    #[test]
    fn unified_keys_that_escape_are_refused() {
        let tree = FakeTree::new();
        let m = manager(&tree);
        for key in ["../memory.max", "pod/memory.max", "..", ""] {
            let json = format!(r#"{{"unified": {{"{key}": "1"}}}}"#);
            let err = m.apply(&resources(&json)).unwrap_err();
            assert!(matches!(err, CgroupError::UnifiedKey { .. }), "{key}: {err}");
        }
        let err = m
            .apply(&resources(r#"{"unified": {"io.max": "8:0 rbps=1"}}"#))
            .unwrap_err();
        assert!(err.to_string().contains("controller not enabled"), "{err}");
        // A refused key writes nothing, not even the valid keys beside it.
        let err = m
            .apply(&resources(r#"{"unified": {"memory.high": "1", "../x.y": "1"}}"#))
            .unwrap_err();
        assert!(matches!(err, CgroupError::UnifiedKey { .. }), "{err}");
        assert_eq!(tree.read(&m.dir().join("memory.high")), "max");
    }

    #[test]
    fn realtime_and_bad_page_sizes_are_refused() {
        let tree = FakeTree::new();
        let m = manager(&tree);
        let err = m
            .apply(&resources(r#"{"cpu": {"realtimeRuntime": 1000}}"#))
            .unwrap_err();
        assert!(matches!(err, CgroupError::Unsupported { .. }), "{err}");
        let err = m
            .apply(&resources(
                r#"{"hugepageLimits": [{"pageSize": "../2MB", "limit": 1}]}"#,
            ))
            .unwrap_err();
        assert!(err.to_string().contains("hugepage size"), "{err}");
    }

    #[test]
    fn stats_parse_v2_files() {
        let tree = FakeTree::new();
        let m = manager(&tree);
        let d = m.dir();
        tree.write(&d.join(CPU_STAT), "usage_usec 1500\nuser_usec 1000\nsystem_usec 500\n");
        tree.write(&d.join(MEMORY_CURRENT), "10000000\n");
        tree.write(
            &d.join(MEMORY_STAT),
            "anon 100\nfile 5000\nactive_file 1000\ninactive_file 4000000\n",
        );
        tree.write(&d.join(MEMORY_MAX), "16777216\n");
        tree.write(&d.join(MEMORY_EVENTS), "low 0\nhigh 0\nmax 3\noom 1\noom_kill 1\n");
        tree.write(&d.join(PIDS_CURRENT), "3\n");
        let s = m.stats().unwrap();
        assert_eq!(s.cpu_usage_ns, Some(1_500_000));
        assert_eq!(s.memory_usage_bytes, Some(10_000_000));
        assert_eq!(s.memory_working_set_bytes, Some(6_000_000));
        assert_eq!(s.memory_limit_bytes, Some(16 << 20));
        assert_eq!(s.oom_kill_count, Some(1));
        assert_eq!(s.pids_current, Some(3));
        assert_eq!(s.pids_limit, None);
        // inactive_file above usage floors at 0.
        tree.write(&d.join(MEMORY_CURRENT), "10\n");
        assert_eq!(m.stats().unwrap().memory_working_set_bytes, Some(0));
    }

    #[test]
    fn stats_without_controllers_are_none() {
        let tree = FakeTree::new();
        let m = V2Manager::new(&tree.v2_root(), Path::new("/bare")).unwrap();
        m.create().unwrap();
        assert_eq!(m.stats().unwrap(), CgroupStats::default());
    }

    #[test]
    fn add_pid_freeze_thaw_kill_and_delete() {
        let tree = FakeTree::new();
        let m = manager(&tree);
        m.add_pid(Pid::from_raw(4242)).unwrap();
        assert_eq!(tree.read(&m.dir().join(CGROUP_PROCS)), "4242");
        tree.write(&m.dir().join(CGROUP_EVENTS), "populated 1\nfrozen 1\n");
        m.freeze().unwrap();
        assert_eq!(tree.read(&m.dir().join(CGROUP_FREEZE)), "1");
        tree.write(&m.dir().join(CGROUP_EVENTS), "populated 1\nfrozen 0\n");
        m.thaw().unwrap();
        assert_eq!(tree.read(&m.dir().join(CGROUP_FREEZE)), "0");
        // SIGKILL goes through cgroup.kill.
        tree.write(&m.dir().join(CGROUP_PROCS), "");
        m.kill_all(Signal::SIGKILL).unwrap();
        assert_eq!(tree.read(&m.dir().join(CGROUP_KILL)), "1");
        // Stuck freezing: the timeout names the cgroup.
        tree.write(&m.dir().join(CGROUP_EVENTS), "populated 1\nfrozen 0\n");
        let err = m.freeze().unwrap_err();
        assert!(err.to_string().contains("berth/pod/ctr"), "{err}");
        m.delete().unwrap();
        assert!(!m.dir().exists());
        assert!(tree.v2_root().join("berth/pod").exists());
        m.delete().unwrap();
        m.kill_all(Signal::SIGTERM).unwrap();
    }

    #[test]
    fn relative_paths_use_own_v2_cgroup() {
        let tree = FakeTree::new();
        let mount = V2Mount {
            mountpoint: tree.v2_root(),
            root: PathBuf::from("/"),
            controllers: vec![],
        };
        let own = ProcCgroups {
            v2: Some(PathBuf::from("/system.slice/berthd.service")),
            ..Default::default()
        };
        let m = V2Manager::for_mount(&mount, Path::new("ctr1"), Some(&own)).unwrap();
        assert_eq!(m.dir(), tree.v2_root().join("system.slice/berthd.service/ctr1"));
        assert!(V2Manager::for_mount(&mount, Path::new("ctr1"), None).is_err());
        assert!(V2Manager::new(&tree.v2_root(), Path::new("rel")).is_err());
    }
}
