//! The container's namespaces.
//!
//! | namespace | joined / new |
//! |-----------|--------------|
//! | network, IPC, UTS | the pod's pinned namespace files; none listed (the host's) when the pod has none |
//! | PID | `POD`: the pod's shared PID namespace; if the pod has none, the host's for a host-PID pod, else a new one · `CONTAINER`: new · `NODE`: host · `TARGET`: the target container's (an input) |
//! | mount | always new |
//! | cgroup | new on cgroup v2 hosts for unprivileged containers (containerd), else host |
//! | user | `userns_options` with mode `POD` is refused for now; `NODE` is the host's |

use std::path::{Path, PathBuf};

use k8s_cri::v1::{LinuxContainerSecurityContext, NamespaceMode};
use oci_spec::runtime::{LinuxNamespace, LinuxNamespaceType};

use super::SandboxContext;
use crate::error::CriError;

const NS_FIELD: &str = "linux.security_context.namespace_options";

fn ns(typ: LinuxNamespaceType, path: Option<&Path>) -> LinuxNamespace {
    let mut n = LinuxNamespace::default();
    n.set_typ(typ);
    n.set_path(path.map(Path::to_path_buf));
    n
}

fn mode(raw: i32, field: &'static str) -> Result<NamespaceMode, CriError> {
    NamespaceMode::try_from(raw).map_err(|_| CriError::invalid(field, format!("unknown namespace mode {raw}")))
}

fn pod_pid_mode(sandbox: &SandboxContext) -> NamespaceMode {
    sandbox
        .config
        .linux
        .as_ref()
        .and_then(|l| l.security_context.as_ref())
        .and_then(|s| s.namespace_options.as_ref())
        .and_then(|n| NamespaceMode::try_from(n.pid).ok())
        .unwrap_or(NamespaceMode::Pod)
}

/// Builds the namespace list (see the module doc).
pub fn namespaces(
    sc: Option<&LinuxContainerSecurityContext>,
    sandbox: &SandboxContext,
    target_pid_ns: Option<&PathBuf>,
    cgroup_namespace: bool,
    privileged: bool,
) -> Result<Vec<LinuxNamespace>, CriError> {
    use LinuxNamespaceType as T;
    let opts = sc.and_then(|s| s.namespace_options.clone()).unwrap_or_default();
    if let Some(userns) = &opts.userns_options {
        match mode(
            userns.mode,
            "linux.security_context.namespace_options.userns_options.mode",
        )? {
            NamespaceMode::Node => {}
            NamespaceMode::Pod => {
                return Err(CriError::invalid(
                    "linux.security_context.namespace_options.userns_options",
                    "user namespaces (hostUsers: false) are not supported by berth yet",
                ))
            }
            other => {
                return Err(CriError::invalid(
                    "linux.security_context.namespace_options.userns_options.mode",
                    format!("{} is not a user namespace mode (POD or NODE)", other.as_str_name()),
                ))
            }
        }
    }
    let mut out = Vec::new();
    match mode(opts.pid, "linux.security_context.namespace_options.pid")? {
        NamespaceMode::Pod => match &sandbox.pidns {
            Some(p) => out.push(ns(T::Pid, Some(p))),
            None if pod_pid_mode(sandbox) == NamespaceMode::Node => {}
            None => out.push(ns(T::Pid, None)),
        },
        NamespaceMode::Container => out.push(ns(T::Pid, None)),
        NamespaceMode::Node => {}
        NamespaceMode::Target => {
            let Some(p) = target_pid_ns else {
                return Err(CriError::invalid(
                    NS_FIELD,
                    format!(
                        "target_id {:?}: no PID namespace of that container is known",
                        opts.target_id
                    ),
                ));
            };
            out.push(ns(T::Pid, Some(p)));
        }
    }
    for (typ, path) in [
        (T::Network, &sandbox.netns),
        (T::Ipc, &sandbox.ipcns),
        (T::Uts, &sandbox.utsns),
    ] {
        if let Some(p) = path {
            out.push(ns(typ, Some(p)));
        }
    }
    out.push(ns(T::Mount, None));
    if cgroup_namespace && !privileged {
        out.push(ns(T::Cgroup, None));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use k8s_cri::v1::{
        LinuxPodSandboxConfig, LinuxSandboxSecurityContext, NamespaceOption, PodSandboxConfig, UserNamespace,
    };

    use super::*;
    use crate::oci::test_support::sandbox;

    fn sc(pid: NamespaceMode) -> LinuxContainerSecurityContext {
        LinuxContainerSecurityContext {
            namespace_options: Some(NamespaceOption {
                pid: pid as i32,
                target_id: "abc".into(),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn list(v: &[LinuxNamespace]) -> Vec<(LinuxNamespaceType, Option<String>)> {
        v.iter()
            .map(|n| (n.typ(), n.path().as_ref().map(|p| p.display().to_string())))
            .collect()
    }

    fn p(s: &str) -> Option<String> {
        Some(s.to_string())
    }

    #[test]
    fn pod_namespaces_are_joined() {
        use LinuxNamespaceType as T;
        let sb = sandbox();
        let got = namespaces(Some(&sc(NamespaceMode::Pod)), &sb, None, true, false).unwrap();
        assert_eq!(
            list(&got),
            vec![
                (T::Pid, p("/run/berth/pods/p1/ns/pid")),
                (T::Network, p("/run/berth/pods/p1/ns/net")),
                (T::Ipc, p("/run/berth/pods/p1/ns/ipc")),
                (T::Uts, p("/run/berth/pods/p1/ns/uts")),
                (T::Mount, None),
                (T::Cgroup, None),
            ]
        );
        // No cgroup namespace on v1 hosts or for privileged containers.
        let got = namespaces(None, &sb, None, false, false).unwrap();
        assert!(!got.iter().any(|n| n.typ() == T::Cgroup));
        let got = namespaces(None, &sb, None, true, true).unwrap();
        assert!(!got.iter().any(|n| n.typ() == T::Cgroup));
    }

    #[test]
    fn pid_modes() {
        use LinuxNamespaceType as T;
        let mut sb = sandbox();
        let pid = |got: Vec<LinuxNamespace>| list(&got).into_iter().find(|(t, _)| *t == T::Pid);
        assert_eq!(
            pid(namespaces(Some(&sc(NamespaceMode::Container)), &sb, None, false, false).unwrap()),
            Some((T::Pid, None))
        );
        assert_eq!(
            pid(namespaces(Some(&sc(NamespaceMode::Node)), &sb, None, false, false).unwrap()),
            None
        );
        let target = PathBuf::from("/proc/4242/ns/pid");
        assert_eq!(
            pid(namespaces(Some(&sc(NamespaceMode::Target)), &sb, Some(&target), false, false).unwrap()),
            Some((T::Pid, p("/proc/4242/ns/pid")))
        );
        let err = namespaces(Some(&sc(NamespaceMode::Target)), &sb, None, false, false).unwrap_err();
        assert!(err.to_string().contains("target_id \"abc\""), "{err}");
        // POD without a shared PID namespace: new, or the host's for a host-PID pod.
        sb.pidns = None;
        assert_eq!(
            pid(namespaces(None, &sb, None, false, false).unwrap()),
            Some((T::Pid, None))
        );
        sb.config = PodSandboxConfig {
            linux: Some(LinuxPodSandboxConfig {
                security_context: Some(LinuxSandboxSecurityContext {
                    namespace_options: Some(NamespaceOption {
                        pid: NamespaceMode::Node as i32,
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        };
        assert_eq!(pid(namespaces(None, &sb, None, false, false).unwrap()), None);
    }

    #[test]
    fn host_namespaces_are_not_listed() {
        use LinuxNamespaceType as T;
        let mut sb = sandbox();
        sb.netns = None;
        sb.ipcns = None;
        sb.utsns = None;
        let got = namespaces(Some(&sc(NamespaceMode::Container)), &sb, None, false, false).unwrap();
        assert_eq!(list(&got), vec![(T::Pid, None), (T::Mount, None)]);
    }

    #[test]
    fn user_namespaces_are_refused_clearly() {
        let sb = sandbox();
        let mut s = sc(NamespaceMode::Container);
        s.namespace_options.as_mut().unwrap().userns_options = Some(UserNamespace {
            mode: NamespaceMode::Pod as i32,
            ..Default::default()
        });
        let err = namespaces(Some(&s), &sb, None, false, false).unwrap_err();
        assert!(err.to_string().contains("not supported by berth yet"), "{err}");
        s.namespace_options.as_mut().unwrap().userns_options = Some(UserNamespace {
            mode: NamespaceMode::Node as i32,
            ..Default::default()
        });
        namespaces(Some(&s), &sb, None, false, false).unwrap();
        s.namespace_options.as_mut().unwrap().pid = 9;
        assert!(namespaces(Some(&s), &sb, None, false, false).is_err());
    }
}
