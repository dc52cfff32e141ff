//! RemovePodSandbox: stop (repeatable), remove the pod's containers, the
//! engine pod (namespaces, cgroup, processes), its files and its record.
//! An unknown pod succeeds; a step that fails leaves the record for a
//! retry, which redoes only what is left (every step is idempotent).

use std::sync::Arc;

use k8s_cri::v1::{RemovePodSandboxRequest, RemovePodSandboxResponse};

use super::run::remove_dir;
use super::stop::stop_locked;
use crate::container;
use crate::error::CriError;
use crate::services::{self, Services};

#[tracing::instrument(skip_all, fields(pod_sandbox_id = %request.pod_sandbox_id))]
pub async fn remove(s: &Arc<Services>, request: RemovePodSandboxRequest) -> Result<RemovePodSandboxResponse, CriError> {
    let Some(pod) = super::find(s, &request.pod_sandbox_id)? else {
        tracing::debug!("unknown pod sandbox: nothing to remove");
        return Ok(RemovePodSandboxResponse {});
    };
    let _guard = s.locks.lock(&format!("pod/{}", pod.id)).await;
    let Some(pod) = s.store.pod(&pod.id) else {
        return Ok(RemovePodSandboxResponse {});
    };
    let id = pod.id.clone();
    let dir = pod.dir.clone();
    stop_locked(s, pod).await?;
    container::remove_all_in_pod(s, &id).await?;
    let engine = s.engine.clone();
    let engine_id = id.clone();
    services::blocking(move || engine.remove_pod_sandbox(&engine_id).map_err(CriError::from)).await?;
    remove_dir(&dir).await?;
    s.store.delete_pod(&id)?;
    tracing::info!("pod sandbox removed");
    Ok(RemovePodSandboxResponse {})
}
