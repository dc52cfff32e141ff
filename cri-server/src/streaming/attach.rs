//! A streaming attach session: the client joins the container's own stdio
//! through its monitor's attach connection (stdout/stderr packets out,
//! stdin packets in; terminal resizes go to the monitor too). Several
//! clients may attach at once; a client leaving never stops the container.
//! With `stdin_once` the monitor closes the container's stdin when the
//! first attached client's stdin ends. The session ends when the container
//! exits (the monitor closes the connection) or the client goes away.

use std::os::fd::AsFd;
use std::sync::Arc;

use berth_runtime::monitor::protocol::{MAX_PACKET, TAG_STDERR, TAG_STDIN, TAG_STDIN_CLOSE, TAG_STDOUT};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::fdio::Packets;
use super::remotecommand::resize_events;
use super::status::Outcome;
use super::tokens::AttachTarget;
use super::StreamSet;
use crate::error::CriError;
use crate::services::{blocking, Services};

#[tracing::instrument(skip_all, fields(container_id = %target.container_id))]
pub async fn run(s: Arc<Services>, target: AttachTarget, streams: StreamSet) -> Outcome {
    match run_inner(&s, &target, streams).await {
        Ok(outcome) => outcome,
        Err(e) => Outcome::Failed(e.to_string()),
    }
}

async fn run_inner(s: &Arc<Services>, target: &AttachTarget, mut streams: StreamSet) -> Result<Outcome, CriError> {
    super::ensure_running(s, &target.container_id).await?;
    let conn = {
        let (s, id) = (s.clone(), target.container_id.clone());
        blocking(move || {
            let conn = s.engine.attach(&id)?;
            conn.fd()
                .as_fd()
                .try_clone_to_owned()
                .map_err(|e| CriError::Internal(format!("attach to container {id}: {e}")))
        })
        .await?
    };
    let packets = Arc::new(Packets::new(conn).map_err(|e| CriError::Internal(format!("attach: {e}")))?);

    let stdin_pump = {
        let packets = packets.clone();
        let input = streams.stdin.take();
        async move {
            let Some(mut input) = input else { return };
            let mut buf = vec![0u8; MAX_PACKET];
            loop {
                match input.read(&mut buf[1..]).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        buf[0] = TAG_STDIN;
                        if packets.send(&buf[..=n]).await.is_err() {
                            return;
                        }
                    }
                }
            }
            // The client's stdin ended: the monitor closes the container's
            // stdin if it was created with stdin_once.
            let _ = packets.send(&[TAG_STDIN_CLOSE]).await;
        }
    };
    let resizes = {
        let (engine, id) = (s.engine.clone(), target.container_id.clone());
        resize_events(streams.resize.take(), move |size| {
            let (engine, id) = (engine.clone(), id.clone());
            tokio::task::spawn_blocking(move || {
                if let Err(e) = engine.resize(&id, size.height, size.width) {
                    tracing::debug!(error = %e, "attach resize");
                }
            });
        })
    };
    let mut stdout = streams.stdout.take();
    let mut stderr = streams.stderr.take();
    let output = async {
        let mut buf = vec![0u8; MAX_PACKET + 1];
        loop {
            let n = match packets.recv(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            let target = match buf[0] {
                TAG_STDOUT => stdout.as_mut(),
                // With a terminal there is no stderr: the monitor sends
                // everything as stdout.
                TAG_STDERR => stderr.as_mut().or(stdout.as_mut()),
                _ => continue,
            };
            if let Some(w) = target {
                if w.write_all(&buf[1..n]).await.is_err() {
                    break;
                }
            }
        }
        for w in [stdout.as_mut(), stderr.as_mut()].into_iter().flatten() {
            let _ = w.shutdown().await;
        }
    };
    tokio::pin!(output);
    let input = async { tokio::join!(stdin_pump, resizes) };
    tokio::pin!(input);
    let mut input_done = false;
    loop {
        tokio::select! {
            _ = &mut output => break,
            _ = &mut input, if !input_done => input_done = true,
        }
    }
    Ok(Outcome::Detached)
}
