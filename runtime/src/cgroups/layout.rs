//! Where the cgroup hierarchies are: parsed from a mountinfo file
//! ([`detect`]) and a `/proc/<pid>/cgroup` file ([`ProcCgroups`]).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::files::{CGROUP_CONTROLLERS, V1_CONTROLLERS};
use super::{CgroupError, Result};

/// One mounted v1 hierarchy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct V1Hierarchy {
    /// Controllers bound to it (`["cpu", "cpuacct"]`, or `["name=systemd"]`).
    pub controllers: Vec<String>,
    /// Where it is mounted.
    pub mountpoint: PathBuf,
    /// The cgroup shown at the mountpoint (mountinfo field 4, `/` normally).
    pub root: PathBuf,
}

/// The cgroup2 mount.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct V2Mount {
    pub mountpoint: PathBuf,
    pub root: PathBuf,
    /// Controllers available at the mount (`cgroup.controllers` there).
    pub controllers: Vec<String>,
}

/// How the host's cgroups are set up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CgroupMode {
    /// v1 hierarchies only.
    Legacy,
    /// v1 hierarchies plus a cgroup2 mount (systemd's hybrid mode).
    Hybrid,
    /// cgroup2 only.
    Unified,
}

/// The host's cgroup mounts.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CgroupLayout {
    /// v1 hierarchies, in mountinfo order (first mount of each kept).
    pub v1: Vec<V1Hierarchy>,
    pub v2: Option<V2Mount>,
}

impl CgroupLayout {
    pub fn mode(&self) -> CgroupMode {
        let has_v1_controller = self
            .v1
            .iter()
            .any(|h| h.controllers.iter().any(|c| !c.starts_with("name=")));
        match (has_v1_controller, &self.v2) {
            (true, Some(_)) => CgroupMode::Hybrid,
            (true, None) => CgroupMode::Legacy,
            (false, Some(_)) => CgroupMode::Unified,
            // Only named hierarchies: treat as legacy (nothing to limit).
            (false, None) => CgroupMode::Legacy,
        }
    }

    /// The v1 hierarchy carrying `controller` (e.g. `memory`, `name=systemd`).
    pub fn v1_hierarchy(&self, controller: &str) -> Option<&V1Hierarchy> {
        self.v1.iter().find(|h| h.controllers.iter().any(|c| c == controller))
    }
}

/// Parses `mountinfo` (e.g. `/proc/self/mountinfo`) for cgroup and cgroup2
/// mounts, and reads the v2 mount's `cgroup.controllers`.
pub fn detect(mountinfo: &Path) -> Result<CgroupLayout> {
    let content = std::fs::read_to_string(mountinfo).map_err(|source| CgroupError::Read {
        path: mountinfo.to_path_buf(),
        source,
    })?;
    let mut layout = CgroupLayout::default();
    for line in content.lines() {
        let Some(m) = parse_mountinfo_line(line) else {
            continue;
        };
        match m.fstype {
            "cgroup" => {
                let controllers: Vec<String> = m
                    .super_options
                    .split(',')
                    .filter(|o| V1_CONTROLLERS.contains(o) || o.starts_with("name="))
                    .map(str::to_string)
                    .collect();
                if controllers.is_empty() {
                    continue;
                }
                let known = layout
                    .v1
                    .iter()
                    .any(|h| h.controllers.iter().any(|c| controllers.contains(c)));
                if !known {
                    layout.v1.push(V1Hierarchy {
                        controllers,
                        mountpoint: m.mountpoint,
                        root: m.root,
                    });
                }
            }
            "cgroup2" if layout.v2.is_none() => {
                let path = m.mountpoint.join(CGROUP_CONTROLLERS);
                let controllers = std::fs::read_to_string(&path)
                    .map_err(|source| CgroupError::Read { path, source })?
                    .split_whitespace()
                    .map(str::to_string)
                    .collect();
                layout.v2 = Some(V2Mount {
                    mountpoint: m.mountpoint,
                    root: m.root,
                    controllers,
                });
            }
            _ => {}
        }
    }
    if layout.v1.is_empty() && layout.v2.is_none() {
        return Err(CgroupError::NoCgroupMount {
            mountinfo: mountinfo.to_path_buf(),
        });
    }
    Ok(layout)
}

struct MountLine<'a> {
    root: PathBuf,
    mountpoint: PathBuf,
    fstype: &'a str,
    super_options: &'a str,
}

/// `36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw,errors=continue`
fn parse_mountinfo_line(line: &str) -> Option<MountLine<'_>> {
    let (pre, post) = line.split_once(" - ")?;
    let mut pre = pre.split(' ');
    let root = pre.nth(3)?;
    let mountpoint = pre.next()?;
    let mut post = post.split(' ');
    let fstype = post.next()?;
    let _source = post.next()?;
    let super_options = post.next().unwrap_or("");
    Some(MountLine {
        root: PathBuf::from(unescape(root)),
        mountpoint: PathBuf::from(unescape(mountpoint)),
        fstype,
        super_options,
    })
}

/// Undoes mountinfo's octal escapes (`\040` for a space, …).
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 3 < b.len() {
            let digits = &b[i + 1..i + 4];
            if digits.iter().all(|c| (b'0'..=b'7').contains(c)) {
                let v = digits.iter().fold(0u32, |acc, c| acc << 3 | u32::from(c - b'0'));
                if let Ok(v) = u8::try_from(v) {
                    out.push(v);
                    i += 4;
                    continue;
                }
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A process's cgroups, from `/proc/<pid>/cgroup`: per v1 controller (and
/// `name=…` hierarchy) and the v2 path. Used to resolve relative
/// `cgroupsPath`s.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProcCgroups {
    /// v1 controller → cgroup path.
    pub v1: BTreeMap<String, PathBuf>,
    /// The `0::` line.
    pub v2: Option<PathBuf>,
}

impl ProcCgroups {
    /// Reads a `/proc/<pid>/cgroup` file.
    pub fn read(path: &Path) -> Result<ProcCgroups> {
        let content = std::fs::read_to_string(path).map_err(|source| CgroupError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse(path, &content)
    }

    /// Parses `hierarchy-id:controller,list:path` lines.
    pub fn parse(path: &Path, content: &str) -> Result<ProcCgroups> {
        let mut out = ProcCgroups::default();
        for line in content.lines().filter(|l| !l.is_empty()) {
            let mut parts = line.splitn(3, ':');
            let (Some(id), Some(ctrls), Some(cg)) = (parts.next(), parts.next(), parts.next()) else {
                return Err(CgroupError::Parse {
                    path: path.to_path_buf(),
                    reason: format!("bad line {line:?}"),
                });
            };
            if id == "0" && ctrls.is_empty() {
                out.v2 = Some(PathBuf::from(cg));
            } else {
                for c in ctrls.split(',').filter(|c| !c.is_empty()) {
                    out.v1.insert(c.to_string(), PathBuf::from(cg));
                }
            }
        }
        Ok(out)
    }
}

/// The directory of cgroup `cgroup` (as seen in `/proc/<pid>/cgroup` or an
/// absolute cgroupsPath) in a hierarchy mounted at `mountpoint` whose mount
/// shows cgroup `root`.
pub(crate) fn dir_in_mount(mountpoint: &Path, root: &Path, cgroup: &Path) -> PathBuf {
    let rel = if root != Path::new("/") {
        cgroup.strip_prefix(root).unwrap_or(cgroup)
    } else {
        cgroup
    };
    super::join_cgroup(mountpoint, rel)
}

/// The cgroup path (within its hierarchy) for `cgroups_path`: itself when
/// absolute, else joined to the caller's cgroup `own`.
pub(crate) fn resolve(cgroups_path: &Path, own: Option<&Path>) -> Result<PathBuf> {
    if cgroups_path.is_absolute() {
        return Ok(cgroups_path.to_path_buf());
    }
    match own {
        Some(own) => Ok(Path::new("/")
            .join(own.strip_prefix("/").unwrap_or(own))
            .join(cgroups_path)),
        None => Err(CgroupError::InvalidPath {
            path: cgroups_path.to_path_buf(),
            reason: "relative path but the caller's own cgroup is unknown".into(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const THIS_HOST: &str = "\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
33 31 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,xattr,name=systemd
41 31 0:38 / CGROUP2 rw,relatime - cgroup2 cgroup2 rw,nsdelegate
50 31 0:40 / /sys/fs/cgroup/net_cls,net_prio rw,relatime shared:9 - cgroup cgroup rw,net_cls,net_prio
51 31 0:32 /inner /mnt/mem\\040copy rw - cgroup cgroup rw,memory
";

    fn write_mountinfo(dir: &Path, text: &str) -> PathBuf {
        let v2 = dir.join("unified");
        std::fs::create_dir_all(&v2).unwrap();
        std::fs::write(v2.join(CGROUP_CONTROLLERS), "hugetlb\n").unwrap();
        let path = dir.join("mountinfo");
        std::fs::write(&path, text.replace("CGROUP2", v2.to_str().unwrap())).unwrap();
        path
    }

    #[test]
    fn hybrid_host_is_detected_with_named_hierarchies() {
        let dir = tempfile::tempdir().unwrap();
        let layout = detect(&write_mountinfo(dir.path(), THIS_HOST)).unwrap();
        assert_eq!(layout.mode(), CgroupMode::Hybrid);
        let names: Vec<Vec<String>> = layout.v1.iter().map(|h| h.controllers.clone()).collect();
        assert_eq!(
            names,
            vec![
                vec!["cpu".to_string()],
                vec!["cpuacct".into()],
                vec!["memory".into()],
                vec!["name=systemd".into()],
                vec!["net_cls".into(), "net_prio".into()],
            ]
        );
        // The second memory mount is ignored; the first one counts.
        assert_eq!(
            layout.v1_hierarchy("memory").unwrap().mountpoint,
            PathBuf::from("/sys/fs/cgroup/memory")
        );
        assert_eq!(
            layout.v1_hierarchy("net_prio").unwrap().mountpoint,
            PathBuf::from("/sys/fs/cgroup/net_cls,net_prio")
        );
        let v2 = layout.v2.unwrap();
        assert_eq!(v2.mountpoint, dir.path().join("unified"));
        assert_eq!(v2.controllers, ["hugetlb"]);
    }

    #[test]
    fn pure_v1_and_pure_v2_and_none() {
        let dir = tempfile::tempdir().unwrap();
        let v1_only: String = THIS_HOST
            .lines()
            .filter(|l| !l.contains("cgroup2"))
            .collect::<Vec<_>>()
            .join("\n");
        let layout = detect(&write_mountinfo(dir.path(), &v1_only)).unwrap();
        assert_eq!(layout.mode(), CgroupMode::Legacy);
        let v2_only = "30 23 0:26 / CGROUP2 rw - cgroup2 cgroup2 rw\n";
        let layout = detect(&write_mountinfo(dir.path(), v2_only)).unwrap();
        assert_eq!(layout.mode(), CgroupMode::Unified);
        let none = "22 1 0:5 / /proc rw - proc proc rw\n";
        let err = detect(&write_mountinfo(dir.path(), none)).unwrap_err();
        assert!(err.to_string().contains("mountinfo"), "{err}");
    }

    #[test]
    fn escaped_mountpoints_and_roots() {
        let m = parse_mountinfo_line(THIS_HOST.lines().last().unwrap()).unwrap();
        assert_eq!(m.mountpoint, PathBuf::from("/mnt/mem copy"));
        assert_eq!(m.root, PathBuf::from("/inner"));
        assert_eq!(unescape("a\\011b\\\\"), "a\tb\\\\");
        assert_eq!(
            dir_in_mount(Path::new("/m"), Path::new("/inner"), Path::new("/inner/x/y")),
            PathBuf::from("/m/x/y")
        );
        assert_eq!(
            dir_in_mount(Path::new("/m"), Path::new("/"), Path::new("/x")),
            PathBuf::from("/m/x")
        );
    }

    #[test]
    fn proc_cgroup_parses_v1_named_and_v2() {
        let text = "9:name=systemd:/user.slice\n4:memory:/process_api/abc\n1:cpu,cpuacct:/\n0::/init.scope\n";
        let own = ProcCgroups::parse(Path::new("/proc/self/cgroup"), text).unwrap();
        assert_eq!(own.v1["memory"], PathBuf::from("/process_api/abc"));
        assert_eq!(own.v1["cpuacct"], PathBuf::from("/"));
        assert_eq!(own.v1["name=systemd"], PathBuf::from("/user.slice"));
        assert_eq!(own.v2, Some(PathBuf::from("/init.scope")));
        assert!(ProcCgroups::parse(Path::new("/p"), "garbage\n").is_err());
    }

    #[test]
    fn relative_paths_resolve_against_own_cgroup() {
        assert_eq!(resolve(Path::new("/berth/c"), None).unwrap(), PathBuf::from("/berth/c"));
        assert_eq!(
            resolve(Path::new("berth/c"), Some(Path::new("/process_api/abc"))).unwrap(),
            PathBuf::from("/process_api/abc/berth/c")
        );
        assert_eq!(
            resolve(Path::new("c"), Some(Path::new("/"))).unwrap(),
            PathBuf::from("/c")
        );
        assert!(resolve(Path::new("c"), None).is_err());
    }
}
