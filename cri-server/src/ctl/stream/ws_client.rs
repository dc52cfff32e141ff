//! Remote commands over WebSocket, and the WebSocket tunnel that carries a
//! SPDY session for port-forward.
//!
//! Remote commands: every binary message is `[channel, data…]` with
//! channels 0 stdin, 1 stdout, 2 stderr, 3 error, 4 resize. In v5 the
//! client half-closes stdin with `[255, 0]`. The server ends the session
//! with a Close frame once its writers are done; what came on channel 3 by
//! then is the outcome. The client pings every few seconds, as client-go
//! does, so an idle session (a shell waiting for input) stays alive.

use std::pin::Pin;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use bytes::{Buf, Bytes};
use futures::{Sink, SinkExt, Stream, StreamExt};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::WebSocketStream;

use super::{status, LocalIo, LocalWriter, RemoteCommandProtocol};

pub const STDIN: u8 = 0;
pub const STDOUT: u8 = 1;
pub const STDERR: u8 = 2;
pub const ERROR: u8 = 3;
pub const RESIZE: u8 = 4;
/// v5: `[CLOSE, channel]` half-closes a channel.
pub const CLOSE: u8 = 255;

/// How often the client pings (client-go's heartbeat period).
const PING_PERIOD: Duration = Duration::from_secs(5);
/// How long the closing handshake may take once the session is over.
const CLOSE_WAIT: Duration = Duration::from_secs(1);
/// Largest stdin piece per message.
const STDIN_CHUNK: usize = 32 << 10;
/// Most error-channel bytes kept (a status is a few hundred).
const MAX_ERROR_BYTES: usize = 64 << 10;

/// `[channel, data…]`.
pub fn channel_message(channel: u8, data: &[u8]) -> Message {
    let mut bytes = Vec::with_capacity(data.len() + 1);
    bytes.push(channel);
    bytes.extend_from_slice(data);
    Message::Binary(bytes.into())
}

/// Runs one exec/attach session on an opened WebSocket.
pub async fn run<S>(
    ws: WebSocketStream<S>,
    protocol: RemoteCommandProtocol,
    io: LocalIo,
    tty: bool,
) -> anyhow::Result<i32>
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    let LocalIo {
        stdin,
        stdout,
        stderr,
        resize,
    } = io;
    let (mut sink, mut incoming) = ws.split();
    let (tx, mut rx) = mpsc::channel::<Message>(16);

    // Everything the client sends goes through one writer, pings included.
    // Told the session is over, it completes the closing handshake (the
    // server has sent its Close: this flushes the reply).
    let (done_tx, mut done_rx) = tokio::sync::oneshot::channel::<()>();
    let writer = async move {
        let mut ping = tokio::time::interval_at(tokio::time::Instant::now() + PING_PERIOD, PING_PERIOD);
        let mut senders_gone = false;
        loop {
            let message = tokio::select! {
                m = rx.recv(), if !senders_gone => match m {
                    Some(m) => m,
                    // Every sender gone: nothing but pings left to send.
                    None => {
                        senders_gone = true;
                        continue;
                    }
                },
                _ = ping.tick() => Message::Ping(Bytes::new()),
                _ = &mut done_rx => break,
            };
            if let Err(e) = sink.send(message).await {
                // The reader sees the connection's end too, and decides.
                tracing::debug!(error = %e, "websocket write");
                return;
            }
        }
        let _ = sink.close().await;
    };
    tokio::pin!(writer);

    let stdin_tx = tx.clone();
    let send_stdin = async move {
        let Some(mut stdin) = stdin else { return };
        let mut buf = vec![0u8; STDIN_CHUNK];
        loop {
            match stdin.read(&mut buf).await {
                Ok(0) => break,
                Ok(n) => {
                    if stdin_tx.send(channel_message(STDIN, &buf[..n])).await.is_err() {
                        return;
                    }
                }
                Err(e) => {
                    tracing::debug!(error = %e, "reading local stdin");
                    break;
                }
            }
        }
        if protocol >= RemoteCommandProtocol::V5 {
            let _ = stdin_tx
                .send(Message::Binary(Bytes::from_static(&[CLOSE, STDIN])))
                .await;
        }
    };

    let resize_tx = tx;
    let send_resizes = async move {
        let Some(mut resize) = resize.filter(|_| tty) else {
            return;
        };
        while let Some(size) = resize.recv().await {
            if resize_tx.send(channel_message(RESIZE, &size.event())).await.is_err() {
                return;
            }
        }
    };

    let read = async move {
        let mut stdout = stdout;
        let mut stderr = if tty { None } else { stderr };
        let mut error = Vec::new();
        loop {
            let message = match incoming.next().await {
                None | Some(Ok(Message::Close(_))) => break,
                Some(Ok(m)) => m,
                // A connection that ends after the outcome was sent is a
                // finished session; before it, a lost one.
                Some(Err(WsError::ConnectionClosed | WsError::AlreadyClosed)) => break,
                Some(Err(e)) if !error.is_empty() => {
                    tracing::debug!(error = %e, "websocket read after the outcome");
                    break;
                }
                Some(Err(e)) => return Err(anyhow::Error::new(e).context("websocket session")),
            };
            let data = match message {
                Message::Binary(data) => data,
                Message::Text(_) => anyhow::bail!("websocket session: unexpected text message"),
                _ => continue,
            };
            let Some((&channel, payload)) = data.split_first() else {
                continue;
            };
            match channel {
                STDOUT => write_local(&mut stdout, payload, "stdout").await,
                STDERR => write_local(&mut stderr, payload, "stderr").await,
                ERROR => {
                    let room = MAX_ERROR_BYTES.saturating_sub(error.len());
                    error.extend_from_slice(&payload[..payload.len().min(room)]);
                }
                other => tracing::debug!(channel = other, "message on an unknown channel: dropped"),
            }
        }
        Ok(error)
    };

    let senders = async {
        tokio::join!(send_stdin, send_resizes);
        std::future::pending::<()>().await
    };
    tokio::pin!(read, senders);
    let mut writer_done = false;
    let read = loop {
        tokio::select! {
            r = &mut read => break r,
            () = &mut writer, if !writer_done => writer_done = true,
            () = &mut senders => unreachable!("pending"),
        }
    };
    if !writer_done {
        let _ = done_tx.send(());
        let _ = tokio::time::timeout(CLOSE_WAIT, &mut writer).await;
    }
    status::outcome(protocol, &read?)
}

/// Writes a payload to a local end, forgetting the end after a failure
/// (output then goes nowhere, as client-go drains a broken writer).
async fn write_local(to: &mut Option<LocalWriter>, data: &[u8], name: &str) {
    let Some(w) = to else { return };
    if let Err(e) = async {
        w.write_all(data).await?;
        w.flush().await
    }
    .await
    {
        tracing::debug!(error = %e, "writing local {name}: discarding the rest");
        *to = None;
    }
}

/// A byte stream carried in binary WebSocket messages (client side): each
/// write is one message, reads run through messages in order. Closing it
/// sends a Close frame. This is what client-go's tunnelling connection
/// does for SPDY-over-WebSocket port-forward.
pub struct Tunnel<S> {
    ws: WebSocketStream<S>,
    pending: Bytes,
    eof: bool,
}

impl<S> Tunnel<S> {
    pub fn new(ws: WebSocketStream<S>) -> Tunnel<S> {
        Tunnel {
            ws,
            pending: Bytes::new(),
            eof: false,
        }
    }
}

fn io_error(e: WsError) -> std::io::Error {
    match e {
        WsError::Io(e) => e,
        e => std::io::Error::other(e),
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for Tunnel<S> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        let this = &mut *self;
        loop {
            if !this.pending.is_empty() {
                let n = this.pending.len().min(buf.remaining());
                buf.put_slice(&this.pending[..n]);
                this.pending.advance(n);
                return Poll::Ready(Ok(()));
            }
            if this.eof {
                return Poll::Ready(Ok(()));
            }
            match ready!(Pin::new(&mut this.ws).poll_next(cx)) {
                Some(Ok(Message::Binary(data))) => this.pending = data,
                Some(Ok(Message::Close(_))) | None => this.eof = true,
                Some(Err(WsError::ConnectionClosed | WsError::AlreadyClosed)) => this.eof = true,
                Some(Ok(Message::Text(_))) => {
                    return Poll::Ready(Err(std::io::Error::new(
                        std::io::ErrorKind::InvalidData,
                        "websocket tunnel: unexpected text message",
                    )))
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => return Poll::Ready(Err(io_error(e))),
            }
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for Tunnel<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<std::io::Result<usize>> {
        if data.is_empty() {
            return Poll::Ready(Ok(0));
        }
        let ws = &mut self.ws;
        ready!(Pin::new(&mut *ws).poll_ready(cx)).map_err(io_error)?;
        Pin::new(&mut *ws)
            .start_send(Message::Binary(Bytes::copy_from_slice(data)))
            .map_err(io_error)?;
        // Push it out now if the socket takes it; otherwise the next
        // write or flush does.
        if let Poll::Ready(Err(e)) = Pin::new(&mut *ws).poll_flush(cx) {
            return Poll::Ready(Err(io_error(e)));
        }
        Poll::Ready(Ok(data.len()))
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.ws).poll_flush(cx).map_err(io_error)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match ready!(Pin::new(&mut self.ws).poll_close(cx)) {
            Ok(()) | Err(WsError::ConnectionClosed | WsError::AlreadyClosed) => Poll::Ready(Ok(())),
            Err(e) => Poll::Ready(Err(io_error(e))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio_tungstenite::tungstenite::protocol::Role;

    async fn pair() -> (
        WebSocketStream<tokio::io::DuplexStream>,
        WebSocketStream<tokio::io::DuplexStream>,
    ) {
        let (a, b) = tokio::io::duplex(1 << 16);
        let client = WebSocketStream::from_raw_socket(a, Role::Client, None).await;
        let server = WebSocketStream::from_raw_socket(b, Role::Server, None).await;
        (client, server)
    }

    #[test]
    fn channel_messages_lead_with_the_channel() {
        assert_eq!(
            channel_message(RESIZE, b"{}"),
            Message::Binary(Bytes::from_static(b"\x04{}"))
        );
    }

    /// A fake server: checks what the client sends, answers with output
    /// and a status on the error channel, then closes.
    #[tokio::test]
    async fn a_session_copies_both_ways_and_reports_the_exit_code() {
        let (client, mut server) = pair().await;
        let (out_w, mut out_r) = tokio::io::duplex(1 << 16);
        let (err_w, mut err_r) = tokio::io::duplex(1 << 16);
        let io = LocalIo {
            stdin: Some(Box::pin(&b"hello"[..])),
            stdout: Some(Box::pin(out_w)),
            stderr: Some(Box::pin(err_w)),
            resize: None,
        };
        let fake = async move {
            let mut stdin = Vec::new();
            loop {
                match server.next().await.unwrap().unwrap() {
                    Message::Binary(m) if m[0] == STDIN => stdin.extend_from_slice(&m[1..]),
                    Message::Binary(m) if m[..] == [CLOSE, STDIN] => break,
                    other => panic!("unexpected {other:?}"),
                }
            }
            assert_eq!(stdin, b"hello");
            server.send(channel_message(STDOUT, b"out")).await.unwrap();
            server.send(channel_message(STDERR, b"err")).await.unwrap();
            let status = br#"{"metadata":{},"status":"Failure","reason":"NonZeroExitCode","details":{"causes":[{"reason":"ExitCode","message":"3"}]}}"#;
            server.send(channel_message(ERROR, status)).await.unwrap();
            server.close(None).await.unwrap();
            // Let the client see the close.
            while let Some(Ok(_)) = server.next().await {}
        };
        let (code, ()) = tokio::join!(run(client, RemoteCommandProtocol::V5, io, false), fake);
        assert_eq!(code.unwrap(), 3);
        let mut out = String::new();
        out_r.read_to_string(&mut out).await.unwrap();
        assert_eq!(out, "out");
        let mut err = String::new();
        err_r.read_to_string(&mut err).await.unwrap();
        assert_eq!(err, "err");
    }

    #[tokio::test]
    async fn a_tty_session_sends_resizes_and_v4_never_closes_stdin() {
        let (client, mut server) = pair().await;
        let (tx, rx) = mpsc::channel(4);
        tx.send(super::super::TerminalSize { width: 100, height: 40 })
            .await
            .unwrap();
        let io = LocalIo {
            stdin: Some(Box::pin(&b"x"[..])),
            stdout: Some(Box::pin(tokio::io::sink())),
            stderr: None,
            resize: Some(rx),
        };
        let fake = async move {
            let mut seen = Vec::new();
            while seen.len() < 2 {
                if let Message::Binary(m) = server.next().await.unwrap().unwrap() {
                    seen.push(m);
                }
            }
            assert!(seen.contains(&Bytes::from_static(b"\x00x")), "{seen:?}");
            assert!(
                seen.contains(&Bytes::from_static(b"\x04{\"Width\":100,\"Height\":40}\n")),
                "{seen:?}"
            );
            server
                .send(channel_message(ERROR, br#"{"status":"Success"}"#))
                .await
                .unwrap();
            server.close(None).await.unwrap();
            while let Some(Ok(m)) = server.next().await {
                assert_ne!(
                    m,
                    Message::Binary(Bytes::from_static(&[CLOSE, STDIN])),
                    "v4 has no CLOSE"
                );
            }
        };
        let (code, ()) = tokio::join!(run(client, RemoteCommandProtocol::V4, io, true), fake);
        assert_eq!(code.unwrap(), 0);
        drop(tx);
    }

    #[tokio::test]
    async fn a_failure_status_is_a_remote_failure() {
        let (client, mut server) = pair().await;
        let io = LocalIo {
            stdout: Some(Box::pin(tokio::io::sink())),
            ..Default::default()
        };
        let fake = async move {
            let status = br#"{"status":"Failure","message":"Internal error occurred: container gone","reason":"InternalError","code":500}"#;
            server.send(channel_message(ERROR, status)).await.unwrap();
            server.close(None).await.unwrap();
            while let Some(Ok(_)) = server.next().await {}
        };
        let (r, ()) = tokio::join!(run(client, RemoteCommandProtocol::V5, io, false), fake);
        let e = r.unwrap_err();
        let failure = e.downcast_ref::<status::RemoteFailure>().expect("a remote failure");
        assert!(failure.message.contains("container gone"));
    }

    #[tokio::test]
    async fn the_tunnel_is_a_byte_stream() {
        let (client, mut server) = pair().await;
        let mut tunnel = Tunnel::new(client);
        tunnel.write_all(b"abc").await.unwrap();
        tunnel.flush().await.unwrap();
        assert_eq!(
            server.next().await.unwrap().unwrap(),
            Message::Binary(Bytes::from_static(b"abc"))
        );
        server.send(Message::Binary(Bytes::from_static(b"12"))).await.unwrap();
        server.send(Message::Ping(Bytes::new())).await.unwrap();
        server.send(Message::Binary(Bytes::from_static(b"345"))).await.unwrap();
        server.close(None).await.unwrap();
        let mut got = Vec::new();
        tunnel.read_to_end(&mut got).await.unwrap();
        assert_eq!(got, b"12345");
    }
}
