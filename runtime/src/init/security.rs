//! The process's security settings, through the capabilities and seccomp
//! modules: computed before fork ([`SecurityPlan::from_spec`], which also
//! compiles the seccomp filter so nothing is parsed after fork), applied in
//! the order runc uses around the uid switch:
//!
//! ```text
//! noNewPrivileges: false            noNewPrivileges: true
//!   seccomp (needs CAP_SYS_ADMIN,     -
//!   which is still held)
//!   bounding set, keepcaps            bounding set, keepcaps
//!   setgroups/setgid/setuid           setgroups/setgid/setuid
//!   process capability sets           process capability sets
//!   … wait for start …                … wait for start …
//!   -                                 no_new_privs, seccomp (last before execve)
//! ```
//!
//! With `noNewPrivileges: false` the filter is installed early, so it must
//! allow what the init does afterwards (setresuid, capset, sendmsg,
//! execve, …); every RuntimeDefault-style profile does, and runc has the
//! same constraint.

use std::path::Path;

use oci_spec::runtime::{LinuxSeccomp, Process};

use crate::capabilities::{self, CapError, CapSets};
use crate::seccomp::{self, SeccompError, SeccompProgram};

/// Errors applying capabilities or seccomp.
#[derive(Debug, thiserror::Error)]
pub enum SecurityError {
    #[error("capabilities: {0}")]
    Caps(#[from] CapError),
    #[error("seccomp: {0}")]
    Seccomp(#[from] SeccompError),
}

/// When the seccomp filter goes in, relative to the uid switch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SeccompTiming {
    /// Before dropping capabilities: installing needs `CAP_SYS_ADMIN`
    /// because no_new_privs is not set.
    BeforeUserSwitch,
    /// Right before execve, after no_new_privs.
    BeforeExec,
}

/// Capabilities and seccomp to apply, prepared before forking.
#[derive(Debug, Clone)]
pub struct SecurityPlan {
    caps: Option<(CapSets, u8)>,
    seccomp: Option<(SeccompProgram, SeccompTiming)>,
}

impl SecurityPlan {
    /// Reads `cap_last_cap` under `proc_root`, converts the spec's sets and
    /// compiles the seccomp profile.
    pub fn from_spec(
        process: &Process,
        seccomp: Option<&LinuxSeccomp>,
        proc_root: &Path,
    ) -> Result<SecurityPlan, SecurityError> {
        let caps = match process.capabilities() {
            Some(c) => {
                let last = capabilities::read_last_cap(&proc_root.join("sys/kernel/cap_last_cap"))?;
                Some((CapSets::from_spec(c, last), last))
            }
            None => None,
        };
        let timing = if process.no_new_privileges().unwrap_or(false) {
            SeccompTiming::BeforeExec
        } else {
            SeccompTiming::BeforeUserSwitch
        };
        let seccomp = seccomp.map(seccomp::compile).transpose()?.map(|p| (p, timing));
        Ok(SecurityPlan { caps, seccomp })
    }

    /// When the filter is installed, if there is one.
    pub fn seccomp_timing(&self) -> Option<SeccompTiming> {
        self.seccomp.as_ref().map(|(_, t)| *t)
    }

    /// Before the uid switch: an early seccomp filter, the bounding set,
    /// then keep permitted across the switch.
    pub fn before_setuid(&self) -> Result<(), SecurityError> {
        self.install_seccomp_at(SeccompTiming::BeforeUserSwitch)?;
        if let Some((sets, last)) = &self.caps {
            capabilities::apply_bounding(sets, *last)?;
            capabilities::keep_caps_across_setuid()?;
        }
        Ok(())
    }

    /// After the uid switch: the effective/permitted/inheritable/ambient sets.
    pub fn after_setuid(&self) -> Result<(), SecurityError> {
        if let Some((sets, _)) = &self.caps {
            capabilities::clear_keep_caps()?;
            capabilities::apply_process_sets(sets)?;
        }
        Ok(())
    }

    /// Whether a seccomp filter is to be installed.
    pub fn has_seccomp(&self) -> bool {
        self.seccomp.is_some()
    }

    /// Installs a filter planned for right before execve (the caller has
    /// set no_new_privs).
    pub fn install_seccomp(&self) -> Result<(), SecurityError> {
        self.install_seccomp_at(SeccompTiming::BeforeExec)
    }

    fn install_seccomp_at(&self, when: SeccompTiming) -> Result<(), SecurityError> {
        match &self.seccomp {
            Some((prog, timing)) if *timing == when => Ok(prog.install()?),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn process(nnp: bool) -> Process {
        serde_json::from_value(serde_json::json!({
            "args": ["sh"], "cwd": "/", "user": {"uid": 0, "gid": 0},
            "noNewPrivileges": nnp
        }))
        .unwrap()
    }

    #[test]
    fn filter_goes_in_early_only_without_no_new_privs() {
        let profile = seccomp::runtime_default_profile();
        let proc_root = Path::new("/proc");
        let late = SecurityPlan::from_spec(&process(true), Some(&profile), proc_root).unwrap();
        assert_eq!(late.seccomp_timing(), Some(SeccompTiming::BeforeExec));
        let early = SecurityPlan::from_spec(&process(false), Some(&profile), proc_root).unwrap();
        assert_eq!(early.seccomp_timing(), Some(SeccompTiming::BeforeUserSwitch));
        let none = SecurityPlan::from_spec(&process(false), None, proc_root).unwrap();
        assert_eq!(none.seccomp_timing(), None);
    }

    #[test]
    fn a_bad_profile_fails_before_fork_naming_the_problem() {
        let bad: LinuxSeccomp = serde_json::from_value(serde_json::json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ERRNO",
                          "args": [{"index": 9, "value": 1, "op": "SCMP_CMP_EQ"}]}]
        }))
        .unwrap();
        let err = SecurityPlan::from_spec(&process(true), Some(&bad), Path::new("/proc"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("argument index 9"), "{err}");
    }
}
