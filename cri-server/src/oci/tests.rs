//! The whole translation: a typical pod container, snapshotted.

use std::sync::Arc;

use k8s_cri::v1::{
    Capability, ContainerConfig, ContainerMetadata, ImageSpec, KeyValue, LinuxContainerConfig, LinuxContainerResources,
    LinuxContainerSecurityContext, Mount, NamespaceOption, SecurityProfile,
};
use oci_spec::image::{ConfigBuilder, ImageConfiguration, ImageConfigurationBuilder};

use k8s_cri::v1::{LinuxPodSandboxConfig, LinuxSandboxSecurityContext};
use serde_json::json;

use super::test_support::{sandbox, FakeHost, MapFiles};
use super::*;

fn typical_config() -> ContainerConfig {
    ContainerConfig {
        metadata: Some(ContainerMetadata {
            name: "nginx".into(),
            attempt: 0,
        }),
        image: Some(ImageSpec {
            image: "sha256:abc".into(),
            user_specified_image: "docker.io/library/nginx:1.27".into(),
            ..Default::default()
        }),
        args: vec!["-g".into(), "daemon off;".into()],
        envs: vec![KeyValue {
            key: "MODE".into(),
            value: "prod".into(),
        }],
        mounts: vec![Mount {
            container_path: "/dev/termination-log".into(),
            host_path: "/var/lib/kubelet/pods/uid-1/containers/nginx/0a1b".into(),
            ..Default::default()
        }],
        log_path: "nginx/0.log".into(),
        linux: Some(LinuxContainerConfig {
            resources: Some(LinuxContainerResources {
                cpu_period: 100_000,
                cpu_quota: 20_000,
                cpu_shares: 204,
                memory_limit_in_bytes: 128 << 20,
                oom_score_adj: 968,
                ..Default::default()
            }),
            security_context: Some(LinuxContainerSecurityContext {
                capabilities: Some(Capability {
                    add_capabilities: vec!["NET_ADMIN".into()],
                    drop_capabilities: vec!["MKNOD".into()],
                    add_ambient_capabilities: vec![],
                }),
                namespace_options: Some(NamespaceOption {
                    pid: k8s_cri::v1::NamespaceMode::Container as i32,
                    ..Default::default()
                }),
                run_as_user: Some(k8s_cri::v1::Int64Value { value: 101 }),
                supplemental_groups: vec![2000],
                seccomp: Some(SecurityProfile {
                    profile_type: 0,
                    localhost_ref: String::new(),
                }),
                ..Default::default()
            }),
        }),
        ..Default::default()
    }
}

fn nginx_image() -> ImageConfiguration {
    ImageConfigurationBuilder::default()
        .config(
            ConfigBuilder::default()
                .entrypoint(vec!["/docker-entrypoint.sh".to_string()])
                .cmd(vec!["nginx".to_string(), "-g".to_string(), "daemon off;".to_string()])
                .env(vec![
                    "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".to_string(),
                    "NGINX_VERSION=1.27.0".to_string(),
                ])
                .working_dir("/".to_string())
                .build()
                .unwrap(),
        )
        .build()
        .unwrap()
}

const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\nnginx:x:101:101:nginx:/nonexistent:/bin/false\n";
const GROUP: &str = "root:x:0:\nnginx:x:101:nginx\nwww-data:x:33:nginx\n";

fn spec_of(config: &ContainerConfig, sandbox: &SandboxContext) -> Result<Spec, CriError> {
    let files = MapFiles::new(&[("/etc/passwd", PASSWD), ("/etc/group", GROUP)]);
    let cfg = nginx_image();
    let image = ImageContext {
        id: "sha256:abc".into(),
        config: &cfg,
        files: &files,
    };
    let mut opts = SpecOptions::new("/run/berth/containers/c1/rootfs");
    opts.host = Arc::new(FakeHost::default());
    opts.cgroup_namespace = true;
    container_spec("c1", config, sandbox, &image, &opts)
}

/// The spec as JSON with capability sets sorted (they are hash sets).
fn json_of(spec: &Spec) -> serde_json::Value {
    let mut v = serde_json::to_value(spec).unwrap();
    if let Some(caps) = v["process"]["capabilities"].as_object_mut() {
        for set in caps.values_mut() {
            if let Some(list) = set.as_array_mut() {
                list.sort_by(|a, b| a.as_str().cmp(&b.as_str()));
            }
        }
    }
    v
}

#[test]
fn typical_pod_container_snapshot() {
    let spec = spec_of(&typical_config(), &sandbox()).unwrap();
    let v = json_of(&spec);
    assert_eq!(v["ociVersion"], "1.2.0");
    assert!(v.get("hostname").is_none(), "the pod's UTS namespace already has it");
    assert_eq!(
        v["root"],
        json!({"path": "/run/berth/containers/c1/rootfs", "readonly": false})
    );
    assert_eq!(
        v["process"],
        json!({
            "args": ["/docker-entrypoint.sh", "-g", "daemon off;"],
            "capabilities": {
                "ambient": [],
                "bounding": CAPS,
                "effective": CAPS,
                "inheritable": [],
                "permitted": CAPS,
            },
            "cwd": "/",
            "env": [
                "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                "HOSTNAME=web-0",
                "NGINX_VERSION=1.27.0",
                "MODE=prod",
            ],
            "noNewPrivileges": false,
            "oomScoreAdj": 968,
            "rlimits": [{"hard": 1048576, "soft": 1048576, "type": "RLIMIT_NOFILE"}],
            "terminal": false,
            "user": {"additionalGids": [33, 101, 2000], "gid": 101, "uid": 101},
        })
    );
    let dests: Vec<&str> = v["mounts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["destination"].as_str().unwrap())
        .collect();
    assert_eq!(
        dests,
        [
            "/proc",
            "/dev",
            "/dev/pts",
            "/dev/mqueue",
            "/sys",
            "/sys/fs/cgroup",
            "/dev/termination-log",
            "/etc/hostname",
            "/etc/hosts",
            "/etc/resolv.conf",
            "/dev/shm",
        ]
    );
    let linux = &v["linux"];
    assert_eq!(linux["cgroupsPath"], "/berth/pods/p1/c1");
    assert_eq!(
        linux["namespaces"],
        json!([
            {"type": "pid"},
            {"type": "network", "path": "/run/berth/pods/p1/ns/net"},
            {"type": "ipc", "path": "/run/berth/pods/p1/ns/ipc"},
            {"type": "uts", "path": "/run/berth/pods/p1/ns/uts"},
            {"type": "mount"},
            {"type": "cgroup"},
        ])
    );
    assert_eq!(
        linux["resources"]["cpu"],
        json!({"period": 100000, "quota": 20000, "shares": 204})
    );
    assert_eq!(
        linux["resources"]["memory"],
        json!({"limit": 134217728, "swap": 134217728})
    );
    assert_eq!(
        linux["resources"]["devices"],
        serde_json::to_value(defaults::device_rules()).unwrap()
    );
    assert_eq!(linux["devices"], json!([]));
    assert_eq!(linux["maskedPaths"].as_array().unwrap().len(), 11);
    assert_eq!(linux["readonlyPaths"].as_array().unwrap().len(), 5);
    assert_eq!(linux["sysctl"], json!({"net.ipv4.ip_unprivileged_port_start": "0"}));
    assert!(linux.get("rootfsPropagation").is_none());
    let bounding = security::default_mask(&CAPS.map(String::from)).unwrap();
    assert_eq!(
        spec.linux().as_ref().unwrap().seccomp().as_ref(),
        Some(&berth_runtime::seccomp::runtime_default_profile_for(bounding))
    );
    assert_eq!(
        v["annotations"],
        json!({
            "io.kubernetes.cri.container-type": "container",
            "io.kubernetes.cri.container-name": "nginx",
            "io.kubernetes.cri.image-name": "docker.io/library/nginx:1.27",
            "io.kubernetes.cri.sandbox-id": "p1",
            "io.kubernetes.cri.sandbox-name": "web-0",
            "io.kubernetes.cri.sandbox-namespace": "default",
            "io.kubernetes.cri.sandbox-uid": "uid-1",
        })
    );
    // What the engine checks of every bundle holds for this one.
    let process = spec.process().as_ref().unwrap();
    assert!(process.cwd().is_absolute());
    assert!(process.env().iter().flatten().all(|e| e.contains('=')));
}

/// The typical container's capabilities: the default 14 + NET_ADMIN - MKNOD.
const CAPS: [&str; 14] = [
    "CAP_AUDIT_WRITE",
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_NET_ADMIN",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_RAW",
    "CAP_SETFCAP",
    "CAP_SETGID",
    "CAP_SETPCAP",
    "CAP_SETUID",
    "CAP_SYS_CHROOT",
];

fn privileged_sandbox() -> SandboxContext {
    let mut sb = sandbox();
    sb.config.linux = Some(LinuxPodSandboxConfig {
        security_context: Some(LinuxSandboxSecurityContext {
            privileged: true,
            ..Default::default()
        }),
        ..Default::default()
    });
    sb
}

#[test]
fn privileged_container_in_a_privileged_pod() {
    let mut cfg = typical_config();
    let sc = cfg.linux.as_mut().unwrap().security_context.as_mut().unwrap();
    sc.privileged = true;
    sc.masked_paths = vec!["/proc/kcore".into()];
    let err = spec_of(&cfg, &sandbox()).unwrap_err();
    assert!(matches!(
        err,
        CriError::InvalidArgument {
            field: "linux.security_context.privileged",
            ..
        }
    ));

    let spec = spec_of(&cfg, &privileged_sandbox()).unwrap();
    let linux = spec.linux().as_ref().unwrap();
    assert_eq!(linux.seccomp(), &None);
    assert_eq!(linux.masked_paths().as_deref(), Some(&[][..]));
    assert_eq!(linux.readonly_paths().as_deref(), Some(&[][..]));
    assert_eq!(
        linux.resources().as_ref().unwrap().devices(),
        &Some(defaults::allow_all_devices())
    );
    assert_eq!(linux.devices().as_ref().unwrap().len(), 3, "every host device");
    assert!(!linux
        .namespaces()
        .iter()
        .flatten()
        .any(|n| n.typ() == oci_spec::runtime::LinuxNamespaceType::Cgroup));
    let caps = spec.process().as_ref().unwrap().capabilities().as_ref().unwrap();
    assert_eq!(
        caps.bounding().as_ref().unwrap().len(),
        berth_runtime::capabilities::CAPABILITY_NAMES.len()
    );
    let sys = spec
        .mounts()
        .iter()
        .flatten()
        .find(|m| m.destination().to_str() == Some("/sys"))
        .unwrap();
    assert!(sys.options().iter().flatten().any(|o| o == "rw"));
}

#[test]
fn host_network_and_ipc_pod() {
    let mut sb = sandbox();
    sb.netns = None;
    sb.ipcns = None;
    sb.utsns = None;
    sb.shm = None;
    sb.hostname = "node-1".into();
    let mut cfg = typical_config();
    cfg.linux
        .as_mut()
        .unwrap()
        .security_context
        .as_mut()
        .unwrap()
        .readonly_rootfs = true;
    let spec = spec_of(&cfg, &sb).unwrap();
    let types: Vec<_> = spec
        .linux()
        .as_ref()
        .unwrap()
        .namespaces()
        .iter()
        .flatten()
        .map(|n| n.typ().to_string())
        .collect();
    assert_eq!(types, ["pid", "mnt", "cgroup"]);
    let v = json_of(&spec);
    assert!(v["process"]["env"]
        .as_array()
        .unwrap()
        .contains(&json!("HOSTNAME=node-1")));
    assert_eq!(v["root"]["readonly"], true);
    let shm = v["mounts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["destination"] == "/dev/shm")
        .unwrap();
    assert_eq!(shm["source"], "/dev/shm");
    let hosts = v["mounts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["destination"] == "/etc/hosts")
        .unwrap();
    assert_eq!(hosts["options"], json!(["rbind", "rprivate", "ro"]));
}

#[test]
fn every_rule_error_reaches_the_caller() {
    let mut no_meta = typical_config();
    no_meta.metadata = None;
    assert!(spec_of(&no_meta, &sandbox())
        .unwrap_err()
        .to_string()
        .starts_with("metadata.name"));
    let mut no_cmd = typical_config();
    no_cmd.args.clear();
    no_cmd.command.clear();
    assert!(spec_of(&no_cmd, &sandbox()).is_ok(), "the image has Entrypoint + Cmd");
    let mut bad_cap = typical_config();
    bad_cap
        .linux
        .as_mut()
        .unwrap()
        .security_context
        .as_mut()
        .unwrap()
        .capabilities
        .as_mut()
        .unwrap()
        .add_capabilities = vec!["NET_ADMIN".into(), "WARP_DRIVE".into()];
    let err = spec_of(&bad_cap, &sandbox()).unwrap_err().to_string();
    assert!(err.contains("add_capabilities: [1] \"WARP_DRIVE\""), "{err}");
    let mut bad_res = typical_config();
    bad_res.linux.as_mut().unwrap().resources.as_mut().unwrap().cpu_shares = -1;
    assert!(spec_of(&bad_res, &sandbox())
        .unwrap_err()
        .to_string()
        .starts_with("linux.resources.cpu_shares"));
    let mut bad_user = typical_config();
    bad_user
        .linux
        .as_mut()
        .unwrap()
        .security_context
        .as_mut()
        .unwrap()
        .run_as_username = "ghost".into();
    assert!(spec_of(&bad_user, &sandbox())
        .unwrap_err()
        .to_string()
        .contains("ghost"));
    let mut bad_cgroup = sandbox();
    bad_cgroup.cgroup_parent = "relative".into();
    assert!(matches!(
        spec_of(&typical_config(), &bad_cgroup),
        Err(CriError::Internal(_))
    ));
}

#[test]
fn cgroup_namespace_only_on_unified_hosts() {
    use berth_runtime::cgroups::CgroupMode;
    assert!(cgroup_namespace_for(CgroupMode::Unified));
    assert!(!cgroup_namespace_for(CgroupMode::Hybrid));
    assert!(!cgroup_namespace_for(CgroupMode::Legacy));
    assert!(!SpecOptions::new("/r").cgroup_namespace);
}
