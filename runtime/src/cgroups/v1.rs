//! The cgroup v1 manager: the same cgroup path in every mounted v1
//! hierarchy, plus the v2 tree on a hybrid host.

use std::path::{Path, PathBuf};

use nix::sys::signal::Signal;
use nix::unistd::Pid;
use oci_spec::runtime::{LinuxCpu, LinuxMemory, LinuxResources};

use super::files::*;
use super::layout::{dir_in_mount, resolve, CgroupLayout, ProcCgroups};
use super::resources::{device_rule, pids_max, validate_page_size};
use super::v2::{signal_all, V2Manager};
use super::{fsutil, CgroupError, CgroupManager, CgroupStats, Result};

/// How long freeze waits for `freezer.state` to leave `FREEZING`.
const FREEZE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

/// One hierarchy's directory for our cgroup.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Dir {
    controllers: Vec<String>,
    path: PathBuf,
}

/// A container's cgroup on a v1 (or hybrid) host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct V1Manager {
    dirs: Vec<Dir>,
    /// Hybrid host: the same cgroup in the v2 tree, and the controllers
    /// available there.
    unified: Option<(V2Manager, Vec<String>)>,
}

/// One step of the v1 memory/swap update.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum MemoryStep {
    Limit(i64),
    MemSwap(i64),
}

/// Order of the v1 `memory.limit_in_bytes` / `memory.memsw.limit_in_bytes`
/// writes. The kernel keeps limit ≤ memsw at every moment, so when memsw
/// grows it is written first, and when it shrinks the limit goes first.
/// `current_memsw`: `None` when unlimited.
pub(crate) fn memory_steps(
    limit: Option<i64>,
    swap: Option<i64>,
    current_memsw: Option<u64>,
    has_memsw: bool,
) -> Vec<MemoryStep> {
    let limit = limit.filter(|&l| l != 0);
    let mut swap = swap.filter(|&s| s != 0);
    // Unlimited memory with swap unset means both unlimited (as runc).
    if limit == Some(-1) && swap.is_none() && has_memsw {
        swap = Some(-1);
    }
    match (limit, swap) {
        (Some(l), Some(s)) => {
            let grows = match (s, current_memsw) {
                (-1, _) => true,
                (_, None) => false,
                (s, Some(cur)) => s as u64 > cur,
            };
            if grows {
                vec![MemoryStep::MemSwap(s), MemoryStep::Limit(l)]
            } else {
                vec![MemoryStep::Limit(l), MemoryStep::MemSwap(s)]
            }
        }
        (Some(l), None) => vec![MemoryStep::Limit(l)],
        (None, Some(s)) => vec![MemoryStep::MemSwap(s)],
        (None, None) => vec![],
    }
}

impl V1Manager {
    /// The manager for an OCI `cgroupsPath` in every v1 hierarchy of
    /// `layout` (and its v2 mount, if any). A relative path is resolved per
    /// hierarchy against `own`.
    pub fn new(layout: &CgroupLayout, cgroups_path: &Path, own: Option<&ProcCgroups>) -> Result<Self> {
        super::validate_cgroups_path(cgroups_path)?;
        let mut dirs = Vec::new();
        for h in &layout.v1 {
            let own_path = own.and_then(|o| h.controllers.iter().find_map(|c| o.v1.get(c)));
            let cgroup = resolve(cgroups_path, own_path.map(PathBuf::as_path))?;
            dirs.push(Dir {
                controllers: h.controllers.clone(),
                path: dir_in_mount(&h.mountpoint, &h.root, &cgroup),
            });
        }
        let unified = match &layout.v2 {
            Some(mount) => Some((
                V2Manager::for_mount(mount, cgroups_path, own)?,
                mount.controllers.clone(),
            )),
            None => None,
        };
        Ok(Self { dirs, unified })
    }

    /// Our directory in the hierarchy of `controller`.
    pub fn dir(&self, controller: &str) -> Option<&Path> {
        self.dirs
            .iter()
            .find(|d| d.controllers.iter().any(|c| c == controller))
            .map(|d| d.path.as_path())
    }

    fn require(&self, controller: &str, what: &str) -> Result<&Path> {
        self.dir(controller).ok_or_else(|| CgroupError::Unsupported {
            what: format!("{what} (no {controller} hierarchy mounted)"),
            version: "v1",
        })
    }

    /// The v2 side of a hybrid host, when it has `controller`.
    fn unified_with(&self, controller: &str) -> Option<&V2Manager> {
        self.unified
            .as_ref()
            .filter(|(_, ctrls)| ctrls.iter().any(|c| c == controller))
            .map(|(m, _)| m)
    }

    /// Copies `cpuset.cpus`/`cpuset.mems` from the parent into each given
    /// cpuset directory whose sets are empty (top-down order): v1 refuses
    /// tasks in a cpuset with empty sets.
    fn init_cpusets(created: &[PathBuf]) -> Result<()> {
        for dir in created {
            let Some(parent) = dir.parent() else { continue };
            for file in [CPUSET_CPUS, CPUSET_MEMS] {
                if fsutil::read_opt(dir, file)?.is_some_and(|v| v.trim().is_empty()) {
                    let value = fsutil::read(parent, file)?;
                    fsutil::write(dir, file, value.trim())?;
                }
            }
        }
        Ok(())
    }

    fn apply_cpu(&self, cpu: &LinuxCpu) -> Result<()> {
        let wants_cpu = cpu.shares().is_some_and(|s| s != 0)
            || cpu.quota().is_some_and(|q| q != 0)
            || cpu.period().is_some_and(|p| p != 0)
            || cpu.burst().is_some()
            || cpu.idle().is_some()
            || cpu.realtime_period().is_some_and(|p| p != 0)
            || cpu.realtime_runtime().is_some_and(|r| r != 0);
        if wants_cpu {
            let dir = self.require(CTRL_CPU, "cpu limits")?;
            if let Some(shares) = cpu.shares().filter(|&s| s != 0) {
                fsutil::write(dir, CPU_SHARES, &shares.to_string())?;
            }
            let period = cpu.period().filter(|&p| p != 0);
            let quota = cpu.quota().filter(|&q| q != 0);
            match (period, quota) {
                (Some(p), Some(q)) => {
                    // Period first; if the kernel refuses it against the
                    // old quota, write the quota first instead.
                    if fsutil::write(dir, CPU_CFS_PERIOD_US, &p.to_string()).is_err() {
                        fsutil::write(dir, CPU_CFS_QUOTA_US, &q.to_string())?;
                        fsutil::write(dir, CPU_CFS_PERIOD_US, &p.to_string())?;
                    } else {
                        fsutil::write(dir, CPU_CFS_QUOTA_US, &q.to_string())?;
                    }
                }
                (Some(p), None) => fsutil::write(dir, CPU_CFS_PERIOD_US, &p.to_string())?,
                (None, Some(q)) => fsutil::write(dir, CPU_CFS_QUOTA_US, &q.to_string())?,
                (None, None) => {}
            }
            if let Some(burst) = cpu.burst() {
                fsutil::write(dir, CPU_CFS_BURST_US, &burst.to_string())?;
            }
            if let Some(idle) = cpu.idle() {
                fsutil::write(dir, CPU_IDLE, &idle.to_string())?;
            }
            if let Some(p) = cpu.realtime_period().filter(|&p| p != 0) {
                fsutil::write(dir, CPU_RT_PERIOD_US, &p.to_string())?;
            }
            if let Some(r) = cpu.realtime_runtime().filter(|&r| r != 0) {
                fsutil::write(dir, CPU_RT_RUNTIME_US, &r.to_string())?;
            }
        }
        let cpus = cpu.cpus().as_deref().filter(|s| !s.is_empty());
        let mems = cpu.mems().as_deref().filter(|s| !s.is_empty());
        if cpus.is_some() || mems.is_some() {
            let dir = self.require(CTRL_CPUSET, "cpuset")?;
            if let Some(cpus) = cpus {
                fsutil::write(dir, CPUSET_CPUS, cpus)?;
            }
            if let Some(mems) = mems {
                fsutil::write(dir, CPUSET_MEMS, mems)?;
            }
        }
        Ok(())
    }

    fn apply_memory(&self, mem: &LinuxMemory) -> Result<()> {
        let wants = mem.limit().is_some_and(|v| v != 0)
            || mem.swap().is_some_and(|v| v != 0)
            || mem.reservation().is_some_and(|v| v != 0)
            || mem.swappiness().is_some()
            || mem.disable_oom_killer() == Some(true);
        if !wants {
            return Ok(());
        }
        let dir = self.require(CTRL_MEMORY, "memory limits")?;
        let has_memsw = fsutil::exists(dir, MEMORY_MEMSW_LIMIT_IN_BYTES);
        let current_memsw = if has_memsw {
            fsutil::read_limit_opt(dir, MEMORY_MEMSW_LIMIT_IN_BYTES)?
        } else {
            None
        };
        if let (Some(l), Some(s)) = (mem.limit(), mem.swap()) {
            if l > 0 && s > 0 && s < l {
                return Err(CgroupError::InvalidResources(format!(
                    "memory.swap ({s}) must be >= memory.limit ({l})"
                )));
            }
        }
        for step in memory_steps(mem.limit(), mem.swap(), current_memsw, has_memsw) {
            match step {
                MemoryStep::Limit(l) => fsutil::write(dir, MEMORY_LIMIT_IN_BYTES, &l.to_string())?,
                MemoryStep::MemSwap(s) if has_memsw => fsutil::write(dir, MEMORY_MEMSW_LIMIT_IN_BYTES, &s.to_string())?,
                MemoryStep::MemSwap(s) if s == -1 || Some(s) == mem.limit() => {
                    tracing::debug!("no swap accounting; memory+swap limit {s} needs no file");
                }
                MemoryStep::MemSwap(_) => {
                    return Err(CgroupError::Unsupported {
                        what: format!("swap limit (no {MEMORY_MEMSW_LIMIT_IN_BYTES})"),
                        version: "v1",
                    })
                }
            }
        }
        if let Some(r) = mem.reservation().filter(|&r| r != 0) {
            fsutil::write(dir, MEMORY_SOFT_LIMIT_IN_BYTES, &r.to_string())?;
        }
        if let Some(sw) = mem.swappiness() {
            if sw > 100 {
                return Err(CgroupError::InvalidResources(format!(
                    "memory.swappiness {sw} is above 100"
                )));
            }
            fsutil::write(dir, MEMORY_SWAPPINESS, &sw.to_string())?;
        }
        if mem.disable_oom_killer() == Some(true) {
            fsutil::write(dir, MEMORY_OOM_CONTROL, "1")?;
        }
        if mem.kernel().is_some() || mem.kernel_tcp().is_some() {
            tracing::debug!("kernel memory limits are deprecated by the kernel; ignored");
        }
        Ok(())
    }

    fn apply_hugepages(&self, limits: &[oci_spec::runtime::LinuxHugepageLimit]) -> Result<()> {
        if limits.is_empty() {
            return Ok(());
        }
        if let Some(dir) = self.dir(CTRL_HUGETLB) {
            for l in limits {
                validate_page_size(l.page_size())?;
                fsutil::write(dir, &hugetlb_limit_v1(l.page_size()), &l.limit().to_string())?;
            }
            return Ok(());
        }
        match self.unified_with(CTRL_HUGETLB) {
            Some(v2) => v2.apply_hugepages(limits),
            None => Err(CgroupError::Unsupported {
                what: "hugepage limits (no hugetlb controller)".into(),
                version: "v1",
            }),
        }
    }

    /// The directory whose `cgroup.procs` lists the container's processes.
    fn procs_dir(&self) -> Option<&Path> {
        [CTRL_PIDS, CTRL_FREEZER, CTRL_MEMORY, CTRL_CPU]
            .iter()
            .find_map(|c| self.dir(c))
            .or_else(|| self.dirs.first().map(|d| d.path.as_path()))
    }
}

impl CgroupManager for V1Manager {
    fn paths(&self) -> Vec<PathBuf> {
        let mut out: Vec<PathBuf> = self.dirs.iter().map(|d| d.path.clone()).collect();
        if let Some((v2, _)) = &self.unified {
            out.push(v2.dir().to_path_buf());
        }
        out
    }

    fn create(&self) -> Result<()> {
        for d in &self.dirs {
            fsutil::mkdir_p(&d.path)?;
            if d.controllers.iter().any(|c| c == CTRL_CPUSET) {
                // Every level, not only the ones this call made: a parent
                // another create made a moment ago may not be seeded yet
                // (concurrent pods under a new prefix), and a child seeded
                // from an empty parent refuses tasks with ENOSPC.
                Self::init_cpusets(&cpuset_levels(&d.path))?;
            }
        }
        if let Some((v2, _)) = &self.unified {
            v2.create()?;
        }
        Ok(())
    }

    fn add_pid(&self, pid: Pid) -> Result<()> {
        for d in &self.dirs {
            fsutil::write(&d.path, CGROUP_PROCS, &pid.to_string())?;
        }
        if let Some((v2, _)) = &self.unified {
            v2.add_pid(pid)?;
        }
        Ok(())
    }

    /// `tasks` in every v1 hierarchy; `cgroup.procs` of the cgroup2 side
    /// only when it has controllers (else membership there enforces
    /// nothing and would cost the global lock).
    fn self_join_files(&self) -> Vec<PathBuf> {
        let mut out: Vec<PathBuf> = self.dirs.iter().map(|d| d.path.join(TASKS)).collect();
        if let Some((v2, _)) = self.unified.as_ref().filter(|(_, ctrls)| !ctrls.is_empty()) {
            out.push(v2.dir().join(CGROUP_PROCS));
        }
        out
    }

    fn apply(&self, r: &LinuxResources) -> Result<()> {
        if let Some(cpu) = r.cpu() {
            self.apply_cpu(cpu)?;
        }
        if let Some(mem) = r.memory() {
            self.apply_memory(mem)?;
        }
        if let Some(pids) = r.pids() {
            let dir = self.require(CTRL_PIDS, "pids limit")?;
            fsutil::write(dir, PIDS_MAX, &pids_max(pids.limit()))?;
        }
        if let Some(limits) = r.hugepage_limits() {
            self.apply_hugepages(limits)?;
        }
        if let Some(devices) = r.devices().as_ref().filter(|d| !d.is_empty()) {
            let dir = self.require(CTRL_DEVICES, "device rules")?;
            let rules = devices.iter().map(device_rule).collect::<Result<Vec<_>>>()?;
            for (file, rule) in rules {
                fsutil::write(dir, file, &rule)?;
            }
        }
        if r.block_io().is_some() || r.network().is_some() || r.rdma().is_some() {
            tracing::debug!("blockIO/network/rdma resources are not applied");
        }
        if let Some(unified) = r.unified().as_ref().filter(|u| !u.is_empty()) {
            match &self.unified {
                Some((v2, _)) => v2.apply_unified(unified)?,
                None => {
                    return Err(CgroupError::Unsupported {
                        what: "unified resources".into(),
                        version: "v1",
                    })
                }
            }
        }
        Ok(())
    }

    fn stats(&self) -> Result<CgroupStats> {
        let mut s = CgroupStats::default();
        if let Some(dir) = self.dir(CTRL_CPUACCT) {
            s.cpu_usage_ns = fsutil::read_u64_opt(dir, CPUACCT_USAGE)?;
        }
        if let Some(dir) = self.dir(CTRL_MEMORY) {
            let usage = fsutil::read_u64_opt(dir, MEMORY_USAGE_IN_BYTES)?;
            let inactive = fsutil::read_keyed_opt(dir, MEMORY_STAT, MEMORY_STAT_TOTAL_INACTIVE_FILE)?.unwrap_or(0);
            s.memory_usage_bytes = usage;
            s.memory_working_set_bytes = usage.map(|u| u.saturating_sub(inactive));
            s.memory_limit_bytes = fsutil::read_limit_opt(dir, MEMORY_LIMIT_IN_BYTES)?;
            s.oom_kill_count = fsutil::read_keyed_opt(dir, MEMORY_OOM_CONTROL, OOM_KILL_KEY)?;
        }
        if let Some(dir) = self.dir(CTRL_PIDS) {
            s.pids_current = fsutil::read_u64_opt(dir, PIDS_CURRENT)?;
            s.pids_limit = fsutil::read_limit_opt(dir, PIDS_MAX)?;
        }
        Ok(s)
    }

    fn pids(&self) -> Result<Vec<Pid>> {
        match self.procs_dir() {
            Some(dir) => fsutil::procs_recursive(dir),
            None => Ok(Vec::new()),
        }
    }

    fn freeze(&self) -> Result<()> {
        let dir = self.require(CTRL_FREEZER, "freeze")?;
        let deadline = std::time::Instant::now() + FREEZE_TIMEOUT;
        loop {
            // Re-writing FROZEN makes the kernel retry tasks that were
            // busy (e.g. in vfork) on the previous attempt.
            fsutil::write(dir, FREEZER_STATE, FREEZER_FROZEN)?;
            if fsutil::read(dir, FREEZER_STATE)?.trim() == FREEZER_FROZEN {
                return Ok(());
            }
            if std::time::Instant::now() >= deadline {
                // Leave it usable rather than half-frozen.
                let _ = fsutil::write(dir, FREEZER_STATE, FREEZER_THAWED);
                return Err(CgroupError::FreezeTimeout {
                    path: dir.to_path_buf(),
                    state: "FROZEN",
                });
            }
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
    }

    fn thaw(&self) -> Result<()> {
        let dir = self.require(CTRL_FREEZER, "thaw")?;
        fsutil::write(dir, FREEZER_STATE, FREEZER_THAWED)
    }

    fn kill_all(&self, signal: Signal) -> Result<()> {
        let Some(dir) = self.procs_dir() else {
            return Ok(());
        };
        if !dir.exists() {
            return Ok(());
        }
        if self.dir(CTRL_FREEZER).is_none_or(|d| !d.exists()) {
            // No freezer: signal until no new pids show up.
            let mut seen = Vec::new();
            loop {
                let pids: Vec<Pid> = self.pids()?.into_iter().filter(|p| !seen.contains(p)).collect();
                if pids.is_empty() {
                    return Ok(());
                }
                signal_all(&pids, signal)?;
                seen.extend(pids);
            }
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
        let mut err = None;
        for d in &self.dirs {
            if let Err(e) = fsutil::remove_tree(&d.path) {
                err = Some(fsutil::chain(err, e));
            }
        }
        if let Some((v2, _)) = &self.unified {
            if let Err(e) = v2.delete() {
                err = Some(fsutil::chain(err, e));
            }
        }
        err.map_or(Ok(()), Err)
    }
}

/// The cpuset directories from the hierarchy's first level below its root
/// down to `leaf`, top-down: every level whose parent is a cpuset directory too.
fn cpuset_levels(leaf: &Path) -> Vec<PathBuf> {
    let mut levels: Vec<PathBuf> = leaf
        .ancestors()
        .take_while(|dir| dir.parent().is_some_and(|p| p.join(CPUSET_CPUS).exists()))
        .map(Path::to_path_buf)
        .collect();
    levels.reverse();
    levels
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cgroups::fake::FakeTree;
    use crate::cgroups::{detect, new_manager, CgroupMode};

    fn resources(json: &str) -> LinuxResources {
        serde_json::from_str(json).unwrap()
    }

    fn manager(tree: &FakeTree, hybrid: bool) -> V1Manager {
        let layout = detect(&tree.mountinfo(hybrid)).unwrap();
        let m = V1Manager::new(&layout, Path::new("/berth/pod/ctr"), None).unwrap();
        m.create().unwrap();
        tree.populate_v1(&m.paths());
        m
    }

    #[test]
    fn create_makes_the_path_in_every_hierarchy_and_seeds_cpusets() {
        let tree = FakeTree::new();
        let m = manager(&tree, true);
        let paths = m.paths();
        assert_eq!(paths.len(), 9, "{paths:?}");
        for p in &paths {
            assert!(p.ends_with("berth/pod/ctr") && p.is_dir(), "{}", p.display());
        }
        assert!(m.dir("name=systemd").unwrap().starts_with(tree.v1_root("systemd")));
        // New cpuset levels got the parent's cpus/mems (seeded at mkdir,
        // before the fake populated the leaf's files).
        let cpuset = tree.v1_root("cpuset");
        // Intermediate levels have no fake files: nothing to copy there.
        assert!(!cpuset.join("berth").join(CPUSET_CPUS).exists());
        assert_eq!(tree.read(&cpuset.join(CPUSET_CPUS)), "0-3");
    }

    /// Regression: 50 concurrent pods under a new prefix — one create made
    /// the prefix dir and had not seeded it yet when another create seeded
    /// its child from the still-empty prefix, and adding the pod init failed
    /// with ENOSPC. Every level is seeded top-down now, made by us or not.
    #[test]
    fn an_unseeded_parent_made_by_someone_else_is_seeded_before_the_child() {
        let tree = FakeTree::new();
        let root = tree.v1_root("cpuset");
        let parent = root.join("prefix");
        let child = parent.join("pod");
        std::fs::create_dir_all(&child).unwrap();
        tree.populate_v1_controller(&parent, "cpuset");
        tree.populate_v1_controller(&child, "cpuset");
        assert_eq!(tree.read(&parent.join(CPUSET_CPUS)), "");
        let levels = cpuset_levels(&child);
        assert_eq!(levels, vec![parent.clone(), child.clone()]);
        V1Manager::init_cpusets(&levels).unwrap();
        assert_eq!(tree.read(&parent.join(CPUSET_CPUS)), "0-3");
        assert_eq!(tree.read(&child.join(CPUSET_CPUS)), "0-3");
        assert_eq!(tree.read(&child.join(CPUSET_MEMS)), tree.read(&root.join(CPUSET_MEMS)));
    }

    #[test]
    fn cpuset_dirs_are_seeded_from_the_parent() {
        let tree = FakeTree::new();
        let root = tree.v1_root("cpuset");
        let leaf = root.join("a");
        std::fs::create_dir(&leaf).unwrap();
        tree.populate_v1_controller(&leaf, "cpuset");
        V1Manager::init_cpusets(std::slice::from_ref(&leaf)).unwrap();
        assert_eq!(tree.read(&leaf.join(CPUSET_CPUS)), "0-3");
        assert_eq!(tree.read(&leaf.join(CPUSET_MEMS)), "0");
    }

    #[test]
    fn apply_writes_every_v1_file() {
        let tree = FakeTree::new();
        let m = manager(&tree, true);
        m.apply(&resources(
            r#"{
              "cpu": {"shares": 512, "quota": 20000, "period": 50000, "cpus": "1", "mems": "0",
                      "burst": 100, "idle": 1, "realtimePeriod": 1000000, "realtimeRuntime": 950000},
              "memory": {"limit": 16777216, "swap": 33554432, "reservation": 8388608,
                         "swappiness": 10, "disableOOMKiller": true},
              "pids": {"limit": 64},
              "hugepageLimits": [{"pageSize": "2MB", "limit": 2097152}],
              "devices": [{"allow": false, "access": "rwm"},
                          {"allow": true, "type": "c", "major": 1, "minor": 3, "access": "rwm"}],
              "unified": {"memory.high": "999"}
            }"#,
        ))
        .unwrap();
        let f = |c: &str, n: &str| tree.read(&m.dir(c).unwrap().join(n));
        assert_eq!(f("cpu", CPU_SHARES), "512");
        assert_eq!(f("cpu", CPU_CFS_PERIOD_US), "50000");
        assert_eq!(f("cpu", CPU_CFS_QUOTA_US), "20000");
        assert_eq!(f("cpu", CPU_CFS_BURST_US), "100");
        assert_eq!(f("cpu", CPU_IDLE), "1");
        assert_eq!(f("cpu", CPU_RT_PERIOD_US), "1000000");
        assert_eq!(f("cpu", CPU_RT_RUNTIME_US), "950000");
        assert_eq!(f("cpuset", CPUSET_CPUS), "1");
        assert_eq!(f("cpuset", CPUSET_MEMS), "0");
        assert_eq!(f("memory", MEMORY_LIMIT_IN_BYTES), "16777216");
        assert_eq!(f("memory", MEMORY_MEMSW_LIMIT_IN_BYTES), "33554432");
        assert_eq!(f("memory", MEMORY_SOFT_LIMIT_IN_BYTES), "8388608");
        assert_eq!(f("memory", MEMORY_SWAPPINESS), "10");
        assert_eq!(f("memory", MEMORY_OOM_CONTROL), "1");
        assert_eq!(f("pids", PIDS_MAX), "64");
        assert_eq!(f("devices", DEVICES_DENY), "a *:* rwm");
        assert_eq!(f("devices", DEVICES_ALLOW), "c 1:3 rwm");
        // hugetlb is not a v1 hierarchy on this host: it went to v2.
        let (v2, _) = m.unified.as_ref().unwrap();
        assert_eq!(tree.read(&v2.dir().join("hugetlb.2MB.max")), "2097152");
        assert_eq!(tree.read(&v2.dir().join("memory.high")), "999");
    }

    #[test]
    fn self_join_uses_tasks_and_cgroup2_only_with_controllers() {
        let tree = FakeTree::new();
        let pure = manager(&tree, false);
        let files = pure.self_join_files();
        assert!(!files.is_empty());
        assert!(files.iter().all(|f| f.file_name().unwrap() == TASKS), "{files:?}");
        let mut hybrid = manager(&tree, true);
        let with = hybrid.self_join_files();
        assert_eq!(with.len(), files.len() + 1);
        assert!(with.last().unwrap().ends_with("berth/pod/ctr/cgroup.procs"), "{with:?}");
        hybrid.unified.as_mut().unwrap().1.clear();
        assert_eq!(hybrid.self_join_files().len(), files.len());
    }

    #[test]
    fn pure_v1_refuses_unified_and_hugetlb_without_controller() {
        let tree = FakeTree::new();
        let m = manager(&tree, false);
        assert_eq!(m.paths().len(), 8);
        let err = m.apply(&resources(r#"{"unified": {"memory.high": "1"}}"#)).unwrap_err();
        assert!(matches!(err, CgroupError::Unsupported { .. }), "{err}");
        let err = m
            .apply(&resources(r#"{"hugepageLimits": [{"pageSize": "2MB", "limit": 1}]}"#))
            .unwrap_err();
        assert!(err.to_string().contains("hugetlb"), "{err}");
        // Empty unified map is fine.
        m.apply(&resources(r#"{"unified": {}}"#)).unwrap();
    }

    #[test]
    fn memory_update_order_keeps_limit_below_memsw() {
        use MemoryStep::*;
        // Raising both above the current memsw: memsw first.
        assert_eq!(
            memory_steps(Some(200), Some(400), Some(300), true),
            vec![MemSwap(400), Limit(200)]
        );
        // Lowering both: limit first.
        assert_eq!(
            memory_steps(Some(100), Some(150), Some(300), true),
            vec![Limit(100), MemSwap(150)]
        );
        // From unlimited memsw to a finite one: limit first.
        assert_eq!(
            memory_steps(Some(100), Some(150), None, true),
            vec![Limit(100), MemSwap(150)]
        );
        // Unlimited swap: memsw first.
        assert_eq!(
            memory_steps(Some(100), Some(-1), Some(300), true),
            vec![MemSwap(-1), Limit(100)]
        );
        // Unlimited memory, swap unset: both unlimited, memsw first.
        assert_eq!(
            memory_steps(Some(-1), None, Some(300), true),
            vec![MemSwap(-1), Limit(-1)]
        );
        assert_eq!(memory_steps(Some(-1), None, None, false), vec![Limit(-1)]);
        assert_eq!(memory_steps(None, None, None, true), vec![]);
        assert_eq!(memory_steps(Some(0), Some(0), None, true), vec![]);
    }

    #[test]
    fn swap_below_limit_and_bad_swappiness_are_refused() {
        let tree = FakeTree::new();
        let m = manager(&tree, false);
        let err = m
            .apply(&resources(r#"{"memory": {"limit": 200, "swap": 100}}"#))
            .unwrap_err();
        assert!(matches!(err, CgroupError::InvalidResources(_)), "{err}");
        let err = m.apply(&resources(r#"{"memory": {"swappiness": 101}}"#)).unwrap_err();
        assert!(err.to_string().contains("swappiness"), "{err}");
    }

    #[test]
    fn missing_hierarchy_for_a_setting_is_named() {
        let tree = FakeTree::new();
        let m = manager(&tree, false);
        std::fs::remove_dir_all(m.dir("pids").unwrap()).unwrap();
        let err = m.apply(&resources(r#"{"pids": {"limit": 5}}"#)).unwrap_err();
        assert!(err.to_string().contains("pids.max"), "{err}");
    }

    #[test]
    fn stats_parse_v1_files() {
        let tree = FakeTree::new();
        let m = manager(&tree, false);
        let w = |c: &str, n: &str, v: &str| tree.write(&m.dir(c).unwrap().join(n), v);
        w("cpuacct", CPUACCT_USAGE, "123456789\n");
        w("memory", MEMORY_USAGE_IN_BYTES, "20000000\n");
        w(
            "memory",
            MEMORY_STAT,
            "cache 100\ninactive_file 1\ntotal_cache 100\ntotal_inactive_file 5000000\n",
        );
        w("memory", MEMORY_LIMIT_IN_BYTES, "33554432\n");
        w(
            "memory",
            MEMORY_OOM_CONTROL,
            "oom_kill_disable 0\nunder_oom 0\noom_kill 2\n",
        );
        w("pids", PIDS_CURRENT, "7\n");
        w("pids", PIDS_MAX, "100\n");
        let s = m.stats().unwrap();
        assert_eq!(s.cpu_usage_ns, Some(123_456_789));
        assert_eq!(s.memory_usage_bytes, Some(20_000_000));
        assert_eq!(s.memory_working_set_bytes, Some(15_000_000));
        assert_eq!(s.memory_limit_bytes, Some(32 << 20));
        assert_eq!(s.oom_kill_count, Some(2));
        assert_eq!(s.pids_current, Some(7));
        assert_eq!(s.pids_limit, Some(100));
        w("memory", MEMORY_LIMIT_IN_BYTES, "9223372036854771712\n");
        assert_eq!(m.stats().unwrap().memory_limit_bytes, None);
    }

    #[test]
    fn pids_freeze_kill_and_delete() {
        let tree = FakeTree::new();
        let m = manager(&tree, true);
        m.add_pid(Pid::from_raw(77)).unwrap();
        for p in m.paths() {
            assert_eq!(tree.read(&p.join(CGROUP_PROCS)), "77", "{}", p.display());
        }
        let child = m.dir("pids").unwrap().join("sub");
        std::fs::create_dir(&child).unwrap();
        tree.write(&child.join(CGROUP_PROCS), "78\n");
        let mut pids: Vec<i32> = m.pids().unwrap().into_iter().map(Pid::as_raw).collect();
        pids.sort();
        assert_eq!(pids, [77, 78]);
        m.freeze().unwrap();
        assert_eq!(tree.read(&m.dir("freezer").unwrap().join(FREEZER_STATE)), "FROZEN");
        m.thaw().unwrap();
        assert_eq!(tree.read(&m.dir("freezer").unwrap().join(FREEZER_STATE)), "THAWED");
        // No real processes behind the fake pids: signal 0 to pids that
        // do not exist is not an error (ESRCH ignored).
        tree.write(&m.dir("pids").unwrap().join(CGROUP_PROCS), "");
        tree.write(&child.join(CGROUP_PROCS), "");
        m.kill_all(Signal::SIGTERM).unwrap();
        m.delete().unwrap();
        for p in m.paths() {
            assert!(!p.exists(), "{}", p.display());
        }
        m.delete().unwrap();
        m.kill_all(Signal::SIGKILL).unwrap();
    }

    #[test]
    fn relative_paths_resolve_per_hierarchy() {
        let tree = FakeTree::new();
        let layout = detect(&tree.mountinfo(true)).unwrap();
        assert_eq!(layout.mode(), CgroupMode::Hybrid);
        let own = ProcCgroups::parse(
            Path::new("/proc/self/cgroup"),
            "9:name=systemd:/user.slice\n8:pids:/\n6:freezer:/\n5:devices:/\n\
             4:memory:/process_api/abc\n3:cpuset:/\n2:cpuacct:/\n1:cpu:/\n0::/\n",
        )
        .unwrap();
        let m = V1Manager::new(&layout, Path::new("berth/c1"), Some(&own)).unwrap();
        assert_eq!(
            m.dir("memory").unwrap(),
            tree.v1_root("memory").join("process_api/abc/berth/c1")
        );
        assert_eq!(m.dir("pids").unwrap(), tree.v1_root("pids").join("berth/c1"));
        assert_eq!(
            m.dir("name=systemd").unwrap(),
            tree.v1_root("systemd").join("user.slice/berth/c1")
        );
        // Through the public constructor too.
        let boxed = new_manager(&layout, Path::new("/berth/c2"), None).unwrap();
        assert_eq!(boxed.paths().len(), 9);
        assert!(new_manager(&layout, Path::new("../x"), None).is_err());
    }
}
