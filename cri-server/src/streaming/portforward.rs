//! Port-forward: each data stream the client opens is connected to
//! `localhost:PORT` inside the pod's network namespace (127.0.0.1, then
//! ::1), or on the host for a host-network pod. Bytes are copied both ways
//! with half-closes passed on; a port nothing listens on is reported on
//! that stream's error stream and the session goes on.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::AsyncWriteExt;

use super::tokens::PortForwardTarget;
use super::PortStream;
use crate::services::Services;
use crate::store::PodState;

/// How long a connect inside the pod may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Serves one data stream pair of a port-forward session.
#[tracing::instrument(skip_all, fields(pod_id = %target.pod_id, port = stream.port))]
pub async fn serve(s: Arc<Services>, target: Arc<PortForwardTarget>, stream: PortStream) {
    let PortStream {
        port,
        mut data_in,
        data_out,
        mut error,
    } = stream;
    let conn = match dial(&s, &target.pod_id, port).await {
        Ok(c) => c,
        Err(message) => {
            tracing::debug!(%message, "port-forward dial failed");
            let _ = error.write_all(message.as_bytes()).await;
            let _ = error.shutdown().await;
            let mut data_out = data_out;
            let _ = data_out.shutdown().await;
            return;
        }
    };
    let (mut tcp_read, mut tcp_write) = conn.into_split();
    let upstream = async {
        let _ = tokio::io::copy(&mut data_in, &mut tcp_write).await;
        let _ = tcp_write.shutdown().await;
    };
    let downstream = async {
        super::remotecommand::copy_then_close(&mut tcp_read, data_out).await;
    };
    tokio::join!(upstream, downstream);
    let _ = error.shutdown().await;
}

/// Connects to `port` on localhost in pod `pod_id`'s network.
async fn dial(s: &Services, pod_id: &str, port: u16) -> Result<tokio::net::TcpStream, String> {
    let pod = s
        .store
        .pod(pod_id)
        .ok_or_else(|| format!("pod sandbox {pod_id} not found"))?;
    if pod.state != PodState::Ready {
        return Err(format!("pod sandbox {pod_id} is not ready"));
    }
    let netns = pod.netns.clone();
    let std_stream = tokio::task::spawn_blocking(move || connect_in(netns, port))
        .await
        .map_err(|e| e.to_string())??;
    std_stream.set_nonblocking(true).map_err(|e| e.to_string())?;
    tokio::net::TcpStream::from_std(std_stream).map_err(|e| e.to_string())
}

/// Connects on a thread of its own that first joins `netns` (none: the
/// host's). The socket belongs to the namespace it was made in, so it
/// stays in the pod after the thread, and its namespace change, are gone.
fn connect_in(netns: Option<PathBuf>, port: u16) -> Result<TcpStream, String> {
    let worker = std::thread::Builder::new()
        .name("berth-portforward-dial".into())
        .spawn(move || {
            if let Some(path) = &netns {
                let ns = std::fs::File::open(path).map_err(|e| format!("open netns {}: {e}", path.display()))?;
                nix::sched::setns(&ns, nix::sched::CloneFlags::CLONE_NEWNET)
                    .map_err(|e| format!("enter netns {}: {e}", path.display()))?;
            }
            connect_localhost(port)
        })
        .map_err(|e| format!("start dial thread: {e}"))?;
    worker.join().map_err(|_| "dial thread panicked".to_string())?
}

fn connect_localhost(port: u16) -> Result<TcpStream, String> {
    let v4 = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let v6 = SocketAddr::from((Ipv6Addr::LOCALHOST, port));
    match TcpStream::connect_timeout(&v4, CONNECT_TIMEOUT) {
        Ok(c) => Ok(c),
        Err(e4) => TcpStream::connect_timeout(&v6, CONNECT_TIMEOUT)
            .map_err(|e6| format!("failed to connect to localhost:{port} inside the pod: {e4} (IPv4), {e6} (IPv6)")),
    }
}
