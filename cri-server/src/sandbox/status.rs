//! PodSandboxStatus: the stored pod, with its state as the engine sees it
//! now (a Ready pod whose pod init died or whose pinned netns is gone reads
//! NOT_READY). Unknown IDs are NotFound: the kubelet relies on it.

use std::collections::HashMap;
use std::sync::Arc;

use k8s_cri::v1::{
    LinuxPodSandboxStatus, Namespace, NamespaceOption, PodIp, PodSandboxNetworkStatus, PodSandboxStatus,
    PodSandboxStatusRequest, PodSandboxStatusResponse,
};

use super::network::namespace_options;
use crate::error::CriError;
use crate::services::{self, Services};
use crate::store::PodRecord;

#[tracing::instrument(skip_all, fields(pod_sandbox_id = %request.pod_sandbox_id))]
pub async fn status(s: &Arc<Services>, request: PodSandboxStatusRequest) -> Result<PodSandboxStatusResponse, CriError> {
    let pod = super::get(s, &request.pod_sandbox_id)?;
    let (pod, state) = super::observed_states(s, vec![pod])
        .await?
        .pop()
        .expect("one pod in, one out");
    let info = if request.verbose {
        let s = s.clone();
        let p = pod.clone();
        services::blocking(move || verbose_info(&s, &p)).await?
    } else {
        HashMap::new()
    };
    Ok(PodSandboxStatusResponse {
        status: Some(pod_status(&pod, state)),
        info,
        containers_statuses: Vec::new(),
        timestamp: services::now_nanos(),
    })
}

pub fn pod_status(pod: &PodRecord, state: k8s_cri::v1::PodSandboxState) -> PodSandboxStatus {
    let mut ips = pod.ips.iter();
    let network = ips.next().map(|ip| PodSandboxNetworkStatus {
        ip: ip.clone(),
        additional_ips: ips.map(|ip| PodIp { ip: ip.clone() }).collect(),
    });
    let options = namespace_options(&pod.config)
        .cloned()
        .unwrap_or(NamespaceOption::default());
    PodSandboxStatus {
        id: pod.id.clone(),
        metadata: pod.config.metadata.clone(),
        state: state as i32,
        created_at: pod.created_at,
        // The kubelet reads a missing network as "no IP"; host-network pods have none of their own.
        network: Some(network.unwrap_or_default()),
        linux: Some(LinuxPodSandboxStatus {
            namespaces: Some(Namespace { options: Some(options) }),
        }),
        labels: pod.config.labels.clone(),
        annotations: pod.config.annotations.clone(),
        runtime_handler: pod.runtime_handler.clone(),
    }
}

/// `info["info"]`: what berth knows of the pod beyond the CRI fields, as JSON.
fn verbose_info(s: &Services, pod: &PodRecord) -> Result<HashMap<String, String>, CriError> {
    let engine = s.engine.pod_sandbox(&pod.id).ok();
    let init = engine.as_ref().and_then(|e| e.record.namespaces.init);
    let info = serde_json::json!({
        "pid": init.map_or(0, |p| p.pid),
        "podInitAlive": engine.as_ref().is_some_and(|e| e.init_alive),
        "namespacesUsable": engine.as_ref().is_some_and(|e| e.namespaces_usable),
        "netnsPath": pod.netns,
        "ipcnsPath": pod.ipcns,
        "utsnsPath": pod.utsns,
        "pidnsPath": pod.pidns,
        "network": pod.network,
        "cgroupParent": pod.cgroup_parent,
        "podDir": pod.dir,
        "runtimeHandler": pod.runtime_handler,
        "storedState": format!("{:?}", pod.state),
        "config": pod.config,
    });
    let text = serde_json::to_string(&info).map_err(|e| CriError::Internal(format!("verbose info: {e}")))?;
    Ok(HashMap::from([("info".to_string(), text)]))
}
