//! The built-in default network: one Linux bridge, a veth per pod.
//!
//! ```text
//!  host netns                                   pod netns
//!  berth0 (10.88.0.1/16) ── vethb<10 hex> ═══ eth0 (10.88.0.N/16), lo up
//!     │                                         default via 10.88.0.1
//!     └ iptables: MASQUERADE leaving the subnet, DNAT hostPorts (also from
//!       127.0.0.1, with route_localnet=1 on the bridge), FORWARD accept
//! ```
//!
//! Setup: ensure the host side (bridge, sysctls, owned chains and network
//! rules — rules only once per instance), allocate an IP ([`ipam`]), create the
//! veth with its peer born in the pod netns as `eth0`, attach the host end,
//! configure the pod side ([`netlink::in_netns`]), add the pod's hostPort DNATs.
//! Any failure rolls back what was done.
//!
//! Teardown needs nothing but the pod id: it removes the pod's DNATs (found by
//! comment), deletes the host veth (named from a hash of the pod id; the pod end
//! goes with it) and frees the IP. Each step tolerates "already gone".
//! Invariant relied on: rules are added after the IP is allocated and removed
//! before it is freed, so a pod without an IP file has no rules.

pub mod ipam;
pub mod iptables;
pub mod netlink;
pub mod rules;
pub mod sysctl;

use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;

use futures::future::BoxFuture;
use futures::FutureExt;
use tracing::Instrument;

use self::ipam::{Ipam, IpamError};
use self::iptables::{delete_of, rule_comment, saved_chains, Iptables, IptablesError};
use self::netlink::{in_netns, Netlink, NetlinkError};
use self::rules::{hostport_rules, network_rules, pod_comment, pod_of_comment, Chains};
use self::sysctl::SysctlError;
use crate::error::{Error, Result};
use crate::ipnet::IpNetwork;
use crate::result::{CniResult, Interface, IpConfig, Route};
use crate::types::{NetworkStatus, OrphanReport, PodNetworkRequest, PodNetworkResult};
use crate::{validate_request, PodNetwork};

/// Errors of the built-in network, naming the bridge or pod concerned.
#[derive(Debug, thiserror::Error)]
pub enum BridgeError {
    #[error("bridge {bridge}: {source}")]
    Netlink {
        bridge: String,
        #[source]
        source: NetlinkError,
    },
    #[error(transparent)]
    Ipam(#[from] IpamError),
    #[error(transparent)]
    Iptables(#[from] IptablesError),
    #[error(transparent)]
    Sysctl(#[from] SysctlError),
    #[error("invalid bridge config: {0}")]
    InvalidConfig(String),
    #[error("pod {pod_id} netns {}: {reason}", .netns.display())]
    Netns {
        pod_id: String,
        netns: PathBuf,
        reason: String,
    },
    #[error("pod {pod_id} on bridge {bridge}: check failed: {reason}")]
    CheckFailed {
        pod_id: String,
        bridge: String,
        reason: String,
    },
}

/// Settings of the built-in network. Paths are passed in, never assumed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BridgeConfig {
    /// Bridge name, `berth0` by default.
    pub bridge: String,
    /// IPv4 pod subnet, `10.88.0.0/16` by default; the gateway is its `.1`.
    pub subnet: IpNetwork,
    /// Where IP allocations are kept (one file per IP).
    pub ipam_dir: PathBuf,
    pub mtu: Option<u32>,
    /// Prefix of the owned iptables chains (`BERTH` → `BERTH-HOSTPORTS`, …).
    pub chain_prefix: String,
    /// Root of the sysctl tree, `/proc/sys`.
    pub sysctl_dir: PathBuf,
    pub iptables: Iptables,
    /// Hairpin mode on pod ports, so a pod reaches itself through a hostPort.
    pub hairpin: bool,
}

impl Default for BridgeConfig {
    fn default() -> Self {
        BridgeConfig {
            bridge: "berth0".into(),
            subnet: IpNetwork {
                addr: IpAddr::V4(Ipv4Addr::new(10, 88, 0, 0)),
                prefix: 16,
            },
            ipam_dir: "/var/lib/berth/network/ipam/berth0".into(),
            mtu: None,
            chain_prefix: "BERTH".into(),
            sysctl_dir: "/proc/sys".into(),
            iptables: Iptables::default(),
            hairpin: true,
        }
    }
}

/// The prefix of host-side veth names.
pub const VETH_PREFIX: &str = "vethb";

/// The host-side veth name of a pod: `vethb` + 10 hex digits of a hash of its id
/// (15 characters, the Linux limit). The built-in network gives a pod one interface.
pub fn host_veth_name(pod_id: &str) -> String {
    // FNV-1a, 64 bit: stable across releases and platforms.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in pod_id.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("{VETH_PREFIX}{:010x}", h >> 24)
}

/// The built-in bridge network.
pub struct BridgeNetwork {
    config: BridgeConfig,
    chains: Chains,
    ipam: Ipam,
    rules_ready: tokio::sync::Mutex<bool>,
}

impl std::fmt::Debug for BridgeNetwork {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BridgeNetwork").field("config", &self.config).finish()
    }
}

impl BridgeNetwork {
    pub fn new(config: BridgeConfig) -> Result<Self, BridgeError> {
        let IpAddr::V4(subnet) = config.subnet.network().addr else {
            return Err(BridgeError::InvalidConfig(format!(
                "subnet {} is not IPv4",
                config.subnet
            )));
        };
        let name_ok = |n: &str| !n.is_empty() && n.len() <= 15 && !n.contains(['/', ' ', ':', '\0']);
        if !name_ok(&config.bridge) {
            return Err(BridgeError::InvalidConfig(format!(
                "bridge name {:?} is not a valid interface name",
                config.bridge
            )));
        }
        let p = &config.chain_prefix;
        if p.is_empty() || p.len() > 15 || !p.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') {
            return Err(BridgeError::InvalidConfig(format!(
                "chain prefix {p:?} must be 1-15 of [A-Za-z0-9_-]"
            )));
        }
        let ipam = Ipam::new(&config.ipam_dir, subnet, config.subnet.prefix)?;
        Ok(BridgeNetwork {
            chains: Chains::new(p),
            ipam,
            rules_ready: tokio::sync::Mutex::new(false),
            config,
        })
    }

    pub fn config(&self) -> &BridgeConfig {
        &self.config
    }

    pub fn ipam(&self) -> &Ipam {
        &self.ipam
    }

    pub fn gateway(&self) -> Ipv4Addr {
        self.ipam.gateway()
    }

    fn nl_err(&self) -> impl Fn(NetlinkError) -> BridgeError + '_ {
        move |source| BridgeError::Netlink {
            bridge: self.config.bridge.clone(),
            source,
        }
    }

    /// Bridge up with its gateway address, sysctls, and (once per instance) the
    /// owned chains and network rules.
    async fn ensure_host(&self, nl: &Netlink) -> Result<u32, BridgeError> {
        let index = nl
            .ensure_bridge(
                &self.config.bridge,
                self.gateway(),
                self.config.subnet.prefix,
                self.config.mtu,
            )
            .await
            .map_err(self.nl_err())?;
        let root = &self.config.sysctl_dir;
        sysctl::ensure(root, "net/ipv4/ip_forward", "1")?;
        sysctl::ensure(
            root,
            &format!("net/ipv4/conf/{}/route_localnet", self.config.bridge),
            "1",
        )?;
        let mut ready = self.rules_ready.lock().await;
        if !*ready {
            self.ensure_rules().await?;
            *ready = true;
        }
        Ok(index)
    }

    /// Creates missing owned chains, jumps and network rules, found by comment.
    async fn ensure_rules(&self) -> Result<(), IptablesError> {
        let ipt = &self.config.iptables;
        let mut wanted = self.chains.jumps();
        wanted.extend(network_rules(&self.chains, &self.config.bridge, self.config.subnet));
        for table in ["nat", "filter"] {
            let saved = ipt.save(table).await?;
            let existing = saved_chains(&saved);
            let mut lines: Vec<String> = self
                .chains
                .owned()
                .iter()
                .filter(|(t, c)| *t == table && !existing.iter().any(|e| e == c))
                .map(|(_, c)| format!(":{c} - [0:0]"))
                .collect();
            let present: Vec<(String, String)> = saved
                .lines()
                .filter_map(|l| Some((iptables::rule_chain(l)?.to_string(), rule_comment(l)?)))
                .collect();
            lines.extend(
                wanted
                    .iter()
                    .filter(|r| r.table == table && !present.iter().any(|(c, m)| *c == r.chain && *m == r.comment))
                    .map(|r| r.add.clone()),
            );
            ipt.apply(table, &lines).await?;
        }
        Ok(())
    }

    /// Removes the pod's hostPort rules; a missing chain means there are none.
    async fn remove_pod_rules(&self, pod_id: &str) -> Result<(), IptablesError> {
        let ipt = &self.config.iptables;
        let Some(rules) = ipt.list_chain("nat", &self.chains.hostports).await? else {
            return Ok(());
        };
        let tag = pod_comment(pod_id);
        let dels: Vec<String> = rules
            .iter()
            .filter(|r| rule_comment(r).as_deref() == Some(tag.as_str()))
            .filter_map(|r| delete_of(r))
            .collect();
        ipt.apply("nat", &dels).await
    }

    async fn setup_inner(&self, req: &PodNetworkRequest) -> Result<PodNetworkResult> {
        validate_request(req)?;
        let nl = Netlink::connect().map_err(self.nl_err())?;
        let bridge_index = self.ensure_host(&nl).await?;
        let netns = std::fs::File::open(&req.netns).map_err(|e| BridgeError::Netns {
            pod_id: req.pod_id.clone(),
            netns: req.netns.clone(),
            reason: e.to_string(),
        })?;
        let ip = self.ipam.allocate(&req.pod_id, &req.ifname)?;
        match self.attach_pod(&nl, req, &netns, bridge_index, ip).await {
            Ok(result) => {
                tracing::info!(%ip, "pod attached to bridge {}", self.config.bridge);
                Ok(result)
            }
            Err(primary) => {
                tracing::warn!(error = %primary, "bridge setup failed; rolling back");
                match self.teardown_inner(req).await {
                    Ok(()) => Err(primary),
                    Err(rollback) => Err(Error::Rollback {
                        primary: Box::new(primary),
                        rollback: Box::new(rollback),
                    }),
                }
            }
        }
    }

    async fn attach_pod(
        &self,
        nl: &Netlink,
        req: &PodNetworkRequest,
        netns: &std::fs::File,
        bridge_index: u32,
        ip: Ipv4Addr,
    ) -> Result<PodNetworkResult> {
        let host = host_veth_name(&req.pod_id);
        // A retried setup replaces the earlier attempt's veth (and its pod end).
        nl.delete_link(&host).await.map_err(self.nl_err())?;
        nl.create_veth_into(&host, &req.ifname, netns, self.config.mtu)
            .await
            .map_err(self.nl_err())?;
        let host_link = nl
            .link(&host)
            .await
            .map_err(self.nl_err())?
            .ok_or_else(|| BridgeError::Netlink {
                bridge: self.config.bridge.clone(),
                source: NetlinkError::Unexpected(format!("{host} vanished")),
            })?;
        nl.attach(host_link.index, &host, bridge_index, self.config.hairpin)
            .await
            .map_err(self.nl_err())?;
        let (ifname, prefix, gw) = (req.ifname.clone(), self.config.subnet.prefix, self.gateway());
        let mac = in_netns(&req.netns, move |pod_nl| async move {
            pod_nl.configure_pod(&ifname, ip, prefix, gw).await
        })
        .await
        .map_err(|e| BridgeError::Netns {
            pod_id: req.pod_id.clone(),
            netns: req.netns.clone(),
            reason: e.to_string(),
        })?;
        if !req.port_mappings.is_empty() {
            self.remove_pod_rules(&req.pod_id).await?;
            let rules = hostport_rules(&self.chains, &req.pod_id, ip, &req.port_mappings);
            self.config.iptables.apply("nat", &rules).await?;
        }
        let gateway = IpAddr::V4(gw);
        let result = CniResult {
            cni_version: crate::version::CniVersion::V1_0_0.to_string(),
            interfaces: vec![
                Interface {
                    name: self.config.bridge.clone(),
                    ..Default::default()
                },
                Interface {
                    name: host,
                    mac: host_link.mac,
                    ..Default::default()
                },
                Interface {
                    name: req.ifname.clone(),
                    mac,
                    sandbox: req.netns.display().to_string(),
                    ..Default::default()
                },
            ],
            ips: vec![IpConfig {
                address: IpNetwork {
                    addr: IpAddr::V4(ip),
                    prefix,
                },
                gateway: Some(gateway),
                interface: Some(2),
            }],
            routes: vec![Route {
                dst: IpNetwork {
                    addr: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
                    prefix: 0,
                },
                gw: Some(gateway),
                mtu: None,
                advmss: None,
                priority: None,
                table: None,
                scope: None,
            }],
            dns: Default::default(),
        };
        Ok(PodNetworkResult {
            network: self.config.bridge.clone(),
            result,
        })
    }

    async fn teardown_inner(&self, req: &PodNetworkRequest) -> Result<()> {
        validate_request(req)?;
        let holds_ip = self.ipam.allocations()?.iter().any(|a| a.pod_id == req.pod_id);
        if holds_ip {
            self.remove_pod_rules(&req.pod_id).await?;
        }
        let nl = Netlink::connect().map_err(self.nl_err())?;
        let host = host_veth_name(&req.pod_id);
        if nl.delete_link(&host).await.map_err(self.nl_err())? {
            tracing::debug!(veth = %host, "deleted pod veth");
        }
        let freed = self.ipam.release(&req.pod_id, None)?;
        tracing::info!(?freed, "pod detached from bridge {}", self.config.bridge);
        Ok(())
    }

    async fn check_inner(&self, req: &PodNetworkRequest) -> Result<()> {
        validate_request(req)?;
        let fail = |reason: String| BridgeError::CheckFailed {
            pod_id: req.pod_id.clone(),
            bridge: self.config.bridge.clone(),
            reason,
        };
        let ip = self
            .ipam
            .allocations()?
            .into_iter()
            .find(|a| a.pod_id == req.pod_id && a.ifname == req.ifname)
            .ok_or_else(|| fail("no IP allocated".into()))?
            .ip;
        let nl = Netlink::connect().map_err(self.nl_err())?;
        let bridge = nl
            .link(&self.config.bridge)
            .await
            .map_err(self.nl_err())?
            .ok_or_else(|| fail("bridge missing".into()))?;
        let host = host_veth_name(&req.pod_id);
        let veth = nl
            .link(&host)
            .await
            .map_err(self.nl_err())?
            .ok_or_else(|| fail(format!("veth {host} missing")))?;
        if veth.controller != Some(bridge.index) || !veth.up {
            return Err(fail(format!("veth {host} is not up on the bridge")).into());
        }
        let ifname = req.ifname.clone();
        let seen = in_netns(
            &req.netns,
            move |pod_nl| async move { pod_nl.pod_addresses(&ifname).await },
        )
        .await
        .map_err(|e| fail(e.to_string()))?;
        match seen {
            None => Err(fail(format!("{} missing in pod netns", req.ifname)).into()),
            Some((false, _)) => Err(fail(format!("{} is down", req.ifname)).into()),
            Some((true, addrs)) if !addrs.contains(&(IpAddr::V4(ip), self.config.subnet.prefix)) => {
                Err(fail(format!("{} lacks {ip}/{}", req.ifname, self.config.subnet.prefix)).into())
            }
            Some(_) => Ok(()),
        }
    }

    fn status_inner(&self) -> NetworkStatus {
        NetworkStatus::ready(self.config.bridge.clone())
    }

    async fn cleanup_inner(&self, live: &HashSet<String>) -> Result<OrphanReport> {
        let mut report = OrphanReport::default();
        let mut dead: HashSet<String> = HashSet::new();
        // Addresses of dead pods (and unreadable, ownerless files).
        for a in self.ipam.allocations()? {
            if !live.contains(&a.pod_id) {
                match self.ipam.remove(a.ip) {
                    Ok(()) => {
                        dead.insert(a.pod_id);
                    }
                    Err(e) => report.failures.push(e.to_string()),
                }
            }
        }
        // hostPort rules of dead pods.
        if let Some(rules) = self.config.iptables.list_chain("nat", &self.chains.hostports).await? {
            let mut dels = Vec::new();
            for r in &rules {
                if let Some(pod) = rule_comment(r).as_deref().and_then(pod_of_comment) {
                    if !live.contains(pod) {
                        dead.insert(pod.to_string());
                        dels.extend(delete_of(r));
                    }
                }
            }
            if let Err(e) = self.config.iptables.apply("nat", &dels).await {
                report.failures.push(e.to_string());
            }
        }
        // Pod veths on our bridge that no live pod owns.
        let nl = Netlink::connect().map_err(self.nl_err())?;
        if let Some(bridge) = nl.link(&self.config.bridge).await.map_err(self.nl_err())? {
            let live_veths: HashSet<String> = live.iter().map(|p| host_veth_name(p)).collect();
            for link in nl.links().await.map_err(self.nl_err())? {
                if link.controller == Some(bridge.index)
                    && link.name.starts_with(VETH_PREFIX)
                    && !live_veths.contains(&link.name)
                {
                    match nl.delete_link(&link.name).await {
                        Ok(_) => dead.insert(format!("veth:{}", link.name)),
                        Err(e) => {
                            report.failures.push(e.to_string());
                            false
                        }
                    };
                }
            }
        }
        dead.remove("");
        report.pods = dead.into_iter().collect();
        report.pods.sort();
        Ok(report)
    }
}

impl PodNetwork for BridgeNetwork {
    fn setup<'a>(&'a self, req: &'a PodNetworkRequest) -> BoxFuture<'a, Result<PodNetworkResult>> {
        let span = tracing::info_span!("bridge_setup", pod_id = %req.pod_id, bridge = %self.config.bridge);
        self.setup_inner(req).instrument(span).boxed()
    }

    fn teardown<'a>(&'a self, req: &'a PodNetworkRequest) -> BoxFuture<'a, Result<()>> {
        let span = tracing::info_span!("bridge_teardown", pod_id = %req.pod_id, bridge = %self.config.bridge);
        self.teardown_inner(req).instrument(span).boxed()
    }

    fn check<'a>(&'a self, req: &'a PodNetworkRequest) -> BoxFuture<'a, Result<()>> {
        let span = tracing::info_span!("bridge_check", pod_id = %req.pod_id, bridge = %self.config.bridge);
        self.check_inner(req).instrument(span).boxed()
    }

    fn status(&self) -> BoxFuture<'_, NetworkStatus> {
        let status = self.status_inner();
        async move { status }.boxed()
    }

    fn cleanup_orphans<'a>(&'a self, live_pod_ids: &'a HashSet<String>) -> BoxFuture<'a, Result<OrphanReport>> {
        let span = tracing::info_span!("bridge_cleanup", bridge = %self.config.bridge);
        self.cleanup_inner(live_pod_ids).instrument(span).boxed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn veth_names_are_stable_and_short() {
        let a = host_veth_name("0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef");
        assert_eq!(a.len(), 15);
        assert!(a.starts_with(VETH_PREFIX));
        assert_eq!(
            a,
            host_veth_name("0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef")
        );
        assert_ne!(
            a,
            host_veth_name("0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdee")
        );
    }

    #[test]
    fn config_is_validated() {
        let tmp = tempfile::tempdir().unwrap();
        let base = BridgeConfig {
            ipam_dir: tmp.path().into(),
            ..Default::default()
        };
        assert!(BridgeNetwork::new(base.clone()).is_ok());
        let v6 = BridgeConfig {
            subnet: "fd00::/64".parse().unwrap(),
            ..base.clone()
        };
        assert!(BridgeNetwork::new(v6).is_err());
        let long = BridgeConfig {
            bridge: "a-very-long-bridge-name".into(),
            ..base.clone()
        };
        assert!(BridgeNetwork::new(long).is_err());
        let chain = BridgeConfig {
            chain_prefix: "bad prefix".into(),
            ..base.clone()
        };
        assert!(BridgeNetwork::new(chain).is_err());
        let tiny = BridgeConfig {
            subnet: "10.0.0.0/31".parse().unwrap(),
            ..base
        };
        assert!(BridgeNetwork::new(tiny).is_err());
        let net = BridgeNetwork::new(BridgeConfig {
            ipam_dir: tmp.path().into(),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(net.gateway(), Ipv4Addr::new(10, 88, 0, 1));
    }
}
