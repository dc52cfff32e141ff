//! Fakes for the translation's inputs: image files from a map, a node with a
//! few devices and seccomp profiles, a typical pod.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use k8s_cri::v1::{PodSandboxConfig, PodSandboxMetadata};

use super::host::{DeviceKind, Host, HostDevice};
use super::image_files::{ImageFiles, ImageFilesError};
use super::SandboxContext;

/// Image files from a map of absolute paths to contents.
#[derive(Debug, Default)]
pub struct MapFiles(HashMap<String, Vec<u8>>);

impl MapFiles {
    pub fn new(files: &[(&str, &str)]) -> MapFiles {
        MapFiles(
            files
                .iter()
                .map(|(p, c)| (p.to_string(), c.as_bytes().to_vec()))
                .collect(),
        )
    }
}

impl ImageFiles for MapFiles {
    fn read(&self, path: &str) -> Result<Option<Vec<u8>>, ImageFilesError> {
        Ok(self.0.get(path).cloned())
    }
}

/// A node with `/dev/{fuse,null,sda,console}` and seccomp profiles under
/// `/profiles` and `/var/lib/kubelet/seccomp`.
#[derive(Debug)]
pub struct FakeHost {
    devices: Vec<HostDevice>,
    files: HashMap<PathBuf, Vec<u8>>,
}

pub const BLOCK_CHMOD: &str = r#"{
    "defaultAction": "SCMP_ACT_ALLOW",
    "syscalls": [{"names": ["chmod"], "action": "SCMP_ACT_ERRNO"}]
}"#;

fn dev(path: &str, kind: DeviceKind, major: u64, minor: u64, mode: u32) -> HostDevice {
    HostDevice {
        path: path.into(),
        kind,
        major,
        minor,
        mode,
        uid: 0,
        gid: if kind == DeviceKind::Block { 6 } else { 0 },
    }
}

impl Default for FakeHost {
    fn default() -> Self {
        FakeHost {
            devices: vec![
                dev("/dev/fuse", DeviceKind::Char, 10, 229, 0o666),
                dev("/dev/null", DeviceKind::Char, 1, 3, 0o666),
                dev("/dev/sda", DeviceKind::Block, 8, 0, 0o660),
                dev("/dev/console", DeviceKind::Char, 5, 1, 0o600),
            ],
            files: [
                ("/profiles/block-chmod.json", BLOCK_CHMOD),
                ("/var/lib/kubelet/seccomp/block-chmod.json", BLOCK_CHMOD),
                ("/profiles/garbage.json", "{not json"),
            ]
            .into_iter()
            .map(|(p, c)| (PathBuf::from(p), c.as_bytes().to_vec()))
            .collect(),
        }
    }
}

impl Host for FakeHost {
    fn device(&self, path: &Path) -> std::io::Result<HostDevice> {
        self.devices
            .iter()
            .find(|d| d.path == path)
            .cloned()
            .ok_or_else(|| std::io::Error::from(std::io::ErrorKind::NotFound))
    }

    fn devices(&self) -> std::io::Result<Vec<HostDevice>> {
        Ok(self
            .devices
            .iter()
            .filter(|d| d.path != Path::new("/dev/console"))
            .cloned()
            .collect())
    }

    fn read_file(&self, path: &Path, _max: u64) -> std::io::Result<Vec<u8>> {
        self.files
            .get(path)
            .cloned()
            .ok_or_else(|| std::io::Error::from(std::io::ErrorKind::NotFound))
    }
}

/// A typical pod `p1` with its own network, IPC, UTS and PID namespaces.
pub fn sandbox() -> SandboxContext {
    let dir = PathBuf::from("/run/berth/pods/p1");
    SandboxContext {
        id: "p1".into(),
        hostname: "web-0".into(),
        netns: Some(dir.join("ns/net")),
        ipcns: Some(dir.join("ns/ipc")),
        utsns: Some(dir.join("ns/uts")),
        pidns: Some(dir.join("ns/pid")),
        cgroup_parent: "/berth/pods/p1".into(),
        resolv_conf: Some(dir.join("resolv.conf")),
        hosts: dir.join("hosts"),
        hostname_file: dir.join("hostname"),
        shm: Some(dir.join("shm")),
        sysctls: BTreeMap::from([("net.ipv4.ip_unprivileged_port_start".to_string(), "0".to_string())]),
        config: PodSandboxConfig {
            metadata: Some(PodSandboxMetadata {
                name: "web-0".into(),
                uid: "uid-1".into(),
                namespace: "default".into(),
                attempt: 0,
            }),
            hostname: "web-0".into(),
            ..Default::default()
        },
    }
}
