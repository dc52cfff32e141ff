//! Full pod and container IDs from unique prefixes, as crictl resolves them.

use std::time::Duration;

use k8s_cri::v1::runtime_service_client::RuntimeServiceClient;
use k8s_cri::v1::{ContainerFilter, ListContainersRequest, ListPodSandboxRequest, PodSandboxFilter};
use tonic::transport::Channel;

use super::{request, status_error};

/// The one ID in `candidates` that `prefix` names: itself when it is a full
/// ID, else the only one it starts.
fn unique(kind: &str, prefix: &str, candidates: Vec<String>) -> anyhow::Result<String> {
    if prefix.is_empty() {
        anyhow::bail!("empty {kind} ID");
    }
    if candidates.iter().any(|c| c == prefix) {
        return Ok(prefix.to_string());
    }
    let mut matches: Vec<String> = candidates.into_iter().filter(|c| c.starts_with(prefix)).collect();
    matches.sort();
    matches.dedup();
    match matches.len() {
        0 => anyhow::bail!("no such {kind} {prefix}"),
        1 => Ok(matches.remove(0)),
        _ => anyhow::bail!("{kind} ID prefix {prefix} is ambiguous: {}", matches.join(", ")),
    }
}

pub async fn pod(channel: &Channel, timeout: Duration, prefix: &str) -> anyhow::Result<String> {
    let items = RuntimeServiceClient::new(channel.clone())
        .list_pod_sandbox(request(
            ListPodSandboxRequest {
                filter: Some(PodSandboxFilter {
                    id: prefix.to_string(),
                    ..Default::default()
                }),
            },
            timeout,
        ))
        .await
        .map_err(|s| status_error("ListPodSandbox", s))?
        .into_inner()
        .items;
    unique("pod sandbox", prefix, items.into_iter().map(|p| p.id).collect())
}

pub async fn container(channel: &Channel, timeout: Duration, prefix: &str) -> anyhow::Result<String> {
    let containers = RuntimeServiceClient::new(channel.clone())
        .list_containers(request(
            ListContainersRequest {
                filter: Some(ContainerFilter {
                    id: prefix.to_string(),
                    ..Default::default()
                }),
            },
            timeout,
        ))
        .await
        .map_err(|s| status_error("ListContainers", s))?
        .into_inner()
        .containers;
    unique("container", prefix, containers.into_iter().map(|c| c.id).collect())
}

#[cfg(test)]
mod tests {
    use super::unique;

    #[test]
    fn prefixes() {
        let ids = || vec!["abc123".to_string(), "abd456".to_string(), "abc".to_string()];
        assert_eq!(unique("pod", "abd", ids()).unwrap(), "abd456");
        assert_eq!(
            unique("pod", "abc", ids()).unwrap(),
            "abc",
            "a full ID wins over prefixes"
        );
        let e = unique("pod", "ab", ids()).unwrap_err().to_string();
        assert!(
            e.contains("ambiguous") && e.contains("abc123") && e.contains("abd456"),
            "{e}"
        );
        assert!(unique("pod", "x", ids())
            .unwrap_err()
            .to_string()
            .contains("no such pod x"));
        assert!(unique("pod", "", ids()).is_err());
    }
}
