//! Capabilities, seccomp, AppArmor, SELinux and the privileged check.
//!
//! - **Privileged** needs the pod's `privileged` too (refused otherwise, as
//!   containerd). It means every capability, no seccomp, no masked or
//!   read-only paths (see `mounts`), writable sysfs/cgroupfs and every host
//!   device (see `devices`).
//! - **Capabilities** start from the daemon's default set; `add ALL` gives
//!   every capability berth knows, `drop ALL` empties the set, and then the
//!   individual adds and drops apply in that order (so `drop ALL` +
//!   `add NET_ADMIN` is just `CAP_NET_ADMIN`). Names are accepted with or
//!   without `CAP_`, in any case; an unknown name is refused naming it. The
//!   set goes to the bounding, effective and permitted sets;
//!   `add_ambient_capabilities` also go to inheritable and ambient (as the
//!   CRI documents), which nothing else does.
//! - **Seccomp** comes from the `seccomp` profile or, when that is unset,
//!   the deprecated `seccomp_profile_path` (`runtime/default`,
//!   `docker/default`, `unconfined`, `localhost/<path>`; empty means
//!   unconfined, as containerd's default). RuntimeDefault is berth's own
//!   profile for the container's capabilities
//!   (`berth_runtime::seccomp::runtime_default_profile_for`), Localhost a
//!   JSON OCI seccomp profile loaded from the node (a relative reference is
//!   taken under `seccomp_profile_root`); a missing or malformed file is
//!   refused naming the path.
//! - **AppArmor** is not enabled on berth's nodes: RuntimeDefault and
//!   Unconfined are accepted and do nothing, a Localhost profile is refused.
//! - **SELinux** is off: `selinux_options` and `selinux_relabel` are
//!   accepted and ignored.

use std::path::{Component, Path, PathBuf};
use std::str::FromStr;

use berth_runtime::capabilities::{name_of, parse_name, CAPABILITY_NAMES};
use k8s_cri::v1::security_profile::ProfileType;
use k8s_cri::v1::{LinuxContainerSecurityContext, PodSandboxConfig, SecurityProfile};
use oci_spec::runtime::{Capabilities, Capability, LinuxCapabilities, LinuxSeccomp};

use super::host::Host;
use crate::error::CriError;

/// Largest seccomp profile file read from the node.
pub const MAX_SECCOMP_PROFILE_SIZE: u64 = 1 << 20;

const CAPS: &str = "linux.security_context.capabilities";

/// Refuses a privileged container in a pod that is not privileged; returns
/// whether the container is privileged.
pub fn check_privileged(sc: Option<&LinuxContainerSecurityContext>, pod: &PodSandboxConfig) -> Result<bool, CriError> {
    let privileged = sc.is_some_and(|s| s.privileged);
    let pod_privileged = pod
        .linux
        .as_ref()
        .and_then(|l| l.security_context.as_ref())
        .is_some_and(|s| s.privileged);
    if privileged && !pod_privileged {
        return Err(CriError::invalid(
            "linux.security_context.privileged",
            "a privileged container needs a privileged pod sandbox (linux.security_context.privileged of the pod)",
        ));
    }
    Ok(privileged)
}

/// A capability set as a bit mask (bit n = capability number n).
pub type CapMask = u64;

fn all_caps() -> CapMask {
    (0..CAPABILITY_NAMES.len()).fold(0, |m, i| m | (1 << i))
}

fn parse_list(names: &[String], field: &'static str) -> Result<(bool, CapMask), CriError> {
    let mut all = false;
    let mut mask = 0;
    for (i, name) in names.iter().enumerate() {
        if name.eq_ignore_ascii_case("ALL") {
            all = true;
            continue;
        }
        let bit = parse_name(name)
            .ok_or_else(|| CriError::invalid(field, format!("[{i}] {name:?} is not a known capability")))?;
        mask |= 1 << bit;
    }
    Ok((all, mask))
}

/// Capability names of `defaults` as a mask, refusing unknown ones.
pub fn default_mask(defaults: &[String]) -> Result<CapMask, CriError> {
    let mut mask = 0;
    for name in defaults {
        let bit = parse_name(name)
            .ok_or_else(|| CriError::Internal(format!("default capability {name:?} is not a known capability")))?;
        mask |= 1 << bit;
    }
    Ok(mask)
}

/// The container's capability sets and the mask of its bounding set.
pub fn capabilities(
    sc: Option<&LinuxContainerSecurityContext>,
    privileged: bool,
    defaults: CapMask,
) -> Result<(LinuxCapabilities, CapMask), CriError> {
    let caps = sc.and_then(|s| s.capabilities.as_ref());
    let empty = Vec::new();
    let (add_all, add) = parse_list(
        caps.map_or(&empty, |c| &c.add_capabilities),
        "linux.security_context.capabilities.add_capabilities",
    )?;
    let (drop_all, drop) = parse_list(
        caps.map_or(&empty, |c| &c.drop_capabilities),
        "linux.security_context.capabilities.drop_capabilities",
    )?;
    let (ambient_all, ambient) = parse_list(
        caps.map_or(&empty, |c| &c.add_ambient_capabilities),
        "linux.security_context.capabilities.add_ambient_capabilities",
    )?;
    if ambient_all {
        return Err(CriError::invalid(CAPS, "add_ambient_capabilities cannot be ALL"));
    }
    let (set, ambient) = if privileged {
        (all_caps(), 0)
    } else {
        let mut set = defaults;
        if add_all {
            set = all_caps();
        }
        if drop_all {
            set = 0;
        }
        set = ((set | add | ambient) & !drop) & all_caps();
        (set, ambient & !drop)
    };
    let mut out = LinuxCapabilities::default();
    out.set_bounding(Some(to_set(set)));
    out.set_effective(Some(to_set(set)));
    out.set_permitted(Some(to_set(set)));
    out.set_inheritable(Some(to_set(ambient)));
    out.set_ambient(Some(to_set(ambient)));
    Ok((out, set))
}

fn to_set(mask: CapMask) -> Capabilities {
    (0..CAPABILITY_NAMES.len() as u8)
        .filter(|&i| mask & (1 << i) != 0)
        .filter_map(|i| Capability::from_str(&name_of(i)[4..]).ok())
        .collect()
}

/// What the seccomp settings of a container ask for.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Seccomp {
    Unconfined,
    RuntimeDefault,
    Localhost(String),
}

fn profile_of(p: &SecurityProfile, field: &'static str) -> Result<Seccomp, CriError> {
    let kind = ProfileType::try_from(p.profile_type)
        .map_err(|_| CriError::invalid(field, format!("unknown profile type {}", p.profile_type)))?;
    if kind != ProfileType::Localhost && !p.localhost_ref.is_empty() {
        return Err(CriError::invalid(
            field,
            format!(
                "localhost_ref is only valid with profile type Localhost, not {}",
                kind.as_str_name()
            ),
        ));
    }
    Ok(match kind {
        ProfileType::RuntimeDefault => Seccomp::RuntimeDefault,
        ProfileType::Unconfined => Seccomp::Unconfined,
        ProfileType::Localhost => Seccomp::Localhost(p.localhost_ref.clone()),
    })
}

fn seccomp_request(sc: Option<&LinuxContainerSecurityContext>) -> Result<Seccomp, CriError> {
    let Some(sc) = sc else { return Ok(Seccomp::Unconfined) };
    if let Some(p) = &sc.seccomp {
        return profile_of(p, "linux.security_context.seccomp");
    }
    #[allow(deprecated)]
    let path = sc.seccomp_profile_path.as_str();
    Ok(match path {
        "" | "unconfined" => Seccomp::Unconfined,
        "runtime/default" | "docker/default" => Seccomp::RuntimeDefault,
        other => match other.strip_prefix("localhost/") {
            Some(p) => Seccomp::Localhost(p.to_string()),
            None => {
                return Err(CriError::invalid(
                    "linux.security_context.seccomp_profile_path",
                    format!("{other:?} is not runtime/default, docker/default, unconfined or localhost/<path>"),
                ))
            }
        },
    })
}

fn profile_path(reference: &str, root: &Path) -> Result<PathBuf, CriError> {
    const FIELD: &str = "linux.security_context.seccomp.localhost_ref";
    let p = Path::new(reference);
    if reference.is_empty() {
        return Err(CriError::invalid(FIELD, "a Localhost profile needs a path"));
    }
    if p.components().any(|c| c == Component::ParentDir) {
        return Err(CriError::invalid(FIELD, format!("{reference}: must not contain '..'")));
    }
    Ok(if p.is_absolute() { p.to_path_buf() } else { root.join(p) })
}

/// The seccomp filter of the container: `None` for unconfined.
pub fn seccomp(
    sc: Option<&LinuxContainerSecurityContext>,
    privileged: bool,
    bounding: CapMask,
    profile_root: &Path,
    host: &dyn Host,
) -> Result<Option<LinuxSeccomp>, CriError> {
    let request = seccomp_request(sc)?;
    if privileged {
        return Ok(None);
    }
    match request {
        Seccomp::Unconfined => Ok(None),
        Seccomp::RuntimeDefault => Ok(Some(berth_runtime::seccomp::runtime_default_profile_for(bounding))),
        Seccomp::Localhost(reference) => {
            const FIELD: &str = "linux.security_context.seccomp.localhost_ref";
            let path = profile_path(&reference, profile_root)?;
            let data = host
                .read_file(&path, MAX_SECCOMP_PROFILE_SIZE)
                .map_err(|e| CriError::invalid(FIELD, format!("seccomp profile {}: {e}", path.display())))?;
            let profile: LinuxSeccomp = serde_json::from_slice(&data).map_err(|e| {
                CriError::invalid(
                    FIELD,
                    format!("seccomp profile {} is not an OCI seccomp profile: {e}", path.display()),
                )
            })?;
            Ok(Some(profile))
        }
    }
}

/// Accepts what an AppArmor-less node can honour (see the module doc).
pub fn check_apparmor(sc: Option<&LinuxContainerSecurityContext>) -> Result<(), CriError> {
    let Some(sc) = sc else { return Ok(()) };
    let localhost = match &sc.apparmor {
        Some(p) => matches!(profile_of(p, "linux.security_context.apparmor")?, Seccomp::Localhost(_)),
        None => {
            #[allow(deprecated)]
            let old = sc.apparmor_profile.as_str();
            match old {
                "" | "runtime/default" | "unconfined" => false,
                p if p.starts_with("localhost/") => true,
                other => {
                    return Err(CriError::invalid(
                        "linux.security_context.apparmor_profile",
                        format!("{other:?} is not runtime/default, unconfined or localhost/<profile>"),
                    ))
                }
            }
        }
    };
    if localhost {
        return Err(CriError::invalid(
            "linux.security_context.apparmor",
            "AppArmor is not enabled on this node; a Localhost profile cannot be applied",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use k8s_cri::v1::{Capability as CriCaps, LinuxPodSandboxConfig, LinuxSandboxSecurityContext};
    use oci_spec::runtime::LinuxSeccompAction;

    use super::*;
    use crate::oci::defaults::DEFAULT_CAPABILITIES;
    use crate::oci::test_support::FakeHost;

    fn defaults() -> CapMask {
        default_mask(&DEFAULT_CAPABILITIES.map(String::from)).unwrap()
    }

    fn sc_caps(add: &[&str], drop: &[&str]) -> LinuxContainerSecurityContext {
        LinuxContainerSecurityContext {
            capabilities: Some(CriCaps {
                add_capabilities: add.iter().map(|s| s.to_string()).collect(),
                drop_capabilities: drop.iter().map(|s| s.to_string()).collect(),
                add_ambient_capabilities: vec![],
            }),
            ..Default::default()
        }
    }

    fn names(c: &LinuxCapabilities) -> Vec<String> {
        let mut v: Vec<String> = c.bounding().iter().flatten().map(|c| format!("CAP_{c}")).collect();
        v.sort();
        v
    }

    fn caps(add: &[&str], drop: &[&str]) -> Vec<String> {
        names(&capabilities(Some(&sc_caps(add, drop)), false, defaults()).unwrap().0)
    }

    #[test]
    fn default_set_is_the_fourteen() {
        let (c, mask) = capabilities(None, false, defaults()).unwrap();
        assert_eq!(names(&c).len(), 14);
        assert_eq!(mask.count_ones(), 14);
        assert_eq!(c.effective(), c.bounding());
        assert_eq!(c.permitted(), c.bounding());
        assert!(c.ambient().as_ref().unwrap().is_empty());
    }

    #[test]
    fn add_and_drop_with_all_semantics() {
        assert_eq!(caps(&["ALL"], &["ALL"]), Vec::<String>::new());
        assert_eq!(caps(&["NET_ADMIN"], &["ALL"]), ["CAP_NET_ADMIN"]);
        let all_but_chown = caps(&["all"], &["CHOWN"]);
        assert_eq!(all_but_chown.len(), CAPABILITY_NAMES.len() - 1);
        assert!(!all_but_chown.contains(&"CAP_CHOWN".to_string()));
        let c = caps(&["CAP_SYS_ADMIN", "net_admin"], &["cap_kill", "MKNOD"]);
        assert!(c.contains(&"CAP_SYS_ADMIN".to_string()) && c.contains(&"CAP_NET_ADMIN".to_string()));
        assert!(!c.contains(&"CAP_KILL".to_string()) && !c.contains(&"CAP_MKNOD".to_string()));
        assert_eq!(c.len(), 14);
        // Drop wins over add of the same capability.
        assert!(!caps(&["SYS_TIME"], &["SYS_TIME"]).contains(&"CAP_SYS_TIME".to_string()));
    }

    #[test]
    fn unknown_capabilities_are_refused_naming_them() {
        let err = capabilities(Some(&sc_caps(&["CHOWN", "NET_ADMIN", "FLY"], &[])), false, defaults()).unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.starts_with("linux.security_context.capabilities.add_capabilities: [2] \"FLY\""),
            "{msg}"
        );
        let err = capabilities(Some(&sc_caps(&[], &["NOPE"])), false, defaults()).unwrap_err();
        assert!(err.to_string().contains("drop_capabilities"));
    }

    #[test]
    fn ambient_capabilities_reach_every_set() {
        let mut sc = sc_caps(&[], &[]);
        sc.capabilities.as_mut().unwrap().add_ambient_capabilities = vec!["NET_BIND_SERVICE".into(), "SYS_TIME".into()];
        let (c, _) = capabilities(Some(&sc), false, defaults()).unwrap();
        assert!(c.ambient().as_ref().unwrap().contains(&Capability::SysTime));
        assert!(c.inheritable().as_ref().unwrap().contains(&Capability::NetBindService));
        assert!(c.bounding().as_ref().unwrap().contains(&Capability::SysTime));
    }

    #[test]
    fn privileged_needs_a_privileged_pod_and_gets_every_capability() {
        let sc = LinuxContainerSecurityContext {
            privileged: true,
            ..Default::default()
        };
        let mut pod = PodSandboxConfig::default();
        let err = check_privileged(Some(&sc), &pod).unwrap_err();
        assert!(err.to_string().starts_with("linux.security_context.privileged"));
        pod.linux = Some(LinuxPodSandboxConfig {
            security_context: Some(LinuxSandboxSecurityContext {
                privileged: true,
                ..Default::default()
            }),
            ..Default::default()
        });
        assert!(check_privileged(Some(&sc), &pod).unwrap());
        assert!(!check_privileged(None, &pod).unwrap());
        let (c, mask) = capabilities(Some(&sc_caps(&[], &["ALL"])), true, defaults()).unwrap();
        assert_eq!(names(&c).len(), CAPABILITY_NAMES.len());
        assert_eq!(mask, all_caps());
    }

    fn with_seccomp(p: Option<SecurityProfile>, path: &str) -> LinuxContainerSecurityContext {
        #[allow(deprecated)]
        LinuxContainerSecurityContext {
            seccomp: p,
            seccomp_profile_path: path.into(),
            ..Default::default()
        }
    }

    fn profile(kind: ProfileType, r: &str) -> Option<SecurityProfile> {
        Some(SecurityProfile {
            profile_type: kind as i32,
            localhost_ref: r.into(),
        })
    }

    #[test]
    fn seccomp_profiles() {
        let host = FakeHost::default();
        let root = Path::new("/var/lib/kubelet/seccomp");
        let get =
            |sc: &LinuxContainerSecurityContext, privileged| seccomp(Some(sc), privileged, defaults(), root, &host);
        assert_eq!(seccomp(None, false, defaults(), root, &host).unwrap(), None);
        assert_eq!(get(&with_seccomp(None, ""), false).unwrap(), None);
        assert_eq!(get(&with_seccomp(None, "unconfined"), false).unwrap(), None);
        assert_eq!(
            get(
                &with_seccomp(profile(ProfileType::Unconfined, ""), "runtime/default"),
                false
            )
            .unwrap(),
            None
        );
        let rd = get(&with_seccomp(profile(ProfileType::RuntimeDefault, ""), ""), false)
            .unwrap()
            .unwrap();
        assert_eq!(rd, berth_runtime::seccomp::runtime_default_profile_for(defaults()));
        assert_eq!(
            get(&with_seccomp(None, "docker/default"), false).unwrap(),
            Some(rd.clone())
        );
        assert_eq!(get(&with_seccomp(None, "runtime/default"), false).unwrap(), Some(rd));
        // Privileged containers are unconfined whatever they ask.
        assert_eq!(
            get(&with_seccomp(profile(ProfileType::RuntimeDefault, ""), ""), true).unwrap(),
            None
        );

        let local = get(
            &with_seccomp(profile(ProfileType::Localhost, "/profiles/block-chmod.json"), ""),
            false,
        )
        .unwrap()
        .unwrap();
        assert_eq!(local.default_action(), LinuxSeccompAction::ScmpActAllow);
        assert_eq!(local.syscalls().as_ref().unwrap()[0].names(), &["chmod".to_string()]);
        let old = get(&with_seccomp(None, "localhost//profiles/block-chmod.json"), false).unwrap();
        assert_eq!(old.as_ref(), Some(&local));
        // Relative references resolve under the profile root.
        let rel = get(
            &with_seccomp(profile(ProfileType::Localhost, "block-chmod.json"), ""),
            false,
        )
        .unwrap();
        assert_eq!(rel, Some(local));
    }

    #[test]
    fn bad_seccomp_requests_are_refused_naming_the_field() {
        let host = FakeHost::default();
        let root = Path::new("/var/lib/kubelet/seccomp");
        let err = |sc: LinuxContainerSecurityContext| {
            seccomp(Some(&sc), false, defaults(), root, &host)
                .unwrap_err()
                .to_string()
        };
        let e = err(with_seccomp(
            profile(ProfileType::Localhost, "/profiles/missing.json"),
            "",
        ));
        assert!(
            e.contains("localhost_ref") && e.contains("/profiles/missing.json"),
            "{e}"
        );
        let e = err(with_seccomp(
            profile(ProfileType::Localhost, "/profiles/garbage.json"),
            "",
        ));
        assert!(e.contains("not an OCI seccomp profile"), "{e}");
        let e = err(with_seccomp(profile(ProfileType::Localhost, "../etc/x.json"), ""));
        assert!(e.contains("'..'"), "{e}");
        let e = err(with_seccomp(None, "/profiles/block-chmod.json"));
        assert!(e.starts_with("linux.security_context.seccomp_profile_path"), "{e}");
        let e = err(with_seccomp(profile(ProfileType::RuntimeDefault, "/x"), ""));
        assert!(e.contains("only valid with profile type Localhost"), "{e}");
    }

    #[test]
    fn apparmor_is_off() {
        let sc = |p: Option<SecurityProfile>, old: &str| {
            #[allow(deprecated)]
            LinuxContainerSecurityContext {
                apparmor: p,
                apparmor_profile: old.into(),
                ..Default::default()
            }
        };
        check_apparmor(None).unwrap();
        check_apparmor(Some(&sc(profile(ProfileType::RuntimeDefault, ""), ""))).unwrap();
        check_apparmor(Some(&sc(profile(ProfileType::Unconfined, ""), ""))).unwrap();
        check_apparmor(Some(&sc(None, "runtime/default"))).unwrap();
        let e = check_apparmor(Some(&sc(profile(ProfileType::Localhost, "k8s-nginx"), ""))).unwrap_err();
        assert!(e.to_string().contains("AppArmor is not enabled on this node"));
        assert!(check_apparmor(Some(&sc(None, "localhost/k8s-nginx"))).is_err());
        assert!(check_apparmor(Some(&sc(None, "bogus"))).is_err());
    }
}
