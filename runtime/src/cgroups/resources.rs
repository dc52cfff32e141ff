//! Pure conversions from OCI resource values to cgroupfs file contents,
//! shared by the v1 and v2 managers (and unit-tested without any tree).

use oci_spec::runtime::{LinuxDeviceCgroup, LinuxDeviceType};

use super::files::{DEVICES_ALLOW, DEVICES_DENY, MAX};
use super::{CgroupError, Result};

/// v1 `cpu.shares` → v2 `cpu.weight` as runc converts it: the v1 range
/// [2, 262144] maps linearly onto [1, 10000]; 0 means "not set".
pub fn convert_shares_to_weight(shares: u64) -> u64 {
    if shares == 0 {
        return 0;
    }
    let shares = shares.clamp(2, 262_144);
    1 + ((shares - 2) * 9999) / 262_142
}

/// OCI `memory.swap` (v1 semantics: memory + swap) → v2 `memory.swap.max`
/// (swap alone), as runc converts it. Returns `None` when swap is not to be
/// written, `Some(-1)` for unlimited.
pub fn convert_memory_swap_to_v2(swap: Option<i64>, memory: Option<i64>) -> Result<Option<i64>> {
    let memory = memory.unwrap_or(0);
    let swap = swap.unwrap_or(0);
    // Memory unlimited and swap unset: both unlimited (cgroup v1 behaviour).
    if memory == -1 && swap == 0 {
        return Ok(Some(-1));
    }
    match swap {
        0 => return Ok(None),
        -1 => return Ok(Some(-1)),
        _ => {}
    }
    if memory == 0 || memory == -1 {
        return Err(CgroupError::InvalidResources(
            "memory.swap set without a memory limit".into(),
        ));
    }
    if memory < 0 || swap < 0 {
        return Err(CgroupError::InvalidResources(format!(
            "invalid memory {memory} / swap {swap}"
        )));
    }
    if swap < memory {
        return Err(CgroupError::InvalidResources(format!(
            "memory.swap ({swap}) must be >= memory.limit ({memory})"
        )));
    }
    Ok(Some(swap - memory))
}

/// v2 `cpu.max` content for an OCI quota and period, as runc writes it:
/// `None` when neither is set; a quota ≤ 0 means `max`.
pub fn cpu_max(quota: Option<i64>, period: Option<u64>) -> Option<String> {
    let quota = quota.unwrap_or(0);
    let period = period.unwrap_or(0);
    if quota == 0 && period == 0 {
        return None;
    }
    let mut s = if quota > 0 { quota.to_string() } else { MAX.to_string() };
    if period != 0 {
        s.push(' ');
        s.push_str(&period.to_string());
    }
    Some(s)
}

/// A memory limit for v2 files: negative → `max`.
pub fn v2_limit(v: i64) -> String {
    if v < 0 {
        MAX.to_string()
    } else {
        v.to_string()
    }
}

/// `pids.max` content: a limit ≤ 0 means unlimited.
pub fn pids_max(limit: i64) -> String {
    if limit > 0 {
        limit.to_string()
    } else {
        MAX.to_string()
    }
}

/// Checks a hugepage size (`2MB`, `1GB`, `64KB`) before it becomes part of
/// a file name.
pub fn validate_page_size(size: &str) -> Result<()> {
    let digits = size.trim_end_matches(|c: char| c.is_ascii_alphabetic());
    let unit = &size[digits.len()..];
    let ok = !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) && matches!(unit, "KB" | "MB" | "GB");
    if ok {
        Ok(())
    } else {
        Err(CgroupError::InvalidResources(format!("invalid hugepage size {size:?}")))
    }
}

/// Checks a `unified` key: it must name a file directly in the cgroup.
pub fn validate_unified_key(key: &str) -> Result<()> {
    let reason = if key.is_empty() {
        "empty"
    } else if key.contains('/') {
        "contains '/'"
    } else if key == "." || key == ".." || key.contains("..") {
        "contains '..'"
    } else if key.contains('\0') {
        "contains NUL"
    } else if !key.contains('.') {
        "not a controller file name"
    } else {
        return Ok(());
    };
    Err(CgroupError::UnifiedKey {
        key: key.to_string(),
        reason: reason.into(),
    })
}

/// v1 device rule → (`devices.allow`|`devices.deny`, `"c 1:3 rwm"`).
pub fn device_rule(dev: &LinuxDeviceCgroup) -> Result<(&'static str, String)> {
    let typ = match dev.typ().unwrap_or(LinuxDeviceType::A) {
        LinuxDeviceType::A => 'a',
        LinuxDeviceType::B => 'b',
        LinuxDeviceType::C | LinuxDeviceType::U => 'c',
        LinuxDeviceType::P => {
            return Err(CgroupError::InvalidResources(
                "device rule of type p (fifo) has no cgroup meaning".into(),
            ))
        }
    };
    let num = |n: Option<i64>| match n {
        Some(n) if n >= 0 => n.to_string(),
        _ => "*".to_string(),
    };
    let access = dev.access().clone().unwrap_or_else(|| "rwm".into());
    if access.is_empty() || !access.chars().all(|c| matches!(c, 'r' | 'w' | 'm')) {
        return Err(CgroupError::InvalidResources(format!(
            "invalid device access {access:?}"
        )));
    }
    let file = if dev.allow() { DEVICES_ALLOW } else { DEVICES_DENY };
    Ok((
        file,
        format!("{typ} {}:{} {access}", num(dev.major()), num(dev.minor())),
    ))
}

#[cfg(test)]
mod tests {
    use oci_spec::runtime::LinuxDeviceCgroupBuilder;

    use super::*;

    #[test]
    fn shares_convert_like_runc() {
        assert_eq!(convert_shares_to_weight(0), 0);
        assert_eq!(convert_shares_to_weight(2), 1);
        assert_eq!(convert_shares_to_weight(1024), 39);
        assert_eq!(convert_shares_to_weight(262_144), 10_000);
        assert_eq!(convert_shares_to_weight(1), 1);
        assert_eq!(convert_shares_to_weight(u64::MAX), 10_000);
    }

    #[test]
    fn swap_converts_like_runc() {
        assert_eq!(convert_memory_swap_to_v2(None, None).unwrap(), None);
        assert_eq!(convert_memory_swap_to_v2(None, Some(-1)).unwrap(), Some(-1));
        assert_eq!(convert_memory_swap_to_v2(Some(-1), Some(100)).unwrap(), Some(-1));
        assert_eq!(convert_memory_swap_to_v2(None, Some(100)).unwrap(), None);
        assert_eq!(convert_memory_swap_to_v2(Some(300), Some(100)).unwrap(), Some(200));
        assert_eq!(convert_memory_swap_to_v2(Some(100), Some(100)).unwrap(), Some(0));
        assert!(convert_memory_swap_to_v2(Some(50), Some(100)).is_err());
        assert!(convert_memory_swap_to_v2(Some(50), None).is_err());
        assert!(convert_memory_swap_to_v2(Some(50), Some(-1)).is_err());
    }

    #[test]
    fn cpu_max_and_limits() {
        assert_eq!(cpu_max(None, None), None);
        assert_eq!(cpu_max(Some(50_000), None).as_deref(), Some("50000"));
        assert_eq!(cpu_max(Some(50_000), Some(100_000)).as_deref(), Some("50000 100000"));
        assert_eq!(cpu_max(Some(-1), Some(100_000)).as_deref(), Some("max 100000"));
        assert_eq!(cpu_max(None, Some(20_000)).as_deref(), Some("max 20000"));
        assert_eq!(v2_limit(-1), "max");
        assert_eq!(v2_limit(4096), "4096");
        assert_eq!(pids_max(0), "max");
        assert_eq!(pids_max(-1), "max");
        assert_eq!(pids_max(32), "32");
    }

    #[test]
    fn page_sizes_and_unified_keys_are_checked() {
        for ok in ["2MB", "1GB", "64KB"] {
            validate_page_size(ok).unwrap();
        }
        for bad in ["", "MB", "2mb", "2MB/../x", "../2MB", "2TB"] {
            assert!(validate_page_size(bad).is_err(), "{bad}");
        }
        for ok in ["memory.high", "cpu.weight.nice", "io.max"] {
            validate_unified_key(ok).unwrap();
        }
        for bad in ["", "..", "../memory.max", "a/b", "memory..max", "cgroupprocs", "x\0.y"] {
            let err = validate_unified_key(bad).unwrap_err();
            assert!(err.to_string().contains("refused"), "{bad}: {err}");
        }
    }

    #[test]
    fn device_rules_render_like_the_kernel_expects() {
        let deny_all = LinuxDeviceCgroupBuilder::default()
            .allow(false)
            .access("rwm")
            .build()
            .unwrap();
        assert_eq!(device_rule(&deny_all).unwrap(), (DEVICES_DENY, "a *:* rwm".to_string()));
        let null = LinuxDeviceCgroupBuilder::default()
            .allow(true)
            .typ(LinuxDeviceType::C)
            .major(1)
            .minor(3)
            .access("rw")
            .build()
            .unwrap();
        assert_eq!(device_rule(&null).unwrap(), (DEVICES_ALLOW, "c 1:3 rw".to_string()));
        let any_minor = LinuxDeviceCgroupBuilder::default()
            .allow(true)
            .typ(LinuxDeviceType::B)
            .major(8)
            .build()
            .unwrap();
        assert_eq!(device_rule(&any_minor).unwrap().1, "b 8:* rwm");
        let bad = LinuxDeviceCgroupBuilder::default()
            .allow(true)
            .access("rwx")
            .build()
            .unwrap();
        assert!(device_rule(&bad).is_err());
    }
}
