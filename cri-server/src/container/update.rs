//! UpdateContainerResources: the new resources ([`crate::oci::linux_resources`])
//! written to the container's cgroup by the engine, and remembered for
//! ContainerStatus.

use std::sync::Arc;

use k8s_cri::v1::{UpdateContainerResourcesRequest, UpdateContainerResourcesResponse};
use tracing::Instrument;

use super::{detached, lock_key, record, refresh_locked};
use crate::error::CriError;
use crate::oci;
use crate::services::{blocking, Services};
use crate::store::ContainerState;

pub async fn update_resources(
    s: &Arc<Services>,
    request: UpdateContainerResourcesRequest,
) -> Result<UpdateContainerResourcesResponse, CriError> {
    let id = request.container_id;
    let span = tracing::info_span!("update_container_resources", container_id = %id);
    let s = s.clone();
    detached(
        async move {
            let linux = request
                .linux
                .ok_or_else(|| CriError::invalid("linux", "must be set (berth runs Linux containers)"))?;
            let resources = oci::linux_resources(&linux)?;
            let _lock = s.locks.lock(&lock_key(&id)).await;
            let mut rec = refresh_locked(&s, record(&s, &id)?).await?;
            if !matches!(rec.state, ContainerState::Created | ContainerState::Running) {
                return Err(CriError::FailedPrecondition(format!(
                    "container {id} is {:?}: resources can only be updated while it is created or running",
                    rec.state
                )));
            }
            {
                let (s, id) = (s.clone(), id.clone());
                blocking(move || Ok(s.engine.update_resources(&id, &resources)?)).await?;
            }
            rec.resources = Some(linux);
            s.store.update_container(&rec)?;
            tracing::info!("container resources updated");
            Ok(UpdateContainerResourcesResponse {})
        }
        .instrument(span),
    )
    .await
}
