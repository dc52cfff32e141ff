//! What the CRI layer hands in (a pod's identity, netns and capability args)
//! and what it gets back.

use std::fmt;
use std::net::IpAddr;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::ipnet::IpNetwork;
use crate::result::CniResult;

/// The interface name pods get when the caller does not choose one.
pub const DEFAULT_IFNAME: &str = "eth0";

/// One pod's network attachment request. The same value is passed to
/// `setup`, `check` and `teardown`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodNetworkRequest {
    /// The sandbox ID (`CNI_CONTAINERID`, `K8S_POD_INFRA_CONTAINER_ID`).
    pub pod_id: String,
    pub pod_name: String,
    pub pod_namespace: String,
    pub pod_uid: String,
    /// Path of the pod's network namespace (a bind-mounted nsfs file). It may be
    /// gone by the time of a teardown.
    pub netns: PathBuf,
    /// Interface name inside the pod, `eth0` by default.
    pub ifname: String,
    pub port_mappings: Vec<PortMapping>,
    pub bandwidth: Option<Bandwidth>,
    pub dns: Option<DnsCapability>,
    /// `ipRanges` capability: a list of range sets, as host-local reads them.
    pub ip_ranges: Vec<Vec<IpRange>>,
    /// Extra `CNI_ARGS` pairs appended after the Kubernetes ones.
    pub extra_args: Vec<(String, String)>,
}

impl PodNetworkRequest {
    pub fn new(pod_id: impl Into<String>, netns: impl Into<PathBuf>) -> Self {
        PodNetworkRequest {
            pod_id: pod_id.into(),
            pod_name: String::new(),
            pod_namespace: String::new(),
            pod_uid: String::new(),
            netns: netns.into(),
            ifname: DEFAULT_IFNAME.to_string(),
            port_mappings: Vec::new(),
            bandwidth: None,
            dns: None,
            ip_ranges: Vec::new(),
            extra_args: Vec::new(),
        }
    }
}

/// The transport protocol of a port mapping.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    #[default]
    Tcp,
    Udp,
    Sctp,
}

impl Protocol {
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
            Protocol::Sctp => "sctp",
        }
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A hostPort mapping, serialised as the `portMappings` capability expects.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PortMapping {
    pub host_port: u16,
    pub container_port: u16,
    #[serde(default)]
    pub protocol: Protocol,
    /// Only this host address, or every local address when `None`.
    #[serde(rename = "hostIP", default, skip_serializing_if = "Option::is_none")]
    pub host_ip: Option<IpAddr>,
}

/// Traffic shaping (`bandwidth` capability): rates in bits/s, bursts in bits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Bandwidth {
    pub ingress_rate: u64,
    pub ingress_burst: u64,
    pub egress_rate: u64,
    pub egress_burst: u64,
}

/// The `dns` capability.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DnsCapability {
    #[serde(default)]
    pub servers: Vec<String>,
    #[serde(default)]
    pub searches: Vec<String>,
    #[serde(default)]
    pub options: Vec<String>,
}

/// One range of the `ipRanges` capability.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IpRange {
    pub subnet: IpNetwork,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub range_start: Option<IpAddr>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub range_end: Option<IpAddr>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<IpAddr>,
}

/// What a successful setup produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodNetworkResult {
    /// The network (conflist `name`, or the built-in bridge's name).
    pub network: String,
    pub result: CniResult,
}

impl PodNetworkResult {
    /// The pod's addresses (without prefix), IPv4 first, as the CRI reports them.
    pub fn pod_ips(&self) -> Vec<IpAddr> {
        let mut ips: Vec<IpAddr> = self.result.pod_ips().into_iter().map(|n| n.addr).collect();
        ips.sort_by_key(|ip| ip.is_ipv6());
        ips
    }
}

/// Whether pods can be networked right now (the CRI `NetworkReady` condition).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetworkStatus {
    pub ready: bool,
    /// Why not, when not ready (e.g. "no network config found in /etc/cni/net.d").
    pub reason: Option<String>,
    /// The network that would be used.
    pub network: Option<String>,
}

impl NetworkStatus {
    pub fn ready(network: impl Into<String>) -> Self {
        NetworkStatus {
            ready: true,
            reason: None,
            network: Some(network.into()),
        }
    }

    pub fn not_ready(reason: impl Into<String>) -> Self {
        NetworkStatus {
            ready: false,
            reason: Some(reason.into()),
            network: None,
        }
    }
}

/// What `cleanup_orphans` removed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OrphanReport {
    /// Pod IDs whose leftovers were removed.
    pub pods: Vec<String>,
    /// Leftovers that could not be removed, with the reason.
    pub failures: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_mapping_json_shape() {
        let pm = PortMapping {
            host_port: 8080,
            container_port: 80,
            protocol: Protocol::Udp,
            host_ip: None,
        };
        assert_eq!(
            serde_json::to_value(&pm).unwrap(),
            serde_json::json!({"hostPort": 8080, "containerPort": 80, "protocol": "udp"})
        );
        let with_ip: PortMapping =
            serde_json::from_str(r#"{"hostPort":1,"containerPort":2,"hostIP":"127.0.0.1"}"#).unwrap();
        assert_eq!(with_ip.protocol, Protocol::Tcp);
        assert_eq!(with_ip.host_ip, Some("127.0.0.1".parse().unwrap()));
    }
}
