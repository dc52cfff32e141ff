//! CRI `RuntimeService`: Version, Status and RuntimeConfig here; the pod and
//! container calls delegate to [`crate::sandbox`] and [`crate::container`].
//! Calls not built yet answer UNIMPLEMENTED naming the RPC — never a fake
//! success.

mod runtime_config;
mod status;
mod version;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use k8s_cri::v1::runtime_service_server::RuntimeService;
use k8s_cri::v1::*;
use tonic::{Request, Response, Status};

use crate::edge::serve;
use crate::error::CriError;
use crate::services::Services;
use crate::{container, sandbox};

pub struct RuntimeHandlers {
    services: Arc<Services>,
}

impl RuntimeHandlers {
    pub fn new(services: Arc<Services>) -> Self {
        RuntimeHandlers { services }
    }
}

type Answer<'a, T> = Pin<Box<dyn Future<Output = Result<Response<T>, Status>> + Send + 'a>>;

/// Methods not built yet, written in the shape `#[async_trait]` expands to.
macro_rules! not_yet {
    ($($method:ident($req:ty) -> $resp:ty = $rpc:literal;)*) => {
        $(
            fn $method<'life0, 'async_trait>(&'life0 self, _request: Request<$req>) -> Answer<'async_trait, $resp>
            where
                'life0: 'async_trait,
                Self: 'async_trait,
            {
                Box::pin(serve($rpc, async { Err(CriError::Unimplemented { rpc: $rpc }) }))
            }
        )*
    };
}

/// Methods that hand the request to `module::function(&services, request)`.
macro_rules! delegate {
    ($($method:ident($req:ty) -> $resp:ty = $rpc:literal => $handler:path;)*) => {
        $(
            fn $method<'life0, 'async_trait>(&'life0 self, request: Request<$req>) -> Answer<'async_trait, $resp>
            where
                'life0: 'async_trait,
                Self: 'async_trait,
            {
                let services = self.services.clone();
                Box::pin(async move { serve($rpc, $handler(&services, request.into_inner())).await })
            }
        )*
    };
}

pub type EventStream = Pin<Box<dyn tokio_stream::Stream<Item = Result<ContainerEventResponse, Status>> + Send>>;

#[tonic::async_trait]
impl RuntimeService for RuntimeHandlers {
    type GetContainerEventsStream = EventStream;

    async fn version(&self, request: Request<VersionRequest>) -> Result<Response<VersionResponse>, Status> {
        serve("Version", version::version(request.into_inner())).await
    }

    async fn status(&self, request: Request<StatusRequest>) -> Result<Response<StatusResponse>, Status> {
        serve("Status", status::status(&self.services, request.into_inner())).await
    }

    async fn runtime_config(
        &self,
        request: Request<RuntimeConfigRequest>,
    ) -> Result<Response<RuntimeConfigResponse>, Status> {
        serve(
            "RuntimeConfig",
            runtime_config::runtime_config(&self.services.config, request.into_inner()),
        )
        .await
    }

    delegate! {
        run_pod_sandbox(RunPodSandboxRequest) -> RunPodSandboxResponse = "RunPodSandbox" => sandbox::run;
        stop_pod_sandbox(StopPodSandboxRequest) -> StopPodSandboxResponse = "StopPodSandbox" => sandbox::stop;
        remove_pod_sandbox(RemovePodSandboxRequest) -> RemovePodSandboxResponse = "RemovePodSandbox" => sandbox::remove;
        pod_sandbox_status(PodSandboxStatusRequest) -> PodSandboxStatusResponse = "PodSandboxStatus" => sandbox::status;
        list_pod_sandbox(ListPodSandboxRequest) -> ListPodSandboxResponse = "ListPodSandbox" => sandbox::list;
        pod_sandbox_stats(PodSandboxStatsRequest) -> PodSandboxStatsResponse = "PodSandboxStats" => sandbox::stats;
        list_pod_sandbox_stats(ListPodSandboxStatsRequest) -> ListPodSandboxStatsResponse = "ListPodSandboxStats" => sandbox::list_stats;
        create_container(CreateContainerRequest) -> CreateContainerResponse = "CreateContainer" => container::create;
        start_container(StartContainerRequest) -> StartContainerResponse = "StartContainer" => container::start;
        stop_container(StopContainerRequest) -> StopContainerResponse = "StopContainer" => container::stop;
        remove_container(RemoveContainerRequest) -> RemoveContainerResponse = "RemoveContainer" => container::remove;
        list_containers(ListContainersRequest) -> ListContainersResponse = "ListContainers" => container::list;
        container_status(ContainerStatusRequest) -> ContainerStatusResponse = "ContainerStatus" => container::status;
        update_container_resources(UpdateContainerResourcesRequest) -> UpdateContainerResourcesResponse = "UpdateContainerResources" => container::update_resources;
        reopen_container_log(ReopenContainerLogRequest) -> ReopenContainerLogResponse = "ReopenContainerLog" => container::reopen_log;
        exec_sync(ExecSyncRequest) -> ExecSyncResponse = "ExecSync" => container::exec_sync;
        exec(ExecRequest) -> ExecResponse = "Exec" => container::exec;
        attach(AttachRequest) -> AttachResponse = "Attach" => container::attach;
        port_forward(PortForwardRequest) -> PortForwardResponse = "PortForward" => sandbox::port_forward;
        container_stats(ContainerStatsRequest) -> ContainerStatsResponse = "ContainerStats" => container::stats;
        list_container_stats(ListContainerStatsRequest) -> ListContainerStatsResponse = "ListContainerStats" => container::list_stats;
    }

    not_yet! {
        update_runtime_config(UpdateRuntimeConfigRequest) -> UpdateRuntimeConfigResponse = "UpdateRuntimeConfig";
        checkpoint_container(CheckpointContainerRequest) -> CheckpointContainerResponse = "CheckpointContainer";
        get_container_events(GetEventsRequest) -> EventStream = "GetContainerEvents";
        list_metric_descriptors(ListMetricDescriptorsRequest) -> ListMetricDescriptorsResponse = "ListMetricDescriptors";
        list_pod_sandbox_metrics(ListPodSandboxMetricsRequest) -> ListPodSandboxMetricsResponse = "ListPodSandboxMetrics";
    }
}
