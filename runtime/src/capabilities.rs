//! Linux capabilities for a container process: the five OCI sets.
//!
//! The sets are turned into bit masks once ([`CapSets::from_spec`] or
//! [`parse_set`] for raw names) before the container init forks, so applying
//! them afterwards allocates nothing. Capabilities the running kernel does
//! not know (above `/proc/sys/kernel/cap_last_cap`, read with
//! [`read_last_cap`]) are skipped, as runc does; so are capabilities the
//! calling process's own bounding set lacks (no process can regain them; on
//! a host whose bounding set misses e.g. `CAP_SYS_RESOURCE` a privileged
//! container still starts, without it). Unknown names are an error naming
//! them.
//!
//! # Order in the container init (what runc does)
//!
//! ```text
//! let sets = CapSets::from_spec(&spec_caps, last_cap);   // before fork
//! capabilities::apply_bounding(&sets)?;     // needs CAP_SETPCAP: do it first
//! capabilities::keep_caps_across_setuid()?; // PR_SET_KEEPCAPS=1
//! setgroups / setgid / setuid               // permitted survives, effective is cleared
//! capabilities::clear_keep_caps()?;         // PR_SET_KEEPCAPS=0
//! capabilities::apply_process_sets(&sets)?; // capset(E, P, I), then ambient
//! ```
//!
//! When the uid does not change, [`apply`] does the bounding and process
//! sets in one call. Ambient capabilities are raised last, after the
//! inheritable and permitted sets they require; ambient set is what lets a
//! non-root process keep capabilities across its `execve`.

use std::path::{Path, PathBuf};

use oci_spec::runtime::{Capability, LinuxCapabilities};

/// The docker-compatible default capability set (14 capabilities) that the
/// kubelet's users expect of a CRI runtime (containerd's default: no
/// CAP_SYS_ADMIN).
pub const DEFAULT_CAPABILITIES: [&str; 14] = [
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
];

/// Errors of capability handling, each naming the capability, set or syscall.
#[derive(Debug, thiserror::Error)]
pub enum CapError {
    #[error("unknown capabilities: {}", .0.join(", "))]
    Unknown(Vec<String>),
    #[error("read {path}: {source}")]
    ReadLastCap { path: PathBuf, source: std::io::Error },
    #[error("invalid cap_last_cap {content:?} in {path}")]
    ParseLastCap { path: PathBuf, content: String },
    #[error("prctl(PR_CAPBSET_DROP, {name}): {source}")]
    BoundingDrop { name: &'static str, source: nix::Error },
    #[error("prctl(PR_CAPBSET_READ, {index}): {source}")]
    BoundingRead { index: u8, source: nix::Error },
    #[error("prctl(PR_SET_KEEPCAPS, {value}): {source}")]
    KeepCaps { value: u8, source: nix::Error },
    #[error("capget: {0}")]
    Capget(nix::Error),
    #[error("capset(effective={effective:#x}, permitted={permitted:#x}, inheritable={inheritable:#x}): {source}")]
    Capset {
        effective: u64,
        permitted: u64,
        inheritable: u64,
        source: nix::Error,
    },
    #[error("prctl(PR_CAP_AMBIENT_CLEAR_ALL): {0}")]
    AmbientClear(nix::Error),
    #[error("prctl(PR_CAP_AMBIENT_RAISE, {name}): {source}")]
    AmbientRaise { name: &'static str, source: nix::Error },
}

pub type Result<T, E = CapError> = std::result::Result<T, E>;

/// Every capability name the kernel defines, by number (`CAP_CHOWN` = 0).
pub const CAPABILITY_NAMES: [&str; 41] = [
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_DAC_READ_SEARCH",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETPCAP",
    "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST",
    "CAP_NET_ADMIN",
    "CAP_NET_RAW",
    "CAP_IPC_LOCK",
    "CAP_IPC_OWNER",
    "CAP_SYS_MODULE",
    "CAP_SYS_RAWIO",
    "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT",
    "CAP_SYS_ADMIN",
    "CAP_SYS_BOOT",
    "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG",
    "CAP_MKNOD",
    "CAP_LEASE",
    "CAP_AUDIT_WRITE",
    "CAP_AUDIT_CONTROL",
    "CAP_SETFCAP",
    "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN",
    "CAP_SYSLOG",
    "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND",
    "CAP_AUDIT_READ",
    "CAP_PERFMON",
    "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE",
];

/// Highest capability number this module knows.
pub const MAX_KNOWN_CAP: u8 = (CAPABILITY_NAMES.len() - 1) as u8;

/// The capability's name (`CAP_…`), for messages.
pub fn name_of(index: u8) -> &'static str {
    CAPABILITY_NAMES
        .get(usize::from(index))
        .copied()
        .unwrap_or("CAP_UNKNOWN")
}

/// Parses one capability name: `CAP_NET_ADMIN` (the OCI form), also
/// accepted without the prefix and in any case, as oci-spec does.
pub fn parse_name(name: &str) -> Option<u8> {
    let upper = name.to_ascii_uppercase();
    let bare = upper.strip_prefix("CAP_").unwrap_or(&upper);
    CAPABILITY_NAMES.iter().position(|n| &n[4..] == bare).map(|i| i as u8)
}

/// Parses names into a mask, dropping those above `last_cap`. Every
/// unknown name is reported in one error.
pub fn parse_set<I, S>(names: I, last_cap: u8) -> Result<u64>
where
    I: IntoIterator<Item = S>,
    S: AsRef<str>,
{
    let mut mask = 0u64;
    let mut unknown = Vec::new();
    for name in names {
        match parse_name(name.as_ref()) {
            Some(i) if i <= last_cap => mask |= 1 << i,
            Some(i) => tracing::debug!(cap = name_of(i), "capability unknown to the kernel, skipped"),
            None => unknown.push(name.as_ref().to_string()),
        }
    }
    if unknown.is_empty() {
        Ok(mask)
    } else {
        Err(CapError::Unknown(unknown))
    }
}

/// The capability number of an oci-spec capability.
pub fn index_of(cap: Capability) -> u8 {
    match cap {
        Capability::Chown => 0,
        Capability::DacOverride => 1,
        Capability::DacReadSearch => 2,
        Capability::Fowner => 3,
        Capability::Fsetid => 4,
        Capability::Kill => 5,
        Capability::Setgid => 6,
        Capability::Setuid => 7,
        Capability::Setpcap => 8,
        Capability::LinuxImmutable => 9,
        Capability::NetBindService => 10,
        Capability::NetBroadcast => 11,
        Capability::NetAdmin => 12,
        Capability::NetRaw => 13,
        Capability::IpcLock => 14,
        Capability::IpcOwner => 15,
        Capability::SysModule => 16,
        Capability::SysRawio => 17,
        Capability::SysChroot => 18,
        Capability::SysPtrace => 19,
        Capability::SysPacct => 20,
        Capability::SysAdmin => 21,
        Capability::SysBoot => 22,
        Capability::SysNice => 23,
        Capability::SysResource => 24,
        Capability::SysTime => 25,
        Capability::SysTtyConfig => 26,
        Capability::Mknod => 27,
        Capability::Lease => 28,
        Capability::AuditWrite => 29,
        Capability::AuditControl => 30,
        Capability::Setfcap => 31,
        Capability::MacOverride => 32,
        Capability::MacAdmin => 33,
        Capability::Syslog => 34,
        Capability::WakeAlarm => 35,
        Capability::BlockSuspend => 36,
        Capability::AuditRead => 37,
        Capability::Perfmon => 38,
        Capability::Bpf => 39,
        Capability::CheckpointRestore => 40,
    }
}

/// Reads the highest capability number the kernel knows
/// (`/proc/sys/kernel/cap_last_cap`).
pub fn read_last_cap(path: &Path) -> Result<u8> {
    let content = std::fs::read_to_string(path).map_err(|source| CapError::ReadLastCap {
        path: path.to_path_buf(),
        source,
    })?;
    content
        .trim()
        .parse::<u8>()
        .ok()
        .filter(|&n| n < 64)
        .ok_or_else(|| CapError::ParseLastCap {
            path: path.to_path_buf(),
            content,
        })
}

/// The five capability sets as masks (bit `n` = capability number `n`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CapSets {
    pub bounding: u64,
    pub effective: u64,
    pub permitted: u64,
    pub inheritable: u64,
    pub ambient: u64,
}

impl CapSets {
    /// Masks of an OCI `process.capabilities`. A missing set is empty (as
    /// in runc); capabilities above `last_cap` are skipped.
    pub fn from_spec(spec: &LinuxCapabilities, last_cap: u8) -> CapSets {
        let mask = |set: &Option<oci_spec::runtime::Capabilities>| -> u64 {
            set.iter()
                .flatten()
                .map(|&c| index_of(c))
                .filter(|&i| {
                    let known = i <= last_cap;
                    if !known {
                        tracing::debug!(cap = name_of(i), "capability unknown to the kernel, skipped");
                    }
                    known
                })
                .fold(0, |m, i| m | 1 << i)
        };
        CapSets {
            bounding: mask(spec.bounding()),
            effective: mask(spec.effective()),
            permitted: mask(spec.permitted()),
            inheritable: mask(spec.inheritable()),
            ambient: mask(spec.ambient()),
        }
    }

    /// Names of the capabilities in `mask`, for messages and tests.
    pub fn names(mask: u64) -> Vec<&'static str> {
        (0..=MAX_KNOWN_CAP)
            .filter(|&i| mask & (1 << i) != 0)
            .map(name_of)
            .collect()
    }
}

/// Drops from the bounding set every capability (up to `last_cap`) not in
/// `sets.bounding`. Needs `CAP_SETPCAP` in the effective set.
pub fn apply_bounding(sets: &CapSets, last_cap: u8) -> Result<()> {
    for index in 0..=last_cap.min(63) {
        if sets.bounding & (1 << index) != 0 {
            continue;
        }
        if !sys::bounding_has(index).map_err(|source| CapError::BoundingRead { index, source })? {
            continue;
        }
        sys::bounding_drop(index).map_err(|source| CapError::BoundingDrop {
            name: name_of(index),
            source,
        })?;
    }
    Ok(())
}

/// `PR_SET_KEEPCAPS=1`: the permitted set survives the switch from uid 0 to
/// a non-zero uid (the effective set is still cleared by the kernel;
/// [`apply_process_sets`] sets it again).
pub fn keep_caps_across_setuid() -> Result<()> {
    sys::set_keepcaps(true).map_err(|source| CapError::KeepCaps { value: 1, source })
}

/// `PR_SET_KEEPCAPS=0`, after the uid switch.
pub fn clear_keep_caps() -> Result<()> {
    sys::set_keepcaps(false).map_err(|source| CapError::KeepCaps { value: 0, source })
}

/// Sets effective, permitted and inheritable with one `capset`, then
/// replaces the ambient set. Capabilities missing from the current
/// bounding set are left out (nothing can raise them).
pub fn apply_process_sets(sets: &CapSets) -> Result<()> {
    let available = current_bounding()?;
    let effective = sets.effective & available;
    let permitted = sets.permitted & available;
    let inheritable = sets.inheritable & available;
    sys::capset(effective, permitted, inheritable).map_err(|source| CapError::Capset {
        effective,
        permitted,
        inheritable,
        source,
    })?;
    sys::ambient_clear_all().map_err(CapError::AmbientClear)?;
    let ambient = sets.ambient & available;
    for index in 0..=MAX_KNOWN_CAP {
        if ambient & (1 << index) != 0 {
            sys::ambient_raise(index).map_err(|source| CapError::AmbientRaise {
                name: name_of(index),
                source,
            })?;
        }
    }
    Ok(())
}

/// [`apply_bounding`] then [`apply_process_sets`], for a process that
/// keeps its uid.
pub fn apply(sets: &CapSets, last_cap: u8) -> Result<()> {
    apply_bounding(sets, last_cap)?;
    apply_process_sets(sets)
}

/// The calling thread's bounding set as a mask.
pub fn current_bounding() -> Result<u64> {
    let mut mask = 0;
    for index in 0..=MAX_KNOWN_CAP {
        match sys::bounding_has(index) {
            Ok(true) => mask |= 1 << index,
            Ok(false) => {}
            // EINVAL: the kernel does not know this capability.
            Err(nix::Error::EINVAL) => break,
            Err(source) => return Err(CapError::BoundingRead { index, source }),
        }
    }
    Ok(mask)
}

/// The calling thread's (effective, permitted, inheritable) sets.
pub fn current_sets() -> Result<(u64, u64, u64)> {
    sys::capget().map_err(CapError::Capget)
}

/// Thin wrappers over the raw capability syscalls.
mod sys {
    use nix::errno::Errno;

    const LINUX_CAPABILITY_VERSION_3: u32 = 0x2008_0522;

    #[repr(C)]
    struct CapHeader {
        version: u32,
        pid: libc::c_int,
    }

    #[repr(C)]
    #[derive(Default, Clone, Copy)]
    struct CapData {
        effective: u32,
        permitted: u32,
        inheritable: u32,
    }

    fn prctl(option: libc::c_int, arg2: libc::c_ulong, arg3: libc::c_ulong) -> nix::Result<i32> {
        // SAFETY: every option used here takes integer arguments only (no
        // pointers), so no memory is read or written by the kernel.
        let rc = unsafe { libc::prctl(option, arg2, arg3, 0 as libc::c_ulong, 0 as libc::c_ulong) };
        Errno::result(rc)
    }

    pub(super) fn bounding_has(index: u8) -> nix::Result<bool> {
        prctl(libc::PR_CAPBSET_READ, index.into(), 0).map(|v| v == 1)
    }

    pub(super) fn bounding_drop(index: u8) -> nix::Result<()> {
        prctl(libc::PR_CAPBSET_DROP, index.into(), 0).map(drop)
    }

    pub(super) fn set_keepcaps(keep: bool) -> nix::Result<()> {
        prctl(libc::PR_SET_KEEPCAPS, keep.into(), 0).map(drop)
    }

    pub(super) fn ambient_clear_all() -> nix::Result<()> {
        prctl(libc::PR_CAP_AMBIENT, libc::PR_CAP_AMBIENT_CLEAR_ALL as libc::c_ulong, 0).map(drop)
    }

    pub(super) fn ambient_raise(index: u8) -> nix::Result<()> {
        prctl(
            libc::PR_CAP_AMBIENT,
            libc::PR_CAP_AMBIENT_RAISE as libc::c_ulong,
            index.into(),
        )
        .map(drop)
    }

    fn split(mask: u64) -> (u32, u32) {
        (mask as u32, (mask >> 32) as u32)
    }

    pub(super) fn capset(effective: u64, permitted: u64, inheritable: u64) -> nix::Result<()> {
        let mut header = CapHeader {
            version: LINUX_CAPABILITY_VERSION_3,
            pid: 0,
        };
        let (e0, e1) = split(effective);
        let (p0, p1) = split(permitted);
        let (i0, i1) = split(inheritable);
        let data = [
            CapData {
                effective: e0,
                permitted: p0,
                inheritable: i0,
            },
            CapData {
                effective: e1,
                permitted: p1,
                inheritable: i1,
            },
        ];
        // SAFETY: header and data are valid, properly laid out (repr(C))
        // structs; version 3 makes the kernel read exactly two CapData
        // entries, which `data` holds. The kernel does not keep the pointers.
        let rc = unsafe { libc::syscall(libc::SYS_capset, &mut header, data.as_ptr()) };
        Errno::result(rc).map(drop)
    }

    pub(super) fn capget() -> nix::Result<(u64, u64, u64)> {
        let mut header = CapHeader {
            version: LINUX_CAPABILITY_VERSION_3,
            pid: 0,
        };
        let mut data = [CapData::default(); 2];
        // SAFETY: as in capset; with version 3 the kernel writes exactly two
        // CapData entries into `data`, which is large enough.
        let rc = unsafe { libc::syscall(libc::SYS_capget, &mut header, data.as_mut_ptr()) };
        Errno::result(rc)?;
        let join = |lo: u32, hi: u32| u64::from(lo) | u64::from(hi) << 32;
        Ok((
            join(data[0].effective, data[1].effective),
            join(data[0].permitted, data[1].permitted),
            join(data[0].inheritable, data[1].inheritable),
        ))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;
    use crate::cgroups::test_support::{in_child, skip_unless_root};

    #[test]
    fn names_parse_in_oci_and_bare_forms() {
        assert_eq!(parse_name("CAP_NET_ADMIN"), Some(12));
        assert_eq!(parse_name("NET_RAW"), Some(13));
        assert_eq!(parse_name("cap_sys_admin"), Some(21));
        assert_eq!(parse_name("CAP_CHECKPOINT_RESTORE"), Some(40));
        assert_eq!(parse_name("CAP_NOPE"), None);
        for (i, name) in CAPABILITY_NAMES.iter().enumerate() {
            assert_eq!(parse_name(name), Some(i as u8));
            assert_eq!(name_of(i as u8), *name);
        }
    }

    #[test]
    fn parse_set_reports_every_unknown_name() {
        let err = parse_set(["CAP_CHOWN", "CAP_BOGUS", "CAP_KILL", "CAP_WHAT"], 40).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("CAP_BOGUS") && msg.contains("CAP_WHAT"), "{msg}");
        assert!(!msg.contains("CAP_KILL"), "{msg}");
        assert_eq!(parse_set(["CAP_CHOWN", "CAP_KILL"], 40).unwrap(), 0b100001);
        // Above the kernel's last cap: skipped, not an error.
        assert_eq!(parse_set(["CAP_BPF", "CAP_KILL"], 38).unwrap(), 1 << 5);
    }

    #[test]
    fn oci_capabilities_map_to_kernel_numbers() {
        // The oci-spec name of each variant parses back to the same number.
        let json: Vec<String> = CAPABILITY_NAMES.iter().map(|n| format!("\"{n}\"")).collect();
        for (i, j) in json.iter().enumerate() {
            let cap: Capability = serde_json::from_str(j).unwrap();
            assert_eq!(index_of(cap), i as u8, "{j}");
        }
    }

    #[test]
    fn sets_from_spec_skip_unknown_to_kernel_and_missing_sets_are_empty() {
        let spec: LinuxCapabilities = serde_json::from_str(
            r#"{"bounding":["CAP_KILL","CAP_BPF","CAP_NET_RAW"],
                "effective":["CAP_KILL"],
                "permitted":["CAP_KILL","CAP_CHECKPOINT_RESTORE"]}"#,
        )
        .unwrap();
        let sets = CapSets::from_spec(&spec, 38);
        assert_eq!(sets.bounding, 1 << 5 | 1 << 13);
        assert_eq!(sets.effective, 1 << 5);
        assert_eq!(sets.permitted, 1 << 5);
        assert_eq!(sets.inheritable, 0);
        assert_eq!(sets.ambient, 0);
        assert_eq!(CapSets::names(sets.bounding), ["CAP_KILL", "CAP_NET_RAW"]);
    }

    #[test]
    fn last_cap_is_read_from_the_given_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cap_last_cap");
        std::fs::write(&path, "40\n").unwrap();
        assert_eq!(read_last_cap(&path).unwrap(), 40);
        std::fs::write(&path, "x").unwrap();
        assert!(read_last_cap(&path).unwrap_err().to_string().contains("cap_last_cap"));
        assert!(read_last_cap(&dir.path().join("missing")).is_err());
    }

    /// Parses a `Cap…:` hex line of /proc/self/status.
    fn status_mask(field: &str) -> u64 {
        let status = std::fs::read_to_string("/proc/self/status").unwrap();
        let line = status
            .lines()
            .find_map(|l| l.strip_prefix(field))
            .unwrap_or_else(|| panic!("{field} missing"));
        u64::from_str_radix(line.trim(), 16).unwrap()
    }

    #[test]
    fn root_drop_net_raw_from_all_sets() {
        if skip_unless_root("root_drop_net_raw_from_all_sets") {
            return;
        }
        in_child(|| {
            let last = read_last_cap(Path::new("/proc/sys/kernel/cap_last_cap")).map_err(|e| e.to_string())?;
            let all: HashSet<Capability> = CAPABILITY_NAMES
                .iter()
                .map(|n| serde_json::from_str::<Capability>(&format!("\"{n}\"")).unwrap())
                .filter(|c| *c != Capability::NetRaw)
                .collect();
            let spec = LinuxCapabilities::default();
            let mut spec = spec;
            spec.set_bounding(Some(all.clone()))
                .set_effective(Some(all.clone()))
                .set_permitted(Some(all.clone()))
                .set_inheritable(Some(all.clone()))
                .set_ambient(Some([Capability::Kill, Capability::Chown].into()));
            let sets = CapSets::from_spec(&spec, last);
            apply(&sets, last).map_err(|e| e.to_string())?;
            for field in ["CapEff:", "CapBnd:", "CapPrm:", "CapInh:", "CapAmb:"] {
                let mask = status_mask(field);
                if mask & (1 << 13) != 0 {
                    return Err(format!("{field} {mask:#x} still has CAP_NET_RAW"));
                }
            }
            if status_mask("CapEff:") & (1 << 21) == 0 {
                return Err("CAP_SYS_ADMIN was dropped too".into());
            }
            if status_mask("CapAmb:") != (1 << 5 | 1) {
                return Err(format!("CapAmb {:#x}", status_mask("CapAmb:")));
            }
            // The effect, not just the bits: a raw socket is refused.
            let fd = nix::sys::socket::socket(
                nix::sys::socket::AddressFamily::Inet,
                nix::sys::socket::SockType::Raw,
                nix::sys::socket::SockFlag::empty(),
                nix::sys::socket::SockProtocol::Icmp,
            );
            match fd {
                Err(nix::Error::EPERM) => Ok(()),
                other => Err(format!("raw socket without CAP_NET_RAW: {other:?}")),
            }
        })
        .unwrap();
    }

    #[test]
    fn root_caps_survive_setuid_with_keepcaps() {
        if skip_unless_root("root_caps_survive_setuid_with_keepcaps") {
            return;
        }
        in_child(|| {
            let last = read_last_cap(Path::new("/proc/sys/kernel/cap_last_cap")).map_err(|e| e.to_string())?;
            let keep =
                parse_set(["CAP_NET_BIND_SERVICE", "CAP_KILL", "CAP_SETUID"], last).map_err(|e| e.to_string())?;
            let sets = CapSets {
                bounding: keep,
                effective: keep,
                permitted: keep,
                inheritable: keep,
                ambient: 1 << 10,
            };
            apply_bounding(&sets, last).map_err(|e| e.to_string())?;
            keep_caps_across_setuid().map_err(|e| e.to_string())?;
            nix::unistd::setresuid(1000.into(), 1000.into(), 1000.into()).map_err(|e| format!("setresuid: {e}"))?;
            clear_keep_caps().map_err(|e| e.to_string())?;
            apply_process_sets(&sets).map_err(|e| e.to_string())?;
            let (eff, prm, inh) = current_sets().map_err(|e| e.to_string())?;
            if (eff, prm, inh) != (keep, keep, keep) {
                return Err(format!("after setuid: eff {eff:#x} prm {prm:#x} inh {inh:#x}"));
            }
            if status_mask("CapAmb:") != 1 << 10 {
                return Err(format!("CapAmb {:#x}", status_mask("CapAmb:")));
            }
            Ok(())
        })
        .unwrap();
    }
}
