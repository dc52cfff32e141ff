//! CRI `LinuxContainerResources` → OCI `linux.resources` (also what
//! `UpdateContainerResources` applies).
//!
//! Zero means "not set" for every number, as in the CRI. Negative values are
//! refused naming the field, except a `cpu_quota` of -1 (no quota). A memory limit without a swap limit also sets
//! swap to the limit (no swap), as containerd does; the engine writes no
//! swap file where swap accounting is off. Hugepage sizes stay in the CRI
//! form (`2MB`, the OCI `pageSize`; the engine writes
//! `hugetlb.2MB.limit_in_bytes`). `unified` keys must name a file of the
//! cgroup. `oom_score_adj` is not a cgroup setting: see
//! [`oom_score_adj`], it goes to the process.

use std::collections::HashMap;

use k8s_cri::v1::LinuxContainerResources;
use oci_spec::runtime::{LinuxCpu, LinuxHugepageLimit, LinuxMemory, LinuxResources};

use crate::error::CriError;

fn non_negative(v: i64, field: &'static str) -> Result<Option<i64>, CriError> {
    match v {
        0 => Ok(None),
        v if v > 0 => Ok(Some(v)),
        v => Err(CriError::invalid(field, format!("{v} must not be negative"))),
    }
}

fn check_cpu_list(s: &str, field: &'static str) -> Result<Option<String>, CriError> {
    if s.is_empty() {
        return Ok(None);
    }
    let ok = s.split(',').all(|part| {
        let mut ends = part.splitn(2, '-');
        let is_num = |x: Option<&str>| x.is_some_and(|x| !x.is_empty() && x.bytes().all(|b| b.is_ascii_digit()));
        let first = ends.next();
        match ends.next() {
            None => is_num(first),
            Some(last) => is_num(first) && is_num(Some(last)),
        }
    });
    if !ok {
        return Err(CriError::invalid(field, format!("{s:?} is not a list like \"0-3,5\"")));
    }
    Ok(Some(s.to_string()))
}

fn check_page_size(i: usize, size: &str) -> Result<(), CriError> {
    let digits = size.trim_end_matches(|c: char| c.is_ascii_alphabetic());
    let unit = &size[digits.len()..];
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) || !matches!(unit, "KB" | "MB" | "GB") {
        return Err(CriError::invalid(
            "linux.resources.hugepage_limits",
            format!("[{i}].page_size {size:?} is not like 2MB or 1GB"),
        ));
    }
    Ok(())
}

fn check_unified_key(key: &str) -> Result<(), CriError> {
    let bad = key.is_empty()
        || key.contains('/')
        || key.contains('\0')
        || key.starts_with('.')
        || key.contains("..")
        || !key.contains('.');
    if bad {
        return Err(CriError::invalid(
            "linux.resources.unified",
            format!("key {key:?} is not a cgroup file name like memory.high"),
        ));
    }
    Ok(())
}

/// Translates CRI resources (see the module doc).
pub fn linux_resources(r: &LinuxContainerResources) -> Result<LinuxResources, CriError> {
    let mut cpu = LinuxCpu::default();
    let period = non_negative(r.cpu_period, "linux.resources.cpu_period")?;
    // -1 is "no quota" (the kubelet sends it for exclusive CPUs).
    let quota = match r.cpu_quota {
        -1 => Some(-1),
        q => non_negative(q, "linux.resources.cpu_quota")?,
    };
    let shares = non_negative(r.cpu_shares, "linux.resources.cpu_shares")?;
    cpu.set_period(period.map(|v| v as u64));
    cpu.set_quota(quota);
    cpu.set_shares(shares.map(|v| v as u64));
    cpu.set_cpus(check_cpu_list(&r.cpuset_cpus, "linux.resources.cpuset_cpus")?);
    cpu.set_mems(check_cpu_list(&r.cpuset_mems, "linux.resources.cpuset_mems")?);

    let mut memory = LinuxMemory::default();
    let limit = non_negative(r.memory_limit_in_bytes, "linux.resources.memory_limit_in_bytes")?;
    let swap = non_negative(
        r.memory_swap_limit_in_bytes,
        "linux.resources.memory_swap_limit_in_bytes",
    )?;
    if let (Some(l), Some(s)) = (limit, swap) {
        if s < l {
            return Err(CriError::invalid(
                "linux.resources.memory_swap_limit_in_bytes",
                format!("{s} is below memory_limit_in_bytes {l} (it counts memory plus swap)"),
            ));
        }
    }
    memory.set_limit(limit);
    memory.set_swap(swap.or(limit));

    let mut hugepages = Vec::with_capacity(r.hugepage_limits.len());
    for (i, h) in r.hugepage_limits.iter().enumerate() {
        check_page_size(i, &h.page_size)?;
        let limit = i64::try_from(h.limit).map_err(|_| {
            CriError::invalid(
                "linux.resources.hugepage_limits",
                format!("[{i}].limit {} is too large", h.limit),
            )
        })?;
        let mut l = LinuxHugepageLimit::default();
        l.set_page_size(h.page_size.clone());
        l.set_limit(limit);
        hugepages.push(l);
    }

    let mut unified = HashMap::with_capacity(r.unified.len());
    for (k, v) in &r.unified {
        check_unified_key(k)?;
        unified.insert(k.clone(), v.clone());
    }

    let mut out = LinuxResources::default();
    out.set_cpu(Some(cpu));
    out.set_memory(Some(memory));
    out.set_hugepage_limits((!hugepages.is_empty()).then_some(hugepages));
    out.set_unified((!unified.is_empty()).then_some(unified));
    Ok(out)
}

/// The process's `oom_score_adj`, checked to lie in the kernel's range
/// (the engine may raise it to the daemon's own value).
pub fn oom_score_adj(r: &LinuxContainerResources) -> Result<i32, CriError> {
    if !(-1000..=1000).contains(&r.oom_score_adj) {
        return Err(CriError::invalid(
            "linux.resources.oom_score_adj",
            format!("{} is outside -1000..=1000", r.oom_score_adj),
        ));
    }
    Ok(r.oom_score_adj as i32)
}

#[cfg(test)]
mod tests {
    use k8s_cri::v1::HugepageLimit;

    use super::*;

    fn full() -> LinuxContainerResources {
        LinuxContainerResources {
            cpu_period: 100_000,
            cpu_quota: 50_000,
            cpu_shares: 512,
            memory_limit_in_bytes: 64 << 20,
            oom_score_adj: 900,
            cpuset_cpus: "0-1,3".into(),
            cpuset_mems: "0".into(),
            hugepage_limits: vec![HugepageLimit {
                page_size: "2MB".into(),
                limit: 4 << 20,
            }],
            unified: [("memory.high".to_string(), "50000000".to_string())].into(),
            memory_swap_limit_in_bytes: 0,
        }
    }

    #[test]
    fn every_field_is_translated() {
        let r = linux_resources(&full()).unwrap();
        let cpu = r.cpu().as_ref().unwrap();
        assert_eq!(
            (cpu.period(), cpu.quota(), cpu.shares()),
            (Some(100_000), Some(50_000), Some(512))
        );
        assert_eq!(
            (cpu.cpus().as_deref(), cpu.mems().as_deref()),
            (Some("0-1,3"), Some("0"))
        );
        let mem = r.memory().as_ref().unwrap();
        assert_eq!(mem.limit(), Some(64 << 20));
        assert_eq!(mem.swap(), Some(64 << 20), "no swap unless asked");
        let h = &r.hugepage_limits().as_ref().unwrap()[0];
        assert_eq!((h.page_size().as_str(), h.limit()), ("2MB", 4 << 20));
        assert_eq!(r.unified().as_ref().unwrap()["memory.high"], "50000000");
        assert_eq!(oom_score_adj(&full()).unwrap(), 900);
    }

    #[test]
    fn zero_means_unset() {
        let r = linux_resources(&LinuxContainerResources::default()).unwrap();
        let cpu = r.cpu().as_ref().unwrap();
        assert_eq!(
            (cpu.period(), cpu.quota(), cpu.shares(), cpu.cpus().clone()),
            (None, None, None, None)
        );
        let mem = r.memory().as_ref().unwrap();
        assert_eq!((mem.limit(), mem.swap()), (None, None));
        assert!(r.hugepage_limits().is_none() && r.unified().is_none());
    }

    #[test]
    fn explicit_swap_is_kept() {
        let mut r = full();
        r.cpu_quota = -1;
        assert_eq!(linux_resources(&r).unwrap().cpu().as_ref().unwrap().quota(), Some(-1));
        r.memory_swap_limit_in_bytes = 128 << 20;
        assert_eq!(
            linux_resources(&r).unwrap().memory().as_ref().unwrap().swap(),
            Some(128 << 20)
        );
        r.memory_swap_limit_in_bytes = 1 << 20;
        assert!(linux_resources(&r)
            .unwrap_err()
            .to_string()
            .contains("memory_swap_limit_in_bytes"));
    }

    #[test]
    fn bad_values_are_refused_naming_the_field() {
        type Edit = fn(&mut LinuxContainerResources);
        let cases: Vec<(Edit, &str)> = vec![
            (|r| r.cpu_period = -1, "linux.resources.cpu_period"),
            (|r| r.cpu_quota = -5, "linux.resources.cpu_quota"),
            (|r| r.cpu_shares = -2, "linux.resources.cpu_shares"),
            (
                |r| r.memory_limit_in_bytes = -1,
                "linux.resources.memory_limit_in_bytes",
            ),
            (
                |r| r.memory_swap_limit_in_bytes = -1,
                "linux.resources.memory_swap_limit_in_bytes",
            ),
            (|r| r.cpuset_cpus = "0-".into(), "linux.resources.cpuset_cpus"),
            (|r| r.cpuset_mems = "a".into(), "linux.resources.cpuset_mems"),
            (
                |r| r.hugepage_limits[0].page_size = "2XB".into(),
                "linux.resources.hugepage_limits: [0].page_size",
            ),
            (
                |r| r.hugepage_limits[0].limit = u64::MAX,
                "linux.resources.hugepage_limits: [0].limit",
            ),
            (
                |r| r.unified = [("../x".to_string(), "1".to_string())].into(),
                "linux.resources.unified",
            ),
        ];
        for (edit, field) in cases {
            let mut r = full();
            edit(&mut r);
            let err = linux_resources(&r).unwrap_err();
            assert!(matches!(err, CriError::InvalidArgument { .. }));
            assert!(err.to_string().starts_with(field), "{err} should name {field}");
        }
        let mut r = full();
        r.oom_score_adj = 1001;
        assert!(oom_score_adj(&r)
            .unwrap_err()
            .to_string()
            .starts_with("linux.resources.oom_score_adj"));
    }
}
