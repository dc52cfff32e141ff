//! Reaching a streaming URL: the TCP connection, then either the HTTP/1.1
//! upgrade to SPDY/3.1 (hyper) or the WebSocket handshake (tungstenite).

use anyhow::Context as _;
use bytes::Bytes;
use http::{header, HeaderValue, Method, Request, StatusCode, Uri};
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::WebSocketStream;

/// The most of a refusal's body shown in an error.
const MAX_ERROR_BODY: usize = 4096;

/// A byte stream to the server once upgraded.
pub trait Io: AsyncRead + AsyncWrite + Send + Unpin + 'static {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin + 'static> Io for T {}

/// What a streaming URL names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Target {
    /// `host:port` as the URL spells it (the `Host` header).
    pub authority: String,
    pub host: String,
    pub port: u16,
    /// Path and query, at least `/`.
    pub path: String,
}

/// Parses an `http://` streaming URL as berthd hands them out.
pub(crate) fn parse(url: &str) -> anyhow::Result<Target> {
    let uri: Uri = url.parse().with_context(|| format!("streaming URL {url:?}"))?;
    match uri.scheme_str() {
        Some("http") => {}
        Some("https") => anyhow::bail!(
            "streaming URL {url}: https is not supported by berthctl (berthd's streaming server \
             serves plain http unless streaming.tls_cert_file is set)"
        ),
        _ => anyhow::bail!("streaming URL {url:?}: not an http:// URL"),
    }
    let authority = uri
        .authority()
        .with_context(|| format!("streaming URL {url:?} has no host"))?;
    let host = authority
        .host()
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    anyhow::ensure!(!host.is_empty(), "streaming URL {url:?} has no host");
    Ok(Target {
        authority: authority.as_str().to_string(),
        host,
        port: authority.port_u16().unwrap_or(80),
        path: uri.path_and_query().map_or("/", |p| p.as_str()).to_string(),
    })
}

async fn connect(target: &Target) -> anyhow::Result<TcpStream> {
    let tcp = TcpStream::connect((target.host.as_str(), target.port))
        .await
        .with_context(|| format!("connect to the streaming server at {}", target.authority))?;
    // Keystrokes and small frames should not wait for Nagle.
    let _ = tcp.set_nodelay(true);
    Ok(tcp)
}

/// `POST`s an upgrade to SPDY/3.1 offering `protocols` (preferred first)
/// in `X-Stream-Protocol-Version`; returns the upgraded connection and the
/// protocol the server chose (None: it named none).
pub(crate) async fn spdy(url: &str, protocols: &[&str]) -> anyhow::Result<(impl Io, Option<String>)> {
    let target = parse(url)?;
    let tcp = connect(&target).await?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake::<_, Empty<Bytes>>(TokioIo::new(tcp))
        .await
        .context("HTTP handshake with the streaming server")?;
    // The connection future drives the exchange and hands the socket over
    // to `hyper::upgrade::on` after the 101.
    tokio::spawn(async move {
        if let Err(e) = conn.with_upgrades().await {
            tracing::debug!(error = %e, "streaming HTTP connection");
        }
    });
    let mut request = Request::builder()
        .method(Method::POST)
        .uri(target.path.as_str())
        .header(header::HOST, target.authority.as_str())
        .header(header::CONNECTION, "Upgrade")
        .header(header::UPGRADE, "SPDY/3.1");
    for protocol in protocols {
        request = request.header("X-Stream-Protocol-Version", *protocol);
    }
    let request = request.body(Empty::new()).context("build the upgrade request")?;
    let response = sender
        .send_request(request)
        .await
        .with_context(|| format!("upgrade request to {url}"))?;
    if response.status() != StatusCode::SWITCHING_PROTOCOLS {
        let status = response.status();
        let body = response
            .into_body()
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        anyhow::bail!("{}", refusal(url, status, &body));
    }
    let negotiated = response
        .headers()
        .get("X-Stream-Protocol-Version")
        .and_then(|v| v.to_str().ok())
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty());
    let upgraded = hyper::upgrade::on(response)
        .await
        .with_context(|| format!("upgrade {url} to SPDY/3.1"))?;
    Ok((TokioIo::new(upgraded), negotiated))
}

/// Opens a WebSocket to `url` (http becomes ws) offering `protocols` in
/// `Sec-WebSocket-Protocol`; returns it and the chosen protocol.
pub(crate) async fn websocket(
    url: &str,
    protocols: &[&str],
) -> anyhow::Result<(WebSocketStream<TcpStream>, Option<String>)> {
    let target = parse(url)?;
    let ws_url = format!("ws://{}{}", target.authority, target.path);
    let mut request = ws_url
        .as_str()
        .into_client_request()
        .with_context(|| format!("websocket request for {url}"))?;
    if !protocols.is_empty() {
        let offered = HeaderValue::from_str(&protocols.join(", ")).context("websocket protocol list")?;
        request.headers_mut().insert(header::SEC_WEBSOCKET_PROTOCOL, offered);
    }
    let tcp = connect(&target).await?;
    // Frames go out as they are written: interactive sessions flush small
    // messages one by one.
    let config = WebSocketConfig::default().write_buffer_size(0);
    let (ws, response) = tokio_tungstenite::client_async_with_config(request, tcp, Some(config))
        .await
        .map_err(|e| match e {
            tokio_tungstenite::tungstenite::Error::Http(response) => {
                let body = response.body().clone().unwrap_or_default();
                anyhow::anyhow!("{}", refusal(url, response.status(), &body))
            }
            e => anyhow::Error::new(e).context(format!("websocket handshake with {url}")),
        })?;
    let negotiated = response
        .headers()
        .get(header::SEC_WEBSOCKET_PROTOCOL)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty());
    Ok((ws, negotiated))
}

/// `POST URL: 404 Not Found: unknown, used or expired streaming token`.
fn refusal(url: &str, status: StatusCode, body: &[u8]) -> String {
    let body = &body[..body.len().min(MAX_ERROR_BODY)];
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    if text.is_empty() {
        format!("streaming server refused {url}: {status}")
    } else {
        format!("streaming server refused {url}: {status}: {text}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let t = parse("http://127.0.0.1:10010/exec/abcDEF").unwrap();
        assert_eq!(
            t,
            Target {
                authority: "127.0.0.1:10010".into(),
                host: "127.0.0.1".into(),
                port: 10010,
                path: "/exec/abcDEF".into(),
            }
        );
        let t = parse("http://[::1]:8080/portforward/x?port=80").unwrap();
        assert_eq!(
            (t.host.as_str(), t.port, t.path.as_str()),
            ("::1", 8080, "/portforward/x?port=80")
        );
        assert_eq!(parse("http://node").unwrap().port, 80);
        let e = parse("https://127.0.0.1:1/exec/x").unwrap_err().to_string();
        assert!(e.contains("https is not supported"), "{e}");
        assert!(parse("/exec/x").is_err());
        assert!(parse("ftp://h/x").is_err());
    }

    #[test]
    fn refusals_show_the_servers_text() {
        let m = refusal(
            "http://h/exec/t",
            StatusCode::NOT_FOUND,
            b"unknown, used or expired streaming token\n",
        );
        assert_eq!(
            m,
            "streaming server refused http://h/exec/t: 404 Not Found: unknown, used or expired streaming token"
        );
        assert!(refusal("u", StatusCode::FORBIDDEN, b"").ends_with("403 Forbidden"));
    }
}
