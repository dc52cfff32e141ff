//! ExecSync: run a command in a running container with the container's
//! own process settings, capture stdout/stderr (capped like the kubelet's
//! 16 MiB message limit), and return its exit code. A timeout kills the
//! command and answers DEADLINE_EXCEEDED, which the kubelet reads as a
//! timed-out probe.

use std::sync::Arc;
use std::time::Duration;

use k8s_cri::v1::{ExecSyncRequest, ExecSyncResponse};

use super::{record, refresh};
use crate::error::CriError;
use crate::services::{blocking, Services};
use crate::store::ContainerState;

/// Bytes kept of stdout and of stderr each: the kubelet's limit on the
/// whole answer is 16 MiB.
pub const OUTPUT_CAP: usize = 16 << 20;

#[tracing::instrument(skip_all, fields(container_id = %request.container_id))]
pub async fn exec_sync(s: &Arc<Services>, request: ExecSyncRequest) -> Result<ExecSyncResponse, CriError> {
    let id = request.container_id;
    if request.cmd.is_empty() || request.cmd[0].is_empty() {
        return Err(CriError::invalid("cmd", "must name a command"));
    }
    if request.timeout < 0 {
        return Err(CriError::invalid("timeout", format!("{} is negative", request.timeout)));
    }
    record(s, &id)?;
    let rec = refresh(s, &id)
        .await?
        .ok_or_else(|| CriError::not_found("container", &id))?;
    if rec.state != ContainerState::Running {
        return Err(CriError::FailedPrecondition(format!(
            "container {id} is {:?}: ExecSync needs it running",
            rec.state
        )));
    }
    let timeout = Duration::from_secs(request.timeout as u64);
    let cmd = request.cmd;
    let result = {
        let (s, id, cmd) = (s.clone(), id.clone(), cmd.clone());
        blocking(move || {
            let process = s.engine.exec_process(&id, cmd)?;
            Ok(s.engine.exec_sync(&id, &process, timeout, OUTPUT_CAP)?)
        })
        .await?
    };
    if result.timed_out {
        return Err(CriError::DeadlineExceeded(format!(
            "ExecSync in container {id}: command {cmd:?} timed out after {}s",
            timeout.as_secs()
        )));
    }
    Ok(ExecSyncResponse {
        stdout: result.stdout,
        stderr: result.stderr,
        exit_code: result.exit_code,
    })
}
