//! Containers over CRI: one file per RPC. CreateContainer builds an OCI
//! bundle (crate::oci) over the image's layers and hands it to the engine;
//! the rest translate to engine calls and keep the store's record current.

use std::sync::Arc;
use std::time::Duration;

use k8s_cri::v1::*;

use crate::error::CriError;
use crate::services::Services;

macro_rules! not_yet {
    ($($name:ident($req:ty) -> $resp:ty = $rpc:literal;)*) => {
        $(
            pub async fn $name(s: &Arc<Services>, request: $req) -> Result<$resp, CriError> {
                let _ = (s, request);
                Err(CriError::Unimplemented { rpc: $rpc })
            }
        )*
    };
}

not_yet! {
    create(CreateContainerRequest) -> CreateContainerResponse = "CreateContainer";
    start(StartContainerRequest) -> StartContainerResponse = "StartContainer";
    stop(StopContainerRequest) -> StopContainerResponse = "StopContainer";
    remove(RemoveContainerRequest) -> RemoveContainerResponse = "RemoveContainer";
    list(ListContainersRequest) -> ListContainersResponse = "ListContainers";
    status(ContainerStatusRequest) -> ContainerStatusResponse = "ContainerStatus";
    update_resources(UpdateContainerResourcesRequest) -> UpdateContainerResourcesResponse = "UpdateContainerResources";
    reopen_log(ReopenContainerLogRequest) -> ReopenContainerLogResponse = "ReopenContainerLog";
    exec_sync(ExecSyncRequest) -> ExecSyncResponse = "ExecSync";
    stats(ContainerStatsRequest) -> ContainerStatsResponse = "ContainerStats";
    list_stats(ListContainerStatsRequest) -> ListContainerStatsResponse = "ListContainerStats";
}

/// Stop every container of a pod (StopPodSandbox): stop signal, `timeout`, then kill.
pub async fn stop_all_in_pod(s: &Arc<Services>, pod_id: &str, timeout: Duration) -> Result<(), CriError> {
    let _ = (s, pod_id, timeout);
    Err(CriError::Unimplemented { rpc: "StopPodSandbox" })
}

/// Remove every container of a pod (RemovePodSandbox), stopping running ones.
pub async fn remove_all_in_pod(s: &Arc<Services>, pod_id: &str) -> Result<(), CriError> {
    let _ = (s, pod_id);
    Err(CriError::Unimplemented {
        rpc: "RemovePodSandbox",
    })
}
