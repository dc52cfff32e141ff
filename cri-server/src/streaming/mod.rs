//! The streaming server: what CRI `Exec`, `Attach` and `PortForward` hand
//! out a URL to, and what the kubelet, crictl and berthctl then connect to.
//!
//! ```text
//!  CRI Exec/Attach/PortForward ──▶ tokens: single-use, expiring token → request
//!        returns http://ADDR/{exec,attach,portforward}/TOKEN
//!  client ── HTTP upgrade ──▶ server: route, take the token once
//!        ├─ SPDY/3.1 (spdy/)            streams by `streamType` header
//!        └─ WebSocket (websocket.rs)    channel byte per message (v4, v5,
//!                                       base64), or SPDY tunnelled in
//!                                       binary messages (port-forward)
//!  protocol-independent:  StreamSet ──▶ remotecommand.rs (exec, attach)
//!                         port streams ──▶ portforward.rs
//! ```
//!
//! Each protocol adapter turns its wire format into the same shapes below,
//! so exec/attach/port-forward are written once.

mod attach;
mod exec;
mod fdio;
mod portforward;
mod remotecommand;
pub mod server;
pub mod spdy;
mod status;
pub mod tokens;
pub mod websocket;

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite};

use crate::config::StreamingConfig;
use crate::error::CriError;
use tokens::{StreamRequest, Tokens};

/// What the CRI handlers use: hand out a URL for a validated request.
pub struct Streaming {
    tokens: Tokens,
    /// `http://127.0.0.1:PORT` (or https), the bound address.
    base_url: String,
    /// Seconds of silence after which a session ends.
    pub idle_timeout: Duration,
    /// Sessions at once.
    pub max_sessions: usize,
    sessions: Arc<tokio::sync::Semaphore>,
}

/// URLs waiting to be used at once (the kubelet's own cache holds 1000).
const MAX_WAITING_TOKENS: usize = 4096;

impl Streaming {
    pub fn new(config: &StreamingConfig, base_url: String) -> Streaming {
        Streaming {
            tokens: Tokens::new(Duration::from_secs(config.token_ttl_seconds), MAX_WAITING_TOKENS),
            base_url,
            idle_timeout: Duration::from_secs(config.idle_timeout_seconds),
            max_sessions: config.max_sessions,
            sessions: Arc::new(tokio::sync::Semaphore::new(config.max_sessions)),
        }
    }

    /// A single-use URL for `request`.
    pub fn url_for(&self, request: StreamRequest) -> Result<String, CriError> {
        let kind = request.kind();
        let token = self
            .tokens
            .insert(request)
            .map_err(|e| CriError::ResourceExhausted(e.to_string()))?;
        Ok(format!("{}/{kind}/{token}", self.base_url))
    }

    /// The request behind `token`, once.
    pub fn take(&self, token: &str) -> Option<StreamRequest> {
        if !tokens::well_formed(token) {
            return None;
        }
        self.tokens.take(token)
    }

    /// A session slot, or None when `max_sessions` are running.
    pub fn try_session(&self) -> Option<tokio::sync::OwnedSemaphorePermit> {
        self.sessions.clone().try_acquire_owned().ok()
    }
}

/// A byte stream from the client (stdin, resize events, port data).
pub type Reader = Pin<Box<dyn AsyncRead + Send>>;
/// A byte stream to the client (stdout, stderr, error, port data).
pub type Writer = Pin<Box<dyn AsyncWrite + Send>>;

/// The remotecommand subprotocols (`X-Stream-Protocol-Version` on SPDY,
/// `Sec-WebSocket-Protocol` on WebSocket).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum RemoteCommandProtocol {
    /// `channel.k8s.io`: error stream carries plain text.
    V1,
    /// `v2.channel.k8s.io`.
    V2,
    /// `v3.channel.k8s.io`: adds the resize stream.
    V3,
    /// `v4.channel.k8s.io`: the error stream carries a JSON `metav1.Status`
    /// (exit codes as `NonZeroExitCode`).
    V4,
    /// `v5.channel.k8s.io`: adds the stdin CLOSE signal (WebSocket).
    V5,
}

impl RemoteCommandProtocol {
    /// Every protocol berth speaks, preferred first.
    pub const ALL: [RemoteCommandProtocol; 5] = [Self::V5, Self::V4, Self::V3, Self::V2, Self::V1];

    pub fn name(self) -> &'static str {
        match self {
            Self::V1 => "channel.k8s.io",
            Self::V2 => "v2.channel.k8s.io",
            Self::V3 => "v3.channel.k8s.io",
            Self::V4 => "v4.channel.k8s.io",
            Self::V5 => "v5.channel.k8s.io",
        }
    }

    pub fn from_name(name: &str) -> Option<RemoteCommandProtocol> {
        Self::ALL.into_iter().find(|p| p.name() == name)
    }

    /// v4 and later report the outcome as a JSON `metav1.Status`.
    pub fn status_is_json(self) -> bool {
        self >= Self::V4
    }

    /// v3 and later carry terminal resize events.
    pub fn has_resize(self) -> bool {
        self >= Self::V3
    }
}

/// The streams of one exec or attach session, whatever the transport.
/// A stream the client did not ask for (or the protocol lacks) is `None`.
/// Closing a writer (`shutdown`) ends that stream for the client (SPDY
/// FIN; on WebSocket nothing, channels end with the connection).
pub struct StreamSet {
    pub protocol: RemoteCommandProtocol,
    /// Ends (EOF) when the client half-closes stdin (SPDY FIN, WebSocket
    /// v5 CLOSE on channel 0) or the connection ends.
    pub stdin: Option<Reader>,
    pub stdout: Option<Writer>,
    pub stderr: Option<Writer>,
    /// A sequence of JSON objects `{"Width":W,"Height":H}`, as the client
    /// writes them (not framed: parse them as a JSON stream).
    pub resize: Option<Reader>,
    /// Where the final status goes (see [`RemoteCommandProtocol`]).
    pub error: Option<Writer>,
}

/// One port-forward data stream pair, whatever the transport: bytes for
/// `port` flow through `data`; a failure to reach the port is written as
/// text to `error`.
pub struct PortStream {
    pub port: u16,
    pub data_in: Reader,
    pub data_out: Writer,
    pub error: Writer,
}

/// Exec and attach need the container running when the session starts
/// (it may have exited since the URL was handed out).
async fn ensure_running(s: &Arc<crate::services::Services>, id: &str) -> Result<(), CriError> {
    crate::container::running_record(s, id, "a streaming session")
        .await
        .map(drop)
}
