//! A berthd for the container tests, as the kubelet drives it: a pod
//! config with a log directory, create/start/status/exec/stop/remove with
//! short names, and the pods removed (with their containers) and the test
//! network deleted on drop, also when the test fails.
//!
//! Each [`Env`] has its own bridge `berthcNN`, subnet `10.2NN.0.0/24` and
//! chain prefix `BTCNN` (an empty CNI conf dir, so the built-in network).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use k8s_cri::v1::runtime_service_client::RuntimeServiceClient;
use k8s_cri::v1::*;
use tonic::transport::Channel;

use crate::daemon::Berthd;
use crate::{fixture, ops};

pub type Rt = RuntimeServiceClient<Channel>;

/// A berthd with the test images pulled, and the pods the test made,
/// removed on drop.
pub struct Env {
    pub d: Berthd,
    pub rt: Rt,
    pub pods: Vec<String>,
    pub logs: tempfile::TempDir,
    _cni: tempfile::TempDir,
    net: u8,
}

impl Env {
    pub async fn start(net: u8, images: &[&str]) -> Env {
        Env::start_with(net, images, "").await
    }

    /// [`Env::start`] with `extra` TOML appended to the config.
    pub async fn start_with(net: u8, images: &[&str], extra: &str) -> Env {
        let cni = tempfile::tempdir().unwrap();
        let config = format!(
            "[network]\nbridge = \"berthc{net:02}\"\nsubnet = \"10.2{net:02}.0.0/24\"\nchain_prefix = \"BTC{net:02}\"\n\n[cni]\nconf_dir = \"{}\"\n\n{extra}",
            cni.path().display()
        );
        let d = Berthd::start(&config).unwrap_or_else(|e| panic!("{e:#}"));
        let mut ic = d.images().await;
        for image in images {
            ops::pull_ok(&mut ic, &fixture::shared().reference(image)).await;
        }
        let rt = d.runtime().await;
        Env {
            d,
            rt,
            pods: Vec::new(),
            logs: tempfile::tempdir().unwrap(),
            _cni: cni,
            net,
        }
    }

    pub fn image(name: &str) -> String {
        fixture::shared().reference(name)
    }

    pub async fn pod(&mut self, name: &str, privileged: bool) -> (String, PodSandboxConfig) {
        let config = self.pod_config(name, privileged);
        self.run_pod(config).await
    }

    pub fn pod_config(&self, name: &str, privileged: bool) -> PodSandboxConfig {
        let log_dir = self.logs.path().join(name);
        std::fs::create_dir_all(&log_dir).unwrap();
        PodSandboxConfig {
            metadata: Some(PodSandboxMetadata {
                name: name.into(),
                namespace: "default".into(),
                uid: format!("uid-{name}"),
                attempt: 0,
            }),
            hostname: name.into(),
            log_directory: log_dir.display().to_string(),
            linux: Some(LinuxPodSandboxConfig {
                security_context: Some(LinuxSandboxSecurityContext {
                    privileged,
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    pub async fn run_pod(&mut self, config: PodSandboxConfig) -> (String, PodSandboxConfig) {
        let id = self
            .rt
            .run_pod_sandbox(RunPodSandboxRequest {
                config: Some(config.clone()),
                runtime_handler: String::new(),
            })
            .await
            .unwrap_or_else(|e| panic!("RunPodSandbox: {e}\n{}", self.d.log_tail()))
            .into_inner()
            .pod_sandbox_id;
        self.pods.push(id.clone());
        (id, config)
    }

    pub async fn create(
        &mut self,
        pod: &(String, PodSandboxConfig),
        config: ContainerConfig,
    ) -> Result<String, tonic::Status> {
        self.rt
            .create_container(CreateContainerRequest {
                pod_sandbox_id: pod.0.clone(),
                config: Some(config),
                sandbox_config: Some(pod.1.clone()),
            })
            .await
            .map(|r| r.into_inner().container_id)
    }

    /// Create and start; panics with berthd's log on failure.
    pub async fn run(&mut self, pod: &(String, PodSandboxConfig), config: ContainerConfig) -> String {
        let id = self
            .create(pod, config)
            .await
            .unwrap_or_else(|e| panic!("CreateContainer: {e}\n{}", self.d.log_tail()));
        self.rt
            .start_container(StartContainerRequest {
                container_id: id.clone(),
            })
            .await
            .unwrap_or_else(|e| panic!("StartContainer: {e}\n{}", self.d.log_tail()));
        id
    }

    pub async fn status(&mut self, id: &str) -> Result<ContainerStatus, tonic::Status> {
        self.rt
            .container_status(ContainerStatusRequest {
                container_id: id.into(),
                verbose: false,
            })
            .await
            .map(|r| r.into_inner().status.expect("status"))
    }

    pub async fn state(&mut self, id: &str) -> ContainerState {
        ContainerState::try_from(self.status(id).await.unwrap().state).unwrap()
    }

    pub async fn wait_state(&mut self, id: &str, want: ContainerState) -> ContainerStatus {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let st = self.status(id).await.unwrap();
            if st.state == want as i32 {
                return st;
            }
            assert!(
                Instant::now() < deadline,
                "container {id} never became {want:?}: {st:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub async fn exec(&mut self, id: &str, cmd: &[&str]) -> Result<ExecSyncResponse, tonic::Status> {
        self.rt
            .exec_sync(ExecSyncRequest {
                container_id: id.into(),
                cmd: cmd.iter().map(|s| s.to_string()).collect(),
                timeout: 10,
            })
            .await
            .map(|r| r.into_inner())
    }

    /// ExecSync that must exit 0; its stdout, trimmed.
    pub async fn sh(&mut self, id: &str, script: &str) -> String {
        let r = self
            .exec(id, &["sh", "-c", script])
            .await
            .unwrap_or_else(|e| panic!("ExecSync {script:?}: {e}\n{}", self.d.log_tail()));
        assert_eq!(
            r.exit_code,
            0,
            "{script:?}: stderr {}",
            String::from_utf8_lossy(&r.stderr)
        );
        String::from_utf8_lossy(&r.stdout).trim().to_string()
    }

    pub async fn stop(&mut self, id: &str, timeout: i64) {
        self.rt
            .stop_container(StopContainerRequest {
                container_id: id.into(),
                timeout,
            })
            .await
            .unwrap_or_else(|e| panic!("StopContainer: {e}\n{}", self.d.log_tail()));
    }

    pub async fn remove(&mut self, id: &str) {
        self.rt
            .remove_container(RemoveContainerRequest {
                container_id: id.into(),
            })
            .await
            .unwrap_or_else(|e| panic!("RemoveContainer: {e}\n{}", self.d.log_tail()));
    }
}

impl Env {
    /// The host pid of container `id`'s init (verbose status).
    pub async fn pid(&mut self, id: &str) -> i64 {
        let r = self
            .rt
            .container_status(ContainerStatusRequest {
                container_id: id.into(),
                verbose: true,
            })
            .await
            .unwrap()
            .into_inner();
        let info: serde_json::Value = serde_json::from_str(&r.info["info"]).unwrap();
        info["pid"]
            .as_i64()
            .filter(|p| *p > 0)
            .expect("a running container's pid")
    }

    pub async fn set_memory_limit(&mut self, id: &str, bytes: i64) {
        self.rt
            .update_container_resources(UpdateContainerResourcesRequest {
                container_id: id.into(),
                linux: Some(LinuxContainerResources {
                    memory_limit_in_bytes: bytes,
                    ..Default::default()
                }),
                ..Default::default()
            })
            .await
            .unwrap_or_else(|err| panic!("UpdateContainerResources: {err}\n{}", self.d.log_tail()));
    }

    pub async fn remove_pod(&mut self, id: &str) {
        self.rt
            .stop_pod_sandbox(StopPodSandboxRequest {
                pod_sandbox_id: id.into(),
            })
            .await
            .unwrap();
        self.rt
            .remove_pod_sandbox(RemovePodSandboxRequest {
                pod_sandbox_id: id.into(),
            })
            .await
            .unwrap();
        self.pods.retain(|p| p != id);
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        self.d.remove_all_pods_blocking();
        crate::netclean::remove_test_network(&format!("berthc{:02}", self.net), &format!("BTC{:02}", self.net), &[]);
    }
}

pub fn meta(name: &str) -> Option<ContainerMetadata> {
    Some(ContainerMetadata {
        name: name.into(),
        attempt: 0,
    })
}

/// A busybox container running `script` under `sh -c`.
pub fn shell(name: &str, script: &str) -> ContainerConfig {
    ContainerConfig {
        metadata: meta(name),
        image: Some(ops::spec(&Env::image("berth/busybox:latest"))),
        command: vec!["sh".into(), "-c".into(), script.into()],
        log_path: format!("{name}/0.log"),
        labels: HashMap::from([("test".to_string(), name.to_string())]),
        linux: Some(LinuxContainerConfig::default()),
        ..Default::default()
    }
}

/// Sleeps until SIGTERM, then exits 0.
pub const SERVE: &str = "trap 'exit 0' TERM; while true; do sleep 0.1; done";

pub fn security(f: impl FnOnce(&mut LinuxContainerSecurityContext)) -> Option<LinuxContainerConfig> {
    let mut sc = LinuxContainerSecurityContext::default();
    f(&mut sc);
    Some(LinuxContainerConfig {
        security_context: Some(sc),
        ..Default::default()
    })
}

pub fn log_file(pod: &PodSandboxConfig, name: &str) -> PathBuf {
    Path::new(&pod.log_directory).join(format!("{name}/0.log"))
}

pub async fn wait_for(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
