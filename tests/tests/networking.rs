//! Pod networking of a real berthd, over the CRI socket: two pods reach each
//! other, a pod reaches the host through its gateway, a hostPort reaches a
//! pod's web server from the host's 127.0.0.1 (and stops with the pod), 50
//! pods started at once all get distinct addresses and leave nothing behind,
//! a CNI conflist (Debian's plugins) takes over from the built-in bridge, and
//! a RunPodSandbox whose client leaves while a CNI plugin fails is undone fully.
//!
//! Each test has its own berthd with its own built-in network: bridge
//! `berthn5N`, subnet `10.231.5N.0/24`, iptables chains `BTN5N-*` (berthd's
//! startup orphan cleanup only looks into its own chains, so parallel daemons
//! cannot remove each other's hostPort rules) and cgroup prefix. [`Env`]
//! removes its pods, the bridge, the chains and rules, and the cgroups even
//! when the test fails.

use std::collections::{HashMap, HashSet};
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use berth_tests::cri::runtime_service_client::RuntimeServiceClient;
use berth_tests::cri::*;
use berth_tests::daemon::Berthd;
use berth_tests::fixture;
use berth_tests::ops;
use berth_tests::require_root;
use tonic::transport::Channel;

type Rt = RuntimeServiceClient<Channel>;

const BUSYBOX: &str = "berth/busybox:latest";
const READY: i32 = PodSandboxState::SandboxReady as i32;
const HTTPD: &[&str] = &["httpd", "-f", "-vv", "-p", "8080", "-h", "/var/www"];

/// A berthd with busybox pulled; its pods, network and cgroups go on drop.
struct Env {
    d: Option<Berthd>,
    rt: Rt,
    bridge: String,
    chain_prefix: String,
    cgroup_prefix: String,
    /// Lines of `iptables-save` containing one of these are deleted on drop
    /// (CNI plugins tag their rules with the network name).
    ipt_needles: Vec<String>,
    /// Links deleted on drop besides the bridge (a CNI bridge).
    links: Vec<String>,
    pods: Vec<String>,
    logs: tempfile::TempDir,
    _cni: tempfile::TempDir,
}

impl Env {
    /// A berthd whose built-in network is `berthn{net}` on `10.231.{net}.0/24`;
    /// `conflist`, when given, is installed in its CNI conf dir before start.
    async fn start(net: u8, conflist: Option<serde_json::Value>) -> Env {
        Env::start_with_bins(net, conflist, &[]).await
    }

    /// As [`Env::start`], with CNI plugins looked up in `bin_dirs` (berthd's
    /// `[cni] bin_dirs`) instead of the default dirs.
    async fn start_with_bins(net: u8, conflist: Option<serde_json::Value>, bin_dirs: &[&Path]) -> Env {
        let cni = tempfile::tempdir().unwrap();
        if let Some(c) = &conflist {
            std::fs::write(cni.path().join("10-berth-test.conflist"), c.to_string()).unwrap();
        }
        let bridge = format!("berthn{net}");
        let chain_prefix = format!("BTN{net}");
        let cgroup_prefix = format!("/berth-test-n{net}-{}", std::process::id());
        let config = format!(
            "[network]\nbridge = \"{bridge}\"\nsubnet = \"10.231.{net}.0/24\"\nchain_prefix = \"{chain_prefix}\"\n\n\
             [cni]\nconf_dir = \"{}\"\n{}\n[runtime]\ncgroup_prefix = \"{cgroup_prefix}\"\n",
            cni.path().display(),
            if bin_dirs.is_empty() {
                String::new()
            } else {
                format!("bin_dirs = {:?}\n", bin_dirs)
            }
        );
        let d = Berthd::start(&config).unwrap_or_else(|e| panic!("{e:#}"));
        // Its chains do not exist yet: the startup orphan cleanup must take
        // that for "no rules", not fail (iptables-nft calls it "incompatible").
        let log = d.log_tail();
        assert!(
            !log.contains("network cleanup"),
            "startup network cleanup failed:\n{log}"
        );
        let rt = d.runtime().await;
        let mut e = Env {
            d: Some(d),
            rt,
            bridge,
            chain_prefix,
            cgroup_prefix,
            ipt_needles: Vec::new(),
            links: Vec::new(),
            pods: Vec::new(),
            logs: tempfile::tempdir().unwrap(),
            _cni: cni,
        };
        if let Some(name) = conflist.as_ref().and_then(|c| c["name"].as_str()) {
            e.ipt_needles.push(name.to_string());
        }
        let mut ic = e.d().images().await;
        ops::pull_ok(&mut ic, &fixture::shared().reference(BUSYBOX)).await;
        e
    }

    fn d(&self) -> &Berthd {
        self.d.as_ref().expect("berthd")
    }

    fn pod_config(&self, name: &str, port_mappings: Vec<PortMapping>) -> PodSandboxConfig {
        let log_dir = self.logs.path().join(name);
        std::fs::create_dir_all(&log_dir).unwrap();
        PodSandboxConfig {
            metadata: Some(PodSandboxMetadata {
                name: name.into(),
                uid: format!("uid-{name}"),
                namespace: "berth-net-test".into(),
                attempt: 0,
            }),
            hostname: name.into(),
            log_directory: log_dir.display().to_string(),
            port_mappings,
            linux: Some(LinuxPodSandboxConfig::default()),
            ..Default::default()
        }
    }

    async fn run_pod(&mut self, config: PodSandboxConfig) -> (String, PodSandboxConfig) {
        let id = self
            .rt
            .run_pod_sandbox(RunPodSandboxRequest {
                config: Some(config.clone()),
                runtime_handler: String::new(),
            })
            .await
            .unwrap_or_else(|e| panic!("RunPodSandbox: {e}\n{}", self.d().log_tail()))
            .into_inner()
            .pod_sandbox_id;
        self.pods.push(id.clone());
        (id, config)
    }

    async fn pod_status(&mut self, id: &str) -> PodSandboxStatusResponse {
        self.rt
            .pod_sandbox_status(PodSandboxStatusRequest {
                pod_sandbox_id: id.into(),
                verbose: true,
            })
            .await
            .unwrap_or_else(|e| panic!("PodSandboxStatus {id}: {e}"))
            .into_inner()
    }

    async fn pod_ip(&mut self, id: &str) -> Ipv4Addr {
        let st = self.pod_status(id).await.status.expect("status");
        assert_eq!(st.state, READY, "pod {id}");
        let ip = st.network.expect("pod network status").ip;
        ip.parse().unwrap_or_else(|e| panic!("pod {id} IP {ip:?}: {e}"))
    }

    async fn netns_path(&mut self, id: &str) -> PathBuf {
        let st = self.pod_status(id).await;
        let info: serde_json::Value = serde_json::from_str(&st.info["info"]).expect("verbose info is JSON");
        PathBuf::from(info["netnsPath"].as_str().expect("netnsPath"))
    }

    /// Creates and starts a busybox container running `command` in `pod`.
    async fn run_container(&mut self, pod: &(String, PodSandboxConfig), name: &str, command: &[&str]) -> String {
        let config = ContainerConfig {
            metadata: Some(ContainerMetadata {
                name: name.into(),
                attempt: 0,
            }),
            image: Some(ops::spec(&fixture::shared().reference(BUSYBOX))),
            command: command.iter().map(|s| s.to_string()).collect(),
            log_path: format!("{name}.log"),
            linux: Some(LinuxContainerConfig::default()),
            ..Default::default()
        };
        let id = self
            .rt
            .create_container(CreateContainerRequest {
                pod_sandbox_id: pod.0.clone(),
                config: Some(config),
                sandbox_config: Some(pod.1.clone()),
            })
            .await
            .unwrap_or_else(|e| panic!("CreateContainer: {e}\n{}", self.d().log_tail()))
            .into_inner()
            .container_id;
        self.rt
            .start_container(StartContainerRequest {
                container_id: id.clone(),
            })
            .await
            .unwrap_or_else(|e| panic!("StartContainer: {e}\n{}", self.d().log_tail()));
        id
    }

    /// `sh -c script` in container `id` through ExecSync: (exit code, stdout, stderr).
    async fn exec(&mut self, id: &str, script: &str) -> (i32, String, String) {
        let r = self
            .rt
            .exec_sync(ExecSyncRequest {
                container_id: id.into(),
                cmd: vec!["sh".into(), "-c".into(), script.into()],
                timeout: 30,
            })
            .await
            .unwrap_or_else(|e| panic!("ExecSync {script:?}: {e}\n{}", self.d().log_tail()))
            .into_inner();
        (
            r.exit_code,
            String::from_utf8_lossy(&r.stdout).into_owned(),
            String::from_utf8_lossy(&r.stderr).into_owned(),
        )
    }

    /// `GET url` from inside container `id` with busybox wget, retried while
    /// the server starts; the body. (`wget -T` crashes Debian's busybox 1.35, hence `timeout`.)
    async fn wget(&mut self, id: &str, url: &str) -> String {
        let script = format!(
            "for i in $(seq 100); do timeout 3 wget -q -O- {url} && exit 0; sleep 0.1; done; echo gave up >&2; exit 1"
        );
        let (code, out, err) = self.exec(id, &script).await;
        assert_eq!(code, 0, "wget {url} from {id}: {err}");
        out
    }

    async fn stop_pod(&mut self, id: &str) {
        self.rt
            .stop_pod_sandbox(StopPodSandboxRequest {
                pod_sandbox_id: id.into(),
            })
            .await
            .unwrap_or_else(|e| panic!("StopPodSandbox {id}: {e}\n{}", self.d().log_tail()));
    }

    async fn remove_pod(&mut self, id: &str) {
        self.rt
            .remove_pod_sandbox(RemovePodSandboxRequest {
                pod_sandbox_id: id.into(),
            })
            .await
            .unwrap_or_else(|e| panic!("RemovePodSandbox {id}: {e}\n{}", self.d().log_tail()));
        self.pods.retain(|p| p != id);
    }

    /// Links enslaved to `bridge`.
    fn ports_of(bridge: &str) -> Vec<String> {
        sh("ip", &["-o", "link", "show", "master", bridge])
            .lines()
            .filter_map(|l| l.split(": ").nth(1))
            .map(|n| n.split('@').next().unwrap_or(n).to_string())
            .collect()
    }

    /// The rules of one of our chains (`iptables -S`), empty when it does not exist.
    fn chain_rules(&self, table: &str, suffix: &str) -> Vec<String> {
        sh(
            "iptables",
            &["-w", "-t", table, "-S", &format!("{}-{suffix}", self.chain_prefix)],
        )
        .lines()
        .filter(|l| l.starts_with("-A "))
        .map(str::to_string)
        .collect()
    }

    /// Everything berth could leave behind of the pods `ids` (which had
    /// host veths `veths` and netns binds `netns`).
    fn leftovers(&self, ids: &[String], veths: &[String], netns: &[PathBuf]) -> Vec<String> {
        let mut found = Vec::new();
        let dir = self.d().dir().display().to_string();
        for line in sh("findmnt", &["-rn", "-o", "TARGET"]).lines() {
            if ids.iter().any(|id| line.contains(id.as_str())) || line.starts_with(&format!("{dir}/state/pods")) {
                found.push(format!("mount {line}"));
            }
        }
        for p in netns.iter().filter(|p| p.exists()) {
            found.push(format!("netns bind {}", p.display()));
        }
        for line in sh("ip", &["-o", "link"]).lines() {
            if veths
                .iter()
                .any(|v| line.contains(&format!(" {v}@")) || line.contains(&format!(" {v}:")))
            {
                found.push(format!("link {line}"));
            }
        }
        for port in Env::ports_of(&self.bridge) {
            found.push(format!("link {port} on {}", self.bridge));
        }
        let cgroups = sh(
            "find",
            &["/sys/fs/cgroup", "-path", &format!("*{}*", self.cgroup_prefix)],
        );
        for line in cgroups.lines() {
            if ids.iter().any(|id| line.contains(id.as_str())) {
                found.push(format!("cgroup {line}"));
            }
        }
        if let Ok(procs) = std::fs::read_dir("/proc") {
            for p in procs.flatten() {
                let cg = std::fs::read_to_string(p.path().join("cgroup")).unwrap_or_default();
                if ids.iter().any(|id| cg.contains(id.as_str())) {
                    found.push(format!("process {} in {cg:?}", p.file_name().to_string_lossy()));
                }
            }
        }
        for id in ids {
            let dir = self.d().state.join("pods").join(id);
            if dir.exists() {
                found.push(format!("pod dir {}", dir.display()));
            }
        }
        for rule in self.chain_rules("nat", "HOSTPORTS") {
            found.push(format!("hostPort rule {rule}"));
        }
        found
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        if let Some(d) = &self.d {
            d.remove_all_pods_blocking();
        }
        if let Some(mut d) = self.d.take() {
            d.stop();
            drop(d);
        }
        for link in &self.links {
            let _ = Command::new("ip").args(["link", "del", link]).output();
        }
        berth_tests::netclean::remove_test_network(&self.bridge, &self.chain_prefix, &self.ipt_needles);
        for hierarchy in std::fs::read_dir("/sys/fs/cgroup").into_iter().flatten().flatten() {
            let dir = hierarchy.path().join(self.cgroup_prefix.trim_start_matches('/'));
            let _ = std::fs::remove_dir(dir.join("pods"));
            let _ = std::fs::remove_dir(dir);
        }
    }
}

fn sh(cmd: &str, args: &[&str]) -> String {
    let out = Command::new(cmd)
        .args(args)
        .stderr(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("{cmd}: {e}"));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A port nothing listens on right now (bound and released).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// One `GET /` over a fresh connection: the whole response.
fn http_get(addr: SocketAddr) -> std::io::Result<String> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    s.write_all(format!("GET / HTTP/1.0\r\nHost: {addr}\r\n\r\n").as_bytes())?;
    let mut body = String::new();
    s.read_to_string(&mut body)?;
    Ok(body)
}

/// `GET /` retried until it answers 200 (the container's httpd starting).
async fn http_get_eventually(addr: SocketAddr) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let attempt = tokio::task::spawn_blocking(move || http_get(addr)).await.unwrap();
        match attempt {
            Ok(r) if r.starts_with("HTTP/1.") && r.contains(" 200 ") => return r,
            other => assert!(
                Instant::now() < deadline,
                "GET http://{addr}/ never answered 200: {other:?}"
            ),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn tcp(protocol: Protocol, container_port: i32, host_port: i32) -> PortMapping {
    PortMapping {
        protocol: protocol as i32,
        container_port,
        host_port,
        host_ip: String::new(),
    }
}

/// The page the test image serves.
async fn index_html(e: &mut Env, container: &str) -> String {
    let (code, page, err) = e.exec(container, "cat /var/www/index.html").await;
    assert_eq!(code, 0, "{err}");
    assert!(!page.trim().is_empty(), "the test image has a page to serve");
    page
}

#[tokio::test]
async fn two_pods_reach_each_other() {
    require_root!();
    let mut e = Env::start(50, None).await;
    let a = e.run_pod(e.pod_config("web-a", vec![])).await;
    let b = e.run_pod(e.pod_config("client-b", vec![])).await;
    let (ip_a, ip_b) = (e.pod_ip(&a.0).await, e.pod_ip(&b.0).await);
    assert_ne!(ip_a, ip_b);
    for ip in [ip_a, ip_b] {
        assert_eq!(ip.octets()[..3], [10, 231, 50], "{ip} from the test subnet");
    }
    let web = e.run_container(&a, "httpd", HTTPD).await;
    let client = e.run_container(&b, "client", &["sleep", "3600"]).await;
    let page = index_html(&mut e, &web).await;

    let got = e.wget(&client, &format!("http://{ip_a}:8080/")).await;
    assert_eq!(got, page, "pod B fetched pod A's page");
    let (code, _, err) = e
        .exec(&client, &format!("ip -o addr show eth0 | grep -q ' {ip_b}/24 '"))
        .await;
    assert_eq!(code, 0, "pod B's eth0 carries {ip_b}: {err}");
}

#[tokio::test]
async fn a_pod_reaches_the_host_through_its_gateway() {
    require_root!();
    let mut e = Env::start(51, None).await;
    let pod = e.run_pod(e.pod_config("to-host", vec![])).await;
    let ip = e.pod_ip(&pod.0).await;
    let gateway = Ipv4Addr::new(10, 231, 51, 1);
    let client = e.run_container(&pod, "client", &["sleep", "3600"]).await;
    let (code, routes, err) = e.exec(&client, "ip route").await;
    assert_eq!(code, 0, "{err}");
    assert!(routes.contains(&format!("default via {gateway}")), "{routes}");

    // A server on the host side of the bridge, answering once with the peer address it saw.
    let listener = TcpListener::bind((gateway, 0)).expect("bind the bridge's gateway address");
    let port = listener.local_addr().unwrap().port();
    let server = std::thread::spawn(move || -> std::io::Result<SocketAddr> {
        let (mut s, peer) = listener.accept()?;
        s.set_read_timeout(Some(Duration::from_secs(5)))?;
        let mut buf = [0u8; 1024];
        let _ = s.read(&mut buf)?;
        let body = format!("hello from the host to {}\n", peer.ip());
        write!(
            s,
            "HTTP/1.0 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )?;
        Ok(peer)
    });
    let got = e.wget(&client, &format!("http://{gateway}:{port}/")).await;
    assert_eq!(got, format!("hello from the host to {ip}\n"));
    let peer = server.join().unwrap().expect("host server");
    assert_eq!(peer.ip(), std::net::IpAddr::V4(ip), "no NAT on the way to the host");
}

#[tokio::test]
async fn a_host_port_reaches_the_pod_from_loopback_until_the_pod_stops() {
    require_root!();
    let mut e = Env::start(52, None).await;
    let host_port = free_port();
    let pod = e
        .run_pod(e.pod_config("hostport", vec![tcp(Protocol::Tcp, 8080, i32::from(host_port))]))
        .await;
    let web = e.run_container(&pod, "httpd", HTTPD).await;
    let page = index_html(&mut e, &web).await;
    let rules = e.chain_rules("nat", "HOSTPORTS");
    assert!(
        rules
            .iter()
            .any(|r| r.contains(&pod.0) && r.contains(&format!("--dport {host_port}"))),
        "a DNAT for the pod in {}-HOSTPORTS: {rules:?}",
        e.chain_prefix
    );

    let addr = SocketAddr::from(([127, 0, 0, 1], host_port));
    let response = http_get_eventually(addr).await;
    assert!(
        response.ends_with(&page),
        "the pod's page through 127.0.0.1:{host_port}: {response:?}"
    );

    e.stop_pod(&pod.0).await;
    assert!(
        e.chain_rules("nat", "HOSTPORTS").is_empty(),
        "the DNAT went with the pod"
    );
    match tokio::task::spawn_blocking(move || http_get(addr)).await.unwrap() {
        Err(_) => {}
        Ok(r) => assert!(!r.contains(&page), "127.0.0.1:{host_port} still serves the page: {r:?}"),
    }
    e.remove_pod(&pod.0).await;
}

#[tokio::test]
async fn fifty_pods_started_at_once_all_run_and_leave_nothing() {
    require_root!();
    const N: usize = 50;
    let mut e = Env::start(53, None).await;
    let configs: Vec<PodSandboxConfig> = (0..N).map(|i| e.pod_config(&format!("many-{i:02}"), vec![])).collect();

    let t = Instant::now();
    let mut set = tokio::task::JoinSet::new();
    for config in configs {
        let mut rt = e.rt.clone();
        set.spawn(async move {
            rt.run_pod_sandbox(RunPodSandboxRequest {
                config: Some(config),
                runtime_handler: String::new(),
            })
            .await
            .map(|r| r.into_inner().pod_sandbox_id)
        });
    }
    let mut ids = Vec::new();
    let mut failures = Vec::new();
    while let Some(r) = set.join_next().await {
        match r.unwrap() {
            Ok(id) => {
                e.pods.push(id.clone());
                ids.push(id);
            }
            Err(s) => failures.push(s.to_string()),
        }
    }
    let run_time = t.elapsed();
    assert!(
        failures.is_empty(),
        "RunPodSandbox failures: {failures:?}\n{}",
        e.d().log_tail()
    );
    eprintln!("{N} concurrent RunPodSandbox calls: all returned in {run_time:?}");

    let mut ips = HashSet::new();
    let mut netns = Vec::new();
    for id in &ids {
        let ip = e.pod_ip(id).await;
        assert_eq!(ip.octets()[..3], [10, 231, 53], "{ip} from the test subnet");
        assert!(ips.insert(ip), "{ip} handed out twice");
        let ns = e.netns_path(id).await;
        assert!(ns.exists(), "{}", ns.display());
        netns.push(ns);
    }
    let veths = Env::ports_of(&e.bridge);
    assert_eq!(veths.len(), N, "one veth per pod on {}: {veths:?}", e.bridge);
    assert!(veths.iter().all(|v| v.starts_with("vethb")), "{veths:?}");

    let t = Instant::now();
    let mut set = tokio::task::JoinSet::new();
    for id in ids.clone() {
        let mut rt = e.rt.clone();
        set.spawn(async move {
            rt.remove_pod_sandbox(RemovePodSandboxRequest {
                pod_sandbox_id: id.clone(),
            })
            .await
            .map_err(|s| format!("{id}: {s}"))
        });
    }
    while let Some(r) = set.join_next().await {
        r.unwrap()
            .unwrap_or_else(|s| panic!("RemovePodSandbox {s}\n{}", e.d().log_tail()));
    }
    eprintln!(
        "{N} concurrent RemovePodSandbox calls: all returned in {:?}",
        t.elapsed()
    );
    e.pods.clear();

    let left =
        e.rt.list_pod_sandbox(ListPodSandboxRequest { filter: None })
            .await
            .unwrap()
            .into_inner()
            .items;
    assert!(left.is_empty(), "pods listed after removal: {left:?}");
    assert_eq!(e.leftovers(&ids, &veths, &netns), Vec::<String>::new());
    let ipam = e.d().root.join("network/ipam").join(&e.bridge);
    let held: Vec<String> = std::fs::read_dir(&ipam)
        .map(|d| {
            d.flatten()
                .map(|f| f.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    assert!(
        held.iter().all(|f| f.parse::<Ipv4Addr>().is_err()),
        "addresses still allocated in {}: {held:?}",
        ipam.display()
    );
}

/// Debian's containernetworking-plugins dir; `None` (with a note) when they
/// are not installed.
fn debian_plugins() -> Option<&'static Path> {
    let dir = Path::new("/usr/lib/cni");
    if !dir.join("bridge").exists() {
        eprintln!(
            "SKIPPED: containernetworking-plugins not installed in {}",
            dir.display()
        );
        return None;
    }
    Some(dir)
}

#[tokio::test]
async fn a_cni_conflist_networks_the_pod_and_removal_runs_del() {
    require_root!();
    if debian_plugins().is_none() {
        return;
    }
    let net = 54u8;
    let (cni_bridge, network) = (format!("cni{net}"), format!("berth-net-test-{net}"));
    let ipam_dir = tempfile::tempdir().unwrap();
    let conflist = serde_json::json!({
        "cniVersion": "1.0.0",
        "name": network,
        "plugins": [
            {"type": "bridge", "bridge": cni_bridge, "isGateway": true, "ipMasq": true, "hairpinMode": true,
             "ipam": {"type": "host-local", "dataDir": ipam_dir.path(),
                      "ranges": [[{"subnet": format!("10.232.{net}.0/24")}]],
                      "routes": [{"dst": "0.0.0.0/0"}]}},
            {"type": "portmap", "capabilities": {"portMappings": true}, "snat": true},
            {"type": "loopback"}
        ]
    });
    let mut e = Env::start(net, Some(conflist)).await;
    e.links.push(cni_bridge.clone());

    let status =
        e.rt.status(StatusRequest { verbose: false })
            .await
            .unwrap()
            .into_inner();
    let conditions: HashMap<String, bool> = status
        .status
        .expect("runtime status")
        .conditions
        .into_iter()
        .map(|c| (c.r#type, c.status))
        .collect();
    assert_eq!(conditions.get("NetworkReady"), Some(&true), "{conditions:?}");

    let a = e.run_pod(e.pod_config("cni-a", vec![])).await;
    let b = e.run_pod(e.pod_config("cni-b", vec![])).await;
    let (ip_a, ip_b) = (e.pod_ip(&a.0).await, e.pod_ip(&b.0).await);
    for ip in [ip_a, ip_b] {
        assert_eq!(ip.octets()[..3], [10, 232, net], "{ip} from the CNI conflist's range");
    }
    let veths = Env::ports_of(&cni_bridge);
    assert_eq!(veths.len(), 2, "both pods on {cni_bridge}: {veths:?}");
    assert!(Env::ports_of(&e.bridge).is_empty(), "nothing on the built-in bridge");
    let netns = vec![e.netns_path(&a.0).await, e.netns_path(&b.0).await];

    let web = e.run_container(&a, "httpd", HTTPD).await;
    let client = e.run_container(&b, "client", &["sleep", "3600"]).await;
    let page = index_html(&mut e, &web).await;
    assert_eq!(e.wget(&client, &format!("http://{ip_a}:8080/")).await, page);

    let ids = vec![a.0.clone(), b.0.clone()];
    e.remove_pod(&a.0).await;
    e.remove_pod(&b.0).await;
    assert_eq!(
        e.leftovers(&ids, &veths, &netns),
        Vec::<String>::new(),
        "DEL removed the veths"
    );
    let allocated: Vec<String> = std::fs::read_dir(ipam_dir.path().join(&network))
        .map(|d| {
            d.flatten()
                .map(|f| f.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    assert!(
        allocated.iter().all(|f| !f.starts_with("10.")),
        "host-local released the addresses: {allocated:?}"
    );
    let rules: Vec<String> = ["nat", "filter"]
        .iter()
        .flat_map(|t| {
            sh("iptables-save", &["-t", t])
                .lines()
                .map(str::to_string)
                .collect::<Vec<_>>()
        })
        .filter(|l| ids.iter().any(|id| l.contains(id.as_str())))
        .collect();
    assert!(rules.is_empty(), "the plugins' rules for the pods are gone: {rules:?}");
}

/// A chained CNI plugin whose ADD fails after a second with a CNI error
/// (code 101); DEL, CHECK, GC and STATUS succeed, VERSION answers. Every
/// ADD/DEL is logged as `<command> <container id>` to `log`.
fn failpoint_plugin(log: &Path) -> String {
    format!(
        r#"#!/bin/sh
PATH=/usr/sbin:/usr/bin:/sbin:/bin
cat >/dev/null
case "$CNI_COMMAND" in
ADD)
    echo "ADD $CNI_CONTAINERID" >>'{log}'
    sleep 1
    echo "ADD-FAILED $CNI_CONTAINERID" >>'{log}'
    printf '{{"cniVersion":"1.0.0","code":101,"msg":"berth-failpoint: injected ADD failure","details":"failpoint"}}'
    exit 1 ;;
DEL)
    echo "DEL $CNI_CONTAINERID" >>'{log}'
    exit 0 ;;
CHECK|GC|STATUS)
    exit 0 ;;
VERSION)
    printf '{{"cniVersion":"1.0.0","supportedVersions":["0.3.0","0.3.1","0.4.0","1.0.0"]}}'
    exit 0 ;;
*)
    printf '{{"cniVersion":"1.0.0","code":4,"msg":"unknown CNI_COMMAND %s"}}' "$CNI_COMMAND"
    exit 1 ;;
esac
"#,
        log = log.display()
    )
}

impl Env {
    /// What a pod that never came up could leave behind (its ID is
    /// unknown: the client never got it), on the CNI network `network`
    /// (bridge `cni_bridge`, host-local allocations in `ipam_dir`).
    async fn failed_run_leftovers(&mut self, network: &str, cni_bridge: &str, ipam_dir: &Path) -> Vec<String> {
        let mut found = Vec::new();
        let listed = self
            .rt
            .list_pod_sandbox(ListPodSandboxRequest { filter: None })
            .await
            .unwrap()
            .into_inner()
            .items;
        for p in listed {
            found.push(format!("pod listed: {} state {}", p.id, p.state));
        }
        let state = self.d().state.clone();
        let pods_root = state.join("runtime/.pods");
        for line in sh("findmnt", &["-rn", "-o", "TARGET"]).lines() {
            if Path::new(line).starts_with(self.d().dir()) && Path::new(line) != pods_root {
                found.push(format!("mount {line}"));
            }
        }
        for dir in [state.join("pods"), pods_root, state.join("cni-cache/results")] {
            for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
                found.push(format!("{} in {}", entry.file_name().to_string_lossy(), dir.display()));
            }
        }
        for bridge in [cni_bridge, &self.bridge] {
            for port in Env::ports_of(bridge) {
                found.push(format!("link {port} on {bridge}"));
            }
        }
        let pods_cgroup = format!("{}/pods/", self.cgroup_prefix);
        for line in sh("find", &["/sys/fs/cgroup", "-path", &format!("*{pods_cgroup}*")]).lines() {
            found.push(format!("cgroup {line}"));
        }
        for p in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
            let cg = std::fs::read_to_string(p.path().join("cgroup")).unwrap_or_default();
            let cmdline = std::fs::read(p.path().join("cmdline")).unwrap_or_default();
            if cg.contains(&pods_cgroup) || String::from_utf8_lossy(&cmdline).contains("berth-failpoint") {
                found.push(format!(
                    "process {} ({:?}) in {cg:?}",
                    p.file_name().to_string_lossy(),
                    String::from_utf8_lossy(&cmdline)
                ));
            }
        }
        for table in ["nat", "filter"] {
            for rule in sh("iptables-save", &["-t", table])
                .lines()
                .filter(|l| l.contains(network))
            {
                found.push(format!("iptables {table}: {rule}"));
            }
        }
        for f in std::fs::read_dir(ipam_dir.join(network))
            .into_iter()
            .flatten()
            .flatten()
        {
            if f.file_name().to_string_lossy().parse::<Ipv4Addr>().is_ok() {
                found.push(format!("host-local allocation {}", f.path().display()));
            }
        }
        found
    }

    /// Waits (bounded) until `log` shows every ADD undone by a DEL and
    /// nothing of the failed pod is left.
    async fn wait_rolled_back(&mut self, log: &Path, adds: usize, network: &str, cni_bridge: &str, ipam_dir: &Path) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let calls = std::fs::read_to_string(log).unwrap_or_default();
            let ids: Vec<&str> = calls.lines().filter_map(|l| l.strip_prefix("ADD-FAILED ")).collect();
            let undone = ids.len() == adds && ids.iter().all(|id| calls.contains(&format!("DEL {id}")));
            let left = self.failed_run_leftovers(network, cni_bridge, ipam_dir).await;
            if undone && left.is_empty() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "not rolled back: plugin calls {calls:?}, left: {left:#?}\n{}",
                self.d().log_tail()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

#[tokio::test]
async fn a_run_pod_sandbox_whose_client_goes_away_is_rolled_back_fully() {
    require_root!();
    let Some(plugins) = debian_plugins() else { return };
    let net = 55u8;
    let (cni_bridge, network) = (format!("cni{net}"), format!("berth-fail-test-{net}"));
    let bins = tempfile::tempdir().unwrap();
    let log = bins.path().join("calls.log");
    let plugin = bins.path().join("berth-failpoint");
    std::fs::write(&plugin, failpoint_plugin(&log)).unwrap();
    std::fs::set_permissions(&plugin, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let ipam_dir = tempfile::tempdir().unwrap();
    let conflist = serde_json::json!({
        "cniVersion": "1.0.0",
        "name": network,
        "plugins": [
            {"type": "bridge", "bridge": cni_bridge, "isGateway": true, "ipMasq": true,
             "ipam": {"type": "host-local", "dataDir": ipam_dir.path(),
                      "ranges": [[{"subnet": format!("10.232.{net}.0/24")}]]}},
            {"type": "berth-failpoint"}
        ]
    });
    let mut e = Env::start_with_bins(net, Some(conflist), &[bins.path(), plugins]).await;
    e.links.push(cni_bridge.clone());
    let config = e.pod_config("failpoint", vec![]);

    // The client gives up after 200 ms, long before the plugin fails, and
    // closes its connection.
    let mut client = e.d().runtime().await;
    let call = client.run_pod_sandbox(RunPodSandboxRequest {
        config: Some(config.clone()),
        runtime_handler: String::new(),
    });
    let answer = tokio::time::timeout(Duration::from_millis(200), call).await;
    assert!(answer.is_err(), "RunPodSandbox answered within 200 ms: {answer:?}");
    drop(client);
    // Mid-way (the plugin's ADD sleeping): the pod is there to be undone.
    let deadline = Instant::now() + Duration::from_secs(20);
    while !std::fs::read_to_string(&log).unwrap_or_default().starts_with("ADD ") {
        assert!(
            Instant::now() < deadline,
            "the failpoint's ADD never ran\n{}",
            e.d().log_tail()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let during = e.failed_run_leftovers(&network, &cni_bridge, ipam_dir.path()).await;
    if !std::fs::read_to_string(&log).unwrap_or_default().contains("ADD-FAILED") {
        for what in [
            "pod listed",
            "mount",
            "cgroup",
            &format!("on {cni_bridge}"),
            "host-local allocation",
            "iptables",
        ] {
            assert!(
                during.iter().any(|l| l.contains(what)),
                "no {what} mid-way: {during:#?}"
            );
        }
    }
    e.wait_rolled_back(&log, 1, &network, &cni_bridge, ipam_dir.path())
        .await;

    // The same call, waited for: it fails naming the plugin, and the name
    // is free again (the first pod is gone, not holding it).
    let err =
        e.rt.run_pod_sandbox(RunPodSandboxRequest {
            config: Some(config.clone()),
            runtime_handler: String::new(),
        })
        .await
        .expect_err("the failpoint plugin fails every ADD");
    assert_ne!(err.code(), tonic::Code::AlreadyExists, "{err}");
    assert!(
        err.message().contains("berth-failpoint"),
        "the error names the plugin: {err}"
    );
    assert!(err.message().contains("injected ADD failure"), "and says why: {err}");
    e.wait_rolled_back(&log, 2, &network, &cni_bridge, ipam_dir.path())
        .await;
}
