//! Load and validate an OCI bundle's `config.json`.
//!
//! Everything that can be checked before a process is forked is checked
//! here, so a bad spec fails `create` with a message naming the field,
//! instead of failing half-way through container setup.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use oci_spec::runtime::{LinuxNamespaceType, Spec};

use crate::init::sysctl;

/// Errors loading or validating a bundle.
#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    #[error("bundle {bundle}: cannot read config.json: {source}")]
    Load {
        bundle: PathBuf,
        source: oci_spec::OciSpecError,
    },
    #[error("bundle {bundle}: {reason}")]
    Invalid { bundle: PathBuf, reason: String },
}

/// A loaded bundle: its directory, its spec and the absolute rootfs path.
#[derive(Debug, Clone)]
pub struct Bundle {
    pub dir: PathBuf,
    pub spec: Spec,
    pub rootfs: PathBuf,
}

impl Bundle {
    /// Reads `<dir>/config.json` and validates it for `create`.
    pub fn load(dir: &Path) -> Result<Bundle, SpecError> {
        let dir = std::path::absolute(dir).unwrap_or_else(|_| dir.to_path_buf());
        let spec = Spec::load(dir.join("config.json")).map_err(|source| SpecError::Load {
            bundle: dir.clone(),
            source,
        })?;
        let rootfs = validate(&dir, &spec)?;
        Ok(Bundle { dir, spec, rootfs })
    }
}

fn invalid(bundle: &Path, reason: impl Into<String>) -> SpecError {
    SpecError::Invalid {
        bundle: bundle.to_path_buf(),
        reason: reason.into(),
    }
}

/// Validates `spec` and returns the absolute rootfs path.
pub fn validate(bundle: &Path, spec: &Spec) -> Result<PathBuf, SpecError> {
    let root = spec.root().as_ref().ok_or_else(|| invalid(bundle, "root is missing"))?;
    let rootfs = if root.path().is_absolute() {
        root.path().clone()
    } else {
        bundle.join(root.path())
    };
    if !rootfs.is_dir() {
        return Err(invalid(
            bundle,
            format!("root.path {} is not a directory", rootfs.display()),
        ));
    }
    let process = spec
        .process()
        .as_ref()
        .ok_or_else(|| invalid(bundle, "process is missing"))?;
    validate_process(bundle, process)?;

    let linux = spec
        .linux()
        .as_ref()
        .ok_or_else(|| invalid(bundle, "linux section is missing"))?;
    let mut seen = HashSet::new();
    for ns in linux.namespaces().iter().flatten() {
        if !seen.insert(ns.typ()) {
            return Err(invalid(bundle, format!("namespace {} listed twice", ns.typ())));
        }
        if ns.typ() == LinuxNamespaceType::Time {
            return Err(invalid(bundle, "time namespaces are not supported"));
        }
        if let Some(path) = ns.path() {
            if !path.is_absolute() {
                return Err(invalid(
                    bundle,
                    format!("namespace {} path {} is not absolute", ns.typ(), path.display()),
                ));
            }
        }
    }
    let new_userns = linux
        .namespaces()
        .iter()
        .flatten()
        .any(|ns| ns.typ() == LinuxNamespaceType::User && ns.path().is_none());
    let has_maps = linux.uid_mappings().as_ref().is_some_and(|m| !m.is_empty())
        && linux.gid_mappings().as_ref().is_some_and(|m| !m.is_empty());
    if new_userns && !has_maps {
        return Err(invalid(
            bundle,
            "a new user namespace needs uidMappings and gidMappings",
        ));
    }
    if !seen.contains(&LinuxNamespaceType::User)
        && (linux.uid_mappings().as_ref().is_some_and(|m| !m.is_empty())
            || linux.gid_mappings().as_ref().is_some_and(|m| !m.is_empty()))
    {
        return Err(invalid(
            bundle,
            "uidMappings/gidMappings given without a user namespace",
        ));
    }
    if let Some(sysctls) = linux.sysctl() {
        for key in sysctls.keys() {
            sysctl::validate(key, &seen).map_err(|e| invalid(bundle, e.to_string()))?;
        }
    }
    if let Some(hostname) = spec.hostname() {
        if !hostname.is_empty() && !seen.contains(&LinuxNamespaceType::Uts) {
            return Err(invalid(bundle, "hostname set without a UTS namespace"));
        }
    }
    for m in spec.mounts().iter().flatten() {
        if !m.destination().is_absolute() {
            return Err(invalid(
                bundle,
                format!("mount destination {} is not absolute", m.destination().display()),
            ));
        }
    }
    match linux.rootfs_propagation().as_deref() {
        None | Some("") | Some("private") | Some("rprivate") | Some("slave") | Some("rslave") | Some("shared")
        | Some("rshared") | Some("unbindable") | Some("runbindable") => {}
        Some(other) => {
            return Err(invalid(bundle, format!("unknown rootfsPropagation {other:?}")));
        }
    }
    Ok(rootfs)
}

/// Checks the parts of a process that `create` and `exec` share.
pub fn validate_process(bundle: &Path, process: &oci_spec::runtime::Process) -> Result<(), SpecError> {
    let args = process.args().as_deref().unwrap_or_default();
    if args.is_empty() || args[0].is_empty() {
        return Err(invalid(bundle, "process.args must not be empty"));
    }
    if !process.cwd().is_absolute() {
        return Err(invalid(
            bundle,
            format!("process.cwd {} is not absolute", process.cwd().display()),
        ));
    }
    for kv in process.env().iter().flatten() {
        if !kv.contains('=') {
            return Err(invalid(bundle, format!("env entry {kv:?} has no '='")));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use oci_spec::runtime::{LinuxBuilder, LinuxNamespaceBuilder, ProcessBuilder, RootBuilder, SpecBuilder};

    fn spec_with(ns: &[LinuxNamespaceType], sysctl: Option<(&str, &str)>) -> Spec {
        let namespaces = ns
            .iter()
            .map(|t| LinuxNamespaceBuilder::default().typ(*t).build().unwrap())
            .collect::<Vec<_>>();
        let mut linux = LinuxBuilder::default().namespaces(namespaces);
        if let Some((k, v)) = sysctl {
            linux = linux.sysctl(
                [(k.to_string(), v.to_string())]
                    .into_iter()
                    .collect::<std::collections::HashMap<_, _>>(),
            );
        }
        SpecBuilder::default()
            .hostname("")
            .root(RootBuilder::default().path("rootfs").build().unwrap())
            .process(
                ProcessBuilder::default()
                    .args(vec!["sh".to_string()])
                    .cwd("/")
                    .build()
                    .unwrap(),
            )
            .linux(linux.build().unwrap())
            .build()
            .unwrap()
    }

    #[test]
    fn rejects_missing_rootfs_and_bad_sysctl() {
        let dir = tempfile::tempdir().unwrap();
        let spec = spec_with(&[LinuxNamespaceType::Mount], None);
        let err = validate(dir.path(), &spec).unwrap_err().to_string();
        assert!(err.contains("not a directory"), "{err}");

        std::fs::create_dir(dir.path().join("rootfs")).unwrap();
        validate(dir.path(), &spec).unwrap();

        let spec = spec_with(&[LinuxNamespaceType::Mount], Some(("kernel.pid_max", "10")));
        let err = validate(dir.path(), &spec).unwrap_err().to_string();
        assert!(err.contains("kernel.pid_max"), "{err}");

        let spec = spec_with(&[LinuxNamespaceType::Mount], Some(("net.ipv4.ip_forward", "1")));
        let err = validate(dir.path(), &spec).unwrap_err().to_string();
        assert!(err.contains("network namespace"), "{err}");

        let spec = spec_with(
            &[LinuxNamespaceType::Mount, LinuxNamespaceType::Network],
            Some(("net.ipv4.ip_forward", "1")),
        );
        validate(dir.path(), &spec).unwrap();
    }

    #[test]
    fn rejects_user_namespace_without_maps() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("rootfs")).unwrap();
        let spec = spec_with(&[LinuxNamespaceType::User], None);
        let err = validate(dir.path(), &spec).unwrap_err().to_string();
        assert!(err.contains("uidMappings"), "{err}");
    }
}
