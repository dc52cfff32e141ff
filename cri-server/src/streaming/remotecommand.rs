//! What exec and attach share once a transport has produced a
//! [`StreamSet`]: running the session, writing its outcome to the error
//! stream, closing every stream, and parsing terminal resize events.

use std::sync::Arc;

use serde::Deserialize;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};

use super::status::{self, Outcome};
use super::tokens::StreamRequest;
use super::{StreamSet, Writer};
use crate::services::Services;

/// Largest resize event accepted (they are ~30 bytes); more is garbage.
const MAX_RESIZE_EVENT: usize = 4096;

/// A terminal size as the client sends it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub struct TermSize {
    #[serde(rename = "Width")]
    pub width: u16,
    #[serde(rename = "Height")]
    pub height: u16,
}

/// Runs an exec or attach session over `streams` and reports its outcome
/// on the error stream, then closes the streams. Port-forward requests do
/// not come here.
pub async fn serve(s: Arc<Services>, request: StreamRequest, mut streams: StreamSet) {
    let protocol = streams.protocol;
    let error = streams.error.take();
    let outcome = match request {
        StreamRequest::Exec(target) => Box::pin(super::exec::run(s, target, streams)).await,
        StreamRequest::Attach(target) => Box::pin(super::attach::run(s, target, streams)).await,
        StreamRequest::PortForward(_) => Outcome::Failed("a port-forward URL is not an exec or attach".into()),
    };
    tracing::debug!(?outcome, "remotecommand session ended");
    if let Some(mut error) = error {
        let bytes = status::encode(protocol, &outcome);
        if !bytes.is_empty() {
            let _ = error.write_all(&bytes).await;
        }
        let _ = error.shutdown().await;
    }
}

/// Copies `from` to `to` until EOF or an error on either side, then closes
/// `to` (FIN for the client). Reads of up to 32 KiB, the largest SPDY DATA
/// frame: `tokio::io::copy`'s 8 KiB took 4× the syscalls and frames.
pub async fn copy_then_close(from: &mut (impl AsyncRead + Unpin), mut to: Writer) {
    if let Err(e) = tokio::io::copy_buf(&mut tokio::io::BufReader::with_capacity(32 << 10, from), &mut to).await {
        tracing::debug!(error = %e, "stream copy ended");
    }
    let _ = to.shutdown().await;
}

/// Reads the resize stream (concatenated JSON objects) and calls `apply`
/// for each size; ends with the stream. Garbage ends it too.
pub async fn resize_events(resize: Option<super::Reader>, apply: impl Fn(TermSize)) {
    let Some(mut resize) = resize else { return };
    let mut pending: Vec<u8> = Vec::new();
    let mut buf = [0u8; 1024];
    loop {
        let n = match resize.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        pending.extend_from_slice(&buf[..n]);
        let mut consumed = 0;
        {
            let mut events = serde_json::Deserializer::from_slice(&pending).into_iter::<TermSize>();
            loop {
                match events.next() {
                    Some(Ok(size)) => {
                        consumed = events.byte_offset();
                        if size.width > 0 && size.height > 0 {
                            apply(size);
                        }
                    }
                    Some(Err(e)) if e.is_eof() => break,
                    Some(Err(e)) => {
                        tracing::debug!(error = %e, "bad resize event: ignoring further resizes");
                        return;
                    }
                    None => break,
                }
            }
        }
        pending.drain(..consumed);
        if pending.len() > MAX_RESIZE_EVENT {
            tracing::debug!("resize event too large: ignoring further resizes");
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    async fn sizes_of(input: &'static [u8]) -> Vec<TermSize> {
        let seen = Mutex::new(Vec::new());
        resize_events(Some(Box::pin(input)), |s| seen.lock().unwrap().push(s)).await;
        seen.into_inner().unwrap()
    }

    #[tokio::test]
    async fn resize_events_are_a_json_stream() {
        let got = sizes_of(b"{\"Width\":80,\"Height\":24}{\"Width\":100,\"Height\":30}\n{\"Width\":1,").await;
        assert_eq!(
            got,
            vec![TermSize { width: 80, height: 24 }, TermSize { width: 100, height: 30 }]
        );
    }

    #[tokio::test]
    async fn garbage_and_zero_sizes_are_ignored() {
        assert!(sizes_of(b"{\"Width\":0,\"Height\":0}").await.is_empty());
        assert_eq!(
            sizes_of(b"{\"Width\":5,\"Height\":6}nonsense{\"Width\":7,\"Height\":8}")
                .await
                .len(),
            1
        );
    }
}
