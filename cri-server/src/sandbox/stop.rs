//! StopPodSandbox: stop the pod's containers, detach its network, stop its
//! pod init; the record becomes NotReady. An unknown pod, and a second
//! stop, succeed (the kubelet retries). Namespaces stay pinned until
//! RemovePodSandbox.

use std::sync::Arc;
use std::time::Duration;

use k8s_cri::v1::{StopPodSandboxRequest, StopPodSandboxResponse};

use super::network;
use crate::container;
use crate::error::CriError;
use crate::services::{self, Services};
use crate::store::{PodRecord, PodState};

/// The grace the pod init gets after SIGTERM. Containers are stopped at
/// once: the kubelet has already stopped them with their own grace period
/// before it stops the pod (containerd does the same).
pub const POD_INIT_GRACE: Duration = Duration::from_secs(2);

#[tracing::instrument(skip_all, fields(pod_sandbox_id = %request.pod_sandbox_id))]
pub async fn stop(s: &Arc<Services>, request: StopPodSandboxRequest) -> Result<StopPodSandboxResponse, CriError> {
    let Some(pod) = super::find(s, &request.pod_sandbox_id)? else {
        tracing::debug!("unknown pod sandbox: nothing to stop");
        return Ok(StopPodSandboxResponse {});
    };
    let _guard = s.locks.lock(&format!("pod/{}", pod.id)).await;
    // Re-read under the lock: a remove may have finished meanwhile.
    if let Some(pod) = s.store.pod(&pod.id) {
        stop_locked(s, pod).await?;
    }
    Ok(StopPodSandboxResponse {})
}

/// Stop `pod` with its `pod/<id>` lock held. Every step is repeatable.
pub async fn stop_locked(s: &Arc<Services>, mut pod: PodRecord) -> Result<(), CriError> {
    container::stop_all_in_pod(s, &pod.id, Duration::ZERO).await?;
    if let Some(req) = network::request_of(&pod)? {
        network::teardown(s.network.as_ref(), &req).await?;
    }
    let (engine, id) = (s.engine.clone(), pod.id.clone());
    services::blocking(move || engine.stop_pod_sandbox(&id, POD_INIT_GRACE).map_err(CriError::from)).await?;
    if pod.state != PodState::NotReady || !pod.ips.is_empty() {
        pod.state = PodState::NotReady;
        // The addresses went back to the network with the teardown.
        pod.ips.clear();
        s.store.update_pod(&pod)?;
        tracing::info!("pod sandbox stopped");
    }
    Ok(())
}
