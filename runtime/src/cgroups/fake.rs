//! A fake cgroupfs in a temp dir for unit tests: v1 hierarchies shaped like
//! this project's hybrid test host (cpu and cpuacct apart, a named
//! `systemd` hierarchy, hugetlb only on the v2 mount) and a cgroup2 root,
//! plus the files a fresh cgroup gets from the kernel. Plain files keep the
//! last value written, which is what the tests read back.

use std::path::{Path, PathBuf};

use super::files::*;

/// v1 hierarchies of the fake host: (mount dir name, controller option).
pub(crate) const V1_MOUNTS: &[(&str, &str)] = &[
    ("cpu", "cpu"),
    ("cpuacct", "cpuacct"),
    ("cpuset", "cpuset"),
    ("memory", "memory"),
    ("devices", "devices"),
    ("freezer", "freezer"),
    ("pids", "pids"),
    ("systemd", "name=systemd"),
];

const V1_UNLIMITED: &str = "9223372036854771712";

pub(crate) struct FakeTree {
    dir: tempfile::TempDir,
}

impl FakeTree {
    pub(crate) fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let tree = Self { dir };
        for (name, ctrl) in V1_MOUNTS {
            let root = tree.v1_root(name);
            std::fs::create_dir_all(&root).unwrap();
            tree.populate_v1_controller(&root, ctrl);
        }
        std::fs::write(root_cpuset(&tree.v1_root("cpuset")).0, "0-3").unwrap();
        std::fs::write(root_cpuset(&tree.v1_root("cpuset")).1, "0").unwrap();
        let v2 = tree.v2_root();
        std::fs::create_dir_all(&v2).unwrap();
        tree.write(&v2.join(CGROUP_CONTROLLERS), "hugetlb memory\n");
        tree.write(&v2.join(CGROUP_SUBTREE_CONTROL), "");
        tree.write(&v2.join(CGROUP_PROCS), "");
        tree
    }

    pub(crate) fn v1_root(&self, mount_name: &str) -> PathBuf {
        self.dir.path().join("v1").join(mount_name)
    }

    pub(crate) fn v2_root(&self) -> PathBuf {
        self.dir.path().join("unified")
    }

    /// A mountinfo file describing the fake mounts (`with_v2`: hybrid).
    pub(crate) fn mountinfo(&self, with_v2: bool) -> PathBuf {
        let mut text = String::from("22 1 0:5 / /proc rw - proc proc rw\n");
        for (i, (name, ctrl)) in V1_MOUNTS.iter().enumerate() {
            text.push_str(&format!(
                "{} 21 0:{} / {} rw,relatime shared:{i} - cgroup cgroup rw,{ctrl}\n",
                30 + i,
                40 + i,
                self.v1_root(name).display()
            ));
        }
        if with_v2 {
            text.push_str(&format!(
                "60 21 0:60 / {} rw,relatime - cgroup2 cgroup2 rw,nsdelegate\n",
                self.v2_root().display()
            ));
        }
        let path = self.dir.path().join(if with_v2 { "mountinfo" } else { "mountinfo.v1" });
        std::fs::write(&path, text).unwrap();
        path
    }

    pub(crate) fn read(&self, path: &Path) -> String {
        std::fs::read_to_string(path)
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
            .trim_end_matches('\n')
            .to_string()
    }

    pub(crate) fn write(&self, path: &Path, content: &str) {
        std::fs::write(path, content).unwrap();
    }

    /// Creates the files a new cgroup gets in the hierarchy for `ctrl`.
    pub(crate) fn populate_v1_controller(&self, dir: &Path, ctrl: &str) {
        let mut files: Vec<(&str, String)> = vec![(CGROUP_PROCS, String::new())];
        let s = |v: &str| v.to_string();
        match ctrl {
            "cpu" => files.extend([
                (CPU_SHARES, s("1024")),
                (CPU_CFS_PERIOD_US, s("100000")),
                (CPU_CFS_QUOTA_US, s("-1")),
                (CPU_CFS_BURST_US, s("0")),
                (CPU_RT_PERIOD_US, s("1000000")),
                (CPU_RT_RUNTIME_US, s("0")),
                (CPU_IDLE, s("0")),
            ]),
            "cpuacct" => files.push((CPUACCT_USAGE, s("0"))),
            "cpuset" => files.extend([(CPUSET_CPUS, s("")), (CPUSET_MEMS, s(""))]),
            "memory" => files.extend([
                (MEMORY_LIMIT_IN_BYTES, s(V1_UNLIMITED)),
                (MEMORY_MEMSW_LIMIT_IN_BYTES, s(V1_UNLIMITED)),
                (MEMORY_SOFT_LIMIT_IN_BYTES, s(V1_UNLIMITED)),
                (MEMORY_SWAPPINESS, s("60")),
                (MEMORY_OOM_CONTROL, s("oom_kill_disable 0\nunder_oom 0\noom_kill 0\n")),
                (MEMORY_USAGE_IN_BYTES, s("0")),
                (MEMORY_STAT, s("cache 0\ntotal_inactive_file 0\n")),
            ]),
            "devices" => files.extend([(DEVICES_ALLOW, s("")), (DEVICES_DENY, s(""))]),
            "freezer" => files.push((FREEZER_STATE, s(FREEZER_THAWED))),
            "pids" => files.extend([(PIDS_MAX, s(MAX)), (PIDS_CURRENT, s("0"))]),
            _ => {}
        }
        for (name, content) in files {
            self.write(&dir.join(name), &content);
        }
    }

    /// Creates the kernel files in each of a v1 manager's directories.
    pub(crate) fn populate_v1(&self, dirs: &[PathBuf]) {
        for dir in dirs {
            if let Some((_, ctrl)) = V1_MOUNTS.iter().find(|(name, _)| dir.starts_with(self.v1_root(name))) {
                self.populate_v1_controller(dir, ctrl);
            } else if dir.starts_with(self.v2_root()) {
                self.populate_v2(dir);
            }
        }
    }

    /// Creates the files a new cgroup gets in the fake v2 hierarchy.
    pub(crate) fn populate_v2(&self, dir: &Path) {
        for (name, content) in [
            (CGROUP_PROCS, ""),
            (CGROUP_FREEZE, "0"),
            (CGROUP_KILL, ""),
            (CGROUP_EVENTS, "populated 0\nfrozen 0\n"),
            (CPU_WEIGHT, "100"),
            (CPU_MAX, "max 100000"),
            (CPU_MAX_BURST, "0"),
            (CPU_IDLE, "0"),
            (CPU_STAT, "usage_usec 0\n"),
            ("cpu.weight.nice", "0"),
            (CPUSET_CPUS, ""),
            (CPUSET_MEMS, ""),
            (MEMORY_MAX, MAX),
            (MEMORY_SWAP_MAX, MAX),
            (MEMORY_LOW, "0"),
            ("memory.high", MAX),
            (MEMORY_CURRENT, "0"),
            (MEMORY_STAT, "inactive_file 0\n"),
            (MEMORY_EVENTS, "oom_kill 0\n"),
            (PIDS_MAX, MAX),
            (PIDS_CURRENT, "0"),
            ("hugetlb.2MB.max", MAX),
        ] {
            self.write(&dir.join(name), content);
        }
    }
}

fn root_cpuset(root: &Path) -> (PathBuf, PathBuf) {
    (root.join(CPUSET_CPUS), root.join(CPUSET_MEMS))
}
