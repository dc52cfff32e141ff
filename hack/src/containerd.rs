//! A private Debian containerd (1.6, runc, Debian's CNI plugins) for
//! benchmarks: its config and CNI conflist, with every path it writes kept
//! under one dir where containerd lets us choose, and [`Footprint`] for the
//! host state it cannot be told to keep there.
//!
//! Settings that matter on a test VM:
//! - `restrict_oom_score_adj = true`: the sandbox (pause) container asks for
//!   oom_score_adj -998. Without CAP_SYS_RESOURCE (root here lacks it) the
//!   kernel refuses to lower the score below the writer's own, runc's
//!   nsexec dies with "failed to update /proc/self/oom_score_adj:
//!   Permission denied", and containerd only reports "runc create failed:
//!   can't get final child's PID from pipe: EOF". With the option the CRI
//!   plugin clamps scores to containerd's own.
//! - `netns_mounts_under_state_dir = true`: pod netns binds go under the
//!   state dir instead of the shared `/run/netns`.
//! - runc's `Root` in the private dir (its default is `/run/containerd/runc`).
//! - cgroupfs (not systemd) cgroups, on v1 or v2 alike; the caller passes a
//!   private `cgroup_parent` per pod.
//!
//! What stays outside the dir: shim sockets in `/run/containerd/s/`
//! (hard-coded in 1.6), libcni's result cache in `/var/lib/cni/results`
//! (files `<network>-<id>-<if>`), the bridge and iptables rules.

use std::path::{Path, PathBuf};

use crate::host_cleanup::{self, DirSnapshot, IptablesChains};

/// Where the private containerd keeps everything.
#[derive(Debug, Clone)]
pub struct Layout {
    pub dir: PathBuf,
}

/// The CNI network of the private containerd.
#[derive(Debug, Clone)]
pub struct Network<'a> {
    pub name: &'a str,
    pub bridge: &'a str,
    pub subnet: &'a str,
}

impl Layout {
    pub fn new(dir: &Path) -> Layout {
        Layout { dir: dir.to_path_buf() }
    }

    pub fn socket(&self) -> PathBuf {
        self.dir.join("containerd.sock")
    }

    pub fn config(&self) -> PathBuf {
        self.dir.join("config.toml")
    }

    fn cni(&self) -> PathBuf {
        self.dir.join("cni")
    }

    /// Creates the dirs and writes the config and conflist.
    pub fn write(&self, registry: &str, net: &Network) -> std::io::Result<()> {
        for d in ["root", "state", "cni", "ipam", "runc"] {
            std::fs::create_dir_all(self.dir.join(d))?;
        }
        std::fs::write(
            self.cni().join(format!("10-{}.conflist", net.name)),
            self.conflist(net).to_string(),
        )?;
        std::fs::write(self.config(), self.config_toml(registry))
    }

    fn conflist(&self, net: &Network) -> serde_json::Value {
        serde_json::json!({
            "cniVersion": "1.0.0",
            "name": net.name,
            "plugins": [
                {
                    "type": "bridge",
                    "bridge": net.bridge,
                    "isGateway": true,
                    "ipMasq": true,
                    "hairpinMode": true,
                    "ipam": {
                        "type": "host-local",
                        "ranges": [[{"subnet": net.subnet}]],
                        "routes": [{"dst": "0.0.0.0/0"}],
                        "dataDir": self.dir.join("ipam").display().to_string()
                    }
                },
                {"type": "portmap", "capabilities": {"portMappings": true}}
            ]
        })
    }

    /// containerd's config (version 2) with `registry`'s
    /// `berth/pause:v1` as the sandbox image, pulled over plain HTTP.
    pub fn config_toml(&self, registry: &str) -> String {
        let d = self.dir.display();
        let cri = "plugins.\"io.containerd.grpc.v1.cri\"";
        format!(
            r#"version = 2
root = "{d}/root"
state = "{d}/state"
[grpc]
  address = "{d}/containerd.sock"
[ttrpc]
  address = "{d}/containerd.sock.ttrpc"
[debug]
  address = "{d}/containerd.sock.debug"
[plugins."io.containerd.internal.v1.opt"]
  path = "{d}/opt"
[{cri}]
  sandbox_image = "{registry}/berth/pause:v1"
  disable_apparmor = true
  enable_selinux = false
  restrict_oom_score_adj = true
  netns_mounts_under_state_dir = true
[{cri}.containerd]
  snapshotter = "overlayfs"
  default_runtime_name = "runc"
[{cri}.containerd.runtimes.runc]
  runtime_type = "io.containerd.runc.v2"
[{cri}.containerd.runtimes.runc.options]
  BinaryName = "/usr/sbin/runc"
  Root = "{d}/runc"
  SystemdCgroup = false
[{cri}.cni]
  bin_dir = "/usr/lib/cni"
  conf_dir = "{d}/cni"
[{cri}.registry.mirrors."{registry}"]
  endpoint = ["http://{registry}"]
"#
        )
    }
}

/// Host state a containerd run may add outside its dir, as found before
/// it started; [`Footprint::remove`] takes away what the run added.
#[derive(Debug)]
pub struct Footprint {
    run_dir: DirSnapshot,
    chains: IptablesChains,
}

/// containerd 1.6's fixed state dir (shim sockets).
const RUN_DIR: &str = "/run/containerd";
/// libcni's result cache.
const CNI_RESULTS: &str = "/var/lib/cni/results";

impl Footprint {
    pub fn before() -> Footprint {
        Footprint {
            run_dir: DirSnapshot::take(Path::new(RUN_DIR)),
            chains: IptablesChains::snapshot(),
        }
    }

    /// After containerd stopped: its shims and their containers, mounts
    /// (rootfs, netns) under the dir, the bridge, iptables rules (per pod
    /// and, when this run made them, portmap's shared `CNI-HOSTPORT-*`
    /// chains), cgroups under `cgroup_parent`, shim sockets, CNI cache files.
    pub fn remove(&self, layout: &Layout, net: &Network, cgroup_parent: &str) {
        let sock = layout.socket();
        host_cleanup::kill_matching(&["containerd-shim", &sock.display().to_string()]);
        host_cleanup::remove_cgroups(cgroup_parent);
        host_cleanup::unmount_under(&layout.dir);
        host_cleanup::delete_link(net.bridge);
        host_cleanup::remove_iptables(&[net.name.to_string(), net.bridge.to_string()], None);
        host_cleanup::remove_new_chains(&self.chains, "CNI-HOSTPORT-");
        host_cleanup::remove_files_with_prefix(Path::new(CNI_RESULTS), &format!("{}-", net.name));
        self.run_dir.remove_new();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_keeps_containerd_state_in_its_dir() {
        let l = Layout::new(Path::new("/var/tmp/x/containerd"));
        let c = l.config_toml("127.0.0.1:5000");
        assert!(c.contains("restrict_oom_score_adj = true"), "{c}");
        assert!(c.contains("netns_mounts_under_state_dir = true"), "{c}");
        assert!(c.contains("Root = \"/var/tmp/x/containerd/runc\""), "{c}");
        assert!(c.contains("sandbox_image = \"127.0.0.1:5000/berth/pause:v1\""), "{c}");
        let parsed: toml::Value = toml::from_str(&c).unwrap();
        assert_eq!(parsed["version"].as_integer(), Some(2));
    }
}
