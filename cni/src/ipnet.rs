//! A minimal IP network (`address/prefix`) type, as CNI results and configs spell them.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr};
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// An address with a prefix length, e.g. `10.88.0.5/16`. The host bits are kept
/// (a CNI `ips[].address` is the interface address, not the network).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct IpNetwork {
    pub addr: IpAddr,
    pub prefix: u8,
}

/// The text was not `address/prefix`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid CIDR {0:?}")]
pub struct InvalidCidr(pub String);

impl IpNetwork {
    pub fn new(addr: IpAddr, prefix: u8) -> Result<Self, InvalidCidr> {
        let max = if addr.is_ipv4() { 32 } else { 128 };
        if prefix > max {
            return Err(InvalidCidr(format!("{addr}/{prefix}")));
        }
        Ok(IpNetwork { addr, prefix })
    }

    /// The same network with the host bits cleared.
    pub fn network(&self) -> IpNetwork {
        match self.addr {
            IpAddr::V4(a) => IpNetwork {
                addr: IpAddr::V4(Ipv4Addr::from(u32::from(a) & v4_mask(self.prefix))),
                ..*self
            },
            IpAddr::V6(a) => {
                let mask = if self.prefix == 0 {
                    0
                } else {
                    u128::MAX << (128 - u32::from(self.prefix))
                };
                IpNetwork {
                    addr: IpAddr::V6((u128::from(a) & mask).into()),
                    ..*self
                }
            }
        }
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        match IpNetwork::new(ip, self.prefix) {
            Ok(other) => other.network().addr == self.network().addr,
            Err(_) => false,
        }
    }
}

/// The IPv4 netmask for a prefix length (`24` → `0xffffff00`).
pub fn v4_mask(prefix: u8) -> u32 {
    if prefix == 0 {
        0
    } else {
        u32::MAX << (32 - u32::from(prefix.min(32)))
    }
}

impl fmt::Display for IpNetwork {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

impl FromStr for IpNetwork {
    type Err = InvalidCidr;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || InvalidCidr(s.to_string());
        let (addr, prefix) = s.split_once('/').ok_or_else(bad)?;
        let addr: IpAddr = addr.parse().map_err(|_| bad())?;
        let prefix: u8 = prefix.parse().map_err(|_| bad())?;
        IpNetwork::new(addr, prefix).map_err(|_| bad())
    }
}

impl Serialize for IpNetwork {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for IpNetwork {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_network_contains() {
        let n: IpNetwork = "10.88.3.7/16".parse().unwrap();
        assert_eq!(n.network().to_string(), "10.88.0.0/16");
        assert!(n.contains("10.88.255.1".parse().unwrap()));
        assert!(!n.contains("10.89.0.1".parse().unwrap()));
        assert!(!n.contains("fd00::1".parse().unwrap()));
        let v6: IpNetwork = "fd00:1::5/64".parse().unwrap();
        assert_eq!(v6.network().to_string(), "fd00:1::/64");
        assert!("10.0.0.1/33".parse::<IpNetwork>().is_err());
        assert!("10.0.0.1".parse::<IpNetwork>().is_err());
        assert_eq!(v4_mask(24), 0xffff_ff00);
        assert_eq!(v4_mask(0), 0);
    }
}
