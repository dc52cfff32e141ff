//! pull: PullImage, with per-layer progress from berthd's Introspect service.

use std::collections::HashMap;
use std::io::{IsTerminal, Write};
use std::time::Duration;

use base64::Engine as _;
use berth_images::reference::Reference;
use k8s_cri::v1::image_service_client::ImageServiceClient;
use k8s_cri::v1::{AuthConfig, ImageSpec, PullImageRequest};
use tokio_stream::StreamExt;
use tonic::transport::Channel;

use super::output::human_size;
use super::status_error;
use crate::introspect::proto::introspect_client::IntrospectClient;
use crate::introspect::proto::{PullProgressEvent, WatchPullsRequest};

/// `--creds USER[:PASS]`, `--auth`, `--registry-token` → CRI AuthConfig.
pub fn auth_config(
    creds: Option<&str>,
    auth: Option<String>,
    registry_token: Option<String>,
) -> anyhow::Result<Option<AuthConfig>> {
    let mut config = AuthConfig::default();
    if let Some(creds) = creds {
        let (user, pass) = creds.split_once(':').unwrap_or((creds, ""));
        if user.is_empty() {
            anyhow::bail!("--creds: empty user name");
        }
        config.username = user.into();
        config.password = pass.into();
    }
    if let Some(auth) = auth {
        base64::engine::general_purpose::STANDARD
            .decode(auth.trim())
            .map_err(|_| anyhow::anyhow!("--auth: not base64"))?;
        config.auth = auth;
    }
    config.registry_token = registry_token.unwrap_or_default();
    Ok((config != AuthConfig::default()).then_some(config))
}

pub async fn pull(channel: Channel, image: &str, auth: Option<AuthConfig>, quiet: bool) -> anyhow::Result<()> {
    let progress = if quiet {
        None
    } else {
        watch(channel.clone(), image).await
    };
    let renderer = progress.map(|stream| tokio::spawn(render(stream)));
    let result = ImageServiceClient::new(channel)
        .pull_image(PullImageRequest {
            image: Some(ImageSpec {
                image: image.into(),
                ..Default::default()
            }),
            auth,
            sandbox_config: None,
        })
        .await;
    if let Some(task) = renderer {
        // The last progress event precedes the reply; give it a moment to print.
        let _ = tokio::time::timeout(Duration::from_millis(300), task).await;
    }
    let image_ref = result.map_err(|s| status_error("PullImage", s))?.into_inner().image_ref;
    println!("Image is up to date for {image_ref}");
    Ok(())
}

type ProgressStream = tonic::Streaming<PullProgressEvent>;

/// Subscribe to this image's pull progress; `None` when the runtime has no
/// Introspect service (another CRI runtime) or the reference is malformed
/// (PullImage will say why).
async fn watch(channel: Channel, image: &str) -> Option<ProgressStream> {
    let reference = Reference::parse(image).ok()?.to_string();
    let resp = IntrospectClient::new(channel)
        .watch_pulls(WatchPullsRequest { reference })
        .await
        .ok()?;
    Some(resp.into_inner())
}

async fn render(mut stream: ProgressStream) {
    let tty = std::io::stdout().is_terminal();
    let mut drawn_lines = 0usize;
    let mut last_shown: HashMap<String, (String, u64)> = HashMap::new();
    while let Some(Ok(event)) = stream.next().await {
        let mut out = std::io::stdout().lock();
        if tty {
            if drawn_lines > 0 {
                let _ = write!(out, "\x1b[{drawn_lines}A");
            }
            for layer in &event.layers {
                let _ = writeln!(out, "\x1b[2K{}", layer_line(layer));
            }
            drawn_lines = event.layers.len();
        } else {
            for layer in &event.layers {
                let quarter = (layer.downloaded_bytes * 4).checked_div(layer.total_bytes).unwrap_or(0);
                let key = (layer.state.clone(), quarter);
                if last_shown.get(&layer.digest) != Some(&key) {
                    let _ = writeln!(out, "{}", layer_line(layer));
                    last_shown.insert(layer.digest.clone(), key);
                }
            }
        }
        if !event.error.is_empty() {
            let _ = writeln!(out, "pull failed: {}", event.error);
        }
        let _ = out.flush();
        if event.finished {
            break;
        }
    }
}

fn layer_line(layer: &crate::introspect::proto::LayerProgress) -> String {
    let short = layer.digest.strip_prefix("sha256:").unwrap_or(&layer.digest);
    let short: String = short.chars().take(12).collect();
    let pct = (layer.downloaded_bytes * 100)
        .checked_div(layer.total_bytes)
        .unwrap_or(100);
    format!(
        "{short}  {:<11}  {:>8} / {:<8}  {pct:>3}%",
        layer.state,
        human_size(layer.downloaded_bytes),
        human_size(layer.total_bytes)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn creds_forms() {
        let a = auth_config(Some("alice:pw"), None, None).unwrap().unwrap();
        assert_eq!((a.username.as_str(), a.password.as_str()), ("alice", "pw"));
        assert!(auth_config(None, None, None).unwrap().is_none());
        assert!(auth_config(Some(":pw"), None, None).is_err());
        assert!(auth_config(None, Some("%%".into()), None).is_err());
    }
}
