//! berthctl: a crictl-style CLI over the CRI socket.

pub mod cli;
pub mod client;
mod images;
mod output;
mod pull;
mod runtime;

use cli::{Cli, Command};

/// Run one berthctl command.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    let socket = cli::socket_path(&cli.endpoint).map_err(anyhow::Error::msg)?;
    let channel = client::connect(socket).await?;
    let timeout = cli.timeout;
    match cli.command {
        Command::Version => runtime::version(channel, timeout).await,
        Command::Info { output } => runtime::info(channel, timeout, output).await,
        Command::Pull {
            image,
            creds,
            auth,
            registry_token,
            quiet,
        } => {
            let auth = pull::auth_config(creds.as_deref(), auth, registry_token)?;
            pull::pull(channel, &image, auth, quiet).await
        }
        Command::Images {
            image,
            quiet,
            digests,
            no_trunc,
            output,
        } => {
            images::list(
                channel,
                timeout,
                image,
                images::ListStyle {
                    quiet,
                    digests,
                    no_trunc,
                    output,
                },
            )
            .await
        }
        Command::InspectImage { images, output } => images::inspect(channel, timeout, &images, output).await,
        Command::Rmi { images, all } => images::remove(channel, timeout, images, all).await,
        Command::ImageFsInfo { output } => images::fs_info(channel, timeout, output).await,
    }
}

/// A request with the call timeout set.
fn request<T>(message: T, timeout: std::time::Duration) -> tonic::Request<T> {
    let mut r = tonic::Request::new(message);
    r.set_timeout(timeout);
    r
}

/// A gRPC status as a readable error: `NotFound: image … not found`.
fn status_error(call: &str, status: tonic::Status) -> anyhow::Error {
    anyhow::anyhow!("{call}: {:?}: {}", status.code(), status.message())
}
