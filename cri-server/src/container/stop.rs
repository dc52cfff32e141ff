//! StopContainer: the image's stop signal (else SIGTERM), `timeout`
//! seconds, then SIGKILL to every process of the container (the engine's
//! `stop`); the record becomes Exited with the exit code and reason.
//! Unknown or already exited containers: success.

use std::sync::Arc;
use std::time::Duration;

use k8s_cri::v1::{StopContainerRequest, StopContainerResponse};
use tracing::Instrument;

use super::{detached, lock_key, record_exit, refresh_locked, stop_signal, EngineView};
use crate::error::CriError;
use crate::services::{blocking, Services};
use crate::store::{ContainerRecord, ContainerState};

pub async fn stop(s: &Arc<Services>, request: StopContainerRequest) -> Result<StopContainerResponse, CriError> {
    if request.container_id.is_empty() {
        return Err(CriError::invalid("container_id", "must be set"));
    }
    let timeout = Duration::from_secs(request.timeout.max(0) as u64);
    let s2 = s.clone();
    let id = request.container_id;
    let span = tracing::info_span!("stop_container", container_id = %id);
    detached(async move { stop_one(&s2, &id, timeout).await.map(|_| StopContainerResponse {}) }.instrument(span)).await
}

/// Stops container `id` if it runs; `Ok(None)` when there is no such container.
pub(super) async fn stop_one(
    s: &Arc<Services>,
    id: &str,
    timeout: Duration,
) -> Result<Option<ContainerRecord>, CriError> {
    let _lock = s.locks.lock(&lock_key(id)).await;
    let Some(rec) = s.store.container(id) else {
        return Ok(None);
    };
    let mut rec = refresh_locked(s, rec).await?;
    if rec.state == ContainerState::Exited {
        return Ok(Some(rec));
    }
    // Nothing of the user's runs in a created container: no grace needed.
    let timeout = if rec.state == ContainerState::Created {
        Duration::ZERO
    } else {
        timeout
    };
    let signal = stop_signal(&rec);
    tracing::debug!(%signal, ?timeout, "stopping container");
    let view = {
        let (s, id) = (s.clone(), id.to_string());
        blocking(move || match s.engine.stop(&id, signal, timeout) {
            Ok(exit) => Ok(EngineView::Exited(exit, None)),
            Err(berth_runtime::container::ContainerError::State(berth_runtime::state::StateError::NotFound(_))) => {
                Ok(EngineView::Gone)
            }
            Err(e) => Err(e.into()),
        })
        .await?
    };
    match view {
        EngineView::Exited(exit, _) => record_exit(&mut rec, &exit),
        other => {
            super::apply_view(&mut rec, other);
        }
    }
    // Unknown (monitor lost) containers are now stopped for sure.
    if rec.state == ContainerState::Unknown {
        rec.state = ContainerState::Exited;
        rec.finished_at = crate::services::now_nanos();
    }
    s.store.update_container(&rec)?;
    tracing::info!(exit_code = rec.exit_code, reason = %rec.reason, "container stopped");
    Ok(Some(rec))
}
