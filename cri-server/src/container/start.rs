//! StartContainer: release a created container's init (the engine's
//! `start`); the record becomes Running.

use std::sync::Arc;

use k8s_cri::v1::{StartContainerRequest, StartContainerResponse};
use tracing::Instrument;

use super::{detached, lock_key, record, refresh_locked, rfc3339_nanos};
use crate::error::CriError;
use crate::services::{blocking, now_nanos, Services};
use crate::store::ContainerState;

pub async fn start(s: &Arc<Services>, request: StartContainerRequest) -> Result<StartContainerResponse, CriError> {
    let id = request.container_id;
    let span = tracing::info_span!("start_container", container_id = %id);
    let s = s.clone();
    detached(
        async move {
            let _lock = s.locks.lock(&lock_key(&id)).await;
            let rec = refresh_locked(&s, record(&s, &id)?).await?;
            if rec.state != ContainerState::Created {
                return Err(CriError::FailedPrecondition(format!(
                    "container {id} is {:?}: only a created container can be started",
                    rec.state
                )));
            }
            // The start time is the monitor's, taken when the init exec'd:
            // berthd's clock after the call returns can be later than an
            // exit the monitor already recorded for a short-lived process.
            let started = {
                let (s, id) = (s.clone(), id.clone());
                blocking(move || {
                    s.engine.start(&id)?;
                    // The state record alone (no exit or liveness checks).
                    Ok(s.engine.state_dir().load(&id).ok().and_then(|st| st.started))
                })
                .await?
            };
            let mut rec = rec;
            rec.state = ContainerState::Running;
            rec.started_at = started.as_deref().and_then(rfc3339_nanos).unwrap_or_else(now_nanos);
            // Not fsynced: after a crash, recovery reads Running (and the
            // start time) from the engine's state.
            s.store.update_container_derivable(&rec)?;
            tracing::info!("container started");
            Ok(StartContainerResponse {})
        }
        .instrument(span),
    )
    .await
}
