//! attach: this process's stdio on a running container's (CRI Attach);
//! berthctl exits with the container's exit code if it ends meanwhile.

use std::time::Duration;

use k8s_cri::v1::runtime_service_client::RuntimeServiceClient;
use k8s_cri::v1::AttachRequest;
use tonic::transport::Channel;

use super::stream::{terminal, Transport};
use super::{request, resolve, status_error};

/// Attaches until the container's output ends (it exited or the session
/// was closed); returns the exit code the server reports (0 when none).
pub async fn attach(
    channel: Channel,
    timeout: Duration,
    prefix: &str,
    stdin: bool,
    tty: bool,
    transport: Transport,
) -> anyhow::Result<i32> {
    let id = resolve::container(&channel, timeout, prefix).await?;
    let url = attach_url(channel, timeout, id, stdin, tty).await?;
    terminal::interactive(&url, transport, stdin, tty).await
}

/// CRI Attach as crictl sends it (stdout always, stderr without a
/// terminal): the streaming URL.
pub async fn attach_url(
    channel: Channel,
    timeout: Duration,
    container_id: String,
    stdin: bool,
    tty: bool,
) -> anyhow::Result<String> {
    let message = AttachRequest {
        container_id,
        stdin,
        tty,
        stdout: true,
        stderr: !tty,
    };
    let resp = RuntimeServiceClient::new(channel)
        .attach(request(message, timeout))
        .await
        .map_err(|s| status_error("Attach", s))?
        .into_inner();
    Ok(resp.url)
}
