//! Containers over the CRI socket of a real berthd, driven as the kubelet
//! drives them: create, start, exec, stop, remove, status and list; the
//! image's Entrypoint/Cmd/Env/WorkingDir/USER; security contexts; logs;
//! resources; and a berthd SIGKILLed while containers run.
//!
//! Each test gets its own berthd with its own bridge and subnet (an empty
//! CNI conf dir, so the built-in network is used) and removes its pods
//! (and with them their containers) when it ends, also on failure.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use berth_tests::cri::*;
use berth_tests::cri_env::{log_file, meta, security, shell, wait_for, Env, SERVE};
use berth_tests::ops::{self, expect_err};
use berth_tests::require_root;
use tonic::Code;

#[tokio::test]
async fn container_lifecycle_create_start_exec_stop_remove() {
    require_root!();
    let mut e = Env::start(10, &["berth/busybox:latest"]).await;
    let pod = e.pod("life", false).await;
    let id = e.create(&pod, shell("web", SERVE)).await.unwrap();
    let st = e.status(&id).await.unwrap();
    assert_eq!(st.state, ContainerState::ContainerCreated as i32);
    assert!(st.created_at > 0 && st.started_at == 0);
    assert_eq!(st.image.as_ref().unwrap().image, Env::image("berth/busybox:latest"));
    assert!(st.image_ref.starts_with("sha256:"), "{}", st.image_ref);
    assert_eq!(st.labels["test"], "web");
    assert_eq!(PathBuf::from(&st.log_path), log_file(&pod.1, "web"));

    e.rt.start_container(StartContainerRequest {
        container_id: id.clone(),
    })
    .await
    .unwrap();
    let st = e.status(&id).await.unwrap();
    assert_eq!(st.state, ContainerState::ContainerRunning as i32);
    assert!(st.started_at >= st.created_at);
    let again =
        e.rt.start_container(StartContainerRequest {
            container_id: id.clone(),
        })
        .await;
    expect_err(again, &[Code::FailedPrecondition], "starting a running container");

    assert_eq!(e.sh(&id, "hostname").await, "life");
    assert_eq!(e.sh(&id, "id -u").await, "0");
    let r = e
        .exec(&id, &["sh", "-c", "echo out; echo err >&2; exit 3"])
        .await
        .unwrap();
    assert_eq!(r.exit_code, 3);
    assert_eq!(r.stdout, b"out\n");
    assert_eq!(r.stderr, b"err\n");
    let timed_out =
        e.rt.exec_sync(ExecSyncRequest {
            container_id: id.clone(),
            cmd: vec!["sleep".into(), "30".into()],
            timeout: 1,
        })
        .await;
    expect_err(timed_out, &[Code::DeadlineExceeded], "ExecSync past its timeout");
    expect_err(e.exec(&id, &[]).await, &[Code::InvalidArgument], "ExecSync without cmd");

    // Filters: by ID prefix, pod, state, labels.
    let list = |f: ContainerFilter| ListContainersRequest { filter: Some(f) };
    let found =
        e.rt.list_containers(list(ContainerFilter {
            id: id[..12].into(),
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner()
        .containers;
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].pod_sandbox_id, pod.0);
    let exited =
        e.rt.list_containers(list(ContainerFilter {
            state: Some(ContainerStateValue {
                state: ContainerState::ContainerExited as i32,
            }),
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner()
        .containers;
    assert!(exited.is_empty());
    let by_label =
        e.rt.list_containers(list(ContainerFilter {
            label_selector: HashMap::from([("test".to_string(), "nope".to_string())]),
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner()
        .containers;
    assert!(by_label.is_empty());

    e.stop(&id, 10).await;
    let st = e.status(&id).await.unwrap();
    assert_eq!(st.state, ContainerState::ContainerExited as i32);
    assert_eq!(st.exit_code, 0, "the TERM trap exits 0");
    assert_eq!(st.reason, "Completed");
    assert!(st.finished_at >= st.started_at);
    expect_err(
        e.exec(&id, &["true"]).await,
        &[Code::FailedPrecondition],
        "ExecSync in an exited container",
    );
    e.stop(&id, 10).await;
    e.remove(&id).await;
    e.remove(&id).await;
    e.stop(&id, 10).await;
    expect_err(e.status(&id).await, &[Code::NotFound], "status of a removed container");
    assert!(
        log_file(&pod.1, "web").exists(),
        "the log file is the kubelet's to remove"
    );
}

#[tokio::test]
async fn exit_code_and_error_reason_of_a_failing_container() {
    require_root!();
    let mut e = Env::start(11, &["berth/busybox:latest"]).await;
    let pod = e.pod("fail", false).await;
    let id = e.run(&pod, shell("fail", "echo hello; echo oops >&2; exit 7")).await;
    let st = e.wait_state(&id, ContainerState::ContainerExited).await;
    assert_eq!(st.exit_code, 7);
    assert_eq!(st.reason, "Error");
    let log = std::fs::read_to_string(log_file(&pod.1, "fail")).unwrap();
    let lines: Vec<&str> = log.lines().collect();
    assert_eq!(lines.len(), 2, "{log}");
    for (line, (stream, text)) in lines.iter().zip([("stdout", "hello"), ("stderr", "oops")]) {
        let parts: Vec<&str> = line.splitn(4, ' ').collect();
        assert!(
            parts[0].contains('T') && parts[0].ends_with('Z') || parts[0].contains('+'),
            "{line}"
        );
        assert_eq!(&parts[1..], &[stream, "F", text], "{line}");
    }
}

#[tokio::test]
async fn image_entrypoint_env_workdir_and_user_merge_with_the_config() {
    require_root!();
    let mut e = Env::start(12, &["berth/user:v1", "berth/username:v1"]).await;
    let pod = e.pod("merge", false).await;
    // No command: the image's Entrypoint + Cmd as USER 1000 in WorkingDir.
    let cfg = ContainerConfig {
        metadata: meta("img"),
        image: Some(ops::spec(&Env::image("berth/user:v1"))),
        log_path: "img/0.log".into(),
        ..Default::default()
    };
    let id = e.run(&pod, cfg.clone()).await;
    e.wait_state(&id, ContainerState::ContainerExited).await;
    let log = std::fs::read_to_string(log_file(&pod.1, "img")).unwrap();
    assert!(log.contains("uid=1000"), "{log}");
    assert!(log.contains("/home/berth"), "{log}");
    assert!(log.contains(" F bar"), "{log}");

    // args replace Cmd (Entrypoint kept), envs add to / override the image's,
    // working_dir and run_as_user / run_as_group override the image's.
    let cfg = ContainerConfig {
        metadata: meta("over"),
        args: vec![format!("echo $FOO $EXTRA; pwd; id -u; id -g; {SERVE}")],
        envs: vec![
            KeyValue {
                key: "FOO".into(),
                value: "baz".into(),
            },
            KeyValue {
                key: "EXTRA".into(),
                value: "x".into(),
            },
        ],
        working_dir: "/tmp".into(),
        log_path: "over/0.log".into(),
        linux: security(|sc| {
            sc.run_as_user = Some(Int64Value { value: 0 });
            sc.run_as_group = Some(Int64Value { value: 65534 });
        }),
        ..cfg.clone()
    };
    let id = e.run(&pod, cfg).await;
    assert_eq!(e.sh(&id, "id -u; id -g").await, "0\n65534");
    let log_path = log_file(&pod.1, "over");
    wait_for("the log", || {
        std::fs::read_to_string(&log_path).is_ok_and(|l| l.lines().count() >= 4)
    })
    .await;
    let log = std::fs::read_to_string(&log_path).unwrap();
    let text: Vec<&str> = log.lines().map(|l| l.splitn(4, ' ').nth(3).unwrap()).collect();
    assert_eq!(text, ["baz x", "/tmp", "0", "65534"]);
    // The image's StopSignal (SIGINT) is what StopContainer sends: the
    // TERM trap does not run, SIGINT ends the shell.
    e.stop(&id, 5).await;
    let st = e.status(&id).await.unwrap();
    assert_eq!(st.exit_code, 130, "killed by SIGINT: {st:?}");

    // run_as_username resolves in the image's /etc/passwd.
    let cfg = ContainerConfig {
        metadata: meta("byname"),
        image: Some(ops::spec(&Env::image("berth/username:v1"))),
        command: vec!["sh".into(), "-c".into(), SERVE.into()],
        linux: security(|sc| sc.run_as_username = "nobody".into()),
        log_path: String::new(),
        ..Default::default()
    };
    let id = e.run(&pod, cfg).await;
    assert_eq!(e.sh(&id, "id -u").await, "65534");
}

#[tokio::test]
async fn security_contexts_are_enforced() {
    require_root!();
    let mut e = Env::start(13, &["berth/busybox:latest"]).await;
    let pod = e.pod("sec", false).await;

    let ro = ContainerConfig {
        linux: security(|sc| sc.readonly_rootfs = true),
        ..shell("ro", SERVE)
    };
    let id = e.run(&pod, ro).await;
    let r = e.exec(&id, &["sh", "-c", "touch /newfile"]).await.unwrap();
    assert_ne!(r.exit_code, 0, "a read-only rootfs refuses writes");
    assert!(String::from_utf8_lossy(&r.stderr).contains("Read-only"), "{r:?}");

    let caps = ContainerConfig {
        linux: security(|sc| {
            sc.capabilities = Some(Capability {
                drop_capabilities: vec!["CHOWN".into()],
                ..Default::default()
            });
            sc.no_new_privs = true;
            sc.seccomp = Some(SecurityProfile {
                profile_type: security_profile::ProfileType::RuntimeDefault as i32,
                localhost_ref: String::new(),
            });
        }),
        ..shell("caps", SERVE)
    };
    let id = e.run(&pod, caps).await;
    let status = e.sh(&id, "cat /proc/self/status").await;
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .map(|v| v.trim().to_string())
            .unwrap_or_else(|| panic!("{name} in {status}"))
    };
    let eff = u64::from_str_radix(&field("CapEff:"), 16).unwrap();
    assert_eq!(eff & 1, 0, "CAP_CHOWN (bit 0) dropped: {eff:x}");
    assert_ne!(eff & (1 << 1), 0, "CAP_DAC_OVERRIDE kept: {eff:x}");
    assert_eq!(field("NoNewPrivs:"), "1");
    assert_eq!(field("Seccomp:"), "2");
    let r = e.exec(&id, &["unshare", "-U", "true"]).await.unwrap();
    assert_ne!(r.exit_code, 0, "RuntimeDefault denies unshare: {r:?}");

    let privileged = ContainerConfig {
        linux: security(|sc| sc.privileged = true),
        ..shell("priv", SERVE)
    };
    let refused = e.create(&pod, privileged.clone()).await;
    let msg = expect_err(
        refused,
        &[Code::InvalidArgument, Code::FailedPrecondition],
        "privileged in an unprivileged pod",
    );
    assert!(msg.contains("privileged"), "{msg}");
    let ppod = e.pod("privpod", true).await;
    let id = e.run(&ppod, privileged).await;
    let inside = e.sh(&id, "grep CapBnd /proc/self/status").await;
    let host = std::fs::read_to_string("/proc/self/status").unwrap();
    let host = host.lines().find(|l| l.starts_with("CapBnd:")).unwrap();
    assert_eq!(
        inside, host,
        "a privileged container gets every capability the host has"
    );
}

#[tokio::test]
async fn reopen_log_after_rename_starts_a_new_file() {
    require_root!();
    let mut e = Env::start(14, &["berth/busybox:latest"]).await;
    let pod = e.pod("logs", false).await;
    let id = e
        .run(&pod, shell("talk", "while true; do echo tick; sleep 0.1; done"))
        .await;
    let path = log_file(&pod.1, "talk");
    wait_for("first log lines", || {
        std::fs::metadata(&path).is_ok_and(|m| m.len() > 0)
    })
    .await;
    let line = std::fs::read_to_string(&path).unwrap();
    assert!(line.lines().next().unwrap().ends_with(" stdout F tick"), "{line}");
    let rotated = path.with_extension("log.1");
    std::fs::rename(&path, &rotated).unwrap();
    e.rt.reopen_container_log(ReopenContainerLogRequest {
        container_id: id.clone(),
    })
    .await
    .unwrap();
    wait_for("lines in the new file", || {
        std::fs::metadata(&path).is_ok_and(|m| m.len() > 0)
    })
    .await;
    let old_len = std::fs::metadata(&rotated).unwrap().len();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        std::fs::metadata(&rotated).unwrap().len(),
        old_len,
        "the old file is no longer written"
    );

    e.stop(&id, 0).await;
    let refused =
        e.rt.reopen_container_log(ReopenContainerLogRequest {
            container_id: id.clone(),
        })
        .await;
    expect_err(
        refused,
        &[Code::FailedPrecondition],
        "reopening the log of an exited container",
    );
}

#[tokio::test]
async fn resources_update_and_oom_kill() {
    require_root!();
    let mut e = Env::start(15, &["berth/busybox:latest"]).await;
    let pod = e.pod("res", false).await;
    let id = e.run(&pod, shell("upd", SERVE)).await;
    e.rt.update_container_resources(UpdateContainerResourcesRequest {
        container_id: id.clone(),
        linux: Some(LinuxContainerResources {
            memory_limit_in_bytes: 64 << 20,
            ..Default::default()
        }),
        ..Default::default()
    })
    .await
    .unwrap_or_else(|ee| panic!("UpdateContainerResources: {ee}\n{}", e.d.log_tail()));
    let limit = e
        .sh(
            &id,
            "cat /sys/fs/cgroup/memory/memory.limit_in_bytes 2>/dev/null || cat /sys/fs/cgroup/memory.max",
        )
        .await;
    assert_eq!(limit, (64u64 << 20).to_string());
    let st = e.status(&id).await.unwrap();
    assert_eq!(
        st.resources.and_then(|r| r.linux).map(|l| l.memory_limit_in_bytes),
        Some(64 << 20)
    );
    let stats =
        e.rt.container_stats(ContainerStatsRequest {
            container_id: id.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .stats
        .unwrap();
    assert!(stats.memory.unwrap().working_set_bytes.is_some());
    assert!(stats.cpu.unwrap().usage_core_nano_seconds.unwrap().value > 0);

    let oom = ContainerConfig {
        linux: Some(LinuxContainerConfig {
            resources: Some(LinuxContainerResources {
                memory_limit_in_bytes: 16 << 20,
                ..Default::default()
            }),
            ..Default::default()
        }),
        // Each loop doubles a shell variable: past 16 MiB in a few rounds.
        ..shell("oom", "x=0123456789abcdef; while true; do x=$x$x; done")
    };
    let id = e.run(&pod, oom).await;
    let st = e.wait_state(&id, ContainerState::ContainerExited).await;
    assert_eq!(st.reason, "OOMKilled", "{st:?}");
    assert_eq!(st.exit_code, 137);
}

#[tokio::test]
async fn a_name_in_use_is_refused_naming_the_holder_and_a_retry_gets_the_same_container() {
    require_root!();
    let mut e = Env::start(16, &["berth/busybox:latest"]).await;
    let pod = e.pod("names", false).await;
    let first = e.create(&pod, shell("dup", SERVE)).await.unwrap();
    let retry = e.create(&pod, shell("dup", SERVE)).await.unwrap();
    assert_eq!(retry, first, "an identical retry gets the first container");
    let other = e.create(&pod, shell("dup", "sleep 1")).await;
    let msg = expect_err(other, &[Code::AlreadyExists], "a second container with the same name");
    assert!(msg.contains(&first), "{msg}");
    let missing_image = ContainerConfig {
        image: Some(ops::spec(&Env::image("berth/nope:v9"))),
        ..shell("noimg", SERVE)
    };
    let msg = expect_err(
        e.create(&pod, missing_image).await,
        &[Code::NotFound],
        "an image not pulled",
    );
    assert!(msg.contains("berth/nope"), "{msg}");
    let no_meta = ContainerConfig {
        metadata: None,
        ..shell("x", SERVE)
    };
    let msg = expect_err(e.create(&pod, no_meta).await, &[Code::InvalidArgument], "no metadata");
    assert!(msg.contains("metadata"), "{msg}");
    let escape = ContainerConfig {
        log_path: "../../etc/evil.log".into(),
        ..shell("esc", SERVE)
    };
    let msg = expect_err(
        e.create(&pod, escape).await,
        &[Code::InvalidArgument],
        "a log path escaping",
    );
    assert!(msg.contains("log_path"), "{msg}");
    let unknown_pod = (String::from("0123456789abcdef"), pod.1.clone());
    let msg = expect_err(
        e.create(&unknown_pod, shell("nopod", SERVE)).await,
        &[Code::NotFound],
        "unknown pod",
    );
    assert!(msg.contains("0123456789abcdef"), "{msg}");
    e.remove(&first).await;
    let again = e.create(&pod, shell("dup", "sleep 1")).await.unwrap();
    assert_ne!(again, first, "the name is free once removed");
}

#[tokio::test]
async fn berthd_sigkilled_and_restarted_keeps_containers_and_records_exits() {
    require_root!();
    let mut e = Env::start(17, &["berth/busybox:latest"]).await;
    let pod = e.pod("restart", false).await;
    let runner = e.run(&pod, shell("runner", SERVE)).await;
    let quitter = e
        .run(&pod, shell("quitter", "read x < /dev/null; sleep 1; exit 5"))
        .await;
    assert_eq!(e.state(&quitter).await, ContainerState::ContainerRunning);
    e.d.kill9();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    e.d.restart().unwrap_or_else(|err| panic!("{err:#}"));
    e.rt = e.d.runtime().await;

    assert_eq!(e.state(&runner).await, ContainerState::ContainerRunning);
    assert_eq!(e.sh(&runner, "echo alive").await, "alive");
    let st = e.wait_state(&quitter, ContainerState::ContainerExited).await;
    assert_eq!(st.exit_code, 5);
    assert_eq!(st.reason, "Error");
    e.stop(&runner, 10).await;
    assert_eq!(e.status(&runner).await.unwrap().exit_code, 0);
}

/// The `user` of a container's status.
async fn status_user(e: &mut Env, id: &str) -> LinuxContainerUser {
    let st = e.status(id).await.unwrap();
    st.user
        .and_then(|u| u.linux)
        .unwrap_or_else(|| panic!("ContainerStatus of {id} has no user"))
}

/// Checks `user` against what `id` says inside the container.
async fn assert_user_is_the_process_identity(e: &mut Env, id: &str, user: &LinuxContainerUser) {
    let out = e.sh(id, "id -u; id -g; id -G").await;
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 3, "{out}");
    assert_eq!(lines[0].parse::<i64>().unwrap(), user.uid, "uid: {out}");
    assert_eq!(lines[1].parse::<i64>().unwrap(), user.gid, "gid: {out}");
    let mut groups: Vec<i64> = lines[2].split_whitespace().map(|g| g.parse().unwrap()).collect();
    groups.sort();
    groups.dedup();
    let mut want = user.supplemental_groups.clone();
    want.push(user.gid);
    want.sort();
    want.dedup();
    assert_eq!(groups, want, "`id -G` vs the status' groups: {out}");
}

#[tokio::test]
async fn container_status_reports_the_user_its_process_runs_as() {
    require_root!();
    let mut e = Env::start(18, &["berth/busybox:latest", "berth/username:v1"]).await;
    let pod = e.pod("whoami", false).await;
    let ids = |uid: i64, gid: i64, groups: &[i64]| LinuxContainerUser {
        uid,
        gid,
        supplemental_groups: groups.to_vec(),
    };
    let cases: Vec<(ContainerConfig, LinuxContainerUser)> = vec![
        (
            // run_as_user / run_as_group / supplemental_groups: the groups
            // sorted, the primary gid among them.
            ContainerConfig {
                linux: security(|sc| {
                    sc.run_as_user = Some(Int64Value { value: 1234 });
                    sc.run_as_group = Some(Int64Value { value: 2345 });
                    sc.supplemental_groups = vec![3456, 10];
                }),
                ..shell("numeric", SERVE)
            },
            ids(1234, 2345, &[10, 2345, 3456]),
        ),
        (
            // The image's USER (a name) looked up in its /etc/passwd.
            ContainerConfig {
                metadata: meta("image-user"),
                image: Some(ops::spec(&Env::image("berth/username:v1"))),
                command: vec!["sh".into(), "-c".into(), SERVE.into()],
                log_path: String::new(),
                ..Default::default()
            },
            ids(1000, 1000, &[1000]),
        ),
        (
            ContainerConfig {
                linux: security(|sc| {
                    sc.run_as_username = "nobody".into();
                    sc.supplemental_groups = vec![1000];
                }),
                ..shell("byname", SERVE)
            },
            ids(65534, 65534, &[1000, 65534]),
        ),
        (shell("root", SERVE), ids(0, 0, &[0])),
    ];
    for (config, want) in cases {
        let name = config.metadata.as_ref().unwrap().name.clone();
        let id = e.run(&pod, config).await;
        let user = status_user(&mut e, &id).await;
        assert_eq!(user, want, "{name}");
        assert_user_is_the_process_identity(&mut e, &id, &user).await;
    }
}

/// Mount points of the cgroup hierarchies (v1 controllers, named, cgroup2).
fn cgroup_mounts() -> Vec<PathBuf> {
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .filter_map(|l| {
            let (pre, post) = l.split_once(" - ")?;
            let fstype = post.split_whitespace().next()?;
            let target = pre.split_whitespace().nth(4)?;
            (fstype == "cgroup" || fstype == "cgroup2").then(|| PathBuf::from(target))
        })
        .collect()
}

/// Every directory at and below cgroup `cgroup` in every hierarchy, deepest first.
fn cgroup_dirs(cgroup: &str) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for m in cgroup_mounts() {
        let mut stack = vec![m.join(cgroup.trim_start_matches('/'))];
        while let Some(d) = stack.pop() {
            let Ok(entries) = std::fs::read_dir(&d) else { continue };
            stack.extend(
                entries
                    .flatten()
                    .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                    .map(|e| e.path()),
            );
            out.push(d);
        }
    }
    out.sort_by_key(|d| std::cmp::Reverse(d.components().count()));
    out
}

/// A cgroup tree (absolute cgroup path) removed with everything below it on
/// drop, in every hierarchy; `create` makes it first, as the kubelet makes a
/// pod's cgroup before RunPodSandbox.
struct CgroupTree(String);

impl CgroupTree {
    fn create(cgroup: &str) -> CgroupTree {
        let tree = CgroupTree(cgroup.to_string());
        for m in cgroup_mounts() {
            std::fs::create_dir_all(m.join(cgroup.trim_start_matches('/'))).unwrap();
        }
        tree
    }
}

impl Drop for CgroupTree {
    fn drop(&mut self) {
        let top = self.0.trim_start_matches('/').split('/').next().unwrap_or_default();
        if top.is_empty() {
            return;
        }
        for d in cgroup_dirs(&format!("/{top}")) {
            let _ = std::fs::remove_dir(d);
        }
    }
}

/// The cgroup of `pid` in the memory hierarchy (v1) or the unified one.
fn memory_cgroup_of(pid: i64) -> String {
    let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    let line = |want: &dyn Fn(&str) -> bool| {
        text.lines().find_map(|l| {
            let mut f = l.splitn(3, ':');
            let (_, ctrls, path) = (f.next()?, f.next()?, f.next()?);
            want(ctrls).then(|| path.to_string())
        })
    };
    line(&|c| c.split(',').any(|c| c == "memory"))
        .or_else(|| line(&|c| c.is_empty()))
        .unwrap_or_else(|| panic!("no memory cgroup for {pid}: {text}"))
}

/// The memory limit file of cgroup `cgroup` (v1 or v2), read.
fn memory_limit_of(cgroup: &str) -> String {
    let rel = cgroup.trim_start_matches('/');
    let v1 = Path::new("/sys/fs/cgroup/memory")
        .join(rel)
        .join("memory.limit_in_bytes");
    let v2 = Path::new("/sys/fs/cgroup").join(rel).join("memory.max");
    std::fs::read_to_string(&v1)
        .or_else(|_| std::fs::read_to_string(&v2))
        .unwrap_or_else(|err| panic!("no memory limit for {cgroup}: {err}"))
        .trim()
        .to_string()
}

fn limited(name: &str, bytes: i64) -> ContainerConfig {
    ContainerConfig {
        linux: Some(LinuxContainerConfig {
            resources: Some(LinuxContainerResources {
                memory_limit_in_bytes: bytes,
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..shell(name, SERVE)
    }
}

#[tokio::test]
async fn a_pods_cgroup_parent_holds_its_containers_and_berth_removes_only_what_it_made() {
    require_root!();
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    let unique = format!("berthtest-{}-{nanos}", std::process::id());
    // The kubelet's pod cgroup, made before RunPodSandbox as the kubelet
    // does; and a parent nobody made. Both go on drop, after the pods.
    let parent = format!("/{unique}/pod-uid-cg");
    let _kubelet_made = CgroupTree::create(&parent);
    let missing_parent = format!("/{unique}-missing/burstable/pod-uid-2");
    let _berth_makes = CgroupTree(missing_parent.clone());
    let mut e = Env::start(19, &["berth/busybox:latest"]).await;

    for bad in [
        "kubepods/pod1",
        "/",
        "/a/../../../etc",
        "/kubepods//pod1",
        "/kubepods/./pod1",
        "/kubepods/pod1/",
        "/kube\npods",
        "kubepods.slice:cri-berth:pod1",
    ] {
        let mut c = e.pod_config("bad-cg", false);
        c.linux.as_mut().unwrap().cgroup_parent = bad.into();
        let r =
            e.rt.run_pod_sandbox(RunPodSandboxRequest {
                config: Some(c),
                runtime_handler: String::new(),
            })
            .await;
        let msg = expect_err(r, &[Code::InvalidArgument], bad);
        assert!(msg.contains("linux.cgroup_parent"), "{bad:?}: {msg}");
    }
    let listed =
        e.rt.list_pod_sandbox(ListPodSandboxRequest { filter: None })
            .await
            .unwrap()
            .into_inner()
            .items;
    assert!(listed.is_empty(), "refused pods are not listed: {listed:?}");

    let mut c = e.pod_config("cg", false);
    c.linux.as_mut().unwrap().cgroup_parent = parent.clone();
    let pod = e.run_pod(c).await;
    let id = e.run(&pod, limited("in-parent", 64 << 20)).await;
    let want = format!("{parent}/{}/{id}", pod.0);
    // The container's own view (no cgroup namespace on a v1/hybrid host).
    let own = e.sh(&id, "cat /proc/self/cgroup").await;
    let memory_line = own
        .lines()
        .find(|l| l.split(':').nth(1).is_some_and(|c| c.split(',').any(|c| c == "memory")));
    match memory_line {
        Some(l) => assert!(l.ends_with(&format!(":{want}")), "{own}"),
        None => assert!(own.starts_with("0::"), "a cgroup v2 host: {own}"),
    }
    let pid = e.pid(&id).await;
    assert_eq!(memory_cgroup_of(pid), want);
    assert_eq!(memory_limit_of(&want), (64u64 << 20).to_string());
    e.set_memory_limit(&id, 96 << 20).await;
    assert_eq!(memory_limit_of(&want), (96u64 << 20).to_string());
    let stats =
        e.rt.container_stats(ContainerStatsRequest {
            container_id: id.clone(),
        })
        .await
        .unwrap_or_else(|err| panic!("ContainerStats: {err}\n{}", e.d.log_tail()))
        .into_inner()
        .stats
        .unwrap();
    assert!(stats.memory.unwrap().working_set_bytes.is_some());

    // A restarted berthd finds the pod and its containers where they are.
    e.d.kill9();
    e.d.restart().unwrap_or_else(|err| panic!("{err:#}"));
    e.rt = e.d.runtime().await;
    e.set_memory_limit(&id, 80 << 20).await;
    assert_eq!(memory_limit_of(&want), (80u64 << 20).to_string());
    let second = e.run(&pod, limited("after-restart", 32 << 20)).await;
    let want2 = format!("{parent}/{}/{second}", pod.0);
    assert_eq!(memory_cgroup_of(e.pid(&second).await), want2);
    assert_eq!(memory_limit_of(&want2), (32u64 << 20).to_string());
    e.stop(&second, 5).await;
    e.remove(&second).await;
    let left: Vec<PathBuf> = cgroup_dirs(&want2);
    assert!(left.is_empty(), "a removed container's cgroups go: {left:?}");

    // Removal takes the pod's cgroups, never the kubelet's parent.
    e.remove_pod(&pod.0).await;
    let under: Vec<PathBuf> = cgroup_dirs(&parent)
        .into_iter()
        .filter(|d| !d.ends_with(parent.trim_start_matches('/')))
        .collect();
    assert!(under.is_empty(), "berth's cgroups left under {parent}: {under:?}");
    for m in cgroup_mounts() {
        let dir = m.join(parent.trim_start_matches('/'));
        assert!(dir.is_dir(), "the kubelet's {} must stay", dir.display());
    }

    // A parent that did not exist: berth makes it, and takes back what it made.
    let mut c = e.pod_config("cg-missing", false);
    c.linux.as_mut().unwrap().cgroup_parent = missing_parent.clone();
    let pod2 = e.run_pod(c).await;
    let id = e.run(&pod2, limited("in-made-parent", 48 << 20)).await;
    let want = format!("{missing_parent}/{}/{id}", pod2.0);
    assert_eq!(memory_cgroup_of(e.pid(&id).await), want);
    assert_eq!(memory_limit_of(&want), (48u64 << 20).to_string());
    e.remove_pod(&pod2.0).await;
    let top = format!("/{unique}-missing");
    assert_eq!(
        cgroup_dirs(&top),
        Vec::<PathBuf>::new(),
        "berth made {top} and removes it"
    );
}

/// One process of a container as its own `/proc` shows it.
#[derive(Debug)]
struct Proc {
    /// `R`, `S`, `Z`, …
    state: char,
    comm: String,
    /// The command line, space separated (empty for a zombie).
    args: String,
}

/// Every process in container `id`, read from the container's `/proc` by
/// an ExecSync (zombies included: what `pgrep` inside the container sees).
async fn processes(e: &mut Env, id: &str) -> Vec<Proc> {
    let scan = "for d in /proc/[0-9]*; do s=$(cat $d/stat 2>/dev/null) || continue; \
                a=$(tr '\\0' ' ' <$d/cmdline 2>/dev/null); echo \"$s|$a\"; done";
    let out = e.sh(id, scan).await;
    out.lines()
        .filter_map(|l| {
            let (stat, args) = l.split_once('|')?;
            let (_pid, rest) = stat.split_once(" (")?;
            let (comm, after) = rest.rsplit_once(") ")?;
            Some(Proc {
                state: after.chars().next()?,
                comm: comm.to_string(),
                args: args.trim().to_string(),
            })
        })
        .collect()
}

/// ExecSync with `timeout` seconds that must answer DEADLINE_EXCEEDED,
/// promptly.
async fn exec_times_out(e: &mut Env, id: &str, cmd: &[&str], timeout: i64) {
    let t = std::time::Instant::now();
    let r =
        e.rt.exec_sync(ExecSyncRequest {
            container_id: id.into(),
            cmd: cmd.iter().map(|s| s.to_string()).collect(),
            timeout,
        })
        .await;
    expect_err(
        r,
        &[Code::DeadlineExceeded],
        &format!("ExecSync {cmd:?} past its timeout"),
    );
    let took = t.elapsed();
    assert!(
        took >= Duration::from_secs(timeout as u64) && took < Duration::from_secs(timeout as u64 + 4),
        "{cmd:?}: answered after {took:?}"
    );
}

#[tokio::test]
async fn exec_sync_timeout_kills_everything_the_command_started() {
    require_root!();
    let mut e = Env::start(36, &["berth/busybox:latest"]).await;
    let pod = e.pod("exec-timeout", false).await;
    // critest's "execSync with timeout": the container runs `top`, an
    // init that never reaps, and right after the timed-out `sleep` the
    // container must show no `sleep` at all, not even a zombie.
    let id = e
        .run(
            &pod,
            ContainerConfig {
                command: vec!["top".into()],
                ..shell("top", "")
            },
        )
        .await;
    exec_times_out(&mut e, &id, &["sleep", "1234"], 1).await;
    let left: Vec<Proc> = processes(&mut e, &id)
        .await
        .into_iter()
        .filter(|p| p.comm == "sleep")
        .collect();
    assert!(left.is_empty(), "the timed-out exec left {left:?}");

    // The whole tree: a background child, a child in its own session, and
    // a double-forked child in its own session (orphaned at once, so
    // neither the parent links nor the process group lead to it).
    exec_times_out(
        &mut e,
        &id,
        &[
            "sh",
            "-c",
            "sleep 1235 & setsid sleep 1236 & (setsid sleep 1237 &); sleep 1238",
        ],
        1,
    )
    .await;
    let ours = ["sleep 1235", "sleep 1236", "sleep 1237", "sleep 1238"];
    let alive: Vec<Proc> = processes(&mut e, &id)
        .await
        .into_iter()
        .filter(|p| p.state != 'Z' && (ours.contains(&p.args.as_str()) || p.args.starts_with("sh -c sleep 1235")))
        .collect();
    assert!(alive.is_empty(), "the timed-out exec left {alive:?}");

    // The container itself is untouched and execs still work.
    assert_eq!(e.state(&id).await, ContainerState::ContainerRunning);
    assert_eq!(e.sh(&id, "echo still here").await, "still here");
}

#[tokio::test]
async fn exec_sync_returns_when_the_command_exits_while_a_background_child_holds_stdout() {
    require_root!();
    let mut e = Env::start(37, &["berth/busybox:latest"]).await;
    let pod = e.pod("exec-bg", false).await;
    let id = e.run(&pod, shell("bg", SERVE)).await;
    // kubernetes#92057: the command exits, its background child keeps the
    // output pipes open. The answer comes after a short drain, not at the
    // timeout.
    let t = std::time::Instant::now();
    let r =
        e.rt.exec_sync(ExecSyncRequest {
            container_id: id.clone(),
            cmd: vec!["sh".into(), "-c".into(), "sleep 1240 & echo hi".into()],
            timeout: 30,
        })
        .await
        .unwrap_or_else(|err| panic!("ExecSync: {err}\n{}", e.d.log_tail()))
        .into_inner();
    let took = t.elapsed();
    assert!(took < Duration::from_secs(5), "answered after {took:?}");
    assert_eq!(r.exit_code, 0);
    assert_eq!(r.stdout, b"hi\n");
    assert_eq!(r.stderr, b"");
    // Chosen behaviour (as containerd and CRI-O): the background child is
    // the container's now and keeps running; a postStart hook may start a
    // daemon this way.
    let procs = processes(&mut e, &id).await;
    assert!(
        procs.iter().any(|p| p.args == "sleep 1240" && p.state != 'Z'),
        "the background child keeps running: {procs:?}"
    );
    // Without a timeout too (a lifecycle hook's ExecSync has none).
    let t = std::time::Instant::now();
    let r =
        e.rt.exec_sync(ExecSyncRequest {
            container_id: id.clone(),
            cmd: vec!["sh".into(), "-c".into(), "sleep 1241 & echo again; exit 4".into()],
            timeout: 0,
        })
        .await
        .unwrap()
        .into_inner();
    assert!(t.elapsed() < Duration::from_secs(5), "answered after {:?}", t.elapsed());
    assert_eq!((r.exit_code, r.stdout.as_slice()), (4, &b"again\n"[..]));
}
