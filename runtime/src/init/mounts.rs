//! The spec's `mounts`: option parsing and mounting each one onto a
//! destination resolved inside the rootfs (see [`super::resolve`]).

use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::mount::MsFlags;
use nix::sys::stat::Mode;
use nix::sys::statvfs::{fstatvfs, FsFlags};
use oci_spec::runtime::Mount;

use super::resolve::{fd_path, Root};
use crate::syscall::Syscall;

/// Errors mounting the spec's mounts.
#[derive(Debug, thiserror::Error)]
pub enum MountError {
    #[error("mount {destination}: unsupported option {option:?}")]
    Option { destination: PathBuf, option: String },
    #[error("mount {destination}: resolve inside rootfs: {source}")]
    Resolve { destination: PathBuf, source: Errno },
    #[error("mount {what} on {destination}: {source}")]
    Mount {
        what: String,
        destination: PathBuf,
        source: Errno,
    },
    #[error("mount {destination}: source {source_path}: {error}")]
    Source {
        destination: PathBuf,
        source_path: PathBuf,
        error: std::io::Error,
    },
}

/// Mount options split into what mount(2) wants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountOptions {
    /// Flags set on the mount.
    pub flags: MsFlags,
    /// Flags explicitly cleared (`rw`, `suid`, …), for bind remounts.
    pub cleared: MsFlags,
    /// Propagation changes applied after the mount, in order.
    pub propagation: Vec<MsFlags>,
    /// Filesystem-specific data (`mode=755,size=65536k`).
    pub data: String,
    /// `rro`: read-only all the way down, every mount below the destination
    /// included (mount_setattr(2) with `AT_RECURSIVE`, Linux 5.12).
    pub recursive_readonly: bool,
}

impl Default for MountOptions {
    fn default() -> Self {
        MountOptions {
            flags: MsFlags::empty(),
            cleared: MsFlags::empty(),
            propagation: Vec::new(),
            data: String::new(),
            recursive_readonly: false,
        }
    }
}

impl MountOptions {
    pub fn is_bind(&self) -> bool {
        self.flags.contains(MsFlags::MS_BIND)
    }

    /// Flags that need a remount after a bind mount to take effect.
    pub fn bind_remount_flags(&self) -> MsFlags {
        self.flags
            & (MsFlags::MS_RDONLY
                | MsFlags::MS_NOSUID
                | MsFlags::MS_NODEV
                | MsFlags::MS_NOEXEC
                | MsFlags::MS_NOATIME
                | MsFlags::MS_NODIRATIME
                | MsFlags::MS_RELATIME
                | MsFlags::MS_STRICTATIME)
    }
}

/// Parses OCI mount options (runc's vocabulary).
pub fn parse_options(destination: &Path, options: &[String]) -> Result<MountOptions, MountError> {
    let mut o = MountOptions::default();
    let mut data = Vec::new();
    for opt in options {
        let (set, clear): (MsFlags, MsFlags) = match opt.as_str() {
            "ro" => (MsFlags::MS_RDONLY, MsFlags::empty()),
            "rw" => (MsFlags::empty(), MsFlags::MS_RDONLY),
            "nosuid" => (MsFlags::MS_NOSUID, MsFlags::empty()),
            "suid" => (MsFlags::empty(), MsFlags::MS_NOSUID),
            "nodev" => (MsFlags::MS_NODEV, MsFlags::empty()),
            "dev" => (MsFlags::empty(), MsFlags::MS_NODEV),
            "noexec" => (MsFlags::MS_NOEXEC, MsFlags::empty()),
            "exec" => (MsFlags::empty(), MsFlags::MS_NOEXEC),
            "sync" => (MsFlags::MS_SYNCHRONOUS, MsFlags::empty()),
            "async" => (MsFlags::empty(), MsFlags::MS_SYNCHRONOUS),
            "dirsync" => (MsFlags::MS_DIRSYNC, MsFlags::empty()),
            "remount" => (MsFlags::MS_REMOUNT, MsFlags::empty()),
            "mand" => (MsFlags::MS_MANDLOCK, MsFlags::empty()),
            "nomand" => (MsFlags::empty(), MsFlags::MS_MANDLOCK),
            "atime" => (MsFlags::empty(), MsFlags::MS_NOATIME),
            "noatime" => (MsFlags::MS_NOATIME, MsFlags::empty()),
            "diratime" => (MsFlags::empty(), MsFlags::MS_NODIRATIME),
            "nodiratime" => (MsFlags::MS_NODIRATIME, MsFlags::empty()),
            "relatime" => (MsFlags::MS_RELATIME, MsFlags::empty()),
            "norelatime" => (MsFlags::empty(), MsFlags::MS_RELATIME),
            "strictatime" => (MsFlags::MS_STRICTATIME, MsFlags::empty()),
            "nostrictatime" => (MsFlags::empty(), MsFlags::MS_STRICTATIME),
            "bind" => (MsFlags::MS_BIND, MsFlags::empty()),
            "rbind" => (MsFlags::MS_BIND | MsFlags::MS_REC, MsFlags::empty()),
            "private" | "rprivate" | "shared" | "rshared" | "slave" | "rslave" | "unbindable" | "runbindable" => {
                o.propagation.push(propagation_flags(opt).expect("listed above"));
                continue;
            }
            "rro" => {
                o.recursive_readonly = true;
                continue;
            }
            "idmap" | "ridmap" | "tmpcopyup" | "rrw" | "rnosuid" | "rnodev" | "rnoexec" => {
                return Err(MountError::Option {
                    destination: destination.to_path_buf(),
                    option: opt.clone(),
                });
            }
            _ => {
                data.push(opt.as_str());
                continue;
            }
        };
        o.flags = (o.flags | set) & !clear;
        o.cleared = (o.cleared | clear) & !set;
    }
    o.data = data.join(",");
    Ok(o)
}

/// Propagation flags for `private`, `rslave`, … (also `rootfsPropagation`).
pub fn propagation_flags(name: &str) -> Option<MsFlags> {
    Some(match name {
        "private" => MsFlags::MS_PRIVATE,
        "rprivate" => MsFlags::MS_PRIVATE | MsFlags::MS_REC,
        "shared" => MsFlags::MS_SHARED,
        "rshared" => MsFlags::MS_SHARED | MsFlags::MS_REC,
        "slave" => MsFlags::MS_SLAVE,
        "rslave" => MsFlags::MS_SLAVE | MsFlags::MS_REC,
        "unbindable" => MsFlags::MS_UNBINDABLE,
        "runbindable" => MsFlags::MS_UNBINDABLE | MsFlags::MS_REC,
        _ => return None,
    })
}

/// What the mounting code needs to know about the container.
#[derive(Debug, Clone, Copy, Default)]
pub struct MountContext {
    /// The container runs in a new user namespace (some filesystems cannot
    /// be mounted there and fall back to binds).
    pub in_user_ns: bool,
    /// The container has its own cgroup namespace.
    pub new_cgroup_ns: bool,
}

/// Mounts one spec mount inside `root`.
pub fn mount_one(sys: &dyn Syscall, root: &Root, m: &Mount, ctx: MountContext) -> Result<(), MountError> {
    let dest = m.destination();
    let opts = parse_options(dest, m.options().as_deref().unwrap_or_default())?;
    let typ = m.typ().as_deref().unwrap_or("none");
    let source = m.source().clone().unwrap_or_else(|| PathBuf::from(typ));
    let resolve_err = |source| MountError::Resolve {
        destination: dest.to_path_buf(),
        source,
    };
    let mount_err = |what: &str, source| MountError::Mount {
        what: what.to_string(),
        destination: dest.to_path_buf(),
        source,
    };

    if typ == "cgroup" || typ == "cgroup2" {
        return mount_cgroup(sys, root, dest, &opts, ctx);
    }

    if opts.is_bind() {
        let meta = std::fs::metadata(&source).map_err(|error| MountError::Source {
            destination: dest.to_path_buf(),
            source_path: source.clone(),
            error,
        })?;
        let target = if meta.is_dir() {
            root.mkdir_all(dest, Mode::from_bits_truncate(0o755))
        } else {
            root.create_file(dest, Mode::from_bits_truncate(0o644))
        }
        .map_err(resolve_err)?;
        bind(sys, root, &source, &target, dest, &opts).map_err(|e| mount_err("bind", e))?;
    } else {
        let target = root
            .mkdir_all(dest, Mode::from_bits_truncate(0o755))
            .map_err(resolve_err)?;
        let data = (!opts.data.is_empty()).then_some(opts.data.as_str());
        let flags = opts.flags & !MsFlags::MS_REMOUNT;
        match sys.mount(Some(&source), &fd_path(target.as_fd()), Some(typ), flags, data) {
            Ok(()) => {}
            // sysfs and mqueue need namespaces owned by the user namespace;
            // fall back to binding the host's (as runc does).
            Err(Errno::EPERM) if ctx.in_user_ns && (typ == "sysfs" || typ == "mqueue") => {
                let host = if typ == "sysfs" { "/sys" } else { "/dev/mqueue" };
                let fallback = MountOptions {
                    flags: opts.flags | MsFlags::MS_BIND | MsFlags::MS_REC,
                    ..opts.clone()
                };
                bind(sys, root, Path::new(host), &target, dest, &fallback).map_err(|e| mount_err(typ, e))?;
            }
            Err(e) => return Err(mount_err(typ, e)),
        }
    }
    if opts.recursive_readonly {
        // The new mount itself, and every mount below it (a bind with
        // `rbind` brings the source's submounts along, writable).
        let mounted = root.resolve(dest).map_err(resolve_err)?;
        sys.mount_setattr(&fd_path(mounted.as_fd()), true, libc::MOUNT_ATTR_RDONLY)
            .map_err(|e| mount_err("rro", e))?;
    }
    apply_propagation(sys, root, dest, &opts.propagation).map_err(|e| mount_err("propagation", e))
}

/// Whether the kernel has mount_setattr(2) (Linux 5.12), which `rro`
/// needs: asked once with arguments it must refuse, and ENOSYS told apart.
pub fn recursive_readonly_supported() -> bool {
    static SUPPORTED: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *SUPPORTED.get_or_init(|| {
        // SAFETY: a null path with size 0 and no flags: the kernel reads
        // nothing and fails the call (EFAULT, EINVAL) unless it lacks it.
        let r = unsafe {
            libc::syscall(
                libc::SYS_mount_setattr,
                -1,
                std::ptr::null::<libc::c_char>(),
                0,
                std::ptr::null::<libc::mount_attr>(),
                0,
            )
        };
        !(r < 0 && Errno::last() == Errno::ENOSYS)
    })
}

/// Bind-mounts `source` onto `target` (an `O_PATH` fd inside the root) and
/// remounts it to apply `ro`, `nosuid`, … which a bind mount ignores.
fn bind(
    sys: &dyn Syscall,
    root: &Root,
    source: &Path,
    target: &OwnedFd,
    dest: &Path,
    opts: &MountOptions,
) -> Result<(), Errno> {
    let flags = MsFlags::MS_BIND | (opts.flags & MsFlags::MS_REC);
    sys.mount(Some(source), &fd_path(target.as_fd()), None, flags, None)?;
    let extra = opts.bind_remount_flags();
    if extra.is_empty() {
        return Ok(());
    }
    // The O_PATH fd names the mount point below the new mount; reopen the
    // destination to reach the new mount itself.
    let mounted = root.resolve(dest)?;
    // Flags locked by a less privileged mount namespace must be kept.
    let locked = fstatvfs(mounted.as_fd())
        .map(|s| locked_flags(s.flags()))
        .unwrap_or_else(|_| MsFlags::empty());
    sys.mount(
        None,
        &fd_path(mounted.as_fd()),
        None,
        MsFlags::MS_REMOUNT | MsFlags::MS_BIND | extra | locked,
        None,
    )
}

fn locked_flags(f: FsFlags) -> MsFlags {
    let mut m = MsFlags::empty();
    for (s, ms) in [
        (FsFlags::ST_NOSUID, MsFlags::MS_NOSUID),
        (FsFlags::ST_NODEV, MsFlags::MS_NODEV),
        (FsFlags::ST_NOEXEC, MsFlags::MS_NOEXEC),
    ] {
        if f.contains(s) {
            m |= ms;
        }
    }
    m
}

fn apply_propagation(sys: &dyn Syscall, root: &Root, dest: &Path, propagation: &[MsFlags]) -> Result<(), Errno> {
    for p in propagation {
        let mounted = root.resolve(dest)?;
        sys.mount(None, &fd_path(mounted.as_fd()), None, *p, None)?;
    }
    Ok(())
}

/// Mounts the cgroup filesystem(s) the way the host has them: cgroup2 at
/// `dest` on a unified host; on a v1 host a tmpfs at `dest` with one mount
/// per hierarchy under it. In a cgroup namespace the kernel shows the
/// container's cgroup as the root; without one, the container's own cgroup
/// directory is bind-mounted instead of the whole hierarchy.
fn mount_cgroup(
    sys: &dyn Syscall,
    root: &Root,
    dest: &Path,
    opts: &MountOptions,
    ctx: MountContext,
) -> Result<(), MountError> {
    let err = |what: String, source| MountError::Mount {
        what,
        destination: dest.to_path_buf(),
        source,
    };
    let resolve_err = |source| MountError::Resolve {
        destination: dest.to_path_buf(),
        source,
    };
    let flags = (opts.flags & !MsFlags::MS_BIND & !MsFlags::MS_REC)
        | MsFlags::MS_NOSUID
        | MsFlags::MS_NODEV
        | MsFlags::MS_NOEXEC;
    let hierarchies = host_cgroup_hierarchies();
    let unified_host = hierarchies.len() == 1
        && hierarchies[0].fstype == "cgroup2"
        && hierarchies[0].mount_point == Path::new("/sys/fs/cgroup");
    if unified_host {
        let target = root
            .mkdir_all(dest, Mode::from_bits_truncate(0o755))
            .map_err(resolve_err)?;
        return sys
            .mount(
                Some(Path::new("cgroup2")),
                &fd_path(target.as_fd()),
                Some("cgroup2"),
                flags,
                None,
            )
            .map_err(|e| err("cgroup2".into(), e));
    }
    let target = root
        .mkdir_all(dest, Mode::from_bits_truncate(0o755))
        .map_err(resolve_err)?;
    sys.mount(
        Some(Path::new("tmpfs")),
        &fd_path(target.as_fd()),
        Some("tmpfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
        Some("mode=755"),
    )
    .map_err(|e| err("tmpfs".into(), e))?;
    let own = own_cgroup_paths();
    for h in &hierarchies {
        let Some(name) = h.mount_point.file_name() else {
            continue;
        };
        let sub = dest.join(name);
        let target = root
            .mkdir_all(&sub, Mode::from_bits_truncate(0o755))
            .map_err(resolve_err)?;
        let result = if ctx.new_cgroup_ns {
            let data = (!h.options.is_empty()).then_some(h.options.as_str());
            sys.mount(
                Some(Path::new("cgroup")),
                &fd_path(target.as_fd()),
                Some(h.fstype.as_str()),
                flags,
                data,
            )
        } else {
            let rel = own
                .iter()
                .find(|(key, _)| *key == h.cgroup_key())
                .map(|(_, p)| p.clone())
                .unwrap_or_else(|| PathBuf::from("/"));
            let src = h.mount_point.join(rel.strip_prefix("/").unwrap_or(&rel));
            let bind_opts = MountOptions {
                flags: flags | MsFlags::MS_BIND | MsFlags::MS_REC,
                ..MountOptions::default()
            };
            bind(sys, root, &src, &target, &sub, &bind_opts)
        };
        result.map_err(|e| err(format!("{} {}", h.fstype, h.options), e))?;
    }
    if opts.flags.contains(MsFlags::MS_RDONLY) {
        let mounted = root.resolve(dest).map_err(resolve_err)?;
        sys.mount(
            None,
            &fd_path(mounted.as_fd()),
            None,
            MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY | MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
            None,
        )
        .map_err(|e| err("remount ro".into(), e))?;
    }
    Ok(())
}

/// A host cgroup hierarchy, from `/proc/self/mountinfo`.
#[derive(Debug, Clone)]
struct Hierarchy {
    mount_point: PathBuf,
    fstype: String,
    /// Controller options (`cpu,cpuacct`, `name=systemd`) for v1.
    options: String,
}

impl Hierarchy {
    /// The key this hierarchy has in `/proc/self/cgroup`.
    fn cgroup_key(&self) -> String {
        if self.fstype == "cgroup2" {
            String::new()
        } else {
            self.options.clone()
        }
    }
}

fn host_cgroup_hierarchies() -> Vec<Hierarchy> {
    let Ok(info) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for line in info.lines() {
        let Some((left, right)) = line.split_once(" - ") else {
            continue;
        };
        let fields: Vec<&str> = left.split(' ').collect();
        let rfields: Vec<&str> = right.split(' ').collect();
        let (Some(mp), Some(fstype), Some(sopts)) = (fields.get(4), rfields.first(), rfields.get(2)) else {
            continue;
        };
        if *fstype != "cgroup" && *fstype != "cgroup2" {
            continue;
        }
        let options = if *fstype == "cgroup" {
            sopts
                .split(',')
                .filter(|o| !matches!(*o, "rw" | "ro" | "relatime" | "noatime" | "nosuid" | "nodev" | "noexec"))
                .collect::<Vec<_>>()
                .join(",")
        } else {
            String::new()
        };
        out.push(Hierarchy {
            mount_point: PathBuf::from(mp.replace("\\040", " ")),
            fstype: fstype.to_string(),
            options,
        });
    }
    out
}

/// `(controllers, path)` pairs from `/proc/self/cgroup`.
fn own_cgroup_paths() -> Vec<(String, PathBuf)> {
    std::fs::read_to_string("/proc/self/cgroup")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let mut it = l.splitn(3, ':');
            let _id = it.next()?;
            let ctrl = it.next()?;
            let path = it.next()?;
            Some((ctrl.to_string(), PathBuf::from(path)))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::syscall::{Call, RecordingSyscall};
    use oci_spec::runtime::MountBuilder;

    fn opts(list: &[&str]) -> MountOptions {
        parse_options(Path::new("/x"), &list.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap()
    }

    #[test]
    fn options_split_into_flags_propagation_and_data() {
        let o = opts(&["nosuid", "noexec", "rw", "mode=755", "size=65536k", "rslave"]);
        assert_eq!(o.flags, MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC);
        assert_eq!(o.cleared, MsFlags::MS_RDONLY);
        assert_eq!(o.propagation, vec![MsFlags::MS_SLAVE | MsFlags::MS_REC]);
        assert_eq!(o.data, "mode=755,size=65536k");
        let o = opts(&["rbind", "ro"]);
        assert!(o.is_bind());
        assert_eq!(o.bind_remount_flags(), MsFlags::MS_RDONLY);
        assert!(parse_options(Path::new("/x"), &["idmap".to_string()]).is_err());
        let o = opts(&["rbind", "ro", "rro"]);
        assert!(o.recursive_readonly && o.flags.contains(MsFlags::MS_RDONLY));
        assert!(!opts(&["rbind", "ro"]).recursive_readonly);
    }

    #[test]
    fn rro_bind_is_made_read_only_recursively_before_propagation() {
        let tmp = tempfile::tempdir().unwrap();
        let rootfs = tmp.path().join("rootfs");
        std::fs::create_dir_all(&rootfs).unwrap();
        let src = tmp.path().join("src");
        std::fs::create_dir(&src).unwrap();
        let root = Root::open(&rootfs).unwrap();
        let sys = RecordingSyscall::new();
        let m = MountBuilder::default()
            .destination("/mnt")
            .typ("bind")
            .source(&src)
            .options(
                ["rbind", "rprivate", "ro", "rro"]
                    .iter()
                    .map(|s| s.to_string())
                    .collect::<Vec<_>>(),
            )
            .build()
            .unwrap();
        mount_one(&sys, &root, &m, MountContext::default()).unwrap();
        let calls = sys.calls();
        let setattr = calls
            .iter()
            .position(|c| matches!(c, Call::MountSetattr { .. }))
            .unwrap_or_else(|| panic!("no mount_setattr: {calls:?}"));
        assert_eq!(
            calls[setattr],
            Call::MountSetattr {
                target: rootfs.join("mnt"),
                recursive: true,
                attr_set: libc::MOUNT_ATTR_RDONLY,
            }
        );
        let propagation = calls
            .iter()
            .position(|c| matches!(c, Call::Mount { flags, .. } if *flags == MsFlags::MS_PRIVATE | MsFlags::MS_REC))
            .unwrap();
        assert!(setattr < propagation, "{calls:?}");
    }

    #[test]
    fn ro_bind_is_remounted_and_symlinked_destination_stays_inside() {
        let tmp = tempfile::tempdir().unwrap();
        let rootfs = tmp.path().join("rootfs");
        std::fs::create_dir_all(rootfs.join("etc")).unwrap();
        std::os::unix::fs::symlink("/tmp/host-target", rootfs.join("etc/evil")).unwrap();
        let src = tmp.path().join("src");
        std::fs::create_dir(&src).unwrap();
        let root = Root::open(&rootfs).unwrap();
        let sys = RecordingSyscall::new();
        let m = MountBuilder::default()
            .destination("/etc/evil")
            .typ("bind")
            .source(&src)
            .options(vec!["rbind".to_string(), "ro".to_string(), "rprivate".to_string()])
            .build()
            .unwrap();
        mount_one(&sys, &root, &m, MountContext::default()).unwrap();
        let inside = rootfs.join("tmp/host-target");
        assert!(inside.is_dir());
        let calls = sys.mounts();
        assert_eq!(calls.len(), 3, "{calls:?}");
        assert_eq!(
            calls[0],
            Call::Mount {
                source: Some(src.clone()),
                target: inside.clone(),
                fstype: None,
                flags: MsFlags::MS_BIND | MsFlags::MS_REC,
                data: None
            }
        );
        assert!(matches!(&calls[1], Call::Mount { target, flags, .. }
            if *target == inside && flags.contains(MsFlags::MS_REMOUNT | MsFlags::MS_BIND | MsFlags::MS_RDONLY)));
        assert!(matches!(&calls[2], Call::Mount { flags, .. } if *flags == MsFlags::MS_PRIVATE | MsFlags::MS_REC));
    }

    #[test]
    fn tmpfs_mount_passes_data_and_creates_destination() {
        let tmp = tempfile::tempdir().unwrap();
        let root = Root::open(tmp.path()).unwrap();
        let sys = RecordingSyscall::new();
        let m = MountBuilder::default()
            .destination("/dev")
            .typ("tmpfs")
            .source("tmpfs")
            .options(vec!["nosuid".to_string(), "mode=755".to_string()])
            .build()
            .unwrap();
        mount_one(&sys, &root, &m, MountContext::default()).unwrap();
        assert_eq!(
            sys.mounts(),
            vec![Call::Mount {
                source: Some("tmpfs".into()),
                target: tmp.path().join("dev"),
                fstype: Some("tmpfs".into()),
                flags: MsFlags::MS_NOSUID,
                data: Some("mode=755".into())
            }]
        );
    }
}
