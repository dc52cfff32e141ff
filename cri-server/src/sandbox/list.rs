//! ListPodSandbox: the stored pods, filtered by ID (full or prefix), state
//! (as observed now) and labels (every selector label must match).

use std::sync::Arc;

use k8s_cri::v1::{ListPodSandboxRequest, ListPodSandboxResponse, PodSandbox, PodSandboxFilter};

use crate::error::CriError;
use crate::services::Services;
use crate::store::PodRecord;

#[tracing::instrument(skip_all)]
pub async fn list(s: &Arc<Services>, request: ListPodSandboxRequest) -> Result<ListPodSandboxResponse, CriError> {
    let filter = request.filter.unwrap_or_default();
    let pods = s.store.pods().into_iter().filter(|p| preselect(p, &filter)).collect();
    let mut items: Vec<PodSandbox> = super::observed_states(s, pods)
        .await?
        .into_iter()
        .filter(|(_, state)| filter.state.as_ref().is_none_or(|want| want.state == *state as i32))
        .map(|(p, state)| PodSandbox {
            id: p.id,
            metadata: p.config.metadata,
            state: state as i32,
            created_at: p.created_at,
            labels: p.config.labels,
            annotations: p.config.annotations,
            runtime_handler: p.runtime_handler,
        })
        .collect();
    items.sort_by(|a, b| a.created_at.cmp(&b.created_at).then_with(|| a.id.cmp(&b.id)));
    Ok(ListPodSandboxResponse { items })
}

/// The filters that need no engine look-up.
pub fn preselect(pod: &PodRecord, filter: &PodSandboxFilter) -> bool {
    pod.id.starts_with(&filter.id) && super::labels_match(&pod.config.labels, &filter.label_selector)
}
