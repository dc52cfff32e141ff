//! The CNI runner with Debian's bridge, host-local, loopback and portmap
//! plugins (root only; skipped otherwise, or when the plugins are missing).

mod common;

use std::path::Path;
use std::time::Duration;

use berth_cni::{CniRunner, CniRunnerConfig, PodNetwork, PodNetworkRequest, PodNetworkResult, PortMapping, Protocol};
use common::*;

const N: u8 = 71;
const PLUGIN_DIR: &str = "/usr/lib/cni";

fn host_veth(res: &PodNetworkResult, bridge: &str) -> String {
    res.result
        .interfaces
        .iter()
        .find(|i| i.sandbox.is_empty() && i.name != bridge)
        .map(|i| i.name.clone())
        .expect("host veth in result")
}

#[tokio::test]
async fn debian_plugins_add_check_del_and_hostport() {
    if !is_root() {
        return;
    }
    if !Path::new(PLUGIN_DIR).join("bridge").exists() {
        eprintln!("note: skipping, containernetworking-plugins not installed in {PLUGIN_DIR}");
        return;
    }
    let tmp = tempdir();
    let bridge = format!("berthtestc{N}");
    let network = format!("berth-test-{N}");
    let conf_dir = tmp.path().join("net.d");
    std::fs::create_dir_all(&conf_dir).unwrap();
    let conflist = serde_json::json!({
        "cniVersion": "1.0.0",
        "name": network,
        "plugins": [
            {"type": "bridge", "bridge": bridge, "isGateway": true, "ipMasq": true, "hairpinMode": true,
             "ipam": {"type": "host-local", "dataDir": tmp.path().join("ipam"),
                      "ranges": [[{"subnet": format!("10.250.{N}.0/24")}]],
                      "routes": [{"dst": "0.0.0.0/0"}]}},
            {"type": "portmap", "capabilities": {"portMappings": true}, "snat": true},
            {"type": "loopback"}
        ]
    });
    std::fs::write(conf_dir.join("10-berth-test.conflist"), conflist.to_string()).unwrap();
    // The plugins tag their rules with the network name or the container id.
    let (a_id, b_id) = (format!("berthcni{N}a"), format!("berthcni{N}b"));
    let _ipt = IptablesGuard {
        needles: vec![network.clone(), a_id.clone(), b_id.clone()],
        chains: vec![],
    };
    let _links = LinkGuard(vec![bridge.clone()]);
    let (ns_a, ns_b) = (NetnsGuard::new(), NetnsGuard::new());
    let config = CniRunnerConfig {
        conf_dir,
        bin_dirs: vec![tmp.path().join("nonexistent-bin"), PLUGIN_DIR.into()],
        cache_dir: tmp.path().join("cache"),
        plugin_timeout: Duration::from_secs(30),
    };
    let runner = CniRunner::new(config.clone());
    let status = runner.status().await;
    assert!(status.ready, "{status:?}");

    let host_port = 19000 + u16::from(N);
    let mut req_a = PodNetworkRequest::new(&a_id, &ns_a.path);
    req_a.pod_name = "a".into();
    req_a.pod_namespace = "test".into();
    req_a.port_mappings.push(PortMapping {
        host_port,
        container_port: 8080,
        protocol: Protocol::Tcp,
        host_ip: None,
    });
    let mut req_b = PodNetworkRequest::new(&b_id, &ns_b.path);
    req_b.pod_name = "b".into();
    let res_a = runner.setup(&req_a).await.unwrap();
    let res_b = runner.setup(&req_b).await.unwrap();
    let (ip_a, ip_b) = (res_a.pod_ips()[0].to_string(), res_b.pod_ips()[0].to_string());
    let (veth_a, veth_b) = (host_veth(&res_a, &bridge), host_veth(&res_b, &bridge));
    let _veths = LinkGuard(vec![veth_a.clone(), veth_b.clone()]);
    assert!(ns_a.ipv4_of("eth0").contains(&ip_a), "{}", ns_a.ipv4_of("eth0"));
    assert!(String::from_utf8_lossy(&ns_a.exec(&["ip", "-o", "link", "show", "lo"]).stdout).contains("UP"));

    assert!(ping(&ns_a, &ip_b), "pod a → pod b");
    // Pod b has no port mappings: Debian's portmap (1.1.1) fails CHECK of a pod
    // with mappings when the ip6tables chain it also checks is absent (a plugin bug).
    runner.check(&req_b).await.unwrap();

    let _server = ns_a.serve(&tmp.path().join("www"), 8080, "hello from cni pod a");
    let body = http_get_localhost(host_port);
    assert!(body.contains("hello from cni pod a"), "{body}");

    runner.teardown(&req_a).await.unwrap();
    assert!(!link_exists(&veth_a), "DEL removed the veth");
    runner.teardown(&req_a).await.unwrap();

    // A restarted runner deletes pod b from its cache, after the config is gone.
    std::fs::remove_file(config.conf_dir.join("10-berth-test.conflist")).unwrap();
    let restarted = CniRunner::new(config);
    assert!(!restarted.status().await.ready);
    restarted
        .teardown(&PodNetworkRequest::new(&b_id, &ns_b.path))
        .await
        .unwrap();
    assert!(!link_exists(&veth_b));
    assert!(std::fs::read_dir(tmp.path().join("cache/results"))
        .unwrap()
        .next()
        .is_none());
    let ipam_files: Vec<_> = std::fs::read_dir(tmp.path().join("ipam").join(&network))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("10."))
        .collect();
    assert!(ipam_files.is_empty(), "host-local released the IPs: {ipam_files:?}");
    let leftovers = _ipt.leftovers();
    assert!(leftovers.is_empty(), "plugins left rules: {leftovers:?}");
}
