//! Which sysctls a pod may set: only namespaced ones, and only when the
//! pod pins the namespace they live in. Written by the pin helper inside
//! the new namespaces (`/proc/sys/net` and the IPC keys show the writer's
//! namespaces), so the host's values are never touched.
//!
//! | keys | namespace |
//! |---|---|
//! | `net.*` | network |
//! | `kernel.shm*`, `kernel.msg*`, `kernel.sem`, `fs.mqueue.*` | IPC |

use std::collections::BTreeMap;

use super::SandboxError;

/// The namespace a sysctl belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Owner {
    Net,
    Ipc,
}

/// A key in dotted form (`net/ipv4/x` is accepted as `net.ipv4.x`).
pub fn normalize(key: &str) -> String {
    key.replace('/', ".")
}

/// The namespace of `key`, or `None` when it is not namespaced.
pub fn owner(key: &str) -> Option<Owner> {
    let key = normalize(key);
    if key.starts_with("net.") {
        Some(Owner::Net)
    } else if key.starts_with("kernel.shm")
        || key.starts_with("kernel.msg")
        || key == "kernel.sem"
        || key.starts_with("fs.mqueue.")
    {
        Some(Owner::Ipc)
    } else {
        None
    }
}

/// Checks every key and value: a safe name, namespaced, with its namespace
/// pinned (`net`, `ipc`), and a value without NUL or newline.
pub fn validate(sysctls: &BTreeMap<String, String>, net: bool, ipc: bool) -> Result<(), SandboxError> {
    for (key, value) in sysctls {
        let refuse = |reason: &str| {
            Err(SandboxError::Sysctl {
                key: key.clone(),
                reason: reason.to_string(),
            })
        };
        let dotted = normalize(key);
        let name_ok = !dotted.is_empty()
            && dotted.split('.').all(|part| {
                !part.is_empty()
                    && part
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
            });
        if !name_ok {
            return refuse("invalid name");
        }
        if value.contains('\0') || value.contains('\n') {
            return refuse("value contains NUL or newline");
        }
        match owner(key) {
            None => return refuse("not namespaced: it would change the whole host"),
            Some(Owner::Net) if !net => return refuse("the pod uses the host network namespace"),
            Some(Owner::Ipc) if !ipc => return refuse("the pod uses the host IPC namespace"),
            Some(_) => {}
        }
    }
    Ok(())
}

/// The `/proc/sys` path of a validated key, relative to `/proc/sys`.
pub fn relative_path(key: &str) -> String {
    normalize(key).replace('.', "/")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn namespaced_keys_pass_with_their_namespace() {
        let ok = map(&[
            ("net.ipv4.ip_unprivileged_port_start", "80"),
            ("net/ipv4/ping_group_range", "0 1000"),
            ("kernel.shmmax", "1000000"),
            ("kernel.shm_rmid_forced", "1"),
            ("kernel.msgmax", "8192"),
            ("kernel.sem", "250 32000 100 128"),
            ("fs.mqueue.msg_max", "20"),
        ]);
        validate(&ok, true, true).unwrap();
        assert_eq!(relative_path("net.ipv4.ip_forward"), "net/ipv4/ip_forward");
        assert_eq!(owner("kernel.semx"), None);
    }

    #[test]
    fn others_are_refused_naming_the_key() {
        for (key, net, ipc) in [
            ("vm.overcommit_memory", true, true),
            ("kernel.hostname", true, true),
            ("kernel.pid_max", true, true),
            ("net.ipv4.ip_forward", false, true),
            ("kernel.shmmax", true, false),
            ("net..x", true, true),
            ("net.ipv4/../../x", true, true),
        ] {
            let err = validate(&map(&[(key, "1")]), net, ipc).unwrap_err().to_string();
            assert!(err.contains(key), "{key}: {err}");
        }
        let err = validate(&map(&[("net.core.somaxconn", "1\n2")]), true, true).unwrap_err();
        assert!(err.to_string().contains("newline"), "{err}");
    }
}
