//! Namespaced sysctls: validated against the container's namespaces when the
//! spec is loaded, written through `/proc/sys` by the init (which sees the
//! values of its own namespaces). Host-wide sysctls are refused.

use std::collections::HashSet;
use std::path::PathBuf;

use oci_spec::runtime::LinuxNamespaceType;

/// Errors validating or writing a sysctl.
#[derive(Debug, thiserror::Error)]
pub enum SysctlError {
    #[error("sysctl {0:?} is not namespaced: refusing to change it for the whole host")]
    NotNamespaced(String),
    #[error("sysctl {key:?} needs the container to have its own {namespace} namespace")]
    NeedsNamespace { key: String, namespace: &'static str },
    #[error("sysctl {key:?}: invalid name")]
    InvalidName { key: String },
    #[error("sysctl {key:?}: write {path}: {source}")]
    Write {
        key: String,
        path: PathBuf,
        source: std::io::Error,
    },
}

const IPC_KEYS: &[&str] = &[
    "kernel.msgmax",
    "kernel.msgmnb",
    "kernel.msgmni",
    "kernel.sem",
    "kernel.shmall",
    "kernel.shmmax",
    "kernel.shmmni",
    "kernel.shm_rmid_forced",
];

/// Checks `key` is namespaced and the container has that namespace.
pub fn validate(key: &str, namespaces: &HashSet<LinuxNamespaceType>) -> Result<(), SysctlError> {
    if key.is_empty() || key.contains("..") || key.contains('/') && key.contains('.') {
        return Err(SysctlError::InvalidName { key: key.to_string() });
    }
    let key_dots = key.replace('/', ".");
    let need = |t, namespace| {
        if namespaces.contains(&t) {
            Ok(())
        } else {
            Err(SysctlError::NeedsNamespace {
                key: key.to_string(),
                namespace,
            })
        }
    };
    if IPC_KEYS.contains(&key_dots.as_str()) || key_dots.starts_with("fs.mqueue.") {
        need(LinuxNamespaceType::Ipc, "ipc")
    } else if key_dots.starts_with("net.") {
        need(LinuxNamespaceType::Network, "network")
    } else if key_dots == "kernel.hostname" || key_dots == "kernel.domainname" {
        need(LinuxNamespaceType::Uts, "uts")
    } else {
        Err(SysctlError::NotNamespaced(key.to_string()))
    }
}

/// Writes `value` to the sysctl `key` under `proc_sys` (`/proc/sys`).
pub fn apply(proc_sys: &std::path::Path, key: &str, value: &str) -> Result<(), SysctlError> {
    let path = proc_sys.join(key.replace('.', "/"));
    std::fs::write(&path, value).map_err(|source| SysctlError::Write {
        key: key.to_string(),
        path,
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_namespaced_keys_with_their_namespace_pass() {
        let ns: HashSet<_> = [LinuxNamespaceType::Ipc, LinuxNamespaceType::Network].into();
        validate("kernel.shmmax", &ns).unwrap();
        validate("fs.mqueue.msg_max", &ns).unwrap();
        validate("net.ipv4.ip_unprivileged_port_start", &ns).unwrap();
        assert!(matches!(
            validate("kernel.hostname", &ns),
            Err(SysctlError::NeedsNamespace { .. })
        ));
        assert!(matches!(
            validate("vm.overcommit_memory", &ns),
            Err(SysctlError::NotNamespaced(_))
        ));
        assert!(matches!(
            validate("net/../../x", &ns),
            Err(SysctlError::InvalidName { .. })
        ));
    }

    #[test]
    fn apply_writes_under_the_given_proc_sys() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(tmp.path().join("net/ipv4")).unwrap();
        apply(tmp.path(), "net.ipv4.ip_forward", "1").unwrap();
        assert_eq!(
            std::fs::read_to_string(tmp.path().join("net/ipv4/ip_forward")).unwrap(),
            "1"
        );
    }
}
