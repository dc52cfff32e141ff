//! critest (kubernetes-sigs/cri-tools `pkg/validate`) specs, mirrored over
//! the CRI socket of a real berthd. Each test is named after the spec (or
//! the group of specs) it mirrors and asserts what critest asserts: what the
//! program inside sees and what the API returns. critest's images are mapped
//! to berth's local test images (`berth/busybox` stands for busybox, nginx
//! and httpd; the busybox applets stand in for the tools critest runs).
//!
//! Pods are built the way critest's framework builds them: names with
//! capitals, no hostname, no log directory and an empty `linux` unless the
//! spec sets them.
//!
//! Each test has its own berthd and network (`berthcNN`, `10.2NN.0.0/24`,
//! NN in 20..=39) and removes what it made on drop, also on failure.

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use berth_tests::cri::*;
use berth_tests::cri_env::{meta, security, shell, Env, SERVE};
use berth_tests::ops::expect_err;
use berth_tests::require_root;
use tonic::Code;

const BUSYBOX: &str = "berth/busybox:latest";

/// critest's `CreatePodSandboxForContainer`: metadata, labels, `linux: {}`.
fn framework_pod(name: &str) -> PodSandboxConfig {
    PodSandboxConfig {
        metadata: Some(PodSandboxMetadata {
            name: name.into(),
            uid: format!("cri-test-uid-{name}"),
            namespace: format!("cri-test-namespace-{name}"),
            attempt: 0,
        }),
        labels: HashMap::from([("foo".to_string(), "bar".to_string())]),
        linux: Some(LinuxPodSandboxConfig::default()),
        ..Default::default()
    }
}

/// critest's default container: busybox running `command`, `linux: {}`, no log path.
fn framework_container(name: &str, command: &[&str]) -> ContainerConfig {
    ContainerConfig {
        metadata: meta(name),
        image: Some(berth_tests::ops::spec(&Env::image(BUSYBOX))),
        command: command.iter().map(|s| s.to_string()).collect(),
        linux: Some(LinuxContainerConfig::default()),
        ..Default::default()
    }
}

/// critest's pauseCmd.
const PAUSE: &[&str] = &["sh", "-c", "top"];

fn with_log_dir(e: &Env, mut config: PodSandboxConfig) -> PodSandboxConfig {
    let name = config.metadata.as_ref().unwrap().name.clone();
    let dir = e.logs.path().join(name);
    std::fs::create_dir_all(&dir).unwrap();
    config.log_directory = dir.display().to_string();
    config
}

async fn pod_state(e: &mut Env, id: &str) -> PodSandboxStatus {
    e.rt.pod_sandbox_status(PodSandboxStatusRequest {
        pod_sandbox_id: id.into(),
        verbose: false,
    })
    .await
    .unwrap()
    .into_inner()
    .status
    .unwrap()
}

async fn list_pods(e: &mut Env, filter: PodSandboxFilter) -> Vec<PodSandbox> {
    e.rt.list_pod_sandbox(ListPodSandboxRequest { filter: Some(filter) })
        .await
        .unwrap()
        .into_inner()
        .items
}

async fn list_containers(e: &mut Env, filter: ContainerFilter) -> Vec<Container> {
    e.rt.list_containers(ListContainersRequest { filter: Some(filter) })
        .await
        .unwrap()
        .into_inner()
        .containers
}

/// critest's `listContainerForID`: the IDs ListContainers returns for `id`.
async fn listed_by_id(e: &mut Env, id: &str) -> Vec<String> {
    let filter = ContainerFilter {
        id: id.into(),
        ..Default::default()
    };
    list_containers(e, filter).await.into_iter().map(|c| c.id).collect()
}

async fn exec_timeout(e: &mut Env, id: &str, cmd: &[&str], timeout: i64) -> Result<ExecSyncResponse, tonic::Status> {
    e.rt.exec_sync(ExecSyncRequest {
        container_id: id.into(),
        cmd: cmd.iter().map(|s| s.to_string()).collect(),
        timeout,
    })
    .await
    .map(|r| r.into_inner())
}

/// critest's `execSyncContainer`: exit 0, empty stderr; the stdout.
async fn exec_ok(e: &mut Env, id: &str, cmd: &[&str]) -> String {
    let r = exec_timeout(e, id, cmd, 30)
        .await
        .unwrap_or_else(|s| panic!("ExecSync {cmd:?}: {s}\n{}", e.d.log_tail()));
    assert_eq!(r.exit_code, 0, "{cmd:?}: {r:?}");
    assert!(
        r.stderr.is_empty(),
        "{cmd:?}: stderr {}",
        String::from_utf8_lossy(&r.stderr)
    );
    String::from_utf8(r.stdout).unwrap()
}

/// critest's `parseLogLine` + `verifyLogContents`: some CRI log line of
/// `stream` whose text is `text`.
fn log_has(path: &Path, stream: &str, text: &str) -> bool {
    std::fs::read_to_string(path).is_ok_and(|log| {
        log.lines().any(|l| {
            let parts: Vec<&str> = l.splitn(4, ' ').collect();
            parts.len() == 4 && parts[1] == stream && parts[3] == text
        })
    })
}

#[tokio::test]
async fn runtime_info_version_and_conditions() {
    require_root!();
    let mut e = Env::start(20, &[]).await;
    let v =
        e.rt.version(VersionRequest {
            version: "0.1.0".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(v.version, "0.1.0");
    assert_eq!(v.runtime_name, "berth");
    assert!(!v.runtime_version.is_empty());
    assert_eq!(v.runtime_api_version, "v1");
    let st =
        e.rt.status(StatusRequest { verbose: false })
            .await
            .unwrap()
            .into_inner();
    let conds = st.status.unwrap().conditions;
    for want in ["RuntimeReady", "NetworkReady"] {
        assert!(
            conds.iter().any(|c| c.r#type == want && c.status),
            "{want} true: {conds:?}"
        );
    }
    // What critest reads to decide which optional specs run: berth claims
    // no feature it does not have (recursive read-only mounts, user
    // namespaces, supplemental groups policy), so those specs skip.
    for h in &st.runtime_handlers {
        let f = h.features.unwrap_or_default();
        assert!(!f.recursive_read_only_mounts && !f.user_namespaces, "{h:?}");
    }
    assert!(!st.features.is_some_and(|f| f.supplemental_groups_policy));
    // The metrics specs skip on UNIMPLEMENTED.
    let m = e.rt.list_metric_descriptors(ListMetricDescriptorsRequest {}).await;
    expect_err(m, &[Code::Unimplemented], "ListMetricDescriptors");
}

#[tokio::test]
async fn pod_sandbox_run_status_list_stop_remove_and_attributes() {
    require_root!();
    let mut e = Env::start(21, &[]).await;
    // runtime should support running PodSandbox
    let (id, _) = e.run_pod(framework_pod("PodSandbox-for-create-test-1")).await;
    assert_eq!(pod_state(&mut e, &id).await.state, PodSandboxState::SandboxReady as i32);
    let listed = list_pods(
        &mut e,
        PodSandboxFilter {
            id: id.clone(),
            ..Default::default()
        },
    )
    .await;
    assert!(listed.iter().any(|p| p.id == id));

    // runtime should support preserving PodSandbox attributes
    let mut config = framework_pod("PodSandbox-with-attributes-1");
    let md = config.metadata.clone().unwrap();
    config.labels.extend([
        ("io.kubernetes.pod.name".to_string(), md.name.clone()),
        ("io.kubernetes.pod.namespace".to_string(), md.namespace.clone()),
        ("io.kubernetes.pod.uid".to_string(), md.uid.clone()),
    ]);
    config.annotations = HashMap::from([("abc".to_string(), "def".to_string())]);
    let (attr, config) = e.run_pod(config).await;
    let st = pod_state(&mut e, &attr).await;
    assert_eq!(st.metadata.as_ref(), Some(&md));
    assert_eq!(st.labels, config.labels);
    assert_eq!(st.annotations, config.annotations);
    let listed = list_pods(
        &mut e,
        PodSandboxFilter {
            id: attr.clone(),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].metadata.as_ref(), Some(&md));
    assert_eq!(listed[0].labels, config.labels);
    assert_eq!(listed[0].annotations, config.annotations);

    // Filters the kubelet uses: label selector and state.
    let by_label = list_pods(
        &mut e,
        PodSandboxFilter {
            label_selector: HashMap::from([("io.kubernetes.pod.name".to_string(), md.name.clone())]),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(by_label.iter().map(|p| &p.id).collect::<Vec<_>>(), [&attr]);

    // runtime should support stopping PodSandbox
    e.rt.stop_pod_sandbox(StopPodSandboxRequest {
        pod_sandbox_id: id.clone(),
    })
    .await
    .unwrap();
    assert_eq!(
        pod_state(&mut e, &id).await.state,
        PodSandboxState::SandboxNotready as i32
    );
    let not_ready = list_pods(
        &mut e,
        PodSandboxFilter {
            state: Some(PodSandboxStateValue {
                state: PodSandboxState::SandboxNotready as i32,
            }),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(not_ready.iter().map(|p| &p.id).collect::<Vec<_>>(), [&id]);

    // runtime should support removing PodSandbox
    e.rt.remove_pod_sandbox(RemovePodSandboxRequest {
        pod_sandbox_id: id.clone(),
    })
    .await
    .unwrap();
    let listed = list_pods(
        &mut e,
        PodSandboxFilter {
            id: id.clone(),
            ..Default::default()
        },
    )
    .await;
    assert!(listed.is_empty(), "{listed:?}");
}

#[tokio::test]
async fn pod_sandbox_should_support_safe_and_unsafe_sysctls() {
    require_root!();
    let mut e = Env::start(22, &[BUSYBOX]).await;
    for (name, key, path, value) in [
        (
            "safe",
            "kernel.shm_rmid_forced",
            "/proc/sys/kernel/shm_rmid_forced",
            "1",
        ),
        ("unsafe", "fs.mqueue.msg_max", "/proc/sys/fs/mqueue/msg_max", "100"),
    ] {
        let mut config = framework_pod(&format!("pod-sandbox-with-sysctls-{name}"));
        config.linux.as_mut().unwrap().sysctls = HashMap::from([(key.to_string(), value.to_string())]);
        let pod = e.run_pod(config).await;
        let id = e
            .run(&pod, framework_container(&format!("container-{name}"), PAUSE))
            .await;
        assert_eq!(exec_ok(&mut e, &id, &["cat", path]).await.trim(), value, "{key}");
    }
}

#[tokio::test]
async fn container_basic_operations_create_start_stop_remove_exec_sync() {
    require_root!();
    let mut e = Env::start(23, &[BUSYBOX]).await;
    let pod = e.run_pod(framework_pod("create-PodSandbox-for-container-1")).await;

    // runtime should support creating container
    let created = e
        .create(&pod, framework_container("container-for-create-1", PAUSE))
        .await
        .unwrap();
    assert_eq!(listed_by_id(&mut e, &created).await, std::slice::from_ref(&created));
    // runtime should support removing created container
    e.remove(&created).await;

    // runtime should support starting / stopping / removing stopped container
    let id = e
        .run(&pod, framework_container("container-for-stop-test-1", PAUSE))
        .await;
    assert_eq!(e.state(&id).await, ContainerState::ContainerRunning);
    e.stop(&id, 60).await;
    let st = e.status(&id).await.unwrap();
    assert_eq!(st.state, ContainerState::ContainerExited as i32);
    assert!(
        st.finished_at >= st.started_at && st.started_at >= st.created_at,
        "{st:?}"
    );
    e.remove(&id).await;
    assert!(listed_by_id(&mut e, &id).await.is_empty());

    // runtime should support removing running container
    let id = e
        .run(&pod, framework_container("container-for-remove-running-1", PAUSE))
        .await;
    e.remove(&id).await;
    assert!(listed_by_id(&mut e, &id).await.is_empty());

    // runtime should support execSync
    let id = e
        .run(&pod, framework_container("container-for-execSync-test-1", PAUSE))
        .await;
    assert_eq!(exec_ok(&mut e, &id, &["echo", "-n", "hello"]).await, "hello");

    // runtime should support execSync with timeout: an error, and the
    // timed-out process is gone (critest checks with pgrep, which berth's
    // busybox lacks; ps lists the same processes).
    let r = exec_timeout(&mut e, &id, &["sleep", "4321"], 1).await;
    expect_err(r, &[Code::DeadlineExceeded], "ExecSync past its timeout");
    let ps = exec_ok(&mut e, &id, &["ps", "-o", "args"]).await;
    assert!(!ps.contains("sleep 4321"), "the timed-out exec was killed: {ps}");

    // A failing command: its exit code and stderr, no gRPC error.
    let r = exec_timeout(&mut e, &id, &["sh", "-c", "echo out; echo err >&2; exit 3"], 30)
        .await
        .unwrap();
    assert_eq!(
        (r.exit_code, &r.stdout[..], &r.stderr[..]),
        (3, &b"out\n"[..], &b"err\n"[..])
    );
}

#[tokio::test]
async fn container_stats_for_started_containers_by_id_nil_filter_and_labels() {
    require_root!();
    let mut e = Env::start(24, &[BUSYBOX]).await;
    let pod = e.run_pod(framework_pod("create-PodSandbox-for-container-2")).await;
    let mut ids = Vec::new();
    for i in 0..3 {
        let mut c = framework_container(&format!("container-for-stats-{i}"), PAUSE);
        c.labels = HashMap::from([("foo".to_string(), format!("bar{i}"))]);
        ids.push(e.run(&pod, c).await);
    }
    // runtime should support listing container stats
    let stats =
        e.rt.container_stats(ContainerStatsRequest {
            container_id: ids[0].clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .stats
        .unwrap();
    let attrs = stats.attributes.as_ref().unwrap();
    assert_eq!(attrs.id, ids[0]);
    assert!(attrs.metadata.as_ref().unwrap().name.contains("container-for-stats-"));
    assert_ne!(stats.cpu.as_ref().unwrap().timestamp, 0);
    assert_ne!(stats.memory.as_ref().unwrap().timestamp, 0);

    let list = |filter: Option<ContainerStatsFilter>| ListContainerStatsRequest { filter };
    let ids_of = |s: Vec<ContainerStats>| -> Vec<String> { s.into_iter().map(|s| s.attributes.unwrap().id).collect() };
    // ... for started containers (by ID)
    let by_id =
        e.rt.list_container_stats(list(Some(ContainerStatsFilter {
            id: ids[1].clone(),
            ..Default::default()
        })))
        .await
        .unwrap()
        .into_inner()
        .stats;
    assert_eq!(ids_of(by_id), [ids[1].clone()]);
    // ... when filter is nil (three created containers)
    let all = ids_of(e.rt.list_container_stats(list(None)).await.unwrap().into_inner().stats);
    for id in &ids {
        assert!(all.contains(id), "{id} in {all:?}");
    }
    // ... filtered by labels
    let by_label = |v: &str| {
        list(Some(ContainerStatsFilter {
            label_selector: HashMap::from([("foo".to_string(), v.to_string())]),
            ..Default::default()
        }))
    };
    let hit = ids_of(
        e.rt.list_container_stats(by_label("bar2"))
            .await
            .unwrap()
            .into_inner()
            .stats,
    );
    assert_eq!(hit, [ids[2].clone()]);
    let miss =
        e.rt.list_container_stats(by_label("baz"))
            .await
            .unwrap()
            .into_inner()
            .stats;
    assert!(miss.is_empty());
}

#[tokio::test]
async fn container_with_volume_and_symlinked_host_path_and_log_and_reopen_log() {
    require_root!();
    let mut e = Env::start(25, &[BUSYBOX]).await;
    let pod_config = with_log_dir(&e, framework_pod("PodSandbox-with-log-directory-1"));
    let pod = e.run_pod(pod_config).await;

    // runtime should support starting container with volume [when host path is a symlink]
    let host = tempfile::tempdir().unwrap();
    std::fs::write(host.path().join("testVolume.file"), "").unwrap();
    let link = host.path().with_extension("symlink");
    std::os::unix::fs::symlink(host.path(), &link).unwrap();
    struct Unlink<'a>(&'a Path);
    impl Drop for Unlink<'_> {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(self.0);
        }
    }
    let _unlink = Unlink(&link);
    for (i, path) in [host.path(), link.as_path()].into_iter().enumerate() {
        let path = path.display().to_string();
        let mut c = framework_container(&format!("container-with-volume-test-{i}"), PAUSE);
        c.linux = None;
        c.mounts = vec![Mount {
            host_path: path.clone(),
            container_path: path.clone(),
            selinux_relabel: true,
            ..Default::default()
        }];
        let id = e.run(&pod, c).await;
        assert_eq!(e.state(&id).await, ContainerState::ContainerRunning);
        assert_eq!(exec_ok(&mut e, &id, &["ls", "-A", &path]).await, "testVolume.file\n");
    }

    // runtime should support starting container with log
    let mut c = framework_container("container-with-log-test-1", &["echo", "hello World"]);
    c.log_path = "container-with-log-test-1.log".into();
    let id = e.run(&pod, c).await;
    let st = e.wait_state(&id, ContainerState::ContainerExited).await;
    let log = Path::new(&pod.1.log_directory).join("container-with-log-test-1.log");
    assert_eq!(Path::new(&st.log_path), log);
    assert!(
        log_has(&log, "stdout", "hello World"),
        "{:?}",
        std::fs::read_to_string(&log)
    );
    assert_eq!((st.exit_code, st.reason.as_str()), (0, "Completed"));

    // runtime should support reopening container log
    let mut c = framework_container(
        "container-reopen-log-test-1",
        &["sh", "-c", "while true; do echo hello World; sleep 0.1; done"],
    );
    c.log_path = "container-reopen-log-test-1.log".into();
    let id = e.run(&pod, c).await;
    let log = Path::new(&pod.1.log_directory).join("container-reopen-log-test-1.log");
    berth_tests::cri_env::wait_for("log lines", || log_has(&log, "stdout", "hello World")).await;
    let renamed = log.with_extension("log.new");
    std::fs::rename(&log, &renamed).unwrap();
    e.rt.reopen_container_log(ReopenContainerLogRequest {
        container_id: id.clone(),
    })
    .await
    .unwrap();
    assert!(log.exists(), "the new log file is created by ReopenContainerLog");
    berth_tests::cri_env::wait_for("lines in the new log", || log_has(&log, "stdout", "hello World")).await;
    e.stop(&id, 0).await;
    let old = std::fs::read_to_string(&renamed).unwrap();
    let new = std::fs::read_to_string(&log).unwrap();
    // Every line went to exactly one of the two files: the old one stopped
    // at the reopen (its last line is whole), the new one goes on.
    assert!(old.ends_with('\n') && new.ends_with('\n'));
    assert!(!new.is_empty() && !old.is_empty());
}

#[tokio::test]
async fn container_mount_propagation_private_rslave_rshared_and_readonly_mounts() {
    require_root!();
    let mut e = Env::start(26, &[BUSYBOX]).await;
    let mut config = framework_pod("create-Privileged-PodSandbox-for-container-1");
    config.linux.as_mut().unwrap().security_context = Some(LinuxSandboxSecurityContext {
        privileged: true,
        ..Default::default()
    });
    let pod = e.run_pod(config).await;

    /// Unmounts what the test mounted on the host, also on failure.
    struct Mounted(Vec<std::path::PathBuf>);
    impl Drop for Mounted {
        fn drop(&mut self) {
            for p in self.0.iter().rev() {
                let _ = nix::mount::umount2(p, nix::mount::MntFlags::MNT_DETACH);
            }
        }
    }
    use nix::mount::{mount, MsFlags};
    for (i, prop) in [
        MountPropagation::PropagationPrivate,
        MountPropagation::PropagationHostToContainer,
        MountPropagation::PropagationBidirectional,
    ]
    .into_iter()
    .enumerate()
    {
        let host = tempfile::tempdir().unwrap();
        let mnt_source = host.path().join("mnt");
        let mnt_point = mnt_source.join("propagationMnt");
        let src_dir = host.path().join("propagationSrcDir");
        std::fs::create_dir_all(&mnt_point).unwrap();
        std::fs::create_dir_all(&src_dir).unwrap();
        std::fs::write(src_dir.join("flagFile"), "").unwrap();
        let mut mounted = Mounted(Vec::new());
        mount(
            Some(&mnt_source),
            &mnt_source,
            None::<&str>,
            MsFlags::MS_BIND | MsFlags::MS_REC,
            None::<&str>,
        )
        .unwrap();
        mounted.0.push(mnt_source.clone());
        let kind = if prop == MountPropagation::PropagationPrivate {
            MsFlags::MS_PRIVATE
        } else {
            MsFlags::MS_SHARED
        };
        mount(
            None::<&str>,
            &mnt_source,
            None::<&str>,
            kind | MsFlags::MS_REC,
            None::<&str>,
        )
        .unwrap();

        let src = mnt_source.display().to_string();
        let mut c = framework_container(&format!("mount-propagation-test-{i}"), PAUSE);
        c.linux = security(|sc| sc.privileged = true);
        c.mounts = vec![Mount {
            host_path: src.clone(),
            container_path: src.clone(),
            propagation: prop as i32,
            ..Default::default()
        }];
        let id = e.create(&pod, c).await.unwrap();
        let st = e.status(&id).await.unwrap();
        assert_eq!(st.mounts.len(), 1, "{st:?}");
        let m = &st.mounts[0];
        assert_eq!(
            (m.container_path.as_str(), m.host_path.as_str()),
            (src.as_str(), src.as_str())
        );
        assert!(!m.readonly && !m.selinux_relabel);
        assert_eq!(m.propagation, prop as i32);
        e.rt.start_container(StartContainerRequest {
            container_id: id.clone(),
        })
        .await
        .unwrap();

        // host -> container
        mount(
            Some(&src_dir),
            &mnt_point,
            None::<&str>,
            MsFlags::MS_BIND | MsFlags::MS_REC,
            None::<&str>,
        )
        .unwrap();
        mounted.0.push(mnt_point.clone());
        let seen = exec_ok(&mut e, &id, &["ls", "-A", &mnt_point.display().to_string()]).await;
        if prop == MountPropagation::PropagationPrivate {
            assert!(seen.is_empty(), "{prop:?}: {seen}");
        } else {
            assert_eq!(seen, "flagFile\n", "{prop:?}");
        }
        // container -> host
        let inner = mnt_source.join("containerMntPoint");
        let inner_s = inner.display().to_string();
        exec_ok(&mut e, &id, &["sh", "-c", &format!("mkdir -p {inner_s}")]).await;
        exec_ok(&mut e, &id, &["sh", "-c", &format!("mount --bind /etc {inner_s}")]).await;
        let on_host = std::fs::read_dir(&inner).unwrap().count();
        if prop == MountPropagation::PropagationBidirectional {
            mounted.0.push(inner.clone());
            assert!(on_host > 0, "{prop:?}: the container's mount shows on the host");
        } else {
            assert_eq!(on_host, 0, "{prop:?}: the container's mount stays inside");
        }
        e.remove(&id).await;
    }

    // should support non-recursive readonly mounts: the bind is read-only,
    // a mount below it (a tmpfs) keeps its own flags.
    let host = tempfile::tempdir().unwrap();
    let tmpfs = host.path().join("tmpfs");
    std::fs::create_dir(&tmpfs).unwrap();
    mount(Some("none"), &tmpfs, Some("tmpfs"), MsFlags::empty(), None::<&str>).unwrap();
    let _mounted = Mounted(vec![tmpfs.clone()]);
    let mut c = framework_container("test-mount-ro", PAUSE);
    c.linux = None;
    c.mounts = vec![Mount {
        host_path: host.path().display().to_string(),
        container_path: "/mnt".into(),
        readonly: true,
        selinux_relabel: true,
        ..Default::default()
    }];
    let id = e.run(&pod, c.clone()).await;
    assert_eq!(e.status(&id).await.unwrap().mounts.len(), 1);
    exec_ok(&mut e, &id, &["touch", "/mnt/tmpfs/file"]).await;
    let r = exec_timeout(&mut e, &id, &["touch", "/mnt/file"], 30).await.unwrap();
    assert_ne!(r.exit_code, 0, "the bind itself is read-only: {r:?}");
    // Recursive read-only mounts are not claimed in Status (critest skips
    // them); asking for one is refused naming the field.
    c.metadata = meta("test-mount-rro");
    c.mounts[0].recursive_read_only = true;
    let msg = expect_err(e.create(&pod, c).await, &[Code::InvalidArgument], "recursive read-only");
    assert!(msg.contains("recursive_read_only"), "{msg}");
}

/// critest's `createNamespacePodSandbox` + a container with the same options.
fn namespace_pod(name: &str, opts: &NamespaceOption, log_dir: Option<&Path>) -> PodSandboxConfig {
    let mut config = framework_pod(name);
    config.dns_config = Some(DnsConfig::default());
    config.linux.as_mut().unwrap().security_context = Some(LinuxSandboxSecurityContext {
        namespace_options: Some(opts.clone()),
        ..Default::default()
    });
    if let Some(dir) = log_dir {
        config.log_directory = dir.display().to_string();
    }
    config
}

fn namespace_container(name: &str, opts: &NamespaceOption, command: &[&str]) -> ContainerConfig {
    ContainerConfig {
        linux: security(|sc| sc.namespace_options = Some(opts.clone())),
        ..framework_container(name, command)
    }
}

#[tokio::test]
async fn security_context_namespace_options_host_pid_ipc_network_pod_and_container_pid() {
    require_root!();
    let mut e = Env::start(27, &[BUSYBOX]).await;
    let ns = |pid: NamespaceMode, ipc: NamespaceMode, network: NamespaceMode| NamespaceOption {
        pid: pid as i32,
        ipc: ipc as i32,
        network: network as i32,
        ..Default::default()
    };
    use NamespaceMode::{Container as C, Node as N, Pod as P};

    // runtime should support HostPID: a process of one container shows in
    // a host-PID container (httpd stands in for nginx).
    let opts = ns(N, P, P);
    let pod = e
        .run_pod(namespace_pod("NamespaceOption-PodSandbox-hostpid", &opts, None))
        .await;
    let web = e
        .run(
            &pod,
            namespace_container("nginx-container-hostpid-1", &opts, &["httpd", "-f", "-p", "8080"]),
        )
        .await;
    let pid = exec_ok(&mut e, &web, &["pidof", "httpd"]).await;
    let pid = pid.trim().to_string();
    let other = e
        .run(
            &pod,
            namespace_container("container-with-HostPID-test-1", &opts, &["sh", "-c", "sleep 1000"]),
        )
        .await;
    let pids = exec_ok(&mut e, &other, &["sh", "-c", "pidof httpd || true"]).await;
    assert!(pids.split_whitespace().any(|p| p == pid), "httpd {pid} among {pids:?}");

    // runtime should support HostIpc is true / false
    let out = std::process::Command::new("ipcmk")
        .args(["-M", "1048576"])
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&out.stdout).to_string();
    let segment = out.trim().trim_start_matches("Shared memory id: ").to_string();
    struct Segment(String);
    impl Drop for Segment {
        fn drop(&mut self) {
            let _ = std::process::Command::new("ipcrm").args(["-m", &self.0]).status();
        }
    }
    let _segment = Segment(segment.clone());
    assert!(segment.parse::<u64>().is_ok(), "ipcmk: {out}");
    for (mode, visible) in [(N, true), (P, false)] {
        let opts = ns(P, mode, P);
        let pod = e
            .run_pod(namespace_pod(
                &format!("NamespaceOption-PodSandbox-ipc-{visible}"),
                &opts,
                None,
            ))
            .await;
        let id = e
            .run(
                &pod,
                namespace_container(&format!("namespace-container-ipc-{visible}"), &opts, PAUSE),
            )
            .await;
        // ipcs -m reads this table; berth's busybox has no ipcs.
        let table = exec_ok(&mut e, &id, &["cat", "/proc/sysvipc/shm"]).await;
        let ids: Vec<&str> = table
            .lines()
            .skip(1)
            .filter_map(|l| l.split_whitespace().nth(1))
            .collect();
        assert_eq!(
            ids.contains(&segment.as_str()),
            visible,
            "{mode:?}: {segment} in {ids:?}"
        );
    }

    // runtime should support PodPID: pid 1 is not the container's process.
    let opts = NamespaceOption {
        pid: P as i32,
        ..Default::default()
    };
    let pod = e
        .run_pod(namespace_pod("NamespaceOption-PodSandbox-podpid", &opts, None))
        .await;
    let id = e
        .run(
            &pod,
            namespace_container(
                "nginx-container-process-namespace-1",
                &opts,
                &["httpd", "-f", "-p", "8080"],
            ),
        )
        .await;
    let cmdline = exec_ok(&mut e, &id, &["cat", "/proc/1/cmdline"]).await;
    assert!(!cmdline.contains("httpd"), "pid 1 is the pod's init: {cmdline:?}");

    // runtime should support ContainerPID: pid 1 is the container's process.
    let opts = NamespaceOption {
        pid: C as i32,
        ..Default::default()
    };
    let pod = e
        .run_pod(namespace_pod("NamespaceOption-PodSandbox-ctrpid", &opts, None))
        .await;
    let id = e
        .run(
            &pod,
            namespace_container("nginx-container-pid-1", &opts, &["httpd", "-f", "-p", "8080"]),
        )
        .await;
    let cmdline = exec_ok(&mut e, &id, &["cat", "/proc/1/cmdline"]).await;
    assert!(
        cmdline.starts_with("httpd\0"),
        "pid 1 is the container's process: {cmdline:?}"
    );

    // runtime should support HostNetwork is true / false: `netstat -ln` in
    // the container lists a port the host listens on only with host network.
    let srv = std::net::TcpListener::bind("0.0.0.0:0").unwrap();
    let port = srv.local_addr().unwrap().port();
    for host_network in [true, false] {
        let opts = ns(P, P, if host_network { N } else { P });
        let name = format!("NamespaceOption-PodSandbox-hostnet-{host_network}");
        let dir = e.logs.path().join(&name);
        std::fs::create_dir_all(&dir).unwrap();
        let pod = e.run_pod(namespace_pod(&name, &opts, Some(&dir))).await;
        let mut c = namespace_container("container-with-HostNetwork-test-1", &opts, &["sh", "-c", "netstat -ln"]);
        c.log_path = "netstat.log".into();
        let id = e.run(&pod, c).await;
        e.wait_state(&id, ContainerState::ContainerExited).await;
        let log = std::fs::read_to_string(dir.join("netstat.log")).unwrap();
        assert_eq!(log.contains(&format!(":{port} ")), host_network, "port {port}: {log}");
    }
}

#[tokio::test]
async fn security_context_run_as_user_username_group_and_supplemental_groups() {
    require_root!();
    let mut e = Env::start(28, &[BUSYBOX]).await;
    let pod_config = with_log_dir(&e, framework_pod("create-PodSandbox-for-container-users"));
    let pod = e.run_pod(pod_config).await;

    // runtime should support SupplementalGroups
    let mut c = framework_container("container-with-SupplementalGroups-test-1", PAUSE);
    c.linux = security(|sc| sc.supplemental_groups = vec![1234, 5678]);
    let id = e.run(&pod, c).await;
    let groups = exec_ok(&mut e, &id, &["id", "-G"]).await;
    let groups: Vec<&str> = groups.split_whitespace().collect();
    assert!(groups.contains(&"1234") && groups.contains(&"5678"), "{groups:?}");

    // runtime should support RunAsUser
    let mut c = framework_container("container-with-RunAsUser-test-1", PAUSE);
    c.linux = security(|sc| sc.run_as_user = Some(Int64Value { value: 1001 }));
    let id = e.run(&pod, c).await;
    assert_eq!(exec_ok(&mut e, &id, &["id", "-u"]).await, "1001\n");

    // runtime should support RunAsUserName
    let mut c = framework_container("container-with-RunAsUserName-test-1", PAUSE);
    c.linux = security(|sc| sc.run_as_username = "nobody".into());
    let id = e.run(&pod, c).await;
    assert_eq!(exec_ok(&mut e, &id, &["id", "-nu"]).await, "nobody\n");

    // runtime should support RunAsGroup
    let name = "container-with-RunAsGroup-test-1";
    let mut c = framework_container(name, &["sh", "-c", "echo $(id -u):$(id -g)"]);
    c.linux = security(|sc| {
        sc.run_as_user = Some(Int64Value { value: 1001 });
        sc.run_as_group = Some(Int64Value { value: 1002 });
    });
    c.log_path = format!("{name}.log");
    let id = e.run(&pod, c).await;
    e.wait_state(&id, ContainerState::ContainerExited).await;
    let log = Path::new(&pod.1.log_directory).join(format!("{name}.log"));
    assert!(
        log_has(&log, "stdout", "1001:1002"),
        "{:?}",
        std::fs::read_to_string(&log)
    );

    // runtime should return error if RunAsGroup is set without RunAsUser
    let mut c = framework_container("container-with-RunAsGroup-without-RunAsUser-test-1", PAUSE);
    c.linux = security(|sc| sc.run_as_group = Some(Int64Value { value: 1002 }));
    let msg = expect_err(e.create(&pod, c).await, &[Code::InvalidArgument], "run_as_group alone");
    assert!(msg.contains("run_as_group"), "{msg}");

    // runtime should support that ReadOnlyRootfs is false / true
    for readonly in [false, true] {
        let name = format!("container-with-ReadOnlyRootfs-{readonly}-test-1");
        let mut c = framework_container(&name, &["sh", "-c", "touch test.go && [ -f test.go ] && echo 'Found'"]);
        c.linux = security(|sc| sc.readonly_rootfs = readonly);
        c.log_path = format!("{name}.log");
        let id = e.run(&pod, c).await;
        e.wait_state(&id, ContainerState::ContainerExited).await;
        let log = Path::new(&pod.1.log_directory).join(format!("{name}.log"));
        let (stream, text) = if readonly {
            ("stderr", "touch: test.go: Read-only file system")
        } else {
            ("stdout", "Found")
        };
        assert!(log_has(&log, stream, text), "{:?}", std::fs::read_to_string(&log));
    }
}

/// critest's `checkNetworkManagement`: `brctl addbr foobar` works or not.
async fn can_manage_network(e: &mut Env, id: &str) -> bool {
    let r = exec_timeout(e, id, &["brctl", "addbr", "foobar"], 30).await.unwrap();
    r.exit_code == 0
}

fn cap_field(status: &str, name: &str) -> u64 {
    let v = status
        .lines()
        .find_map(|l| l.strip_prefix(name))
        .unwrap_or_else(|| panic!("{name} in {status}"));
    u64::from_str_radix(v.trim(), 16).unwrap()
}

#[tokio::test]
async fn security_context_privileged_capabilities_masked_and_readonly_paths() {
    require_root!();
    let mut e = Env::start(29, &[BUSYBOX]).await;
    // runtime should support Privileged is true / false
    for privileged in [true, false] {
        let mut config = framework_pod(&format!("create-Privileged-PodSandbox-for-container-{privileged}"));
        config.linux.as_mut().unwrap().security_context = Some(LinuxSandboxSecurityContext {
            privileged,
            ..Default::default()
        });
        let pod = e.run_pod(config).await;
        let mut c = framework_container("container-with-isPrivileged-test-1", PAUSE);
        c.linux = security(|sc| sc.privileged = privileged);
        let id = e.run(&pod, c).await;
        assert_eq!(
            can_manage_network(&mut e, &id).await,
            privileged,
            "privileged {privileged}"
        );
    }

    let pod = e.run_pod(framework_pod("create-PodSandbox-for-container-caps")).await;
    let caps = |name: &str, add: &[&str], drop: &[&str]| {
        let mut c = framework_container(name, PAUSE);
        c.linux = security(|sc| {
            sc.capabilities = Some(Capability {
                add_capabilities: add.iter().map(|s| s.to_string()).collect(),
                drop_capabilities: drop.iter().map(|s| s.to_string()).collect(),
                ..Default::default()
            })
        });
        c
    };
    // runtime should support adding capability
    let id = e
        .run(
            &pod,
            caps("container-with-added-capability-test-1", &["NET_ADMIN"], &[]),
        )
        .await;
    assert!(can_manage_network(&mut e, &id).await);
    let id = e
        .run(&pod, framework_container("container-with-notCapability-test-1", PAUSE))
        .await;
    assert!(!can_manage_network(&mut e, &id).await);

    // runtime should support dropping capability (NET_RAW: no raw ICMP socket)
    let id = e
        .run(
            &pod,
            caps("container-with-dropped-capability-test-1", &[], &["NET_RAW"]),
        )
        .await;
    let status = exec_ok(&mut e, &id, &["cat", "/proc/self/status"]).await;
    assert_eq!(cap_field(&status, "CapBnd:") & (1 << 13), 0, "CAP_NET_RAW (13) dropped");
    let r = exec_timeout(&mut e, &id, &["ping", "-c", "1", "127.0.0.1"], 30)
        .await
        .unwrap();
    assert_ne!(r.exit_code, 0, "{r:?}");
    assert!(
        String::from_utf8_lossy(&r.stderr).contains("permission denied"),
        "{r:?}"
    );

    // runtime should support adding / dropping ALL capabilities
    let id = e
        .run(&pod, caps("container-with-added-all-capability-test-1", &["ALL"], &[]))
        .await;
    let status = exec_ok(&mut e, &id, &["cat", "/proc/self/status"]).await;
    assert_ne!(cap_field(&status, "CapBnd:"), 0, "{status}");
    let id = e
        .run(
            &pod,
            caps("container-with-dropped-all-capability-test-1", &[], &["ALL"]),
        )
        .await;
    let status = exec_ok(&mut e, &id, &["cat", "/proc/self/status"]).await;
    assert!(status.contains("CapBnd:\t0000000000000000"), "{status}");

    // runtime should support MaskedPaths. critest masks /bin/ls and expects
    // "/bin/sh: ls: Permission denied"; in berth's image /bin/ls is a
    // symlink to busybox (as /bin/sh is), so a file of its own is masked.
    let mut c = framework_container("container-with-maskedpaths-1", PAUSE);
    c.linux = security(|sc| sc.masked_paths = vec!["/etc/os-release".into()]);
    let id = e.run(&pod, c).await;
    assert_eq!(exec_ok(&mut e, &id, &["cat", "/etc/os-release"]).await, "");

    // runtime should support ReadonlyPaths
    let mut c = framework_container("container-with-readonlypaths-1", PAUSE);
    c.linux = security(|sc| sc.readonly_paths = vec!["/tmp".into()]);
    let id = e.run(&pod, c).await;
    let r = exec_timeout(&mut e, &id, &["touch", "/tmp/test"], 30).await.unwrap();
    assert_ne!(r.exit_code, 0);
    assert_eq!(
        String::from_utf8_lossy(&r.stderr),
        "touch: /tmp/test: Read-only file system\n"
    );
}

#[tokio::test]
async fn security_context_seccomp_unconfined_localhost_default_nil_and_sethostname() {
    require_root!();
    let mut e = Env::start(30, &[BUSYBOX]).await;
    let profiles = tempfile::tempdir().unwrap();
    let block = |name: &str, syscalls: &str| {
        let path = profiles.path().join(name);
        std::fs::write(
            &path,
            format!(
                r#"{{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{{"names": [{syscalls}], "action": "SCMP_ACT_ERRNO"}}]}}"#
            ),
        )
        .unwrap();
        path.display().to_string()
    };
    let block_hostname = block("block-host-name.json", r#""sethostname""#);
    let block_chmod = block("block-chmod.json", r#""chmod", "fchmodat""#);
    let profile = |t: security_profile::ProfileType, r: &str| SecurityProfile {
        profile_type: t as i32,
        localhost_ref: r.into(),
    };
    use security_profile::ProfileType as T;

    // critest's seccompTestContainer: the profile on the pod and the container.
    for (i, (p, check, want_err, want)) in [
        (
            Some(profile(T::Unconfined, "")),
            vec!["grep", "Seccomp:", "/proc/self/status"],
            false,
            "0",
        ),
        (
            Some(profile(T::Localhost, &block_chmod)),
            vec!["chmod", "400", "/"],
            true,
            "Operation not permitted",
        ),
        (
            Some(SecurityProfile::default()),
            vec!["grep", "Seccomp:", "/proc/self/status"],
            false,
            "2",
        ),
        (None, vec!["grep", "Seccomp:", "/proc/self/status"], false, "0"),
    ]
    .into_iter()
    .enumerate()
    {
        let mut config = framework_pod(&format!("seccomp-sandbox-{i}"));
        config.linux.as_mut().unwrap().security_context = Some(LinuxSandboxSecurityContext {
            seccomp: p.clone(),
            ..Default::default()
        });
        let pod = e.run_pod(config).await;
        let mut c = framework_container(&format!("seccomp-container-{i}"), PAUSE);
        c.linux = security(|sc| sc.seccomp = p.clone());
        let id = e.run(&pod, c).await;
        let r = exec_timeout(&mut e, &id, &check, 30).await.unwrap();
        let (out, err) = (String::from_utf8_lossy(&r.stdout), String::from_utf8_lossy(&r.stderr));
        if want_err {
            assert!(r.exit_code != 0 && err.contains(want), "{p:?}: {r:?}");
        } else {
            assert!(r.exit_code == 0 && out.contains(want), "{p:?}: {r:?}");
        }
    }

    // sethostname with SYS_ADMIN: allowed unconfined, blocked by a
    // localhost profile, allowed again when privileged (the profile is
    // ignored).
    let plain = e
        .run_pod(framework_pod("create-PodSandbox-for-container-seccomp"))
        .await;
    let mut config = framework_pod("create-Privileged-PodSandbox-for-seccomp");
    config.linux.as_mut().unwrap().security_context = Some(LinuxSandboxSecurityContext {
        privileged: true,
        ..Default::default()
    });
    let privileged_pod = e.run_pod(config).await;
    for (i, (pod, p, privileged, settable)) in [
        (&plain, profile(T::Unconfined, ""), false, true),
        (&plain, profile(T::Localhost, &block_hostname), false, false),
        (&privileged_pod, profile(T::Localhost, &block_hostname), true, true),
    ]
    .into_iter()
    .enumerate()
    {
        let mut c = framework_container(
            &format!("container-with-block-hostname-seccomp-profile-test-{i}"),
            &["sleep", "60"],
        );
        c.linux = security(|sc| {
            sc.privileged = privileged;
            sc.capabilities = Some(Capability {
                add_capabilities: if privileged { vec![] } else { vec!["SYS_ADMIN".into()] },
                ..Default::default()
            });
            sc.seccomp = Some(p.clone());
        });
        let id = e.run(pod, c).await;
        let r = exec_timeout(&mut e, &id, &["hostname", "ANewHostName"], 30)
            .await
            .unwrap();
        assert_eq!(r.exit_code == 0, settable, "{p:?} privileged {privileged}: {r:?}");
    }
    // A localhost profile that does not exist is refused at create, naming it.
    let mut c = framework_container("seccomp-missing", PAUSE);
    c.linux = security(|sc| sc.seccomp = Some(profile(T::Localhost, "/nonexistent/profile.json")));
    let msg = expect_err(
        e.create(&plain, c).await,
        &[Code::InvalidArgument, Code::NotFound],
        "missing profile",
    );
    assert!(msg.contains("/nonexistent/profile.json"), "{msg}");
}

#[tokio::test]
async fn apparmor_and_selinux_are_reported_unavailable_not_faked() {
    require_root!();
    let mut e = Env::start(31, &[BUSYBOX]).await;
    let pod = e.run_pod(framework_pod("apparmor-pod")).await;
    let mut c = framework_container("apparmor-unconfined", PAUSE);
    c.linux = security(|sc| {
        sc.apparmor = Some(SecurityProfile {
            profile_type: security_profile::ProfileType::Unconfined as i32,
            localhost_ref: String::new(),
        })
    });
    // Unconfined asks for nothing: it runs.
    let id = e.run(&pod, c).await;
    assert_eq!(e.state(&id).await, ContainerState::ContainerRunning);
    // A localhost AppArmor profile cannot be applied here: refused, named.
    let mut c = framework_container("apparmor-localhost", PAUSE);
    c.linux = security(|sc| {
        sc.apparmor = Some(SecurityProfile {
            profile_type: security_profile::ProfileType::Localhost as i32,
            localhost_ref: "cri-validate-apparmor-test-deny-write".into(),
        })
    });
    let msg = expect_err(
        e.create(&pod, c).await,
        &[Code::InvalidArgument, Code::FailedPrecondition, Code::Unimplemented],
        "apparmor localhost",
    );
    assert!(msg.to_lowercase().contains("apparmor"), "{msg}");
}

#[tokio::test]
async fn networking_dns_config_hostname_and_port_mappings() {
    require_root!();
    let mut e = Env::start(32, &[BUSYBOX]).await;
    // runtime should support DNS config
    let mut config = framework_pod("create-PodSandbox-with-DNS-config-1");
    config.dns_config = Some(DnsConfig {
        servers: vec!["10.10.10.10".into()],
        searches: vec!["google.com".into()],
        options: vec!["ndots:8".into()],
    });
    let pod = e.run_pod(config).await;
    let id = e
        .run(&pod, framework_container("container-for-DNS-config-test-1", PAUSE))
        .await;
    let resolv = exec_ok(&mut e, &id, &["cat", "/etc/resolv.conf"]).await;
    for want in ["nameserver 10.10.10.10", "search google.com", "options ndots:8"] {
        assert!(resolv.contains(want), "{want} in {resolv}");
    }

    // runtime should support set hostname
    let mut config = framework_pod("create-PodSandbox-with-hostname-1");
    config.hostname = "test-hostname".into();
    let pod = e.run_pod(config).await;
    let id = e
        .run(&pod, framework_container("container-for-hostname-test-1", PAUSE))
        .await;
    assert_eq!(exec_ok(&mut e, &id, &["hostname"]).await.trim(), "test-hostname");

    // runtime should support port mapping with only container port: the
    // pod's IP:port serves the page (httpd stands in for nginx).
    let mut config = with_log_dir(&e, framework_pod("PodSandbox-for-multi-container-test-1"));
    config.port_mappings = vec![PortMapping {
        container_port: 80,
        ..Default::default()
    }];
    let pod = e.run_pod(config).await;
    let mut web = framework_container("httpd-1", &["httpd", "-f", "-v", "-p", "80", "-h", "/var/www"]);
    web.log_path = "httpd-1.log".into();
    let web = e.run(&pod, web).await;
    // Multiple Containers: a second container (no `linux` at all) beside it.
    let mut bb = framework_container("busybox-1", &["sh", "-c", "echo hello World; sleep 1000"]);
    bb.linux = None;
    bb.log_path = "busybox-1.log".into();
    let bb = e.run(&pod, bb).await;
    let ip = pod_state(&mut e, &pod.0).await.network.unwrap().ip;
    let page = http_get_eventually(&format!("{ip}:80")).await;
    assert!(page.starts_with("HTTP/1.") && page.contains(" 200 "), "{page}");
    assert_eq!(exec_ok(&mut e, &web, &["echo", "httpd"]).await, "httpd\n");
    assert_eq!(exec_ok(&mut e, &bb, &["echo", "busybox"]).await, "busybox\n");
    let log = e.status(&bb).await.unwrap().log_path;
    berth_tests::cri_env::wait_for("busybox's log", || {
        std::fs::read_to_string(&log).is_ok_and(|l| l.contains("hello World"))
    })
    .await;

    // runtime should support port mapping with host port and container port
    let host_port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let mut config = framework_pod("create-PodSandbox-with-port-mapping-1");
    config.port_mappings = vec![PortMapping {
        container_port: 80,
        host_port: host_port.into(),
        ..Default::default()
    }];
    let pod = e.run_pod(config).await;
    e.run(
        &pod,
        framework_container(
            "container-for-host-port",
            &["httpd", "-f", "-p", "80", "-h", "/var/www"],
        ),
    )
    .await;
    let page = http_get_eventually(&format!("127.0.0.1:{host_port}")).await;
    assert!(page.contains(" 200 ") && page.contains("hello from berth"), "{page}");
}

async fn http_get_eventually(addr: &str) -> String {
    use std::io::{Read, Write};
    let mut last = String::new();
    for _ in 0..200 {
        match std::net::TcpStream::connect(addr).and_then(|mut s| {
            s.set_read_timeout(Some(Duration::from_secs(5)))?;
            s.write_all(b"GET / HTTP/1.0\r\n\r\n")?;
            let mut out = String::new();
            s.read_to_string(&mut out)?;
            Ok(out)
        }) {
            Ok(page) if !page.is_empty() => return page,
            Ok(_) => last = "empty answer".into(),
            Err(err) => last = err.to_string(),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("GET http://{addr}/: {last}");
}

#[tokio::test]
async fn container_status_after_exit_and_list_filters_by_state_pod_and_labels() {
    require_root!();
    let mut e = Env::start(33, &[BUSYBOX]).await;
    let pod = e.pod("statusfilters", false).await;
    let other = e.pod("statusfilters-other", false).await;
    let failing = e.run(&pod, shell("failing", "echo bye; exit 3")).await;
    let st = e.wait_state(&failing, ContainerState::ContainerExited).await;
    assert_eq!((st.exit_code, st.reason.as_str()), (3, "Error"));
    assert!(st.created_at > 0 && st.started_at >= st.created_at && st.finished_at >= st.started_at);
    let running = e.run(&other, shell("running", SERVE)).await;
    let created = e.create(&pod, shell("created", SERVE)).await.unwrap();

    let state = |s: ContainerState| Some(ContainerStateValue { state: s as i32 });
    let ids = |v: Vec<Container>| v.into_iter().map(|c| c.id).collect::<Vec<_>>();
    for (filter, want) in [
        (
            ContainerFilter {
                state: state(ContainerState::ContainerExited),
                ..Default::default()
            },
            vec![failing.clone()],
        ),
        (
            ContainerFilter {
                state: state(ContainerState::ContainerRunning),
                ..Default::default()
            },
            vec![running.clone()],
        ),
        (
            ContainerFilter {
                state: state(ContainerState::ContainerCreated),
                ..Default::default()
            },
            vec![created.clone()],
        ),
        (
            ContainerFilter {
                pod_sandbox_id: other.0.clone(),
                ..Default::default()
            },
            vec![running.clone()],
        ),
        (
            ContainerFilter {
                pod_sandbox_id: pod.0.clone(),
                label_selector: HashMap::from([("test".to_string(), "created".to_string())]),
                ..Default::default()
            },
            vec![created.clone()],
        ),
    ] {
        assert_eq!(ids(list_containers(&mut e, filter.clone()).await), want, "{filter:?}");
    }
    let _ = Duration::ZERO;
}

#[tokio::test]
async fn container_oom_should_terminate_with_exit_code_137_and_reason_oomkilled() {
    require_root!();
    let mut e = Env::start(34, &[BUSYBOX]).await;
    let mut config = framework_pod("create-Privileged-PodSandbox-for-oom");
    config.linux.as_mut().unwrap().security_context = Some(LinuxSandboxSecurityContext {
        privileged: true,
        ..Default::default()
    });
    let pod = e.run_pod(config).await;
    let mut c = framework_container("OOM-test-1", &["sh", "-c", "dd if=/dev/zero of=/dev/null bs=20M"]);
    c.linux = Some(LinuxContainerConfig {
        resources: Some(LinuxContainerResources {
            memory_limit_in_bytes: 15 << 20,
            memory_swap_limit_in_bytes: 15 << 20,
            ..Default::default()
        }),
        ..Default::default()
    });
    let id = e.run(&pod, c).await;
    let st = e.wait_state(&id, ContainerState::ContainerExited).await;
    assert_eq!((st.reason.as_str(), st.exit_code), ("OOMKilled", 137), "{st:?}");
}

#[tokio::test]
async fn idempotence_stop_and_remove_of_unknown_or_stopped_pods_containers_and_images() {
    require_root!();
    let mut e = Env::start(35, &[BUSYBOX]).await;
    // critest passes a fresh UUID for the "not found" cases.
    let unknown = "5b0b7e3c-8a4e-4f3a-9d6c-2f1e0a9b8c7d".to_string();
    e.rt.stop_pod_sandbox(StopPodSandboxRequest {
        pod_sandbox_id: unknown.clone(),
    })
    .await
    .expect("StopPodSandbox of an unknown pod");
    e.rt.remove_pod_sandbox(RemovePodSandboxRequest {
        pod_sandbox_id: unknown.clone(),
    })
    .await
    .expect("RemovePodSandbox of an unknown pod");
    e.rt.stop_container(StopContainerRequest {
        container_id: unknown.clone(),
        timeout: 0,
    })
    .await
    .expect("StopContainer of an unknown container");
    e.rt.remove_container(RemoveContainerRequest {
        container_id: unknown.clone(),
    })
    .await
    .expect("RemoveContainer of an unknown container");
    let mut ic = e.d.images().await;
    for _ in 0..2 {
        berth_tests::ops::remove(&mut ic, &"0".repeat(64))
            .await
            .expect("RemoveImage of an unknown image ID");
    }

    // StopPodSandbox twice, the pod NOTREADY both times.
    let (pod, _) = e.run_pod(framework_pod("idempotence-pod-1")).await;
    for _ in 0..2 {
        e.rt.stop_pod_sandbox(StopPodSandboxRequest {
            pod_sandbox_id: pod.clone(),
        })
        .await
        .unwrap();
        assert_eq!(
            pod_state(&mut e, &pod).await.state,
            PodSandboxState::SandboxNotready as i32
        );
    }
    // A container stopped, removed, removed again.
    let pod = e.run_pod(framework_pod("create-PodSandbox-for-container-idem")).await;
    let id = e.run(&pod, framework_container("idempotence-container-1", PAUSE)).await;
    e.stop(&id, 60).await;
    assert_eq!(e.state(&id).await, ContainerState::ContainerExited);
    e.remove(&id).await;
    e.remove(&id).await;
}
