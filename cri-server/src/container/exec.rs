//! Exec (streaming): validate the request and hand out a single-use URL on
//! the streaming server, where the client then runs the command with its
//! stdio attached ([`crate::streaming`]).

use std::sync::Arc;

use k8s_cri::v1::{ExecRequest, ExecResponse};

use super::running_record;
use crate::error::CriError;
use crate::services::Services;
use crate::streaming::tokens::{ExecTarget, StdioWanted, StreamRequest};

#[tracing::instrument(skip_all, fields(container_id = %request.container_id))]
pub async fn exec(s: &Arc<Services>, request: ExecRequest) -> Result<ExecResponse, CriError> {
    if request.cmd.is_empty() || request.cmd[0].is_empty() {
        return Err(CriError::invalid("cmd", "must name a command"));
    }
    let stdio = stdio_wanted(request.stdin, request.stdout, request.stderr, request.tty)?;
    running_record(s, &request.container_id, "Exec").await?;
    let url = s.streaming.url_for(StreamRequest::Exec(ExecTarget {
        container_id: request.container_id,
        cmd: request.cmd,
        stdio,
    }))?;
    Ok(ExecResponse { url })
}

/// The stdio combination a streaming request asks for, checked as the
/// kubelet does: at least one stream, and no stderr with a terminal (a
/// terminal merges it into stdout).
pub(crate) fn stdio_wanted(stdin: bool, stdout: bool, stderr: bool, tty: bool) -> Result<StdioWanted, CriError> {
    if !(stdin || stdout || stderr) {
        return Err(CriError::invalid(
            "stdin/stdout/stderr",
            "one of stdin, stdout or stderr must be set",
        ));
    }
    if tty && stderr {
        return Err(CriError::invalid(
            "stderr",
            "tty and stderr cannot both be true: a terminal carries stderr in stdout",
        ));
    }
    Ok(StdioWanted {
        stdin,
        stdout,
        stderr,
        tty,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stdio_combinations_are_checked_as_the_kubelet_does() {
        assert!(stdio_wanted(false, false, false, false).is_err());
        let e = stdio_wanted(true, true, true, true).unwrap_err().to_string();
        assert!(e.contains("stderr"), "{e}");
        assert!(stdio_wanted(true, true, false, true).is_ok());
        assert!(stdio_wanted(false, true, true, false).is_ok());
    }
}
