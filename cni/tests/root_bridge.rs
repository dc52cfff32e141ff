//! The built-in bridge network on a real kernel (root only; skipped otherwise).

mod common;

use std::collections::HashSet;

use berth_cni::bridge::host_veth_name;
use berth_cni::{BridgeConfig, BridgeNetwork, PodNetwork, PodNetworkRequest, PortMapping, Protocol};
use common::*;

const N: u8 = 61;

#[tokio::test]
async fn builtin_bridge_pods_reach_each_other_the_host_and_host_ports() {
    if !is_root() {
        return;
    }
    let tmp = tempdir();
    let bridge = format!("berthtest{N}");
    let prefix = format!("BERTHT{N}");
    let _ipt = IptablesGuard {
        needles: vec![
            format!("berth:{prefix}:"),
            format!("berth:{bridge}:"),
            format!("{prefix}-"),
        ],
        chains: vec![
            ("nat".into(), format!("{prefix}-HOSTPORTS")),
            ("nat".into(), format!("{prefix}-POSTROUTING")),
            ("filter".into(), format!("{prefix}-FORWARD")),
        ],
    };
    let (a_id, b_id, c_id) = (format!("bt{N}-pod-a"), format!("bt{N}-pod-b"), format!("bt{N}-pod-c"));
    let _links = LinkGuard(vec![
        host_veth_name(&a_id),
        host_veth_name(&b_id),
        host_veth_name(&c_id),
        bridge.clone(),
    ]);
    let (ns_a, ns_b, ns_c) = (NetnsGuard::new(), NetnsGuard::new(), NetnsGuard::new());
    let config = BridgeConfig {
        bridge: bridge.clone(),
        subnet: format!("10.250.{N}.0/24").parse().unwrap(),
        ipam_dir: tmp.path().join("ipam"),
        chain_prefix: prefix.clone(),
        ..Default::default()
    };
    let net = BridgeNetwork::new(config.clone()).unwrap();
    let host_port = 19000 + u16::from(N);

    let mut req_a = PodNetworkRequest::new(&a_id, &ns_a.path);
    req_a.port_mappings.push(PortMapping {
        host_port,
        container_port: 8080,
        protocol: Protocol::Tcp,
        host_ip: None,
    });
    let req_b = PodNetworkRequest::new(&b_id, &ns_b.path);
    let res_a = net.setup(&req_a).await.unwrap();
    let res_b = net.setup(&req_b).await.unwrap();
    let (ip_a, ip_b) = (res_a.pod_ips()[0].to_string(), res_b.pod_ips()[0].to_string());
    assert_ne!(ip_a, ip_b);
    assert!(
        ns_a.ipv4_of("eth0").contains(&format!("{ip_a}/24")),
        "{}",
        ns_a.ipv4_of("eth0")
    );
    assert!(link_exists(&host_veth_name(&a_id)));
    assert!(tmp.path().join("ipam").join(&ip_a).exists());

    // Repeating setup gives the same address.
    let again = net.setup(&req_a).await.unwrap();
    assert_eq!(again.pod_ips()[0].to_string(), ip_a);

    assert!(ping(&ns_a, &ip_b), "pod a → pod b");
    assert!(ping(&ns_b, &format!("10.250.{N}.1")), "pod b → gateway");
    net.check(&req_a).await.unwrap();
    net.check(&req_b).await.unwrap();

    let _server = ns_a.serve(&tmp.path().join("www"), 8080, "hello from builtin pod a");
    let body = http_get_localhost(host_port);
    assert!(body.contains("hello from builtin pod a"), "{body}");

    // Teardown removes exactly pod a's rules, veth and IP; twice is fine.
    net.teardown(&req_a).await.unwrap();
    assert!(!link_exists(&host_veth_name(&a_id)));
    assert!(!tmp.path().join("ipam").join(&ip_a).exists());
    let hostports = sh_ok("iptables-save", &["-t", "nat"]);
    assert!(!hostports.contains(&format!("berth-pod:{a_id}")), "{hostports}");
    net.teardown(&req_a).await.unwrap();
    assert!(net.check(&req_a).await.is_err());
    assert!(ping(&ns_b, &format!("10.250.{N}.1")), "pod b unaffected");

    // Orphans after a "restart": a new instance cleans pod c, keeps pod b.
    let req_c = PodNetworkRequest::new(&c_id, &ns_c.path);
    net.setup(&req_c).await.unwrap();
    let restarted = BridgeNetwork::new(config).unwrap();
    let live: HashSet<String> = [b_id.clone()].into();
    let report = restarted.cleanup_orphans(&live).await.unwrap();
    assert!(report.pods.contains(&c_id), "{report:?}");
    assert!(!link_exists(&host_veth_name(&c_id)));
    assert!(link_exists(&host_veth_name(&b_id)));
    restarted.check(&req_b).await.unwrap();
    restarted.teardown(&req_b).await.unwrap();
    assert!(restarted.ipam().allocations().unwrap().is_empty());
}

#[tokio::test]
async fn builtin_bridge_teardown_of_unknown_pod_and_gone_netns_succeeds() {
    if !is_root() {
        return;
    }
    let tmp = tempdir();
    let bridge = format!("berthtest{}", N + 1);
    let prefix = format!("BERTHT{}", N + 1);
    let _ipt = IptablesGuard {
        needles: vec![
            format!("berth:{prefix}:"),
            format!("berth:{bridge}:"),
            format!("{prefix}-"),
        ],
        chains: vec![
            ("nat".into(), format!("{prefix}-HOSTPORTS")),
            ("nat".into(), format!("{prefix}-POSTROUTING")),
            ("filter".into(), format!("{prefix}-FORWARD")),
        ],
    };
    let id = format!("bt{}-gone", N + 1);
    let _links = LinkGuard(vec![host_veth_name(&id), bridge.clone()]);
    let net = BridgeNetwork::new(BridgeConfig {
        bridge,
        subnet: format!("10.250.{}.0/24", N + 1).parse().unwrap(),
        ipam_dir: tmp.path().join("ipam"),
        chain_prefix: prefix,
        ..Default::default()
    })
    .unwrap();
    let ns = NetnsGuard::new();
    let req = PodNetworkRequest::new(&id, &ns.path);
    net.teardown(&req).await.unwrap();
    net.setup(&req).await.unwrap();
    drop(ns); // the netns (and with it eth0 and the veth) goes away first
    net.teardown(&req).await.unwrap();
    assert!(!link_exists(&host_veth_name(&id)));
    assert!(net.ipam().allocations().unwrap().is_empty());
    // A missing netns fails setup cleanly, leaking nothing.
    let err = net.setup(&req).await.unwrap_err().to_string();
    assert!(err.contains(&id), "{err}");
    assert!(net.ipam().allocations().unwrap().is_empty());
}
