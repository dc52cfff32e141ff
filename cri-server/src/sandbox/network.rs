//! CRI pod config → the pod network's request ([`PodNetworkRequest`]); the
//! same request is built for setup, check and teardown (from the stored
//! config), so a teardown after a restart names the same pod and ports.

use std::net::IpAddr;
use std::path::Path;
use std::time::Duration;

use berth_cni::{DnsCapability, PodNetwork, PodNetworkRequest, PortMapping, Protocol};
use k8s_cri::v1::{NamespaceMode, PodSandboxConfig};

use crate::error::CriError;
use crate::store::PodRecord;

/// How long one setup or teardown of the pod network may take (a hung CNI
/// plugin must not hold a pod's lock forever).
pub const NETWORK_TIMEOUT: Duration = Duration::from_secs(120);

/// Whether the pod uses the node's network namespace.
pub fn host_network(config: &PodSandboxConfig) -> bool {
    namespace_options(config).is_some_and(|o| o.network == NamespaceMode::Node as i32)
}

pub fn namespace_options(config: &PodSandboxConfig) -> Option<&k8s_cri::v1::NamespaceOption> {
    config
        .linux
        .as_ref()
        .and_then(|l| l.security_context.as_ref())
        .and_then(|sc| sc.namespace_options.as_ref())
}

/// The kubelet's port mappings, checked field by field.
pub fn port_mappings(config: &PodSandboxConfig) -> Result<Vec<PortMapping>, CriError> {
    let mut out = Vec::new();
    for (i, pm) in config.port_mappings.iter().enumerate() {
        let port = |p: i32, what: &str| {
            u16::try_from(p).map_err(|_| {
                CriError::invalid("config.port_mappings", format!("[{i}] {what} {p} is not a port number"))
            })
        };
        let container_port = port(pm.container_port, "container_port")?;
        let host_port = port(pm.host_port, "host_port")?;
        // Only a host port is published; a mapping with just a container
        // port documents the pod's port (reached at the pod IP).
        if host_port == 0 {
            continue;
        }
        if container_port == 0 {
            return Err(CriError::invalid(
                "config.port_mappings",
                format!("[{i}] host_port {host_port} needs a container_port"),
            ));
        }
        let protocol = match k8s_cri::v1::Protocol::try_from(pm.protocol) {
            Ok(k8s_cri::v1::Protocol::Tcp) => Protocol::Tcp,
            Ok(k8s_cri::v1::Protocol::Udp) => Protocol::Udp,
            Ok(k8s_cri::v1::Protocol::Sctp) => Protocol::Sctp,
            Err(_) => {
                return Err(CriError::invalid(
                    "config.port_mappings",
                    format!("[{i}] protocol {} is unknown", pm.protocol),
                ))
            }
        };
        let host_ip = match pm.host_ip.as_str() {
            "" => None,
            ip => Some(ip.parse::<IpAddr>().map_err(|_| {
                CriError::invalid(
                    "config.port_mappings",
                    format!("[{i}] host_ip {ip:?} is not an IP address"),
                )
            })?),
        };
        out.push(PortMapping {
            host_port,
            container_port,
            protocol,
            host_ip,
        });
    }
    Ok(out)
}

/// The request for pod `id` with `config`, netns at `netns`.
pub fn request(id: &str, config: &PodSandboxConfig, netns: &Path) -> Result<PodNetworkRequest, CriError> {
    let meta = config.metadata.clone().unwrap_or_default();
    let mut req = PodNetworkRequest::new(id, netns);
    req.pod_name = meta.name;
    req.pod_namespace = meta.namespace;
    req.pod_uid = meta.uid;
    req.port_mappings = port_mappings(config)?;
    req.dns = config.dns_config.as_ref().map(|d| DnsCapability {
        servers: d.servers.clone(),
        searches: d.searches.clone(),
        options: d.options.clone(),
    });
    Ok(req)
}

/// The request for a stored pod, if it has its own network namespace.
pub fn request_of(pod: &PodRecord) -> Result<Option<PodNetworkRequest>, CriError> {
    match &pod.netns {
        Some(netns) => request(&pod.id, &pod.config, netns).map(Some),
        None => Ok(None),
    }
}

/// Detach the pod from its network, within [`NETWORK_TIMEOUT`]. Idempotent:
/// the network itself tolerates a pod it never saw or whose netns is gone.
pub async fn teardown(network: &dyn PodNetwork, req: &PodNetworkRequest) -> Result<(), CriError> {
    match tokio::time::timeout(NETWORK_TIMEOUT, network.teardown(req)).await {
        Ok(r) => r.map_err(CriError::from),
        Err(_) => Err(CriError::Internal(format!(
            "pod sandbox {}: network teardown timed out after {}s",
            req.pod_id,
            NETWORK_TIMEOUT.as_secs()
        ))),
    }
}
