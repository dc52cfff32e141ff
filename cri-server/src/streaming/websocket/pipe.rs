//! The bounded queues between the socket driver and the session's
//! readers and writers.
//!
//! - Client → server: one `mpsc` of messages per readable channel
//!   ([`INBOUND_QUEUE`] deep). A full queue stops the driver reading the
//!   socket (ordered delivery, bounded memory); a dropped
//!   [`ChannelReader`] makes the driver discard that channel's data.
//! - Server → client: every [`ChannelWriter`] of a session feeds one
//!   shared `mpsc` ([`OUTBOUND_QUEUE`] deep, [`MAX_CHUNK`] per write), so
//!   messages leave in the order they were written and a client that
//!   stops reading makes `poll_write` pend. The driver going away turns
//!   writes into `BrokenPipe` and reads into EOF.

use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::mpsc;
use tokio_util::sync::PollSender;

/// Messages queued per readable channel before the driver stops reading.
pub(super) const INBOUND_QUEUE: usize = 4;
/// Messages queued towards the client before writers pend.
pub(super) const OUTBOUND_QUEUE: usize = 8;
/// The most bytes one write turns into one message.
pub(super) const MAX_CHUNK: usize = 32 << 10;

/// One message for the client: channel number and payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Outbound {
    pub channel: u8,
    pub data: Bytes,
}

/// Client data for one channel, as an `AsyncRead`; EOF once the driver
/// drops the sending side (v5 CLOSE, end of session).
pub(super) struct ChannelReader {
    rx: mpsc::Receiver<Bytes>,
    chunk: Bytes,
}

/// A reader and the driver's sending side for it.
pub(super) fn inbound() -> (mpsc::Sender<Bytes>, ChannelReader) {
    let (tx, rx) = mpsc::channel(INBOUND_QUEUE);
    (
        tx,
        ChannelReader {
            rx,
            chunk: Bytes::new(),
        },
    )
}

impl AsyncRead for ChannelReader {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if buf.remaining() == 0 {
            return Poll::Ready(Ok(()));
        }
        while this.chunk.is_empty() {
            match ready!(this.rx.poll_recv(cx)) {
                Some(chunk) => this.chunk = chunk,
                None => return Poll::Ready(Ok(())),
            }
        }
        let n = buf.remaining().min(this.chunk.len());
        buf.put_slice(&this.chunk.split_to(n));
        Poll::Ready(Ok(()))
    }
}

/// Writes to one channel of the shared outbound queue; `shutdown` (or
/// drop) releases this writer's hold on the session.
pub(super) struct ChannelWriter {
    channel: u8,
    tx: PollSender<Outbound>,
}

impl ChannelWriter {
    pub(super) fn new(channel: u8, tx: &mpsc::Sender<Outbound>) -> ChannelWriter {
        ChannelWriter {
            channel,
            tx: PollSender::new(tx.clone()),
        }
    }
}

fn broken_pipe() -> io::Error {
    io::Error::new(io::ErrorKind::BrokenPipe, "websocket session ended")
}

impl AsyncWrite for ChannelWriter {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        ready!(this.tx.poll_reserve(cx)).map_err(|_| broken_pipe())?;
        let n = buf.len().min(MAX_CHUNK);
        let message = Outbound {
            channel: this.channel,
            data: Bytes::copy_from_slice(&buf[..n]),
        };
        this.tx.send_item(message).map_err(|_| broken_pipe())?;
        Poll::Ready(Ok(n))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        // Queued data is the driver's to send; it flushes whenever the
        // queue runs empty.
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.get_mut().tx.close();
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn reader_splits_chunks_and_ends_on_drop() {
        let (tx, mut reader) = inbound();
        tx.send(Bytes::from_static(b"hello")).await.unwrap();
        tx.send(Bytes::new()).await.unwrap();
        tx.send(Bytes::from_static(b" world")).await.unwrap();
        drop(tx);
        let mut small = [0u8; 3];
        assert_eq!(reader.read(&mut small).await.unwrap(), 3);
        assert_eq!(&small, b"hel");
        let mut rest = Vec::new();
        reader.read_to_end(&mut rest).await.unwrap();
        assert_eq!(rest, b"lo world");
    }

    #[tokio::test]
    async fn writer_chunks_and_breaks_when_the_driver_is_gone() {
        let (tx, mut rx) = mpsc::channel(OUTBOUND_QUEUE);
        let mut writer = ChannelWriter::new(2, &tx);
        drop(tx);
        let big = vec![7u8; MAX_CHUNK + 10];
        assert_eq!(writer.write(&big).await.unwrap(), MAX_CHUNK);
        let got = rx.recv().await.unwrap();
        assert_eq!((got.channel, got.data.len()), (2, MAX_CHUNK));
        drop(rx);
        let err = writer.write(b"x").await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::BrokenPipe);
    }

    #[tokio::test]
    async fn shutdown_releases_the_session() {
        let (tx, mut rx) = mpsc::channel(OUTBOUND_QUEUE);
        let mut writer = ChannelWriter::new(1, &tx);
        drop(tx);
        writer.write_all(b"bye").await.unwrap();
        writer.shutdown().await.unwrap();
        assert_eq!(rx.recv().await.map(|m| m.data), Some(Bytes::from_static(b"bye")));
        assert_eq!(rx.recv().await, None, "no sender left after shutdown");
        assert!(writer.write(b"late").await.is_err());
    }
}
