//! Root tests: real containers from a busybox bundle; each check reads what
//! a program inside the container sees.

mod common;

use std::time::{Duration, Instant};

use common::{is_root, Env};
use serde_json::json;

#[test]
fn sees_own_hostname_and_is_pid_1() {
    if !is_root() {
        return;
    }
    let env = Env::new();
    let b = env.bundle("host", "hostname; cat /proc/1/cmdline; echo; echo $$");
    let (code, out, err) = env.run(&b, "host");
    assert_eq!(code, 0, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "berthbox");
    assert!(lines[1].starts_with("sh\0-c\0hostname"), "{:?}", lines[1]);
    assert_eq!(lines[2], "1");
}

#[test]
fn masked_and_readonly_paths_and_readonly_rootfs() {
    if !is_root() {
        return;
    }
    let env = Env::new();
    let mut b = env.bundle(
        "paths",
        "wc -c < /etc/secret; ls /etc/secretdir | wc -l; \
         (echo 1 > /proc/sys/kernel/ns_last_pid) 2>/dev/null && echo sys-writable || echo sys-ro; \
         touch /newfile 2>/dev/null && echo root-writable || echo root-ro; \
         touch /dev/shm/ok && echo shm-writable",
    );
    b.spec["root"]["readonly"] = json!(true);
    std::fs::write(b.rootfs().join("etc/secret"), "secret").unwrap();
    std::fs::create_dir_all(b.rootfs().join("etc/secretdir")).unwrap();
    std::fs::write(b.rootfs().join("etc/secretdir/key"), "k").unwrap();
    b.spec["linux"]["maskedPaths"] = json!(["/etc/secret", "/etc/secretdir", "/proc/kcore", "/does/not/exist"]);
    let (code, out, err) = env.run(&b, "paths");
    assert_eq!(code, 0, "{err}");
    let lines: Vec<&str> = out.lines().map(str::trim).collect();
    assert_eq!(lines, vec!["0", "0", "sys-ro", "root-ro", "shm-writable"], "{out}");
}

#[test]
fn symlinked_mount_destination_stays_inside_the_rootfs() {
    if !is_root() {
        return;
    }
    let env = Env::new();
    let host_target = env.tmp.path().join("host-target");
    let mut b = env.bundle("evil", "ls /tmp/host-target");
    // /etc/evil -> <host path>: resolved inside the rootfs, never on the host.
    std::os::unix::fs::symlink(&host_target, b.rootfs().join("etc/evil")).unwrap();
    let src = env.tmp.path().join("src");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("marker"), "x").unwrap();
    b.spec["mounts"].as_array_mut().unwrap().push(json!({
        "destination": "/etc/evil", "type": "bind", "source": src, "options": ["rbind", "ro"]
    }));
    // ls inside: the mount landed at <rootfs><host_target>
    let inside = host_target.strip_prefix("/").unwrap().to_path_buf();
    b.spec["process"]["args"] = json!(["sh", "-c", format!("ls /{}", inside.display())]);
    let (code, out, err) = env.run(&b, "evil");
    assert_eq!(code, 0, "{err}");
    assert_eq!(out.trim(), "marker");
    assert!(!host_target.exists(), "a mount point appeared on the host");
}

#[test]
fn user_groups_env_cwd_rlimits_and_oom_score_adj() {
    if !is_root() {
        return;
    }
    let env = Env::new();
    let mut b = env.bundle(
        "proc",
        "id -u; id -g; id -G; echo $FOO; pwd; ulimit -n; cat /proc/self/oom_score_adj",
    );
    b.spec["process"]["user"] = json!({"uid": 1000, "gid": 1001, "additionalGids": [10, 20]});
    b.spec["process"]["env"] = json!(["PATH=/bin", "FOO=bar"]);
    b.spec["process"]["cwd"] = json!("/tmp");
    b.spec["process"]["rlimits"] = json!([{"type": "RLIMIT_NOFILE", "hard": 512, "soft": 256}]);
    // Below berth's own value: clamped (root here lacks CAP_SYS_RESOURCE).
    b.spec["process"]["oomScoreAdj"] = json!(-500);
    let own: i32 = std::fs::read_to_string("/proc/self/oom_score_adj")
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let (code, out, err) = env.run(&b, "proc");
    assert_eq!(code, 0, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "1000");
    assert_eq!(lines[1], "1001");
    let groups: Vec<&str> = lines[2].split_whitespace().collect();
    assert!(groups.contains(&"10") && groups.contains(&"20"), "{groups:?}");
    assert_eq!(lines[3], "bar");
    assert_eq!(lines[4], "/tmp");
    assert_eq!(lines[5], "256");
    assert_eq!(lines[6], (-500).max(own).to_string());
}

#[test]
fn exit_code_is_returned_and_recorded() {
    if !is_root() {
        return;
    }
    let env = Env::new();
    let b = env.bundle("exit", "exit 7");
    let (code, _, err) = env.run(&b, "exit");
    assert_eq!(code, 7, "{err}");
}

#[test]
fn create_does_not_exec_until_start() {
    if !is_root() {
        return;
    }
    let env = Env::new();
    let b = env.bundle("cs", "touch /tmp/started; sleep 300");
    b.write();
    let (ok, err) = env.rt_detached(&["create", "--bundle", b.path(), "cs"]);
    assert!(ok, "{err}");
    let st = env.state("cs");
    assert_eq!(st["status"], "created");
    assert!(st["pid"].as_i64().unwrap() > 0);
    std::thread::sleep(Duration::from_millis(200));
    assert!(!b.rootfs().join("tmp/started").exists(), "ran before start");
    let out = env.rt(&["start", "cs"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(env.state("cs")["status"], "running");
    wait_for(|| b.rootfs().join("tmp/started").exists());
    // delete refuses a running container, kill + delete work
    assert!(!env.rt(&["delete", "cs"]).status.success());
    assert!(env.rt(&["kill", "cs", "KILL"]).status.success());
    wait_for(|| env.state("cs")["status"] == "stopped");
    let exit: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(env.root.join("cs/exit.json")).unwrap()).unwrap();
    assert_eq!(exit["exit_code"], 137);
    assert_eq!(exit["signal"], 9);
    assert!(env.rt(&["delete", "cs"]).status.success());
    assert!(!env.root.join("cs").exists());
}

#[test]
fn container_outlives_a_killed_caller_and_its_exit_is_recorded() {
    if !is_root() {
        return;
    }
    let env = Env::new();
    let b = env.bundle("survive", "sleep 1; exit 3");
    b.write();
    // A foreground `run` is the caller; SIGKILL it once the container runs.
    let mut caller = env
        .cmd()
        .args(["run", "--bundle", b.path(), "survive"])
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    wait_for(|| env.root.join("survive/state.json").exists() && env.state("survive")["status"] == "running");
    caller.kill().unwrap();
    caller.wait().unwrap();
    assert_eq!(env.state("survive")["status"], "running");
    wait_for(|| env.state("survive")["status"] == "stopped");
    let exit: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(env.root.join("survive/exit.json")).unwrap()).unwrap();
    assert_eq!(exit["exit_code"], 3);
}

#[test]
fn exec_joins_the_running_container() {
    if !is_root() {
        return;
    }
    let env = Env::new();
    let b = env.bundle("ex", "sleep 300");
    b.write();
    let (ok, err) = env.rt_detached(&["run", "-d", "--bundle", b.path(), "ex"]);
    assert!(ok, "{err}");
    let out = env.rt(&[
        "exec",
        "--env",
        "X=y",
        "ex",
        "--",
        "sh",
        "-c",
        "hostname; echo $X; cat /proc/1/cmdline; exit 5",
    ]);
    assert_eq!(out.status.code(), Some(5), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], "berthbox");
    assert_eq!(lines[1], "y");
    assert!(lines[2].starts_with("sleep"), "{:?}", lines[2]);
    assert!(env.rt(&["delete", "--force", "ex"]).status.success());
}

#[test]
fn a_signal_to_a_foreground_exec_reaches_the_process_in_the_container() {
    if !is_root() {
        return;
    }
    let env = Env::new();
    let b = env.bundle("fwd", "sleep 300");
    b.write();
    let (ok, err) = env.rt_detached(&["run", "-d", "--bundle", b.path(), "fwd"]);
    assert!(ok, "{err}");
    let mut exec = env
        .cmd()
        .args([
            "exec",
            "fwd",
            "--",
            "sh",
            "-c",
            "trap 'exit 42' TERM; echo ready; while true; do sleep 0.05; done",
        ])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Wait until the shell has set its trap (it printed "ready").
    let mut out = exec.stdout.take().unwrap();
    let mut buf = [0u8; 6];
    std::io::Read::read_exact(&mut out, &mut buf).unwrap();
    assert_eq!(&buf, b"ready\n");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(exec.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let status = exec.wait().unwrap();
    // The shell got SIGTERM and ran its trap; berth-runtime passed its
    // exit code on (without forwarding it would die of the signal itself).
    assert_eq!(status.code(), Some(42), "{status:?}");
    assert!(env.rt(&["delete", "--force", "fwd"]).status.success());
}

fn wait_for(mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !cond() {
        assert!(Instant::now() < deadline, "condition not met in 10s");
        std::thread::sleep(Duration::from_millis(20));
    }
}
