//! ListContainers: records filtered by ID (full or unique prefix), pod,
//! state and labels. Records still Created or Running are refreshed from
//! the engine first (one batch off the async threads; Exited ones are
//! final and cost nothing).

use std::collections::HashMap;
use std::sync::Arc;

use k8s_cri::v1::{Container, ContainerFilter, ListContainersRequest, ListContainersResponse};

use super::status::image_spec;
use super::{apply_view, cri_state, engine_view, lock_key, view_changes};
use crate::error::CriError;
use crate::services::{blocking, Services};
use crate::store::{ContainerRecord, ContainerState};

#[tracing::instrument(skip_all)]
pub async fn list(s: &Arc<Services>, request: ListContainersRequest) -> Result<ListContainersResponse, CriError> {
    let filter = request.filter.unwrap_or_default();
    let candidates = select(s, &filter.id, &filter.pod_sandbox_id, &filter.label_selector);
    let refreshed = refresh_all(s, candidates).await?;
    let containers = refreshed
        .into_iter()
        .filter(|r| state_matches(r, &filter))
        .map(|r| Container {
            id: r.id.clone(),
            pod_sandbox_id: r.pod_id.clone(),
            metadata: r.config.metadata.clone(),
            image: Some(image_spec(&r)),
            image_ref: r.image_id.clone(),
            state: cri_state(r.state) as i32,
            created_at: r.created_at,
            labels: r.config.labels.clone(),
            annotations: r.config.annotations.clone(),
            image_id: r.image_id.clone(),
        })
        .collect();
    Ok(ListContainersResponse { containers })
}

fn state_matches(r: &ContainerRecord, filter: &ContainerFilter) -> bool {
    filter
        .state
        .as_ref()
        .is_none_or(|want| cri_state(r.state) as i32 == want.state)
}

/// Records matching an ID (exact, else a unique prefix), a pod and labels.
pub(super) fn select(s: &Services, id: &str, pod_id: &str, labels: &HashMap<String, String>) -> Vec<ContainerRecord> {
    let mut all = s.store.containers();
    if !id.is_empty() {
        let exact: Vec<_> = all.iter().filter(|r| r.id == id).cloned().collect();
        all = if exact.is_empty() {
            let prefixed: Vec<_> = all.into_iter().filter(|r| r.id.starts_with(id)).collect();
            // An ambiguous prefix matches nothing, as containerd's index.
            if prefixed.len() == 1 {
                prefixed
            } else {
                Vec::new()
            }
        } else {
            exact
        };
    }
    all.retain(|r| {
        (pod_id.is_empty() || r.pod_id == pod_id) && labels.iter().all(|(k, v)| r.config.labels.get(k) == Some(v))
    });
    all.sort_by(|a, b| a.created_at.cmp(&b.created_at).then_with(|| a.id.cmp(&b.id)));
    all
}

/// Refreshes the Created/Running records among `records` from the engine.
pub(super) async fn refresh_all(
    s: &Arc<Services>,
    records: Vec<ContainerRecord>,
) -> Result<Vec<ContainerRecord>, CriError> {
    let active: Vec<String> = records
        .iter()
        .filter(|r| matches!(r.state, ContainerState::Created | ContainerState::Running))
        .map(|r| r.id.clone())
        .collect();
    if active.is_empty() {
        return Ok(records);
    }
    let views = {
        let s = s.clone();
        blocking(move || {
            Ok(active
                .into_iter()
                .filter_map(|id| engine_view(&s, &id).ok().map(|v| (id, v)))
                .collect::<Vec<_>>())
        })
        .await?
    };
    let listed: HashMap<&str, &ContainerRecord> = records.iter().map(|r| (r.id.as_str(), r)).collect();
    let mut changed = HashMap::new();
    let mut removed = std::collections::HashSet::new();
    for (id, view) in views {
        if listed.get(id.as_str()).is_some_and(|r| !view_changes(r, &view)) {
            // Nothing to write: the listed record stands (no lock, no copy).
            continue;
        }
        let _lock = s.locks.lock(&lock_key(&id)).await;
        // Re-read under the lock: a concurrent call may have moved it on,
        // or removed it.
        let Some(mut rec) = s.store.container(&id) else {
            removed.insert(id);
            continue;
        };
        if apply_view(&mut rec, view) {
            s.store.update_container(&rec)?;
        }
        changed.insert(id, rec);
    }
    Ok(records
        .into_iter()
        .filter_map(|r| match changed.remove(&r.id) {
            Some(fresh) => Some(fresh),
            // Removed while we looked: leave it out.
            None if removed.contains(&r.id) => None,
            None => Some(r),
        })
        .collect())
}
