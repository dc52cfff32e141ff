//! Port-forward over one SPDY/3.1 session (`portforward.k8s.io`), reached
//! directly or tunnelled in WebSocket binary messages
//! (`SPDY/3.1+portforward.k8s.io`, client-go's tunnelling dialer).
//!
//! Each forwarded connection is a pair of streams sharing a `requestID`:
//! `streamType: error` (the server writes why it could not reach the port,
//! then ends it) and `streamType: data` (the bytes both ways), both with
//! the remote `port`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;

use super::spdy_client::{keepalive, open, Closer};
use super::{dial, ws_client, Transport};
use crate::streaming::spdy::{Headers, Role, Session, StreamReader, StreamWriter};

/// The SPDY subprotocol of port-forward.
pub const PROTOCOL: &str = "portforward.k8s.io";
/// The WebSocket subprotocol that tunnels it.
pub const TUNNEL_PROTOCOL: &str = "SPDY/3.1+portforward.k8s.io";
/// Most error-stream bytes kept.
const MAX_ERROR_BYTES: u64 = 64 << 10;
/// How long a finished connection waits for the server's verdict on it.
const ERROR_WAIT: Duration = Duration::from_secs(5);

/// One port-forward session: open a [`PortConnection`] per forwarded
/// connection. Cheap to clone; the session closes when the last clone is
/// dropped (or on [`PortForwarder::close`]).
#[derive(Clone)]
pub struct PortForwarder {
    inner: Arc<Inner>,
}

struct Inner {
    closer: Closer,
    next_request: AtomicU64,
}

/// The streams of one forwarded connection.
pub struct PortConnection {
    /// Bytes from the remote port; EOF when it closed its side.
    pub reader: StreamReader,
    /// Bytes to the remote port; `shutdown` half-closes it.
    pub writer: StreamWriter,
    /// The server's verdict on the connection.
    pub error: ErrorStream,
}

/// The error stream of one forwarded connection.
pub struct ErrorStream(StreamReader);

impl ErrorStream {
    /// Waits for the stream's end: `Some(message)` when the server could
    /// not (or could no longer) forward, `None` otherwise.
    pub async fn message(self) -> std::io::Result<Option<String>> {
        let mut bytes = Vec::new();
        self.0.take(MAX_ERROR_BYTES).read_to_end(&mut bytes).await?;
        let text = String::from_utf8_lossy(&bytes).trim().to_string();
        Ok(if text.is_empty() { None } else { Some(text) })
    }
}

/// A local listener and the remote port its connections go to.
pub struct Forward {
    pub listener: TcpListener,
    pub remote: u16,
}

/// What [`PortForwarder::serve`] reports as it goes.
#[derive(Debug)]
pub enum Event<'a> {
    /// A local connection came in (kubectl's "Handling connection for").
    Accepted { local: u16, remote: u16 },
    /// Forwarding one connection failed (the server's error stream, or a
    /// stream that could not be opened).
    Failed {
        local: u16,
        remote: u16,
        error: &'a anyhow::Error,
    },
}

impl PortForwarder {
    /// Connects to a port-forward URL (from CRI `PortForward`).
    pub async fn connect(url: &str, transport: Transport) -> anyhow::Result<PortForwarder> {
        let session = match transport {
            Transport::Spdy => {
                let (io, chosen) = dial::spdy(url, &[PROTOCOL]).await?;
                check_protocol(chosen.as_deref(), PROTOCOL)?;
                Session::start(io, Role::Client).0
            }
            Transport::WebSocket => {
                let (ws, chosen) = dial::websocket(url, &[TUNNEL_PROTOCOL]).await?;
                check_protocol(chosen.as_deref(), TUNNEL_PROTOCOL)?;
                Session::start(ws_client::Tunnel::new(ws), Role::Client).0
            }
        };
        // Dropping the accept receiver refuses streams from the server,
        // which opens none.
        Ok(PortForwarder::from_session(session))
    }

    /// Port-forward over a SPDY client session already started.
    pub(super) fn from_session(session: Session) -> PortForwarder {
        PortForwarder {
            inner: Arc::new(Inner {
                closer: Closer {
                    pinger: keepalive(&session),
                    session,
                },
                next_request: AtomicU64::new(0),
            }),
        }
    }

    fn session(&self) -> &Session {
        &self.inner.closer.session
    }

    /// Opens the stream pair for a new connection to `port` in the pod.
    pub async fn open(&self, port: u16) -> anyhow::Result<PortConnection> {
        anyhow::ensure!(port != 0, "remote port 0");
        let id = self.inner.next_request.fetch_add(1, Ordering::Relaxed);
        let headers = |kind: &str| -> Headers {
            vec![
                ("streamType".to_string(), kind.to_string()),
                ("port".to_string(), port.to_string()),
                ("requestID".to_string(), id.to_string()),
            ]
        };
        let (error, mut error_writer) = open(self.session(), headers("error")).await?.split();
        // The client never writes on the error stream (client-go closes it
        // at once too).
        let _ = error_writer.shutdown().await;
        let (reader, writer) = open(self.session(), headers("data")).await?.split();
        Ok(PortConnection {
            reader,
            writer,
            error: ErrorStream(error),
        })
    }

    /// Forwards one local connection to `port` until both sides are done
    /// (or the remote side is); an error carries the server's message.
    pub async fn forward(&self, port: u16, tcp: TcpStream) -> anyhow::Result<()> {
        let PortConnection {
            mut reader,
            mut writer,
            error,
        } = self.open(port).await?;
        let (mut tcp_read, mut tcp_write) = tcp.into_split();
        let upstream = async {
            let r = tokio::io::copy(&mut tcp_read, &mut writer).await;
            let _ = writer.shutdown().await;
            r
        };
        let downstream = async {
            let r = tokio::io::copy(&mut reader, &mut tcp_write).await;
            let _ = tcp_write.shutdown().await;
            r
        };
        tokio::pin!(upstream, downstream);
        // As client-go: done when the remote side is; a local failure ends
        // it early. A local half-close still waits for the response.
        tokio::select! {
            r = &mut downstream => {
                if let Err(e) = r {
                    tracing::debug!(error = %e, port, "copying from the pod");
                }
            }
            r = &mut upstream => match r {
                Ok(_) => {
                    if let Err(e) = downstream.await {
                        tracing::debug!(error = %e, port, "copying from the pod");
                    }
                }
                Err(e) => tracing::debug!(error = %e, port, "copying to the pod"),
            },
        }
        // Whatever was not done is dropped here: the data stream's writer
        // sends FIN, so the server finishes the connection and ends the
        // error stream.
        match tokio::time::timeout(ERROR_WAIT, error.message()).await {
            Ok(Ok(Some(message))) => Err(anyhow::anyhow!("{message}")),
            Ok(Ok(None)) | Err(_) => Ok(()),
            Ok(Err(e)) => Err(anyhow::Error::new(e).context("reading the error stream")),
        }
    }

    /// Accepts connections on every listener and forwards each to its
    /// remote port, reporting through `on_event`; returns an error once the
    /// session is lost. Never returns otherwise: drop it to stop (the
    /// connections being forwarded are dropped with it).
    pub async fn serve<F>(&self, forwards: Vec<Forward>, on_event: F) -> anyhow::Result<()>
    where
        F: Fn(Event<'_>) + Send + Sync + 'static,
    {
        let on_event = Arc::new(on_event);
        let mut accepts = JoinSet::new();
        for Forward { listener, remote } in forwards {
            let local = listener.local_addr().map(|a| a.port()).unwrap_or(0);
            let (this, on_event) = (self.clone(), on_event.clone());
            accepts.spawn(async move {
                let mut connections = JoinSet::new();
                loop {
                    let tcp = tokio::select! {
                        accepted = listener.accept() => match accepted {
                            Ok((tcp, _)) => tcp,
                            Err(e) => {
                                tracing::warn!(error = %e, local, "port-forward accept");
                                tokio::time::sleep(Duration::from_millis(50)).await;
                                continue;
                            }
                        },
                        Some(_) = connections.join_next(), if !connections.is_empty() => continue,
                    };
                    let _ = tcp.set_nodelay(true);
                    on_event(Event::Accepted { local, remote });
                    let (this, on_event) = (this.clone(), on_event.clone());
                    connections.spawn(async move {
                        if let Err(error) = this.forward(remote, tcp).await {
                            on_event(Event::Failed {
                                local,
                                remote,
                                error: &error,
                            });
                        }
                    });
                }
            });
        }
        self.closed().await;
        accepts.abort_all();
        anyhow::bail!("lost connection to the pod (the port-forward session ended)")
    }

    /// Resolves when the session has ended.
    pub async fn closed(&self) {
        self.session().closed().await
    }

    /// Ends the session now.
    pub fn close(&self) {
        self.session().close()
    }
}

fn check_protocol(chosen: Option<&str>, want: &str) -> anyhow::Result<()> {
    match chosen {
        Some(p) if p == want => Ok(()),
        other => Err(anyhow::anyhow!(
            "unable to negotiate protocol: client supports {want:?}, server returned {:?}",
            other.unwrap_or("")
        ))
        .context("port-forward"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::streaming::spdy::header;

    #[test]
    fn the_protocol_must_be_the_one_offered() {
        assert!(check_protocol(Some(PROTOCOL), PROTOCOL).is_ok());
        assert!(check_protocol(None, PROTOCOL).is_err());
        assert!(check_protocol(Some("x"), TUNNEL_PROTOCOL).is_err());
    }

    fn forwarder(io: tokio::io::DuplexStream) -> PortForwarder {
        PortForwarder::from_session(Session::start(io, Role::Client).0)
    }

    /// A fake server: echoes data upper-cased on port 80, refuses 81 with
    /// a message on the error stream.
    async fn fake_server(io: tokio::io::DuplexStream) {
        let (_session, mut incoming) = Session::start(io, Role::Server);
        let mut pending: std::collections::HashMap<String, Vec<crate::streaming::spdy::Stream>> = Default::default();
        while let Some(s) = incoming.recv().await {
            let id = header(s.headers(), "requestid").unwrap().to_string();
            let entry = pending.entry(id.clone()).or_default();
            entry.push(s);
            if entry.len() < 2 {
                continue;
            }
            let mut pair = pending.remove(&id).unwrap();
            pair.sort_by_key(|s| header(s.headers(), "streamtype").unwrap().to_string());
            let data = pair.remove(0);
            let error = pair.remove(0);
            assert_eq!(header(data.headers(), "streamtype"), Some("data"));
            let port = header(data.headers(), "port").unwrap().to_string();
            tokio::spawn(async move {
                let (_, mut error_w) = error.split();
                let (mut data_r, mut data_w) = data.split();
                if port == "80" {
                    let mut got = Vec::new();
                    data_r.read_to_end(&mut got).await.unwrap();
                    data_w.write_all(&got.to_ascii_uppercase()).await.unwrap();
                } else {
                    error_w
                        .write_all(format!("no listener on {port}").as_bytes())
                        .await
                        .unwrap();
                }
                let _ = data_w.shutdown().await;
                let _ = error_w.shutdown().await;
            });
        }
    }

    #[tokio::test]
    async fn connections_are_forwarded_and_failures_reported() {
        let (client_io, server_io) = tokio::io::duplex(1 << 16);
        tokio::spawn(fake_server(server_io));
        let pf = forwarder(client_io);

        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let failures = Arc::new(std::sync::Mutex::new(Vec::new()));
        let seen = failures.clone();
        let serve = pf.serve(vec![Forward { listener, remote: 80 }], move |e| {
            if let Event::Failed { error, .. } = e {
                seen.lock().unwrap().push(error.to_string());
            }
        });
        let client = async {
            for _ in 0..2 {
                let mut tcp = TcpStream::connect(addr).await.unwrap();
                tcp.write_all(b"hello").await.unwrap();
                tcp.shutdown().await.unwrap();
                let mut got = String::new();
                tcp.read_to_string(&mut got).await.unwrap();
                assert_eq!(got, "HELLO");
            }
        };
        tokio::select! {
            r = serve => panic!("serve ended: {r:?}"),
            () = client => {}
        }
        assert!(failures.lock().unwrap().is_empty());

        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let accept = async { listener.accept().await.unwrap().0 };
        let (local, _client) = tokio::join!(accept, TcpStream::connect(addr));
        let e = pf.forward(81, local).await.unwrap_err();
        assert_eq!(e.to_string(), "no listener on 81");
    }

    #[tokio::test]
    async fn a_lost_session_ends_serve() {
        let (client_io, server_io) = tokio::io::duplex(1 << 16);
        let pf = forwarder(client_io);
        drop(server_io);
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let e = pf
            .serve(vec![Forward { listener, remote: 80 }], |_| {})
            .await
            .unwrap_err();
        assert!(e.to_string().contains("lost connection"), "{e}");
    }
}
