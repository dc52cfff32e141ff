//! Status: RuntimeReady and NetworkReady, truthfully.
//!
//! This build of berthd serves images only: its container engine and pod
//! networking are not wired in yet, so both conditions are false with a reason
//! the kubelet shows on the node. They become real checks when the engine and
//! CNI land.

use std::collections::HashMap;

use k8s_cri::v1::{RuntimeCondition, RuntimeStatus, StatusRequest, StatusResponse};

use crate::config::Config;
use crate::error::CriError;

pub const RUNTIME_READY: &str = "RuntimeReady";
pub const NETWORK_READY: &str = "NetworkReady";

pub async fn status(config: &Config, request: StatusRequest) -> Result<StatusResponse, CriError> {
    let conditions = vec![
        RuntimeCondition {
            r#type: RUNTIME_READY.into(),
            status: false,
            reason: "ContainerEngineUnavailable".into(),
            message: "this berthd build serves the image service only; it cannot run pods yet".into(),
        },
        RuntimeCondition {
            r#type: NETWORK_READY.into(),
            status: false,
            reason: "NetworkPluginNotReady".into(),
            message: format!(
                "pod networking is not available in this build (CNI conf dir {})",
                config.cni.conf_dir.display()
            ),
        },
    ];
    let info = if request.verbose {
        verbose_info(config)
    } else {
        HashMap::new()
    };
    Ok(StatusResponse {
        status: Some(RuntimeStatus { conditions }),
        info,
        ..Default::default()
    })
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

    #[tokio::test]
    async fn conditions_are_false_with_reasons_and_secrets_are_redacted() {
        let mut config = Config::default();
        let host = config.registries.entry("docker.io".into()).or_default();
        host.username = Some("u".into());
        host.password = Some("hunter2".into());
        let resp = status(&config, StatusRequest { verbose: true }).await.unwrap();
        let conditions = resp.status.unwrap().conditions;
        assert_eq!(conditions.len(), 2);
        assert!(conditions
            .iter()
            .all(|c| !c.status && !c.reason.is_empty() && !c.message.is_empty()));
        let info = &resp.info["config"];
        assert!(!info.contains("hunter2") && info.contains("<redacted>"), "{info}");
    }
}
