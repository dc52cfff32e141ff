//! The iptables rules the bridge network owns, and how each is recognised.
//!
//! Every rule carries a comment: `berth:<bridge>:<role>` for the network's own
//! rules (masquerade, forward accept), `berth:<prefix>:jump` for the jumps from
//! the built-in chains, `berth-pod:<pod id>` for a pod's hostPort DNATs. Rules
//! are found again by comment, never by position, so adding is idempotent and
//! teardown removes exactly one pod's rules.
//!
//! ```text
//! nat    PREROUTING  -m addrtype --dst-type LOCAL -j <P>-HOSTPORTS
//! nat    OUTPUT      -m addrtype --dst-type LOCAL -j <P>-HOSTPORTS
//! nat    POSTROUTING -j <P>-POSTROUTING
//! filter FORWARD     -j <P>-FORWARD
//! nat <P>-HOSTPORTS   -p tcp --dport H -j DNAT --to-destination POD:C   (per pod)
//! nat <P>-POSTROUTING -s SUBNET ! -d SUBNET -j MASQUERADE               (leaving the subnet)
//!                     -s 127.0.0.0/8 -o BRIDGE -j MASQUERADE            (hostPort via 127.0.0.1)
//!                     -s SUBNET -o BRIDGE --ctstate DNAT -j MASQUERADE  (pod to a hostPort)
//! filter <P>-FORWARD  -i BRIDGE -j ACCEPT ; -o BRIDGE -j ACCEPT
//! ```

use std::net::{IpAddr, Ipv4Addr};

use crate::ipnet::IpNetwork;
use crate::types::PortMapping;

/// One rule to ensure: table, the restore line that adds it, and its comment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnedRule {
    pub table: &'static str,
    pub chain: String,
    pub add: String,
    pub comment: String,
}

/// The chain names under a prefix (`BERTH` → `BERTH-HOSTPORTS`, …).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chains {
    pub prefix: String,
    pub hostports: String,
    pub postrouting: String,
    pub forward: String,
}

impl Chains {
    pub fn new(prefix: &str) -> Self {
        Chains {
            prefix: prefix.to_string(),
            hostports: format!("{prefix}-HOSTPORTS"),
            postrouting: format!("{prefix}-POSTROUTING"),
            forward: format!("{prefix}-FORWARD"),
        }
    }

    /// `(table, chain)` of every chain we own.
    pub fn owned(&self) -> [(&'static str, &str); 3] {
        [
            ("nat", &self.hostports),
            ("nat", &self.postrouting),
            ("filter", &self.forward),
        ]
    }

    pub fn jump_comment(&self) -> String {
        format!("berth:{}:jump", self.prefix)
    }

    /// Jumps from the built-in chains into ours.
    pub fn jumps(&self) -> Vec<OwnedRule> {
        let c = self.jump_comment();
        let jump = |table, builtin: &str, matches: &str, target: &str| OwnedRule {
            table,
            chain: builtin.to_string(),
            add: format!("-I {builtin} {matches}-m comment --comment {c} -j {target}"),
            comment: c.clone(),
        };
        vec![
            jump("nat", "PREROUTING", "-m addrtype --dst-type LOCAL ", &self.hostports),
            jump("nat", "OUTPUT", "-m addrtype --dst-type LOCAL ", &self.hostports),
            jump("nat", "POSTROUTING", "", &self.postrouting),
            jump("filter", "FORWARD", "", &self.forward),
        ]
    }
}

/// The comment tag of the network's own rules.
pub fn network_comment(bridge: &str, role: &str) -> String {
    format!("berth:{bridge}:{role}")
}

/// Masquerade and forward rules of one bridge network.
pub fn network_rules(chains: &Chains, bridge: &str, subnet: IpNetwork) -> Vec<OwnedRule> {
    let net = subnet.network();
    let rule = |table, chain: &str, role: &str, spec: String| {
        let comment = network_comment(bridge, role);
        OwnedRule {
            table,
            chain: chain.to_string(),
            add: format!("-A {chain} {spec} -m comment --comment {comment}"),
            comment,
        }
    };
    vec![
        rule(
            "nat",
            &chains.postrouting,
            "masq",
            format!("-s {net} ! -d {net} -j MASQUERADE"),
        ),
        rule(
            "nat",
            &chains.postrouting,
            "localhost",
            format!("-s 127.0.0.0/8 -o {bridge} -j MASQUERADE"),
        ),
        rule(
            "nat",
            &chains.postrouting,
            "hairpin",
            format!("-s {net} -o {bridge} -m conntrack --ctstate DNAT -j MASQUERADE"),
        ),
        rule("filter", &chains.forward, "fwd-in", format!("-i {bridge} -j ACCEPT")),
        rule("filter", &chains.forward, "fwd-out", format!("-o {bridge} -j ACCEPT")),
    ]
}

/// The comment tag of a pod's hostPort rules.
pub fn pod_comment(pod_id: &str) -> String {
    format!("berth-pod:{pod_id}")
}

/// The pod id a hostPort rule comment names.
pub fn pod_of_comment(comment: &str) -> Option<&str> {
    comment.strip_prefix("berth-pod:")
}

/// DNAT rules for a pod's port mappings (IPv4 only; IPv6 host IPs are skipped).
pub fn hostport_rules(chains: &Chains, pod_id: &str, pod_ip: Ipv4Addr, mappings: &[PortMapping]) -> Vec<String> {
    let comment = pod_comment(pod_id);
    mappings
        .iter()
        .filter_map(|m| {
            let dst = match m.host_ip {
                None => String::new(),
                Some(IpAddr::V4(ip)) if ip.is_unspecified() => String::new(),
                Some(IpAddr::V4(ip)) => format!("-d {ip}/32 "),
                Some(IpAddr::V6(ip)) => {
                    tracing::warn!(%ip, host_port = m.host_port, "IPv6 hostIP not supported by the built-in network; skipped");
                    return None;
                }
            };
            let proto = m.protocol.as_str();
            Some(format!(
                "-A {} {dst}-p {proto} -m {proto} --dport {} -m comment --comment {comment} -j DNAT --to-destination {pod_ip}:{}",
                chains.hostports, m.host_port, m.container_port
            ))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bridge::iptables::rule_comment;
    use crate::types::Protocol;

    #[test]
    fn hostport_rules_carry_the_pod_tag() {
        let chains = Chains::new("BERTH");
        let maps = [
            PortMapping {
                host_port: 8080,
                container_port: 80,
                protocol: Protocol::Tcp,
                host_ip: None,
            },
            PortMapping {
                host_port: 53,
                container_port: 53,
                protocol: Protocol::Udp,
                host_ip: Some("127.0.0.1".parse().unwrap()),
            },
            PortMapping {
                host_port: 1,
                container_port: 1,
                protocol: Protocol::Tcp,
                host_ip: Some("::1".parse().unwrap()),
            },
        ];
        let rules = hostport_rules(&chains, "p1", Ipv4Addr::new(10, 88, 0, 2), &maps);
        assert_eq!(rules.len(), 2);
        assert_eq!(
            rules[0],
            "-A BERTH-HOSTPORTS -p tcp -m tcp --dport 8080 -m comment --comment berth-pod:p1 -j DNAT --to-destination 10.88.0.2:80"
        );
        assert!(rules[1].contains("-d 127.0.0.1/32 -p udp -m udp --dport 53"));
        assert_eq!(rule_comment(&rules[1]).as_deref().and_then(pod_of_comment), Some("p1"));
    }

    #[test]
    fn network_rules_use_the_network_address() {
        let chains = Chains::new("BT1");
        let rules = network_rules(&chains, "br1", "10.250.1.7/24".parse().unwrap());
        assert!(rules[0]
            .add
            .starts_with("-A BT1-POSTROUTING -s 10.250.1.0/24 ! -d 10.250.1.0/24 -j MASQUERADE"));
        assert!(rules.iter().all(|r| r.comment.starts_with("berth:br1:")));
        assert_eq!(chains.jumps().len(), 4);
        assert!(chains.jumps()[0].add.contains("-j BT1-HOSTPORTS"));
    }
}
