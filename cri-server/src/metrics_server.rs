//! `GET /metrics` over plain HTTP/1.1 for Prometheus. Tiny on purpose: one
//! request per connection, bounded header size and read time.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const MAX_REQUEST_BYTES: usize = 8 << 10;
const READ_TIMEOUT: Duration = Duration::from_secs(5);

/// Bind `address` and serve metrics until the process ends; answers the
/// bound address (useful with port 0) and the serving task.
pub async fn serve(address: SocketAddr) -> std::io::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    let listener = TcpListener::bind(address).await?;
    let address = listener.local_addr()?;
    tracing::info!(%address, "serving Prometheus metrics on /metrics");
    Ok((
        address,
        tokio::spawn(async move {
            loop {
                match listener.accept().await {
                    Ok((stream, _)) => {
                        tokio::spawn(answer(stream));
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "metrics accept failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                }
            }
        }),
    ))
}

async fn answer(mut stream: TcpStream) {
    let Ok(Some(path)) = tokio::time::timeout(READ_TIMEOUT, read_request_path(&mut stream)).await else {
        return;
    };
    let (status, body) = if path == "/metrics" {
        ("200 OK", crate::metrics::render())
    } else {
        ("404 Not Found", "not found\n".to_string())
    };
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let _ = stream.write_all(head.as_bytes()).await;
    let _ = stream.write_all(body.as_bytes()).await;
}

/// The path of a `GET` request, once its headers have arrived.
async fn read_request_path(stream: &mut TcpStream) -> Option<String> {
    let mut buf = Vec::with_capacity(512);
    let mut chunk = [0u8; 512];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 || buf.len() + n > MAX_REQUEST_BYTES {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let line = buf.split(|&b| b == b'\n').next()?;
    let line = std::str::from_utf8(line).ok()?;
    let mut parts = line.split_whitespace();
    (parts.next()? == "GET").then(|| parts.next().map(|p| p.split('?').next().unwrap_or(p).to_string()))?
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn get(address: SocketAddr, request: &str) -> String {
        let mut stream = TcpStream::connect(address).await.unwrap();
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut out = String::new();
        stream.read_to_string(&mut out).await.unwrap();
        out
    }

    #[tokio::test]
    async fn serves_metrics_and_refuses_other_paths() {
        crate::metrics::observe("ImageStatus", Duration::from_millis(3), Some(tonic::Code::NotFound));
        let (address, task) = serve("127.0.0.1:0".parse().unwrap()).await.unwrap();
        let ok = get(address, "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n").await;
        assert!(ok.starts_with("HTTP/1.1 200 OK"), "{ok}");
        assert!(ok.contains("berth_cri_requests_total{method=\"ImageStatus\"}"), "{ok}");
        assert!(
            ok.contains("berth_cri_request_failures_total{code=\"NotFound\",method=\"ImageStatus\"}"),
            "{ok}"
        );
        let missing = get(address, "GET /other HTTP/1.1\r\n\r\n").await;
        assert!(missing.starts_with("HTTP/1.1 404"), "{missing}");
        let garbage = get(address, "POST /metrics HTTP/1.1\r\n\r\n").await;
        assert!(garbage.is_empty(), "{garbage}");
        task.abort();
    }
}
