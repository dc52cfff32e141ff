//! exec: a command in a running container, run to completion (ExecSync)
//! or streamed (Exec, with -i or -t); berthctl exits with the command's
//! exit code.

use std::io::Write;
use std::time::Duration;

use k8s_cri::v1::runtime_service_client::RuntimeServiceClient;
use k8s_cri::v1::{ExecRequest, ExecSyncRequest};
use tonic::transport::Channel;

use super::stream::{terminal, Transport};
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

/// Runs `cmd` in the container with this process's stdio streamed to it
/// (stdin with `stdin`, a terminal with `tty`); returns its exit code.
pub async fn exec_stream(
    channel: Channel,
    timeout: Duration,
    prefix: &str,
    cmd: Vec<String>,
    stdin: bool,
    tty: bool,
    transport: Transport,
) -> anyhow::Result<i32> {
    let id = resolve::container(&channel, timeout, prefix).await?;
    let url = exec_url(channel, timeout, id, cmd, stdin, tty).await?;
    terminal::interactive(&url, transport, stdin, tty).await
}

/// CRI Exec as crictl sends it (stdout always, stderr without a
/// terminal): the streaming URL.
pub async fn exec_url(
    channel: Channel,
    timeout: Duration,
    container_id: String,
    cmd: Vec<String>,
    stdin: bool,
    tty: bool,
) -> anyhow::Result<String> {
    let message = ExecRequest {
        container_id,
        cmd,
        tty,
        stdin,
        stdout: true,
        stderr: !tty,
    };
    let resp = RuntimeServiceClient::new(channel)
        .exec(request(message, timeout))
        .await
        .map_err(|s| status_error("Exec", s))?
        .into_inner();
    Ok(resp.url)
}
