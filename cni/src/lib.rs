//! berth's pod networking: a CNI spec runner and a built-in bridge network.
//!
//! The CRI layer hands in a pod's netns path, identity and capability args
//! ([`PodNetworkRequest`]) and gets IPs back ([`PodNetworkResult`]); this crate
//! knows nothing about gRPC or CRI messages. Both implementations sit behind one
//! trait, [`PodNetwork`]:
//!
//! - [`CniRunner`] runs the CNI plugins of the lexically first valid config in a
//!   conf dir (spec 1.x, 0.4.0 and 0.3.x), caching ADD results on disk so DEL
//!   works after a restart.
//! - [`BridgeNetwork`] is the built-in default: a Linux bridge, a veth per pod,
//!   on-disk IPAM, masquerade and hostPort DNAT, all set up over rtnetlink and
//!   iptables, with no CNI installation at all.
//! - [`AutoNetwork`] uses CNI when a config exists and the bridge otherwise.
//!
//! Lifecycle, as berthd drives it:
//!
//! 1. `RunPodSandbox` pins a netns and calls [`PodNetwork::setup`]; on a later
//!    failure it calls [`PodNetwork::teardown`] to roll back.
//! 2. `PodSandboxStatus` may call [`PodNetwork::check`].
//! 3. `StopPodSandbox` calls `teardown` (repeatable; the netns may already be gone).
//! 4. `Status` reports [`PodNetwork::status`] as the `NetworkReady` condition.
//! 5. On start, berthd calls [`PodNetwork::cleanup_orphans`] with the pods it still
//!    knows, removing what crashed pods left behind.

pub mod args;
pub mod auto;
pub mod bridge;
pub mod cache;
pub mod config;
pub mod error;
pub mod exec;
pub mod ipnet;
pub mod result;
pub mod runner;
pub mod types;
pub mod version;

use std::collections::HashSet;

use futures::future::BoxFuture;

pub use auto::AutoNetwork;
pub use bridge::{BridgeConfig, BridgeNetwork};
pub use error::{Error, Result};
pub use ipnet::IpNetwork;
pub use result::CniResult;
pub use runner::{CniRunner, CniRunnerConfig};
pub use types::{
    Bandwidth, DnsCapability, IpRange, NetworkStatus, OrphanReport, PodNetworkRequest, PodNetworkResult, PortMapping,
    Protocol, DEFAULT_IFNAME,
};

/// A way of attaching pods to a network. Every method is safe to repeat.
pub trait PodNetwork: Send + Sync {
    /// Attaches the pod's netns; returns its addresses. A repeated call for the
    /// same pod replaces the earlier attachment.
    fn setup<'a>(&'a self, req: &'a PodNetworkRequest) -> BoxFuture<'a, Result<PodNetworkResult>>;

    /// Detaches the pod. Succeeds when the netns, interfaces or address are
    /// already gone, and when called twice.
    fn teardown<'a>(&'a self, req: &'a PodNetworkRequest) -> BoxFuture<'a, Result<()>>;

    /// Verifies the attachment is still as set up.
    fn check<'a>(&'a self, req: &'a PodNetworkRequest) -> BoxFuture<'a, Result<()>>;

    /// Whether pods can be networked now, with a reason when not.
    fn status(&self) -> BoxFuture<'_, NetworkStatus>;

    /// Removes leftovers (interfaces, addresses, rules, cache entries) of pods
    /// not in `live_pod_ids`.
    fn cleanup_orphans<'a>(&'a self, live_pod_ids: &'a HashSet<String>) -> BoxFuture<'a, Result<OrphanReport>>;
}

/// Checks the identifiers that end up in file and interface names.
pub(crate) fn validate_request(req: &PodNetworkRequest) -> Result<()> {
    let bad_name =
        |s: &str| s.is_empty() || s == "." || s == ".." || s.contains(['/', '\0']) || s.contains(char::is_whitespace);
    if bad_name(&req.pod_id) {
        return Err(Error::InvalidRequest(format!(
            "pod id {:?} is empty or not file-name safe",
            req.pod_id
        )));
    }
    if bad_name(&req.ifname) || req.ifname.len() > 15 || req.ifname.contains(':') {
        return Err(Error::InvalidRequest(format!(
            "interface name {:?} is not a valid Linux name",
            req.ifname
        )));
    }
    Ok(())
}
