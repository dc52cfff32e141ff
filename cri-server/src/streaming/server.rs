//! The streaming HTTP server: `/{exec,attach,portforward}/TOKEN`, HTTP/1.1
//! (optionally TLS), upgraded to SPDY/3.1 or WebSocket.
//!
//! A request is answered only for a token the CRI call handed out, once,
//! before it expires: anything else is 404 and starts nothing. After the
//! upgrade the session runs in its own task and is ended when the client
//! leaves, when it has been idle for `streaming.idle_timeout_seconds`, or
//! when the process ends. At most `streaming.max_sessions` run at once
//! (more get 503).

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use bytes::Bytes;
use http::{header, HeaderMap, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpListener;
use tokio::task::JoinSet;

use super::spdy::{self, Role, Session};
use super::tokens::{PortForwardTarget, StdioWanted, StreamRequest};
use super::websocket::{self, Endpoint, WsProtocol};
use super::{remotecommand, PortStream, RemoteCommandProtocol, StreamSet};
use crate::config::StreamingConfig;
use crate::services::Services;

/// How long a client gets to open the streams it asked for (the kubelet's
/// DefaultStreamCreationTimeout).
const STREAM_CREATION_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a finished session gets to flush its last frames.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(12);
/// The SPDY protocol name of port-forward.
const PORT_FORWARD_PROTOCOL: &str = "portforward.k8s.io";

type Body = Full<Bytes>;

/// A bound, not yet serving, streaming listener.
pub struct Bound {
    listener: TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
    base_url: String,
}

impl Bound {
    /// `http://ADDR` or `https://ADDR` as clients reach it.
    pub fn base_url(&self) -> &str {
        &self.base_url
    }
}

/// Binds `config.address` (port 0: a free port) and loads the TLS files.
pub async fn bind(config: &StreamingConfig) -> anyhow::Result<Bound> {
    let address: SocketAddr = config
        .address
        .parse()
        .with_context(|| format!("streaming.address {:?}", config.address))?;
    let listener = TcpListener::bind(address)
        .await
        .with_context(|| format!("bind the streaming server on {address}"))?;
    let mut local = listener.local_addr()?;
    if local.ip().is_unspecified() {
        // Listening everywhere: hand out loopback URLs (the kubelet runs
        // on this node).
        local.set_ip(if local.is_ipv4() {
            std::net::Ipv4Addr::LOCALHOST.into()
        } else {
            std::net::Ipv6Addr::LOCALHOST.into()
        });
    }
    let tls = if config.tls_cert_file.is_empty() {
        None
    } else {
        Some(tls_acceptor(&config.tls_cert_file, &config.tls_key_file)?)
    };
    let scheme = if tls.is_some() { "https" } else { "http" };
    Ok(Bound {
        listener,
        tls,
        base_url: format!("{scheme}://{local}"),
    })
}

fn tls_acceptor(cert_file: &str, key_file: &str) -> anyhow::Result<tokio_rustls::TlsAcceptor> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let certs = CertificateDer::pem_file_iter(cert_file)
        .with_context(|| format!("streaming.tls_cert_file {cert_file}"))?
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("streaming.tls_cert_file {cert_file}"))?;
    anyhow::ensure!(
        !certs.is_empty(),
        "streaming.tls_cert_file {cert_file}: no certificate in it"
    );
    let key = PrivateKeyDer::from_pem_file(key_file).with_context(|| format!("streaming.tls_key_file {key_file}"))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("TLS versions")?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .context("streaming TLS certificate and key")?;
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}

/// Serves connections until the task is dropped.
pub fn spawn(bound: Bound, services: Arc<Services>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let Bound { listener, tls, .. } = bound;
        loop {
            let (tcp, peer) = match listener.accept().await {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(error = %e, "streaming server accept");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let _ = tcp.set_nodelay(true);
            let (services, tls) = (services.clone(), tls.clone());
            tokio::spawn(async move {
                match tls {
                    Some(tls) => match tls.accept(tcp).await {
                        Ok(stream) => serve_connection(stream, services).await,
                        Err(e) => tracing::debug!(%peer, error = %e, "streaming TLS handshake"),
                    },
                    None => serve_connection(tcp, services).await,
                }
            });
        }
    })
}

async fn serve_connection<IO>(io: IO, services: Arc<Services>)
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = hyper::service::service_fn(move |req| {
        let services = services.clone();
        async move { Ok::<_, Infallible>(route(services, req)) }
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(Duration::from_secs(30))
        .serve_connection(TokioIo::new(io), service)
        .with_upgrades();
    if let Err(e) = conn.await {
        tracing::debug!(error = %e, "streaming connection");
    }
}

fn reply(code: StatusCode, text: impl Into<String>) -> Response<Body> {
    let mut text = text.into();
    text.push('\n');
    Response::builder()
        .status(code)
        .header(header::CONTENT_TYPE, "text/plain; charset=utf-8")
        .body(Full::new(Bytes::from(text)))
        .expect("a plain response builds")
}

/// Picks the request's token and upgrades it, or answers why not.
fn route(s: Arc<Services>, mut req: Request<Incoming>) -> Response<Body> {
    let path = req.uri().path().to_string();
    let mut parts = path.trim_start_matches('/').split('/');
    let (Some(kind), Some(token), None) = (parts.next(), parts.next(), parts.next()) else {
        return reply(StatusCode::NOT_FOUND, "not found");
    };
    if !matches!(kind, "exec" | "attach" | "portforward") {
        return reply(StatusCode::NOT_FOUND, "not found");
    }
    if req.method() != Method::GET && req.method() != Method::POST {
        return reply(StatusCode::METHOD_NOT_ALLOWED, "use GET (WebSocket) or POST (SPDY)");
    }
    let Some(request) = s.streaming.take(token) else {
        crate::metrics::streaming_refused("unknown_token");
        return reply(StatusCode::NOT_FOUND, "unknown, used or expired streaming token");
    };
    if request.kind() != kind {
        crate::metrics::streaming_refused("wrong_kind");
        return reply(StatusCode::NOT_FOUND, "unknown, used or expired streaming token");
    }
    let Some(permit) = s.streaming.try_session() else {
        crate::metrics::streaming_refused("too_many_sessions");
        return reply(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("{} streaming sessions are running already", s.streaming.max_sessions),
        );
    };
    let headers = req.headers().clone();
    let query_ports = query_ports(req.uri().query().unwrap_or(""));
    let endpoint = match request {
        StreamRequest::PortForward(_) => Endpoint::PortForward,
        _ => Endpoint::RemoteCommand,
    };
    let idle = s.streaming.idle_timeout;
    if websocket::is_upgrade(&headers) {
        if req.method() != Method::GET {
            return reply(StatusCode::METHOD_NOT_ALLOWED, "a websocket upgrade is a GET");
        }
        let protocol = match websocket::negotiate(&headers, endpoint) {
            Ok(p) => p,
            Err(e) => return e.response(),
        };
        let response = match websocket::accept_response(&headers, &protocol) {
            Ok(r) => r,
            Err(e) => return e.response(),
        };
        let upgrade = hyper::upgrade::on(&mut req);
        let kind = request.kind();
        spawn_session(upgrade, permit, kind, idle, move |io| {
            serve_websocket(s, request, protocol, query_ports, io)
        });
        return response.map(|_| Full::new(Bytes::new()));
    }
    if is_spdy_upgrade(&headers) {
        let offered = offered_spdy_protocols(&headers);
        let chosen = match endpoint {
            Endpoint::PortForward => choose(&offered, &[PORT_FORWARD_PROTOCOL]).map(|_| None),
            Endpoint::RemoteCommand => {
                let names: Vec<&str> = RemoteCommandProtocol::ALL.iter().map(|p| p.name()).collect();
                choose(&offered, &names).map(|name| name.and_then(RemoteCommandProtocol::from_name))
            }
        };
        let Ok(protocol) = chosen else {
            let mut r = reply(
                StatusCode::FORBIDDEN,
                format!("no supported stream protocol among {offered:?}"),
            );
            let supported = match endpoint {
                Endpoint::PortForward => PORT_FORWARD_PROTOCOL.to_string(),
                Endpoint::RemoteCommand => RemoteCommandProtocol::ALL.map(|p| p.name()).join(", "),
            };
            if let Ok(v) = HeaderValue::from_str(&supported) {
                r.headers_mut().insert("X-Accepted-Stream-Protocol-Versions", v);
            }
            return r;
        };
        let upgrade = hyper::upgrade::on(&mut req);
        let mut response = Response::builder()
            .status(StatusCode::SWITCHING_PROTOCOLS)
            .header(header::CONNECTION, "Upgrade")
            .header(header::UPGRADE, "SPDY/3.1");
        let chosen_name = match (endpoint, protocol) {
            (Endpoint::PortForward, _) if !offered.is_empty() => Some(PORT_FORWARD_PROTOCOL),
            (_, Some(p)) => Some(p.name()),
            _ => None,
        };
        if let Some(name) = chosen_name {
            response = response.header("X-Stream-Protocol-Version", name);
        }
        let protocol = protocol.unwrap_or(RemoteCommandProtocol::V1);
        let kind = request.kind();
        spawn_session(upgrade, permit, kind, idle, move |io| {
            serve_spdy(s, request, protocol, io)
        });
        return response
            .body(Full::new(Bytes::new()))
            .expect("an upgrade response builds");
    }
    reply(
        StatusCode::BAD_REQUEST,
        "streaming needs an upgrade to SPDY/3.1 or websocket",
    )
}

/// The upgraded connection behind the idle tracker.
type Upgraded = IdleIo<TokioIo<hyper::upgrade::Upgraded>>;

/// Runs `serve` on the connection once hyper has upgraded it, holding the
/// session slot and gauge until it ends, and ending it when idle too long.
fn spawn_session<F, Fut>(
    upgrade: hyper::upgrade::OnUpgrade,
    permit: tokio::sync::OwnedSemaphorePermit,
    kind: &'static str,
    idle: Duration,
    serve: F,
) where
    F: FnOnce(Upgraded) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let gauge = crate::metrics::streaming_session(kind);
    tokio::spawn(async move {
        let _permit = permit;
        let _gauge = gauge;
        match upgrade.await {
            Ok(upgraded) => {
                let io = IdleIo::new(TokioIo::new(upgraded));
                let activity = io.activity();
                // Boxed: the session futures are large, and a debug
                // build's stack is not.
                run_with_idle_limit(Box::pin(serve(io)), activity, idle).await;
            }
            Err(e) => tracing::debug!(kind, error = %e, "upgrade failed"),
        }
    });
}

fn is_spdy_upgrade(headers: &HeaderMap) -> bool {
    let has = |name: header::HeaderName, token: &str| {
        headers.get_all(name).iter().any(|v| {
            v.to_str()
                .map(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
                .unwrap_or(false)
        })
    };
    has(header::CONNECTION, "upgrade") && has(header::UPGRADE, "SPDY/3.1")
}

fn offered_spdy_protocols(headers: &HeaderMap) -> Vec<String> {
    headers
        .get_all("X-Stream-Protocol-Version")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
        .collect()
}

/// The client's first offered protocol the server supports (the client's
/// order wins, as in the Kubernetes handshake); none offered: `Ok(None)`.
fn choose<'a>(offered: &[String], supported: &[&'a str]) -> Result<Option<&'a str>, ()> {
    if offered.is_empty() {
        return Ok(None);
    }
    offered
        .iter()
        .find_map(|o| supported.iter().find(|s| **s == o.as_str()).copied())
        .map(Some)
        .ok_or(())
}

/// `port=N` query parameters (WebSocket port-forward names its ports so).
fn query_ports(query: &str) -> Vec<u16> {
    query
        .split('&')
        .filter_map(|kv| kv.strip_prefix("port="))
        .filter_map(|v| v.parse::<u16>().ok())
        .filter(|&p| p != 0)
        .collect()
}

/// Runs `session` until it ends or its connection has been idle for `limit`.
async fn run_with_idle_limit(session: impl std::future::Future<Output = ()>, activity: Activity, limit: Duration) {
    tokio::pin!(session);
    loop {
        let idle_for = activity.idle_for();
        if idle_for >= limit {
            tracing::info!(?limit, "streaming session idle too long: ending it");
            return;
        }
        tokio::select! {
            _ = &mut session => return,
            _ = tokio::time::sleep(limit - idle_for) => {}
        }
    }
}

// ---- SPDY ----------------------------------------------------------------

async fn serve_spdy<IO>(s: Arc<Services>, request: StreamRequest, protocol: RemoteCommandProtocol, io: IO)
where
    IO: AsyncRead + AsyncWrite + Send + 'static,
{
    let (session, incoming) = Session::start(io, Role::Server);
    match request {
        StreamRequest::PortForward(target) => spdy_port_forward(s, Arc::new(target), &session, incoming).await,
        request => spdy_remote_command(s, request, protocol, &session, incoming).await,
    }
    session.close();
}

fn stdio_of(request: &StreamRequest) -> StdioWanted {
    match request {
        StreamRequest::Exec(t) => t.stdio,
        StreamRequest::Attach(t) => t.stdio,
        StreamRequest::PortForward(_) => StdioWanted::default(),
    }
}

async fn spdy_remote_command(
    s: Arc<Services>,
    request: StreamRequest,
    protocol: RemoteCommandProtocol,
    session: &Session,
    mut incoming: tokio::sync::mpsc::Receiver<spdy::Stream>,
) {
    let want = stdio_of(&request);
    let resize_expected = want.tty && protocol.has_resize();
    let expected =
        1 + want.stdin as usize + want.stdout as usize + (want.stderr && !want.tty) as usize + resize_expected as usize;
    let mut set = StreamSet {
        protocol,
        stdin: None,
        stdout: None,
        stderr: None,
        resize: None,
        error: None,
    };
    let mut received = 0;
    // Our halves of the client's input streams stay open until the session
    // ends: client-go reads stdin until the server closes it and then
    // closes its own side, which would cut the user's input short.
    let mut held_open = Vec::new();
    let deadline = tokio::time::Instant::now() + STREAM_CREATION_TIMEOUT;
    while received < expected {
        let stream = tokio::select! {
            s = incoming.recv() => match s {
                Some(s) => s,
                None => return,
            },
            _ = tokio::time::sleep_until(deadline) => {
                tracing::info!(received, expected, "client did not open its streams in time");
                return;
            }
        };
        let kind = spdy::header(stream.headers(), "streamtype")
            .unwrap_or("")
            .to_ascii_lowercase();
        let (reader, writer) = stream.split();
        match kind.as_str() {
            "error" => set.error = Some(Box::pin(writer)),
            "stdin" => {
                set.stdin = Some(Box::pin(reader));
                held_open.push(writer);
            }
            "stdout" => set.stdout = Some(Box::pin(writer)),
            "stderr" => set.stderr = Some(Box::pin(writer)),
            "resize" => {
                set.resize = Some(Box::pin(reader));
                held_open.push(writer);
            }
            other => {
                tracing::debug!(stream_type = other, "unexpected stream type: ignored");
                continue;
            }
        }
        received += 1;
    }
    let serve = Box::pin(remotecommand::serve(s, request, set));
    tokio::select! {
        _ = serve => {}
        _ = session.closed() => tracing::debug!("client left: ending the session"),
    }
    drop(held_open);
}

async fn spdy_port_forward(
    s: Arc<Services>,
    target: Arc<PortForwardTarget>,
    session: &Session,
    mut incoming: tokio::sync::mpsc::Receiver<spdy::Stream>,
) {
    // Streams come in pairs (error, data) sharing a requestID.
    let mut halves: HashMap<String, (Option<spdy::Stream>, Option<spdy::Stream>)> = HashMap::new();
    let mut forwards = JoinSet::new();
    loop {
        let stream = tokio::select! {
            st = incoming.recv() => match st {
                Some(st) => st,
                None => break,
            },
            _ = session.closed() => break,
            Some(_) = forwards.join_next(), if !forwards.is_empty() => continue,
        };
        let headers = stream.headers().clone();
        let port = spdy::header(&headers, "port")
            .and_then(|p| p.parse::<u16>().ok())
            .filter(|&p| p != 0);
        let Some(port) = port else {
            tracing::debug!("port-forward stream without a valid port: reset");
            stream.reset();
            continue;
        };
        let id = spdy::header(&headers, "requestid")
            .map(str::to_string)
            .unwrap_or_else(|| format!("port-{port}"));
        let kind = spdy::header(&headers, "streamtype").unwrap_or("").to_ascii_lowercase();
        if halves.len() > 1024 && !halves.contains_key(&id) {
            stream.reset();
            continue;
        }
        let entry = halves.entry(id.clone()).or_default();
        match kind.as_str() {
            "error" => entry.0 = Some(stream),
            "data" => entry.1 = Some(stream),
            _ => {
                stream.reset();
                continue;
            }
        }
        if entry.0.is_some() && entry.1.is_some() {
            let (error, data) = halves.remove(&id).expect("both halves present");
            let (error, data) = (error.expect("error half"), data.expect("data half"));
            let (_, error_writer) = error.split();
            let (data_in, data_out) = data.split();
            let stream = PortStream {
                port,
                data_in: Box::pin(data_in),
                data_out: Box::pin(data_out),
                error: Box::pin(error_writer),
            };
            forwards.spawn(super::portforward::serve(s.clone(), target.clone(), stream));
        }
    }
    forwards.abort_all();
}

// ---- WebSocket -----------------------------------------------------------

async fn serve_websocket<IO>(
    s: Arc<Services>,
    request: StreamRequest,
    protocol: WsProtocol,
    query_ports: Vec<u16>,
    io: IO,
) where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    match (request, protocol) {
        (StreamRequest::PortForward(target), WsProtocol::SpdyTunnel) => {
            let tunnel = websocket::tunnel(io);
            let (session, incoming) = Session::start(tunnel, Role::Server);
            spdy_port_forward(s, Arc::new(target), &session, incoming).await;
            session.close();
        }
        (StreamRequest::PortForward(target), WsProtocol::PortForwardChannels { base64 }) => {
            let ports = if query_ports.is_empty() {
                target.ports.clone()
            } else {
                query_ports
            };
            let (streams, driver) = websocket::port_forward_channels(io, base64, &ports);
            let target = Arc::new(target);
            let mut forwards = JoinSet::new();
            for stream in streams {
                forwards.spawn(super::portforward::serve(s.clone(), target.clone(), stream));
            }
            driver.await;
            forwards.abort_all();
        }
        (StreamRequest::PortForward(_), other) => {
            tracing::debug!(?other, "not a port-forward protocol");
        }
        (request, protocol) => {
            let want = stdio_of(&request);
            let wanted = websocket::Wanted {
                stdin: want.stdin,
                stdout: want.stdout,
                stderr: want.stderr,
                tty: want.tty,
            };
            let (set, driver) = websocket::remote_command(io, &protocol, wanted);
            let serve = remotecommand::serve(s, request, set);
            tokio::pin!(serve);
            tokio::pin!(driver);
            tokio::select! {
                _ = &mut serve => {
                    let _ = tokio::time::timeout(FLUSH_TIMEOUT, &mut driver).await;
                }
                _ = &mut driver => tracing::debug!("client left: ending the session"),
            }
        }
    }
}

// ---- idle tracking -------------------------------------------------------

/// When a connection last moved a byte.
#[derive(Clone)]
pub struct Activity {
    start: Instant,
    last_ms: Arc<AtomicU64>,
}

impl Activity {
    fn touch(&self) {
        self.last_ms
            .store(self.start.elapsed().as_millis() as u64, Ordering::Relaxed);
    }

    fn idle_for(&self) -> Duration {
        let last = Duration::from_millis(self.last_ms.load(Ordering::Relaxed));
        self.start.elapsed().saturating_sub(last)
    }
}

/// An I/O object that records activity on every successful read or write.
pub struct IdleIo<T> {
    inner: T,
    activity: Activity,
}

impl<T> IdleIo<T> {
    fn new(inner: T) -> IdleIo<T> {
        IdleIo {
            inner,
            activity: Activity {
                start: Instant::now(),
                last_ms: Arc::new(AtomicU64::new(0)),
            },
        }
    }

    fn activity(&self) -> Activity {
        self.activity.clone()
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for IdleIo<T> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(r, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.activity.touch();
        }
        r
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for IdleIo<T> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, data);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        r
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_clients_order_picks_the_protocol() {
        let offered = vec!["v5.channel.k8s.io".to_string(), "v4.channel.k8s.io".to_string()];
        assert_eq!(
            choose(&offered, &["v4.channel.k8s.io", "v5.channel.k8s.io"]),
            Ok(Some("v5.channel.k8s.io"))
        );
        assert_eq!(choose(&[], &["x"]), Ok(None));
        assert_eq!(choose(&["nope".to_string()], &["x"]), Err(()));
    }

    #[test]
    fn spdy_upgrades_are_recognised() {
        let mut h = HeaderMap::new();
        h.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
        h.insert(header::UPGRADE, HeaderValue::from_static("SPDY/3.1"));
        assert!(is_spdy_upgrade(&h));
        h.insert(header::UPGRADE, HeaderValue::from_static("h2c"));
        assert!(!is_spdy_upgrade(&h));
    }

    #[test]
    fn offered_protocols_come_from_every_header() {
        let mut h = HeaderMap::new();
        h.append(
            "X-Stream-Protocol-Version",
            HeaderValue::from_static("v4.channel.k8s.io"),
        );
        h.append(
            "X-Stream-Protocol-Version",
            HeaderValue::from_static("v3.channel.k8s.io, v2.channel.k8s.io"),
        );
        assert_eq!(
            offered_spdy_protocols(&h),
            vec!["v4.channel.k8s.io", "v3.channel.k8s.io", "v2.channel.k8s.io"]
        );
    }

    #[test]
    fn query_ports_are_parsed_and_bad_ones_dropped() {
        assert_eq!(query_ports("port=80&port=x&port=0&foo=1&port=65535"), vec![80, 65535]);
        assert!(query_ports("").is_empty());
    }

    #[tokio::test]
    async fn an_idle_session_is_ended() {
        let activity = Activity {
            start: Instant::now(),
            last_ms: Arc::new(AtomicU64::new(0)),
        };
        let started = Instant::now();
        run_with_idle_limit(std::future::pending::<()>(), activity, Duration::from_millis(50)).await;
        assert!(started.elapsed() >= Duration::from_millis(50));
    }
}
