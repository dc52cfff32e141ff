//! Root tests of the monitor: after the hand-over it is the small
//! `berth-monitor` binary, it outlives a SIGKILLed caller and records the
//! exit, it reopens the CRI log for rotation, it feeds an attached
//! client's stdin (closing it after the first client with stdin_once), and
//! it still supervises in-process when the small binary is missing.

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use berth_runtime::engine::{CreateOptions, Engine, StdioMode};
use common::{is_root, Env};
use serde_json::Value;

fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !cond() {
        assert!(Instant::now() < deadline, "{what}: not within 10s");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn monitor_pid(env: &Env, id: &str) -> i32 {
    let text = std::fs::read_to_string(env.root.join(id).join("state.json")).unwrap();
    let v: Value = serde_json::from_str(&text).unwrap();
    v["monitor"]["pid"].as_i64().unwrap() as i32
}

fn exe_of(pid: i32) -> PathBuf {
    std::fs::read_link(format!("/proc/{pid}/exe")).unwrap()
}

fn exit_record(env: &Env, id: &str) -> Option<Value> {
    let text = std::fs::read_to_string(env.root.join(id).join("exit.json")).ok()?;
    Some(serde_json::from_str(&text).unwrap())
}

/// CRI log records' contents, in order.
fn log_lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| {
            let parts: Vec<&str> = l.splitn(4, ' ').collect();
            assert_eq!(parts.len(), 4, "not a CRI record: {l:?}");
            assert_eq!(parts[1], "stdout", "{l:?}");
            assert_eq!(parts[2], "F", "{l:?}");
            parts[3].to_string()
        })
        .collect()
}

#[test]
fn monitor_is_the_small_binary_outlives_a_killed_caller_and_records_the_exit() {
    if !is_root() {
        return;
    }
    let env = Env::new();
    let b = env.bundle("outlive", "echo hello; sleep 1; echo bye; exit 3");
    b.write();
    let log = env.tmp.path().join("outlive.log");
    let mut caller = env
        .cmd()
        .args([
            "run",
            "--cri-log",
            log.to_str().unwrap(),
            "--bundle",
            b.path(),
            "outlive",
        ])
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    wait_for("container running", || {
        env.root.join("outlive/started").exists() && env.state("outlive")["status"] == "running"
    });
    let monitor = monitor_pid(&env, "outlive");
    wait_for("hand-over to berth-monitor", || {
        exe_of(monitor).file_name().unwrap() == "berth-monitor"
    });
    caller.kill().unwrap();
    caller.wait().unwrap();
    assert_eq!(env.state("outlive")["status"], "running");
    wait_for("exit recorded", || exit_record(&env, "outlive").is_some());
    let exit = exit_record(&env, "outlive").unwrap();
    assert_eq!(exit["exit_code"], 3);
    assert_eq!(exit["signal"], Value::Null);
    assert_eq!(exit["oom_killed"], false);
    assert_eq!(env.state("outlive")["status"], "stopped");
    assert_eq!(log_lines(&log), ["hello", "bye"]);
    wait_for("monitor gone", || !Path::new(&format!("/proc/{monitor}")).exists());
    assert!(!env.root.join("outlive/monitor.sock").exists());
    assert!(env.rt(&["delete", "outlive"]).status.success());
}

#[test]
fn log_reopen_sends_new_lines_to_a_new_file() {
    if !is_root() {
        return;
    }
    let env = Env::new();
    let b = env.bundle(
        "rotate",
        "i=0; while true; do echo line$i; i=$((i+1)); sleep 0.02; done",
    );
    b.write();
    let log = env.tmp.path().join("rotate.log");
    // The test process is multi-threaded: the engine re-executes
    // `berth-runtime monitor` here instead of forking.
    let engine = Engine::new(&env.root, common::BIN);
    engine
        .create(&CreateOptions {
            id: "rotate".into(),
            bundle: b.dir.clone(),
            stdio: StdioMode::Monitor {
                log_path: Some(log.clone()),
                stdin: false,
                stdin_once: false,
            },
            pid_file: None,
            overlay: None,
        })
        .unwrap();
    engine.start("rotate").unwrap();
    wait_for("first lines", || log_lines(&log).len() >= 5);
    let rotated = env.tmp.path().join("rotate.log.1");
    std::fs::rename(&log, &rotated).unwrap();
    engine.reopen_log("rotate").unwrap();
    wait_for("lines in the new file", || log_lines(&log).len() >= 5);
    engine.kill("rotate", nix::sys::signal::Signal::SIGKILL, false).unwrap();
    let exit = engine.wait("rotate").unwrap();
    assert_eq!(exit.signal, Some(9));
    let old = log_lines(&rotated);
    let new = log_lines(&log);
    let num = |l: &String| l.strip_prefix("line").unwrap().parse::<u64>().unwrap();
    // No line lost or doubled across the rotation, and every line after
    // the reopen is in the new file only.
    let all: Vec<u64> = old.iter().chain(&new).map(num).collect();
    assert_eq!(
        all,
        (0..all.len() as u64).collect::<Vec<_>>(),
        "old {old:?} new {new:?}"
    );
    assert!(num(&new[0]) > num(old.last().unwrap()));
    engine.delete("rotate", false).unwrap();
}

/// Creates and starts `cat` reading stdin, its stdout in a CRI log.
fn start_cat(env: &Env, engine: &Engine, id: &str, stdin_once: bool) -> PathBuf {
    let b = env.bundle(id, "exec cat");
    b.write();
    let log = env.tmp.path().join(format!("{id}.log"));
    engine
        .create(&CreateOptions {
            id: id.into(),
            bundle: b.dir.clone(),
            stdio: StdioMode::Monitor {
                log_path: Some(log.clone()),
                stdin: true,
                stdin_once,
            },
            pid_file: None,
            overlay: None,
        })
        .unwrap();
    engine.start(id).unwrap();
    log
}

/// Attaches, sends `line` as stdin, waits for it to come back on stdout,
/// then leaves.
fn attach_echo_and_leave(engine: &Engine, id: &str, line: &str) {
    use berth_runtime::monitor::protocol::{TAG_STDIN, TAG_STDOUT};
    let conn = engine.attach(id).unwrap();
    conn.send_packet(&[&[TAG_STDIN], line.as_bytes()].concat()).unwrap();
    let mut buf = vec![0u8; 8192];
    let n = conn.recv_packet(&mut buf).unwrap();
    assert_eq!(buf[0], TAG_STDOUT);
    assert_eq!(&buf[1..n], line.as_bytes());
}

#[test]
fn stdin_once_closes_stdin_when_the_first_attached_client_leaves() {
    if !is_root() {
        return;
    }
    let env = Env::new();
    let engine = Engine::new(&env.root, common::BIN);

    let log = start_cat(&env, &engine, "once", true);
    attach_echo_and_leave(&engine, "once", "first\n");
    // cat sees EOF on stdin and exits on its own.
    let exit = engine.wait("once").unwrap();
    assert_eq!((exit.exit_code, exit.signal), (0, None));
    assert_eq!(log_lines(&log), ["first"]);
    engine.delete("once", false).unwrap();

    let log = start_cat(&env, &engine, "kept", false);
    attach_echo_and_leave(&engine, "kept", "one\n");
    attach_echo_and_leave(&engine, "kept", "two\n");
    // Without stdin_once, stdin stays open across attach sessions.
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(
        engine.state("kept").unwrap().status,
        berth_runtime::state::Status::Running
    );
    engine.kill("kept", nix::sys::signal::Signal::SIGKILL, false).unwrap();
    assert_eq!(engine.wait("kept").unwrap().signal, Some(9));
    assert_eq!(log_lines(&log), ["one", "two"]);
    engine.delete("kept", false).unwrap();
}

#[test]
fn stdin_to_a_container_that_closed_it_is_dropped_and_the_monitor_lives_on() {
    use berth_runtime::monitor::protocol::TAG_STDIN;
    if !is_root() {
        return;
    }
    let env = Env::new();
    let engine = Engine::new(&env.root, common::BIN);
    let b = env.bundle("closed", "exec 0<&-; echo ready; exec sleep 100");
    b.write();
    let log = env.tmp.path().join("closed.log");
    engine
        .create(&CreateOptions {
            id: "closed".into(),
            bundle: b.dir.clone(),
            stdio: StdioMode::Monitor {
                log_path: Some(log.clone()),
                stdin: true,
                stdin_once: false,
            },
            pid_file: None,
            overlay: None,
        })
        .unwrap();
    engine.start("closed").unwrap();
    wait_for("stdin closed inside", || log_lines(&log) == ["ready"]);
    let monitor = monitor_pid(&env, "closed");
    let conn = engine.attach("closed").unwrap();
    for _ in 0..3 {
        conn.send_packet(&[&[TAG_STDIN][..], b"into the void\n"].concat())
            .unwrap();
    }
    drop(conn);
    // The monitor got EPIPE (not SIGPIPE) and still answers.
    engine.resize("closed", 24, 80).unwrap_err();
    assert!(Path::new(&format!("/proc/{monitor}")).exists());
    engine.kill("closed", nix::sys::signal::Signal::SIGKILL, false).unwrap();
    assert_eq!(engine.wait("closed").unwrap().signal, Some(9));
    engine.delete("closed", false).unwrap();
}

#[test]
fn without_the_small_binary_the_monitor_supervises_in_process() {
    if !is_root() {
        return;
    }
    let env = Env::new();
    let b = env.bundle("fallback", "sleep 0.3; exit 4");
    b.write();
    let missing = env.tmp.path().join("no-such-monitor");
    let status = env
        .cmd()
        .env("BERTH_MONITOR_BINARY", &missing)
        .args(["create", "--bundle", b.path(), "fallback"])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
    let monitor = monitor_pid(&env, "fallback");
    let monitor_log = env.root.join("fallback/monitor.log");
    wait_for("fallback warning", || {
        std::fs::read_to_string(&monitor_log).is_ok_and(|t| t.contains("supervising in-process"))
    });
    assert_eq!(exe_of(monitor).file_name().unwrap(), "berth-runtime");
    assert!(env.rt(&["start", "fallback"]).status.success());
    wait_for("exit recorded", || exit_record(&env, "fallback").is_some());
    assert_eq!(exit_record(&env, "fallback").unwrap()["exit_code"], 4);
    assert!(env.rt(&["delete", "fallback"]).status.success());
}
