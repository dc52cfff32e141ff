//! The WebSocket transport of the streaming server.
//!
//! Clients (client-go's websocket executor as used by crictl and critest,
//! kubectl through the apiserver, web terminals) upgrade an HTTP/1.1 `GET`
//! with `Upgrade: websocket` and a `Sec-WebSocket-Protocol` list. What the
//! connection then carries depends on the negotiated subprotocol:
//!
//! ```text
//!  exec / attach                 port-forward
//!  ─────────────                 ────────────
//!  v5.channel.k8s.io  ┐          SPDY/3.1+portforward.k8s.io → tunnel():
//!  v4.channel.k8s.io  ├ binary     binary messages = one byte stream that
//!  channel.k8s.io     ┘ [ch|data]  carries a SPDY/3.1 session
//!  v4.base64.channel.k8s.io ┐    v4.channel.k8s.io, v4.base64.channel.k8s.io
//!  base64.channel.k8s.io    ┘    (or none) → port_forward_channels():
//!    text "<'0'+ch><base64>"       channels 2i (data) and 2i+1 (error)
//! ```
//!
//! Channels of exec/attach: 0 stdin, 1 stdout, 2 stderr, 3 error (status),
//! 4 resize. In v5 a binary message `[255, ch]` half-closes channel `ch`
//! from the client (stdin EOF). The server never closes a channel on its
//! own: the session ends with a Close frame (1000) once every writer is
//! done, which client-go turns into EOF on all its streams.
//!
//! Before the upgrade, [`is_upgrade`], [`negotiate`] and
//! [`accept_response`] (`handshake`) answer the request, and
//! [`parse_ports`] reads a legacy port-forward's `?port=` list; after it,
//! [`remote_command`] and [`port_forward_channels`] (`mux`) or [`tunnel`]
//! take the upgraded connection.
//!
//! Layout:
//! - `handshake`: the opening handshake and protocol choice.
//! - `mux`: the channel protocols (framing, the driver future).
//! - `pipe`: the bounded queues behind the [`Reader`](super::Reader) and
//!   [`Writer`](super::Writer) handed to exec/attach/port-forward.
//! - `tunnel`: the SPDY tunnel (`AsyncRead + AsyncWrite` over messages).

mod handshake;
mod mux;
mod pipe;
mod tunnel;

#[cfg(test)]
mod tests;

use std::borrow::Cow;

use bytes::Bytes;
use http::{header, HeaderValue, StatusCode};
use http_body_util::Full;

use super::RemoteCommandProtocol;

pub use handshake::{accept_response, is_upgrade, negotiate, parse_ports};
pub use mux::{port_forward_channels, remote_command};
pub use tunnel::{tunnel, Tunnel};

/// The largest message (and frame) accepted from a client; a bigger one
/// ends the session with close code 1009.
pub const MAX_MESSAGE_SIZE: usize = 16 << 20;

/// The most ports one legacy port-forward connection may carry (two
/// channels each; channel 255 is reserved).
pub const MAX_PORTS: usize = 127;

/// What the client may be offered, per endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    /// `/exec/TOKEN` and `/attach/TOKEN`.
    RemoteCommand,
    /// `/portforward/TOKEN`.
    PortForward,
}

/// The protocol chosen from the client's `Sec-WebSocket-Protocol` list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WsProtocol {
    /// Binary messages, first byte = channel (0 stdin, 1 stdout, 2 stderr,
    /// 3 error, 4 resize; 255 = v5 CLOSE with the channel in byte 2).
    Channel(RemoteCommandProtocol),
    /// Text messages: channel as the character `'0' + n`, payload base64.
    Base64(RemoteCommandProtocol),
    /// `SPDY/3.1+portforward.k8s.io`: a byte stream for a SPDY session.
    SpdyTunnel,
    /// Legacy channel port-forward (binary or base64 framing).
    PortForwardChannels { base64: bool },
}

impl WsProtocol {
    /// The `Sec-WebSocket-Protocol` value that names this protocol.
    pub fn name(&self) -> Cow<'static, str> {
        match self {
            Self::Channel(p) => Cow::Borrowed(p.name()),
            Self::Base64(RemoteCommandProtocol::V1) => Cow::Borrowed("base64.channel.k8s.io"),
            Self::Base64(p) => Cow::Owned(base64_name(*p)),
            Self::SpdyTunnel => Cow::Borrowed(handshake::SPDY_TUNNEL_PROTOCOL),
            Self::PortForwardChannels { base64: false } => Cow::Borrowed("v4.channel.k8s.io"),
            Self::PortForwardChannels { base64: true } => Cow::Borrowed("v4.base64.channel.k8s.io"),
        }
    }
}

/// `vN.channel.k8s.io` → `vN.base64.channel.k8s.io`.
fn base64_name(protocol: RemoteCommandProtocol) -> String {
    let name = protocol.name();
    match name.split_once('.') {
        Some((version, rest)) => format!("{version}.base64.{rest}"),
        None => format!("base64.{name}"),
    }
}

/// Which streams an exec/attach request asked for (`input`, `output`,
/// `error`, `tty` query parameters). With `tty`, stderr is never opened
/// and the resize channel is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Wanted {
    pub stdin: bool,
    pub stdout: bool,
    pub stderr: bool,
    pub tty: bool,
}

/// A refused handshake (or `?port=` list). [`WsError::response`] renders
/// it the way Kubernetes' streaming server answers.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WsError {
    #[error("not a websocket upgrade request")]
    NotWebSocket,
    #[error("missing Sec-WebSocket-Key")]
    MissingKey,
    #[error("unsupported websocket version {0:?} (want 13)")]
    UnsupportedVersion(String),
    #[error("requested protocol(s) are not supported: {offered:?}; supports {supported:?}")]
    UnsupportedProtocol {
        offered: Vec<String>,
        supported: Vec<&'static str>,
    },
    #[error("query parameter \"port\" is required")]
    NoPorts,
    #[error("unable to parse {0:?} as a port")]
    BadPort(String),
    #[error("too many ports: {0} (at most {MAX_PORTS})")]
    TooManyPorts(usize),
    #[error("building the handshake response: {0}")]
    Response(String),
}

impl WsError {
    /// The HTTP status to refuse the request with (`403` for an
    /// unsupported subprotocol, as Kubernetes does; `400` otherwise).
    pub fn status(&self) -> StatusCode {
        match self {
            Self::UnsupportedProtocol { .. } => StatusCode::FORBIDDEN,
            Self::Response(_) => StatusCode::INTERNAL_SERVER_ERROR,
            _ => StatusCode::BAD_REQUEST,
        }
    }

    /// The refusal as a response: status, the error text as body, and
    /// `Sec-WebSocket-Version: 13` for a version mismatch (RFC 6455 4.4).
    pub fn response(&self) -> http::Response<Full<Bytes>> {
        let mut response = http::Response::new(Full::new(Bytes::from(self.to_string())));
        *response.status_mut() = self.status();
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        if matches!(self, Self::UnsupportedVersion(_)) {
            headers.insert(header::SEC_WEBSOCKET_VERSION, HeaderValue::from_static("13"));
        }
        response
    }
}
