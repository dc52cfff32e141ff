//! The process's security settings, through the capabilities and seccomp
//! modules: computed before fork ([`SecurityPlan::from_spec`]), applied in
//! the order runc uses around the uid switch.

use std::path::Path;

use oci_spec::runtime::{LinuxSeccomp, Process};

use crate::capabilities::{self, CapError, CapSets};

/// Errors applying capabilities or seccomp.
#[derive(Debug, thiserror::Error)]
pub enum SecurityError {
    #[error("capabilities: {0}")]
    Caps(#[from] CapError),
    #[error("seccomp: {0}")]
    Seccomp(String),
}

/// Capabilities and seccomp to apply, prepared before forking.
#[derive(Debug, Clone)]
pub struct SecurityPlan {
    caps: Option<(CapSets, u8)>,
    seccomp: Option<LinuxSeccomp>,
}

impl SecurityPlan {
    /// Reads `cap_last_cap` under `proc_root` and converts the spec's sets.
    pub fn from_spec(
        process: &Process,
        seccomp: Option<&LinuxSeccomp>,
        proc_root: &Path,
    ) -> Result<SecurityPlan, SecurityError> {
        if seccomp.is_some() {
            // Refuse up front rather than run the container unconfined.
            return Err(SecurityError::Seccomp(
                "linux.seccomp is set but the seccomp module is not wired into this build yet".into(),
            ));
        }
        let caps = match process.capabilities() {
            Some(c) => {
                let last = capabilities::read_last_cap(&proc_root.join("sys/kernel/cap_last_cap"))?;
                Some((CapSets::from_spec(c, last), last))
            }
            None => None,
        };
        Ok(SecurityPlan {
            caps,
            seccomp: seccomp.cloned(),
        })
    }

    /// Before the uid switch: bounding set, then keep permitted across it.
    pub fn before_setuid(&self) -> Result<(), SecurityError> {
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

    /// Installs the seccomp filter: the very last step before execve.
    pub fn install_seccomp(&self) -> Result<(), SecurityError> {
        match &self.seccomp {
            None => Ok(()),
            Some(_) => Err(SecurityError::Seccomp(
                "linux.seccomp is set but the seccomp module is not wired into this build yet".into(),
            )),
        }
    }
}
