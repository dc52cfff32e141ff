//! port-forward: local ports to ports in a pod (CRI PortForward) until
//! interrupted, printing what kubectl prints.

use std::io::Write;
use std::net::Ipv4Addr;
use std::time::Duration;

use anyhow::Context as _;
use k8s_cri::v1::runtime_service_client::RuntimeServiceClient;
use k8s_cri::v1::PortForwardRequest;
use tokio::net::TcpListener;
use tokio::signal::unix::{signal, SignalKind};
use tonic::transport::Channel;

use super::cli::PortMapping;
use super::stream::port_forward::{Event, Forward};
use super::stream::{PortForwarder, Transport};
use super::{request, resolve, status_error};

/// Forwards until SIGINT or SIGTERM (Ok) or until the session is lost.
pub async fn port_forward(
    channel: Channel,
    timeout: Duration,
    prefix: &str,
    ports: &[PortMapping],
    transport: Transport,
) -> anyhow::Result<()> {
    let mut interrupt = signal(SignalKind::interrupt())?;
    let mut terminate = signal(SignalKind::terminate())?;
    let id = resolve::pod(&channel, timeout, prefix).await?;
    let remotes = ports.iter().map(|p| i32::from(p.remote)).collect();
    let url = port_forward_url(channel, timeout, id, remotes).await?;
    let forwarder = PortForwarder::connect(&url, transport).await?;

    let mut forwards = Vec::new();
    for mapping in ports {
        match TcpListener::bind((Ipv4Addr::LOCALHOST, mapping.local)).await {
            Ok(listener) => {
                let local = listener.local_addr().context("listener address")?;
                println!("Forwarding from {local} -> {}", mapping.remote);
                forwards.push(Forward {
                    listener,
                    remote: mapping.remote,
                });
            }
            Err(e) => eprintln!("Unable to listen on port {}: {e}", mapping.local),
        }
    }
    if forwards.is_empty() {
        anyhow::bail!("unable to listen on any of the requested ports");
    }
    let _ = std::io::stdout().flush();

    let serve = forwarder.serve(forwards, |event| match event {
        Event::Accepted { local, .. } => {
            println!("Handling connection for {local}");
            let _ = std::io::stdout().flush();
        }
        Event::Failed { local, remote, error } => {
            eprintln!("berthctl: port-forward {local} -> {remote}: {error:#}");
        }
    });
    let result = tokio::select! {
        r = serve => r,
        _ = interrupt.recv() => Ok(()),
        _ = terminate.recv() => Ok(()),
    };
    forwarder.close();
    result
}

/// CRI PortForward: the streaming URL (the ports are checked by berthd;
/// the client may still ask for others per connection).
pub async fn port_forward_url(
    channel: Channel,
    timeout: Duration,
    pod_sandbox_id: String,
    port: Vec<i32>,
) -> anyhow::Result<String> {
    let resp = RuntimeServiceClient::new(channel)
        .port_forward(request(PortForwardRequest { pod_sandbox_id, port }, timeout))
        .await
        .map_err(|s| status_error("PortForward", s))?
        .into_inner();
    Ok(resp.url)
}
