//! What berth remembers of each pod and container, and their states.
//!
//! Pod sandbox:
//! ```text
//!   (RunPodSandbox) ──► Ready ──(StopPodSandbox / its namespaces or network lost)──► NotReady
//!                         ▲                                                     │
//!                         └──────────── (never: a stopped pod stays stopped) ◄──┘
//!   RemovePodSandbox deletes the record in any state.
//! ```
//! Container:
//! ```text
//!   (CreateContainer) ──► Created ──(StartContainer)──► Running ──(exit / StopContainer)──► Exited
//!          │                                                                                 ▲
//!          └──────────────────────(StopContainer / pod stop before start)────────────────────┘
//!   Unknown: the engine lost track (monitor gone without an exit record).
//!   RemoveContainer deletes the record in any state (a running one is stopped first).
//! ```

use std::path::PathBuf;

use k8s_cri::v1::{ContainerConfig, LinuxContainerResources, PodSandboxConfig};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum PodState {
    Ready,
    NotReady,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PodRecord {
    pub id: String,
    /// `name_namespace_uid_attempt`, unique among pods.
    pub name_key: String,
    pub config: PodSandboxConfig,
    pub runtime_handler: String,
    pub state: PodState,
    /// Unix nanoseconds.
    pub created_at: i64,
    /// The pod's own state directory (pinned namespaces, resolv.conf, hosts, hostname).
    pub dir: PathBuf,
    pub netns: Option<PathBuf>,
    pub ipcns: Option<PathBuf>,
    pub utsns: Option<PathBuf>,
    /// Set when the pod shares one PID namespace.
    pub pidns: Option<PathBuf>,
    /// Pod IPs, primary first.
    pub ips: Vec<String>,
    /// Which network set the pod up (`cni:<network>` or `builtin`), for teardown.
    pub network: Option<String>,
    pub cgroup_parent: String,
}

impl PodRecord {
    /// The kubelet's uniqueness key for a pod.
    pub fn name_key_of(config: &PodSandboxConfig) -> String {
        let m = config.metadata.clone().unwrap_or_default();
        format!("{}_{}_{}_{}", m.name, m.namespace, m.uid, m.attempt)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ContainerState {
    Created,
    Running,
    Exited,
    Unknown,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ContainerRecord {
    pub id: String,
    pub pod_id: String,
    /// `name_podname_podnamespace_poduid_attempt`, unique among containers.
    pub name_key: String,
    pub config: ContainerConfig,
    /// The image ID (config digest) the container was created from.
    pub image_id: String,
    /// The image as the request named it.
    pub image_ref: String,
    pub state: ContainerState,
    /// Unix nanoseconds; 0 when not reached.
    pub created_at: i64,
    pub started_at: i64,
    pub finished_at: i64,
    pub exit_code: i32,
    /// `Completed`, `Error`, `OOMKilled`, …
    pub reason: String,
    pub message: String,
    /// Absolute CRI log path (`log_directory` + `log_path`), if any.
    pub log_path: Option<PathBuf>,
    /// The image's StopSignal (e.g. `SIGINT`), if it names one.
    #[serde(default)]
    pub stop_signal: Option<String>,
    /// Resources of the last UpdateContainerResources (else the config's).
    #[serde(default)]
    pub resources: Option<LinuxContainerResources>,
    /// The image layer directories the rootfs stacks (top first), kept in
    /// use for image garbage collection while the container exists.
    #[serde(default)]
    pub lower_dirs: Vec<PathBuf>,
    /// Who the container's process runs as, resolved at create (records
    /// from before berth kept this have none).
    #[serde(default)]
    pub user: Option<ProcessUser>,
}

/// The resolved identity of a container's process: `run_as_user` /
/// `run_as_username` / `run_as_group` or the image's `USER`, looked up in
/// the image's `/etc/passwd` and `/etc/group`, with the supplementary
/// groups the process gets (the primary gid among them).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessUser {
    pub uid: u32,
    pub gid: u32,
    pub supplemental_groups: Vec<u32>,
}

impl ContainerRecord {
    /// The kubelet's uniqueness key for a container in a pod.
    pub fn name_key_of(config: &ContainerConfig, pod: &PodSandboxConfig) -> String {
        let c = config.metadata.clone().unwrap_or_default();
        let p = pod.metadata.clone().unwrap_or_default();
        format!("{}_{}_{}_{}_{}", c.name, p.name, p.namespace, p.uid, c.attempt)
    }
}
