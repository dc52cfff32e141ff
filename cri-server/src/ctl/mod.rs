//! berthctl: a crictl-style CLI over the CRI socket.

mod attach;
pub mod cli;
pub mod client;
mod config_file;
mod containers;
mod exec;
mod images;
mod logs;
mod output;
mod pods;
mod port_forward;
mod pull;
mod resolve;
mod runtime;
pub mod stream;

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
        Command::Runp { config, runtime } => pods::run(channel, timeout, &config, runtime).await,
        Command::Pods {
            id,
            name,
            namespace,
            state,
            labels,
            latest,
            out,
        } => {
            let filter = pods::ListFilter {
                id,
                name,
                namespace,
                state,
                labels,
                latest,
            };
            pods::list(channel, timeout, filter, out).await
        }
        Command::Inspectp { ids, out } => pods::inspect(channel, timeout, &ids, out).await,
        Command::Stopp { ids } => pods::stop(channel, timeout, &ids).await,
        Command::Rmp { ids, all, force } => pods::remove(channel, timeout, &ids, all, force).await,
        Command::Create {
            pod,
            container_config,
            pod_config,
            pull,
        } => {
            let args = containers::CreateArgs {
                pod: &pod,
                container_config: &container_config,
                pod_config: &pod_config,
                pull,
            };
            containers::create(channel, timeout, args).await
        }
        Command::Start { ids } => containers::start(channel, timeout, &ids).await,
        Command::Ps {
            all,
            id,
            pod,
            name,
            state,
            labels,
            latest,
            out,
        } => {
            let filter = containers::ListFilter {
                all,
                id,
                pod,
                name,
                state,
                labels,
                latest,
            };
            containers::list(channel, timeout, filter, out).await
        }
        Command::Inspect { ids, out } => containers::inspect(channel, timeout, &ids, out).await,
        Command::Stop { grace, ids } => containers::stop(channel, timeout, grace, &ids).await,
        Command::Rm { ids, all, force } => containers::remove(channel, timeout, &ids, all, force).await,
        Command::Logs {
            id,
            follow,
            tail,
            timestamps,
            since,
        } => {
            let args = logs::LogArgs {
                follow,
                tail,
                timestamps,
                since,
            };
            logs::logs(channel, timeout, &id, args).await
        }
        Command::Exec {
            exec_timeout,
            tty,
            interactive,
            sync,
            transport,
            id,
            cmd,
        } => {
            let code = if sync || !(tty || interactive) {
                exec::exec(channel, timeout, &id, cmd, exec_timeout).await?
            } else {
                exec::exec_stream(channel, timeout, &id, cmd, interactive, tty, transport.transport).await?
            };
            exit_with(code)
        }
        Command::Attach {
            tty,
            stdin,
            transport,
            id,
        } => {
            let code = attach::attach(channel, timeout, &id, stdin, tty, transport.transport).await?;
            exit_with(code)
        }
        Command::PortForward { transport, pod, ports } => {
            port_forward::port_forward(channel, timeout, &pod, &ports, transport.transport).await
        }
    }
}

/// The command's own exit code is berthctl's, as with crictl: its output
/// is flushed, the terminal restored, and nothing else is pending.
fn exit_with(code: i32) -> anyhow::Result<()> {
    if code != 0 {
        std::process::exit(code);
    }
    Ok(())
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
