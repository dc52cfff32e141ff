//! exec: ExecSync in a running container; berthctl exits with the
//! command's exit code.

use std::io::Write;
use std::time::Duration;

use k8s_cri::v1::runtime_service_client::RuntimeServiceClient;
use k8s_cri::v1::ExecSyncRequest;
use tonic::transport::Channel;

use super::{request, resolve, status_error};

/// Runs `cmd` in the container; returns its exit code once its output is
/// written.
pub async fn exec(
    channel: Channel,
    timeout: Duration,
    prefix: &str,
    cmd: Vec<String>,
    exec_timeout: i64,
) -> anyhow::Result<i32> {
    if exec_timeout < 0 {
        anyhow::bail!("--timeout {exec_timeout}: negative");
    }
    let id = resolve::container(&channel, timeout, prefix).await?;
    let mut client = RuntimeServiceClient::new(channel).max_decoding_message_size(64 << 20);
    let message = ExecSyncRequest {
        container_id: id,
        cmd,
        timeout: exec_timeout,
    };
    // Without a command timeout the call lasts as long as the command.
    let call = if exec_timeout == 0 {
        tonic::Request::new(message)
    } else {
        request(message, timeout + Duration::from_secs(exec_timeout as u64))
    };
    let resp = client
        .exec_sync(call)
        .await
        .map_err(|s| status_error("ExecSync", s))?
        .into_inner();
    std::io::stdout().write_all(&resp.stdout)?;
    std::io::stdout().flush()?;
    std::io::stderr().write_all(&resp.stderr)?;
    std::io::stderr().flush()?;
    Ok(resp.exit_code)
}
