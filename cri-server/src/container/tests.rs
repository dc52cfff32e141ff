use berth_runtime::state::ExitRecord;
use k8s_cri::v1::{ContainerConfig, ContainerMetadata, PodSandboxConfig};

use super::*;
use crate::store::{PodRecord, PodState};

fn rec(state: ContainerState) -> ContainerRecord {
    ContainerRecord {
        id: "c1".into(),
        pod_id: "p1".into(),
        name_key: "k".into(),
        config: ContainerConfig {
            metadata: Some(ContainerMetadata {
                name: "c".into(),
                attempt: 0,
            }),
            ..Default::default()
        },
        image_id: "sha256:abc".into(),
        image_ref: "busybox".into(),
        state,
        created_at: 1,
        started_at: 0,
        finished_at: 0,
        exit_code: 0,
        reason: String::new(),
        message: String::new(),
        log_path: None,
        stop_signal: None,
        resources: None,
        lower_dirs: Vec::new(),
        user: None,
    }
}

fn exit(code: i32, oom: bool) -> ExitRecord {
    ExitRecord {
        exit_code: code,
        signal: None,
        exited_at: "2024-05-01T10:00:00.123456789Z".into(),
        oom_killed: oom,
        error: None,
    }
}

#[test]
fn exit_reasons_follow_containerd() {
    assert_eq!(exit_reason(&exit(0, false)), "Completed");
    assert_eq!(exit_reason(&exit(3, false)), "Error");
    assert_eq!(exit_reason(&exit(137, true)), "OOMKilled");
}

#[test]
fn an_exit_record_makes_a_running_record_exited() {
    let mut r = rec(ContainerState::Running);
    assert!(apply_view(&mut r, EngineView::Exited(exit(3, false), None)));
    assert_eq!(r.state, ContainerState::Exited);
    assert_eq!(r.exit_code, 3);
    assert_eq!(r.reason, "Error");
    assert_eq!(r.finished_at, 1_714_557_600_123_456_789);
}

#[test]
fn exited_records_are_final() {
    let mut r = rec(ContainerState::Exited);
    assert!(!apply_view(&mut r, EngineView::Running { started: None }));
    assert!(!apply_view(&mut r, EngineView::Gone));
    assert_eq!(r.state, ContainerState::Exited);
}

#[test]
fn lost_monitor_is_unknown_and_lost_engine_state_is_exited_unknown() {
    let mut r = rec(ContainerState::Running);
    assert!(apply_view(&mut r, EngineView::Lost));
    assert_eq!(r.state, ContainerState::Unknown);
    let mut r = rec(ContainerState::Created);
    assert!(apply_view(&mut r, EngineView::Gone));
    assert_eq!(r.state, ContainerState::Exited);
    assert_eq!(r.reason, "Unknown");
}

#[test]
fn a_start_the_record_missed_is_taken_from_the_engine() {
    let mut r = rec(ContainerState::Created);
    assert!(apply_view(
        &mut r,
        EngineView::Running {
            started: Some("2024-05-01T10:00:00Z".into())
        }
    ));
    assert_eq!(r.state, ContainerState::Running);
    assert_eq!(r.started_at, 1_714_557_600_000_000_000);
    assert!(!apply_view(&mut r, EngineView::Running { started: None }));
    assert!(!apply_view(&mut r, EngineView::Created));
}

#[test]
fn stop_signals_parse_in_every_spelling() {
    assert_eq!(parse_signal("SIGINT"), Some(Signal::SIGINT));
    assert_eq!(parse_signal("int"), Some(Signal::SIGINT));
    assert_eq!(parse_signal("15"), Some(Signal::SIGTERM));
    assert_eq!(parse_signal("SIGNOPE"), None);
    let mut r = rec(ContainerState::Running);
    assert_eq!(stop_signal(&r), Signal::SIGTERM);
    r.stop_signal = Some("SIGQUIT".into());
    assert_eq!(stop_signal(&r), Signal::SIGQUIT);
}

fn pod(log_directory: &str) -> PodRecord {
    PodRecord {
        id: "p1".into(),
        name_key: "k".into(),
        config: PodSandboxConfig {
            log_directory: log_directory.into(),
            ..Default::default()
        },
        runtime_handler: String::new(),
        state: PodState::Ready,
        created_at: 0,
        dir: "/x".into(),
        netns: None,
        ipcns: None,
        utsns: None,
        pidns: None,
        ips: Vec::new(),
        network: None,
        cgroup_parent: "/berth/pods/p1".into(),
    }
}

#[test]
fn log_paths_stay_inside_the_log_directory() {
    let cfg = |p: &str| ContainerConfig {
        log_path: p.into(),
        ..Default::default()
    };
    let p = pod("/var/log/pods/x");
    assert_eq!(
        create::log_path(&p, &cfg("c/0.log")).unwrap(),
        Some("/var/log/pods/x/c/0.log".into())
    );
    assert_eq!(create::log_path(&p, &cfg("")).unwrap(), None);
    for bad in ["../0.log", "/etc/passwd", "c/../../0.log"] {
        let err = create::log_path(&p, &cfg(bad)).unwrap_err();
        assert_eq!(err.code(), tonic::Code::InvalidArgument, "{bad}");
        assert!(err.to_string().contains("log_path"), "{err}");
    }
    assert!(create::log_path(&pod(""), &cfg("0.log")).is_err());
}

#[test]
fn writable_layer_usage_counts_hardlinks_once() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("d")).unwrap();
    std::fs::write(dir.path().join("d/f"), vec![1u8; 10_000]).unwrap();
    std::fs::hard_link(dir.path().join("d/f"), dir.path().join("g")).unwrap();
    let (bytes, inodes) = stats::usage(dir.path());
    assert_eq!(inodes, 2, "d and f");
    assert!(bytes >= 10_000, "{bytes}");
    assert_eq!(stats::usage(&dir.path().join("missing")), (0, 0));
}

#[test]
fn view_changes_agrees_with_apply_view() {
    let views = || {
        vec![
            EngineView::Created,
            EngineView::Running {
                started: Some("2026-01-01T00:00:00Z".into()),
            },
            EngineView::Exited(exit(0, false), None),
            EngineView::Lost,
            EngineView::Gone,
        ]
    };
    for state in [
        ContainerState::Created,
        ContainerState::Running,
        ContainerState::Exited,
        ContainerState::Unknown,
    ] {
        for view in views() {
            let predicted = view_changes(&rec(state), &view);
            let mut r = rec(state);
            assert_eq!(predicted, apply_view(&mut r, view), "{state:?}");
        }
    }
}
