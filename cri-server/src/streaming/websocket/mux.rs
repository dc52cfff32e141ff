//! The channel protocols: exec/attach (`*channel.k8s.io`) and legacy
//! port-forward, one socket driver for both.
//!
//! Framing, client → server (as Kubernetes' `wsstream.Conn` reads it):
//! empty messages and empty payloads are skipped; binary framing takes
//! byte 0 as the channel, base64 framing takes `byte 0 - '0'` and decodes
//! the rest (undecodable payloads are dropped with a warning, as
//! Kubernetes does); either message type is accepted. In v5 (binary)
//! `[255, ch]` closes channel `ch`; before v5 such a message is ignored.
//! A channel number the session does not have ends it (close 1002), as do
//! a malformed close signal (1002) and an oversized message (1009). Data
//! for a channel the request did not open is discarded.
//!
//! Server → client: binary `[ch, data…]` or text `'0'+ch` + base64, one
//! message per write. The first message is the greeting Kubernetes sends:
//! an empty message on the lowest open output channel (exec/attach), the
//! port as 2 bytes little-endian on each channel (port-forward).
//!
//! The driver ends when the client goes (readers see EOF, writers
//! `BrokenPipe`), when it breaks the protocol (close frame with the
//! reason), or when every writer is shut down or dropped: then it sends
//! Close 1000 (client-go's cue for EOF on every stream) and waits up to
//! [`CLOSE_TIMEOUT`] for the client's Close before releasing the socket.

use std::future::Future;
use std::time::Duration;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use bytes::{BufMut, Bytes, BytesMut};
use futures::{Sink, SinkExt, Stream, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::error::ProtocolError;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role, WebSocketConfig};
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::WebSocketStream;
use tracing::{debug, error, warn};

use super::pipe::{self, ChannelReader, ChannelWriter, Outbound};
use super::{Wanted, WsProtocol, MAX_MESSAGE_SIZE, MAX_PORTS};
use crate::streaming::{PortStream, Reader, RemoteCommandProtocol, StreamSet, Writer};

const STDIN: u8 = 0;
const STDOUT: u8 = 1;
const STDERR: u8 = 2;
const ERROR: u8 = 3;
const RESIZE: u8 = 4;
const REMOTE_COMMAND_CHANNELS: usize = 5;
/// v5: `[CLOSE_SIGNAL, channel]` half-closes `channel`.
const CLOSE_SIGNAL: u8 = 255;

/// How long the closing handshake may take before the socket is dropped.
pub(super) const CLOSE_TIMEOUT: Duration = Duration::from_secs(10);
/// Bytes tungstenite gathers before writing to the socket (a flush
/// writes sooner); it holds at most this plus one message.
const WRITE_BUFFER: usize = 64 << 10;
/// A close frame's reason is limited to 123 bytes (RFC 6455 5.5.1).
const MAX_CLOSE_REASON: usize = 123;

/// The tungstenite settings of every berth WebSocket.
pub(super) fn ws_config() -> WebSocketConfig {
    WebSocketConfig::default()
        .max_message_size(Some(MAX_MESSAGE_SIZE))
        .max_frame_size(Some(MAX_MESSAGE_SIZE))
        .write_buffer_size(WRITE_BUFFER)
        // tungstenite's 128 KiB default read buffer is allocated (and
        // zeroed) per connection: 100 idle attach sessions cost 164 KiB
        // each with it, 50 KiB with 16 KiB.
        .read_buffer_size(16 << 10)
}

/// How a channel number and payload sit in a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Codec {
    Binary,
    Base64,
}

impl Codec {
    /// One message for the client.
    pub(super) fn encode(self, out: Outbound) -> Message {
        match self {
            Self::Binary => {
                let mut frame = BytesMut::with_capacity(1 + out.data.len());
                frame.put_u8(out.channel);
                frame.extend_from_slice(&out.data);
                Message::Binary(frame.freeze())
            }
            Self::Base64 => {
                let mut text = String::with_capacity(2 + out.data.len().div_ceil(3) * 4);
                // Go's string('0'+num): byte arithmetic, then a code point.
                text.push(char::from(b'0'.wrapping_add(out.channel)));
                STANDARD.encode_string(&out.data, &mut text);
                Message::text(text)
            }
        }
    }
}

/// The shape of one session's channel space.
#[derive(Debug, Clone, Copy)]
pub(super) struct Layout {
    pub codec: Codec,
    /// Valid channel numbers are `0..channels`.
    pub channels: usize,
    /// v5: `[255, ch]` closes `ch`.
    pub close_signal: bool,
}

/// What one client message asks for.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Inbound {
    Skip,
    Data { channel: u8, payload: Bytes },
    Close { channel: u8 },
}

/// A client breaking the protocol; ends the session.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub(super) enum Violation {
    #[error("message for channel {0}, which this session does not have")]
    UnknownChannel(u8),
    #[error("stream close signal must carry exactly one channel byte, got {0}")]
    BadCloseSignal(usize),
    #[error("message too big: {0}")]
    TooBig(String),
    #[error("invalid UTF-8 in a text message")]
    Utf8,
    #[error("websocket protocol error: {0}")]
    Protocol(String),
}

impl Violation {
    fn close_code(&self) -> CloseCode {
        match self {
            Self::TooBig(_) => CloseCode::Size,
            Self::Utf8 => CloseCode::Invalid,
            _ => CloseCode::Protocol,
        }
    }
}

impl Layout {
    /// Reads one client message (binary or text payload).
    pub(super) fn classify(&self, message: Bytes) -> Result<Inbound, Violation> {
        let Some(&first) = message.first() else {
            return Ok(Inbound::Skip);
        };
        if first == CLOSE_SIGNAL && self.codec == Codec::Binary {
            return self.close_signal(&message);
        }
        let channel = match self.codec {
            Codec::Binary => first,
            Codec::Base64 => first.wrapping_sub(b'0'),
        };
        if usize::from(channel) >= self.channels {
            return Err(Violation::UnknownChannel(channel));
        }
        let payload = match self.codec {
            Codec::Binary => message.slice(1..),
            Codec::Base64 => match decode_base64(&message[1..]) {
                Some(payload) => payload,
                None => {
                    warn!(channel, "discarding a websocket message that is not valid base64");
                    return Ok(Inbound::Skip);
                }
            },
        };
        if payload.is_empty() {
            return Ok(Inbound::Skip);
        }
        Ok(Inbound::Data { channel, payload })
    }

    fn close_signal(&self, message: &[u8]) -> Result<Inbound, Violation> {
        if !self.close_signal {
            // A v5 client on an older protocol: Kubernetes ignores it too.
            debug!("ignoring a stream close signal: not part of this protocol version");
            return Ok(Inbound::Skip);
        }
        match *message {
            [_, channel] if usize::from(channel) < self.channels => Ok(Inbound::Close { channel }),
            [_, channel] => Err(Violation::UnknownChannel(channel)),
            _ => Err(Violation::BadCloseSignal(message.len() - 1)),
        }
    }
}

/// Standard base64 with padding; line breaks are ignored (as Go does).
fn decode_base64(text: &[u8]) -> Option<Bytes> {
    let text: Vec<u8> = text.iter().copied().filter(|b| !matches!(b, b'\r' | b'\n')).collect();
    STANDARD.decode(text).ok().map(Bytes::from)
}

/// The driver's ends of the readers, by channel.
struct Inbox {
    senders: Vec<Option<mpsc::Sender<Bytes>>>,
}

impl Inbox {
    fn new(channels: usize) -> Inbox {
        Inbox {
            senders: (0..channels).map(|_| None).collect(),
        }
    }

    fn open(&mut self, channel: u8) -> ChannelReader {
        let (tx, reader) = pipe::inbound();
        if let Some(slot) = self.senders.get_mut(usize::from(channel)) {
            *slot = Some(tx);
        }
        reader
    }

    /// Waits for room in the channel's queue; a dropped reader's data is
    /// discarded (and so is data for a channel nobody opened).
    async fn deliver(&mut self, channel: u8, payload: Bytes) {
        let Some(slot) = self.senders.get_mut(usize::from(channel)) else {
            return;
        };
        let delivered = match slot {
            Some(tx) => tx.send(payload).await.is_ok(),
            None => return,
        };
        if !delivered {
            debug!(channel, "reader dropped; discarding its channel's data from now on");
            *slot = None;
        }
    }

    /// The client half-closed `channel`: its reader sees EOF after the
    /// data already queued.
    fn close(&mut self, channel: u8) {
        if let Some(slot) = self.senders.get_mut(usize::from(channel)) {
            if slot.take().is_some() {
                debug!(channel, "client closed its channel");
            }
        }
    }
}

/// Assembles a session: readers, writers, greeting.
struct MuxBuilder {
    layout: Layout,
    inbox: Inbox,
    tx: mpsc::Sender<Outbound>,
    rx: mpsc::Receiver<Outbound>,
    greeting: Vec<Outbound>,
}

impl MuxBuilder {
    fn new(layout: Layout) -> MuxBuilder {
        let (tx, rx) = mpsc::channel(pipe::OUTBOUND_QUEUE);
        MuxBuilder {
            layout,
            inbox: Inbox::new(layout.channels),
            tx,
            rx,
            greeting: Vec::new(),
        }
    }

    fn reader(&mut self, channel: u8) -> Reader {
        Box::pin(self.inbox.open(channel))
    }

    fn writer(&self, channel: u8) -> Writer {
        Box::pin(ChannelWriter::new(channel, &self.tx))
    }

    fn greet(&mut self, channel: u8, data: Bytes) {
        self.greeting.push(Outbound { channel, data });
    }

    /// Drops the builder's own sender: the session now ends when the
    /// writers handed out are all gone.
    fn build(self, refusal: Option<&'static str>) -> Mux {
        let MuxBuilder {
            layout,
            inbox,
            tx,
            rx,
            greeting,
        } = self;
        drop(tx);
        Mux {
            layout,
            inbox,
            outbox: rx,
            greeting,
            refusal,
        }
    }
}

/// One session's driver state.
struct Mux {
    layout: Layout,
    inbox: Inbox,
    outbox: mpsc::Receiver<Outbound>,
    greeting: Vec<Outbound>,
    /// Close at once with 1011 and this reason (a caller's mistake).
    refusal: Option<&'static str>,
}

/// Why the pumping stopped.
#[derive(Debug)]
enum Ending {
    /// Every writer is done.
    Finished,
    /// The client sent a Close frame.
    ClientClosed,
    /// The connection broke or ended without a Close frame.
    Gone(String),
    Violation(Violation),
}

impl Ending {
    fn from_read_error(err: tungstenite::Error) -> Ending {
        match err {
            tungstenite::Error::Capacity(e) => Ending::Violation(Violation::TooBig(e.to_string())),
            tungstenite::Error::Utf8(_) => Ending::Violation(Violation::Utf8),
            tungstenite::Error::Protocol(ProtocolError::ResetWithoutClosingHandshake) => {
                Ending::Gone("connection reset without a closing handshake".into())
            }
            tungstenite::Error::Protocol(e) => Ending::Violation(Violation::Protocol(e.to_string())),
            other => Ending::Gone(other.to_string()),
        }
    }
}

impl Mux {
    async fn run<IO>(self, io: IO)
    where
        IO: AsyncRead + AsyncWrite + Unpin,
    {
        let ws = WebSocketStream::from_raw_socket(io, Role::Server, Some(ws_config())).await;
        let (mut sink, mut stream) = ws.split();
        let Mux {
            layout,
            inbox,
            outbox,
            greeting,
            refusal,
        } = self;
        if let Some(reason) = refusal {
            close_with(&mut sink, CloseCode::Error, reason).await;
            return;
        }
        let ending = pump(&mut sink, &mut stream, layout, inbox, greeting, outbox).await;
        finish(&mut sink, &mut stream, ending).await;
    }
}

/// Reads and writes until one side ends; dropping the other side then
/// ends every reader (EOF) or writer (`BrokenPipe`).
async fn pump<K, S>(
    sink: &mut K,
    stream: &mut S,
    layout: Layout,
    inbox: Inbox,
    greeting: Vec<Outbound>,
    outbox: mpsc::Receiver<Outbound>,
) -> Ending
where
    K: Sink<Message, Error = tungstenite::Error> + Unpin,
    S: Stream<Item = Result<Message, tungstenite::Error>> + Unpin,
{
    let reading = read_loop(stream, layout, inbox);
    let writing = write_loop(sink, layout.codec, greeting, outbox);
    tokio::pin!(reading, writing);
    tokio::select! {
        ending = &mut reading => ending,
        written = &mut writing => match written {
            Ok(()) => Ending::Finished,
            Err(e) => Ending::Gone(e.to_string()),
        },
    }
}

async fn read_loop<S>(stream: &mut S, layout: Layout, mut inbox: Inbox) -> Ending
where
    S: Stream<Item = Result<Message, tungstenite::Error>> + Unpin,
{
    while let Some(item) = stream.next().await {
        let message = match item {
            Ok(Message::Binary(data)) => data,
            Ok(Message::Text(text)) => Bytes::from(text),
            Ok(Message::Close(_)) => return Ending::ClientClosed,
            // Pings are answered by tungstenite on the next read or write.
            Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_)) => continue,
            Err(e) => return Ending::from_read_error(e),
        };
        match layout.classify(message) {
            Ok(Inbound::Skip) => {}
            Ok(Inbound::Data { channel, payload }) => inbox.deliver(channel, payload).await,
            Ok(Inbound::Close { channel }) => inbox.close(channel),
            Err(violation) => return Ending::Violation(violation),
        }
    }
    Ending::Gone("connection closed".into())
}

/// Sends the greeting, then whatever the writers queue, flushing whenever
/// the queue runs empty; returns once every writer is gone.
async fn write_loop<K>(
    sink: &mut K,
    codec: Codec,
    greeting: Vec<Outbound>,
    mut outbox: mpsc::Receiver<Outbound>,
) -> Result<(), tungstenite::Error>
where
    K: Sink<Message, Error = tungstenite::Error> + Unpin,
{
    for message in greeting {
        sink.feed(codec.encode(message)).await?;
    }
    sink.flush().await?;
    while let Some(message) = outbox.recv().await {
        sink.feed(codec.encode(message)).await?;
        if outbox.is_empty() {
            sink.flush().await?;
        }
    }
    sink.flush().await
}

/// The closing handshake, bounded by [`CLOSE_TIMEOUT`].
async fn finish<K, S>(sink: &mut K, stream: &mut S, ending: Ending)
where
    K: Sink<Message, Error = tungstenite::Error> + Unpin,
    S: Stream<Item = Result<Message, tungstenite::Error>> + Unpin,
{
    match ending {
        Ending::Finished => {
            debug!("websocket session done; closing");
            let handshake = async {
                if sink.send(close_frame(CloseCode::Normal, "")).await.is_ok() {
                    await_close(stream).await;
                }
            };
            if tokio::time::timeout(CLOSE_TIMEOUT, handshake).await.is_err() {
                debug!("client did not answer the close frame in time");
            }
        }
        Ending::ClientClosed => {
            debug!("client closed the websocket session");
            // Sends tungstenite's queued answer to the client's Close.
            let _ = tokio::time::timeout(CLOSE_TIMEOUT, sink.close()).await;
        }
        Ending::Gone(why) => debug!(reason = %why, "websocket client gone"),
        Ending::Violation(violation) => {
            warn!(error = %violation, "ending websocket session: client broke the protocol");
            close_with(sink, violation.close_code(), &violation.to_string()).await;
        }
    }
}

/// Sends a Close frame (best effort, bounded by [`CLOSE_TIMEOUT`]).
async fn close_with<K>(sink: &mut K, code: CloseCode, reason: &str)
where
    K: Sink<Message, Error = tungstenite::Error> + Unpin,
{
    match tokio::time::timeout(CLOSE_TIMEOUT, sink.send(close_frame(code, reason))).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => debug!(error = %e, "could not send the close frame"),
        Err(_) => debug!("timed out sending the close frame"),
    }
}

/// Reads (and drops) until the client's Close or the end of the stream.
async fn await_close<S>(stream: &mut S)
where
    S: Stream<Item = Result<Message, tungstenite::Error>> + Unpin,
{
    while let Some(Ok(message)) = stream.next().await {
        if message.is_close() {
            break;
        }
    }
}

fn close_frame(code: CloseCode, reason: &str) -> Message {
    let mut end = reason.len().min(MAX_CLOSE_REASON);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    Message::Close(Some(CloseFrame {
        code,
        reason: reason[..end].into(),
    }))
}

/// Exec/attach over `protocol` (from [`negotiate`](super::negotiate) for
/// [`Endpoint::RemoteCommand`](super::Endpoint)): the streams `want` asks
/// for, and the driver to spawn.
///
/// `stdin` and, with `tty`, `resize` are readers; `stdout`, `stderr`
/// (never with `tty`) and `error` (always) are writers. `protocol` is
/// `V1` for `channel.k8s.io` (plain-text error) and `V4`/`V5` otherwise
/// (JSON status); the resize channel exists with `tty` in every version,
/// as on Kubernetes' WebSocket server. The driver returns once the client
/// is gone or every writer is shut down or dropped (then after a normal
/// Close frame): write the status to `error`, then drop the set.
pub fn remote_command<IO>(io: IO, protocol: &WsProtocol, want: Wanted) -> (StreamSet, impl Future<Output = ()> + Send)
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (codec, version) = match *protocol {
        WsProtocol::Channel(version) => (Codec::Binary, version),
        WsProtocol::Base64(version) => (Codec::Base64, version),
        other => {
            error!(protocol = %other.name(), "not an exec/attach protocol; refusing the websocket session");
            let layout = Layout {
                codec: Codec::Binary,
                channels: 0,
                close_signal: false,
            };
            let set = StreamSet {
                protocol: RemoteCommandProtocol::V1,
                stdin: None,
                stdout: None,
                stderr: None,
                resize: None,
                error: None,
            };
            return (
                set,
                MuxBuilder::new(layout)
                    .build(Some("not an exec/attach protocol"))
                    .run(io),
            );
        }
    };
    let layout = Layout {
        codec,
        channels: REMOTE_COMMAND_CHANNELS,
        close_signal: codec == Codec::Binary && version >= RemoteCommandProtocol::V5,
    };
    let mut builder = MuxBuilder::new(layout);
    let stderr = want.stderr && !want.tty;
    let set = StreamSet {
        protocol: version,
        stdin: want.stdin.then(|| builder.reader(STDIN)),
        stdout: want.stdout.then(|| builder.writer(STDOUT)),
        stderr: stderr.then(|| builder.writer(STDERR)),
        resize: want.tty.then(|| builder.reader(RESIZE)),
        error: Some(builder.writer(ERROR)),
    };
    // Kubernetes announces the session with an empty message on the
    // lowest output channel it opened.
    let greeting = match (want.stdout, stderr) {
        (true, _) => STDOUT,
        (false, true) => STDERR,
        (false, false) => ERROR,
    };
    builder.greet(greeting, Bytes::new());
    (set, builder.build(None).run(io))
}

/// Legacy port-forward (`v4.channel.k8s.io`, `v4.base64.channel.k8s.io`
/// or no protocol, ports from [`parse_ports`](super::parse_ports)): one
/// [`PortStream`] per port, in order — data on channel `2i`, errors on
/// `2i+1`, each announced to the client by the port as 2 bytes
/// little-endian. The driver returns once the client is gone or every
/// `data_out` and `error` writer is shut down or dropped. More than
/// [`MAX_PORTS`] ports: no streams, and the session is closed (1011).
pub fn port_forward_channels<IO>(
    io: IO,
    base64: bool,
    ports: &[u16],
) -> (Vec<PortStream>, impl Future<Output = ()> + Send)
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let codec = if base64 { Codec::Base64 } else { Codec::Binary };
    if ports.len() > MAX_PORTS {
        error!(
            ports = ports.len(),
            "too many ports for one websocket port-forward; refusing the session"
        );
        let layout = Layout {
            codec,
            channels: 0,
            close_signal: false,
        };
        return (
            Vec::new(),
            MuxBuilder::new(layout).build(Some("too many ports")).run(io),
        );
    }
    let mut builder = MuxBuilder::new(Layout {
        codec,
        channels: 2 * ports.len(),
        close_signal: false,
    });
    let streams = ports
        .iter()
        .zip((0..=u8::MAX).step_by(2))
        .map(|(&port, data)| port_stream(&mut builder, port, data))
        .collect();
    (streams, builder.build(None).run(io))
}

fn port_stream(builder: &mut MuxBuilder, port: u16, data: u8) -> PortStream {
    let error = data + 1;
    let announcement = Bytes::copy_from_slice(&port.to_le_bytes());
    builder.greet(data, announcement.clone());
    builder.greet(error, announcement);
    PortStream {
        port,
        data_in: builder.reader(data),
        data_out: builder.writer(data),
        error: builder.writer(error),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const V5: Layout = Layout {
        codec: Codec::Binary,
        channels: 5,
        close_signal: true,
    };
    const V4: Layout = Layout {
        codec: Codec::Binary,
        channels: 5,
        close_signal: false,
    };
    const B64: Layout = Layout {
        codec: Codec::Base64,
        channels: 5,
        close_signal: false,
    };

    fn data(channel: u8, payload: &'static [u8]) -> Result<Inbound, Violation> {
        Ok(Inbound::Data {
            channel,
            payload: Bytes::from_static(payload),
        })
    }

    fn classify(layout: Layout, message: &'static [u8]) -> Result<Inbound, Violation> {
        layout.classify(Bytes::from_static(message))
    }

    #[test]
    fn binary_messages() {
        assert_eq!(classify(V4, b"\x00hello"), data(0, b"hello"));
        assert_eq!(classify(V4, b"\x04{\"Width\":80}"), data(4, b"{\"Width\":80}"));
        assert_eq!(classify(V4, b""), Ok(Inbound::Skip));
        assert_eq!(classify(V4, b"\x00"), Ok(Inbound::Skip));
        assert_eq!(classify(V4, b"\x05x"), Err(Violation::UnknownChannel(5)));
    }

    #[test]
    fn close_signal_only_in_v5() {
        assert_eq!(classify(V5, b"\xff\x00"), Ok(Inbound::Close { channel: 0 }));
        assert_eq!(classify(V5, b"\xff\x04"), Ok(Inbound::Close { channel: 4 }));
        assert_eq!(classify(V5, b"\xff\x09"), Err(Violation::UnknownChannel(9)));
        assert_eq!(classify(V5, b"\xff"), Err(Violation::BadCloseSignal(0)));
        assert_eq!(classify(V5, b"\xff\x00\x00"), Err(Violation::BadCloseSignal(2)));
        assert_eq!(classify(V4, b"\xff\x00"), Ok(Inbound::Skip));
    }

    #[test]
    fn base64_messages() {
        assert_eq!(classify(B64, b"0Zm9vCg=="), data(0, b"foo\n"));
        assert_eq!(classify(B64, b"4e30=\r\n"), data(4, b"{}"));
        assert_eq!(classify(B64, b"0"), Ok(Inbound::Skip));
        assert_eq!(classify(B64, b"0not base64!"), Ok(Inbound::Skip));
        assert_eq!(classify(B64, b"9Zm9v"), Err(Violation::UnknownChannel(9)));
        assert_eq!(classify(B64, b"\x00Zm9v"), Err(Violation::UnknownChannel(208)));
    }

    #[test]
    fn encoding() {
        let out = |channel, data: &'static [u8]| Outbound {
            channel,
            data: Bytes::from_static(data),
        };
        assert_eq!(
            Codec::Binary.encode(out(1, b"\n")),
            Message::Binary(Bytes::from_static(b"\x01\n"))
        );
        assert_eq!(
            Codec::Binary.encode(out(3, b"")),
            Message::Binary(Bytes::from_static(b"\x03"))
        );
        assert_eq!(Codec::Base64.encode(out(1, b"\n")), Message::text("1Cg=="));
        assert_eq!(Codec::Base64.encode(out(2, b"")), Message::text("2"));
    }

    #[test]
    fn close_reasons_are_truncated_on_a_char_boundary() {
        let long = "é".repeat(100);
        let Message::Close(Some(frame)) = close_frame(CloseCode::Protocol, &long) else {
            panic!("not a close frame");
        };
        assert!(frame.reason.len() <= MAX_CLOSE_REASON);
        assert!(long.starts_with(frame.reason.as_str()));
    }
}
