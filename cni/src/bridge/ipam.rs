//! IPv4 address allocation from a subnet, persisted as one file per address.
//!
//! `<dir>/<ip>` holds `<pod id>\n<ifname>\n`. A file is created with O_EXCL,
//! so two concurrent allocations (threads or processes) never get the same
//! address; it is removed on release and survives a berthd restart.
//! `<dir>/last_reserved_ip` remembers where the previous search ended, so freed
//! addresses are not reused at once (as host-local does).
//!
//! Allocation files are not fsynced: a berthd crash leaves them in the page
//! cache, and after a machine crash the pods holding the addresses are gone
//! too — a file that lost its contents reads as an owner-less allocation
//! (see [`Ipam::allocations`]), which orphan cleanup frees like any lease
//! of an unknown pod.
//!
//! The network address, the gateway (`.1`) and the broadcast address are never
//! handed out.

use std::io::Write;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::ipnet::v4_mask;

#[derive(Debug, thiserror::Error)]
pub enum IpamError {
    #[error("no free address left in {subnet} (allocations in {})", .dir.display())]
    Exhausted { subnet: String, dir: PathBuf },
    #[error("subnet {subnet} is too small for pods (needs a prefix of /30 or shorter)")]
    SubnetTooSmall { subnet: String },
    #[error("IPAM store {}: {source}", .path.display())]
    Io { path: PathBuf, source: std::io::Error },
}

/// Who holds an address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Allocation {
    pub ip: Ipv4Addr,
    pub pod_id: String,
    pub ifname: String,
}

/// The allocator for one subnet.
#[derive(Debug, Clone)]
pub struct Ipam {
    dir: PathBuf,
    network: u32,
    prefix: u8,
}

const LAST_RESERVED: &str = "last_reserved_ip";

impl Ipam {
    pub fn new(dir: impl Into<PathBuf>, subnet: Ipv4Addr, prefix: u8) -> Result<Self, IpamError> {
        if prefix > 30 {
            return Err(IpamError::SubnetTooSmall {
                subnet: format!("{subnet}/{prefix}"),
            });
        }
        Ok(Ipam {
            dir: dir.into(),
            network: u32::from(subnet) & v4_mask(prefix),
            prefix,
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The gateway address: the first host of the subnet.
    pub fn gateway(&self) -> Ipv4Addr {
        Ipv4Addr::from(self.network + 1)
    }

    fn subnet_text(&self) -> String {
        format!("{}/{}", Ipv4Addr::from(self.network), self.prefix)
    }

    fn io(&self, path: &Path) -> impl FnOnce(std::io::Error) -> IpamError {
        let path = path.to_path_buf();
        move |source| IpamError::Io { path, source }
    }

    /// The address held by `pod_id`/`ifname`, or a new one. Repeating the call
    /// for the same pod returns the same address.
    pub fn allocate(&self, pod_id: &str, ifname: &str) -> Result<Ipv4Addr, IpamError> {
        std::fs::create_dir_all(&self.dir).map_err(self.io(&self.dir))?;
        if let Some(existing) = self
            .allocations()?
            .into_iter()
            .find(|a| a.pod_id == pod_id && a.ifname == ifname)
        {
            return Ok(existing.ip);
        }
        let first = self.network + 2; // .0 network, .1 gateway
        let last = (self.network | !v4_mask(self.prefix)) - 1; // below broadcast
        let count = last - first + 1;
        let start = self
            .last_reserved()
            .filter(|ip| (first..=last).contains(ip))
            .map_or(first, |ip| if ip == last { first } else { ip + 1 });
        let owner = format!("{pod_id}\n{ifname}\n");
        for offset in 0..count {
            let candidate = first + (start - first + offset) % count;
            let ip = Ipv4Addr::from(candidate);
            let path = self.dir.join(ip.to_string());
            match std::fs::OpenOptions::new().write(true).create_new(true).open(&path) {
                Ok(mut f) => {
                    f.write_all(owner.as_bytes()).map_err(|e| {
                        let _ = std::fs::remove_file(&path);
                        IpamError::Io {
                            path: path.clone(),
                            source: e,
                        }
                    })?;
                    self.set_last_reserved(ip);
                    return Ok(ip);
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(IpamError::Io { path, source: e }),
            }
        }
        Err(IpamError::Exhausted {
            subnet: self.subnet_text(),
            dir: self.dir.clone(),
        })
    }

    /// Frees every address held by `pod_id`/`ifname` (or by the pod on any
    /// interface when `ifname` is `None`). Returns what was freed.
    pub fn release(&self, pod_id: &str, ifname: Option<&str>) -> Result<Vec<Ipv4Addr>, IpamError> {
        let mut freed = Vec::new();
        for a in self.allocations()? {
            if a.pod_id == pod_id && ifname.is_none_or(|i| i == a.ifname) {
                let path = self.dir.join(a.ip.to_string());
                match std::fs::remove_file(&path) {
                    Ok(()) => freed.push(a.ip),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => return Err(IpamError::Io { path, source: e }),
                }
            }
        }
        Ok(freed)
    }

    /// Every allocation on disk. A file whose owner could not be read (a crash
    /// between create and write) is reported with an empty pod id.
    pub fn allocations(&self) -> Result<Vec<Allocation>, IpamError> {
        let entries = match std::fs::read_dir(&self.dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => {
                return Err(IpamError::Io {
                    path: self.dir.clone(),
                    source: e,
                })
            }
        };
        let mut out = Vec::new();
        for ent in entries {
            let ent = ent.map_err(self.io(&self.dir))?;
            let Some(ip) = ent.file_name().to_str().and_then(|n| n.parse::<Ipv4Addr>().ok()) else {
                continue;
            };
            let text = match std::fs::read_to_string(ent.path()) {
                Ok(t) => t,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => {
                    return Err(IpamError::Io {
                        path: ent.path(),
                        source: e,
                    })
                }
            };
            let mut lines = text.lines();
            let pod_id = lines.next().unwrap_or_default().trim().to_string();
            let ifname = lines.next().unwrap_or_default().trim().to_string();
            out.push(Allocation { ip, pod_id, ifname });
        }
        out.sort_by_key(|a| a.ip);
        Ok(out)
    }

    /// Removes a specific address file whatever its owner (orphan cleanup).
    pub fn remove(&self, ip: Ipv4Addr) -> Result<(), IpamError> {
        let path = self.dir.join(ip.to_string());
        match std::fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(IpamError::Io { path, source: e }),
        }
    }

    fn last_reserved(&self) -> Option<u32> {
        let text = std::fs::read_to_string(self.dir.join(LAST_RESERVED)).ok()?;
        text.trim().parse::<Ipv4Addr>().ok().map(u32::from)
    }

    /// Best effort: a lost hint only means the search starts elsewhere.
    fn set_last_reserved(&self, ip: Ipv4Addr) {
        static SEQ: AtomicU64 = AtomicU64::new(0);
        let seq = SEQ.fetch_add(1, Ordering::Relaxed);
        let tmp = self.dir.join(format!(".{LAST_RESERVED}.{}.{seq}", std::process::id()));
        if std::fs::write(&tmp, ip.to_string()).is_ok() && std::fs::rename(&tmp, self.dir.join(LAST_RESERVED)).is_err()
        {
            let _ = std::fs::remove_file(&tmp);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;
    use std::sync::Arc;

    fn ipam(dir: &Path, cidr: &str) -> Ipam {
        let (ip, prefix) = cidr.split_once('/').unwrap();
        Ipam::new(dir, ip.parse().unwrap(), prefix.parse().unwrap()).unwrap()
    }

    #[test]
    fn allocates_skipping_network_gateway_broadcast() {
        let dir = tempfile::tempdir().unwrap();
        let ipam = ipam(dir.path(), "10.250.0.0/29");
        assert_eq!(ipam.gateway(), Ipv4Addr::new(10, 250, 0, 1));
        let got: Vec<Ipv4Addr> = (0..5)
            .map(|i| ipam.allocate(&format!("pod{i}"), "eth0").unwrap())
            .collect();
        let want: Vec<Ipv4Addr> = (2..=6).map(|h| Ipv4Addr::new(10, 250, 0, h)).collect();
        assert_eq!(got, want);
        let err = ipam.allocate("pod-x", "eth0").unwrap_err();
        assert!(matches!(err, IpamError::Exhausted { .. }));
        assert!(err.to_string().contains("10.250.0.0/29"));
    }

    #[test]
    fn same_pod_gets_same_address_and_release_frees_it() {
        let dir = tempfile::tempdir().unwrap();
        let ipam = ipam(dir.path(), "10.250.1.0/24");
        let a = ipam.allocate("p1", "eth0").unwrap();
        assert_eq!(ipam.allocate("p1", "eth0").unwrap(), a);
        let b = ipam.allocate("p1", "eth1").unwrap();
        assert_ne!(a, b);
        assert_eq!(ipam.release("p1", Some("eth0")).unwrap(), vec![a]);
        assert!(
            ipam.release("p1", Some("eth0")).unwrap().is_empty(),
            "release is idempotent"
        );
        assert_eq!(ipam.allocations().unwrap().len(), 1);
        assert_eq!(ipam.release("p1", None).unwrap(), vec![b]);
        assert!(ipam.allocations().unwrap().is_empty());
    }

    #[test]
    fn freed_addresses_are_not_reused_at_once_and_state_survives_restart() {
        let dir = tempfile::tempdir().unwrap();
        let first = ipam(dir.path(), "10.250.2.0/24");
        let a = first.allocate("p1", "eth0").unwrap();
        first.release("p1", None).unwrap();
        let b = first.allocate("p2", "eth0").unwrap();
        assert_ne!(a, b);
        let restarted = ipam(dir.path(), "10.250.2.0/24");
        assert_eq!(restarted.allocations().unwrap()[0].pod_id, "p2");
        let c = restarted.allocate("p3", "eth0").unwrap();
        assert!(u32::from(c) > u32::from(b));
    }

    #[test]
    fn wraps_around_to_free_low_addresses() {
        let dir = tempfile::tempdir().unwrap();
        let ipam = ipam(dir.path(), "10.250.3.0/29");
        for i in 0..5 {
            ipam.allocate(&format!("p{i}"), "eth0").unwrap();
        }
        ipam.release("p0", None).unwrap();
        assert_eq!(ipam.allocate("p9", "eth0").unwrap(), Ipv4Addr::new(10, 250, 3, 2));
    }

    #[test]
    fn concurrent_allocations_are_unique() {
        let dir = tempfile::tempdir().unwrap();
        let ipam = Arc::new(ipam(dir.path(), "10.250.4.0/26"));
        let handles: Vec<_> = (0..8)
            .map(|t| {
                let ipam = Arc::clone(&ipam);
                std::thread::spawn(move || {
                    (0..10)
                        .filter_map(|i| ipam.allocate(&format!("t{t}-p{i}"), "eth0").ok())
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        let all: Vec<Ipv4Addr> = handles.into_iter().flat_map(|h| h.join().unwrap()).collect();
        let unique: HashSet<_> = all.iter().collect();
        assert_eq!(all.len(), unique.len(), "no address handed out twice");
        assert_eq!(all.len(), 61, "a /26 has 61 pod addresses");
        assert_eq!(ipam.allocations().unwrap().len(), 61);
    }

    #[test]
    fn rejects_tiny_subnets() {
        assert!(Ipam::new("/tmp/x", Ipv4Addr::new(10, 0, 0, 0), 31).is_err());
    }
}
