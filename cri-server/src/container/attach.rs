//! Attach (streaming): the container must be running; the URL handed out
//! joins the client to the container's own stdio through its monitor
//! ([`crate::streaming`]).

use std::sync::Arc;

use k8s_cri::v1::{AttachRequest, AttachResponse};

use super::exec::stdio_wanted;
use super::running_record;
use crate::error::CriError;
use crate::services::Services;
use crate::streaming::tokens::{AttachTarget, StreamRequest};

#[tracing::instrument(skip_all, fields(container_id = %request.container_id))]
pub async fn attach(s: &Arc<Services>, request: AttachRequest) -> Result<AttachResponse, CriError> {
    let stdio = stdio_wanted(request.stdin, request.stdout, request.stderr, request.tty)?;
    // A mismatch with how the container was made (tty, stdin) is not
    // refused, as containerd does: kubectl already warns about it, and the
    // monitor carries what the container has.
    running_record(s, &request.container_id, "Attach").await?;
    let url = s.streaming.url_for(StreamRequest::Attach(AttachTarget {
        container_id: request.container_id,
        stdio,
    }))?;
    Ok(AttachResponse { url })
}
