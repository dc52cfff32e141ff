//! PortForward (streaming): the pod must exist and be ready; the URL handed
//! out connects the client's streams to ports inside the pod's network
//! namespace ([`crate::streaming`]). Ports are checked here; the client may
//! still ask for others per stream, as the kubelet and containerd allow.

use std::sync::Arc;

use k8s_cri::v1::{PortForwardRequest, PortForwardResponse};

use crate::error::CriError;
use crate::services::Services;
use crate::store::PodState;
use crate::streaming::tokens::{PortForwardTarget, StreamRequest};

#[tracing::instrument(skip_all, fields(pod_id = %request.pod_sandbox_id))]
pub async fn port_forward(s: &Arc<Services>, request: PortForwardRequest) -> Result<PortForwardResponse, CriError> {
    let id = request.pod_sandbox_id;
    if id.is_empty() {
        return Err(CriError::invalid("pod_sandbox_id", "must be set"));
    }
    let ports = request
        .port
        .iter()
        .map(|&p| {
            u16::try_from(p)
                .ok()
                .filter(|&p| p != 0)
                .ok_or_else(|| CriError::invalid("port", format!("{p} is not a port (1-65535)")))
        })
        .collect::<Result<Vec<u16>, CriError>>()?;
    let pod = s
        .store
        .pod(&id)
        .ok_or_else(|| CriError::not_found("pod sandbox", &id))?;
    if pod.state != PodState::Ready {
        return Err(CriError::FailedPrecondition(format!(
            "pod sandbox {id} is not ready: PortForward needs it ready"
        )));
    }
    let url = s
        .streaming
        .url_for(StreamRequest::PortForward(PortForwardTarget { pod_id: id, ports }))?;
    Ok(PortForwardResponse { url })
}
