//! What critest (cri-tools `pkg/validate`) does not check, over the CRI
//! socket of a real berthd. critest itself runs in `critest.rs`, every spec,
//! with berth's stand-ins for its images; this file keeps the checks that
//! go beyond its specs or that it cannot make on this host:
//!
//! - ListPodSandbox and ListContainers filters the kubelet uses (labels,
//!   state, pod) and a failed container's status (exit code, reason, times);
//! - ExecSync of a failing command (its exit code and both streams, no gRPC
//!   error) and the created/started/finished order of a stopped container;
//! - a read-only bind is read-only itself, not only its submounts;
//! - a seccomp localhost profile that does not exist is refused naming it;
//! - AppArmor (critest skips its AppArmor specs when the kernel has none):
//!   `unconfined` runs, a localhost profile is refused naming AppArmor.
//!
//! Pods are built the way critest's framework builds them: names with
//! capitals, no hostname, no log directory and an empty `linux` unless the
//! test sets them. Each test has its own berthd and network (`berthcNN`,
//! `10.2NN.0.0/24`, NN in 20..=39) and removes what it made on drop, also on
//! failure.

use std::collections::HashMap;

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

async fn exec_timeout(e: &mut Env, id: &str, cmd: &[&str], timeout: i64) -> Result<ExecSyncResponse, tonic::Status> {
    e.rt.exec_sync(ExecSyncRequest {
        container_id: id.into(),
        cmd: cmd.iter().map(|s| s.to_string()).collect(),
        timeout,
    })
    .await
    .map(|r| r.into_inner())
}

#[tokio::test]
async fn pod_list_filters_by_label_and_state() {
    require_root!();
    let mut e = Env::start(21, &[]).await;
    let (id, _) = e.run_pod(framework_pod("PodSandbox-for-create-test-1")).await;
    let mut config = framework_pod("PodSandbox-with-attributes-1");
    let md = config.metadata.clone().unwrap();
    config
        .labels
        .insert("io.kubernetes.pod.name".to_string(), md.name.clone());
    let (attr, _) = e.run_pod(config).await;

    let by_label = list_pods(
        &mut e,
        PodSandboxFilter {
            label_selector: HashMap::from([("io.kubernetes.pod.name".to_string(), md.name.clone())]),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(by_label.iter().map(|p| &p.id).collect::<Vec<_>>(), [&attr]);

    e.rt.stop_pod_sandbox(StopPodSandboxRequest {
        pod_sandbox_id: id.clone(),
    })
    .await
    .unwrap();
    assert_eq!(
        pod_state(&mut e, &id).await.state,
        PodSandboxState::SandboxNotready as i32
    );
    let state = |s: PodSandboxState| PodSandboxFilter {
        state: Some(PodSandboxStateValue { state: s as i32 }),
        ..Default::default()
    };
    let not_ready = list_pods(&mut e, state(PodSandboxState::SandboxNotready)).await;
    assert_eq!(not_ready.iter().map(|p| &p.id).collect::<Vec<_>>(), [&id]);
    let ready = list_pods(&mut e, state(PodSandboxState::SandboxReady)).await;
    assert_eq!(ready.iter().map(|p| &p.id).collect::<Vec<_>>(), [&attr]);
}

#[tokio::test]
async fn container_timestamps_and_exec_sync_of_a_failing_command() {
    require_root!();
    let mut e = Env::start(23, &[BUSYBOX]).await;
    let pod = e.run_pod(framework_pod("create-PodSandbox-for-container-1")).await;
    let id = e
        .run(&pod, framework_container("container-for-stop-test-1", PAUSE))
        .await;
    assert_eq!(e.state(&id).await, ContainerState::ContainerRunning);

    // A failing command: its exit code and both streams, no gRPC error.
    let r = exec_timeout(&mut e, &id, &["sh", "-c", "echo out; echo err >&2; exit 3"], 30)
        .await
        .unwrap();
    assert_eq!(
        (r.exit_code, &r.stdout[..], &r.stderr[..]),
        (3, &b"out\n"[..], &b"err\n"[..])
    );

    e.stop(&id, 60).await;
    let st = e.status(&id).await.unwrap();
    assert_eq!(st.state, ContainerState::ContainerExited as i32);
    assert!(
        st.finished_at >= st.started_at && st.started_at >= st.created_at && st.created_at > 0,
        "{st:?}"
    );
}

#[tokio::test]
async fn a_read_only_bind_is_read_only_itself() {
    require_root!();
    let mut e = Env::start(26, &[BUSYBOX]).await;
    let pod = e.run_pod(framework_pod("create-PodSandbox-for-ro-bind")).await;
    // critest's non-recursive read-only spec checks that a tmpfs below the
    // bind stays writable; the bind itself must not be.
    let host = tempfile::tempdir().unwrap();
    let mut c = framework_container("test-mount-ro", PAUSE);
    c.linux = None;
    c.mounts = vec![Mount {
        host_path: host.path().display().to_string(),
        container_path: "/mnt".into(),
        readonly: true,
        ..Default::default()
    }];
    let id = e.run(&pod, c).await;
    let r = exec_timeout(&mut e, &id, &["touch", "/mnt/file"], 30).await.unwrap();
    assert_ne!(r.exit_code, 0, "the bind itself is read-only: {r:?}");
    assert_eq!(
        String::from_utf8_lossy(&r.stderr),
        "touch: /mnt/file: Read-only file system\n"
    );
    assert!(!host.path().join("file").exists());
}

#[tokio::test]
async fn a_missing_seccomp_localhost_profile_is_refused_naming_it() {
    require_root!();
    let mut e = Env::start(30, &[BUSYBOX]).await;
    let pod = e
        .run_pod(framework_pod("create-PodSandbox-for-container-seccomp"))
        .await;
    let mut c = framework_container("seccomp-missing", PAUSE);
    c.linux = security(|sc| {
        sc.seccomp = Some(SecurityProfile {
            profile_type: security_profile::ProfileType::Localhost as i32,
            localhost_ref: "/nonexistent/profile.json".into(),
        })
    });
    let msg = expect_err(
        e.create(&pod, c).await,
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
}
