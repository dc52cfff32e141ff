//! Pod sandboxes over CRI: one file per RPC. A pod is pinned namespaces
//! (engine), a network (CNI or the built-in bridge), its files (resolv.conf,
//! hosts, hostname) and a record in the store.

pub mod files;

use std::sync::Arc;

use k8s_cri::v1::*;

use crate::error::CriError;
use crate::oci::SandboxContext;
use crate::services::Services;
use crate::store::PodRecord;

pub async fn run(s: &Arc<Services>, request: RunPodSandboxRequest) -> Result<RunPodSandboxResponse, CriError> {
    let _ = (s, request);
    Err(CriError::Unimplemented { rpc: "RunPodSandbox" })
}

pub async fn stop(s: &Arc<Services>, request: StopPodSandboxRequest) -> Result<StopPodSandboxResponse, CriError> {
    let _ = (s, request);
    Err(CriError::Unimplemented { rpc: "StopPodSandbox" })
}

pub async fn remove(s: &Arc<Services>, request: RemovePodSandboxRequest) -> Result<RemovePodSandboxResponse, CriError> {
    let _ = (s, request);
    Err(CriError::Unimplemented {
        rpc: "RemovePodSandbox",
    })
}

pub async fn status(s: &Arc<Services>, request: PodSandboxStatusRequest) -> Result<PodSandboxStatusResponse, CriError> {
    let _ = (s, request);
    Err(CriError::Unimplemented {
        rpc: "PodSandboxStatus",
    })
}

pub async fn list(s: &Arc<Services>, request: ListPodSandboxRequest) -> Result<ListPodSandboxResponse, CriError> {
    let _ = (s, request);
    Err(CriError::Unimplemented { rpc: "ListPodSandbox" })
}

pub async fn stats(s: &Arc<Services>, request: PodSandboxStatsRequest) -> Result<PodSandboxStatsResponse, CriError> {
    let _ = (s, request);
    Err(CriError::Unimplemented { rpc: "PodSandboxStats" })
}

pub async fn list_stats(
    s: &Arc<Services>,
    request: ListPodSandboxStatsRequest,
) -> Result<ListPodSandboxStatsResponse, CriError> {
    let _ = (s, request);
    Err(CriError::Unimplemented {
        rpc: "ListPodSandboxStats",
    })
}

/// What a container of `pod` needs to know of it (namespaces, files, cgroup
/// parent), for CreateContainer's spec builder.
pub fn container_context(s: &Services, pod: &PodRecord) -> Result<SandboxContext, CriError> {
    let _ = (s, pod);
    Err(CriError::Unimplemented { rpc: "CreateContainer" })
}
