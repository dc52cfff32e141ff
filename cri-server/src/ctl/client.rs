//! A CRI channel over the unix socket, as crictl opens it.

use std::path::PathBuf;

use anyhow::Context;
use hyper_util::rt::TokioIo;
use tokio::net::UnixStream;
use tonic::transport::{Channel, Endpoint, Uri};

/// Connect to the CRI socket at `path`.
pub async fn connect(path: PathBuf) -> anyhow::Result<Channel> {
    let shown = path.display().to_string();
    Endpoint::try_from("http://[::1]:0")?
        .connect_with_connector(tower::service_fn(move |_: Uri| {
            let path = path.clone();
            async move { Ok::<_, std::io::Error>(TokioIo::new(UnixStream::connect(path).await?)) }
        }))
        .await
        .with_context(|| format!("connect to {shown} (is berthd running?)"))
}
