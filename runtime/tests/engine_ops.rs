//! Root tests through the engine API: ExecSync (capture, cap, timeout,
//! the container's identity and capabilities), stop (a SIGTERM-ignoring
//! init with a background child), OOM kills, and namespaces joined by path.

mod common;

use std::time::{Duration, Instant};

use berth_runtime::engine::{CreateOptions, Engine, StdioMode};
use common::{is_root, Bundle, Env, BIN};
use nix::sys::signal::Signal;
use serde_json::json;

/// Creates and starts `b` as container `id` with the monitor holding its
/// stdio (no log file).
fn run(env: &Env, b: &Bundle, id: &str) -> Engine {
    b.write();
    let engine = Engine::new(&env.root, BIN);
    engine
        .create(&CreateOptions {
            id: id.to_string(),
            bundle: b.dir.clone(),
            stdio: StdioMode::Monitor {
                log_path: None,
                stdin: false,
                stdin_once: false,
            },
            pid_file: None,
            overlay: None,
        })
        .unwrap();
    engine.start(id).unwrap();
    engine
}

fn init_pid(engine: &Engine, id: &str) -> i32 {
    engine.state(id).unwrap().pid.expect("a running container has an init")
}

fn status_field(pid: i32, name: &str) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix(name).map(|v| v.trim().to_string()))
        .unwrap()
}

const CAPS: &[&str] = &[
    "CAP_CHOWN",
    "CAP_KILL",
    "CAP_SETUID",
    "CAP_SETGID",
    "CAP_NET_BIND_SERVICE",
];
const CAP_NET_RAW: u32 = 13;

#[test]
fn exec_sync_runs_as_the_container_and_captures_output() {
    if !is_root() {
        return;
    }
    let env = Env::new();
    let mut b = env.bundle("xs", "sleep 300");
    b.spec["process"]["user"] = json!({"uid": 1000, "gid": 1000});
    b.spec["process"]["capabilities"] = json!({
        "bounding": CAPS, "effective": CAPS, "permitted": CAPS, "ambient": CAPS, "inheritable": CAPS
    });
    let engine = run(&env, &b, "xs");
    let init = init_pid(&engine, "xs");
    let script = "hostname; readlink /proc/self/ns/pid; id -u; grep CapEff /proc/self/status; \
                  echo to-stderr >&2; exit 3";
    let p = engine
        .exec_process("xs", vec!["sh".into(), "-c".into(), script.into()])
        .unwrap();
    let r = engine.exec_sync("xs", &p, Duration::from_secs(10), 1 << 20).unwrap();
    assert!(!r.timed_out);
    assert_eq!(r.exit_code, 3);
    assert_eq!(String::from_utf8_lossy(&r.stderr), "to-stderr\n");
    let out = String::from_utf8_lossy(&r.stdout).into_owned();
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "berthbox");
    let pid_ns = std::fs::read_link(format!("/proc/{init}/ns/pid")).unwrap();
    assert_eq!(lines[1], pid_ns.to_str().unwrap());
    assert_eq!(lines[2], "1000");
    let eff = lines[3].split_whitespace().nth(1).unwrap();
    assert_eq!(
        eff,
        status_field(init, "CapEff:"),
        "exec and init differ in capabilities"
    );
    let mask = u64::from_str_radix(eff, 16).unwrap();
    assert_eq!(mask & (1 << CAP_NET_RAW), 0, "a dropped capability came back in exec");
    assert_ne!(mask & (1 << 5), 0, "CAP_KILL kept");

    // A process that cannot start is an error, not an exit code.
    let p = engine.exec_process("xs", vec!["/no/such/binary".into()]).unwrap();
    let err = engine
        .exec_sync("xs", &p, Duration::from_secs(10), 1024)
        .unwrap_err()
        .to_string();
    assert!(err.contains("/no/such/binary") && err.contains("xs"), "{err}");
}

#[test]
fn exec_sync_caps_output_without_blocking_and_kills_on_timeout() {
    if !is_root() {
        return;
    }
    let env = Env::new();
    let b = env.bundle("xcap", "sleep 300");
    let engine = run(&env, &b, "xcap");
    let p = engine
        .exec_process(
            "xcap",
            vec![
                "sh".into(),
                "-c".into(),
                "yes | head -c 20000000; echo finished >&2".into(),
            ],
        )
        .unwrap();
    let r = engine.exec_sync("xcap", &p, Duration::from_secs(60), 1000).unwrap();
    assert!(!r.timed_out);
    assert_eq!(r.exit_code, 0);
    assert_eq!(r.stdout.len(), 1000);
    assert!(r.stdout.starts_with(b"y\ny\n"));
    assert_eq!(r.stderr, b"finished\n");

    // Timeout: the shell, its background child and its foreground child die.
    let p = engine
        .exec_process(
            "xcap",
            vec!["sh".into(), "-c".into(), "sleep 4243 & echo started; sleep 4244".into()],
        )
        .unwrap();
    let t = Instant::now();
    let r = engine.exec_sync("xcap", &p, Duration::from_secs(1), 1000).unwrap();
    assert!(r.timed_out);
    assert!(t.elapsed() < Duration::from_secs(8), "{:?}", t.elapsed());
    assert_eq!(r.exit_code, 128 + 9);
    assert_eq!(r.stdout, b"started\n");
    let deadline = Instant::now() + Duration::from_secs(5);
    while sleeping("4243") || sleeping("4244") {
        assert!(
            Instant::now() < deadline,
            "the exec'd process tree survived the timeout"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // The container itself is untouched.
    assert_eq!(engine.state("xcap").unwrap().status.to_string(), "running");
}

/// Whether a live (non-zombie) `sleep <arg>` exists on the host.
fn sleeping(arg: &str) -> bool {
    let want = format!("sleep\0{arg}\0");
    std::fs::read_dir("/proc").unwrap().flatten().any(|e| {
        std::fs::read(e.path().join("cmdline")).is_ok_and(|c| c == want.as_bytes())
            && std::fs::read_to_string(e.path().join("stat")).is_ok_and(|s| !s.contains(") Z "))
    })
}

#[test]
fn stop_kills_an_init_that_ignores_sigterm_and_its_children() {
    if !is_root() {
        return;
    }
    let env = Env::new();
    let b = env.bundle("stubborn", "trap '' TERM; sleep 4245 & sleep 4246; sleep 4247");
    let engine = run(&env, &b, "stubborn");
    let deadline = Instant::now() + Duration::from_secs(5);
    while !(sleeping("4245") && sleeping("4246")) {
        assert!(Instant::now() < deadline, "container did not start its children");
        std::thread::sleep(Duration::from_millis(20));
    }
    let t = Instant::now();
    let exit = engine
        .stop("stubborn", Signal::SIGTERM, Duration::from_secs(1))
        .unwrap();
    assert!(t.elapsed() >= Duration::from_secs(1), "stopped before the grace period");
    assert_eq!(exit.signal, Some(9), "{exit:?}");
    assert_eq!(exit.exit_code, 137);
    assert!(!sleeping("4245") && !sleeping("4246") && !sleeping("4247"));
    let c = engine.state("stubborn").unwrap();
    assert_eq!(c.status.to_string(), "stopped");
    let procs = std::path::Path::new("/sys/fs/cgroup/memory")
        .join(common::CGROUP_PARENT)
        .join("stubborn/cgroup.procs");
    assert_eq!(std::fs::read_to_string(procs).unwrap_or_default(), "");
    // A second stop is a no-op that returns the same record.
    assert_eq!(
        engine
            .stop("stubborn", Signal::SIGTERM, Duration::from_secs(1))
            .unwrap(),
        exit
    );
    engine.delete("stubborn", false).unwrap();
}

#[test]
fn stop_with_the_host_pid_namespace_waits_for_lingering_children() {
    if !is_root() {
        return;
    }
    let env = Env::new();
    // No PID namespace: the init dies of SIGTERM at once, but its
    // background child lives on in the cgroup; stop must not report the
    // container stopped until it is gone too.
    let mut b = env.bundle("sharedpid", "sleep 4248 & sleep 4249");
    b.spec["linux"]["namespaces"]
        .as_array_mut()
        .unwrap()
        .retain(|n| n["type"] != "pid");
    let engine = run(&env, &b, "sharedpid");
    let deadline = Instant::now() + Duration::from_secs(5);
    while !(sleeping("4248") && sleeping("4249")) {
        assert!(Instant::now() < deadline, "container did not start its children");
        std::thread::sleep(Duration::from_millis(20));
    }
    let t = Instant::now();
    let exit = engine
        .stop("sharedpid", Signal::SIGTERM, Duration::from_secs(1))
        .unwrap();
    assert!(
        t.elapsed() >= Duration::from_secs(1),
        "reported stopped with a child alive"
    );
    assert_eq!(exit.signal, Some(15), "the init itself died of SIGTERM: {exit:?}");
    assert!(!sleeping("4248") && !sleeping("4249"));
    engine.delete("sharedpid", false).unwrap();
}

#[test]
fn memory_limit_ends_in_oom_killed() {
    if !is_root() {
        return;
    }
    let env = Env::new();
    let mut b = env.bundle("oom", "head -c 100000000 /dev/zero | tail > /dev/null; echo survived");
    b.spec["linux"]["resources"] = json!({"memory": {"limit": 16 * 1024 * 1024}});
    let engine = run(&env, &b, "oom");
    let exit = engine.wait("oom").unwrap();
    assert!(exit.oom_killed, "{exit:?}");
    engine.delete("oom", false).unwrap();
}

#[test]
fn namespaces_joined_by_path_share_network_ipc_and_hostname() {
    if !is_root() {
        return;
    }
    let env = Env::new();
    let mut a = env.bundle("ns-a", "ip link set lo up; touch /tmp/ready; sleep 300");
    a.spec["hostname"] = json!("pod-a");
    let engine = run(&env, &a, "ns-a");
    let deadline = Instant::now() + Duration::from_secs(5);
    while !a.rootfs().join("tmp/ready").exists() {
        assert!(Instant::now() < deadline, "container A did not come up");
        std::thread::sleep(Duration::from_millis(20));
    }
    let pid = init_pid(&engine, "ns-a");
    let ns_link = |p: String| std::fs::read_link(p).unwrap().to_string_lossy().into_owned();

    // The network namespace through a bind-mounted nsfs file, as pods pin
    // theirs; IPC and UTS through /proc paths.
    let pinned = env.tmp.path().join("netns-a");
    std::fs::write(&pinned, "").unwrap();
    nix::mount::mount(
        Some(format!("/proc/{pid}/ns/net").as_str()),
        &pinned,
        None::<&str>,
        nix::mount::MsFlags::MS_BIND,
        None::<&str>,
    )
    .unwrap();
    let mut b = env.bundle(
        "ns-b",
        "readlink /proc/self/ns/net; readlink /proc/self/ns/ipc; readlink /proc/self/ns/uts; \
         hostname; ip link show lo | head -n 1; readlink /proc/self/ns/pid",
    );
    b.spec["hostname"] = json!("");
    b.spec["linux"]["namespaces"] = json!([
        {"type": "pid"}, {"type": "mount"},
        {"type": "network", "path": pinned},
        {"type": "ipc", "path": format!("/proc/{pid}/ns/ipc")},
        {"type": "uts", "path": format!("/proc/{pid}/ns/uts")}
    ]);
    let (code, out, err) = env.run(&b, "ns-b");
    let _ = nix::mount::umount2(&pinned, nix::mount::MntFlags::MNT_DETACH);
    assert_eq!(code, 0, "stdout {out}\nstderr {err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], ns_link(format!("/proc/{pid}/ns/net")));
    assert_eq!(lines[1], ns_link(format!("/proc/{pid}/ns/ipc")));
    assert_eq!(lines[2], ns_link(format!("/proc/{pid}/ns/uts")));
    assert_eq!(lines[3], "pod-a");
    assert!(lines[4].contains("LOOPBACK,UP"), "A's lo is up in B: {}", lines[4]);
    assert_ne!(
        lines[5],
        ns_link(format!("/proc/{pid}/ns/pid")),
        "B has its own pid namespace"
    );
    engine.stop("ns-a", Signal::SIGKILL, Duration::from_secs(1)).unwrap();
    engine.delete("ns-a", false).unwrap();
}
