//! Unit tests of the pod RPCs' translation and validation (no root, no engine).

use std::collections::HashMap;

use k8s_cri::v1::*;

use super::network::{self, host_network};
use super::run::{pin_request, pod_resources, validate};
use crate::store::{PodRecord, PodState};

fn config() -> PodSandboxConfig {
    PodSandboxConfig {
        metadata: Some(PodSandboxMetadata {
            name: "web".into(),
            uid: "uid-1".into(),
            namespace: "default".into(),
            attempt: 0,
        }),
        hostname: "web-0".into(),
        ..Default::default()
    }
}

fn with_namespaces(network: NamespaceMode, pid: NamespaceMode, ipc: NamespaceMode) -> PodSandboxConfig {
    let mut c = config();
    c.linux = Some(LinuxPodSandboxConfig {
        security_context: Some(LinuxSandboxSecurityContext {
            namespace_options: Some(NamespaceOption {
                network: network as i32,
                pid: pid as i32,
                ipc: ipc as i32,
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    });
    c
}

fn request(config: PodSandboxConfig) -> RunPodSandboxRequest {
    RunPodSandboxRequest {
        config: Some(config),
        runtime_handler: String::new(),
    }
}

fn invalid_field(r: RunPodSandboxRequest) -> String {
    let err = validate(&r).unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument, "{err}");
    err.to_string()
}

#[test]
fn missing_metadata_fields_are_named() {
    for (field, clear) in [
        (
            "config.metadata.name",
            (|m: &mut PodSandboxMetadata| m.name.clear()) as fn(&mut PodSandboxMetadata),
        ),
        ("config.metadata.namespace", |m| m.namespace.clear()),
        ("config.metadata.uid", |m| m.uid.clear()),
    ] {
        let mut c = config();
        clear(c.metadata.as_mut().unwrap());
        let msg = invalid_field(request(c));
        assert!(msg.contains(field), "{msg}");
    }
    let mut c = config();
    c.metadata = None;
    assert!(invalid_field(request(c)).contains("config.metadata"));
    assert!(invalid_field(RunPodSandboxRequest::default()).contains("config"));
}

#[test]
fn unknown_runtime_handler_is_refused_by_name() {
    let mut r = request(config());
    r.runtime_handler = "kata".into();
    let msg = invalid_field(r);
    assert!(msg.contains("runtime_handler") && msg.contains("\"kata\""), "{msg}");
}

#[test]
fn bad_hostname_log_dir_dns_and_ports_are_named() {
    let mut c = config();
    c.hostname = "bad_name".into();
    assert!(invalid_field(request(c)).contains("config.hostname"));
    let mut c = config();
    c.log_directory = "relative/logs".into();
    assert!(invalid_field(request(c)).contains("config.log_directory"));
    let mut c = config();
    c.dns_config = Some(DnsConfig {
        servers: vec!["nope".into()],
        ..Default::default()
    });
    assert!(invalid_field(request(c)).contains("config.dns_config.servers"));
    let mut c = config();
    c.port_mappings = vec![PortMapping {
        host_port: 70000,
        container_port: 80,
        ..Default::default()
    }];
    assert!(invalid_field(request(c)).contains("config.port_mappings"));
    let mut c = config();
    c.port_mappings = vec![PortMapping {
        host_port: 8080,
        container_port: 80,
        host_ip: "localhost".into(),
        ..Default::default()
    }];
    assert!(invalid_field(request(c)).contains("host_ip"));
    validate(&request(config())).unwrap();
}

#[test]
fn namespace_modes_become_pins() {
    use NamespaceMode::*;
    let p = pin_request(&with_namespaces(Pod, Container, Pod), "web-0").unwrap();
    assert!(p.net && p.uts && p.ipc && !p.pid);
    assert_eq!(p.hostname.as_deref(), Some("web-0"));

    let p = pin_request(&with_namespaces(Node, Pod, Node), "node1").unwrap();
    assert!(!p.net && !p.uts && !p.ipc && p.pid);
    assert_eq!(p.hostname, None, "a host-network pod keeps the node's UTS namespace");
    assert!(host_network(&with_namespaces(Node, Pod, Node)));

    let p = pin_request(&with_namespaces(Pod, Node, Pod), "x").unwrap();
    assert!(!p.pid, "host PID is the containers' business");

    // No namespace options at all: the default POD modes, no shared PID.
    let p = pin_request(&config(), "web-0").unwrap();
    assert!(p.net && p.ipc && p.uts && p.pid, "POD is the zero value of the mode");

    let err = pin_request(&with_namespaces(Target, Pod, Pod), "x")
        .unwrap_err()
        .to_string();
    assert!(err.contains("namespace_options.network"), "{err}");
}

#[test]
fn pod_user_namespaces_are_refused_node_mode_accepted() {
    let mut c = with_namespaces(NamespaceMode::Pod, NamespaceMode::Container, NamespaceMode::Pod);
    let opts = c
        .linux
        .as_mut()
        .unwrap()
        .security_context
        .as_mut()
        .unwrap()
        .namespace_options
        .as_mut()
        .unwrap();
    opts.userns_options = Some(UserNamespace {
        mode: NamespaceMode::Node as i32,
        ..Default::default()
    });
    pin_request(&c, "x").unwrap();
    let opts = c
        .linux
        .as_mut()
        .unwrap()
        .security_context
        .as_mut()
        .unwrap()
        .namespace_options
        .as_mut()
        .unwrap();
    opts.userns_options = Some(UserNamespace {
        mode: NamespaceMode::Pod as i32,
        ..Default::default()
    });
    let err = pin_request(&c, "x").unwrap_err().to_string();
    assert!(err.contains("userns_options"), "{err}");
}

#[test]
fn sysctls_are_passed_to_the_engine() {
    let mut c = config();
    c.linux = Some(LinuxPodSandboxConfig {
        sysctls: HashMap::from([("kernel.shm_rmid_forced".to_string(), "1".to_string())]),
        ..Default::default()
    });
    let p = pin_request(&c, "web-0").unwrap();
    assert_eq!(p.sysctls.get("kernel.shm_rmid_forced").map(String::as_str), Some("1"));
}

#[test]
fn pod_resources_add_overhead_to_set_limits_only() {
    let mut c = config();
    assert!(pod_resources(&c).unwrap().is_none());
    c.linux = Some(LinuxPodSandboxConfig {
        resources: Some(LinuxContainerResources {
            memory_limit_in_bytes: 100 << 20,
            cpu_quota: 50_000,
            cpu_period: 100_000,
            cpu_shares: 512,
            ..Default::default()
        }),
        overhead: Some(LinuxContainerResources {
            memory_limit_in_bytes: 10 << 20,
            cpu_quota: 10_000,
            cpu_shares: 0,
            ..Default::default()
        }),
        ..Default::default()
    });
    let r = pod_resources(&c).unwrap().unwrap();
    assert_eq!(r.memory().as_ref().unwrap().limit(), Some(110 << 20));
    let cpu = r.cpu().as_ref().unwrap();
    assert_eq!(cpu.quota(), Some(60_000));
    assert_eq!(cpu.shares(), Some(512));

    // No memory limit on the pod: the overhead does not create one.
    c.linux
        .as_mut()
        .unwrap()
        .resources
        .as_mut()
        .unwrap()
        .memory_limit_in_bytes = 0;
    let r = pod_resources(&c).unwrap().unwrap();
    assert_eq!(r.memory().as_ref().unwrap().limit(), None);
}

#[test]
fn port_mappings_translate_and_skip_container_only_ports() {
    let mut c = config();
    c.port_mappings = vec![
        PortMapping {
            protocol: k8s_cri::v1::Protocol::Udp as i32,
            container_port: 53,
            host_port: 5353,
            host_ip: "127.0.0.1".into(),
        },
        PortMapping {
            container_port: 80,
            ..Default::default()
        },
    ];
    let req = network::request("pod1", &c, std::path::Path::new("/run/x/net")).unwrap();
    assert_eq!(req.pod_name, "web");
    assert_eq!(req.pod_namespace, "default");
    assert_eq!(req.pod_uid, "uid-1");
    assert_eq!(
        req.port_mappings,
        vec![berth_cni::PortMapping {
            host_port: 5353,
            container_port: 53,
            protocol: berth_cni::Protocol::Udp,
            host_ip: Some("127.0.0.1".parse().unwrap()),
        }]
    );
    let mut c = config();
    c.port_mappings = vec![PortMapping {
        host_port: 8080,
        ..Default::default()
    }];
    assert!(network::port_mappings(&c).is_err());
}

fn record(id: &str, labels: &[(&str, &str)]) -> PodRecord {
    let mut c = config();
    c.labels = labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    PodRecord {
        id: id.into(),
        name_key: PodRecord::name_key_of(&c),
        config: c,
        runtime_handler: String::new(),
        state: PodState::Ready,
        created_at: 1,
        dir: "/run/berth/pods/x".into(),
        netns: None,
        ipcns: None,
        utsns: None,
        pidns: None,
        ips: vec!["10.88.0.2".into(), "fd00::2".into()],
        network: Some("berth".into()),
        cgroup_parent: "/berth/pods/x".into(),
    }
}

#[test]
fn list_filters_by_id_prefix_and_every_label() {
    let pod = record("abcdef", &[("app", "web"), ("tier", "front")]);
    let filter = |id: &str, sel: &[(&str, &str)]| PodSandboxFilter {
        id: id.into(),
        state: None,
        label_selector: sel.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
    };
    assert!(super::list::preselect(&pod, &filter("", &[])));
    assert!(super::list::preselect(&pod, &filter("abc", &[("app", "web")])));
    assert!(!super::list::preselect(&pod, &filter("abd", &[])));
    assert!(!super::list::preselect(
        &pod,
        &filter("", &[("app", "web"), ("tier", "back")])
    ));
    assert!(!super::list::preselect(&pod, &filter("", &[("missing", "")])));
}

#[test]
fn status_reports_ips_namespaces_and_metadata() {
    let pod = record("abcdef", &[("app", "web")]);
    let st = super::status::pod_status(&pod, PodSandboxState::SandboxReady);
    assert_eq!(st.state, PodSandboxState::SandboxReady as i32);
    let net = st.network.unwrap();
    assert_eq!(net.ip, "10.88.0.2");
    assert_eq!(net.additional_ips, vec![PodIp { ip: "fd00::2".into() }]);
    assert_eq!(st.metadata.unwrap().name, "web");
    assert_eq!(st.labels.get("app").map(String::as_str), Some("web"));
    assert!(st.linux.unwrap().namespaces.unwrap().options.is_some());

    let mut host = record("h", &[]);
    host.ips.clear();
    let st = super::status::pod_status(&host, PodSandboxState::SandboxNotready);
    assert_eq!(st.network.unwrap().ip, "");
}

#[test]
fn stats_carry_usage_and_timestamps() {
    let pod = record("abcdef", &[]);
    let usage = berth_runtime::cgroups::CgroupStats {
        cpu_usage_ns: Some(5_000),
        memory_usage_bytes: Some(4096),
        memory_working_set_bytes: Some(2048),
        memory_limit_bytes: Some(8192),
        pids_current: Some(3),
        ..Default::default()
    };
    let st = super::stats::pod_stats(&pod, &usage, 42);
    assert_eq!(st.attributes.unwrap().id, "abcdef");
    let linux = st.linux.unwrap();
    let cpu = linux.cpu.unwrap();
    assert_eq!((cpu.timestamp, cpu.usage_core_nano_seconds.unwrap().value), (42, 5_000));
    let mem = linux.memory.unwrap();
    assert_eq!(mem.working_set_bytes.unwrap().value, 2048);
    assert_eq!(mem.usage_bytes.unwrap().value, 4096);
    assert_eq!(mem.available_bytes.unwrap().value, 6144);
    assert_eq!(linux.process.unwrap().process_count.unwrap().value, 3);
}

fn with_cgroup_parent(parent: &str) -> PodSandboxConfig {
    let mut c = config();
    c.linux = Some(LinuxPodSandboxConfig {
        cgroup_parent: parent.into(),
        ..Default::default()
    });
    c
}

#[test]
fn cgroup_parent_must_be_a_clean_absolute_path() {
    assert_eq!(super::run::cgroup_parent(&config()).unwrap(), None);
    assert_eq!(super::run::cgroup_parent(&with_cgroup_parent("")).unwrap(), None);
    for good in [
        "/kubepods/burstable/pod1234",
        "/kubepods.slice/kubepods-pod1.slice",
        "/a",
    ] {
        let got = super::run::cgroup_parent(&with_cgroup_parent(good)).unwrap();
        assert_eq!(got, Some(std::path::PathBuf::from(good)));
        validate(&request(with_cgroup_parent(good))).unwrap();
    }
    let long = format!("/{}", "a/".repeat(1100));
    let long_part = format!("/{}", "x".repeat(256));
    for bad in [
        "kubepods/pod1",
        "/",
        "//",
        "/kubepods//pod1",
        "/kubepods/pod1/",
        "/kubepods/./pod1",
        "/kubepods/../../etc",
        "/..",
        "/kube\0pods",
        "/kube\npods",
        "system.slice:berth:pod",
        long.as_str(),
        long_part.as_str(),
    ] {
        let msg = invalid_field(request(with_cgroup_parent(bad)));
        assert!(msg.contains("config.linux.cgroup_parent"), "{bad:?}: {msg}");
    }
}
