//! Status: RuntimeReady and NetworkReady, from real checks, and the
//! features berth implements.
//!
//! RuntimeReady: the engine's binaries are there and executable (without
//! them no container can start). NetworkReady: the pod network (a CNI config,
//! or the built-in bridge) says it can network pods.
//!
//! Features: `supplemental_groups_policy` (Merge and Strict, and the
//! container's user in ContainerStatus); the one (default) runtime handler
//! has recursive read-only mounts when the kernel has mount_setattr(2), and
//! no user namespaces.

use std::collections::HashMap;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use berth_cni::NetworkStatus;
use berth_runtime::init::mounts::recursive_readonly_supported;
use k8s_cri::v1::{
    RuntimeCondition, RuntimeFeatures, RuntimeHandler, RuntimeHandlerFeatures, RuntimeStatus, StatusRequest,
    StatusResponse,
};

use crate::config::Config;
use crate::error::CriError;
use crate::services::Services;

pub const RUNTIME_READY: &str = "RuntimeReady";
pub const NETWORK_READY: &str = "NetworkReady";

pub async fn status(s: &Services, request: StatusRequest) -> Result<StatusResponse, CriError> {
    let runtime = engine_problem(s.engine.runtime_binary());
    let network = s.network.status().await;
    let conditions = conditions(runtime, &network);
    let info = if request.verbose {
        verbose_info(&s.config)
    } else {
        HashMap::new()
    };
    Ok(StatusResponse {
        status: Some(RuntimeStatus { conditions }),
        info,
        runtime_handlers: runtime_handlers(),
        features: Some(RuntimeFeatures {
            supplemental_groups_policy: true,
        }),
    })
}

/// The default handler (the only one) and what it supports.
fn runtime_handlers() -> Vec<RuntimeHandler> {
    vec![RuntimeHandler {
        name: String::new(),
        features: Some(RuntimeHandlerFeatures {
            recursive_read_only_mounts: recursive_readonly_supported(),
            user_namespaces: false,
        }),
    }]
}

/// Why the engine cannot run containers, if it cannot.
fn engine_problem(runtime_binary: &Path) -> Option<String> {
    let helpers = ["berth-monitor", "berth-pod-init"].map(|n| runtime_binary.with_file_name(n));
    for binary in std::iter::once(runtime_binary.to_path_buf()).chain(helpers) {
        match std::fs::metadata(&binary) {
            Ok(m) if m.is_file() && m.permissions().mode() & 0o111 != 0 => {}
            Ok(_) => return Some(format!("{} is not an executable file", binary.display())),
            Err(e) => return Some(format!("{}: {e}", binary.display())),
        }
    }
    None
}

fn conditions(runtime_problem: Option<String>, network: &NetworkStatus) -> Vec<RuntimeCondition> {
    let runtime = match runtime_problem {
        None => RuntimeCondition {
            r#type: RUNTIME_READY.into(),
            status: true,
            ..Default::default()
        },
        Some(message) => RuntimeCondition {
            r#type: RUNTIME_READY.into(),
            status: false,
            reason: "ContainerEngineUnavailable".into(),
            message,
        },
    };
    let network = if network.ready {
        RuntimeCondition {
            r#type: NETWORK_READY.into(),
            status: true,
            ..Default::default()
        }
    } else {
        RuntimeCondition {
            r#type: NETWORK_READY.into(),
            status: false,
            reason: "NetworkPluginNotReady".into(),
            message: network
                .reason
                .clone()
                .unwrap_or_else(|| "pod network is not ready".into()),
        }
    };
    vec![runtime, network]
}

/// The effective config, credentials removed.
fn verbose_info(config: &Config) -> HashMap<String, String> {
    let mut shown = config.clone();
    for host in shown.registries.values_mut() {
        for secret in [&mut host.password, &mut host.auth, &mut host.identity_token] {
            if secret.is_some() {
                *secret = Some("<redacted>".into());
            }
        }
    }
    HashMap::from([("config".to_string(), serde_json::to_string(&shown).unwrap_or_default())])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_and_not_ready_conditions_carry_reasons() {
        let ready = conditions(None, &NetworkStatus::ready("berth0"));
        assert!(ready.iter().all(|c| c.status));
        let network = NetworkStatus {
            ready: false,
            reason: Some("no network config found in /x".into()),
            network: None,
        };
        let down = conditions(Some("/usr/bin/berth-runtime: No such file".into()), &network);
        assert!(down
            .iter()
            .all(|c| !c.status && !c.reason.is_empty() && !c.message.is_empty()));
        assert!(down[1].message.contains("/x"));
    }

    #[test]
    fn missing_engine_binaries_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let runtime = dir.path().join("berth-runtime");
        assert!(engine_problem(&runtime).unwrap().contains("berth-runtime"));
        for name in ["berth-runtime", "berth-monitor"] {
            std::fs::write(dir.path().join(name), "#!/bin/sh\n").unwrap();
            std::fs::set_permissions(dir.path().join(name), std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        assert!(engine_problem(&runtime).unwrap().contains("berth-pod-init"));
        std::fs::write(dir.path().join("berth-pod-init"), "").unwrap();
        std::fs::set_permissions(
            dir.path().join("berth-pod-init"),
            std::fs::Permissions::from_mode(0o755),
        )
        .unwrap();
        assert!(engine_problem(&runtime).is_none());
    }

    #[test]
    fn features_are_what_berth_implements() {
        let h = runtime_handlers();
        assert_eq!(h.len(), 1);
        assert_eq!(h[0].name, "", "the default handler");
        let f = h[0].features.as_ref().unwrap();
        assert_eq!(f.recursive_read_only_mounts, recursive_readonly_supported());
        assert!(!f.user_namespaces);
    }

    #[test]
    fn verbose_info_redacts_secrets() {
        let mut config = Config::default();
        let host = config.registries.entry("docker.io".into()).or_default();
        host.username = Some("u".into());
        host.password = Some("hunter2".into());
        let info = &verbose_info(&config)["config"];
        assert!(!info.contains("hunter2") && info.contains("<redacted>"), "{info}");
    }
}
