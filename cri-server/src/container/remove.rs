//! RemoveContainer: stop it if it runs (no grace), delete it from the
//! engine (cgroup, overlay, state), remove its bundle and writable layer,
//! then its record. The log file stays: the kubelet owns it. Unknown IDs:
//! success.

use std::sync::Arc;
use std::time::Duration;

use k8s_cri::v1::{RemoveContainerRequest, RemoveContainerResponse};
use tracing::Instrument;

use super::create::remove_dir;
use super::{container_dir, detached, lock_key, stop::stop_one};
use crate::error::CriError;
use crate::services::{blocking, Services};

pub async fn remove(s: &Arc<Services>, request: RemoveContainerRequest) -> Result<RemoveContainerResponse, CriError> {
    if request.container_id.is_empty() {
        return Err(CriError::invalid("container_id", "must be set"));
    }
    let s2 = s.clone();
    let id = request.container_id;
    let span = tracing::info_span!("remove_container", container_id = %id);
    detached(async move { remove_one(&s2, &id).await.map(|()| RemoveContainerResponse {}) }.instrument(span)).await
}

/// Removes container `id` entirely; absent is fine.
pub(super) async fn remove_one(s: &Arc<Services>, id: &str) -> Result<(), CriError> {
    if stop_one(s, id, Duration::ZERO).await?.is_none() {
        return Ok(());
    }
    let _lock = s.locks.lock(&lock_key(id)).await;
    if s.store.container(id).is_none() {
        return Ok(());
    }
    {
        let (s, id) = (s.clone(), id.to_string());
        blocking(move || {
            s.engine.delete(&id, true)?;
            remove_dir(&container_dir(&s, &id));
            Ok(())
        })
        .await?;
    }
    s.store.delete_container(id)?;
    tracing::info!("container removed");
    Ok(())
}
