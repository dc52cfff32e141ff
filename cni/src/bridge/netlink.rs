//! Link, address and route operations over rtnetlink, on the host and inside
//! a pod's netns.
//!
//! A netlink socket belongs to the netns of the thread that opened it. Work
//! inside a pod's netns therefore runs on a short-lived OS thread that
//! `setns`-es into it, opens its own socket and runs a current-thread tokio
//! runtime; the calling task awaits its answer. No thread of the caller's
//! runtime ever changes namespace.

use std::future::Future;
use std::net::{IpAddr, Ipv4Addr};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use futures::TryStreamExt;
use netlink_packet_route::address::AddressAttribute;
use netlink_packet_route::link::{InfoData, InfoVeth, LinkAttribute, LinkFlags, LinkMessage};
use nix::sched::CloneFlags;
use rtnetlink::{Handle, LinkBridge, LinkBridgePort, LinkUnspec, LinkVeth, RouteMessageBuilder};

const ENODEV: i32 = -libc::ENODEV;
const EEXIST: i32 = -libc::EEXIST;

#[derive(Debug, thiserror::Error)]
pub enum NetlinkError {
    #[error("netlink: {op}: {source}")]
    Request { op: String, source: rtnetlink::Error },
    #[error("netlink socket: {0}")]
    Socket(std::io::Error),
    #[error("netns {}: {reason}", .path.display())]
    Netns { path: PathBuf, reason: String },
    #[error("{0}")]
    Unexpected(String),
}

fn errno(e: &rtnetlink::Error) -> Option<i32> {
    match e {
        rtnetlink::Error::NetlinkError(m) => Some(m.raw_code()),
        _ => None,
    }
}

fn req(op: impl Into<String>) -> impl FnOnce(rtnetlink::Error) -> NetlinkError {
    let op = op.into();
    move |source| NetlinkError::Request { op, source }
}

/// A stable, locally administered unicast MAC derived from the bridge name.
pub fn bridge_mac(name: &str) -> [u8; 6] {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in name.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    let b = h.to_be_bytes();
    [0x02, b[0], b[1], b[2], b[3], b[4]]
}

/// A link as we need to see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkInfo {
    pub index: u32,
    pub name: String,
    pub up: bool,
    pub controller: Option<u32>,
    pub mac: String,
}

impl LinkInfo {
    fn from_message(m: &LinkMessage) -> LinkInfo {
        let mut info = LinkInfo {
            index: m.header.index,
            name: String::new(),
            up: m.header.flags.contains(LinkFlags::Up),
            controller: None,
            mac: String::new(),
        };
        for a in &m.attributes {
            match a {
                LinkAttribute::IfName(n) => info.name = n.clone(),
                LinkAttribute::Controller(c) => info.controller = Some(*c),
                LinkAttribute::Address(mac) => {
                    info.mac = mac.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(":")
                }
                _ => {}
            }
        }
        info
    }
}

/// A netlink connection in the current netns; the connection task ends on drop.
pub struct Netlink {
    handle: Handle,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Netlink {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Netlink {
    /// Opens a socket in the calling thread's netns. Needs a tokio runtime.
    pub fn connect() -> Result<Self, NetlinkError> {
        let (conn, handle, _) = rtnetlink::new_connection().map_err(NetlinkError::Socket)?;
        let task = tokio::spawn(conn);
        Ok(Netlink { handle, task })
    }

    pub async fn link(&self, name: &str) -> Result<Option<LinkInfo>, NetlinkError> {
        let mut links = self.handle.link().get().match_name(name.to_string()).execute();
        match links.try_next().await {
            Ok(Some(m)) => Ok(Some(LinkInfo::from_message(&m))),
            Ok(None) => Ok(None),
            Err(e) if errno(&e) == Some(ENODEV) => Ok(None),
            Err(e) => Err(req(format!("get link {name}"))(e)),
        }
    }

    pub async fn links(&self) -> Result<Vec<LinkInfo>, NetlinkError> {
        let msgs: Vec<LinkMessage> = self
            .handle
            .link()
            .get()
            .execute()
            .try_collect()
            .await
            .map_err(req("list links"))?;
        Ok(msgs.iter().map(LinkInfo::from_message).collect())
    }

    pub async fn set_up(&self, index: u32, what: &str) -> Result<(), NetlinkError> {
        self.handle
            .link()
            .set(LinkUnspec::new_with_index(index).up().build())
            .execute()
            .await
            .map_err(req(format!("set {what} up")))
    }

    /// Creates the bridge if missing, gives it `gateway/prefix`, brings it up.
    pub async fn ensure_bridge(
        &self,
        name: &str,
        gateway: Ipv4Addr,
        prefix: u8,
        mtu: Option<u32>,
    ) -> Result<u32, NetlinkError> {
        let link = match self.link(name).await? {
            Some(l) => l,
            None => {
                // A fixed MAC: otherwise the bridge takes its lowest port's MAC and
                // changes it when that pod leaves, stranding the others' ARP entries.
                let mut msg = LinkBridge::new(name).address(bridge_mac(name).to_vec());
                if let Some(mtu) = mtu {
                    msg = msg.mtu(mtu);
                }
                match self.handle.link().add(msg.build()).execute().await {
                    Ok(()) => tracing::info!(bridge = name, "created bridge"),
                    Err(e) if errno(&e) == Some(EEXIST) => {}
                    Err(e) => return Err(req(format!("create bridge {name}"))(e)),
                }
                self.link(name)
                    .await?
                    .ok_or_else(|| NetlinkError::Unexpected(format!("bridge {name} vanished after creation")))?
            }
        };
        self.ensure_address(link.index, name, IpAddr::V4(gateway), prefix)
            .await?;
        if !link.up {
            self.set_up(link.index, name).await?;
        }
        Ok(link.index)
    }

    async fn ensure_address(&self, index: u32, what: &str, addr: IpAddr, prefix: u8) -> Result<(), NetlinkError> {
        let addrs: Vec<_> = self
            .handle
            .address()
            .get()
            .set_link_index_filter(index)
            .execute()
            .try_collect()
            .await
            .map_err(req(format!("list addresses of {what}")))?;
        let present = addrs.iter().any(|m| {
            m.header.prefix_len == prefix
                && m.attributes
                    .iter()
                    .any(|a| matches!(a, AddressAttribute::Address(a) | AddressAttribute::Local(a) if *a == addr))
        });
        if present {
            return Ok(());
        }
        match self.handle.address().add(index, addr, prefix).execute().await {
            Ok(()) => Ok(()),
            Err(e) if errno(&e) == Some(EEXIST) => Ok(()),
            Err(e) => Err(req(format!("add {addr}/{prefix} to {what}"))(e)),
        }
    }

    /// Creates a veth pair whose peer is born inside the netns open as `netns`,
    /// named `peer` there — the host never sees a second `eth0`.
    pub async fn create_veth_into(
        &self,
        host: &str,
        peer: &str,
        netns: &std::fs::File,
        mtu: Option<u32>,
    ) -> Result<(), NetlinkError> {
        let mut peer_msg = LinkUnspec::new_with_name(peer).setns_by_fd(netns.as_raw_fd());
        if let Some(mtu) = mtu {
            peer_msg = peer_msg.mtu(mtu);
        }
        let mut msg = LinkVeth::new(host, peer).set_info_data(InfoData::Veth(InfoVeth::Peer(peer_msg.build())));
        if let Some(mtu) = mtu {
            msg = msg.mtu(mtu);
        }
        self.handle
            .link()
            .add(msg.build())
            .execute()
            .await
            .map_err(req(format!("create veth {host} (peer {peer} in pod netns)")))
    }

    /// Enslaves a link to the bridge, sets hairpin mode and brings it up.
    pub async fn attach(&self, link: u32, name: &str, bridge: u32, hairpin: bool) -> Result<(), NetlinkError> {
        self.handle
            .link()
            .set(LinkUnspec::new_with_index(link).controller(bridge).build())
            .execute()
            .await
            .map_err(req(format!("attach {name} to bridge")))?;
        if hairpin {
            self.handle
                .link()
                .set_port(LinkBridgePort::new(link).hairpin(true).build())
                .execute()
                .await
                .map_err(req(format!("set hairpin on {name}")))?;
        }
        self.set_up(link, name).await
    }

    /// Deletes a link by name; `false` when it was already gone.
    pub async fn delete_link(&self, name: &str) -> Result<bool, NetlinkError> {
        let Some(link) = self.link(name).await? else {
            return Ok(false);
        };
        match self.handle.link().del(link.index).execute().await {
            Ok(()) => Ok(true),
            Err(e) if errno(&e) == Some(ENODEV) => Ok(false),
            Err(e) => Err(req(format!("delete link {name}"))(e)),
        }
    }

    /// Inside a pod: `lo` up, `ifname` with `addr/prefix` up, default route via
    /// `gateway`. Returns the interface's MAC.
    pub async fn configure_pod(
        &self,
        ifname: &str,
        addr: Ipv4Addr,
        prefix: u8,
        gateway: Ipv4Addr,
    ) -> Result<String, NetlinkError> {
        let lo = self
            .link("lo")
            .await?
            .ok_or_else(|| NetlinkError::Unexpected("pod netns has no lo".into()))?;
        if !lo.up {
            self.set_up(lo.index, "lo").await?;
        }
        let iface = self
            .link(ifname)
            .await?
            .ok_or_else(|| NetlinkError::Unexpected(format!("{ifname} missing in pod netns after creation")))?;
        self.ensure_address(iface.index, ifname, IpAddr::V4(addr), prefix)
            .await?;
        self.set_up(iface.index, ifname).await?;
        let route = RouteMessageBuilder::<Ipv4Addr>::new()
            .output_interface(iface.index)
            .gateway(gateway)
            .build();
        self.handle
            .route()
            .add(route)
            .replace()
            .execute()
            .await
            .map_err(req(format!("add default route via {gateway}")))?;
        Ok(iface.mac)
    }

    /// Inside a pod: the addresses of `ifname` and whether it is up.
    pub async fn pod_addresses(&self, ifname: &str) -> Result<Option<(bool, Vec<(IpAddr, u8)>)>, NetlinkError> {
        let Some(iface) = self.link(ifname).await? else {
            return Ok(None);
        };
        let addrs: Vec<_> = self
            .handle
            .address()
            .get()
            .set_link_index_filter(iface.index)
            .execute()
            .try_collect()
            .await
            .map_err(req(format!("list addresses of {ifname}")))?;
        let list = addrs
            .iter()
            .flat_map(|m| {
                m.attributes.iter().filter_map(move |a| match a {
                    AddressAttribute::Address(ip) => Some((*ip, m.header.prefix_len)),
                    _ => None,
                })
            })
            .collect();
        Ok(Some((iface.up, list)))
    }
}

/// Runs `f` with a netlink connection inside the netns at `path`, on a
/// dedicated thread (see the module doc).
pub async fn in_netns<T, F, Fut>(path: &Path, f: F) -> Result<T, NetlinkError>
where
    T: Send + 'static,
    F: FnOnce(Netlink) -> Fut + Send + 'static,
    Fut: Future<Output = Result<T, NetlinkError>>,
{
    let path = path.to_path_buf();
    let (tx, rx) = futures::channel::oneshot::channel();
    let thread_path = path.clone();
    std::thread::Builder::new()
        .name("berth-netns".into())
        .spawn(move || {
            let netns_err = |reason: String| NetlinkError::Netns {
                path: thread_path.clone(),
                reason,
            };
            let run = || -> Result<T, NetlinkError> {
                let file = std::fs::File::open(&thread_path).map_err(|e| netns_err(e.to_string()))?;
                nix::sched::setns(&file, CloneFlags::CLONE_NEWNET).map_err(|e| netns_err(format!("setns: {e}")))?;
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .map_err(|e| netns_err(format!("runtime: {e}")))?;
                rt.block_on(async move { f(Netlink::connect()?).await })
            };
            let _ = tx.send(run());
        })
        .map_err(|e| NetlinkError::Netns {
            path: path.clone(),
            reason: format!("spawn thread: {e}"),
        })?;
    rx.await.map_err(|_| NetlinkError::Netns {
        path,
        reason: "netns worker thread panicked".into(),
    })?
}
