//! Pod sandboxes of a real berthd, driven over the CRI socket as the kubelet
//! drives them: lifecycle, the kubelet's habits (name conflicts, retries,
//! repeated stop/remove), namespace modes, DNS, restart after SIGKILL, and
//! nothing left behind after removal.
//!
//! Each test has its own berthd with its own built-in network (bridge
//! `bertht4N`, subnet `10.24N.0.0/24`), an empty CNI conf dir and its own
//! cgroup prefix, so tests never meet each other or a real node. [`Env`]
//! removes every pod it ran, the bridge and its iptables rules even when the
//! test fails.

use std::path::{Path, PathBuf};
use std::process::Command;

use berth_tests::cri::runtime_service_client::RuntimeServiceClient;
use berth_tests::cri::*;
use berth_tests::daemon::Berthd;
use berth_tests::ops::expect_err;
use berth_tests::require_root;
use tonic::transport::Channel;
use tonic::Code;

struct Env {
    d: Option<Berthd>,
    rt: RuntimeServiceClient<Channel>,
    bridge: String,
    subnet_prefix: String,
    cgroup_prefix: String,
    pods: Vec<String>,
    _cni_dir: tempfile::TempDir,
}

impl Env {
    async fn start(net: u8) -> Env {
        let cni_dir = tempfile::tempdir().unwrap();
        let bridge = format!("bertht{net:02}");
        let cgroup_prefix = format!("/berth-test-{net:02}-{}", std::process::id());
        let config = format!(
            "[network]\nbridge = \"{bridge}\"\nsubnet = \"10.2{net:02}.0.0/24\"\nchain_prefix = \"BTP{net:02}\"\n\n[cni]\nconf_dir = \"{}\"\n\n[runtime]\ncgroup_prefix = \"{cgroup_prefix}\"\n",
            cni_dir.path().display()
        );
        let d = Berthd::start(&config).unwrap_or_else(|e| panic!("{e:#}"));
        let rt = d.runtime().await;
        Env {
            d: Some(d),
            rt,
            bridge,
            subnet_prefix: format!("10.2{net:02}.0."),
            cgroup_prefix,
            pods: Vec::new(),
            _cni_dir: cni_dir,
        }
    }

    fn d(&self) -> &Berthd {
        self.d.as_ref().expect("berthd")
    }

    async fn run(&mut self, config: PodSandboxConfig) -> Result<String, tonic::Status> {
        self.run_with(config, "").await
    }

    async fn run_with(&mut self, config: PodSandboxConfig, handler: &str) -> Result<String, tonic::Status> {
        let id = self
            .rt
            .run_pod_sandbox(RunPodSandboxRequest {
                config: Some(config),
                runtime_handler: handler.into(),
            })
            .await?
            .into_inner()
            .pod_sandbox_id;
        if !self.pods.contains(&id) {
            self.pods.push(id.clone());
        }
        Ok(id)
    }

    async fn status(&mut self, id: &str) -> Result<PodSandboxStatusResponse, tonic::Status> {
        self.rt
            .pod_sandbox_status(PodSandboxStatusRequest {
                pod_sandbox_id: id.into(),
                verbose: true,
            })
            .await
            .map(|r| r.into_inner())
    }

    /// `info["info"]` of the verbose status, parsed.
    async fn info(&mut self, id: &str) -> serde_json::Value {
        let st = self.status(id).await.expect("status");
        serde_json::from_str(&st.info["info"]).expect("verbose info is JSON")
    }

    async fn state(&mut self, id: &str) -> i32 {
        self.status(id).await.expect("status").status.expect("status set").state
    }

    async fn list(&mut self, filter: PodSandboxFilter) -> Vec<PodSandbox> {
        self.rt
            .list_pod_sandbox(ListPodSandboxRequest { filter: Some(filter) })
            .await
            .expect("list")
            .into_inner()
            .items
    }

    async fn stop(&mut self, id: &str) -> Result<(), tonic::Status> {
        self.rt
            .stop_pod_sandbox(StopPodSandboxRequest {
                pod_sandbox_id: id.into(),
            })
            .await
            .map(drop)
    }

    async fn remove(&mut self, id: &str) -> Result<(), tonic::Status> {
        self.rt
            .remove_pod_sandbox(RemovePodSandboxRequest {
                pod_sandbox_id: id.into(),
            })
            .await
            .map(drop)
    }

    /// Everything berth could leave behind of pod `id`.
    fn leftovers(&self, id: &str) -> Vec<String> {
        let mut found = Vec::new();
        for line in sh("findmnt", &["-rn", "-o", "TARGET"]).lines() {
            if line.contains(id) {
                found.push(format!("mount {line}"));
            }
        }
        for line in sh("ip", &["-o", "link", "show", "master", &self.bridge]).lines() {
            found.push(format!("link on {}: {line}", self.bridge));
        }
        for line in sh("find", &["/sys/fs/cgroup", "-name", id]).lines() {
            found.push(format!("cgroup {line}"));
        }
        if let Ok(procs) = std::fs::read_dir("/proc") {
            for p in procs.flatten() {
                let cg = std::fs::read_to_string(p.path().join("cgroup")).unwrap_or_default();
                if cg.contains(id) {
                    found.push(format!("process {} in {cg:?}", p.file_name().to_string_lossy()));
                }
            }
        }
        if self.d().state.join("pods").join(id).exists() {
            found.push(format!("pod dir {}", self.d().state.join("pods").join(id).display()));
        }
        found
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        // Remove what the test ran, through berthd, on a runtime of our own
        // (the test's may be gone or panicking).
        if let Some(d) = &self.d {
            d.remove_all_pods_blocking();
        }
        if let Some(mut d) = self.d.take() {
            d.stop();
            // The engine's pods root is a self-bind under the test's state dir.
            let _ = nix::mount::umount2(&d.state.join("runtime/.pods"), nix::mount::MntFlags::MNT_DETACH);
            drop(d);
        }
        let net = self.bridge.trim_start_matches("bertht");
        berth_tests::netclean::remove_test_network(&self.bridge, &format!("BTP{net}"), &[]);
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
        .output()
        .unwrap_or_else(|e| panic!("{cmd}: {e}"));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn pod_config(name: &str) -> PodSandboxConfig {
    PodSandboxConfig {
        metadata: Some(PodSandboxMetadata {
            name: name.into(),
            uid: format!("uid-{name}"),
            namespace: "berth-test".into(),
            attempt: 0,
        }),
        hostname: name.into(),
        labels: [
            ("app".to_string(), name.to_string()),
            ("tier".to_string(), "test".to_string()),
        ]
        .into(),
        annotations: [("note".to_string(), "pods.rs".to_string())].into(),
        linux: Some(LinuxPodSandboxConfig {
            security_context: Some(LinuxSandboxSecurityContext {
                namespace_options: Some(NamespaceOption {
                    network: NamespaceMode::Pod as i32,
                    pid: NamespaceMode::Container as i32,
                    ipc: NamespaceMode::Pod as i32,
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn with_modes(mut c: PodSandboxConfig, network: NamespaceMode, pid: NamespaceMode) -> PodSandboxConfig {
    let opts = c
        .linux
        .as_mut()
        .and_then(|l| l.security_context.as_mut())
        .and_then(|s| s.namespace_options.as_mut())
        .expect("namespace options");
    opts.network = network as i32;
    opts.pid = pid as i32;
    c
}

fn ns_of(path: &Path) -> String {
    std::fs::read_link(path)
        .map(|p| p.display().to_string())
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Inode of an nsfs bind (what `/proc/<pid>/ns/<ns>` links name as `net:[INODE]`).
fn inode_of(path: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .ino()
}

const READY: i32 = PodSandboxState::SandboxReady as i32;
const NOT_READY: i32 = PodSandboxState::SandboxNotready as i32;

#[tokio::test]
async fn pod_lifecycle_run_status_list_stop_remove() {
    require_root!();
    let mut e = Env::start(40).await;
    let id = e.run(pod_config("lifecycle")).await.expect("RunPodSandbox");

    let st = e.status(&id).await.unwrap().status.unwrap();
    assert_eq!(st.state, READY);
    assert_eq!(st.metadata.as_ref().unwrap().name, "lifecycle");
    assert_eq!(st.labels["app"], "lifecycle");
    assert_eq!(st.annotations["note"], "pods.rs");
    assert!(st.created_at > 0);
    let ip = st.network.unwrap().ip;
    assert!(ip.starts_with(&e.subnet_prefix), "pod IP {ip} from the test subnet");
    let ns = st.linux.unwrap().namespaces.unwrap().options.unwrap();
    assert_eq!(ns.pid, NamespaceMode::Container as i32);
    let info = e.info(&id).await;
    let netns = PathBuf::from(info["netnsPath"].as_str().expect("netns path"));
    assert!(netns.exists(), "{}", netns.display());
    assert_eq!(info["config"]["metadata"]["name"], "lifecycle");

    let by = |id: &str, labels: &[(&str, &str)], state: Option<i32>| PodSandboxFilter {
        id: id.into(),
        state: state.map(|state| PodSandboxStateValue { state }),
        label_selector: labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
    };
    assert_eq!(e.list(by(&id, &[], None)).await.len(), 1);
    assert_eq!(e.list(by(&id[..12], &[], None)).await[0].id, id, "a unique prefix");
    assert_eq!(e.list(by("", &[("app", "lifecycle")], Some(READY))).await.len(), 1);
    assert!(e
        .list(by("", &[("app", "lifecycle"), ("tier", "prod")], None))
        .await
        .is_empty());
    assert!(e.list(by("", &[], Some(NOT_READY))).await.is_empty());

    let stats =
        e.rt.pod_sandbox_stats(PodSandboxStatsRequest {
            pod_sandbox_id: id.clone(),
        })
        .await
        .expect("stats")
        .into_inner()
        .stats
        .unwrap();
    assert_eq!(stats.attributes.unwrap().id, id);
    assert!(stats.linux.unwrap().cpu.unwrap().timestamp > 0);

    e.stop(&id).await.expect("stop");
    assert_eq!(e.state(&id).await, NOT_READY);
    assert_eq!(e.list(by("", &[], Some(NOT_READY))).await.len(), 1);
    e.stop(&id).await.expect("a second stop is a no-op");
    assert!(
        e.leftovers(&id).iter().all(|l| !l.starts_with("link")),
        "veth gone with stop"
    );

    e.remove(&id).await.expect("remove");
    e.remove(&id).await.expect("a second remove succeeds");
    e.stop(&id).await.expect("stop of a removed pod succeeds");
    expect_err(e.status(&id).await, &[Code::NotFound], "status of a removed pod");
    assert!(e.list(by("", &[], None)).await.is_empty());
    assert!(!netns.exists(), "netns bind {} gone", netns.display());
    assert_eq!(e.leftovers(&id), Vec::<String>::new());
}

#[tokio::test]
async fn name_in_use_names_the_holder_and_an_identical_retry_gets_the_same_pod() {
    require_root!();
    let mut e = Env::start(41).await;
    let id = e.run(pod_config("named")).await.expect("RunPodSandbox");
    let again = e.run(pod_config("named")).await.expect("identical retry");
    assert_eq!(again, id, "a kubelet retry gets the first call's pod");
    assert_eq!(e.list(PodSandboxFilter::default()).await.len(), 1, "no second pod");

    let mut other = pod_config("named");
    other.labels.insert("changed".into(), "yes".into());
    let msg = expect_err(e.run(other).await, &[Code::AlreadyExists], "same name, other config");
    assert!(msg.contains(&id), "names the holder: {msg}");

    // Another attempt of the same pod is another name.
    let mut next = pod_config("named");
    next.metadata.as_mut().unwrap().attempt = 1;
    let second = e.run(next).await.expect("attempt 1");
    assert_ne!(second, id);
}

#[tokio::test]
async fn bad_requests_are_refused_naming_the_field() {
    require_root!();
    let mut e = Env::start(42).await;
    let msg = expect_err(
        e.run_with(pod_config("handler"), "no-such-handler").await,
        &[Code::InvalidArgument],
        "unknown runtime handler",
    );
    assert!(msg.contains("no-such-handler"), "{msg}");
    let mut c = pod_config("nouid");
    c.metadata.as_mut().unwrap().uid.clear();
    let msg = expect_err(e.run(c).await, &[Code::InvalidArgument], "no uid");
    assert!(msg.contains("config.metadata.uid"), "{msg}");
    let mut c = pod_config("sysctl");
    c.linux.as_mut().unwrap().sysctls = [("kernel.hostname_typo".to_string(), "1".to_string())].into();
    let msg = expect_err(e.run(c).await, &[Code::InvalidArgument], "unknown sysctl");
    assert!(msg.contains("kernel.hostname_typo"), "{msg}");
    assert!(
        e.list(PodSandboxFilter::default()).await.is_empty(),
        "nothing half-made"
    );
    expect_err(e.status("0123456789abcdef").await, &[Code::NotFound], "unknown pod");
}

#[tokio::test]
async fn host_network_pod_has_no_ip_and_shares_the_host_netns() {
    require_root!();
    let mut e = Env::start(43).await;
    let c = with_modes(pod_config("hostnet"), NamespaceMode::Node, NamespaceMode::Pod);
    let id = e.run(c).await.expect("RunPodSandbox");
    let st = e.status(&id).await.unwrap().status.unwrap();
    assert_eq!(st.state, READY);
    assert_eq!(st.network.unwrap_or_default().ip, "", "no IP of its own");
    let info = e.info(&id).await;
    assert!(info["netnsPath"].is_null(), "{info}");
    let pid = info["pid"].as_i64().expect("pod init pid");
    assert!(pid > 0);
    assert_eq!(
        ns_of(&PathBuf::from(format!("/proc/{pid}/ns/net"))),
        ns_of(Path::new("/proc/self/ns/net")),
        "the pod init sees the host's interfaces"
    );
    assert_eq!(
        ns_of(&PathBuf::from(format!("/proc/{pid}/ns/uts"))),
        ns_of(Path::new("/proc/self/ns/uts"))
    );
    assert!(
        sh("ip", &["-o", "link", "show", "master", &e.bridge]).is_empty(),
        "no veth"
    );
    e.remove(&id).await.expect("remove");
    assert_eq!(e.leftovers(&id), Vec::<String>::new());
}

#[tokio::test]
async fn shared_pid_namespace_has_a_pod_init_as_pid_1() {
    require_root!();
    let mut e = Env::start(44).await;
    let c = with_modes(pod_config("sharedpid"), NamespaceMode::Pod, NamespaceMode::Pod);
    let id = e.run(c).await.expect("RunPodSandbox");
    let info = e.info(&id).await;
    let pid = info["pid"].as_i64().expect("pod init pid");
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let nspid = status.lines().find(|l| l.starts_with("NSpid:")).unwrap();
    assert!(nspid.trim_end().ends_with("\t1"), "PID 1 in its namespace: {nspid:?}");
    assert_ne!(
        ns_of(&PathBuf::from(format!("/proc/{pid}/ns/pid"))),
        ns_of(Path::new("/proc/self/ns/pid"))
    );
    let netns = PathBuf::from(info["netnsPath"].as_str().unwrap());
    assert!(
        ns_of(&PathBuf::from(format!("/proc/{pid}/ns/net"))).contains(&inode_of(&netns).to_string()),
        "the pod init lives in the pinned netns"
    );
    e.stop(&id).await.expect("stop");
    assert_eq!(e.state(&id).await, NOT_READY);
    assert!(
        !Path::new(&format!("/proc/{pid}")).exists() || {
            let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
            s.contains("State:\tZ")
        }
    );
    e.remove(&id).await.expect("remove");
    assert_eq!(e.leftovers(&id), Vec::<String>::new());
}

#[tokio::test]
async fn dns_options_land_in_the_pods_resolv_conf() {
    require_root!();
    let mut e = Env::start(45).await;
    let mut c = pod_config("dns");
    c.dns_config = Some(DnsConfig {
        servers: vec!["10.10.10.10".into()],
        searches: vec!["svc.cluster.local".into(), "google.com".into()],
        options: vec!["ndots:8".into()],
    });
    let id = e.run(c).await.expect("RunPodSandbox");
    let dir = e.d().state.join("pods").join(&id);
    let resolv = std::fs::read_to_string(dir.join("resolv.conf")).unwrap();
    for want in [
        "nameserver 10.10.10.10",
        "search svc.cluster.local google.com",
        "options ndots:8",
    ] {
        assert!(resolv.contains(want), "{want:?} in {resolv:?}");
    }
    assert_eq!(std::fs::read_to_string(dir.join("hostname")).unwrap(), "dns\n");
    assert!(std::fs::read_to_string(dir.join("hosts"))
        .unwrap()
        .contains("localhost"));
}

#[tokio::test]
async fn berthd_sigkilled_after_run_keeps_the_pod_and_remove_still_cleans() {
    require_root!();
    let mut e = Env::start(46).await;
    let id = e.run(pod_config("survivor")).await.expect("RunPodSandbox");
    let ip = e.status(&id).await.unwrap().status.unwrap().network.unwrap().ip;
    let netns = PathBuf::from(e.info(&id).await["netnsPath"].as_str().unwrap().to_string());

    let d = e.d.as_mut().unwrap();
    d.kill9();
    d.restart().expect("berthd restarts");
    e.rt = e.d().runtime().await;

    let pods = e.list(PodSandboxFilter::default()).await;
    assert_eq!(pods.len(), 1);
    assert_eq!((pods[0].id.as_str(), pods[0].state), (id.as_str(), READY));
    let st = e.status(&id).await.unwrap().status.unwrap();
    assert_eq!(st.network.unwrap().ip, ip, "same IP after the restart");
    assert!(netns.exists());
    let again = e.run(pod_config("survivor")).await.expect("retry after restart");
    assert_eq!(again, id);

    e.stop(&id).await.expect("stop");
    e.remove(&id).await.expect("remove");
    assert!(!netns.exists());
    assert_eq!(e.leftovers(&id), Vec::<String>::new());
}
