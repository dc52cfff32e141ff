//! The client side of berthd's streaming server: what CRI `Exec`, `Attach`
//! and `PortForward` URLs are used with. berthctl's `exec -i/-t`, `attach`
//! and `port-forward` run on it, and so can tests and benchmarks.
//!
//! ```text
//!  remote_command(url, options, LocalIo) ─┬─ SPDY/3.1 (POST + Upgrade)     streams by `streamType`
//!                                         └─ WebSocket (GET)               channel byte per message
//!  PortForwarder::connect(url, transport) ─┬─ SPDY/3.1 (portforward.k8s.io)
//!                                          └─ SPDY/3.1 tunnelled in WebSocket binary messages
//!                                             (SPDY/3.1+portforward.k8s.io, as client-go's
//!                                             tunnelling dialer)
//! ```
//!
//! Both transports behave as client-go's executors do: the error stream is
//! read to its end and decoded per protocol ([`status::exit_code`]); the
//! session ends once stdout and stderr have ended.

mod dial;
#[cfg(test)]
mod interop_tests;
pub mod port_forward;
mod spdy_client;
pub mod status;
pub mod terminal;
mod ws_client;

use std::pin::Pin;

use serde::Serialize;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::mpsc;

pub use crate::streaming::RemoteCommandProtocol;
pub use port_forward::{PortConnection, PortForwarder};
pub use status::RemoteFailure;

/// How to reach the streaming server (crictl's `--transport`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Transport {
    /// HTTP/1.1 upgraded to SPDY/3.1 (crictl's and the kubelet's default).
    #[default]
    Spdy,
    /// WebSocket (RFC 6455) with the Kubernetes channel protocols.
    #[value(name = "websocket")]
    WebSocket,
}

/// A terminal size as a resize event carries it: `{"Width":W,"Height":H}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct TerminalSize {
    #[serde(rename = "Width")]
    pub width: u16,
    #[serde(rename = "Height")]
    pub height: u16,
}

impl TerminalSize {
    /// One resize event as written on the resize stream or channel: the
    /// JSON object and a newline (as Go's `json.Encoder` writes it).
    pub fn event(&self) -> Vec<u8> {
        let mut bytes = serde_json::to_vec(self).expect("a terminal size serializes");
        bytes.push(b'\n');
        bytes
    }
}

/// A byte source for the remote stdin.
pub type LocalReader = Pin<Box<dyn AsyncRead + Send>>;
/// A byte sink for the remote stdout or stderr.
pub type LocalWriter = Pin<Box<dyn AsyncWrite + Send>>;

/// The local ends of a remote command's streams. Which fields are set must
/// match the `stdin`, `stdout` and `stderr` of the CRI `Exec` or `Attach`
/// request the URL came from ([`LocalIo::wanted`]): the server waits for
/// exactly those streams. With a terminal there is no stderr (the remote
/// terminal carries it on stdout): `stderr` is then ignored.
#[derive(Default)]
pub struct LocalIo {
    /// Copied to the remote stdin; its EOF half-closes the remote stdin
    /// (SPDY FIN; on WebSocket v5 the CLOSE signal, on v4 nothing).
    pub stdin: Option<LocalReader>,
    /// Receives the remote stdout (flushed after every write).
    pub stdout: Option<LocalWriter>,
    /// Receives the remote stderr.
    pub stderr: Option<LocalWriter>,
    /// Terminal sizes to send (only with a terminal): the first one right
    /// away, then each as it comes. None or a closed channel: no events.
    pub resize: Option<mpsc::Receiver<TerminalSize>>,
}

/// Which standard streams a CRI `Exec`/`Attach` request should ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Wanted {
    pub stdin: bool,
    pub stdout: bool,
    pub stderr: bool,
    pub tty: bool,
}

impl LocalIo {
    /// The stream flags for the CRI request this `LocalIo` will serve.
    pub fn wanted(&self, tty: bool) -> Wanted {
        Wanted {
            stdin: self.stdin.is_some(),
            stdout: self.stdout.is_some(),
            stderr: self.stderr.is_some() && !tty,
            tty,
        }
    }
}

/// How to run a remote command session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteCommandOptions {
    pub transport: Transport,
    /// The CRI request's `tty`: no stderr stream, a resize stream.
    pub tty: bool,
    /// Protocols offered, preferred first; empty: the transport's default
    /// ([`default_protocols`]).
    pub protocols: Vec<RemoteCommandProtocol>,
}

/// How a remote command session ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Finished {
    /// The protocol the server chose.
    pub protocol: RemoteCommandProtocol,
    /// The remote process's exit code (0 for an attach that ended).
    pub exit_code: i32,
}

/// What each transport offers unless told otherwise: on SPDY every
/// version, v5 first (as client-go's SPDY executor); on WebSocket v5 and
/// v4 (client-go offers v5 only).
pub fn default_protocols(transport: Transport) -> Vec<RemoteCommandProtocol> {
    match transport {
        Transport::Spdy => RemoteCommandProtocol::ALL.to_vec(),
        Transport::WebSocket => vec![RemoteCommandProtocol::V5, RemoteCommandProtocol::V4],
    }
}

/// Runs an exec or attach session at `url` (from CRI `Exec`/`Attach`) with
/// `io` as its local ends; returns the remote exit code. A session the
/// server reports as failed is an error carrying [`RemoteFailure`].
pub async fn remote_command(url: &str, transport: Transport, io: LocalIo, tty: bool) -> anyhow::Result<i32> {
    let options = RemoteCommandOptions {
        transport,
        tty,
        protocols: Vec::new(),
    };
    Ok(remote_command_with(url, &options, io).await?.exit_code)
}

/// [`remote_command`] with the protocols to offer, reporting the one the
/// server chose.
pub async fn remote_command_with(url: &str, options: &RemoteCommandOptions, io: LocalIo) -> anyhow::Result<Finished> {
    let protocols = if options.protocols.is_empty() {
        default_protocols(options.transport)
    } else {
        options.protocols.clone()
    };
    let names: Vec<&str> = protocols.iter().map(|p| p.name()).collect();
    match options.transport {
        Transport::Spdy => {
            let (conn, chosen) = dial::spdy(url, &names).await?;
            let protocol = chosen_protocol(chosen.as_deref(), &protocols)?;
            let exit_code = spdy_client::run(conn, protocol, io, options.tty).await?;
            Ok(Finished { protocol, exit_code })
        }
        Transport::WebSocket => {
            let (ws, chosen) = dial::websocket(url, &names).await?;
            let protocol = chosen_protocol(chosen.as_deref(), &protocols)?;
            let exit_code = ws_client::run(ws, protocol, io, options.tty).await?;
            Ok(Finished { protocol, exit_code })
        }
    }
}

/// The protocol named by the server's answer; none named is
/// `channel.k8s.io` (client-go falls back so too).
fn chosen_protocol(chosen: Option<&str>, offered: &[RemoteCommandProtocol]) -> anyhow::Result<RemoteCommandProtocol> {
    let Some(name) = chosen else {
        return Ok(RemoteCommandProtocol::V1);
    };
    match RemoteCommandProtocol::from_name(name) {
        Some(p) if offered.contains(&p) => Ok(p),
        _ => anyhow::bail!("the streaming server chose protocol {name:?}, which was not offered"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resize_events_are_json_objects() {
        let size = TerminalSize { width: 80, height: 24 };
        assert_eq!(size.event(), b"{\"Width\":80,\"Height\":24}\n");
        let parsed: serde_json::Value = serde_json::from_slice(&size.event()).unwrap();
        assert_eq!(parsed, serde_json::json!({"Width": 80, "Height": 24}));
    }

    #[test]
    fn the_chosen_protocol_must_be_offered() {
        let all = default_protocols(Transport::Spdy);
        assert_eq!(all[0], RemoteCommandProtocol::V5);
        assert_eq!(
            chosen_protocol(Some("v4.channel.k8s.io"), &all).unwrap(),
            RemoteCommandProtocol::V4
        );
        assert_eq!(chosen_protocol(None, &all).unwrap(), RemoteCommandProtocol::V1);
        let ws = default_protocols(Transport::WebSocket);
        assert!(chosen_protocol(Some("v3.channel.k8s.io"), &ws).is_err());
        assert!(chosen_protocol(Some("nope"), &all).is_err());
    }

    #[test]
    fn wanted_streams_follow_the_local_ends() {
        let io = LocalIo {
            stdin: Some(Box::pin(tokio::io::empty())),
            stdout: Some(Box::pin(tokio::io::sink())),
            stderr: Some(Box::pin(tokio::io::sink())),
            resize: None,
        };
        assert_eq!(
            io.wanted(false),
            Wanted {
                stdin: true,
                stdout: true,
                stderr: true,
                tty: false
            }
        );
        assert!(!io.wanted(true).stderr, "a terminal has no stderr");
    }
}
