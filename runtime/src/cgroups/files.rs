//! Every cgroupfs file and controller name berth uses, in one place.

// Controller names (as in mountinfo super options and cgroup.controllers).
pub const CTRL_CPU: &str = "cpu";
pub const CTRL_CPUACCT: &str = "cpuacct";
pub const CTRL_CPUSET: &str = "cpuset";
pub const CTRL_MEMORY: &str = "memory";
pub const CTRL_DEVICES: &str = "devices";
pub const CTRL_FREEZER: &str = "freezer";
pub const CTRL_PIDS: &str = "pids";
pub const CTRL_HUGETLB: &str = "hugetlb";

/// Every v1 controller the kernel may mount (named hierarchies, `name=…`,
/// are recognised by their prefix).
pub const V1_CONTROLLERS: &[&str] = &[
    "cpu",
    "cpuacct",
    "cpuset",
    "memory",
    "devices",
    "freezer",
    "net_cls",
    "blkio",
    "perf_event",
    "net_prio",
    "hugetlb",
    "pids",
    "rdma",
    "misc",
    "debug",
];

// Core files (both versions unless noted).
pub const CGROUP_PROCS: &str = "cgroup.procs";
/// v1: the threads of the cgroup; a task may move itself by writing `0`.
pub const TASKS: &str = "tasks";
/// v2 only.
pub const CGROUP_CONTROLLERS: &str = "cgroup.controllers";
/// v2 only.
pub const CGROUP_SUBTREE_CONTROL: &str = "cgroup.subtree_control";
/// v2 only.
pub const CGROUP_FREEZE: &str = "cgroup.freeze";
/// v2 only: `populated 0|1`, `frozen 0|1`.
pub const CGROUP_EVENTS: &str = "cgroup.events";
/// v2 only (Linux 5.14+).
pub const CGROUP_KILL: &str = "cgroup.kill";

// cpu (v1).
pub const CPU_SHARES: &str = "cpu.shares";
pub const CPU_CFS_PERIOD_US: &str = "cpu.cfs_period_us";
pub const CPU_CFS_QUOTA_US: &str = "cpu.cfs_quota_us";
pub const CPU_CFS_BURST_US: &str = "cpu.cfs_burst_us";
pub const CPU_RT_PERIOD_US: &str = "cpu.rt_period_us";
pub const CPU_RT_RUNTIME_US: &str = "cpu.rt_runtime_us";
// cpu (both).
pub const CPU_IDLE: &str = "cpu.idle";
// cpu (v2).
pub const CPU_WEIGHT: &str = "cpu.weight";
pub const CPU_MAX: &str = "cpu.max";
pub const CPU_MAX_BURST: &str = "cpu.max.burst";
pub const CPU_STAT: &str = "cpu.stat";
/// Key of [`CPU_STAT`].
pub const CPU_STAT_USAGE_USEC: &str = "usage_usec";

// cpuacct (v1).
pub const CPUACCT_USAGE: &str = "cpuacct.usage";

// cpuset (both).
pub const CPUSET_CPUS: &str = "cpuset.cpus";
pub const CPUSET_MEMS: &str = "cpuset.mems";

// memory (v1).
pub const MEMORY_LIMIT_IN_BYTES: &str = "memory.limit_in_bytes";
pub const MEMORY_MEMSW_LIMIT_IN_BYTES: &str = "memory.memsw.limit_in_bytes";
pub const MEMORY_SOFT_LIMIT_IN_BYTES: &str = "memory.soft_limit_in_bytes";
pub const MEMORY_SWAPPINESS: &str = "memory.swappiness";
pub const MEMORY_OOM_CONTROL: &str = "memory.oom_control";
pub const MEMORY_USAGE_IN_BYTES: &str = "memory.usage_in_bytes";
/// Key of [`MEMORY_OOM_CONTROL`] (v1) and [`MEMORY_EVENTS`] (v2).
pub const OOM_KILL_KEY: &str = "oom_kill";
/// Key of [`MEMORY_STAT`] in v1 (hierarchical total).
pub const MEMORY_STAT_TOTAL_INACTIVE_FILE: &str = "total_inactive_file";
// memory (both).
pub const MEMORY_STAT: &str = "memory.stat";
// memory (v2).
pub const MEMORY_MAX: &str = "memory.max";
pub const MEMORY_SWAP_MAX: &str = "memory.swap.max";
pub const MEMORY_LOW: &str = "memory.low";
pub const MEMORY_CURRENT: &str = "memory.current";
pub const MEMORY_EVENTS: &str = "memory.events";
/// Key of [`MEMORY_STAT`] in v2.
pub const MEMORY_STAT_INACTIVE_FILE: &str = "inactive_file";

// pids (both).
pub const PIDS_MAX: &str = "pids.max";
pub const PIDS_CURRENT: &str = "pids.current";

// devices (v1).
pub const DEVICES_ALLOW: &str = "devices.allow";
pub const DEVICES_DENY: &str = "devices.deny";

// freezer (v1).
pub const FREEZER_STATE: &str = "freezer.state";
pub const FREEZER_FROZEN: &str = "FROZEN";
pub const FREEZER_THAWED: &str = "THAWED";

/// v1 hugetlb limit file for a page size such as `2MB`.
pub fn hugetlb_limit_v1(page_size: &str) -> String {
    format!("hugetlb.{page_size}.limit_in_bytes")
}

/// v2 hugetlb limit file for a page size such as `2MB`.
pub fn hugetlb_max_v2(page_size: &str) -> String {
    format!("hugetlb.{page_size}.max")
}

/// Value meaning "no limit" in v2 files and in `pids.max`.
pub const MAX: &str = "max";
