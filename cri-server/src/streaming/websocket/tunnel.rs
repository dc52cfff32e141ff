//! `SPDY/3.1+portforward.k8s.io`: the WebSocket as a plain byte stream,
//! as client-go's `TunnelingConnection` sees it (the SPDY/3.1 session of
//! a port-forward runs inside).
//!
//! Each write becomes one binary message (at most [`MAX_CHUNK`] bytes);
//! reads concatenate binary messages. A text message is an error (the
//! client would reject one too); the client's Close frame or the end of
//! the connection is EOF. Pings are answered while the tunnel is read.
//! `shutdown` sends Close 1000. Each write tries to reach the socket at
//! once; what it cannot push out yet goes with the next write, flush or
//! read (so a reader task keeps a quiet writer's data moving), and
//! `flush` waits until it is all out.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role};
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::WebSocketStream;
use tracing::debug;

use super::mux::ws_config;
use super::pipe::MAX_CHUNK;

type Opening<IO> = Pin<Box<dyn Future<Output = WebSocketStream<IO>> + Send>>;

/// The WebSocket as an `AsyncRead + AsyncWrite` byte stream (see the
/// module docs). Dropping it drops the connection.
pub struct Tunnel<IO> {
    state: State<IO>,
    /// The unread rest of the last binary message.
    pending: Bytes,
    /// The client's Close frame (or the end of the connection) was read.
    read_closed: bool,
    /// Our Close frame is queued.
    close_sent: bool,
}

enum State<IO> {
    /// Setting up tungstenite (completes on first poll).
    Opening(Opening<IO>),
    Open(Box<WebSocketStream<IO>>),
}

/// Wraps the upgraded connection of a `SPDY/3.1+portforward.k8s.io`
/// session: hand the result to the SPDY server as its transport.
pub fn tunnel<IO>(io: IO) -> Tunnel<IO>
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let opening: Opening<IO> = Box::pin(WebSocketStream::from_raw_socket(io, Role::Server, Some(ws_config())));
    Tunnel {
        state: State::Opening(opening),
        pending: Bytes::new(),
        read_closed: false,
        close_sent: false,
    }
}

fn io_error(err: tungstenite::Error) -> io::Error {
    match err {
        tungstenite::Error::Io(e) => e,
        tungstenite::Error::ConnectionClosed | tungstenite::Error::AlreadyClosed => {
            io::Error::new(io::ErrorKind::BrokenPipe, "websocket closed")
        }
        tungstenite::Error::Capacity(e) => io::Error::new(io::ErrorKind::InvalidData, e),
        other => io::Error::other(other),
    }
}

impl<IO> State<IO>
where
    IO: AsyncRead + AsyncWrite + Unpin,
{
    fn poll_open(&mut self, cx: &mut Context<'_>) -> Poll<&mut WebSocketStream<IO>> {
        if let State::Opening(opening) = self {
            let ws = ready!(opening.as_mut().poll(cx));
            *self = State::Open(Box::new(ws));
        }
        match self {
            State::Open(ws) => Poll::Ready(ws),
            // Unreachable: replaced just above.
            State::Opening(_) => Poll::Pending,
        }
    }
}

impl<IO> Tunnel<IO>
where
    IO: AsyncRead + AsyncWrite + Unpin,
{
    /// Reads messages until there is data or the stream ended.
    fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.pending.is_empty() && !self.read_closed {
            let ws = ready!(self.state.poll_open(cx));
            // No flush from here: tokio-tungstenite keeps one write waker,
            // and a flush polled from the reading task would replace the
            // writing task's, which then never wakes (a port-forward
            // stalled for good under load). Writers flush their own writes.
            match ready!(ws.poll_next_unpin(cx)) {
                Some(Ok(Message::Binary(data))) => self.pending = data,
                Some(Ok(Message::Close(_))) | None => self.read_closed = true,
                Some(Ok(Message::Text(_))) => {
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        "text message in a binary tunnel",
                    )));
                }
                Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => {}
                Some(Err(e)) => return Poll::Ready(Err(io_error(e))),
            }
        }
        Poll::Ready(Ok(()))
    }
}

impl<IO> AsyncRead for Tunnel<IO>
where
    IO: AsyncRead + AsyncWrite + Unpin,
{
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if buf.remaining() == 0 {
            return Poll::Ready(Ok(()));
        }
        ready!(this.poll_fill(cx))?;
        let n = buf.remaining().min(this.pending.len());
        buf.put_slice(&this.pending.split_to(n));
        Poll::Ready(Ok(()))
    }
}

impl<IO> AsyncWrite for Tunnel<IO>
where
    IO: AsyncRead + AsyncWrite + Unpin,
{
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        if this.close_sent {
            return Poll::Ready(Err(io::Error::new(io::ErrorKind::BrokenPipe, "tunnel shut down")));
        }
        let ws = ready!(this.state.poll_open(cx));
        ready!(ws.poll_ready_unpin(cx)).map_err(io_error)?;
        let n = buf.len().min(MAX_CHUNK);
        ws.start_send_unpin(Message::Binary(Bytes::copy_from_slice(&buf[..n])))
            .map_err(io_error)?;
        // Push it out now if the socket takes it; otherwise the writer's
        // next write or flush will (its waker is the one registered).
        if let Poll::Ready(Err(e)) = ws.poll_flush_unpin(cx) {
            return Poll::Ready(Err(io_error(e)));
        }
        Poll::Ready(Ok(n))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let ws = ready!(this.state.poll_open(cx));
        ready!(ws.poll_flush_unpin(cx)).map_err(io_error)?;
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let ws = ready!(this.state.poll_open(cx));
        if !this.close_sent && !this.read_closed {
            ready!(ws.poll_ready_unpin(cx)).map_err(io_error)?;
            let normal = CloseFrame {
                code: CloseCode::Normal,
                reason: "".into(),
            };
            if let Err(e) = ws.start_send_unpin(Message::Close(Some(normal))) {
                debug!(error = %e, "could not queue the tunnel's close frame");
            }
        }
        this.close_sent = true;
        // Flushes our Close (or the answer to the client's).
        match ready!(ws.poll_close_unpin(cx)) {
            Ok(()) | Err(tungstenite::Error::ConnectionClosed | tungstenite::Error::AlreadyClosed) => {
                Poll::Ready(Ok(()))
            }
            Err(e) => Poll::Ready(Err(io_error(e))),
        }
    }
}
