//! ReopenContainerLog: the monitor closes and reopens the CRI log file
//! (after the kubelet rotated it by renaming).

use std::sync::Arc;

use k8s_cri::v1::{ReopenContainerLogRequest, ReopenContainerLogResponse};

use super::{record, refresh};
use crate::error::CriError;
use crate::services::{blocking, Services};
use crate::store::ContainerState;

#[tracing::instrument(skip_all, fields(container_id = %request.container_id))]
pub async fn reopen_log(
    s: &Arc<Services>,
    request: ReopenContainerLogRequest,
) -> Result<ReopenContainerLogResponse, CriError> {
    let id = request.container_id;
    record(s, &id)?;
    let rec = refresh(s, &id)
        .await?
        .ok_or_else(|| CriError::not_found("container", &id))?;
    if rec.state != ContainerState::Running {
        return Err(CriError::FailedPrecondition(format!(
            "container {id} is {:?}: only a running container's log can be reopened",
            rec.state
        )));
    }
    let s = s.clone();
    blocking(move || Ok(s.engine.reopen_log(&id)?)).await?;
    Ok(ReopenContainerLogResponse {})
}
