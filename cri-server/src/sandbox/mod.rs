//! Pod sandboxes over CRI: one file per RPC. A pod is pinned namespaces
//! (engine), a network (CNI or the built-in bridge), its files (resolv.conf,
//! hosts, hostname) and a record in the store.
//!
//! | RPC | file | what acts |
//! |-----|------|-----------|
//! | RunPodSandbox | [`run`] | store record, pod files, `Engine::run_pod_sandbox`, `PodNetwork::setup` |
//! | StopPodSandbox | [`stop`] | containers, `PodNetwork::teardown`, `Engine::stop_pod_sandbox` |
//! | RemovePodSandbox | [`remove`] | stop, containers, `Engine::remove_pod_sandbox`, files, record |
//! | PodSandboxStatus | [`status`] | store record + `Engine::pod_sandbox` liveness |
//! | ListPodSandbox | [`list`] | store records, filtered |
//! | (List)PodSandboxStats | [`stats`] | `Engine::pod_sandbox_stats` |
//! | PortForward | [`port_forward`] | a streaming URL ([`crate::streaming`]) |
//! | — (CreateContainer) | [`context`] | what a container needs of its pod |
//!
//! Lifecycle calls on one pod hold `pod/<id>` from [`Services::locks`];
//! RunPodSandbox holds `podname/<name key>` (the ID does not exist yet).
//! The store's [`PodState`] is what berth decided (Ready after a complete
//! RunPodSandbox, NotReady after a stop or a failed run); what the CRI
//! reports also needs the engine to agree: a Ready record whose pod init
//! died or whose pinned namespaces are gone reads as NOT_READY.

pub mod context;
pub mod files;
pub mod list;
pub mod network;
pub mod port_forward;
pub mod remove;
pub mod run;
pub mod stats;
pub mod status;
pub mod stop;

use std::sync::Arc;

use k8s_cri::v1::PodSandboxState;

pub use context::container_context;
pub use list::list;
pub use port_forward::port_forward;
pub use remove::remove;
pub use run::run;
pub use stats::{list_stats, stats};
pub use status::status;
pub use stop::stop;

use crate::error::CriError;
use crate::services::Services;
use crate::store::{PodRecord, PodState};

/// The pod named by `id`: its full ID or a unique prefix of one (as crictl
/// and containerd accept). `None` when no pod matches.
pub fn find(s: &Services, id: &str) -> Result<Option<PodRecord>, CriError> {
    if id.is_empty() {
        return Err(CriError::invalid("pod_sandbox_id", "must not be empty"));
    }
    if let Some(pod) = s.store.pod(id) {
        return Ok(Some(pod));
    }
    let mut matches = s.store.pods().into_iter().filter(|p| p.id.starts_with(id));
    match (matches.next(), matches.next()) {
        (None, _) => Ok(None),
        (Some(pod), None) => Ok(Some(pod)),
        (Some(a), Some(b)) => Err(CriError::invalid(
            "pod_sandbox_id",
            format!("{id:?} is ambiguous: it prefixes pod sandboxes {} and {}", a.id, b.id),
        )),
    }
}

/// Like [`find`], but an unknown pod is NotFound.
pub fn get(s: &Services, id: &str) -> Result<PodRecord, CriError> {
    find(s, id)?.ok_or_else(|| CriError::not_found("pod sandbox", id))
}

/// The state the CRI reports: the record's, downgraded to NOT_READY when
/// the engine says the pod is gone or no longer usable. Blocking (reads the
/// pod's files and /proc).
pub fn observed_state(s: &Services, pod: &PodRecord) -> PodSandboxState {
    if pod.state != PodState::Ready {
        return PodSandboxState::SandboxNotready;
    }
    match s.engine.pod_sandbox(&pod.id) {
        Ok(state) if state.status == berth_runtime::sandbox::PodStatus::Ready => PodSandboxState::SandboxReady,
        Ok(state) => {
            tracing::debug!(pod_sandbox_id = %pod.id, init_alive = state.init_alive,
                namespaces_usable = state.namespaces_usable, "pod sandbox reads as not ready");
            PodSandboxState::SandboxNotready
        }
        Err(e) => {
            tracing::debug!(pod_sandbox_id = %pod.id, error = %e, "no engine pod: not ready");
            PodSandboxState::SandboxNotready
        }
    }
}

/// [`observed_state`] of many pods, off the async threads.
pub async fn observed_states(
    s: &Arc<Services>,
    pods: Vec<PodRecord>,
) -> Result<Vec<(PodRecord, PodSandboxState)>, CriError> {
    let s = s.clone();
    crate::services::blocking(move || {
        Ok(pods
            .into_iter()
            .map(|p| {
                let state = observed_state(&s, &p);
                (p, state)
            })
            .collect())
    })
    .await
}

/// Whether every `selector` label is set to the same value in `labels`.
pub fn labels_match(
    labels: &std::collections::HashMap<String, String>,
    selector: &std::collections::HashMap<String, String>,
) -> bool {
    selector.iter().all(|(k, v)| labels.get(k) == Some(v))
}

#[cfg(test)]
mod tests;
